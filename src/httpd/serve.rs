//! Accepting and serving connections within the limits: at most `--max-connections` open (more
//! are answered 503 and closed, so descriptors never run out), the header and idle deadlines on
//! every connection ([`TimedIo`]), and a shutdown that stops accepting, lets requests in flight
//! finish for `--shutdown-grace`, then closes whatever is left.
//!
//! HTTP/1.1 only, as `kubecfg --alpha httpd` (Go's server without TLS) and Metacontroller's
//! webhook client speak it; not offering cleartext HTTP/2 also keeps every request under the
//! deadlines above.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::conn_metrics::{ConnMetrics, Reason};
use super::limits::{HttpdLimits, REJECTION_SLOTS};
use super::timed_io::{ConnState, TimedIo, Timeouts, Trip};

/// What a connection past the cap receives before it is closed.
const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
    content-type: text/plain; charset=utf-8\r\n\
    retry-after: 1\r\n\
    content-length: 54\r\n\
    connection: close\r\n\r\n\
    too many connections (--max-connections); retry later\n";

/// How long a refused connection is kept to deliver its 503 and read what the client sent.
const REJECTION_LINGER: Duration = Duration::from_secs(1);

/// After an accept fails for lack of descriptors or memory, the wait before the next one (the
/// failure repeats at once otherwise, and the loop would spin).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until `shutdown` resolves, then drains (see module docs).
pub async fn run(
    listener: TcpListener,
    router: axum::Router,
    limits: &HttpdLimits,
    metrics: ConnMetrics,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let rejection_slots = Arc::new(Semaphore::new(REJECTION_SLOTS));
    let stop = CancellationToken::new();
    let timeouts = Timeouts {
        header: limits.header_timeout,
        idle: limits.idle_timeout,
    };
    let mut tasks = JoinSet::new();
    let mut at_cap = false;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        accept_failed(&e, &metrics).await;
                        continue;
                    }
                };
                match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        at_cap = false;
                        let conn = Connection {
                            stream,
                            peer,
                            router: router.clone(),
                            timeouts,
                            metrics: metrics.clone(),
                            stop: stop.clone(),
                            _slot: slot,
                        };
                        tasks.spawn(conn.serve());
                    }
                    Err(_) => {
                        metrics.rejected(Reason::Connections);
                        if !at_cap {
                            tracing::info!(
                                "connection limit reached: {} connections open (--max-connections); \
                                 answering new ones 503",
                                limits.max_connections
                            );
                            at_cap = true;
                        }
                        tracing::debug!(%peer, "connection refused: --max-connections {} reached", limits.max_connections);
                        refuse(stream, &rejection_slots, &mut tasks);
                    }
                }
            }
        }
    }
    drop(listener);
    stop.cancel();
    let open = tasks.len();
    tracing::info!(
        "stopped accepting; waiting up to {} for {open} open connection(s)",
        humantime::format_duration(limits.shutdown_grace)
    );
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::info!(
            "shutdown grace of {} ran out; closing {} connection(s) still open",
            humantime::format_duration(limits.shutdown_grace),
            tasks.len()
        );
        tasks.shutdown().await;
    }
}

/// Logs an accept failure; waits a little when it is for lack of resources.
async fn accept_failed(error: &std::io::Error, metrics: &ConnMetrics) {
    let starved = matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    );
    if starved {
        metrics.rejected(Reason::AcceptFailed);
        tracing::warn!("cannot accept a connection: {error}; retrying in {ACCEPT_BACKOFF:?}");
        tokio::time::sleep(ACCEPT_BACKOFF).await;
    } else {
        tracing::debug!("accept failed: {error}");
    }
}

/// Answers a connection past the cap with 503. While few are being refused, each is kept a
/// moment to read what the client sent, so closing does not reset the connection before the
/// client reads the answer; past [`REJECTION_SLOTS`] of them, the answer is written without
/// waiting and the socket closed at once.
fn refuse(stream: TcpStream, rejection_slots: &Arc<Semaphore>, tasks: &mut JoinSet<()>) {
    match rejection_slots.clone().try_acquire_owned() {
        Ok(slot) => {
            tasks.spawn(linger_refusal(stream, slot));
        }
        Err(_) => {
            let _ = stream.try_write(BUSY_RESPONSE);
        }
    }
}

async fn linger_refusal(mut stream: TcpStream, _slot: OwnedSemaphorePermit) {
    let _ = tokio::time::timeout(REJECTION_LINGER, async {
        stream.write_all(BUSY_RESPONSE).await?;
        stream.shutdown().await?;
        let mut scratch = [0u8; 4096];
        while stream.read(&mut scratch).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// One accepted connection and what serving it needs.
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    router: axum::Router,
    timeouts: Timeouts,
    metrics: ConnMetrics,
    stop: CancellationToken,
    /// Frees a place under `--max-connections` when the connection ends.
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    async fn serve(self) {
        let Connection {
            stream,
            peer,
            router,
            timeouts,
            metrics,
            stop,
            _slot,
        } = self;
        let _open = metrics.open_connection();
        // Responses go out whole: no waiting for the client's acknowledgement of a previous
        // segment (Nagle), as Go's server does.
        let _ = stream.set_nodelay(true);
        let state = Arc::new(ConnState::default());
        let io = TokioIo::new(TimedIo::new(stream, state.clone(), timeouts));
        let requests = state.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let guard = requests.begin_request();
            let router = router.clone();
            async move {
                let _guard = guard;
                router.oneshot(request.map(Body::new)).await
            }
        });
        let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
        let mut conn = std::pin::pin!(conn);

        let result = tokio::select! {
            result = conn.as_mut() => result,
            () = stop.cancelled() => {
                state.close_when_idle();
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        match state.trip() {
            Some(trip) => report_trip(trip, peer, timeouts, &metrics),
            None => {
                if let Err(e) = result {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
            }
        }
    }
}

fn report_trip(trip: Trip, peer: SocketAddr, timeouts: Timeouts, metrics: &ConnMetrics) {
    let header = humantime::format_duration(timeouts.header);
    let idle = humantime::format_duration(timeouts.idle);
    match trip {
        Trip::Silent => {
            metrics.rejected(Reason::HeaderTimeout);
            tracing::debug!(%peer, "closed a connection that sent nothing within --header-timeout {header}");
        }
        Trip::Head => {
            metrics.rejected(Reason::HeaderTimeout);
            tracing::debug!(%peer, "408: request head not complete within --header-timeout {header}");
        }
        Trip::Idle => {
            metrics.rejected(Reason::IdleTimeout);
            tracing::debug!(%peer, "closed a keep-alive connection idle for --idle-timeout {idle}");
        }
        Trip::Write => {
            metrics.rejected(Reason::WriteTimeout);
            tracing::debug!(%peer, "abandoned a response the client did not read for --idle-timeout {idle}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busy_response_declares_its_length() {
        let text = std::str::from_utf8(BUSY_RESPONSE).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let declared: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: ")?.parse().ok())
            .expect("content-length");
        assert_eq!(declared, body.len());
    }
}
