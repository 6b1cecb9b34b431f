//! Connection-level metrics of `kubelambda httpd`: what the limits refused or cut off, and how
//! many connections are open.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    reason: &'static str,
}

/// Why a connection or request was refused or cut off by a limit: the `reason` label of
/// `kubelambda_httpd_rejected_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reason {
    /// `--header-timeout`: a connection that sent nothing, or a request head that stalled.
    HeaderTimeout,
    /// `--body-timeout`: a request body that stalled.
    BodyTimeout,
    /// `--idle-timeout`: a keep-alive connection without a next request.
    IdleTimeout,
    /// `--idle-timeout`: a response the client stopped reading.
    WriteTimeout,
    /// `--max-connections`: a connection past the cap, answered 503.
    Connections,
    /// The system refused to accept a connection (out of descriptors or memory).
    AcceptFailed,
}

impl Reason {
    fn label(self) -> &'static str {
        match self {
            Self::HeaderTimeout => "header_timeout",
            Self::BodyTimeout => "body_timeout",
            Self::IdleTimeout => "idle_timeout",
            Self::WriteTimeout => "write_timeout",
            Self::Connections => "connections",
            Self::AcceptFailed => "accept_failed",
        }
    }
}

/// The connection-level metrics, shared by the accept loop and every connection.
#[derive(Clone, Debug)]
pub(super) struct ConnMetrics {
    rejected: Family<RejectLabels, Counter>,
    open: Gauge,
}

impl ConnMetrics {
    /// Registers `rejected` (by reason) and `connections` (open now).
    pub(super) fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            rejected: Family::default(),
            open: Gauge::default(),
        };
        registry.register(
            "rejected",
            "Connections and requests refused or cut off by a limit, by reason",
            metrics.rejected.clone(),
        );
        registry.register(
            "connections",
            "Open client connections",
            metrics.open.clone(),
        );
        metrics
    }

    pub(super) fn rejected(&self, reason: Reason) {
        self.rejected
            .get_or_create(&RejectLabels {
                reason: reason.label(),
            })
            .inc();
    }

    /// Counts an open connection until the returned guard is dropped.
    pub(super) fn open_connection(&self) -> OpenConnection {
        self.open.inc();
        OpenConnection(self.open.clone())
    }
}

pub(super) struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}
