//! Two CompositeControllers whose parents can be the same objects overwrite each other's
//! children and status forever (each sync undoes the other's). Metacontroller lets them fight;
//! here the conflict is detected when a controller starts and reported on both.

use crate::api::{CompositeControllerSpec, parse_api_version_at};
use crate::selector::Selector;

/// Whether some parent object could be claimed by both controllers: the same parent resource
/// (group and resource; the version does not matter) and parent label selectors that do not rule
/// each other out. Selectors that cannot be read count as "may overlap".
pub fn may_share_parents(a: &CompositeControllerSpec, b: &CompositeControllerSpec) -> bool {
    let (pa, pb) = (&a.parent_resource, &b.parent_resource);
    fn group(api_version: &str) -> &str {
        parse_api_version_at("", api_version)
            .map(|(group, _)| group)
            .unwrap_or_default()
    }
    if pa.resource != pb.resource || group(&pa.api_version) != group(&pb.api_version) {
        return false;
    }
    match (selector(a), selector(b)) {
        (Some(x), Some(y)) => x.may_overlap(&y),
        _ => true,
    }
}

fn selector(spec: &CompositeControllerSpec) -> Option<Selector> {
    let Some(raw) = &spec.parent_resource.label_selector else {
        return Some(Selector::default());
    };
    Selector::from_label_selector(raw).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(
        api_version: &str,
        resource: &str,
        selector: serde_json::Value,
    ) -> CompositeControllerSpec {
        let mut parent = json!({"apiVersion": api_version, "resource": resource});
        if !selector.is_null() {
            parent["labelSelector"] = selector;
        }
        serde_json::from_value(json!({
            "parentResource": parent,
            "hooks": {"sync": {"webhook": {"url": "http://x"}}},
        }))
        .expect("spec")
    }

    #[test]
    fn same_resource_with_compatible_selectors_overlaps() {
        let plain = spec("example.com/v1", "things", json!(null));
        let v2 = spec("example.com/v2", "things", json!(null));
        let a = spec(
            "example.com/v1",
            "things",
            json!({"matchLabels": {"app": "a"}}),
        );
        let b = spec(
            "example.com/v1",
            "things",
            json!({"matchLabels": {"app": "b"}}),
        );
        assert!(may_share_parents(&plain, &v2), "versions of one resource");
        assert!(may_share_parents(&plain, &a));
        assert!(!may_share_parents(&a, &b), "disjoint selectors");
        assert!(!may_share_parents(
            &plain,
            &spec("other.com/v1", "things", json!(null))
        ));
        assert!(!may_share_parents(
            &plain,
            &spec("example.com/v1", "others", json!(null))
        ));
    }
}
