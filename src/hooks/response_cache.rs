//! Responses of pure hooks, reused for identical requests.
//!
//! A Jsonnet hook is a pure function of its files, the request and the process-wide options (ext
//! vars, TLAs, jpath). A controller sends the same request again and again: every resync of a
//! parent whose children have not changed is byte-for-byte the last one. Evaluating it again
//! would only produce the same bytes, so the response is kept, keyed by the hook and the exact
//! request body, together with the stamps of every file the hook read. An entry is used only
//! while all those files are unchanged on disk; a hook edit or an edit of anything it imports
//! makes the next request evaluate again.
//!
//! What is never cached: errors (a deadline depends on the machine's load), Tera responses
//! (Tera's `now()`, `get_random()` and `get_env()` are impure), and evaluations that called
//! `std.trace` (the author wants that log line on every call). The evaluator decides; see
//! `Evaluator::dependencies`.
//!
//! The cache is bounded in bytes (request + response + a fixed overhead per entry) and evicts
//! with quick_cache's CLOCK-Pro policy, so a flood of distinct requests cannot grow the process.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use quick_cache::{Equivalent, Weighter, sync::Cache};

use super::{FileStamp, HookSource};

/// Bytes counted for an entry beyond its request and response: the key's hook source, the
/// stamps, and the cache's own bookkeeping.
const ENTRY_OVERHEAD: u64 = 256;

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    source: HookSource,
    request: Box<[u8]>,
}

/// A key made of borrowed parts, so a lookup copies nothing. It hashes exactly as [`Key`] does
/// (derived `Hash` on the same field types in the same order).
struct KeyRef<'a> {
    source: &'a HookSource,
    request: &'a [u8],
}

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.source.hash(state);
        self.request.hash(state);
    }
}

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        *self.source == key.source && *self.request == *key.request
    }
}

struct Entry {
    response: String,
    dependencies: Vec<FileStamp>,
}

#[derive(Clone)]
struct ByBytes;

impl Weighter<Key, Arc<Entry>> for ByBytes {
    fn weight(&self, key: &Key, entry: &Arc<Entry>) -> u64 {
        (key.request.len() + entry.response.len()) as u64 + ENTRY_OVERHEAD
    }
}

/// Hit and miss counts since the cache was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Requests answered from the cache.
    pub hits: u64,
    /// Requests that were evaluated although the cache was on (first sight, stale, or evicted).
    pub misses: u64,
}

pub struct ResponseCache {
    entries: Cache<Key, Arc<Entry>, ByBytes>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ResponseCache {
    /// A cache holding at most `max_bytes` of requests and responses; `None` for 0 (off).
    pub fn new(max_bytes: u64) -> Option<Self> {
        if max_bytes == 0 {
            return None;
        }
        // quick_cache sizes its tables from this estimate; a typical entry is a few KiB.
        let estimated_entries = usize::try_from(max_bytes / 4096)
            .unwrap_or(usize::MAX)
            .max(16);
        Some(Self {
            entries: Cache::with_weighter(estimated_entries, max_bytes, ByBytes),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// The response last computed for this hook and request, if every file it depended on is
    /// unchanged. A stale entry is dropped.
    pub fn get(&self, source: &HookSource, request: &[u8]) -> Option<String> {
        let key = KeyRef { source, request };
        let entry = self.entries.get(&key);
        let fresh = entry
            .as_ref()
            .filter(|entry| entry.dependencies.iter().all(FileStamp::is_current));
        match fresh {
            Some(entry) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(entry.response.clone())
            }
            None => {
                if entry.is_some() {
                    self.entries.remove(&key);
                }
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Keeps `response` for reuse while the files in `dependencies` stay as they are.
    pub fn insert(
        &self,
        source: &HookSource,
        request: &[u8],
        response: &str,
        dependencies: Vec<FileStamp>,
    ) {
        let key = Key {
            source: source.clone(),
            request: request.into(),
        };
        let entry = Entry {
            response: response.to_owned(),
            dependencies,
        };
        self.entries.insert(key, Arc::new(entry));
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// Bytes held, as the weigher counts them.
    pub fn weight(&self) -> u64 {
        self.entries.weight()
    }
}

#[cfg(test)]
mod tests;
