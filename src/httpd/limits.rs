//! The limits that keep `kubelambda httpd` serving when clients misbehave: how long a client may
//! take to send a request's head or body, how long an idle connection is kept, how many
//! connections are open at once, and how long shutdown waits for requests in flight.
//!
//! Without them, 200 silent sockets exhausted the open-file limit (the server then failed every
//! accept with "Too many open files") and one client holding a partial request kept the process
//! alive after SIGTERM.

use std::time::Duration;

use clap::Args;

/// Largest default connection cap. A hook server answers a controller, which keeps a handful of
/// connections; a thousand is far more than that and keeps the memory of idle connections small.
pub const MAX_DEFAULT_CONNECTIONS: usize = 1024;

/// File descriptors kept for the server itself: stdio, the listener, the event loop, signal
/// handling, the files it reads to check hooks for changes.
const BASE_FDS: u64 = 64;

/// File descriptors each evaluation worker costs the server: its two pipes, and two more while
/// a replacement is being started.
const FDS_PER_WORKER: u64 = 4;

/// Refused connections answered at once (each holds a descriptor for up to a second while its
/// 503 is delivered); past this, a refused connection is answered without waiting and closed.
pub const REJECTION_SLOTS: usize = 64;

/// The `kubelambda httpd` flags that bound what a client may hold.
#[derive(Args, Clone, Debug)]
pub struct LimitArgs {
    /// Time a client has to send a request line and headers, counted from the connection's start
    /// or the request's first byte. Past it: 408 Request Timeout, or the connection closed if
    /// nothing was sent.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = positive_duration)]
    pub header_timeout: Duration,
    /// Time a client has to send a request body once its headers arrived. Past it: 408.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = positive_duration)]
    pub body_timeout: Duration,
    /// A keep-alive connection without a new request for this long is closed; so is one whose
    /// client stops reading a response for this long.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = positive_duration)]
    pub idle_timeout: Duration,
    /// Connections open at once; more are answered 503 Service Unavailable with Retry-After: 1
    /// and closed [default: half the open-file limit, at most 1024].
    #[arg(long, value_name = "N", value_parser = positive_count)]
    pub max_connections: Option<usize>,
    /// On SIGTERM or SIGINT, time the requests in flight have to finish; then the server exits
    /// anyway.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = positive_duration)]
    pub shutdown_grace: Duration,
}

/// The limits in force, resolved against the process's open-file limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpdLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
    /// The open-file limit the cap was checked against.
    pub open_files: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error(
        "--max-connections {requested} needs {requested} file descriptors plus {reserved} for the \
         server itself, but the open-file limit (ulimit -n) is {open_files}; lower \
         --max-connections or raise the limit"
    )]
    TooManyConnections {
        requested: usize,
        reserved: u64,
        open_files: u64,
    },
    #[error(
        "the open-file limit (ulimit -n) of {open_files} leaves no room for connections: the server \
         itself needs {reserved}; raise the limit"
    )]
    NoRoom { open_files: u64, reserved: u64 },
}

/// Descriptors the server needs besides its connections, with `workers` evaluation workers.
pub fn reserved_fds(workers: usize) -> u64 {
    BASE_FDS + FDS_PER_WORKER * workers as u64 + REJECTION_SLOTS as u64
}

impl LimitArgs {
    /// Checks the connection cap against `open_files` (see [`raise_open_file_limit`]), or derives
    /// it: half the limit, at most [`MAX_DEFAULT_CONNECTIONS`], and never more than what the
    /// server's own descriptors leave.
    pub fn resolve(&self, open_files: u64, workers: usize) -> Result<HttpdLimits, LimitError> {
        let reserved = reserved_fds(workers);
        let room = open_files.saturating_sub(reserved);
        let max_connections = match self.max_connections {
            Some(requested) if requested as u64 > room => {
                return Err(LimitError::TooManyConnections {
                    requested,
                    reserved,
                    open_files,
                });
            }
            Some(requested) => requested,
            None if room == 0 => {
                return Err(LimitError::NoRoom {
                    open_files,
                    reserved,
                });
            }
            None => {
                let half = usize::try_from(open_files / 2).unwrap_or(usize::MAX);
                let room = usize::try_from(room).unwrap_or(usize::MAX);
                half.min(room).clamp(1, MAX_DEFAULT_CONNECTIONS)
            }
        };
        Ok(HttpdLimits {
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            idle_timeout: self.idle_timeout,
            max_connections,
            shutdown_grace: self.shutdown_grace,
            open_files,
        })
    }
}

/// Raises the soft open-file limit to the hard one (many systems start processes at a soft 1024
/// under a far higher hard limit) and returns the limit now in force. On failure the current
/// soft limit stays and is returned.
pub fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    if limit.rlim_cur >= limit.rlim_max {
        return limit.rlim_cur;
    }
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads the struct we own; raising the soft limit up to the hard one is
    // always permitted.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        tracing::debug!(
            from = limit.rlim_cur,
            to = raised.rlim_cur,
            "raised the open-file limit"
        );
        raised.rlim_cur
    } else {
        limit.rlim_cur
    }
}

/// A duration above zero, written like `500ms`, `10s` or `1m`.
fn positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be greater than 0".to_owned()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!(
            "{text:?} is not a duration (e.g. 500ms, 10s, 1m): {e}"
        )),
    }
}

/// A whole number above zero.
fn positive_count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be greater than 0".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{text:?} is not a whole number: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(max_connections: Option<usize>) -> LimitArgs {
        LimitArgs {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections,
            shutdown_grace: Duration::from_secs(10),
        }
    }

    #[test]
    fn the_default_cap_is_half_the_open_file_limit_up_to_1024() {
        let cap = |open_files, workers| {
            args(None)
                .resolve(open_files, workers)
                .expect("resolves")
                .max_connections
        };
        assert_eq!(cap(1024, 3), 512);
        assert_eq!(cap(1_048_576, 3), MAX_DEFAULT_CONNECTIONS);
        // 64 workers take 256 descriptors: half of 512 would not leave them room.
        assert_eq!(cap(512, 64), 512 - reserved_fds(64) as usize);
        assert!(matches!(
            args(None).resolve(100, 3),
            Err(LimitError::NoRoom { .. })
        ));
    }

    #[test]
    fn a_cap_the_open_file_limit_cannot_hold_is_refused() {
        assert_eq!(
            args(Some(800))
                .resolve(1024, 3)
                .expect("fits")
                .max_connections,
            800
        );
        let err = args(Some(1000)).resolve(1024, 3).expect_err("too many");
        assert_eq!(
            err.to_string(),
            "--max-connections 1000 needs 1000 file descriptors plus 140 for the server itself, \
             but the open-file limit (ulimit -n) is 1024; lower --max-connections or raise the limit"
        );
    }

    #[test]
    fn zero_and_garbage_are_refused() {
        assert_eq!(
            positive_duration("0s").expect_err("zero"),
            "must be greater than 0"
        );
        assert!(positive_duration("soon").is_err());
        assert_eq!(
            positive_duration("500ms").expect("valid"),
            Duration::from_millis(500)
        );
        assert_eq!(
            positive_count("0").expect_err("zero"),
            "must be greater than 0"
        );
        assert!(positive_count("-3").is_err());
    }

    #[test]
    fn raising_the_open_file_limit_reaches_the_hard_limit() {
        let now = raise_open_file_limit();
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        assert_eq!((now, limit.rlim_cur), (limit.rlim_max, limit.rlim_max));
    }
}
