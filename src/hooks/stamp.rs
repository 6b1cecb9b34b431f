//! What a hook file looked like when it was read, so a backend can tell when to read it again.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// A file's size and modification time at the moment it was read. It crosses the worker pipe
/// with each cacheable response, so the pool can tell when a cached response went stale.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    path: PathBuf,
    len: u64,
    modified: Option<SystemTime>,
}

impl FileStamp {
    /// `None` when the file cannot be inspected (it then counts as changed next time).
    pub fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Self {
            path: path.to_owned(),
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }

    /// True while the file on disk is the one that was read.
    pub fn is_current(&self) -> bool {
        Self::of(&self.path).as_ref() == Some(self)
    }
}
