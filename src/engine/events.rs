//! Kubernetes Events (events.k8s.io/v1) on parents and controllers.
//!
//! kube's `Recorder` folds every event with the same reason into one series and keeps the first
//! message, so after a hook is fixed and fails differently, `kubectl describe` would still show the
//! old error. Here a repeat of the *same* message bumps the series (written back at most every
//! [`SERIES_WRITE_INTERVAL`]); a new message is a new event.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// The longest message the API server accepts is 1 kB.
const MAX_NOTE: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

/// (object uid or name, type, reason, note): what makes two events the same series.
type SeriesKey = (String, EventType, String, String);
/// A series already written: where, how often it happened, and what the API server has seen.
#[derive(Clone)]
struct SeriesEntry {
    namespace: String,
    name: String,
    count: i32,
    written_at: Instant,
}

/// How often a repeating series is written back at most. A parent that fails every few
/// milliseconds (a webhook answering 429 with no delay, before backoff grows) would otherwise
/// cost one API write per failure; the count is kept in memory and written with the next
/// repeat after this interval, as client-go's event series do.
pub const SERIES_WRITE_INTERVAL: Duration = Duration::from_secs(30);

/// Series not repeated for this long are forgotten once the map is large.
const SERIES_FORGET_AFTER: Duration = Duration::from_secs(600);
const SERIES_PRUNE_AT: usize = 10_000;

pub struct EventRecorder {
    client: Client,
    controller: String,
    instance: String,
    series: Mutex<HashMap<SeriesKey, SeriesEntry>>,
}

fn truncate(note: &str) -> String {
    if note.len() <= MAX_NOTE {
        return note.to_owned();
    }
    let mut end = MAX_NOTE - 3;
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &note[..end])
}

impl EventRecorder {
    pub fn new(client: Client) -> Self {
        let instance = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "kubelambda".into());
        Self {
            client,
            controller: "kubelambda.io/controller".into(),
            instance,
            series: Mutex::default(),
        }
    }

    /// The object of this UID was deleted: its series will not repeat.
    pub fn forget(&self, uid: &str) {
        self.series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(object, ..), _| object != uid);
    }

    /// Publishes an event about `regarding`; failures are logged, never returned: an event that
    /// cannot be written must not fail a sync.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        let note = truncate(note);
        let namespace = regarding
            .namespace
            .clone()
            .filter(|ns| !ns.is_empty())
            .unwrap_or_else(|| "default".into());
        let object = regarding
            .uid
            .clone()
            .or_else(|| regarding.name.clone())
            .unwrap_or_default();
        let key = (object, type_, reason.to_owned(), note.clone());
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let existing = {
            let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
            match series.get_mut(&key) {
                Some(entry) => {
                    entry.count += 1;
                    if entry.written_at.elapsed() < SERIES_WRITE_INTERVAL {
                        // Counted; written with a later repeat.
                        return;
                    }
                    Some(entry.clone())
                }
                None => None,
            }
        };
        if let Some(entry) = existing {
            let patch = json!({"series": EventSeries { count: entry.count, last_observed_time: now.clone() }});
            let result = Api::<Event>::namespaced(self.client.clone(), &entry.namespace)
                .patch(&entry.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await;
            match result {
                Ok(_) => {
                    let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(e) = series.get_mut(&key) {
                        e.written_at = Instant::now();
                    }
                    return;
                }
                Err(e) => {
                    tracing::debug!(
                        "event series {} gone ({e}); creating a new event",
                        entry.name
                    )
                }
            }
        }
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!(
                    "{}-",
                    regarding
                        .name
                        .clone()
                        .unwrap_or_else(|| "kubelambda".into())
                )),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(now),
            type_: Some(
                match type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            reason: Some(reason.to_owned()),
            action: Some(action.to_owned()),
            note: Some(note),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(created) => {
                if let Some(name) = created.metadata.name {
                    let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
                    if series.len() >= SERIES_PRUNE_AT {
                        series.retain(|_, e| e.written_at.elapsed() < SERIES_FORGET_AFTER);
                    }
                    series.insert(
                        key,
                        SeriesEntry {
                            namespace,
                            name,
                            count: 1,
                            written_at: Instant::now(),
                        },
                    );
                }
            }
            Err(e) => tracing::warn!("cannot record event {reason} on {:?}: {e}", regarding.name),
        }
    }
}
