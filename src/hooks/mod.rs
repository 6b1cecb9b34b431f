//! The hook contract and its backends.
//!
//! Every hook is a function from a JSON request to a JSON response. The engine, `httpd` and `render`
//! only see [`Hook::call`]; how a hook is evaluated (Jsonnet or Tera inside a sandboxed worker
//! process, or an HTTP webhook) stays behind it.

pub mod eval;
pub mod jsonnet;
pub mod protocol;
pub mod response_cache;
pub mod sandbox;
pub mod tera;
pub mod webhook;

mod boundary;
mod error;
mod hook;
mod source;
mod stamp;

pub use stamp::FileStamp;

pub use boundary::{BoundaryError, HookDirs, SpecPathError};
pub use error::{EvalError, LimitKind};
pub use hook::{Hook, HookError};
pub use source::{HookSource, Limits, SourceError};

#[cfg(test)]
mod tests;
