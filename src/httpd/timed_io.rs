//! A connection's socket that enforces the header and idle deadlines itself.
//!
//! Why not hyper's `header_read_timeout`: it starts when hyper waits for a request head, so it
//! also closes idle keep-alive connections, and it never answers: a client whose head stalls
//! just sees the connection drop. Here the socket follows the connection through its phases
//! (no byte yet, head arriving, request being served, waiting for the next request) and applies
//! the matching deadline: `--header-timeout` until the head is complete (then 408, or a silent
//! close if nothing was sent), `--idle-timeout` between requests and while a response stops
//! moving. The request body's deadline is the handler's (`--body-timeout`), which can answer 408
//! with a message.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Which deadline ended a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trip {
    /// Nothing was sent within `--header-timeout` of the connection's start.
    Silent = 1,
    /// A request head was started but not finished within `--header-timeout`.
    Head,
    /// No new request within `--idle-timeout` after the last response.
    Idle,
    /// The client read nothing of a response for `--idle-timeout`.
    Write,
}

impl Trip {
    fn from_u8(value: u8) -> Option<Self> {
        [Self::Silent, Self::Head, Self::Idle, Self::Write]
            .into_iter()
            .find(|t| *t as u8 == value)
    }
}

/// What the connection's socket and its request handlers share.
#[derive(Debug, Default)]
pub struct ConnState {
    started: AtomicU64,
    finished: AtomicU64,
    closing: AtomicBool,
    trip: AtomicU8,
    /// The connection's task, woken when a request finishes: hyper does not read again after a
    /// response while its last read is still pending, and the idle deadline must be armed.
    reader: AtomicWaker,
}

impl ConnState {
    /// Marks a request as being served until the returned guard is dropped.
    pub fn begin_request(self: &Arc<Self>) -> RequestGuard {
        self.started.fetch_add(1, Ordering::Relaxed);
        RequestGuard(self.clone())
    }

    /// Requests started so far, and whether one is being served now.
    fn requests(&self) -> (u64, bool) {
        let started = self.started.load(Ordering::Relaxed);
        (started, started != self.finished.load(Ordering::Relaxed))
    }

    /// The server is stopping: a connection waiting for a request closes at its next read that
    /// finds nothing to read.
    pub fn close_when_idle(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    /// The deadline that ended the connection, if one did.
    pub fn trip(&self) -> Option<Trip> {
        Trip::from_u8(self.trip.load(Ordering::Relaxed))
    }

    fn set_trip(&self, trip: Trip) {
        self.trip.store(trip as u8, Ordering::Relaxed);
    }
}

/// Ends a request's "being served" phase when dropped (also when its future is abandoned).
pub struct RequestGuard(Arc<ConnState>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::Relaxed);
        self.0.reader.wake();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Connected, no byte received yet.
    Fresh,
    /// Bytes of a request head received, the head not complete.
    Head,
    /// A request is being served (its body read, its hook evaluated).
    Request,
    /// The last response is done; waiting for the next request.
    Waiting,
}

/// A deadline that can be armed, disarmed and re-armed without allocating.
struct Deadline {
    sleep: Pin<Box<Sleep>>,
    armed: bool,
}

impl Deadline {
    fn new(after: Duration) -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep(after)),
            armed: true,
        }
    }

    fn arm(&mut self, after: Duration) {
        self.sleep.as_mut().reset(Instant::now() + after);
        self.armed = true;
    }

    /// Ready once an armed deadline has passed; registers the waker otherwise.
    fn poll_passed(&mut self, cx: &mut Context<'_>) -> bool {
        if self.armed && self.sleep.as_mut().poll(cx).is_ready() {
            self.armed = false;
            return true;
        }
        false
    }
}

/// The timeouts the socket applies.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
}

/// A socket with the connection's header and idle deadlines (see the module documentation).
pub struct TimedIo<S> {
    inner: S,
    state: Arc<ConnState>,
    timeouts: Timeouts,
    phase: Phase,
    read_deadline: Deadline,
    write_deadline: Deadline,
    /// Requests started as of the last look at `state`.
    seen_requests: u64,
    /// Bytes were written and not yet flushed: a 408 written now would land inside a response.
    unflushed: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> TimedIo<S> {
    pub fn new(inner: S, state: Arc<ConnState>, timeouts: Timeouts) -> Self {
        let mut write_deadline = Deadline::new(timeouts.idle);
        write_deadline.armed = false;
        Self {
            inner,
            state,
            read_deadline: Deadline::new(timeouts.header),
            write_deadline,
            timeouts,
            phase: Phase::Fresh,
            seen_requests: 0,
            unflushed: false,
        }
    }

    /// Follows the request handlers: a request being served means its head is complete; once
    /// none is (also when one started and finished since the last look), the connection waits
    /// for the next request.
    fn follow_requests(&mut self) {
        let (started, serving) = self.state.requests();
        let new_requests = started != self.seen_requests;
        self.seen_requests = started;
        if serving {
            if self.phase != Phase::Request {
                self.phase = Phase::Request;
                self.read_deadline.armed = false;
            }
        } else if new_requests || self.phase == Phase::Request {
            self.phase = Phase::Waiting;
            self.read_deadline.arm(self.timeouts.idle);
        }
    }

    /// The read deadline passed: closes quietly (end of stream) when no request was started, or
    /// answers 408 and fails the read when a head was.
    fn expire(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.phase {
            Phase::Fresh => self.state.set_trip(Trip::Silent),
            // Still delivering the last response, and the client took none of it for as long.
            Phase::Waiting if self.write_deadline.armed => self.state.set_trip(Trip::Write),
            Phase::Waiting => self.state.set_trip(Trip::Idle),
            // Never armed while a request is served: the body has its own deadline.
            Phase::Request => {}
            Phase::Head => {
                self.state.set_trip(Trip::Head);
                if !self.unflushed {
                    self.send_request_timeout(cx);
                }
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request head not complete within --header-timeout",
                )));
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Best effort, without waiting: a full socket buffer means a client that reads nothing.
    fn send_request_timeout(&mut self, cx: &mut Context<'_>) {
        let body = format!(
            "request head not complete within --header-timeout {}\n",
            humantime::format_duration(self.timeouts.header)
        );
        let response = format!(
            "HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut rest = response.as_bytes();
        while !rest.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, rest) {
                Poll::Ready(Ok(n)) if n > 0 => rest = &rest[n..],
                _ => return,
            }
        }
        let _ = Pin::new(&mut self.inner).poll_flush(cx);
        let _ = Pin::new(&mut self.inner).poll_shutdown(cx);
        // Read what the client already sent: closing a socket with unread input resets the
        // connection, and the client could lose the answer.
        let mut scratch = [0u8; 4096];
        for _ in 0..16 {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {}
                _ => return,
            }
        }
    }

    /// A write that cannot proceed: fails once the client has read nothing for the idle timeout.
    fn write_stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if !self.write_deadline.armed {
            self.write_deadline.arm(self.timeouts.idle);
        }
        if self.write_deadline.poll_passed(cx) {
            self.state.set_trip(Trip::Write);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing of the response within --idle-timeout",
            )));
        }
        Poll::Pending
    }

    /// Progress on a write: the stall deadline starts over, and so does the idle deadline of a
    /// connection whose last response is still being delivered.
    fn wrote(&mut self, n: usize) {
        self.write_deadline.armed = false;
        if n > 0 {
            self.unflushed = true;
            if self.phase == Phase::Waiting {
                self.read_deadline.arm(self.timeouts.idle);
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TimedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.state.reader.register(cx.waker());
        this.follow_requests();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let got_bytes = buf.filled().len() > before;
                if got_bytes && matches!(this.phase, Phase::Fresh | Phase::Waiting) {
                    this.phase = Phase::Head;
                    this.read_deadline.arm(this.timeouts.header);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let waiting = matches!(this.phase, Phase::Fresh | Phase::Waiting);
                if waiting && this.state.closing.load(Ordering::Relaxed) {
                    // Shutting down and no request on its way: end of stream closes quietly.
                    return Poll::Ready(Ok(()));
                }
                if this.read_deadline.poll_passed(cx) {
                    return this.expire(cx);
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TimedIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.follow_requests();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.wrote(n);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.write_stalled(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.follow_requests();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                this.wrote(n);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.write_stalled(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                this.unflushed = false;
                this.write_deadline.armed = false;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.write_stalled(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Pending => this.write_stalled(cx),
            done => done,
        }
    }
}
