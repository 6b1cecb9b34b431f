//! Metacontroller's webhook backend: POST the request as JSON, expect 200 and a JSON body.

use std::time::Duration;

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook {url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("webhook {url}: timed out after {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    /// 429: the hook asks to be called again later; the parent is requeued without backoff.
    #[error("webhook asked to retry after {retry_after:?} (429 Too Many Requests)")]
    TooManyRequests { retry_after: Duration },
    #[error("webhook {url}: unsupported status code {status} body: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("webhook {url}: response is not JSON: {reason}")]
    NotJson { url: String, reason: String },
}

#[derive(Clone, Debug)]
pub struct Webhook {
    client: reqwest::Client,
    url: String,
    timeout: Duration,
}

/// Metacontroller's default when `timeout` is unset or not positive.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl Webhook {
    pub fn new(client: reqwest::Client, url: String, timeout: Option<Duration>) -> Self {
        Self {
            client,
            url,
            timeout: timeout.filter(|t| !t.is_zero()).unwrap_or(DEFAULT_TIMEOUT),
        }
    }

    pub async fn call(&self, request: &Value) -> Result<Value, WebhookError> {
        let response = self
            .client
            .post(&self.url)
            .timeout(self.timeout)
            .json(request)
            .send()
            .await
            .map_err(|source| self.transport(source))?;
        let status = response.status().as_u16();
        if status == 429 {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(parse_retry_after)
                .unwrap_or_default();
            return Err(WebhookError::TooManyRequests { retry_after });
        }
        let body = response
            .bytes()
            .await
            .map_err(|source| self.transport(source))?;
        if status != 200 {
            return Err(WebhookError::Status {
                url: self.url.clone(),
                status,
                body: String::from_utf8_lossy(&body).chars().take(2048).collect(),
            });
        }
        serde_json::from_slice(&body).map_err(|e| WebhookError::NotJson {
            url: self.url.clone(),
            reason: e.to_string(),
        })
    }

    fn transport(&self, source: reqwest::Error) -> WebhookError {
        if source.is_timeout() {
            WebhookError::Timeout {
                url: self.url.clone(),
                timeout: self.timeout,
            }
        } else {
            WebhookError::Transport {
                url: self.url.clone(),
                source,
            }
        }
    }
}

/// `Retry-After` is either seconds or an HTTP date; anything unreadable means "now", as in
/// Metacontroller.
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
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_dates_and_junk() {
        assert_eq!(parse_retry_after("7"), Duration::from_secs(7));
        assert_eq!(parse_retry_after("soon"), Duration::ZERO);
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        let secs = parse_retry_after(&httpdate::fmt_http_date(later)).as_secs();
        assert!((100..=120).contains(&secs), "{secs}");
    }
}
