//! [`Hook`]: what the engine calls. One type whatever the backend.

use serde_json::Value;

use super::sandbox::Sandbox;
use super::webhook::{Webhook, WebhookError};
use super::{EvalError, HookSource};

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    #[error("the hook returned text that is not JSON: {0}")]
    NotJson(String),
}

impl HookError {
    /// When the hook asked to be called again after a definite delay: HTTP 429 with a
    /// positive Retry-After. A 429 without one (or with 0, or an unreadable or past value)
    /// gives `None`, so the engine uses its per-key exponential backoff instead of requeueing
    /// at once; taking "0" literally made a busy hook server get ~110 calls a second.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Webhook(WebhookError::TooManyRequests { retry_after, .. })
                if !retry_after.is_zero() =>
            {
                Some(*retry_after)
            }
            _ => None,
        }
    }
}

/// A callable hook.
#[derive(Clone)]
pub enum Hook {
    /// Jsonnet or Tera, evaluated in the sandbox worker pool.
    Evaluated {
        sandbox: Sandbox,
        source: HookSource,
    },
    /// Metacontroller's webhook.
    Webhook(Webhook),
}

impl Hook {
    pub async fn call(&self, request: &Value) -> Result<Value, HookError> {
        match self {
            Self::Evaluated { sandbox, source } => {
                let body = serde_json::to_vec(request)
                    .map_err(|e| EvalError::BadRequest(e.to_string()))?;
                let text = sandbox.evaluate(source, &body).await?;
                serde_json::from_str(&text).map_err(|e| HookError::NotJson(e.to_string()))
            }
            Self::Webhook(webhook) => Ok(webhook.call(request).await?),
        }
    }
}
