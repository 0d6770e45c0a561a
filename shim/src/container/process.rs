//! The process to run: arguments, environment and working directory, merged from the CRI
//! config and the image config the way Kubernetes defines it (and containerd implements it).
//!
//! Arguments (Kubernetes' command/args vs. Docker's ENTRYPOINT/CMD):
//!
//! | CRI command | CRI args | runs |
//! |---|---|---|
//! | set | any | command + args (the image's CMD is ignored) |
//! | empty | set | ENTRYPOINT + args |
//! | empty | empty | ENTRYPOINT + CMD |
//!
//! An ENTRYPOINT of `[""]` means "no entrypoint" (Docker writes it for `ENTRYPOINT []`).
//!
//! Environment, later entries replacing earlier ones with the same key in place:
//! `PATH` (a default), `TERM=xterm` for a tty, `HOSTNAME=<pod hostname>`, the image's `ENV`,
//! then the CRI envs. An image entry without `=` unsets the variable (Docker semantics).

use std::path::{Path, PathBuf};

use corral_cri::v1;

use super::SpecError;
use super::spec::ImageConfig;

/// The `PATH` a container gets when neither its image nor its config sets one.
pub const DEFAULT_PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The argv of the container's process.
pub fn args(config: &v1::ContainerConfig, image: &ImageConfig) -> Result<Vec<String>, SpecError> {
    let mut command = config.command.clone();
    let mut args = config.args.clone();
    if command.is_empty() {
        if args.is_empty() {
            args = image.cmd.clone();
        }
        if !(image.entrypoint.len() == 1 && image.entrypoint[0].is_empty()) {
            command = image.entrypoint.clone();
        }
    }
    command.extend(args);
    if command.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(command)
}

/// The environment of the container's process, starting from the base spec's.
pub fn env(base: &[String], config: &v1::ContainerConfig, image: &ImageConfig, hostname: &str) -> Vec<String> {
    let mut env = base.to_vec();
    replace_or_append(&mut env, [DEFAULT_PATH_ENV.to_string()]);
    if config.tty {
        env.push("TERM=xterm".to_string());
    }
    replace_or_append(&mut env, [format!("HOSTNAME={hostname}")]);
    replace_or_append(&mut env, image.env.iter().cloned());
    // CRI values are bytes; a non-UTF-8 value keeps its valid parts rather than failing.
    let cri = config.envs.iter().map(|kv| format!("{}={}", kv.key, String::from_utf8_lossy(&kv.value)));
    replace_or_append(&mut env, cri);
    env
}

/// Sets `KEY=value` entries in place (or appends them); an entry without `=` removes `KEY`.
fn replace_or_append(env: &mut Vec<String>, overrides: impl IntoIterator<Item = String>) {
    for entry in overrides {
        let key = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k).to_string();
        let position = env.iter().position(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key);
        match (entry.contains('='), position) {
            (true, Some(i)) => env[i] = entry,
            (true, None) => env.push(entry),
            (false, Some(i)) => {
                env.remove(i);
            }
            (false, None) => {}
        }
    }
}

/// The working directory: the config's, else the image's, else `/`.
pub fn cwd(config: &v1::ContainerConfig, image: &ImageConfig) -> Result<PathBuf, SpecError> {
    if !config.working_dir.is_empty() {
        if !config.working_dir.starts_with('/') {
            return Err(SpecError::RelativeWorkingDir(config.working_dir.clone()));
        }
        return Ok(PathBuf::from(&config.working_dir));
    }
    if !image.working_dir.is_empty() {
        // Docker accepts `WORKDIR app` relative to `/`; the OCI spec wants an absolute path.
        return Ok(Path::new("/").join(&image.working_dir));
    }
    Ok(PathBuf::from("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn config(command: &[&str], args: &[&str]) -> v1::ContainerConfig {
        v1::ContainerConfig { command: strings(command), args: strings(args), ..Default::default() }
    }

    fn image(entrypoint: &[&str], cmd: &[&str]) -> ImageConfig {
        ImageConfig { entrypoint: strings(entrypoint), cmd: strings(cmd), ..Default::default() }
    }

    #[test]
    fn args_table() {
        struct Case {
            name: &'static str,
            command: &'static [&'static str],
            args: &'static [&'static str],
            entrypoint: &'static [&'static str],
            cmd: &'static [&'static str],
            want: &'static [&'static str],
        }
        let cases = [
            Case {
                name: "image only",
                command: &[],
                args: &[],
                entrypoint: &["/entry"],
                cmd: &["c1", "c2"],
                want: &["/entry", "c1", "c2"],
            },
            Case { name: "cmd only", command: &[], args: &[], entrypoint: &[], cmd: &["top"], want: &["top"] },
            Case {
                name: "args replace CMD",
                command: &[],
                args: &["a1"],
                entrypoint: &["/entry"],
                cmd: &["c1"],
                want: &["/entry", "a1"],
            },
            Case {
                name: "command replaces both",
                command: &["sh", "-c"],
                args: &[],
                entrypoint: &["/entry"],
                cmd: &["c1"],
                want: &["sh", "-c"],
            },
            Case {
                name: "command + args",
                command: &["sh"],
                args: &["-c", "id"],
                entrypoint: &["/entry"],
                cmd: &["c1"],
                want: &["sh", "-c", "id"],
            },
            Case {
                name: "args, no entrypoint",
                command: &[],
                args: &["sleep", "1"],
                entrypoint: &[],
                cmd: &["c1"],
                want: &["sleep", "1"],
            },
            Case {
                name: "ENTRYPOINT [\"\"] is none",
                command: &[],
                args: &[],
                entrypoint: &[""],
                cmd: &["top"],
                want: &["top"],
            },
        ];
        for c in cases {
            let got = args(&config(c.command, c.args), &image(c.entrypoint, c.cmd)).unwrap();
            assert_eq!(got, strings(c.want), "{}", c.name);
        }
    }

    #[test]
    fn nothing_to_run_is_an_error() {
        let err = args(&config(&[], &[]), &image(&[], &[])).unwrap_err();
        assert!(matches!(err, SpecError::NoCommand));
        assert!(err.is_invalid_argument());
        assert!(matches!(args(&config(&[], &[]), &image(&[""], &[])), Err(SpecError::NoCommand)));
    }

    #[test]
    fn env_order_and_overrides() {
        let base = strings(&["PATH=/base", "KEEP=1"]);
        let mut cfg = config(&["x"], &[]);
        cfg.envs = vec![
            v1::KeyValue { key: "FOO".into(), value: b"from-cri".to_vec() },
            v1::KeyValue { key: "EMPTY".into(), value: vec![] },
            v1::KeyValue { key: "HOSTNAME".into(), value: b"override".to_vec() },
        ];
        let img = ImageConfig {
            env: strings(&["PATH=/image/bin", "FOO=from-image", "KEEP", "LANG=C.UTF-8"]),
            ..Default::default()
        };
        let got = env(&base, &cfg, &img, "pod-a");
        assert_eq!(got, strings(&["PATH=/image/bin", "HOSTNAME=override", "FOO=from-cri", "LANG=C.UTF-8", "EMPTY="]));
    }

    #[test]
    fn default_path_hostname_and_tty() {
        let mut cfg = config(&["x"], &[]);
        cfg.tty = true;
        let got = env(&[], &cfg, &ImageConfig::default(), "pod-a");
        assert_eq!(got, strings(&[DEFAULT_PATH_ENV, "TERM=xterm", "HOSTNAME=pod-a"]));
        // An image TERM replaces the tty's default in place.
        let img = ImageConfig { env: strings(&["TERM=vt100"]), ..Default::default() };
        assert_eq!(env(&[], &cfg, &img, "p")[1], "TERM=vt100");
    }

    #[test]
    fn cwd_table() {
        let img = |wd: &str| ImageConfig { working_dir: wd.into(), ..Default::default() };
        let cfg = |wd: &str| v1::ContainerConfig { working_dir: wd.into(), ..Default::default() };
        assert_eq!(cwd(&cfg(""), &img("")).unwrap(), Path::new("/"));
        assert_eq!(cwd(&cfg(""), &img("/srv")).unwrap(), Path::new("/srv"));
        assert_eq!(cwd(&cfg(""), &img("app")).unwrap(), Path::new("/app"));
        assert_eq!(cwd(&cfg("/work"), &img("/srv")).unwrap(), Path::new("/work"));
        let err = cwd(&cfg("work"), &img("")).unwrap_err();
        assert_eq!(err.to_string(), "working directory \"work\" is not an absolute path");
    }
}
