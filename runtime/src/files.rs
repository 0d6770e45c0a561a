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
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = Path::new(&tmp);
    let mut file = fs::File::create(tmp).step(|| format!("create {tmp:?}"))?;
    file.write_all(data).step(|| format!("write {tmp:?}"))?;
    file.sync_all().step(|| format!("fsync {tmp:?}"))?;
    fs::rename(tmp, path).step(|| format!("rename {tmp:?} to {path:?}"))?;
    if let Some(dir) = path.parent()
        && let Ok(dir) = fs::File::open(dir)
    {
        // The rename is durable once the directory is synced; failure here loses nothing.
        let _ = dir.sync_all();
    }
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
