//! Hooks whose code lives outside the controller object (`configMapRef`, `file`) and is followed
//! while the controller runs.
//!
//! A producer ([`config_map`] watches the one ConfigMap, [`file`] polls the file's stamp) reports
//! what the source holds now; the [`Judge`] decides. A new text is loaded in a sandbox worker
//! first ([`HookSource::Load`]: parsed and checked, not called); if it loads, the hook switches
//! to it and every parent of the controller is resynced. If it does not (a syntax error, an
//! undefined variable), or the key, ConfigMap or file is gone, the hook keeps the last good
//! text and a Warning Event on the controller says why. A file hook evaluates the text the
//! controller read, never the file itself, so a broken edit on disk cannot reach a sync.

mod config_map;
mod file;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kube::Client;
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::task::AbortOnDropHandle;

use super::connection::Reader;
use super::{HookBuildError, HookOwner};
use crate::engine::events::{EventRecorder, EventType};
use crate::hooks::sandbox::Sandbox;
use crate::hooks::{EvalError, FileStamp, Hook, HookError, HookSource};

/// The Event reason when a new version of a source is refused.
pub const REJECTED: &str = "HookSourceRejected";
/// The Event reason when a new version of a source is in use.
pub const UPDATED: &str = "HookSourceUpdated";

/// How long to wait before checking a text again when the sandbox itself failed (a worker
/// could not start), which says nothing about the text.
const RETRY_CHECK_AFTER: Duration = Duration::from_secs(5);

/// The backend a followed text is for.
#[derive(Clone, Debug)]
pub enum Language {
    /// Jsonnet, with the hook's own `jpath`.
    Jsonnet {
        jpath: Vec<PathBuf>,
    },
    Tera,
}

/// Where a followed text lives.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    ConfigMap {
        namespace: String,
        name: String,
        key: String,
    },
    /// An absolute path.
    File(PathBuf),
}

impl Origin {
    /// `path` as given in the spec, made absolute so errors and the poller do not depend on the
    /// current directory.
    pub fn file(path: &str) -> Self {
        let path = Path::new(path);
        Self::File(std::path::absolute(path).unwrap_or_else(|_| path.to_owned()))
    }

    /// The name evaluation errors carry: the file's path (with the line, as for any file), or
    /// the ConfigMap key.
    fn source_name(&self) -> String {
        match self {
            Self::ConfigMap {
                namespace,
                name,
                key,
            } => format!("configmap {namespace}/{name} key {key}"),
            Self::File(path) => path.display().to_string(),
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ConfigMap {
                namespace,
                name,
                key,
            } => write!(f, "ConfigMap {namespace}/{name} key {key:?}"),
            Self::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

impl Language {
    /// The source that evaluates `text` read from `origin`. A Jsonnet file's text is evaluated
    /// as that file (its errors name it, its relative imports resolve beside it) without the
    /// file being read again; a Tera template is named after its file.
    fn source(&self, origin: &Origin, text: String) -> HookSource {
        match (self, origin) {
            (Self::Jsonnet { jpath }, Origin::File(path)) => HookSource::JsonnetFileText {
                path: path.clone(),
                code: text,
                jpath: jpath.clone(),
            },
            (Self::Jsonnet { jpath }, Origin::ConfigMap { .. }) => HookSource::JsonnetInline {
                name: origin.source_name(),
                code: text,
                jpath: jpath.clone(),
            },
            (Self::Tera, _) => HookSource::TeraInline {
                name: origin.source_name(),
                template: text,
            },
        }
    }
}

/// What a source holds, as last seen by its producer.
#[derive(Clone, Debug, PartialEq)]
pub enum Observed {
    Text(String),
    /// No usable text, and why: the key or the object is gone, the bytes are not UTF-8.
    Unusable(String),
}

/// What the judge made of one observation.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// The text in use.
    Unchanged,
    /// A new text loaded and is now in use; the parents were resynced.
    Updated,
    /// Refused; the hook keeps its text (the reason is reported once).
    Rejected(String),
    /// The sandbox failed; check again later.
    Retry(String),
}

/// Everything a followed hook needs to start.
pub struct Follow {
    pub client: Client,
    pub sandbox: Sandbox,
    pub recorder: Arc<EventRecorder>,
    pub owner: HookOwner,
    /// The spec field of the hook's code, e.g. `spec.hooks.sync.jsonnet`.
    pub field: String,
    pub language: Language,
    pub origin: Origin,
}

/// The hook in use, switched by the judge while calls read it.
struct Current(RwLock<Arc<Hook>>);

impl Current {
    fn get(&self) -> Arc<Hook> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, hook: Hook) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(hook);
    }
}

/// A hook that follows its source; clones share it. The following stops when the last clone is
/// dropped (with its controller).
#[derive(Clone)]
pub struct FollowedHook {
    current: Arc<Current>,
    _task: Arc<AbortOnDropHandle<()>>,
}

impl FollowedHook {
    /// Reads the source (a missing or unreadable one fails like any hook setting read at
    /// start), then follows it. The first text is used as it is, as inline code would be: there
    /// is no earlier version to keep; a broken one fails the syncs that call it.
    pub async fn start(follow: Follow) -> Result<Self, HookBuildError> {
        let (text, stamp) = initial_text(&follow).await?;
        let source = follow.language.source(&follow.origin, text.clone());
        let current = Arc::new(Current(RwLock::new(Arc::new(Hook::Evaluated {
            sandbox: follow.sandbox.clone(),
            source,
        }))));
        let (tx, rx) = watch::channel(Observed::Text(text.clone()));
        let producer = match &follow.origin {
            Origin::ConfigMap {
                namespace,
                name,
                key,
            } => futures::future::Either::Left(config_map::watch(
                follow.client.clone(),
                namespace.clone(),
                name.clone(),
                key.clone(),
                tx,
            )),
            Origin::File(path) => {
                futures::future::Either::Right(file::poll(path.clone(), stamp, tx))
            }
        };
        let judge = Judge {
            current: current.clone(),
            good: text,
            reported: None,
            follow,
        };
        let task = tokio::spawn(async move {
            tokio::join!(producer, judge.run(rx));
        });
        Ok(Self {
            current,
            _task: Arc::new(AbortOnDropHandle::new(task)),
        })
    }

    pub async fn call(&self, request: &Value) -> Result<Value, HookError> {
        let hook = self.current.get();
        hook.call(request).await
    }
}

/// The first text, and for a file the stamp it was read under (taken before reading, so an
/// edit during the read is seen by the first poll).
async fn initial_text(follow: &Follow) -> Result<(String, Option<FileStamp>), HookBuildError> {
    match &follow.origin {
        Origin::ConfigMap {
            namespace,
            name,
            key,
        } => {
            let bytes = Reader::new(&follow.client)
                .config_map_key(&follow.field, namespace, name, key)
                .await?;
            let text = String::from_utf8(bytes).map_err(|_| HookBuildError::BadValue {
                path: follow.field.clone(),
                kind: "ConfigMap",
                namespace: namespace.clone(),
                name: name.clone(),
                key: key.clone(),
                problem: "is not UTF-8 text".to_string(),
            })?;
            Ok((text, None))
        }
        Origin::File(path) => {
            let stamp = FileStamp::of(path);
            match file::read(path).await {
                Observed::Text(text) => Ok((text, stamp)),
                Observed::Unusable(problem) => Err(HookBuildError::File {
                    path: follow.field.clone(),
                    file: path.display().to_string(),
                    problem,
                }),
            }
        }
    }
}

/// Decides about each new observation of one source.
struct Judge {
    current: Arc<Current>,
    /// The text in use.
    good: String,
    /// The problem last reported, so a problem is reported once, not at every observation.
    reported: Option<String>,
    follow: Follow,
}

impl Judge {
    /// Judges the newest observation whenever it changes; a check the sandbox could not make is
    /// tried again after [`RETRY_CHECK_AFTER`] unless a newer observation comes first.
    async fn run(mut self, mut rx: watch::Receiver<Observed>) {
        while rx.changed().await.is_ok() {
            loop {
                let seen = rx.borrow_and_update().clone();
                let Verdict::Retry(why) = self.judge(seen).await else {
                    break;
                };
                tracing::warn!(
                    controller = %self.follow.owner.name(),
                    "{}: cannot check the new version of {} ({why}); trying again in {RETRY_CHECK_AFTER:?}",
                    self.follow.field, self.follow.origin,
                );
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep(RETRY_CHECK_AFTER) => {}
                }
            }
        }
    }

    async fn judge(&mut self, seen: Observed) -> Verdict {
        let text = match seen {
            Observed::Text(text) if text == self.good => {
                // Back to the text in use: nothing to do, and a later breakage is news again.
                self.reported = None;
                return Verdict::Unchanged;
            }
            Observed::Text(text) => text,
            Observed::Unusable(problem) => return self.reject(problem).await,
        };
        let source = self
            .follow
            .language
            .source(&self.follow.origin, text.clone());
        let load = HookSource::Load {
            hook: Box::new(source.clone()),
        };
        match self.follow.sandbox.evaluate(&load, b"null").await {
            Ok(_) => {}
            Err(EvalError::Worker(why)) => return Verdict::Retry(why),
            Err(e) => return self.reject(e.to_string()).await,
        }
        self.current.set(Hook::Evaluated {
            sandbox: self.follow.sandbox.clone(),
            source,
        });
        self.good = text;
        self.reported = None;
        tracing::info!(
            controller = %self.follow.owner.name(),
            "{}: using the new version of {}; resyncing every parent",
            self.follow.field, self.follow.origin,
        );
        self.follow.owner.resync();
        self.event(
            EventType::Normal,
            UPDATED,
            format!(
                "{}: using the new version of {}",
                self.follow.field, self.follow.origin
            ),
        )
        .await;
        Verdict::Updated
    }

    async fn reject(&mut self, problem: String) -> Verdict {
        if self.reported.as_ref() != Some(&problem) {
            let note = format!(
                "{}: still using the last good version of {}: {problem}",
                self.follow.field, self.follow.origin
            );
            tracing::warn!(controller = %self.follow.owner.name(), "{note}");
            self.event(EventType::Warning, REJECTED, note).await;
            self.reported = Some(problem.clone());
        }
        Verdict::Rejected(problem)
    }

    async fn event(&self, type_: EventType, reason: &str, note: String) {
        self.follow
            .recorder
            .publish(
                self.follow.owner.reference(),
                type_,
                reason,
                "Reload",
                &note,
            )
            .await;
    }
}
