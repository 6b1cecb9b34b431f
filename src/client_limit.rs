//! A client-side rate limit on Kubernetes API requests: Metacontroller's `--client-go-qps` and
//! `--client-go-burst` (client-go's token bucket, shared by every request of the process).
//!
//! kubelambda leaves it off unless one of those flags is given: the API server has its own
//! priority and fairness, and Metacontroller's default of 5 requests/s (burst 10) made 300
//! parents take 238 s to sync instead of 2.5 s. It exists so that a Metacontroller deployment
//! whose arguments ask for a limit keeps one.
//!
//! The limit is a [`tower::Layer`] placed in the kube client's service stack. The client wraps
//! its stack in a `Buffer`, which calls `poll_ready` then `call` for one request at a time, so
//! waiting in `poll_ready` holds back every request behind it in arrival order, as client-go's
//! shared limiter does.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Requests per second and how many may go at once after a quiet spell.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second; finite and greater than zero.
    pub qps: f64,
    /// Requests allowed back to back when the bucket is full; at least 1.
    pub burst: u32,
}

impl RateLimit {
    /// client-go's default burst, used when only `--client-go-qps` is given.
    pub const DEFAULT_BURST: u32 = 10;
    /// client-go's default rate, used when only `--client-go-burst` is given.
    pub const DEFAULT_QPS: f64 = 5.0;
}

/// A token bucket in its "generic cell rate" form: one instant, the theoretical arrival time of
/// the next request if requests came exactly every `interval`, instead of a fractional token
/// count. Integer time arithmetic keeps it exact under Tokio's paused clock in tests.
#[derive(Debug)]
pub struct TokenBucket {
    /// Time one token takes to come back: `1 / qps`.
    interval: Duration,
    /// How far ahead of the schedule a request may go: `(burst - 1) * interval`.
    tolerance: Duration,
    /// When the bucket will be full again (or earlier: it is full now).
    full_at: Mutex<Instant>,
}

impl TokenBucket {
    /// A full bucket. `limit` must already be valid (the command line checks it).
    pub fn new(limit: RateLimit) -> Self {
        let qps = if limit.qps.is_finite() && limit.qps > 0.0 {
            limit.qps
        } else {
            RateLimit::DEFAULT_QPS
        };
        // Clamp so that an absurdly small rate cannot overflow `Duration`.
        let interval = Duration::from_secs_f64((1.0 / qps).min(1e9));
        let tolerance = interval.saturating_mul(limit.burst.max(1) - 1);
        Self {
            interval,
            tolerance,
            full_at: Mutex::new(Instant::now()),
        }
    }

    /// Time between two requests at the sustained rate.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Takes one token and returns when it may be used: now when the bucket has one, otherwise
    /// the moment it will. The token is taken at once, so callers are served in the order they
    /// asked, however long each waits.
    pub fn reserve(&self) -> Instant {
        let now = Instant::now();
        // A poisoned lock only means another thread panicked between two plain assignments; the
        // instant inside is still a valid schedule.
        let mut full_at = self.full_at.lock().unwrap_or_else(|e| e.into_inner());
        let scheduled = (*full_at).max(now);
        *full_at = scheduled + self.interval;
        if scheduled <= now + self.tolerance {
            now
        } else {
            scheduled - self.tolerance
        }
    }
}

/// Adds a shared [`TokenBucket`] in front of a service.
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    bucket: Arc<TokenBucket>,
}

impl RateLimitLayer {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            bucket: Arc::new(TokenBucket::new(limit)),
        }
    }
}

impl<S> tower::Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimited {
            inner,
            bucket: self.bucket.clone(),
            wait: None,
            permit: false,
        }
    }
}

/// A service that is ready only when the bucket gives it a token.
pub struct RateLimited<S> {
    inner: S,
    bucket: Arc<TokenBucket>,
    /// Sleeping until the reserved token may be used.
    wait: Option<Pin<Box<Sleep>>>,
    /// A token is held for the next `call`.
    permit: bool,
}

impl<S, R> tower::Service<R> for RateLimited<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if !self.permit {
            if self.wait.is_none() {
                let at = self.bucket.reserve();
                if at > Instant::now() {
                    self.wait = Some(Box::pin(tokio::time::sleep_until(at)));
                } else {
                    self.permit = true;
                }
            }
            if let Some(wait) = self.wait.as_mut() {
                if wait.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.wait = None;
                self.permit = true;
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        // Tower's contract is that `poll_ready` returned ready first; the client's buffer keeps
        // it. Should a caller not, the request still goes (unlimited) rather than panicking.
        self.permit = false;
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tower::{Layer, Service, ServiceExt};

    use super::*;

    fn limit(qps: f64, burst: u32) -> RateLimit {
        RateLimit { qps, burst }
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_bucket_gives_the_burst_at_once_then_one_per_interval() {
        let bucket = TokenBucket::new(limit(5.0, 10));
        let start = Instant::now();
        let granted: Vec<Instant> = (0..13).map(|_| bucket.reserve()).collect();
        assert!(granted[..10].iter().all(|&at| at == start));
        assert_eq!(granted[10], start + bucket.interval());
        assert_eq!(granted[11], start + bucket.interval() * 2);
        assert_eq!(granted[12], start + bucket.interval() * 3);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_bucket_refills_up_to_the_burst_and_no_further() {
        let bucket = TokenBucket::new(limit(5.0, 3));
        for _ in 0..3 {
            bucket.reserve();
        }
        tokio::time::advance(Duration::from_secs(60)).await;
        let now = Instant::now();
        let granted: Vec<Instant> = (0..4).map(|_| bucket.reserve()).collect();
        assert_eq!(granted[..3], [now, now, now]);
        assert_eq!(granted[3], now + bucket.interval());
    }

    /// Sends `n` requests one after another through the limited service, counting those that
    /// got through; the count is read at chosen points of the paused clock.
    fn spawn_client(qps: f64, burst: u32, n: usize) -> Arc<AtomicUsize> {
        let sent = Arc::new(AtomicUsize::new(0));
        let counter = sent.clone();
        let inner = tower::service_fn(move |_: ()| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, std::convert::Infallible>(()) }
        });
        let mut service = RateLimitLayer::new(limit(qps, burst)).layer(inner);
        tokio::spawn(async move {
            for _ in 0..n {
                let ready = service.ready().await.expect("infallible");
                ready.call(()).await.expect("infallible");
            }
        });
        sent
    }

    #[tokio::test(start_paused = true)]
    async fn the_layer_lets_through_the_burst_then_qps_per_second() {
        let start = Instant::now();
        let sent = spawn_client(5.0, 10, 40);
        // Between two token times, so rounding of the interval cannot matter.
        tokio::time::sleep_until(start + Duration::from_millis(100)).await;
        assert_eq!(sent.load(Ordering::SeqCst), 10, "the burst");
        tokio::time::sleep_until(start + Duration::from_millis(1_100)).await;
        assert_eq!(
            sent.load(Ordering::SeqCst),
            15,
            "burst + 5 in the first second"
        );
        tokio::time::sleep_until(start + Duration::from_millis(4_100)).await;
        assert_eq!(sent.load(Ordering::SeqCst), 30, "+ 5 in each later second");
        tokio::time::sleep_until(start + Duration::from_secs(60)).await;
        assert_eq!(
            sent.load(Ordering::SeqCst),
            40,
            "everything goes in the end"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn fractional_rates_work() {
        let start = Instant::now();
        let sent = spawn_client(0.5, 1, 5);
        tokio::time::sleep_until(start + Duration::from_millis(100)).await;
        assert_eq!(sent.load(Ordering::SeqCst), 1);
        tokio::time::sleep_until(start + Duration::from_millis(2_100)).await;
        assert_eq!(sent.load(Ordering::SeqCst), 2, "one every two seconds");
        tokio::time::sleep_until(start + Duration::from_millis(8_100)).await;
        assert_eq!(sent.load(Ordering::SeqCst), 5);
    }
}
