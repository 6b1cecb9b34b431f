//! API calls counted by the API server itself (`apiserver_request_total` on its /metrics), so
//! that every contender, kubelambda, Metacontroller and the raw client, is counted the same way.

use std::collections::BTreeMap;

use kube::Client;

use crate::BoxError;

/// Requests by (verb, resource[/subresource]).
pub type Counts = BTreeMap<(String, String), f64>;

/// Resources left out: leases (leader election and the API server's own heartbeats) and
/// namespaces (the bench's own setup). Non-resource requests (discovery, /metrics, health) and
/// WATCH (long-running, counted once per stream) are left out too.
const IGNORED_RESOURCES: [&str; 3] = ["", "leases", "namespaces"];

pub async fn scrape(client: &Client) -> Result<Counts, BoxError> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .map_err(|e| format!("building GET /metrics: {e}"))?;
    let text = client
        .request_text(request)
        .await
        .map_err(|e| format!("GET /metrics from the API server: {e}"))?;
    Ok(parse(&text))
}

fn parse(text: &str) -> Counts {
    let mut counts = Counts::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let label = |key: &str| -> String {
            let pat = format!("{key}=\"");
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&pat))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let (verb, resource, sub) = (label("verb"), label("resource"), label("subresource"));
        if verb == "WATCH" || IGNORED_RESOURCES.contains(&resource.as_str()) {
            continue;
        }
        let resource = if sub.is_empty() {
            resource
        } else {
            format!("{resource}/{sub}")
        };
        *counts.entry((verb, resource)).or_default() += value;
    }
    counts
}

/// after − before, zero entries dropped.
pub fn diff(before: &Counts, after: &Counts) -> Counts {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0.0);
            (d.abs() > 0.5).then(|| (k.clone(), d))
        })
        .collect()
}

pub fn total(counts: &Counts) -> f64 {
    counts.values().sum()
}
