//! Where a hook's code comes from, and the limits every evaluation runs under.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The code of one evaluated hook. It travels to the worker processes with every request, so it
/// names files by absolute path and carries inline code by value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum HookSource {
    /// A Jsonnet file; relative imports resolve from its directory, then `jpath`.
    JsonnetFile { path: PathBuf, jpath: Vec<PathBuf> },
    /// Inline Jsonnet (a CompositeController's `jsonnet.source`); `name` appears in errors.
    JsonnetInline {
        name: String,
        code: String,
        jpath: Vec<PathBuf>,
    },
    /// The text of the Jsonnet file at `path` as the engine read it (a followed `file` hook):
    /// evaluated as that file, so errors name it and relative imports resolve beside it, but
    /// the file is not read again. The engine keeps the last good text while the file on disk
    /// is broken.
    JsonnetFileText {
        path: PathBuf,
        code: String,
        jpath: Vec<PathBuf>,
    },
    /// A Tera template file.
    TeraFile { path: PathBuf },
    /// An inline Tera template; `name` appears in errors.
    TeraInline { name: String, template: String },
    /// Loads `hook` without calling it, and answers `null`: Jsonnet is parsed, checked and its
    /// top-level value evaluated, a Tera template is compiled. The engine checks a new version
    /// of a followed hook (`configMapRef`, `file`) this way before using it. It runs in a worker
    /// process like any evaluation: parsing is recursive, and a deeply nested text would
    /// overflow the controller's stack.
    Load { hook: Box<HookSource> },
}

/// A hook file that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: unknown hook type (expected a .jsonnet or .tera file)")]
    UnknownExtension { path: String },
    #[error("{path}: cannot read hook file: {source}")]
    Unreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl HookSource {
    /// Chooses the backend from the file extension and makes the path absolute, so the worker
    /// processes (and error messages) do not depend on the current directory. Reads the file once
    /// to refuse an unreadable hook up front rather than at the first request.
    pub fn from_file(path: &Path, jpath: &[PathBuf]) -> Result<Self, SourceError> {
        let shown = path.display().to_string();
        let absolute = std::path::absolute(path).map_err(|source| SourceError::Unreadable {
            path: shown.clone(),
            source,
        })?;
        std::fs::read(&absolute).map_err(|source| SourceError::Unreadable {
            path: shown.clone(),
            source,
        })?;
        match path.extension().and_then(|e| e.to_str()) {
            Some("jsonnet") | Some("libsonnet") => Ok(Self::JsonnetFile {
                path: absolute,
                jpath: jpath.to_vec(),
            }),
            Some("tera") => Ok(Self::TeraFile { path: absolute }),
            _ => Err(SourceError::UnknownExtension { path: shown }),
        }
    }

    /// A short name for logs and metrics.
    pub fn display_name(&self) -> String {
        match self {
            Self::JsonnetFile { path, .. }
            | Self::JsonnetFileText { path, .. }
            | Self::TeraFile { path } => path.display().to_string(),
            Self::JsonnetInline { name, .. } | Self::TeraInline { name, .. } => name.clone(),
            Self::Load { hook } => hook.display_name(),
        }
    }
}

/// Bounds on one evaluation. Breaking any of them is an error naming the limit; the worker that
/// broke it is replaced, and the process keeps serving.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Wall-clock time for one evaluation; the worker is killed when it runs over.
    pub deadline: Duration,
    /// Jsonnet call depth (go-jsonnet's default is 500).
    pub max_stack: usize,
    /// Size of the rendered response.
    pub max_output_bytes: usize,
    /// Address space of a worker process (RLIMIT_AS): stops hooks that build gigabytes.
    pub max_memory_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(10),
            max_stack: 500,
            max_output_bytes: 16 << 20,
            max_memory_bytes: 2 << 30,
        }
    }
}
