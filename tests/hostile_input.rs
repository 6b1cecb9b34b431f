//! Hostile input never panics: property tests over arbitrary JSON and text for the code that reads
//! what hooks, webhooks and the API server send (the hook response decoder and child validation,
//! the three-way merge of dynamic apply, managedFields, the YAML reader behind `parseYaml` and
//! Tera responses). Each case also checks a property that must hold for every input, e.g. merging
//! twice changes nothing.

use kubelambda::engine::{apply, managed_fields};
use kubelambda::hooks::protocol::{
    COMPOSITE_RESPONSE_FIELDS, ChildRules, ChildType, CompositeResponse, DecodeMode, decode,
    validate_children,
};
use kubelambda::selector::Selector;
use kubelambda::yaml;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Keys that the code under test treats specially, mixed with arbitrary ones, so that random
/// objects often look like Kubernetes objects.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("metadata".to_owned()),
        Just("name".to_owned()),
        Just("namespace".to_owned()),
        Just("labels".to_owned()),
        Just("annotations".to_owned()),
        Just("kind".to_owned()),
        Just("apiVersion".to_owned()),
        Just("port".to_owned()),
        Just("children".to_owned()),
        Just("status".to_owned()),
        Just(apply::LAST_APPLIED_ANNOTATION.to_owned()),
        "[a-z:.{}\"]{0,6}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[ -~]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn object() -> impl Strategy<Value = Value> {
    prop::collection::vec((key(), json_value()), 0..6)
        .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn merging_twice_changes_nothing(observed in json_value(), last in json_value(), desired in json_value()) {
        let once = apply::merge(&observed, &last, &desired);
        let twice = apply::merge(&once, &last, &desired);
        prop_assert_eq!(once, twice);
    }

    #[test]
    fn apply_update_is_a_fixed_point_or_a_clear_error(observed in object(), desired in object()) {
        if let Ok(once) = apply::apply_update(&observed, &desired) {
            let twice = apply::apply_update(&once, &desired).expect("the result is readable");
            prop_assert_eq!(once, twice);
        }
        let _ = apply::with_last_applied(&desired);
        let sanitized = apply::sanitize_for_ssa(&desired);
        prop_assert!(sanitized.pointer("/status").is_none());
    }

    #[test]
    fn subset_is_reflexive(value in json_value()) {
        prop_assert!(apply::is_subset(&value, &value));
    }

    #[test]
    fn managed_fields_never_panic(fields in json_value(), object in json_value()) {
        let _ = managed_fields::first_unwanted(&fields, &object);
        let _ = managed_fields::project(&fields, &object);
        let _ = managed_fields::migrated_entries(&object, "kubelambda", &["metacontroller"]);
        // Fields owned and present are never unwanted.
        let projected = managed_fields::project(&fields, &object);
        let _ = managed_fields::first_unwanted(&fields, &projected);
    }

    #[test]
    fn the_response_decoder_and_validation_never_panic(response in json_value(), strict in any::<bool>()) {
        let mode = if strict { DecodeMode::Strict } else { DecodeMode::Loose };
        if let Ok(decoded) = decode::<CompositeResponse>(response, mode, COMPOSITE_RESPONSE_FIELDS) {
            let types = [
                ChildType { api_version: "v1".into(), kind: "ConfigMap".into(), namespaced: true },
                ChildType { api_version: "rbac.authorization.k8s.io/v1".into(), kind: "ClusterRole".into(), namespaced: false },
            ];
            let selector = Selector::equals(&[("app", "x")]);
            for (namespace, selector) in [(Some("ns"), Some(&selector)), (None, None)] {
                let rules = ChildRules { parent_namespace: namespace, types: &types, selector, field: "children" };
                let _ = validate_children(decoded.children.clone(), &rules);
            }
        }
    }

    #[test]
    fn children_that_look_valid_validate_or_name_their_problem(children in prop::collection::vec(object(), 0..4)) {
        let types = [ChildType { api_version: "v1".into(), kind: "ConfigMap".into(), namespaced: true }];
        let rules = ChildRules { parent_namespace: Some("ns"), types: &types, selector: None, field: "children" };
        if let Err(e) = validate_children(children, &rules) {
            prop_assert!(e.to_string().starts_with("children["), "{}", e);
        }
    }

    #[test]
    fn the_yaml_reader_never_panics(text in "[ -~\\n\\t]{0,200}") {
        let _ = yaml::parse_stream(&text);
    }

    #[test]
    fn yaml_like_text_never_panics(parts in prop::collection::vec(prop_oneof![
        Just("- "), Just(": "), Just("\n"), Just("  "), Just("---\n"), Just("&a "), Just("*a"),
        Just("<<: "), Just("{"), Just("}"), Just("["), Just("]"), Just("'"), Just("\""), Just("|\n"),
        Just(">-\n"), Just("!!str "), Just("? "), Just("key"), Just("1e3"), Just("0x1F"), Just("~"),
    ], 0..60)) {
        let _ = yaml::parse_stream(&parts.concat());
    }

    #[test]
    fn yaml_written_by_us_reads_back(value in json_value()) {
        for text in [yaml::to_yaml(&value), yaml::to_yaml_go(&value)] {
            let back = yaml::parse_stream(&text);
            prop_assert!(back.is_ok(), "{:?} does not read back: {:?}", text, back);
        }
    }
}
