use std::time::{Duration, SystemTime};

use super::{CacheStats, ResponseCache};
use crate::hooks::{FileStamp, HookSource};

fn inline(code: &str) -> HookSource {
    HookSource::JsonnetInline {
        name: "hook".into(),
        code: code.into(),
        jpath: vec![],
    }
}

fn stamp(path: &std::path::Path) -> FileStamp {
    FileStamp::of(path).expect("the file exists")
}

#[test]
fn zero_bytes_means_no_cache() {
    assert!(ResponseCache::new(0).is_none());
}

#[test]
fn the_same_hook_and_request_hit_anything_else_misses() {
    let cache = ResponseCache::new(1 << 20).expect("on");
    let hook = inline("function(request) request");
    assert_eq!(cache.get(&hook, b"{}"), None);
    cache.insert(&hook, b"{}", "{ }\n", vec![]);
    assert_eq!(cache.get(&hook, b"{}").as_deref(), Some("{ }\n"));
    // One byte more in the request, or another hook: not the same evaluation.
    assert_eq!(cache.get(&hook, b"{} "), None);
    assert_eq!(cache.get(&inline("function(request) {}"), b"{}"), None);
    assert_eq!(cache.stats(), CacheStats { hits: 1, misses: 3 });
}

#[test]
fn an_entry_goes_stale_when_a_file_it_read_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lib = dir.path().join("lib.libsonnet");
    std::fs::write(&lib, "{ a: 1 }").expect("write");
    let hook = inline("function(request) import 'lib.libsonnet'");
    let cache = ResponseCache::new(1 << 20).expect("on");
    cache.insert(&hook, b"{}", "old", vec![stamp(&lib)]);
    assert_eq!(cache.get(&hook, b"{}").as_deref(), Some("old"));

    // Same size, another mtime: an edit that keeps the length still counts.
    std::fs::write(&lib, "{ a: 2 }").expect("write");
    let later = SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&lib)
        .and_then(|f| f.set_modified(later))
        .expect("set mtime");
    assert_eq!(cache.get(&hook, b"{}"), None);
    // The stale entry is gone, not just skipped.
    assert_eq!(cache.weight(), 0);

    std::fs::remove_file(&lib).expect("remove");
    cache.insert(&hook, b"{}", "x", vec![stamp(dir.path())]);
    std::fs::remove_dir(dir.path()).expect("rmdir");
    assert_eq!(cache.get(&hook, b"{}"), None, "a deleted file is a change");
}

#[test]
fn the_cache_stays_within_its_byte_budget() {
    let budget = 256 << 10;
    let cache = ResponseCache::new(budget).expect("on");
    let hook = inline("function(request) request");
    let response = "r".repeat(4000);
    for i in 0..1000 {
        let request = format!("{{\"i\": {i}}}");
        cache.insert(&hook, request.as_bytes(), &response, vec![]);
        assert!(cache.weight() <= budget, "{} > {budget}", cache.weight());
    }
    assert!(
        cache.weight() > budget / 2,
        "{} is far below the budget",
        cache.weight()
    );
}
