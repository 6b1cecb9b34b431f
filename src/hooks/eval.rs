//! One evaluator for every in-process backend. It runs inside a sandbox worker process (see
//! `hooks::sandbox`), and directly in unit tests.

use super::jsonnet::{JsonnetEvaluator, JsonnetOptions};
use super::tera::TeraEvaluator;
use super::{EvalError, HookSource, Limits};

pub struct Evaluator {
    jsonnet: JsonnetEvaluator,
    tera: TeraEvaluator,
    max_output_bytes: usize,
}

impl Evaluator {
    pub fn new(options: JsonnetOptions, limits: &Limits) -> Self {
        Self {
            jsonnet: JsonnetEvaluator::new(options, limits.max_stack, limits.max_output_bytes),
            tera: TeraEvaluator::default(),
            max_output_bytes: limits.max_output_bytes,
        }
    }

    /// Evaluates one hook for one JSON request; returns the response JSON text.
    pub fn evaluate(&mut self, source: &HookSource, request: &[u8]) -> Result<String, EvalError> {
        // Refuse a body that is not JSON before touching the hook, whatever the hook's state.
        serde_json::from_slice::<serde::de::IgnoredAny>(request)
            .map_err(|e| EvalError::BadRequest(e.to_string()))?;
        match source {
            HookSource::JsonnetFile { .. } | HookSource::JsonnetInline { .. } => {
                self.jsonnet.evaluate(source, request)
            }
            HookSource::TeraFile { .. } | HookSource::TeraInline { .. } => {
                self.tera.evaluate(source, request, self.max_output_bytes)
            }
        }
    }
}
