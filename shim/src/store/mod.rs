//! The daemon's records of pods and containers: in memory for every read (kubelet lists
//! every second), on disk for every change (a restarted daemon must know what runs).
//!
//! A [`Table`] holds one kind of record. Each record is a JSON file `<dir>/<id>.json`,
//! replaced atomically on every change; readers get `Arc` snapshots and never wait for
//! disk. Multi-step operations on one object (stop racing remove) are serialized by the
//! caller with [`OpLocks`], not by the table.

pub mod atomic;
pub mod names;
pub mod records;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A record kept in a [`Table`].
pub trait Record: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The newest layout version this build reads; a record with a higher one was written
    /// by a newer corral and is not trusted (its fields may mean something else).
    const VERSION: u32;
    /// The object's full id.
    fn id(&self) -> &str;
    /// The layout version the record was written with (0 for records older than versions).
    fn version(&self) -> u32;
}

/// A record file that could not be loaded at start-up.
#[derive(Debug)]
pub struct Unreadable {
    /// The id taken from the file name.
    pub id: String,
    /// The file.
    pub path: PathBuf,
    /// Why it could not be read.
    pub reason: String,
}

/// One kind of record, by id.
pub struct Table<T> {
    dir: PathBuf,
    rows: RwLock<BTreeMap<String, Arc<T>>>,
    /// Held across a change's read-modify-write and its disk write, so two concurrent changes
    /// to one record (an exit watcher and a stop) cannot lose one another's fields.
    writer: Mutex<()>,
}

/// Why an id prefix did not name exactly one object.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Nothing has an id starting with the prefix.
    Missing,
    /// More than one id starts with the prefix.
    Ambiguous(usize),
}

impl<T: Record> Table<T> {
    /// Opens `dir` (created if missing) and loads every record in it. Files that cannot be
    /// parsed are returned separately so the caller can report them; they stay on disk.
    pub fn open(dir: &Path) -> io::Result<(Table<T>, Vec<Unreadable>)> {
        std::fs::create_dir_all(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", dir.display())))?;
        let mut rows = BTreeMap::new();
        let mut unreadable = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            if name.starts_with('.') {
                // A temp file from a write interrupted by a crash: never the truth.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let Some(id) = name.strip_suffix(".json") else { continue };
            let bad = |reason: String| Unreadable { id: id.to_string(), path: path.clone(), reason };
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| serde_json::from_slice::<T>(&bytes).map_err(|e| format!("{}: {e}", path.display())))
            {
                Ok(record) if record.id() != id => {
                    unreadable.push(bad(format!("{} holds the record of {:?}", path.display(), record.id())))
                }
                Ok(record) if record.version() > T::VERSION => unreadable.push(bad(format!(
                    "{} has record version {}, newer than this corral reads ({})",
                    path.display(),
                    record.version(),
                    T::VERSION
                ))),
                Ok(record) => {
                    rows.insert(id.to_string(), Arc::new(record));
                }
                Err(reason) => unreadable.push(bad(reason)),
            }
        }
        Ok((Table { dir: dir.to_path_buf(), rows: RwLock::new(rows), writer: Mutex::new(()) }, unreadable))
    }

    /// Persists `record` and makes it the current version.
    pub fn put(&self, record: T) -> io::Result<Arc<T>> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.put_locked(record)
    }

    fn put_locked(&self, record: T) -> io::Result<Arc<T>> {
        let bytes = serde_json::to_vec_pretty(&record).map_err(io::Error::other)?;
        atomic::write(&self.path(record.id()), &bytes)?;
        let record = Arc::new(record);
        self.write_rows().insert(record.id().to_string(), record.clone());
        Ok(record)
    }

    /// Makes `record` current in memory only. For the stand-in of a record that could not be
    /// read: its file stays on disk as it is until the next `put` or `remove`.
    pub fn insert_unsaved(&self, record: T) {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.write_rows().insert(record.id().to_string(), Arc::new(record));
    }

    /// Applies `change` to a copy of the current record and persists it. Returns `None` if
    /// the record does not exist.
    pub fn update(&self, id: &str, change: impl FnOnce(&mut T)) -> io::Result<Option<Arc<T>>>
    where
        T: Clone,
    {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let Some(current) = self.get(id) else { return Ok(None) };
        let mut next = (*current).clone();
        change(&mut next);
        self.put_locked(next).map(Some)
    }

    /// Forgets a record, on disk first.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        atomic::remove(&self.path(id))?;
        self.write_rows().remove(id);
        Ok(())
    }

    /// The current version of a record.
    pub fn get(&self, id: &str) -> Option<Arc<T>> {
        self.read_rows().get(id).cloned()
    }

    /// Every record, in id order.
    pub fn list(&self) -> Vec<Arc<T>> {
        self.read_rows().values().cloned().collect()
    }

    /// The full id that `prefix` names: itself if it is an id, else the one id it starts.
    pub fn resolve(&self, prefix: &str) -> Result<String, Lookup> {
        let rows = self.read_rows();
        if prefix.is_empty() {
            return Err(Lookup::Missing);
        }
        if rows.contains_key(prefix) {
            return Ok(prefix.to_string());
        }
        let mut matches = rows.range(prefix.to_string()..).map(|(id, _)| id).take_while(|id| id.starts_with(prefix));
        match (matches.next(), matches.count()) {
            (None, _) => Err(Lookup::Missing),
            (Some(id), 0) => Ok(id.clone()),
            (Some(_), more) => Err(Lookup::Ambiguous(more + 1)),
        }
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn read_rows(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<T>>> {
        self.rows.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_rows(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<T>>> {
        self.rows.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Per-object locks that serialize multi-step operations (start, stop, remove) on one id
/// while leaving other objects and all reads free.
#[derive(Default)]
pub struct OpLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl OpLocks {
    /// Waits for and takes the lock of `id`.
    pub async fn lock(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            // Drop entries nobody holds or waits for, so the map does not grow forever.
            locks.retain(|_, l| Arc::strong_count(l) > 1);
            locks.entry(id.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

/// A new object id: 64 random hex digits, as containerd and CRI-O make them.
pub fn new_id() -> String {
    let mut bytes = [0u8; 32];
    // getrandom(2) only fails on a kernel without it (pre-3.17); fall back to time + pid
    // mixed through the hasher, which still never repeats within one daemon.
    if getrandom::fill(&mut bytes).is_err() {
        use std::hash::{BuildHasher, Hasher};
        for chunk in bytes.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
            );
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Clone, Serialize, Deserialize, PartialEq, Debug)]
    struct Thing {
        id: String,
        n: u32,
    }
    impl Record for Thing {
        const VERSION: u32 = 1;
        fn id(&self) -> &str {
            &self.id
        }
        fn version(&self) -> u32 {
            self.n / 100 // records with n >= 200 play "written by a newer corral"
        }
    }

    #[test]
    fn put_update_remove_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let (table, bad) = Table::<Thing>::open(dir.path()).unwrap();
        assert!(bad.is_empty());
        table.put(Thing { id: "abc".into(), n: 1 }).unwrap();
        table.put(Thing { id: "abd".into(), n: 2 }).unwrap();
        table.update("abc", |t| t.n = 10).unwrap().unwrap();
        assert!(table.update("zzz", |t| t.n = 0).unwrap().is_none());
        table.remove("abd").unwrap();

        let (again, bad) = Table::<Thing>::open(dir.path()).unwrap();
        assert!(bad.is_empty());
        drop(table);
        let all: Vec<Thing> = again.list().iter().map(|t| (**t).clone()).collect();
        assert_eq!(all, vec![Thing { id: "abc".into(), n: 10 }]);
    }

    #[test]
    fn concurrent_updates_of_one_record_lose_nothing() {
        #[derive(Clone, Serialize, Deserialize)]
        struct Counter {
            id: String,
            a: u32,
            b: u32,
        }
        impl Record for Counter {
            const VERSION: u32 = 0;
            fn id(&self) -> &str {
                &self.id
            }
            fn version(&self) -> u32 {
                0
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let (table, _) = Table::<Counter>::open(dir.path()).unwrap();
        table.put(Counter { id: "x".into(), a: 0, b: 0 }).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| (0..50).for_each(|_| drop(table.update("x", |c| c.a += 1).unwrap())));
            s.spawn(|| (0..50).for_each(|_| drop(table.update("x", |c| c.b += 1).unwrap())));
        });
        let x = table.get("x").unwrap();
        assert_eq!((x.a, x.b), (50, 50));
        let (reloaded, _) = Table::<Counter>::open(dir.path()).unwrap();
        assert_eq!(reloaded.get("x").map(|x| (x.a, x.b)), Some((50, 50)));
    }

    #[test]
    fn corrupt_files_are_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("good.json"), r#"{"id":"good","n":1}"#).unwrap();
        std::fs::write(dir.path().join("trunc.json"), r#"{"id":"tru"#).unwrap();
        std::fs::write(dir.path().join("other.json"), r#"{"id":"good","n":1}"#).unwrap();
        std::fs::write(dir.path().join("newer.json"), r#"{"id":"newer","n":250}"#).unwrap();
        std::fs::write(dir.path().join(".good.json.tmp-1"), "half").unwrap();
        let (table, mut bad) = Table::<Thing>::open(dir.path()).unwrap();
        bad.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(table.list().len(), 1);
        assert_eq!(bad.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(), vec!["newer", "other", "trunc"]);
        assert!(bad[0].reason.contains("record version 2, newer than this corral reads (1)"), "{}", bad[0].reason);
        assert!(bad[2].reason.contains("trunc.json"), "{}", bad[2].reason);
        assert_eq!(bad[2].path, dir.path().join("trunc.json"));

        // A stand-in is listed but not written; the bad file stays until it is replaced.
        table.insert_unsaved(Thing { id: "trunc".into(), n: 0 });
        assert_eq!(table.list().len(), 2);
        assert_eq!(std::fs::read_to_string(dir.path().join("trunc.json")).unwrap(), r#"{"id":"tru"#);
        table.remove("trunc").unwrap();
        assert!(!dir.path().join("trunc.json").exists());
        assert!(!dir.path().join(".good.json.tmp-1").exists(), "temp files of a crashed write are removed");
    }

    #[test]
    fn prefixes_resolve_uniquely() {
        let dir = tempfile::tempdir().unwrap();
        let (table, _) = Table::<Thing>::open(dir.path()).unwrap();
        for id in ["abc1", "abc2", "b"] {
            table.put(Thing { id: id.into(), n: 0 }).unwrap();
        }
        assert_eq!(table.resolve("abc1"), Ok("abc1".into()));
        assert_eq!(table.resolve("abc"), Err(Lookup::Ambiguous(2)));
        assert_eq!(table.resolve("b"), Ok("b".into()));
        assert_eq!(table.resolve("c"), Err(Lookup::Missing));
        assert_eq!(table.resolve(""), Err(Lookup::Missing));
    }

    #[test]
    fn ids_are_64_hex_and_distinct() {
        let a = new_id();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, new_id());
    }

    #[tokio::test]
    async fn op_locks_serialize_one_id_only() {
        let locks = OpLocks::default();
        let a = locks.lock("a").await;
        let _b = locks.lock("b").await; // another id is free
        let pending = tokio::time::timeout(std::time::Duration::from_millis(50), locks.lock("a")).await;
        assert!(pending.is_err(), "second lock of the same id must wait");
        drop(a);
        let _a2 = locks.lock("a").await;
    }
}
