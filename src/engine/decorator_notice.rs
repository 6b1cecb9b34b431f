//! DecoratorControllers are accepted by the API server (the CRD is installed with the others) but
//! this version has no runtime for them. Rather than leave such an object silently doing nothing,
//! every DecoratorController this process would be responsible for gets a Warning Event saying so,
//! once per generation.

use std::collections::HashMap;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Resource, ResourceExt};

use super::Shared;
use super::events::EventType;
use crate::api::DecoratorController;

/// The note of the Warning Event on each DecoratorController.
pub const NOT_RUN: &str = "kubelambda does not run DecoratorControllers yet: this controller does nothing (CompositeControllers are supported)";

/// Runs until the task is dropped. `target` is `--target-label-selector`.
pub async fn warn_decorators(shared: Shared, target: Option<String>) {
    let api: Api<DecoratorController> = Api::all(shared.client.clone());
    let mut config = watcher::Config::default();
    if let Some(selector) = &target {
        config = config.labels(selector);
    }
    // uid → generation already warned about.
    let mut warned: HashMap<String, Option<i64>> = HashMap::new();
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    while let Some(event) = stream.next().await {
        let dc = match event {
            Ok(Event::Apply(dc) | Event::InitApply(dc)) => dc,
            Ok(Event::Delete(dc)) => {
                warned.remove(&dc.uid().unwrap_or_default());
                continue;
            }
            // The CRD may not be installed, which is fine: nothing to warn about.
            Ok(Event::Init | Event::InitDone) | Err(_) => continue,
        };
        let uid = dc.uid().unwrap_or_default();
        if warned.get(&uid) == Some(&dc.metadata.generation) {
            continue;
        }
        warned.insert(uid, dc.metadata.generation);
        tracing::warn!("DecoratorController {}: {NOT_RUN}", dc.name_any());
        shared
            .recorder
            .publish(
                &dc.object_ref(&()),
                EventType::Warning,
                "NotSupported",
                "Start",
                NOT_RUN,
            )
            .await;
    }
}
