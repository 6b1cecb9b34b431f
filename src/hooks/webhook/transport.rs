//! Says why a request to a hook server failed, in the words an operator searches for:
//! "connection refused", "DNS lookup failed", "TLS handshake failed: invalid peer certificate:
//! UnknownIssuer", "timed out". reqwest's own message ("error sending request for url") hides
//! the cause several levels down its source chain, and the TLS error is not even on the chain:
//! it sits inside an `io::Error`, which `source()` skips, so the chain is searched by type.

use std::error::Error as StdError;
use std::io;

/// What went wrong, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// The whole request ran past the hook's timeout.
    Timeout,
    /// Certificate verification or the TLS handshake failed; the rustls reason.
    Tls(String),
    /// Nothing listens on the port.
    Refused,
    /// The peer reset the connection.
    Reset,
    /// The host name did not resolve; the resolver's reason.
    Dns(String),
    /// Anything else: the chain's messages below reqwest's own.
    Other(String),
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Timeout => f.write_str("timed out"),
            Self::Tls(reason) => write!(f, "TLS handshake failed: {reason}"),
            Self::Refused => f.write_str("connection refused"),
            Self::Reset => f.write_str("connection reset by peer"),
            Self::Dns(reason) => write!(f, "DNS lookup failed: {reason}"),
            Self::Other(text) => f.write_str(text),
        }
    }
}

/// The errors below `error`, outermost first. An `io::Error` that wraps another error is
/// followed into it (its `source()` would skip the wrapped error itself); hyper-rustls even
/// wraps the TLS `io::Error` in a second one.
fn chain<'a>(error: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    fn next<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
        if let Some(inner) = error
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
        {
            let inner: &(dyn StdError + 'static) = inner;
            return Some(inner);
        }
        error.source()
    }
    let mut out = Vec::new();
    let mut current = next(error);
    while let Some(error) = current {
        out.push(error);
        current = next(error);
    }
    out
}

/// Classifies a failed request.
pub fn cause(error: &reqwest::Error) -> Cause {
    if error.is_timeout() {
        return Cause::Timeout;
    }
    let below = chain(error);
    if let Some(tls) = below.iter().find_map(|e| e.downcast_ref::<rustls::Error>()) {
        return Cause::Tls(tls.to_string());
    }
    for (depth, e) in below.iter().enumerate() {
        // hyper-util's connector marks resolver failures with this exact message.
        if e.to_string() == "dns error" {
            let reason = below
                .get(depth + 1)
                .map_or_else(|| "no reason given".to_string(), |r| r.to_string());
            return Cause::Dns(reason);
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::ConnectionRefused => return Cause::Refused,
                io::ErrorKind::ConnectionReset => return Cause::Reset,
                io::ErrorKind::TimedOut => return Cause::Timeout,
                _ => {}
            }
        }
    }
    let mut text: Vec<String> = below.iter().map(|e| e.to_string()).collect();
    // A wrapping io::Error shows its inner error's message: say it once.
    text.dedup();
    if text.is_empty() {
        Cause::Other(error.to_string())
    } else {
        Cause::Other(text.join(": "))
    }
}
