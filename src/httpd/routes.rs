//! What `kubelambda httpd` serves: the hook files named on its command line, and every hook file
//! under the directories named there (as Metacontroller's jsonnetd served its working
//! directory). A request for an unknown route rescans the directories, at most once a second,
//! so a file added later (a ConfigMap mount updated) is served without a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use super::{HttpdError, RESERVED, route_for};
use crate::hooks::HookSource;

/// Directories are rescanned at most this often (an unknown route cannot make the server walk
/// the disk on every request).
const RESCAN_INTERVAL: Duration = Duration::from_secs(1);

pub struct Routes {
    /// Files named on the command line, by route.
    files: BTreeMap<String, HookSource>,
    dirs: Vec<PathBuf>,
    jpath: Vec<PathBuf>,
    scanned: RwLock<Scanned>,
}

#[derive(Default)]
struct Scanned {
    at: Option<Instant>,
    routes: BTreeMap<String, HookSource>,
}

impl Routes {
    /// Maps routes to hooks, refusing duplicates, reserved paths and unreadable files up front.
    pub fn build(args: &[PathBuf], jpath: &[PathBuf]) -> Result<Self, HttpdError> {
        if args.is_empty() {
            return Err(HttpdError::NoFiles);
        }
        let mut files: BTreeMap<String, (String, HookSource)> = BTreeMap::new();
        let mut dirs = Vec::new();
        for arg in args {
            if arg.is_dir() {
                dirs.push(arg.clone());
                continue;
            }
            let shown = arg.display().to_string();
            let route = route_for(&shown);
            if RESERVED.contains(&route.as_str()) {
                return Err(HttpdError::ReservedRoute { route, file: shown });
            }
            let source = HookSource::from_file(arg, jpath)?;
            if let Some((first, _)) = files.get(&route) {
                return Err(HttpdError::DuplicateRoute {
                    route,
                    first: first.clone(),
                    second: shown,
                });
            }
            files.insert(route, (shown, source));
        }
        let routes = Self {
            files: files.into_iter().map(|(r, (_, s))| (r, s)).collect(),
            dirs,
            jpath: jpath.to_vec(),
            scanned: RwLock::default(),
        };
        routes.rescan();
        Ok(routes)
    }

    /// The hook served at `path`, rescanning the directories once if it is unknown.
    pub fn get(&self, path: &str) -> Option<HookSource> {
        if let Some(found) = self.lookup(path) {
            return Some(found);
        }
        let due = self
            .read()
            .at
            .is_none_or(|at| at.elapsed() >= RESCAN_INTERVAL);
        if self.dirs.is_empty() || !due {
            return None;
        }
        self.rescan();
        self.lookup(path)
    }

    /// Every route, for the 404 page and the startup log.
    pub fn list(&self) -> Vec<String> {
        let mut all: Vec<String> = self.files.keys().cloned().collect();
        all.extend(self.read().routes.keys().cloned());
        all.sort();
        all.dedup();
        all
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Scanned> {
        self.scanned.read().unwrap_or_else(|e| e.into_inner())
    }

    fn lookup(&self, path: &str) -> Option<HookSource> {
        self.files
            .get(path)
            .cloned()
            .or_else(|| self.read().routes.get(path).cloned())
    }

    fn rescan(&self) {
        let mut routes = BTreeMap::new();
        for dir in &self.dirs {
            scan(dir, dir, &self.jpath, &mut routes);
        }
        // A file named on the command line wins over one found in a directory.
        routes.retain(|route, _| {
            !self.files.contains_key(route) && !RESERVED.contains(&route.as_str())
        });
        let mut scanned = self.scanned.write().unwrap_or_else(|e| e.into_inner());
        scanned.at = Some(Instant::now());
        scanned.routes = routes;
    }
}

/// Adds every `.jsonnet` and `.tera` file under `dir` (following symlinks, skipping names that
/// start with a dot, such as a ConfigMap mount's `..data`) at its path relative to `root`.
fn scan(root: &Path, dir: &Path, jpath: &[PathBuf], routes: &mut BTreeMap<String, HookSource>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!("cannot list hook directory {}: {e}", dir.display());
            return;
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            scan(root, &path, jpath, routes);
            continue;
        }
        let hook = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("jsonnet" | "tera")
        );
        let Ok(relative) = path.strip_prefix(root) else {
            continue;
        };
        if !hook {
            continue;
        }
        match HookSource::from_file(&path, jpath) {
            Ok(source) => {
                routes.insert(route_for(&relative.display().to_string()), source);
            }
            Err(e) => tracing::warn!("not serving {}: {e}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_serves_its_hooks_and_picks_up_new_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str| {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, "function(request) {}").expect("write");
        };
        write("sync.jsonnet");
        write("nested/finalize.tera");
        write("lib.libsonnet");
        write("..data/hidden.jsonnet");
        write("notes.txt");
        let routes = Routes::build(&[dir.path().to_path_buf()], &[]).expect("routes");
        assert_eq!(routes.list(), vec!["/nested/finalize", "/sync"]);
        assert!(routes.get("/sync").is_some());
        assert!(routes.get("/lib").is_none());

        // A new file is found by the first request for it after the rescan interval.
        write("later.jsonnet");
        std::thread::sleep(RESCAN_INTERVAL);
        assert!(routes.get("/later").is_some(), "{:?}", routes.list());
    }

    #[test]
    fn named_files_and_directories_mix() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.jsonnet"), "{}").expect("write");
        let other = tempfile::tempdir().expect("tempdir");
        let named = other.path().join("b.jsonnet");
        std::fs::write(&named, "{}").expect("write");
        let routes =
            Routes::build(&[dir.path().to_path_buf(), named.clone()], &[]).expect("routes");
        let list = routes.list();
        assert!(list.contains(&"/a".to_owned()));
        assert!(list.contains(&route_for(&named.display().to_string())));
        assert!(matches!(Routes::build(&[], &[]), Err(HttpdError::NoFiles)));
    }
}
