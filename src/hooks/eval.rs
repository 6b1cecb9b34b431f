//! One evaluator for every in-process backend. It runs inside a sandbox worker process (see
//! `hooks::sandbox`), and directly in unit tests.

use super::jsonnet::{Json, JsonnetEvaluator, JsonnetOptions};
use super::tera::{TeraEnv, TeraEvaluator};
use super::{EvalError, FileStamp, HookSource, Limits};

pub struct Evaluator {
    jsonnet: JsonnetEvaluator,
    tera: TeraEvaluator,
    max_output_bytes: usize,
}

impl Evaluator {
    pub fn new(options: JsonnetOptions, limits: &Limits) -> Self {
        Self::with_tera_env(options, limits, TeraEnv::new())
    }

    /// Like [`Evaluator::new`], with the environment variables Tera's `get_env` may read.
    pub fn with_tera_env(options: JsonnetOptions, limits: &Limits, tera_env: TeraEnv) -> Self {
        Self {
            jsonnet: JsonnetEvaluator::new(options, limits.max_stack, limits.max_output_bytes),
            tera: TeraEvaluator::with_env(tera_env),
            max_output_bytes: limits.max_output_bytes,
        }
    }

    /// The files the last successful evaluation of `source` depended on, when its response may
    /// be reused for an identical request; `None` when it may not. Tera templates are never
    /// reused: Tera's built-in `now()` and `get_random()` make them impure.
    pub fn dependencies(&self, source: &HookSource) -> Option<Vec<FileStamp>> {
        match source {
            HookSource::JsonnetFile { .. }
            | HookSource::JsonnetInline { .. }
            | HookSource::JsonnetFileText { .. } => self.jsonnet.dependencies(source),
            HookSource::TeraFile { .. }
            | HookSource::TeraInline { .. }
            | HookSource::Load { .. } => None,
        }
    }

    /// How many hooks are kept loaded (Jsonnet states and Tera templates).
    #[cfg(test)]
    pub fn loaded_hooks(&self) -> usize {
        self.jsonnet.loaded() + self.tera.loaded()
    }

    /// Evaluates one hook for one JSON request; returns the response JSON text.
    pub fn evaluate(&mut self, source: &HookSource, request: &[u8]) -> Result<String, EvalError> {
        // The body is checked (and, for Jsonnet, parsed) before the hook is touched, so a body
        // that is not JSON is refused whatever state the hook is in.
        match source {
            HookSource::JsonnetFile { .. }
            | HookSource::JsonnetInline { .. }
            | HookSource::JsonnetFileText { .. } => {
                let request: Json = serde_json::from_slice(request)
                    .map_err(|e| EvalError::BadRequest(e.to_string()))?;
                self.jsonnet.evaluate(source, &request)
            }
            HookSource::TeraFile { .. } | HookSource::TeraInline { .. } => {
                serde_json::from_slice::<serde::de::IgnoredAny>(request)
                    .map_err(|e| EvalError::BadRequest(e.to_string()))?;
                self.tera.evaluate(source, request, self.max_output_bytes)
            }
            HookSource::Load { hook } => {
                match hook.as_ref() {
                    HookSource::JsonnetFile { .. }
                    | HookSource::JsonnetInline { .. }
                    | HookSource::JsonnetFileText { .. } => self.jsonnet.check(hook)?,
                    HookSource::TeraFile { .. } | HookSource::TeraInline { .. } => {
                        super::tera::check(hook)?
                    }
                    HookSource::Load { .. } => {
                        return Err(EvalError::BadRequest("a Load of a Load".into()));
                    }
                }
                Ok("null\n".into())
            }
        }
    }
}
