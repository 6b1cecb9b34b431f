//! Metacontroller's webhook backend: POST the request as JSON, expect 200 and a JSON body.
//!
//! Around that core: the connection settings resolved when the controller starts (TLS roots,
//! client certificate, `Authorization` header; see [`tls`] and [`auth`]), the ETag cache
//! ([`etag`]), a cap on the response size ([`body`]), 429 handling, and transport errors that
//! name their cause.

pub mod auth;
pub mod body;
pub mod etag;
pub mod tls;
mod transport;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;
use http::header::{AUTHORIZATION, ETAG, IF_NONE_MATCH, RETRY_AFTER};
use serde_json::Value;

use body::{CappedBody, TooLarge, format_size};
use etag::{Cached, EtagCache, RootKey};
pub use transport::Cause;

/// Metacontroller's default when `timeout` is unset or not positive.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The response size cap used unless the caller passes another (the evaluator's default
/// `--max-output`, so both kinds of hook have the same bound).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 << 20;

/// How much of an error response is quoted in the error.
const ERROR_BODY_QUOTE_BYTES: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The request did not get a response: refused, DNS, TLS, reset...
    #[error("webhook {url}: {cause}")]
    Transport { url: String, cause: Cause },
    #[error("webhook {url}: timed out after {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    /// 429: the hook asks to be called again later. A positive `retry_after` requeues the
    /// parent after that delay; zero (no or unreadable `Retry-After`) leaves the parent to the
    /// engine's per-key backoff, so a hook that answers 429 at once is not hammered.
    #[error("webhook {url}: 429 Too Many Requests, {}", describe_retry(*.retry_after))]
    TooManyRequests { url: String, retry_after: Duration },
    #[error("webhook {url}: unsupported status code {status} body: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    /// The body passed the size cap; reading stopped there.
    #[error("webhook {url}: response body exceeds the {} limit (--max-output)", format_size(*.limit))]
    TooLarge { url: String, limit: usize },
    #[error("webhook {url}: response is not JSON: {reason}")]
    NotJson { url: String, reason: String },
}

fn describe_retry(retry_after: Duration) -> String {
    if retry_after.is_zero() {
        "without a usable Retry-After; backing off".to_string()
    } else {
        format!("retry after {retry_after:?}")
    }
}

/// How one webhook is called, resolved from its spec when the controller starts.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub url: String,
    /// Whole-request timeout; zero means [`DEFAULT_TIMEOUT`].
    pub timeout: Duration,
    /// The `Authorization` header, from `authorization` or `basicAuth`.
    pub authorization: Option<HeaderValue>,
    /// ETag caching: entry lifetime and sweep interval. `None` turns it off.
    pub etag: Option<EtagSettings>,
    /// Largest accepted response body.
    pub max_response_bytes: usize,
}

/// The two durations of an ETag cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EtagSettings {
    pub timeout: Duration,
    pub cleanup: Duration,
}

impl WebhookConfig {
    /// A plain webhook: default timeout, no credentials, no ETag cache, the default size cap.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            timeout: DEFAULT_TIMEOUT,
            authorization: None,
            etag: None,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// A callable webhook. Clones share the HTTP client and the ETag cache.
#[derive(Clone)]
pub struct Webhook {
    client: reqwest::Client,
    url: String,
    timeout: Duration,
    authorization: Option<HeaderValue>,
    etag: Option<Arc<EtagCache>>,
    max_response_bytes: usize,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .field("authorization", &self.authorization.is_some())
            .field("etag", &self.etag.is_some())
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
    }
}

impl Webhook {
    /// A webhook calling through `client` (which carries its TLS settings).
    pub fn new(client: reqwest::Client, config: WebhookConfig) -> Self {
        Self {
            client,
            timeout: Some(config.timeout)
                .filter(|t| !t.is_zero())
                .unwrap_or(DEFAULT_TIMEOUT),
            authorization: config.authorization,
            etag: config.etag.map(|settings| {
                Arc::new(EtagCache::new(
                    settings.timeout,
                    settings.cleanup,
                    Instant::now(),
                ))
            }),
            max_response_bytes: config.max_response_bytes,
            url: config.url,
        }
    }

    /// The URL this webhook posts to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// POSTs `request` and returns the JSON answer: the 200 body, or the cached body when the
    /// hook answers 304/412 to our `If-None-Match`.
    pub async fn call(&self, request: &Value) -> Result<Value, WebhookError> {
        let cache = self
            .etag
            .as_deref()
            .and_then(|cache| RootKey::of(request).map(|key| (cache, key)));
        let previous = cache
            .as_ref()
            .and_then(|(cache, key)| cache.get(key, Instant::now()));
        let mut builder = self
            .client
            .post(&self.url)
            .timeout(self.timeout)
            .json(request);
        if let Some(authorization) = &self.authorization {
            builder = builder.header(AUTHORIZATION, authorization.clone());
        }
        if let Some(previous) = &previous {
            builder = builder.header(IF_NONE_MATCH, previous.etag.clone());
        }
        let mut response = builder.send().await.map_err(|e| self.transport(&e))?;
        let status = response.status().as_u16();
        // Only an answer to our If-None-Match means "unchanged"; otherwise 304/412 are errors.
        if matches!(status, 304 | 412)
            && let Some(previous) = previous
        {
            return Ok(previous.body);
        }
        match status {
            200 => {}
            429 => {
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(parse_retry_after)
                    .unwrap_or_default();
                return Err(WebhookError::TooManyRequests {
                    url: self.url.clone(),
                    retry_after,
                });
            }
            _ => {
                return Err(WebhookError::Status {
                    url: self.url.clone(),
                    status,
                    body: self.error_body(&mut response).await,
                });
            }
        }
        let etag = response.headers().get(ETAG).cloned();
        let body = self.read_body(&mut response).await?;
        let value: Value = serde_json::from_slice(&body).map_err(|e| WebhookError::NotJson {
            url: self.url.clone(),
            reason: e.to_string(),
        })?;
        if let Some((cache, key)) = cache {
            match etag {
                Some(etag) => cache.insert(
                    key,
                    Cached {
                        etag,
                        body: value.clone(),
                    },
                    Instant::now(),
                ),
                None => cache.remove(&key),
            }
        }
        Ok(value)
    }

    /// The body, at most `max_response_bytes`; reading stops as soon as it is passed.
    async fn read_body(&self, response: &mut reqwest::Response) -> Result<Vec<u8>, WebhookError> {
        let too_large = |_: TooLarge| WebhookError::TooLarge {
            url: self.url.clone(),
            limit: self.max_response_bytes,
        };
        let mut body = CappedBody::new(self.max_response_bytes, response.content_length())
            .map_err(too_large)?;
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport(&e))? {
            body.push(&chunk).map_err(too_large)?;
        }
        Ok(body.into_bytes())
    }

    /// The start of an error response, for the message; read errors just end the quote.
    async fn error_body(&self, response: &mut reqwest::Response) -> String {
        let limit = ERROR_BODY_QUOTE_BYTES.min(self.max_response_bytes);
        let mut body = match CappedBody::new(limit, None) {
            Ok(body) => body,
            Err(TooLarge) => return String::new(),
        };
        while let Ok(Some(chunk)) = response.chunk().await {
            if body.push_truncating(&chunk) {
                break;
            }
        }
        String::from_utf8_lossy(&body.into_bytes()).into_owned()
    }

    fn transport(&self, error: &reqwest::Error) -> WebhookError {
        match transport::cause(error) {
            Cause::Timeout => WebhookError::Timeout {
                url: self.url.clone(),
                timeout: self.timeout,
            },
            cause => WebhookError::Transport {
                url: self.url.clone(),
                cause,
            },
        }
    }
}

/// `Retry-After` is either seconds or an HTTP date; anything unreadable means "now", as in
/// Metacontroller. "Now" is then not taken literally: see [`WebhookError::TooManyRequests`].
pub fn parse_retry_after(value: &str) -> Duration {
    if let Ok(secs) = value.trim().parse::<u64>() {
        return Duration::from_secs(secs);
    }
    httpdate_delay(value).unwrap_or_default()
}

fn httpdate_delay(value: &str) -> Option<Duration> {
    let when = httpdate::parse_http_date(value.trim()).ok()?;
    when.duration_since(std::time::SystemTime::now()).ok()
}

#[cfg(test)]
mod tests;
