//! Evaluation errors. They cross the worker-process boundary, so they hold text, not sources.

use serde::{Deserialize, Serialize};

/// Which limit an evaluation broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LimitKind {
    Deadline,
    StackDepth,
    OutputSize,
    Memory,
}

impl std::fmt::Display for LimitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Deadline => "deadline",
            Self::StackDepth => "stack depth",
            Self::OutputSize => "output size",
            Self::Memory => "memory",
        })
    }
}

/// Why evaluating a Jsonnet or Tera hook failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum EvalError {
    /// The request is not JSON. Only this one is the caller's fault (HTTP 400).
    #[error("request body is not valid JSON: {0}")]
    BadRequest(String),
    /// The hook's code failed: the text names file, line and column.
    #[error("{0}")]
    Hook(String),
    /// The hook broke one of its limits.
    #[error("hook exceeded its {limit} limit: {detail}")]
    Limit { limit: LimitKind, detail: String },
    /// The hook's file could not be read.
    #[error("cannot load hook {path}: {reason}")]
    Load { path: String, reason: String },
    /// The worker process failed for a reason other than a limit.
    #[error("evaluation worker failed: {0}")]
    Worker(String),
}

impl EvalError {
    pub fn limit(limit: LimitKind, detail: impl Into<String>) -> Self {
        Self::Limit {
            limit,
            detail: detail.into(),
        }
    }
}
