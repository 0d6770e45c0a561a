//! The exit status of a remote command, as written on the error stream.
//!
//! Protocol v4 and v5 send a Kubernetes `metav1.Status` as JSON, always: `Success`, or
//! `Failure` with reason `NonZeroExitCode` and the exit code as the message of a cause of
//! type `ExitCode`, which client-go turns into "command terminated with exit code N" (crictl
//! exits with it). Older protocols send nothing on success and the status message as plain
//! text on failure. The JSON matches Go's encoding of the struct field for field, including
//! the always-present empty `metadata`.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    metadata: Metadata,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
struct Metadata {}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct Details {
    causes: Vec<Cause>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct Cause {
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    message: String,
}

impl Status {
    pub fn success() -> Self {
        Status { metadata: Metadata {}, status: "Success", message: None, reason: None, details: None, code: None }
    }

    /// A command that ran and exited with a non-zero code. `cmd` goes into the message the
    /// way containerd words it.
    pub fn exit_code(cmd: &[String], code: i32) -> Self {
        Status {
            metadata: Metadata {},
            status: "Failure",
            message: Some(format!(
                "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                cmd.join(" ")
            )),
            reason: Some("NonZeroExitCode"),
            details: Some(Details { causes: vec![Cause { reason: Some("ExitCode"), message: code.to_string() }] }),
            code: None,
        }
    }

    /// The session could not run (kubelet's `NewInternalError`).
    pub fn internal_error(err: &str) -> Self {
        Status {
            metadata: Metadata {},
            status: "Failure",
            message: Some(format!("Internal error occurred: {err}")),
            reason: Some("InternalError"),
            details: Some(Details { causes: vec![Cause { reason: None, message: err.to_string() }] }),
            code: Some(500),
        }
    }

    pub fn is_success(&self) -> bool {
        self.status == "Success"
    }

    /// The v4/v5 encoding.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The v1-v3 encoding: nothing for success, the message for failure.
    pub fn to_text(&self) -> Vec<u8> {
        if self.is_success() { Vec::new() } else { self.message.clone().unwrap_or_default().into_bytes() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_what_kubelet_writes() {
        assert_eq!(String::from_utf8(Status::success().to_json()).unwrap(), r#"{"metadata":{},"status":"Success"}"#);
        let cmd = vec!["sh".to_string(), "-c".to_string(), "exit 3".to_string()];
        assert_eq!(
            String::from_utf8(Status::exit_code(&cmd, 3).to_json()).unwrap(),
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
        );
        let v: serde_json::Value = serde_json::from_slice(&Status::internal_error("boom").to_json()).unwrap();
        assert_eq!(v["code"], 500);
        assert_eq!(v["reason"], "InternalError");
    }

    #[test]
    fn text_encoding_is_silent_on_success() {
        assert!(Status::success().to_text().is_empty());
        assert!(String::from_utf8(Status::exit_code(&[], 2).to_text()).unwrap().contains("exit code 2"));
    }
}
