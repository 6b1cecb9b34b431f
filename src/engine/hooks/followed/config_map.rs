//! Follows one ConfigMap key: a watch on that ConfigMap alone (a field selector on its name),
//! so an edit is seen at once and nothing else in the namespace is listed.

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::watch;

use super::Observed;
use crate::engine::hooks::connection::config_map_value;

/// What `key` of `config_map` holds.
pub fn observe(config_map: ConfigMap, key: &str) -> Observed {
    match config_map_value(config_map, key).map(String::from_utf8) {
        Some(Ok(text)) => Observed::Text(text),
        Some(Err(_)) => Observed::Unusable(format!("key {key:?} is not UTF-8 text")),
        None => Observed::Unusable(format!("the ConfigMap has no key {key:?}")),
    }
}

/// Reports what the key holds whenever the ConfigMap changes, until `tx` has no receiver.
/// Watch errors are retried with the watcher's backoff.
pub async fn watch(
    client: Client,
    namespace: String,
    name: String,
    key: String,
    tx: watch::Sender<Observed>,
) {
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    // While a (re)list is in progress: what it found so far.
    let mut listed: Option<Observed> = None;
    while let Some(event) = stream.next().await {
        let seen = match event {
            Ok(Event::Init) => {
                listed = None;
                continue;
            }
            Ok(Event::InitApply(config_map)) => {
                listed = Some(observe(config_map, &key));
                continue;
            }
            Ok(Event::InitDone) => listed
                .take()
                .unwrap_or_else(|| Observed::Unusable("the ConfigMap does not exist".into())),
            Ok(Event::Apply(config_map)) => observe(config_map, &key),
            Ok(Event::Delete(_)) => Observed::Unusable("the ConfigMap was deleted".into()),
            Err(e) => {
                tracing::warn!("watching ConfigMap {namespace}/{name} (a hook's source): {e}");
                continue;
            }
        };
        if tx.is_closed() {
            return;
        }
        tx.send_if_modified(|old| {
            let changed = *old != seen;
            *old = seen;
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::ConfigMap;

    use super::{Observed, observe};

    fn config_map(data: &[(&str, &str)], binary: &[(&str, &[u8])]) -> ConfigMap {
        ConfigMap {
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            binary_data: Some(
                binary
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..ConfigMap::default()
        }
    }

    #[test]
    fn a_key_is_read_from_data_then_binary_data() {
        let cm = config_map(
            &[("a", "text a")],
            &[("b", b"text b"), ("c", &[0xff, 0xfe])],
        );
        assert_eq!(observe(cm.clone(), "a"), Observed::Text("text a".into()));
        assert_eq!(observe(cm.clone(), "b"), Observed::Text("text b".into()));
        assert_eq!(
            observe(cm.clone(), "c"),
            Observed::Unusable("key \"c\" is not UTF-8 text".into())
        );
        assert_eq!(
            observe(cm, "d"),
            Observed::Unusable("the ConfigMap has no key \"d\"".into())
        );
    }
}
