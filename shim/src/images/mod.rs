//! The image store: pulls, content store, layer snapshots (filled in by the images issue).

pub mod fs_usage;
