//! From informer changes to queued parents: a parent's own changes (with ignoreStatusChanges),
//! a child's changes (to its controller owner, or, for an orphan, to every composite parent that
//! may adopt it), and periodic resyncs.

use std::sync::Arc;

use kube::ResourceExt;
use kube::api::DynamicObject;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::task::JoinHandle;

use super::{Controller, Kind, ParentKey};
use crate::engine::informer::{Change, ObjectKey};

/// Starts the tasks that feed the controller's queue.
pub(super) fn spawn(controller: &Arc<Controller>) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    // Subscribe before waiting, so nothing that happens during start-up is missed.
    let parent_rxs: Vec<_> = controller
        .parents
        .iter()
        .map(|p| p.informer.subscribe())
        .collect();
    let child_rxs: Vec<_> = controller
        .children
        .iter()
        .map(|c| c.informer.subscribe())
        .collect();
    let this = controller.clone();
    tasks.push(tokio::spawn(async move {
        this.wait_ready().await;
        this.enqueue_all();
    }));
    for (type_index, rx) in parent_rxs.into_iter().enumerate() {
        let this = controller.clone();
        tasks.push(tokio::spawn(async move {
            this.watch_parents(type_index, rx).await
        }));
    }
    for rx in child_rxs {
        let this = controller.clone();
        tasks.push(tokio::spawn(async move { this.watch_children(rx).await }));
    }
    // resyncPeriodSeconds, and `--cache-flush-interval` for every controller.
    for period in [
        controller.resync_period,
        controller.shared.cache_flush_interval,
    ]
    .into_iter()
    .flatten()
    {
        let this = controller.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.tick().await;
            loop {
                tick.tick().await;
                this.enqueue_all();
            }
        }));
    }
    tasks
}

/// What a parent update must change to trigger a sync under ignoreStatusChanges: its
/// generation, labels, annotations, finalizers or deletion.
pub fn fingerprint(obj: &DynamicObject) -> (Option<i64>, u64) {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    obj.metadata.labels.hash(&mut h);
    obj.metadata.annotations.hash(&mut h);
    obj.metadata.deletion_timestamp.is_some().hash(&mut h);
    obj.metadata.finalizers.hash(&mut h);
    (obj.metadata.generation, h.finish())
}

fn api_group(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

impl Controller {
    fn selected_or_finalizing(&self, type_index: usize, obj: &DynamicObject) -> bool {
        self.parents[type_index].selects(obj) || obj.finalizers().contains(&self.finalizer)
    }

    async fn watch_parents(&self, type_index: usize, mut rx: broadcast::Receiver<Change>) {
        let ignore_status = self.parents[type_index].ignore_status_changes;
        loop {
            match rx.recv().await {
                Ok(Change::Applied(obj)) => {
                    let key = ParentKey {
                        type_index,
                        object: ObjectKey::of(&obj),
                    };
                    let unchanged = self.state.saw(&key, fingerprint(&obj));
                    if (ignore_status && unchanged)
                        || !self.selected_or_finalizing(type_index, &obj)
                    {
                        continue;
                    }
                    self.queue.add(key);
                }
                Ok(Change::Deleted(obj)) => {
                    let key = ParentKey {
                        type_index,
                        object: ObjectKey::of(&obj),
                    };
                    self.state.forget(&key);
                    if let Some(uid) = obj.uid() {
                        self.shared.recorder.forget(&uid);
                    }
                    self.queue.add(key);
                }
                Err(RecvError::Lagged(_)) => self.enqueue_all(),
                Err(RecvError::Closed) => return,
            }
        }
    }

    async fn watch_children(&self, mut rx: broadcast::Receiver<Change>) {
        loop {
            let (obj, deleted) = match rx.recv().await {
                Ok(Change::Applied(obj)) => (obj, false),
                Ok(Change::Deleted(obj)) => (obj, true),
                Err(RecvError::Lagged(_)) => {
                    self.enqueue_all();
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            if deleted && let Some(uid) = obj.uid() {
                self.writer.forget(&uid);
            }
            if let Some(key) = self.owner_of(&obj) {
                self.queue.add(key);
            } else if !deleted && matches!(self.kind, Kind::Composite { .. }) {
                self.enqueue_adopters(&obj);
            }
        }
    }

    /// The parent named by `child`'s controller ownerRef, if it is one of ours (same group and
    /// kind, same UID, selected or finalizing).
    fn owner_of(&self, child: &DynamicObject) -> Option<ParentKey> {
        let owner = child
            .owner_references()
            .iter()
            .find(|r| r.controller == Some(true))?;
        self.parents.iter().enumerate().find_map(|(type_index, p)| {
            if owner.kind != p.ty.ar.kind || api_group(&owner.api_version) != p.ty.ar.group {
                return None;
            }
            let ns = if p.ty.namespaced {
                child.namespace()
            } else {
                None
            };
            let object = ObjectKey::new(ns.as_deref(), &owner.name);
            let parent = p.informer.get(&object)?;
            (parent.uid().as_deref() == Some(owner.uid.as_str())
                && self.selected_or_finalizing(type_index, &parent))
            .then_some(ParentKey { type_index, object })
        })
    }

    /// An orphan: every composite parent whose selector matches it may want to adopt it.
    fn enqueue_adopters(&self, orphan: &DynamicObject) {
        let labels = orphan.labels();
        for (type_index, p) in self.parents.iter().enumerate() {
            let ns = if p.ty.namespaced {
                orphan.namespace()
            } else {
                None
            };
            for parent in p.informer.list(ns.as_deref()) {
                if let Ok(sel) = self.selector_for(&parent)
                    && !sel.is_empty()
                    && sel.matches(labels)
                    && self.selected_or_finalizing(type_index, &parent)
                {
                    self.queue.add(ParentKey {
                        type_index,
                        object: ObjectKey::of(&parent),
                    });
                }
            }
        }
    }
}
