//! Validation of the paths written in tar headers.
//!
//! Paths are split into components here, before anything touches the filesystem, so that
//! `..`, absolute paths and overlong names are refused with a clear message instead of being
//! "cleaned" into something the image author did not write.

/// Linux `PATH_MAX`: no longer path can be created anyway.
pub const MAX_PATH: usize = 4096;
/// Linux `NAME_MAX`.
pub const MAX_NAME: usize = 255;

/// A path inside the layer: its parent directories and its final name.
#[derive(Debug, PartialEq, Eq)]
pub struct EntryPath<'a> {
    pub parent: Vec<&'a [u8]>,
    pub name: &'a [u8],
}

impl EntryPath<'_> {
    /// Whether the path lies under the top-level directory `top` (e.g. `dev`).
    pub fn is_under(&self, top: &[u8]) -> bool {
        self.parent.first() == Some(&top)
    }

    /// `a/b/c`, for messages and for re-resolving later.
    pub fn joined(&self) -> Vec<u8> {
        let mut all = self.parent.clone();
        all.push(self.name);
        all.join(&b'/')
    }
}

/// Splits `raw` into components; `Ok(None)` is the layer root itself (`./`).
pub fn split(raw: &[u8]) -> Result<Option<EntryPath<'_>>, &'static str> {
    if raw.len() > MAX_PATH {
        return Err("path longer than 4096 bytes");
    }
    if raw.starts_with(b"/") {
        return Err("absolute path");
    }
    let mut components: Vec<&[u8]> = raw.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".").collect();
    if components.iter().any(|c| *c == b"..") {
        return Err("path contains a '..' component");
    }
    if components.iter().any(|c| c.len() > MAX_NAME) {
        return Err("a path component is longer than 255 bytes");
    }
    let Some(name) = components.pop() else { return Ok(None) };
    Ok(Some(EntryPath { parent: components, name }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_relative_paths_and_refuses_escapes() {
        let p = split(b"./usr//bin/sh").unwrap().unwrap();
        assert_eq!(p.parent, vec![&b"usr"[..], &b"bin"[..]]);
        assert_eq!(p.name, b"sh");
        assert_eq!(p.joined(), b"usr/bin/sh");
        assert!(split(b"dev/null").unwrap().unwrap().is_under(b"dev"));
        assert_eq!(split(b"./").unwrap(), None);
        assert_eq!(split(b"").unwrap(), None);
        assert_eq!(split(b"/etc/passwd").unwrap_err(), "absolute path");
        assert_eq!(split(b"../x").unwrap_err(), "path contains a '..' component");
        assert_eq!(split(b"a/../../x").unwrap_err(), "path contains a '..' component");
        assert!(split(b"a/..").is_err());
        assert!(split(&[b'a'; 256]).is_err());
        assert!(split(&[b'a'; 4097]).is_err());
        assert!(split(b"a/..b/c..").is_ok(), "dots inside names are fine");
    }
}
