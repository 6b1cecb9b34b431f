//! `kubelambda render`: evaluate one hook once, offline, through the same sandbox as httpd and the
//! controller.

pub mod controller;

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::hooks::sandbox::Sandbox;
use crate::hooks::{EvalError, HookSource, SourceError};

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("cannot read the request from {from}: {source}")]
    Request {
        from: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{hook}: {error}")]
    Eval { hook: String, error: EvalError },
}

/// Reads the request from a file, or from stdin when `request` is `-`.
pub fn read_request(request: &Path) -> Result<Vec<u8>, RenderError> {
    if request == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|source| RenderError::Request {
                from: "stdin".into(),
                source,
            })?;
        return Ok(buf);
    }
    std::fs::read(request).map_err(|source| RenderError::Request {
        from: request.display().to_string(),
        source,
    })
}

/// Evaluates `hook` for `request` and returns the response JSON text.
pub async fn render(
    sandbox: &Sandbox,
    hook: &Path,
    jpath: &[PathBuf],
    request: &[u8],
) -> Result<String, RenderError> {
    let source = HookSource::from_file(hook, jpath)?;
    sandbox
        .evaluate(&source, request)
        .await
        .map_err(|error| RenderError::Eval {
            hook: hook.display().to_string(),
            error,
        })
}
