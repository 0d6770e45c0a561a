//! The final step of the container init and of `exec`: find the program, `execve` it.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// `PATH` from a `KEY=VALUE` environment, or the default one.
fn path_var(env: &[String]) -> &str {
    env.iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
}

/// Finds `name` like `execvp` (and Go's `exec.LookPath`, which runc uses): a name with a
/// slash is used as is, otherwise the first executable regular file in `PATH`.
pub fn look_path(name: &str, env: &[String]) -> Result<PathBuf> {
    let not_found = || Error::Start(format!("exec {name:?}: executable file not found in $PATH"));
    if name.is_empty() {
        return Err(Error::InvalidSpec("process.args[0] is empty".into()));
    }
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    for dir in path_var(env).split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(name);
        if let Ok(meta) = std::fs::metadata(&candidate)
            && meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
        {
            return Ok(candidate);
        }
    }
    Err(not_found())
}

/// Merges `overrides` into `base` (`KEY=VALUE`; a later key replaces an earlier one).
pub fn merge_env(base: &[String], overrides: &[String]) -> Vec<String> {
    let key = |e: &str| e.split_once('=').map(|(k, _)| k.to_owned()).unwrap_or_else(|| e.to_owned());
    let mut out: Vec<String> = Vec::with_capacity(base.len() + overrides.len());
    for e in base.iter().chain(overrides) {
        let k = key(e);
        out.retain(|o| key(o) != k);
        out.push(e.clone());
    }
    out
}

fn cstrings<'a>(items: impl Iterator<Item = &'a [u8]>, what: &str) -> Result<Vec<CString>> {
    items.map(|s| CString::new(s).map_err(|_| Error::InvalidSpec(format!("{what} contains a NUL byte")))).collect()
}

/// Prepared arguments for `execve`, built before the last security steps so that nothing
/// but the syscall itself happens after seccomp is loaded.
pub struct Program {
    path: CString,
    display: String,
    args: Vec<CString>,
    env: Vec<CString>,
}

impl Program {
    /// Resolves `args[0]` in the container's `PATH` and converts everything to C strings.
    pub fn new(args: &[String], env: &[String]) -> Result<Program> {
        let first = args.first().ok_or_else(|| Error::InvalidSpec("process.args is empty".into()))?;
        let path = look_path(first, env)?;
        Ok(Program {
            path: cstrings(std::iter::once(path.as_os_str().as_bytes()), "process.args[0]")?.remove(0),
            display: first.clone(),
            args: cstrings(args.iter().map(|a| a.as_bytes()), "process.args")?,
            env: cstrings(env.iter().map(|e| e.as_bytes()), "process.env")?,
        })
    }

    /// `execve`; only returns on failure, with the error runc would print.
    pub fn exec(&self) -> Error {
        let errno = match nix::unistd::execve(&self.path, &self.args, &self.env) {
            Err(e) => e,
            Ok(never) => match never {},
        };
        Error::Start(format!("exec {:?}: {}", self.display, std::io::Error::from(errno)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_replace_by_key() {
        let base = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        let merged = merge_env(&base, &["A=2".to_string(), "B=3".to_string()]);
        assert_eq!(merged, ["PATH=/bin", "A=2", "B=3"]);
    }

    #[test]
    fn look_path_searches_path_and_reports_missing() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        assert!(look_path("sh", &env).unwrap().ends_with("sh"));
        let e = look_path("definitely-not-a-command", &env).unwrap_err().to_string();
        assert!(e.contains("executable file not found"), "{e}");
        assert_eq!(look_path("/x/y", &env).unwrap(), PathBuf::from("/x/y"));
    }
}
