//! Which files a hook may read: the import boundary.
//!
//! A Jsonnet hook reads files through `import`, `importstr` and `importbin`. Whoever writes a
//! hook (a CompositeController's author, a ConfigMap editor) is not trusted with the controller's
//! files, so an import resolves only inside the hook's *import roots*:
//!
//! - the hook's own directory (file hooks only: the directory of the path as given, and the
//!   directory the file really lives in when the path is a symlink);
//! - the hook's `jpath`;
//! - the operator's `-J` directories;
//! - the library bundled in the binary (not a directory: matched by name).
//!
//! `/proc`, `/sys` and `/dev` are never importable, even under a root such as `-J /`.
//!
//! Each candidate path is checked twice. First lexically (`.` and `..` folded, no file system
//! access), so a path outside the roots is refused without revealing whether it exists. Then
//! after resolving symlinks: the real file must also be inside a root (as its real path), so a
//! symlink inside a root that points outside it is refused too. Symlinks that stay inside the
//! roots (a mounted ConfigMap's `..data` links) are followed.
//!
//! [`HookDirs`] applies the same rules one level up: which files and `jpath` directories a
//! controller spec may name at all (the operator's `--hook-dir`).

use std::fmt;
use std::path::{Component, Path, PathBuf};

/// Trees no hook may read: process memory and environment, kernel state, devices.
pub const DENIED: &[&str] = &["/proc", "/sys", "/dev"];

/// One directory of a hook's import roots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Root {
    /// Absolute, with `.` and `..` folded; how the root is shown and matched lexically.
    given: PathBuf,
    /// Its real path (symlinks resolved); `None` when it does not exist.
    real: Option<PathBuf>,
}

impl Root {
    pub fn new(dir: &Path) -> Self {
        let given = absolute_lexical(dir);
        let real = std::fs::canonicalize(&given).ok();
        Self { given, real }
    }

    fn contains_lexical(&self, path: &Path) -> bool {
        path.starts_with(&self.given) || self.real.as_ref().is_some_and(|r| path.starts_with(r))
    }

    fn contains_real(&self, path: &Path) -> bool {
        self.real.as_ref().is_some_and(|r| path.starts_with(r))
    }

    /// Where relative imports are looked up: the real directory when it exists.
    pub fn dir(&self) -> &Path {
        self.real.as_deref().unwrap_or(&self.given)
    }
}

/// The import roots of one hook.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportRoots {
    /// Empty for inline and `configMapRef` hooks, which have no directory.
    hook_dir: Vec<Root>,
    jpath: Vec<Root>,
    global: Vec<Root>,
}

/// An import the boundary refused. The text names the import as written, the path it came to,
/// and the rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BoundaryError {
    #[error("import {import:?}: {resolved} is outside the hook's import roots ({roots})")]
    Outside {
        import: String,
        resolved: String,
        roots: String,
    },
    #[error(
        "import {import:?}: {resolved} is a symlink to {target}, outside the hook's import roots ({roots})"
    )]
    SymlinkOutside {
        import: String,
        resolved: String,
        target: String,
        roots: String,
    },
    #[error("import {import:?}: {resolved} is under {tree}, which hooks may never read")]
    Denied {
        import: String,
        resolved: String,
        tree: &'static str,
    },
}

/// `path` made absolute (against the current directory) with `.` and `..` folded, without
/// touching the file system. `..` at the root stays at the root, as the kernel does.
pub fn absolute_lexical(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(path))
            .unwrap_or_else(|_| Path::new("/").join(path))
    };
    let mut out = PathBuf::new();
    for component in joined.components() {
        match component {
            Component::Prefix(p) => out.push(p.as_os_str()),
            Component::RootDir => out.push(Component::RootDir.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
        }
    }
    out
}

/// The denied tree `path` is under, if any.
pub fn denied_tree(path: &Path) -> Option<&'static str> {
    DENIED.iter().copied().find(|tree| path.starts_with(tree))
}

fn describe(roots: &[Root]) -> String {
    if roots.is_empty() {
        return "none".into();
    }
    roots
        .iter()
        .map(|r| r.given.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl ImportRoots {
    /// Roots of a hook file at `main` (as given) with the hook's `jpath` and the `-J` dirs.
    pub fn for_file(main: &Path, jpath: &[PathBuf], global: &[PathBuf]) -> Self {
        let mut hook_dir = Vec::new();
        let given = absolute_lexical(main);
        if let Some(parent) = given.parent() {
            hook_dir.push(Root::new(parent));
        }
        // A hook file that is a symlink may import beside its target too.
        if let Some(parent) = std::fs::canonicalize(&given)
            .ok()
            .and_then(|real| real.parent().map(Path::to_path_buf))
        {
            let root = Root::new(&parent);
            if !hook_dir.contains(&root) {
                hook_dir.push(root);
            }
        }
        Self {
            hook_dir,
            ..Self::inline(jpath, global)
        }
    }

    /// Roots of an inline or `configMapRef` hook: no directory of its own.
    pub fn inline(jpath: &[PathBuf], global: &[PathBuf]) -> Self {
        Self {
            hook_dir: Vec::new(),
            jpath: jpath.iter().map(|d| Root::new(d)).collect(),
            global: global.iter().map(|d| Root::new(d)).collect(),
        }
    }

    /// Directories searched for a relative import after the importing file's own directory:
    /// the hook's `jpath`, then `-J`.
    pub fn search_dirs(&self) -> impl Iterator<Item = &Path> {
        self.jpath.iter().chain(&self.global).map(Root::dir)
    }

    fn all(&self) -> impl Iterator<Item = &Root> {
        self.hook_dir.iter().chain(&self.jpath).chain(&self.global)
    }

    /// The roots as the error messages show them.
    pub fn describe(&self) -> String {
        let hook_dir = if self.hook_dir.is_empty() {
            "none (inline hook)".to_string()
        } else {
            describe(&self.hook_dir)
        };
        format!(
            "hook dir: {hook_dir}; jpath: {}; -J: {}; and the bundled library",
            describe(&self.jpath),
            describe(&self.global)
        )
    }

    /// Decides one candidate for `import` (the path as written in the hook): `Ok(Some(real
    /// path))` when it is a file inside the roots, `Ok(None)` when there is no such file, an
    /// error when it lies outside them.
    pub fn check(&self, import: &Path, candidate: &Path) -> Result<Option<PathBuf>, BoundaryError> {
        let shown = || import.display().to_string();
        let lexical = absolute_lexical(candidate);
        if let Some(tree) = denied_tree(&lexical) {
            return Err(BoundaryError::Denied {
                import: shown(),
                resolved: lexical.display().to_string(),
                tree,
            });
        }
        if !self.all().any(|root| root.contains_lexical(&lexical)) {
            return Err(BoundaryError::Outside {
                import: shown(),
                resolved: lexical.display().to_string(),
                roots: self.describe(),
            });
        }
        // The kernel's view: symlinks and `..` after them resolved as an open would.
        let Ok(real) = std::fs::canonicalize(candidate) else {
            return Ok(None);
        };
        if let Some(tree) = denied_tree(&real) {
            return Err(BoundaryError::Denied {
                import: shown(),
                resolved: real.display().to_string(),
                tree,
            });
        }
        if !self.all().any(|root| root.contains_real(&real)) {
            return Err(BoundaryError::SymlinkOutside {
                import: shown(),
                resolved: lexical.display().to_string(),
                target: real.display().to_string(),
                roots: self.describe(),
            });
        }
        Ok(real.is_file().then_some(real))
    }

    /// Whether an already resolved real path may be read (a second check where files are read).
    pub fn allows_real(&self, real: &Path) -> bool {
        denied_tree(real).is_none() && self.all().any(|root| root.contains_real(real))
    }
}

/// The directories whose files and subdirectories controller specs may name in `file` and
/// `jpath` (`kubelambda run --hook-dir`). Nothing outside them, and nothing at all when the
/// operator named none: a controller's author must not be able to point a hook at
/// `/var/run/secrets` or make `/` its `jpath`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HookDirs {
    roots: Vec<Root>,
}

/// A spec path outside the operator's hook directories.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {path} is outside the directories hook files may come from ({allowed})")]
pub struct SpecPathError {
    pub field: String,
    pub path: String,
    pub allowed: String,
}

impl HookDirs {
    pub fn new(dirs: &[PathBuf]) -> Self {
        Self {
            roots: dirs.iter().map(|d| Root::new(d)).collect(),
        }
    }

    /// Checks `path`, named at `field` of a controller spec (e.g.
    /// `spec.hooks.sync.jsonnet.file`). Returns it absolute, with symlinks kept, so a mounted
    /// ConfigMap that is updated (its `..data` link replaced) is read anew.
    pub fn confine(&self, path: &str, field: &str) -> Result<PathBuf, SpecPathError> {
        let lexical = absolute_lexical(Path::new(path));
        let refuse = || SpecPathError {
            field: field.to_owned(),
            path: path.to_owned(),
            allowed: self.describe(),
        };
        if denied_tree(&lexical).is_some()
            || !self.roots.iter().any(|r| r.contains_lexical(&lexical))
        {
            return Err(refuse());
        }
        match std::fs::canonicalize(&lexical) {
            Ok(real) if denied_tree(&real).is_some() => Err(refuse()),
            Ok(real) if !self.roots.iter().any(|r| r.contains_real(&real)) => Err(refuse()),
            // A file that is missing now is reported when the hook is evaluated.
            _ => Ok(lexical),
        }
    }

    fn describe(&self) -> String {
        if self.roots.is_empty() {
            "none: start kubelambda run with --hook-dir DIR to allow `file` and `jpath` in controller specs"
                .into()
        } else {
            format!("--hook-dir {}", describe(&self.roots))
        }
    }
}

/// The real path of a hook file, refused when it is missing or under `/proc`, `/sys` or `/dev`.
/// The file itself was chosen by the operator (a path on the command line, or a controller spec's
/// `file` inside `--hook-dir`), so it may live anywhere else.
pub fn hook_file(path: &Path) -> Result<PathBuf, crate::hooks::EvalError> {
    let load_error = |reason: String| crate::hooks::EvalError::Load {
        path: path.display().to_string(),
        reason,
    };
    let real = std::fs::canonicalize(path).map_err(|e| load_error(e.to_string()))?;
    if let Some(tree) = denied_tree(&real) {
        return Err(load_error(format!(
            "{} is under {tree}, which hooks may never read",
            real.display()
        )));
    }
    Ok(real)
}

impl fmt::Display for ImportRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

#[cfg(test)]
mod tests;
