//! A per-controller work queue with client-go's rate-limited workqueue semantics.
//!
//! Metacontroller drives every controller through a client-go `RateLimitingQueue` of parent keys
//! (§3.4 of the compatibility reference). Its guarantees are what make the reconcile loop correct
//! with several workers, so this queue keeps them:
//!
//! - **Deduplication**: a key waiting to be processed (ready or delayed) is present once, however
//!   many watch events mention it; a burst of child events costs one sync.
//! - **No concurrent processing of a key**: a key handed out by [`WorkQueue::next`] is *in
//!   flight* until [`WorkQueue::done`]. Adding it meanwhile marks it *dirty*; it is handed out
//!   again after `done`, so the event is not lost and two workers never sync one parent at once.
//! - **Delays** ([`WorkQueue::add_after`]): `resyncAfterSeconds`, `Retry-After`, and retries. The
//!   earliest pending time wins, so a later request never postpones an earlier one.
//! - **Per-key exponential backoff** ([`WorkQueue::add_rate_limited`]) for failing syncs, reset by
//!   [`WorkQueue::forget`] after a success.
//!
//! Differences from client-go, chosen on purpose:
//! - client-go's default controller rate limiter also applies an overall token bucket (10 qps,
//!   burst 100) on top of the per-key backoff; that bucket is not implemented here, only the
//!   per-key part (the brief's `Backoff`), since it only slows down retries of many distinct keys.
//! - A delayed add for a key that is already ready (or in flight and dirty) is dropped, because
//!   the key will be processed sooner anyway; client-go would keep the delayed entry as well and
//!   process the key a second time later. Syncs re-request their own resync, so nothing is lost.
//! - After [`WorkQueue::shutdown`], [`WorkQueue::next`] returns `None` at once instead of first
//!   draining ready keys (client-go's `ShutDown`), so workers stop promptly.
//!
//! Implementation: one mutex-protected state, a [`Notify`] to wake idle workers, and idle workers
//! sleeping until the earliest delayed deadline (no timer task, no polling).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::{self, Debug};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Per-key exponential backoff: the n-th consecutive failure of a key waits `base * 2^(n-1)`,
/// never more than `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub base: Duration,
    /// Upper bound of the delay.
    pub max: Duration,
}

impl Default for Backoff {
    /// client-go's `DefaultControllerRateLimiter` per-item part: 5ms doubling up to 1000s.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(5),
            max: Duration::from_secs(1000),
        }
    }
}

impl Backoff {
    /// The delay for a key that has already failed `failures` times before this failure.
    pub fn delay(&self, failures: u32) -> Duration {
        if self.base.is_zero() {
            return Duration::ZERO;
        }
        2u32.checked_pow(failures)
            .and_then(|factor| self.base.checked_mul(factor))
            .map_or(self.max, |d| d.min(self.max))
    }
}

/// A deduplicating, delaying, rate-limited work queue of keys. Cheap to clone: clones share one
/// queue, so event handlers and workers can each hold one.
pub struct WorkQueue<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: Debug> Debug for WorkQueue<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.lock();
        f.debug_struct("WorkQueue")
            .field("ready", &state.ready)
            .field("delayed", &state.delayed.len())
            .field("in_flight", &state.processing.len())
            .field("shutting_down", &state.shutting_down)
            .finish()
    }
}

/// Where a queue reports its depth, adds, retries and the time keys wait before they are handed
/// out (client-go's workqueue metrics).
#[derive(Clone, Debug)]
pub struct QueueMetrics {
    pub depth: prometheus_client::metrics::gauge::Gauge,
    pub adds: prometheus_client::metrics::counter::Counter,
    pub retries: prometheus_client::metrics::counter::Counter,
    pub wait: prometheus_client::metrics::histogram::Histogram,
}

struct Inner<K> {
    state: Mutex<State<K>>,
    /// Wakes idle workers: `notify_one` when a key becomes ready or the earliest deadline moves
    /// forward, `notify_waiters` on shutdown.
    notify: Notify,
    backoff: Backoff,
}

impl<K> Inner<K> {
    /// The state lock. Nothing panics while holding it, but if something ever did, the state is
    /// still structurally valid, so a poisoned lock is recovered rather than propagated.
    fn lock(&self) -> MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A delayed entry's position in the timeline: deadline, then insertion order for ties.
type Slot = (Instant, u64);

struct State<K> {
    /// Keys ready to be handed out, in FIFO order.
    ready: VecDeque<K>,
    /// Keys that need processing: everything in `ready`, plus in-flight keys added again (these
    /// go back to `ready` on `done`).
    dirty: HashSet<K>,
    /// Keys handed out and not yet `done`.
    processing: HashSet<K>,
    /// Delayed keys and their slot in `timeline`. Never dirty: adding a key now removes its
    /// delayed entry, and delaying a dirty key is a no-op.
    delayed: HashMap<K, Slot>,
    /// Delayed keys ordered by deadline; the first entry is what idle workers sleep until.
    timeline: BTreeMap<Slot, K>,
    next_seq: u64,
    /// Consecutive failures per key, for the backoff.
    failures: HashMap<K, u32>,
    shutting_down: bool,
    metrics: Option<QueueMetrics>,
    /// With metrics: when each dirty key became ready.
    queued_at: HashMap<K, Instant>,
}

impl<K: Clone + Eq + Hash> State<K> {
    /// Makes `key` ready now. Returns true if it was pushed to `ready` (a worker should wake).
    fn add(&mut self, key: K) -> bool {
        if let Some(slot) = self.delayed.remove(&key) {
            self.timeline.remove(&slot);
        }
        if !self.dirty.insert(key.clone()) {
            // Already ready, or in flight and already marked for another round.
            return false;
        }
        if let Some(m) = &self.metrics {
            m.adds.inc();
            self.queued_at.insert(key.clone(), Instant::now());
        }
        if self.processing.contains(&key) {
            // Handed out again by `done`.
            return false;
        }
        self.ready.push_back(key);
        true
    }

    /// Schedules `key` for `deadline` unless it is due earlier anyway. Returns true if this is now
    /// the earliest deadline (idle workers must re-arm their timers).
    fn add_at(&mut self, key: K, deadline: Instant) -> bool {
        if self.dirty.contains(&key) {
            return false;
        }
        if let Some(&slot) = self.delayed.get(&key) {
            if slot.0 <= deadline {
                return false;
            }
            self.timeline.remove(&slot);
        }
        let earliest = self.timeline.first_key_value().map(|(slot, _)| slot.0);
        let slot = (deadline, self.next_seq);
        self.next_seq = self.next_seq.wrapping_add(1);
        self.delayed.insert(key.clone(), slot);
        self.timeline.insert(slot, key);
        earliest.is_none_or(|e| deadline < e)
    }

    /// Reports the depth (ready and delayed keys) and, for a key handed out, its time in queue.
    fn report(&mut self, handed_out: Option<&K>) {
        let Some(m) = &self.metrics else { return };
        m.depth
            .set(i64::try_from(self.ready.len() + self.delayed.len()).unwrap_or(i64::MAX));
        if let Some(at) = handed_out.and_then(|k| self.queued_at.remove(k)) {
            m.wait.observe(at.elapsed().as_secs_f64());
        }
    }

    /// Moves every delayed key whose deadline has passed to `ready`.
    fn promote_due(&mut self, now: Instant) {
        while let Some(entry) = self.timeline.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            self.delayed.remove(&key);
            self.add(key);
        }
    }
}

impl<K> WorkQueue<K>
where
    K: Clone + Eq + Hash + Send + Sync + Debug + 'static,
{
    /// An empty queue whose [`add_rate_limited`](Self::add_rate_limited) uses `backoff`.
    pub fn new(backoff: Backoff) -> Self {
        Self::with_metrics(backoff, None)
    }

    /// Like [`new`](Self::new), reporting to `metrics`.
    pub fn with_metrics(backoff: Backoff, metrics: Option<QueueMetrics>) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    ready: VecDeque::new(),
                    dirty: HashSet::new(),
                    processing: HashSet::new(),
                    delayed: HashMap::new(),
                    timeline: BTreeMap::new(),
                    next_seq: 0,
                    failures: HashMap::new(),
                    shutting_down: false,
                    metrics,
                    queued_at: HashMap::new(),
                }),
                notify: Notify::new(),
                backoff,
            }),
        }
    }

    /// Queues `key` for processing now. A no-op if it is already ready; if it is in flight it is
    /// handed out again after [`done`](Self::done); if it was delayed, the delay is cancelled.
    /// Ignored after shutdown.
    pub fn add(&self, key: K) {
        let wake = {
            let mut state = self.inner.lock();
            let wake = !state.shutting_down && state.add(key);
            state.report(None);
            wake
        };
        if wake {
            self.inner.notify.notify_one();
        }
    }

    /// Queues `key` for processing after `delay`. If the key is already pending, the earliest
    /// time wins: a ready key stays ready, a delayed key is moved earlier but never later. A zero
    /// delay is [`add`](Self::add). Ignored after shutdown.
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            self.add(key);
            return;
        }
        let wake = {
            let mut state = self.inner.lock();
            let wake = !state.shutting_down && state.add_at(key, deadline_after(delay));
            state.report(None);
            wake
        };
        if wake {
            self.inner.notify.notify_one();
        }
    }

    /// Queues `key` after its backoff delay and counts one more failure for it. Returns the delay
    /// (for logging). The n-th consecutive call for a key waits `base * 2^(n-1)`, capped at
    /// `max`, until [`forget`](Self::forget).
    pub fn add_rate_limited(&self, key: K) -> Duration {
        let (delay, wake) = {
            let mut state = self.inner.lock();
            let count = state.failures.entry(key.clone()).or_insert(0);
            let delay = self.inner.backoff.delay(*count);
            *count = count.saturating_add(1);
            if let Some(m) = &state.metrics {
                m.retries.inc();
            }
            let wake = if state.shutting_down {
                false
            } else if delay.is_zero() {
                state.add(key)
            } else {
                state.add_at(key, deadline_after(delay))
            };
            state.report(None);
            (delay, wake)
        };
        if wake {
            self.inner.notify.notify_one();
        }
        delay
    }

    /// Resets `key`'s failure count, so that its next failure starts the backoff from `base`
    /// again. Call it after a successful sync. Does not remove the key from the queue.
    pub fn forget(&self, key: &K) {
        self.inner.lock().failures.remove(key);
    }

    /// How many consecutive failures `key` has had since it was last forgotten.
    pub fn failures(&self, key: &K) -> u32 {
        self.inner.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// Waits for a ready key and hands it out; the caller must call [`done`](Self::done) with it
    /// when finished. Returns `None` once the queue is shut down.
    ///
    /// Cancel-safe: dropping the future before it completes takes nothing from the queue.
    pub async fn next(&self) -> Option<K> {
        loop {
            // Register interest *before* looking at the state, so that a change made after the
            // look (an add, an earlier deadline, shutdown) is guaranteed to wake this worker.
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();

            let deadline = {
                let mut state = self.inner.lock();
                if state.shutting_down {
                    return None;
                }
                state.promote_due(Instant::now());
                if let Some(key) = state.ready.pop_front() {
                    state.dirty.remove(&key);
                    state.processing.insert(key.clone());
                    state.report(Some(&key));
                    let more = !state.ready.is_empty();
                    drop(state);
                    if more {
                        // Several keys became ready (e.g. deadlines that passed together) but only
                        // one wake-up may have been sent: pass the baton to another idle worker.
                        self.inner.notify.notify_one();
                    }
                    return Some(key);
                }
                state.timeline.first_key_value().map(|(slot, _)| slot.0)
            };

            match deadline {
                Some(at) => {
                    tokio::select! {
                        () = &mut notified => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Marks `key` as processed. If it was added again while in flight, it becomes ready now.
    pub fn done(&self, key: &K) {
        let wake = {
            let mut state = self.inner.lock();
            state.processing.remove(key);
            if !state.shutting_down && state.dirty.contains(key) {
                state.ready.push_back(key.clone());
                true
            } else {
                false
            }
        };
        if wake {
            self.inner.notify.notify_one();
        }
    }

    /// Stops the queue: every waiting and future [`next`](Self::next) returns `None`, and further
    /// adds are ignored.
    pub fn shutdown(&self) {
        self.inner.lock().shutting_down = true;
        self.inner.notify.notify_waiters();
    }

    /// Whether [`shutdown`](Self::shutdown) has been called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.lock().shutting_down
    }

    /// Number of queued keys, ready or delayed. Keys in flight are not counted, even if they are
    /// marked to be handed out again (as in client-go's `Len`).
    pub fn len(&self) -> usize {
        let state = self.inner.lock();
        state.ready.len() + state.delayed.len()
    }

    /// Whether no key is ready or delayed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `now + delay`, saturating at a far-future deadline instead of panicking on overflow.
fn deadline_after(delay: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(delay)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt as _;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::time::advance;

    fn queue() -> WorkQueue<String> {
        WorkQueue::new(Backoff::default())
    }

    fn k(s: &str) -> String {
        s.to_string()
    }

    /// The key `next()` would hand out without waiting, if any.
    fn ready_now(q: &WorkQueue<String>) -> Option<String> {
        q.next().now_or_never().flatten()
    }

    #[tokio::test(start_paused = true)]
    async fn dedups_ready_keys_and_keeps_fifo_order() {
        let q = queue();
        q.add(k("a"));
        q.add(k("b"));
        q.add(k("a"));
        assert_eq!(q.len(), 2);
        assert_eq!(ready_now(&q), Some(k("a")));
        assert_eq!(ready_now(&q), Some(k("b")));
        assert_eq!(ready_now(&q), None);
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_key_is_not_handed_out_twice_and_requeued_when_dirty() {
        let q = queue();
        q.add(k("a"));
        assert_eq!(ready_now(&q), Some(k("a")));
        // Added while in flight: marked dirty, not ready.
        q.add(k("a"));
        q.add(k("a"));
        assert_eq!(ready_now(&q), None);
        assert_eq!(q.len(), 0);
        q.done(&k("a"));
        assert_eq!(q.len(), 1);
        assert_eq!(ready_now(&q), Some(k("a")));
        // Not dirty this time: done does not requeue.
        q.done(&k("a"));
        assert_eq!(ready_now(&q), None);
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn add_after_orders_by_deadline() {
        let q = queue();
        q.add_after(k("c"), Duration::from_secs(3));
        q.add_after(k("a"), Duration::from_secs(1));
        q.add_after(k("b"), Duration::from_secs(2));
        assert_eq!(q.len(), 3);
        assert_eq!(ready_now(&q), None);
        advance(Duration::from_millis(999)).await;
        assert_eq!(ready_now(&q), None);
        advance(Duration::from_millis(1)).await;
        assert_eq!(ready_now(&q), Some(k("a")));
        assert_eq!(ready_now(&q), None);
        advance(Duration::from_secs(5)).await;
        assert_eq!(ready_now(&q), Some(k("b")));
        assert_eq!(ready_now(&q), Some(k("c")));
    }

    #[tokio::test(start_paused = true)]
    async fn add_after_earliest_wins() {
        let q = queue();
        q.add_after(k("a"), Duration::from_secs(5));
        q.add_after(k("a"), Duration::from_secs(1));
        q.add_after(k("a"), Duration::from_secs(10));
        assert_eq!(q.len(), 1);
        advance(Duration::from_secs(1)).await;
        assert_eq!(ready_now(&q), Some(k("a")));
        q.done(&k("a"));
        // The later requests were absorbed, not kept.
        advance(Duration::from_secs(20)).await;
        assert_eq!(ready_now(&q), None);

        // A ready key stays ready: delaying it does nothing.
        q.add(k("b"));
        q.add_after(k("b"), Duration::from_secs(1));
        assert_eq!(q.len(), 1);
        assert_eq!(ready_now(&q), Some(k("b")));
        q.done(&k("b"));
        advance(Duration::from_secs(2)).await;
        assert_eq!(ready_now(&q), None);
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_key_added_now_becomes_ready() {
        let q = queue();
        q.add_after(k("a"), Duration::from_secs(60));
        q.add(k("a"));
        assert_eq!(q.len(), 1);
        assert_eq!(ready_now(&q), Some(k("a")));
        q.done(&k("a"));
        advance(Duration::from_secs(61)).await;
        assert_eq!(ready_now(&q), None, "the cancelled delay must not fire");
        // Zero delay is a plain add.
        q.add_after(k("z"), Duration::ZERO);
        assert_eq!(ready_now(&q), Some(k("z")));
    }

    #[tokio::test(start_paused = true)]
    async fn add_after_while_in_flight() {
        let q = queue();
        q.add(k("a"));
        assert_eq!(ready_now(&q), Some(k("a")));
        q.add_after(k("a"), Duration::from_secs(2));
        // Finished before the deadline: waits for it.
        q.done(&k("a"));
        assert_eq!(ready_now(&q), None);
        advance(Duration::from_secs(2)).await;
        assert_eq!(ready_now(&q), Some(k("a")));

        // Deadline passes while still in flight: dirty, ready on done.
        q.add_after(k("a"), Duration::from_secs(1));
        advance(Duration::from_secs(1)).await;
        assert_eq!(ready_now(&q), None);
        q.done(&k("a"));
        assert_eq!(ready_now(&q), Some(k("a")));
    }

    #[tokio::test(start_paused = true)]
    async fn next_sleeps_until_the_earliest_deadline() {
        let q = queue();
        let start = Instant::now();
        q.add_after(k("late"), Duration::from_secs(30));
        let worker = tokio::spawn({
            let q = q.clone();
            async move {
                let key = q.next().await;
                (key, start.elapsed())
            }
        });
        tokio::task::yield_now().await;
        // An earlier deadline arriving while the worker sleeps re-arms its timer.
        q.add_after(k("early"), Duration::from_secs(10));
        let (key, waited) = worker.await.unwrap();
        assert_eq!(key, Some(k("early")));
        assert_eq!(waited, Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_worker_wakes_on_add() {
        let q = queue();
        let worker = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        assert!(!worker.is_finished());
        q.add(k("a"));
        assert_eq!(worker.await.unwrap(), Some(k("a")));
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_grows_caps_and_resets_on_forget() {
        let q = WorkQueue::new(Backoff {
            base: Duration::from_millis(5),
            max: Duration::from_millis(100),
        });
        let a = k("a");
        let delays: Vec<Duration> = (0..7)
            .map(|_| {
                let d = q.add_rate_limited(a.clone());
                // Take it out again so that the next call schedules afresh.
                q.forget_entry_for_test(&a);
                d
            })
            .collect();
        let ms: Vec<u64> = delays.iter().map(|d| d.as_millis() as u64).collect();
        assert_eq!(ms, [5, 10, 20, 40, 80, 100, 100]);
        assert_eq!(q.failures(&a), 7);
        // Other keys have their own count.
        assert_eq!(q.add_rate_limited(k("b")), Duration::from_millis(5));
        q.forget(&a);
        assert_eq!(q.failures(&a), 0);
        assert_eq!(q.add_rate_limited(a.clone()), Duration::from_millis(5));
        // The key is actually queued for that delay.
        advance(Duration::from_millis(4)).await;
        assert_eq!(ready_now(&q), None);
        advance(Duration::from_millis(1)).await;
        let mut got = vec![ready_now(&q).unwrap(), ready_now(&q).unwrap()];
        got.sort();
        assert_eq!(got, [k("a"), k("b")]);
    }

    #[test]
    fn backoff_defaults_and_overflow() {
        let b = Backoff::default();
        assert_eq!(b.delay(0), Duration::from_millis(5));
        assert_eq!(b.delay(1), Duration::from_millis(10));
        assert_eq!(b.delay(17), Duration::from_millis(5 << 17));
        assert_eq!(b.delay(18), Duration::from_secs(1000));
        assert_eq!(b.delay(31), Duration::from_secs(1000));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(1000));
        let zero = Backoff {
            base: Duration::ZERO,
            max: Duration::from_secs(1),
        };
        assert_eq!(zero.delay(100), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_wakes_all_waiters() {
        let q = queue();
        q.add_after(k("later"), Duration::from_secs(3600));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move { q.next().await })
            })
            .collect();
        tokio::task::yield_now().await;
        q.shutdown();
        for w in workers {
            assert_eq!(w.await.unwrap(), None);
        }
        assert!(q.is_shutting_down());
        // Adds after shutdown are ignored, next keeps returning None.
        q.add(k("a"));
        assert_eq!(q.next().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn many_workers_never_share_a_key() {
        const WORKERS: usize = 8;
        const KEYS: usize = 50;
        let q = queue();
        let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
        let counts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let processed = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                let q = q.clone();
                let in_flight = Arc::clone(&in_flight);
                let counts = Arc::clone(&counts);
                let processed = Arc::clone(&processed);
                tokio::spawn(async move {
                    while let Some(key) = q.next().await {
                        assert!(
                            in_flight.lock().unwrap().insert(key.clone()),
                            "{key} handed out twice"
                        );
                        let n = {
                            let mut counts = counts.lock().unwrap();
                            let n = counts.entry(key.clone()).or_insert(0);
                            *n += 1;
                            *n
                        };
                        if n == 1 {
                            // An event during the first sync: must wait for this one to finish.
                            q.add(key.clone());
                            q.add(key.clone());
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        assert!(in_flight.lock().unwrap().remove(&key));
                        processed.fetch_add(1, Ordering::SeqCst);
                        q.done(&key);
                    }
                })
            })
            .collect();
        for i in 0..KEYS {
            q.add(format!("k{i}"));
        }
        // Let the workers run (paused time auto-advances while everyone sleeps).
        while processed.load(Ordering::SeqCst) < 2 * KEYS {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        q.shutdown();
        for w in workers {
            w.await.unwrap();
        }
        assert_eq!(processed.load(Ordering::SeqCst), 2 * KEYS);
        let counts = counts.lock().unwrap();
        assert_eq!(counts.len(), KEYS);
        assert!(counts.values().all(|&n| n == 2), "{counts:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn many_workers_drain_delayed_keys_that_fall_due_together() {
        let q = queue();
        for i in 0..20 {
            q.add_after(format!("k{i}"), Duration::from_secs(1));
        }
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let q = q.clone();
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    while let Some(key) = q.next().await {
                        seen.lock().unwrap().push(key.clone());
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        q.done(&key);
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut got = seen.lock().unwrap().clone();
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 20);
        assert!(q.is_empty());
        q.shutdown();
        for w in workers {
            w.await.unwrap();
        }
    }

    /// Real threads, real time: the same guarantees under true parallelism.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_workers_on_a_multi_thread_runtime() {
        const KEYS: usize = 200;
        let q = queue();
        let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
        let processed = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..6)
            .map(|_| {
                let q = q.clone();
                let in_flight = Arc::clone(&in_flight);
                let processed = Arc::clone(&processed);
                tokio::spawn(async move {
                    while let Some(key) = q.next().await {
                        assert!(in_flight.lock().unwrap().insert(key.clone()));
                        tokio::task::yield_now().await;
                        assert!(in_flight.lock().unwrap().remove(&key));
                        processed.fetch_add(1, Ordering::SeqCst);
                        q.done(&key);
                    }
                })
            })
            .collect();
        for round in 0..3 {
            for i in 0..KEYS {
                q.add(format!("k{i}"));
                if round == 0 {
                    q.add_after(format!("d{i}"), Duration::from_millis(1 + (i % 5) as u64));
                }
            }
            tokio::task::yield_now().await;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !(q.is_empty() && in_flight.lock().unwrap().is_empty()) {
            assert!(
                std::time::Instant::now() < deadline,
                "queue did not drain: {q:?}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        q.shutdown();
        for w in workers {
            w.await.unwrap();
        }
        // Every key was processed at least once; re-adds are deduplicated so at most 3 times.
        let n = processed.load(Ordering::SeqCst);
        assert!((2 * KEYS..=4 * KEYS).contains(&n), "{n}");
    }

    impl WorkQueue<String> {
        /// Test helper: drops a pending (delayed or ready) entry without processing it.
        fn forget_entry_for_test(&self, key: &String) {
            let mut state = self.inner.lock();
            if let Some(slot) = state.delayed.remove(key) {
                state.timeline.remove(&slot);
            }
            if state.dirty.remove(key) {
                state.ready.retain(|k| k != key);
            }
        }
    }
}
