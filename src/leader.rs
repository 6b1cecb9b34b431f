//! Leader election on a `coordination.k8s.io/v1` Lease (`kubelambda run --leader-election`):
//! one replica runs the controllers, the others wait to take over.
//!
//! The rules follow client-go's lease lock, which Metacontroller uses through controller-runtime:
//! - a replica takes the Lease when it has no holder, or when the holder's record has not changed
//!   for the holder's lease duration *as measured on this replica's own clock* (clocks of
//!   different machines are never compared);
//! - the leader renews every retry period, and gives up once the renew deadline has passed since
//!   its last successful renew;
//! - every write to the Lease carries the resourceVersion it was read at, so two replicas that
//!   both think the Lease is free cannot both take it.
//!
//! On top of that, the engine's client is fenced ([`Fence`]): its writes are refused once the
//! renew deadline has passed since the last successful renew, even before the election task has
//! noticed. A leader frozen (SIGSTOP, a long GC-like stall) past its lease thus cannot write a
//! single object when it wakes, whatever task happens to run first.
//!
//! The decisions are pure functions ([`observe`], [`decide`], [`next_spec`], [`renew_lost`]) so
//! that they are tested without a cluster; [`Elector`] does the I/O.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;

/// Where the pod's namespace is mounted in a cluster.
const IN_CLUSTER_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The election's settings (`--leader-election-*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectionConfig {
    pub namespace: String,
    /// The Lease's name (`--leader-election-id`).
    pub name: String,
    /// This replica's name in `spec.holderIdentity`.
    pub identity: String,
    /// How long others wait for an unchanged Lease before taking it.
    pub lease_duration: Duration,
    /// How long the leader keeps leading without a successful renew.
    pub renew_deadline: Duration,
    /// How often to try to take or renew the Lease.
    pub retry_period: Duration,
}

/// Settings that would let two replicas lead at once, or a leader lose its Lease for nothing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "--leader-election-renew-deadline ({renew:?}) must be shorter than --leader-election-lease-duration ({lease:?}): otherwise another replica may take the Lease while this one still leads"
    )]
    RenewNotBeforeLease { renew: Duration, lease: Duration },
    #[error(
        "--leader-election-retry-period ({retry:?}) must be shorter than --leader-election-renew-deadline ({renew:?}): otherwise the leader gives up before it tries to renew"
    )]
    RetryNotBeforeRenew { retry: Duration, renew: Duration },
}

impl ElectionConfig {
    /// Checks the durations as client-go does (lease > renew deadline > retry period).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.renew_deadline >= self.lease_duration {
            return Err(ConfigError::RenewNotBeforeLease {
                renew: self.renew_deadline,
                lease: self.lease_duration,
            });
        }
        if self.retry_period >= self.renew_deadline {
            return Err(ConfigError::RetryNotBeforeRenew {
                retry: self.retry_period,
                renew: self.renew_deadline,
            });
        }
        Ok(())
    }
}

/// The Lease's namespace: the flag, else the pod's own namespace, else `default`.
pub fn namespace(flag: Option<&str>) -> String {
    if let Some(ns) = flag.map(str::trim).filter(|ns| !ns.is_empty()) {
        return ns.to_owned();
    }
    std::fs::read_to_string(IN_CLUSTER_NAMESPACE)
        .ok()
        .map(|ns| ns.trim().to_owned())
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| "default".to_owned())
}

/// `POD_NAME` or the host name, plus a random suffix: two processes on one host (or a restarted
/// pod that reuses its name) must never mistake each other's Lease for their own.
pub fn identity() -> String {
    let host = std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "kubelambda".to_owned());
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{host}_{:08x}", hasher.finish() as u32)
}

/// The parts of a Lease the election reads; compared to tell whether the holder is alive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub holder: Option<String>,
    pub lease_duration_seconds: Option<i32>,
    pub acquire_time: Option<Timestamp>,
    pub renew_time: Option<Timestamp>,
    pub transitions: i32,
}

impl Record {
    pub fn from_spec(spec: Option<&LeaseSpec>) -> Self {
        let Some(spec) = spec else {
            return Self::default();
        };
        Self {
            holder: spec.holder_identity.clone().filter(|h| !h.is_empty()),
            lease_duration_seconds: spec.lease_duration_seconds,
            acquire_time: spec.acquire_time.as_ref().map(|t| t.0),
            renew_time: spec.renew_time.as_ref().map(|t| t.0),
            transitions: spec.lease_transitions.unwrap_or(0),
        }
    }
}

/// A record and when this replica first saw it (its own monotonic clock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub record: Record,
    pub since: Instant,
}

/// Remembers `record`, keeping the earlier time if it has not changed: a holder that stopped
/// renewing leaves the same record, and its lease runs out measured from when we first saw it.
pub fn observe(previous: Option<Observed>, record: Record, now: Instant) -> Observed {
    match previous {
        Some(prev) if prev.record == record => prev,
        _ => Observed { record, since: now },
    }
}

/// What to do with a Lease that exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// We hold it: write a new renew time.
    Renew,
    /// Nobody holds it, or the holder's lease ran out: take it.
    Take,
    /// Someone else holds it and is alive.
    Wait { holder: String },
}

/// Decides from what was observed; `default_duration` applies when the record names none.
pub fn decide(observed: &Observed, me: &str, now: Instant, default_duration: Duration) -> Decision {
    let Some(holder) = observed.record.holder.as_deref() else {
        return Decision::Take;
    };
    if holder == me {
        return Decision::Renew;
    }
    let duration = observed
        .record
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(default_duration, Duration::from_secs);
    if now >= observed.since + duration {
        Decision::Take
    } else {
        Decision::Wait {
            holder: holder.to_owned(),
        }
    }
}

/// The spec to write for a `Take` or `Renew` decision at wall-clock time `now`.
pub fn next_spec(record: &Record, me: &str, now: Timestamp, lease_duration: Duration) -> LeaseSpec {
    let ours = record.holder.as_deref() == Some(me);
    let seconds = i32::try_from(lease_duration.as_secs().max(1)).unwrap_or(i32::MAX);
    LeaseSpec {
        holder_identity: Some(me.to_owned()),
        lease_duration_seconds: Some(seconds),
        acquire_time: Some(MicroTime(if ours {
            record.acquire_time.unwrap_or(now)
        } else {
            now
        })),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if ours {
            record.transitions
        } else {
            record.transitions.saturating_add(1)
        }),
        ..LeaseSpec::default()
    }
}

/// Whether a leader whose last successful renew started at `last_renew` must stop leading.
pub fn renew_lost(last_renew: Instant, now: Instant, renew_deadline: Duration) -> bool {
    now >= last_renew + renew_deadline
}

/// Where this replica stands, for `/readyz` and for `run` to start or stop the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Waiting for the Lease.
    Standby,
    /// Holding the Lease: the engine may run.
    Leading,
    /// Held the Lease and could not renew it in time: the engine must stop, the process exit.
    Lost,
}

/// Allows writes until a deadline on the monotonic clock; shared by the election (which moves
/// the deadline on each renew) and the engine's client (which checks it before each write).
#[derive(Clone, Debug)]
pub struct Fence {
    base: Instant,
    /// Nanoseconds after `base` until which writes are allowed; 0: closed.
    open_until: Arc<AtomicU64>,
}

impl Default for Fence {
    fn default() -> Self {
        Self {
            base: Instant::now(),
            open_until: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Fence {
    /// Allows writes until `deadline`.
    pub fn open_until(&self, deadline: Instant) {
        let nanos = deadline.saturating_duration_since(self.base).as_nanos();
        self.open_until
            .store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Refuses every write from now on.
    pub fn close(&self) {
        self.open_until.store(0, Ordering::SeqCst);
    }

    /// Whether writes are allowed at `now`.
    pub fn is_open(&self, now: Instant) -> bool {
        let nanos = now.saturating_duration_since(self.base).as_nanos();
        u64::try_from(nanos).is_ok_and(|n| n < self.open_until.load(Ordering::SeqCst))
    }
}

/// A write refused because this replica is not (or no longer surely) the leader.
#[derive(Debug, thiserror::Error)]
#[error("refused to send {method} {uri}: this replica does not hold the leader election Lease")]
pub struct NotLeader {
    method: http::Method,
    uri: http::Uri,
}

/// A client layer that refuses writes (anything but GET, HEAD and OPTIONS) while the fence is
/// closed.
#[derive(Clone, Debug)]
pub struct FenceLayer(pub Fence);

impl<S> tower::Layer<S> for FenceLayer {
    type Service = Fenced<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Fenced {
            inner,
            fence: self.0.clone(),
        }
    }
}

/// See [`FenceLayer`].
#[derive(Clone, Debug)]
pub struct Fenced<S> {
    inner: S,
    fence: Fence,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B> tower::Service<http::Request<B>> for Fenced<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let read = matches!(
            *req.method(),
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
        );
        if !read && !self.fence.is_open(Instant::now()) {
            let error = NotLeader {
                method: req.method().clone(),
                uri: req.uri().clone(),
            };
            return Box::pin(async move { Err(error.into()) });
        }
        let future = self.inner.call(req);
        Box::pin(async move { future.await.map_err(Into::into) })
    }
}

/// How one attempt on the Lease ended.
#[derive(Debug)]
enum Attempt {
    /// We hold it now.
    Held,
    /// Another replica holds it and is alive.
    HeldBy(String),
    /// Someone wrote it between our read and our write (409): nothing changed, try again.
    Conflict,
}

/// Runs the election: takes the Lease, renews it, and reports the [`Role`].
pub struct Elector {
    api: Api<Lease>,
    config: ElectionConfig,
    fence: Fence,
    role: watch::Sender<Role>,
}

impl Elector {
    /// An elector that opens `fence` while it leads.
    pub fn new(client: kube::Client, config: ElectionConfig, fence: Fence) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            fence,
            role: watch::Sender::new(Role::Standby),
        }
    }

    /// Follows the role.
    pub fn subscribe(&self) -> watch::Receiver<Role> {
        self.role.subscribe()
    }

    fn lease_name(&self) -> String {
        format!("{}/{}", self.config.namespace, self.config.name)
    }

    /// Waits for the Lease, then leads until a renew misses the deadline; returns once leadership
    /// is lost (with the fence closed and [`Role::Lost`] sent). Never returns while standing by.
    pub async fn run(self) {
        let mut observed = None;
        let mut last_holder: Option<String> = None;
        let mut last_renew = loop {
            let started = Instant::now();
            // A request that hangs must not keep a standby from ever trying again.
            let attempt = tokio::time::timeout(
                self.config.renew_deadline,
                self.try_acquire_or_renew(&mut observed),
            );
            match attempt.await {
                Err(_) => tracing::warn!(
                    "no answer within {:?} while taking the leader election Lease {}",
                    self.config.renew_deadline,
                    self.lease_name()
                ),
                Ok(Ok(Attempt::Held)) => break started,
                Ok(Ok(Attempt::Conflict)) => {}
                Ok(Ok(Attempt::HeldBy(holder))) => {
                    if last_holder.as_ref() != Some(&holder) {
                        tracing::info!(
                            "waiting for leader election Lease {}: held by {holder}",
                            self.lease_name()
                        );
                        last_holder = Some(holder);
                    }
                }
                Ok(Err(e)) => tracing::warn!(
                    "cannot take the leader election Lease {}: {e}",
                    self.lease_name()
                ),
            }
            tokio::time::sleep(self.config.retry_period).await;
        };
        self.fence
            .open_until(last_renew + self.config.renew_deadline);
        tracing::info!(
            "acquired the leader election Lease {} as {}",
            self.lease_name(),
            self.config.identity
        );
        self.role.send_replace(Role::Leading);
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            let started = Instant::now();
            if renew_lost(last_renew, started, self.config.renew_deadline) {
                break;
            }
            let left = (last_renew + self.config.renew_deadline) - started;
            match tokio::time::timeout(left, self.try_acquire_or_renew(&mut observed)).await {
                Ok(Ok(Attempt::Held)) => {
                    last_renew = started;
                    self.fence.open_until(started + self.config.renew_deadline);
                }
                // Someone wrote the Lease since we read it: read it again next time.
                Ok(Ok(Attempt::Conflict)) => {}
                Ok(Ok(Attempt::HeldBy(holder))) => {
                    tracing::warn!(
                        "leader election Lease {} is now held by {holder}",
                        self.lease_name()
                    );
                    break;
                }
                Ok(Err(e)) => tracing::warn!(
                    "cannot renew the leader election Lease {}: {e}",
                    self.lease_name()
                ),
                Err(_) => {}
            }
        }
        self.fence.close();
        tracing::warn!(
            "leader election lost: the Lease {} was not renewed within {:?}",
            self.lease_name(),
            self.config.renew_deadline
        );
        self.role.send_replace(Role::Lost);
    }

    /// One attempt to take or renew the Lease.
    async fn try_acquire_or_renew(
        &self,
        observed: &mut Option<Observed>,
    ) -> Result<Attempt, kube::Error> {
        let me = &self.config.identity;
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    // The first holder is no transition.
                    lease_transitions: Some(0),
                    ..next_spec(
                        &Record::default(),
                        me,
                        Timestamp::now(),
                        self.config.lease_duration,
                    )
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Held),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Conflict),
                Err(e) => Err(e),
            };
        };
        let record = Record::from_spec(lease.spec.as_ref());
        let seen = observe(observed.take(), record, Instant::now());
        let decision = decide(&seen, me, Instant::now(), self.config.lease_duration);
        let spec = next_spec(
            &seen.record,
            me,
            Timestamp::now(),
            self.config.lease_duration,
        );
        *observed = Some(seen);
        if let Decision::Wait { holder } = decision {
            return Ok(Attempt::HeldBy(holder));
        }
        // `lease` keeps the resourceVersion it was read at: if anyone wrote it since, the API
        // server answers 409 and nothing changes.
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                *observed = Some(Observed {
                    record: Record::from_spec(written.spec.as_ref()),
                    since: Instant::now(),
                });
                Ok(Attempt::Held)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Conflict),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (on a clean shutdown, after the engine has stopped) so that a standby
    /// takes over at once instead of after the lease duration.
    pub async fn release(api: &Api<Lease>, config: &ElectionConfig) -> Result<(), kube::Error> {
        let Some(mut lease) = api.get_opt(&config.name).await? else {
            return Ok(());
        };
        let record = Record::from_spec(lease.spec.as_ref());
        if record.holder.as_deref() != Some(config.identity.as_str()) {
            return Ok(());
        }
        lease.spec = Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            acquire_time: None,
            renew_time: Some(MicroTime(Timestamp::now())),
            lease_transitions: Some(record.transitions),
            ..LeaseSpec::default()
        });
        api.replace(&config.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn held_by(holder: &str) -> Record {
        Record {
            holder: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(Timestamp::UNIX_EPOCH),
            ..Record::default()
        }
    }

    #[test]
    fn a_free_lease_is_taken_and_our_own_renewed() {
        let t0 = Instant::now();
        let free = observe(None, Record::default(), t0);
        assert_eq!(decide(&free, "me", t0, 15 * SECOND), Decision::Take);
        let ours = observe(None, held_by("me"), t0);
        assert_eq!(decide(&ours, "me", t0, 15 * SECOND), Decision::Renew);
    }

    #[test]
    fn another_holder_is_waited_for_until_its_record_is_unchanged_for_its_duration() {
        let t0 = Instant::now();
        let seen = observe(None, held_by("other"), t0);
        let wait = Decision::Wait {
            holder: "other".into(),
        };
        assert_eq!(decide(&seen, "me", t0 + 14 * SECOND, SECOND), wait);
        // The same record seen again keeps its first sighting time: the holder is not renewing.
        let again = observe(Some(seen.clone()), held_by("other"), t0 + 14 * SECOND);
        assert_eq!(again.since, t0);
        assert_eq!(
            decide(&again, "me", t0 + 15 * SECOND, SECOND),
            Decision::Take
        );
        // A renewed record restarts the wait.
        let mut renewed = held_by("other");
        renewed.renew_time = Some(Timestamp::UNIX_EPOCH + SECOND);
        let renewed = observe(Some(again), renewed, t0 + 15 * SECOND);
        assert_eq!(renewed.since, t0 + 15 * SECOND);
        assert_eq!(decide(&renewed, "me", t0 + 16 * SECOND, SECOND), wait);
    }

    #[test]
    fn the_default_duration_applies_when_the_record_has_none() {
        let t0 = Instant::now();
        let mut record = held_by("other");
        record.lease_duration_seconds = None;
        let seen = observe(None, record, t0);
        assert_eq!(
            decide(&seen, "me", t0 + 3 * SECOND, 3 * SECOND),
            Decision::Take
        );
        assert!(matches!(
            decide(&seen, "me", t0 + 2 * SECOND, 3 * SECOND),
            Decision::Wait { .. }
        ));
    }

    #[test]
    fn taking_counts_a_transition_and_renewing_keeps_the_acquire_time() {
        let now = Timestamp::UNIX_EPOCH + 100 * SECOND;
        let mut other = held_by("other");
        other.transitions = 4;
        let taken = next_spec(&other, "me", now, 15 * SECOND);
        assert_eq!(taken.holder_identity.as_deref(), Some("me"));
        assert_eq!(taken.lease_transitions, Some(5));
        assert_eq!(taken.acquire_time, Some(MicroTime(now)));
        assert_eq!(taken.lease_duration_seconds, Some(15));

        let mut ours = Record::from_spec(Some(&taken));
        ours.transitions = 5;
        let later = now + 2 * SECOND;
        let renewed = next_spec(&ours, "me", later, 15 * SECOND);
        assert_eq!(renewed.lease_transitions, Some(5));
        assert_eq!(renewed.acquire_time, Some(MicroTime(now)));
        assert_eq!(renewed.renew_time, Some(MicroTime(later)));

        // A released Lease (no holder) taken over is a transition too.
        let released = Record {
            transitions: 5,
            ..Record::default()
        };
        let taken = next_spec(&released, "me", now, 15 * SECOND);
        assert_eq!(taken.lease_transitions, Some(6));
    }

    #[test]
    fn leadership_is_lost_once_the_renew_deadline_passes() {
        let t0 = Instant::now();
        assert!(!renew_lost(t0, t0 + 9 * SECOND, 10 * SECOND));
        assert!(renew_lost(t0, t0 + 10 * SECOND, 10 * SECOND));
    }

    #[test]
    fn the_fence_allows_writes_only_until_its_deadline() {
        let fence = Fence::default();
        let now = Instant::now();
        assert!(!fence.is_open(now), "closed until the Lease is held");
        fence.open_until(now + SECOND);
        assert!(fence.is_open(now));
        assert!(!fence.is_open(now + SECOND));
        fence.open_until(now + 3 * SECOND);
        fence.close();
        assert!(!fence.is_open(now));
    }

    #[test]
    fn durations_that_allow_two_leaders_are_refused() {
        let config = ElectionConfig {
            namespace: "ns".into(),
            name: "kubelambda".into(),
            identity: "me".into(),
            lease_duration: 15 * SECOND,
            renew_deadline: 10 * SECOND,
            retry_period: 2 * SECOND,
        };
        assert_eq!(config.validate(), Ok(()));
        let bad = ElectionConfig {
            renew_deadline: 15 * SECOND,
            ..config.clone()
        };
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::RenewNotBeforeLease { .. })
        ));
        let bad = ElectionConfig {
            retry_period: 10 * SECOND,
            ..config
        };
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::RetryNotBeforeRenew { .. })
        ));
    }

    #[test]
    fn identities_differ_between_calls_and_namespaces_fall_back() {
        assert_ne!(identity(), identity());
        assert_eq!(namespace(Some("ns1")), "ns1");
        if !std::path::Path::new(IN_CLUSTER_NAMESPACE).exists() {
            assert_eq!(namespace(None), "default");
            assert_eq!(namespace(Some(" ")), "default");
        }
    }
}
