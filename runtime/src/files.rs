//! Small file helpers: atomic JSON records and reads with context.

use std::fs;
use std::io::Write;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Context, Error, Result};

/// Writes `value` as JSON to `path` with write-temp + fsync + rename, so a crash leaves the
/// old file or the new one, never half of one (docs/design.md, "Where state lives").
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let data = serde_json::to_vec(value).map_err(|source| Error::Json { path: path.display().to_string(), source })?;
    write_atomic(path, &data)
}

/// Writes `data` to `path` atomically (see [`write_json_atomic`]).
///
/// The directory is not fsynced after the rename: every file the runtime writes lives in
/// its state directory, which describes processes and mounts that die with the machine
/// (`/run`, a tmpfs on most hosts). A rename lost to a power loss leaves the old record of
/// something that no longer exists either way; a crashed daemon or monitor loses nothing.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = Path::new(&tmp);
    let mut file = fs::File::create(tmp).step(|| format!("create {tmp:?}"))?;
    file.write_all(data).step(|| format!("write {tmp:?}"))?;
    file.sync_all().step(|| format!("fsync {tmp:?}"))?;
    fs::rename(tmp, path).step(|| format!("rename {tmp:?} to {path:?}"))?;
    Ok(())
}

/// Reads a JSON record; `Ok(None)` when the file does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let data = match fs::read(path) {
        Ok(data) => data,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("read {path:?}"), e)),
    };
    serde_json::from_slice(&data).map(Some).map_err(|source| Error::Json { path: path.display().to_string(), source })
}

/// A unix socket path short enough for `sockaddr_un` (108 bytes). Long state dirs make
/// `<dir>/attach.sock` too long; then the socket is reached through the directory's open
/// descriptor, `/proc/self/fd/<n>/attach.sock`. Keep the returned guard until the bind or
/// connect is done.
pub fn socket_path(path: &Path) -> Result<(Option<fs::File>, std::path::PathBuf)> {
    const SUN_PATH_MAX: usize = 107;
    if path.as_os_str().len() <= SUN_PATH_MAX {
        return Ok((None, path.to_path_buf()));
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::InvalidSpec(format!("socket path {path:?} has no directory")));
    };
    let dir_file = fs::File::open(dir).step(|| format!("open {dir:?}"))?;
    let short = Path::new("/proc/self/fd").join(std::os::fd::AsRawFd::as_raw_fd(&dir_file).to_string()).join(name);
    Ok((Some(dir_file), short))
}

#[cfg(test)]
mod socket_tests {
    use super::*;

    #[test]
    fn long_socket_paths_bind_and_connect_through_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("d".repeat(60)).join("e".repeat(60));
        fs::create_dir_all(&deep).unwrap();
        let path = deep.join("attach.sock");
        assert!(path.as_os_str().len() > 107);
        let (_guard, short) = socket_path(&path).unwrap();
        assert!(short.starts_with("/proc/self/fd"), "{short:?}");
        let listener = std::os::unix::net::UnixListener::bind(&short).unwrap();
        assert!(path.exists(), "the socket is created in the real directory");
        let (_guard2, again) = socket_path(&path).unwrap();
        let _client = std::os::unix::net::UnixStream::connect(&again).unwrap();
        listener.accept().unwrap();
        let (none, same) = socket_path(Path::new("/run/x.sock")).unwrap();
        assert!(none.is_none());
        assert_eq!(same, Path::new("/run/x.sock"));
    }
}
