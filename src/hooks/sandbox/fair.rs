//! Sharing the workers fairly between tenants (controllers, `httpd` routes).
//!
//! Two rules:
//! - a tenant runs at most `per_tenant` evaluations at once, so one controller whose hook never
//!   ends cannot hold every worker: with `per_tenant < workers`, the others always have one;
//! - when a worker frees up, waiting tenants are served in turn (round robin), not in arrival
//!   order, so a tenant with a hundred queued requests does not make one with a single request
//!   wait behind all of them.
//!
//! A [`Slot`] is the right to use one worker; dropping it gives the worker to the next tenant.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// Who a request is evaluated for.
pub type Tenant = Arc<str>;

pub struct FairSlots {
    per_tenant: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    free: usize,
    /// Slots held per tenant (tenants holding none are removed).
    busy: HashMap<Tenant, usize>,
    /// Requests waiting, per tenant (tenants with none are removed).
    waiting: HashMap<Tenant, VecDeque<oneshot::Sender<Slot>>>,
    /// Tenants with waiting requests, in the order they are served next.
    turn: VecDeque<Tenant>,
}

/// One worker's worth of evaluation, held by one tenant until dropped.
pub struct Slot {
    slots: Arc<FairSlots>,
    tenant: Tenant,
}

/// A snapshot for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Occupancy {
    pub workers: usize,
    /// Slots the asking tenant holds.
    pub held: usize,
    pub per_tenant: usize,
}

impl FairSlots {
    pub fn new(workers: usize, per_tenant: usize) -> Arc<Self> {
        Arc::new(Self {
            per_tenant: per_tenant.max(1),
            state: Mutex::new(State {
                free: workers,
                ..State::default()
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent after every statement, so a panic elsewhere cannot leave it
        // half-updated: keep going with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a slot for `tenant`. Dropping the future gives up the place in the queue.
    pub async fn acquire(self: &Arc<Self>, tenant: &Tenant) -> Slot {
        let (tx, rx) = oneshot::channel();
        let granted = {
            let mut state = self.lock();
            let queue = state.waiting.entry(tenant.clone()).or_default();
            queue.retain(|tx| !tx.is_closed());
            queue.push_back(tx);
            if !state.turn.contains(tenant) {
                state.turn.push_back(tenant.clone());
            }
            self.grant(&mut state)
        };
        Self::deliver(granted);
        match rx.await {
            Ok(slot) => slot,
            // The sender is only dropped after sending, or with the whole pool.
            Err(_) => std::future::pending().await,
        }
    }

    /// How busy the workers are, as seen by `tenant`.
    pub fn occupancy(&self, tenant: &Tenant, workers: usize) -> Occupancy {
        let state = self.lock();
        Occupancy {
            workers,
            held: state.busy.get(tenant).copied().unwrap_or(0),
            per_tenant: self.per_tenant,
        }
    }

    /// Hands free slots to waiting requests, tenants in turn, skipping tenants at their cap.
    /// Returns the grants to send once the lock is released (a failed send drops the slot, and
    /// dropping a slot takes the lock).
    fn grant(self: &Arc<Self>, state: &mut State) -> Vec<(oneshot::Sender<Slot>, Slot)> {
        let mut granted = Vec::new();
        while state.free > 0 {
            let per_tenant = self.per_tenant;
            let Some(at) = state
                .turn
                .iter()
                .position(|t| state.busy.get(t).copied().unwrap_or(0) < per_tenant)
            else {
                break;
            };
            let Some(tenant) = state.turn.remove(at) else {
                break;
            };
            let queue = state.waiting.entry(tenant.clone()).or_default();
            let mut next = None;
            while let Some(tx) = queue.pop_front() {
                if !tx.is_closed() {
                    next = Some(tx);
                    break;
                }
            }
            if queue.is_empty() {
                state.waiting.remove(&tenant);
            } else {
                state.turn.push_back(tenant.clone());
            }
            if let Some(tx) = next {
                state.free -= 1;
                *state.busy.entry(tenant.clone()).or_default() += 1;
                granted.push((
                    tx,
                    Slot {
                        slots: self.clone(),
                        tenant,
                    },
                ));
            }
        }
        granted
    }

    fn deliver(granted: Vec<(oneshot::Sender<Slot>, Slot)>) {
        for (tx, slot) in granted {
            // A receiver that went away returns the slot, which is dropped here: released.
            let _ = tx.send(slot);
        }
    }

    fn release(self: &Arc<Self>, tenant: &Tenant) {
        let granted = {
            let mut state = self.lock();
            state.free += 1;
            if let Some(held) = state.busy.get_mut(tenant) {
                *held -= 1;
                if *held == 0 {
                    state.busy.remove(tenant);
                }
            }
            self.grant(&mut state)
        };
        Self::deliver(granted);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release(&self.tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn tenant(name: &str) -> Tenant {
        Arc::from(name)
    }

    async fn pending_for(slots: &Arc<FairSlots>, t: &Tenant) -> bool {
        tokio::time::timeout(Duration::from_millis(20), slots.acquire(t))
            .await
            .is_err()
    }

    #[tokio::test]
    async fn a_tenant_never_holds_more_than_its_cap() {
        let slots = FairSlots::new(3, 2);
        let bad = tenant("bad");
        let a = slots.acquire(&bad).await;
        let b = slots.acquire(&bad).await;
        assert!(
            pending_for(&slots, &bad).await,
            "third slot for the same tenant"
        );
        let good = slots.acquire(&tenant("good")).await;
        assert_eq!(slots.occupancy(&bad, 3).held, 2);
        drop((a, b, good));
        assert_eq!(slots.occupancy(&bad, 3).held, 0);
        assert_eq!(slots.lock().free, 3);
    }

    #[tokio::test]
    async fn waiting_tenants_are_served_in_turn() {
        let slots = FairSlots::new(1, 1);
        let (a, b) = (tenant("a"), tenant("b"));
        let first = slots.acquire(&a).await;
        // a queues three requests, then b one: b is served second, not fourth.
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, t) in [&a, &a, &a, &b].into_iter().enumerate() {
            let (pool, t, order) = (slots.clone(), t.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let slot = pool.acquire(&t).await;
                order.lock().expect("order").push(t.to_string());
                tokio::task::yield_now().await;
                drop(slot);
            }));
            // Queue in a known order.
            while slots
                .lock()
                .waiting
                .values()
                .map(VecDeque::len)
                .sum::<usize>()
                < i + 1
            {
                tokio::task::yield_now().await;
            }
        }
        drop(first);
        for task in tasks {
            task.await.expect("task");
        }
        assert_eq!(*order.lock().expect("order"), ["a", "b", "a", "a"]);
    }

    #[tokio::test]
    async fn a_request_that_gives_up_leaves_no_slot_behind() {
        let slots = FairSlots::new(1, 1);
        let t = tenant("t");
        let held = slots.acquire(&t).await;
        assert!(pending_for(&slots, &t).await);
        assert!(pending_for(&slots, &t).await);
        drop(held);
        // Both waiters gave up: the slot is free again, not lost to a dead receiver.
        assert_eq!(slots.lock().free, 1);
        let again = slots.acquire(&t).await;
        drop(again);
        assert!(slots.lock().busy.is_empty());
    }
}
