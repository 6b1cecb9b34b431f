//! The lazy request must be indistinguishable from jrsonnet's own (eager) JSON conversion: every
//! expression below is evaluated against both and must print the same JSON.

use std::collections::HashMap;

use jrsonnet_evaluator::{
    IStr, State, Val, manifest::JsonFormat, tla::TlaArg, trace::PathResolver,
};
use jrsonnet_stdlib::ContextInitializer;

use super::Json;

const DOCUMENTS: &[&str] = &[
    r#"{"parent": {"apiVersion": "example.com/v1", "kind": "UselessPod",
        "metadata": {"name": "demo", "namespace": "ns", "generation": 3,
                     "labels": {"a": "1", "b.example/c": "2"}},
        "spec": {"name": "alpha", "replicas": 2, "ratio": 0.25, "big": 9007199254740993,
                 "neg": -12, "on": true, "off": false, "none": null}},
        "children": {"Deployment.apps/v1": {}, "ConfigMap.v1": {"x": {"data": {"k": "v"}}}},
        "related": {}, "finalizing": false}"#,
    r#"{"list": [1, "two", [3, [4]], {"five": 5}, null, true], "empty": [], "obj": {}}"#,
    r#"{"unicode": "h\u00e9llo \ud83d\ude00 \"quoted\" \\ tab\t", "esc\"key": 1, "": "empty key"}"#,
    r#"{"dup": 1, "other": 2, "dup": 3}"#,
    r#"{"z": 1, "a": 2, "m": {"y": 1, "b": 2}}"#,
    "[1, 2, 3]",
    r#""just a string""#,
    "42.5",
    "null",
];

const EXPRESSIONS: &[&str] = &[
    "request",
    "std.objectFields(request)",
    "std.objectFieldsAll(request)",
    "std.length(request)",
    "std.type(request)",
    "[std.objectHas(request, k) for k in ['parent', 'list', 'dup', 'nope', '']]",
    "request + { added: true }",
    "request { parent+: { extra: 1 } }",
    "{ a: 1 } + request",
    "std.prune(request)",
    "request == std.parseJson(std.manifestJsonEx(request, ''))",
    "std.manifestJsonEx(request, '  ')",
    "std.manifestYamlDoc(request)",
    "[request[k] for k in std.objectFields(request)]",
    "std.mapWithKey(function(k, v) std.type(v), request)",
    "std.objectValues(request)",
    "local r = request; [r.parent.metadata.name, r.parent.spec.big, r.parent.spec.ratio]",
    "request.list[2][1][0]",
    "std.map(std.type, request.list)",
    "std.reverse(request)",
    "std.sort(request)",
    "request[1:]",
    "std.length(request.empty)",
    "std.objectKeysValues(request)",
    "{ [k]: request[k] for k in std.objectFields(request) }",
    "request.dup",
    "std.get(request, 'missing', 'default')",
    "request.missing",
    "request.parent.spec.none",
    "std.format('%s', [request])",
];

#[allow(clippy::mutable_key_type)] // IStr keys are interned, not mutated
fn eval(state: &State, expression: &str, request: Val) -> String {
    let _entered = state.enter();
    let hook = state
        .evaluate_snippet("test.jsonnet", format!("function(request) {expression}"))
        .expect("the test expression parses");
    let mut tla: HashMap<IStr, TlaArg> = HashMap::new();
    tla.insert("request".into(), TlaArg::Val(request));
    match jrsonnet_evaluator::apply_tla(&tla, hook).and_then(|v| v.manifest(JsonFormat::cli(3))) {
        Ok(text) => text,
        // Errors are compared by kind of failure, not text: their traces name different frames.
        Err(e) => format!("error: {}", e.error()),
    }
}

fn state() -> State {
    let mut builder = State::builder();
    builder.context_initializer(ContextInitializer::new(PathResolver::Absolute));
    builder.build()
}

#[test]
fn lazy_and_eager_conversions_print_the_same_json() {
    let state = state();
    let mut compared = 0;
    for document in DOCUMENTS {
        for expression in EXPRESSIONS {
            let lazy: Json = serde_json::from_str(document).expect("test JSON parses");
            let eager: Val = {
                let _entered = state.enter();
                serde_json::from_str(document).expect("test JSON parses")
            };
            let lazy_out = eval(&state, expression, lazy.to_val());
            let eager_out = eval(&state, expression, eager);
            assert_eq!(
                lazy_out, eager_out,
                "document {document}\nexpression {expression}"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, DOCUMENTS.len() * EXPRESSIONS.len());
}

#[test]
fn the_last_of_duplicate_keys_wins() {
    let json: Json = serde_json::from_str(r#"{"k": 1, "a": 0, "k": 2, "k": 3}"#).expect("parses");
    let Json::Obj(object) = json else {
        panic!("an object")
    };
    let keys: Vec<&str> = object.fields.iter().map(|(k, _)| &**k).collect();
    assert_eq!(keys, ["a", "k"]);
    assert!(matches!(object.get("k"), Some(Json::Num(n)) if *n == 3.0));
}

#[test]
fn bad_json_is_refused_with_serde_errors() {
    let err = serde_json::from_str::<Json>(r#"{"a": }"#).expect_err("not JSON");
    assert!(err.to_string().contains("line 1 column 7"), "{err}");
    let err = serde_json::from_str::<Json>("1e999").expect_err("out of range");
    assert!(err.to_string().contains("number out of range"), "{err}");
}
