//! Validation of the CRI streaming requests, before a URL is handed out. The rules are
//! kubelet's streaming server's, so clients see the same errors as with containerd.

use corral_cri::v1::{AttachRequest, ExecRequest, PortForwardRequest};

use super::error::StreamingError;

fn invalid(request: &'static str, reason: &'static str) -> StreamingError {
    StreamingError::InvalidRequest { request, reason }
}

pub fn validate_exec(req: &ExecRequest) -> Result<(), StreamingError> {
    if req.container_id.is_empty() {
        return Err(invalid("exec", "missing required container_id"));
    }
    if req.cmd.is_empty() {
        return Err(invalid("exec", "missing required cmd"));
    }
    check_streams("exec", req.tty, req.stdin, req.stdout, req.stderr)
}

pub fn validate_attach(req: &AttachRequest) -> Result<(), StreamingError> {
    if req.container_id.is_empty() {
        return Err(invalid("attach", "missing required container_id"));
    }
    check_streams("attach", req.tty, req.stdin, req.stdout, req.stderr)
}

pub fn validate_port_forward(req: &PortForwardRequest) -> Result<(), StreamingError> {
    if req.pod_sandbox_id.is_empty() {
        return Err(invalid("port-forward", "missing required pod_sandbox_id"));
    }
    if req.port.iter().any(|p| !(1..=65535).contains(p)) {
        return Err(invalid("port-forward", "ports must be between 1 and 65535"));
    }
    Ok(())
}

fn check_streams(
    request: &'static str,
    tty: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
) -> Result<(), StreamingError> {
    if tty && stderr {
        // A terminal has one output; stdout and stderr cannot be told apart.
        return Err(invalid(request, "tty and stderr cannot both be true"));
    }
    if !stdin && !stdout && !stderr {
        return Err(invalid(request, "one of stdin, stdout, or stderr must be set"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec() -> ExecRequest {
        ExecRequest { container_id: "c".into(), cmd: vec!["sh".into()], stdout: true, ..Default::default() }
    }

    #[test]
    fn exec_rules() {
        assert!(validate_exec(&exec()).is_ok());
        let e = validate_exec(&ExecRequest { container_id: String::new(), ..exec() }).unwrap_err();
        assert_eq!(e.to_string(), "invalid exec request: missing required container_id");
        let e = validate_exec(&ExecRequest { cmd: vec![], ..exec() }).unwrap_err();
        assert!(e.to_string().contains("cmd"));
        let e = validate_exec(&ExecRequest { tty: true, stderr: true, ..exec() }).unwrap_err();
        assert_eq!(e.to_string(), "invalid exec request: tty and stderr cannot both be true");
        let e = validate_exec(&ExecRequest { stdout: false, ..exec() }).unwrap_err();
        assert_eq!(e.to_string(), "invalid exec request: one of stdin, stdout, or stderr must be set");
        assert!(validate_exec(&ExecRequest { stdout: false, stdin: true, ..exec() }).is_ok());
    }

    #[test]
    fn attach_rules() {
        let ok = AttachRequest { container_id: "c".into(), stdin: true, tty: true, stdout: true, stderr: false };
        assert!(validate_attach(&ok).is_ok());
        assert!(validate_attach(&AttachRequest { container_id: String::new(), ..ok.clone() }).is_err());
        assert!(validate_attach(&AttachRequest { stderr: true, ..ok.clone() }).is_err());
        assert!(validate_attach(&AttachRequest { stdin: false, stdout: false, ..ok }).is_err());
    }

    #[test]
    fn port_forward_rules() {
        let ok = PortForwardRequest { pod_sandbox_id: "p".into(), port: vec![80, 443] };
        assert!(validate_port_forward(&ok).is_ok());
        assert!(validate_port_forward(&PortForwardRequest { pod_sandbox_id: String::new(), ..ok.clone() }).is_err());
        assert!(validate_port_forward(&PortForwardRequest { port: vec![0], ..ok.clone() }).is_err());
        assert!(validate_port_forward(&PortForwardRequest { port: vec![70000], ..ok }).is_err());
    }
}
