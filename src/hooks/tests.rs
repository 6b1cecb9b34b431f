//! The backends evaluated in-process (the worker's own code path, without the process around it).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::eval::Evaluator;
use super::jsonnet::JsonnetOptions;
use super::{EvalError, HookSource, LimitKind, Limits};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/hooks").join(name)
}

fn example_request() -> Vec<u8> {
    std::fs::read(root().join("examples/useless-controller/request.json")).expect("request.json")
}

fn file(path: &Path) -> HookSource {
    HookSource::from_file(path, &[]).expect("hook source")
}

fn evaluator() -> Evaluator {
    Evaluator::new(JsonnetOptions::default(), &Limits::default())
}

fn eval_json(ev: &mut Evaluator, source: &HookSource, request: &[u8]) -> Value {
    let text = ev.evaluate(source, request).expect("evaluation succeeds");
    serde_json::from_str(&text).expect("response is JSON")
}

#[test]
fn example_hook_gives_the_expected_response_byte_for_byte() {
    let expected =
        std::fs::read_to_string(root().join("examples/useless-controller/response.json"))
            .expect("response.json");
    let source = file(&root().join("examples/useless-controller/sync.jsonnet"));
    let out = evaluator()
        .evaluate(&source, &example_request())
        .expect("evaluates");
    assert_eq!(out, expected);
}

/// jsonnetd's natives, so hooks written for Metacontroller's Jsonnet server run unchanged.
#[test]
fn jsonnetd_natives() {
    let code = r#"function(request) {
      obj: std.native('jsonUnmarshal')(request.text),
      n: std.native('parseInt')('-42'),
      big: std.native('parseInt')('9007199254740992'),
    }"#;
    let source = HookSource::JsonnetInline {
        name: "jsonnetd".into(),
        code: code.into(),
        jpath: vec![],
    };
    let v = eval_json(
        &mut evaluator(),
        &source,
        br#"{"text": "{\"a\": [1, true]}"}"#,
    );
    assert_eq!(
        v,
        json!({"obj": {"a": [1, true]}, "n": -42, "big": 9007199254740992_u64})
    );
    for bad in ["' 1'", "'1.5'", "'0x10'", "''", "'99999999999999999999'"] {
        let source = HookSource::JsonnetInline {
            name: "bad".into(),
            code: format!("function(request) std.native('parseInt')({bad})"),
            jpath: vec![],
        };
        let err = evaluator()
            .evaluate(&source, b"{}")
            .expect_err("not an integer");
        assert!(err.to_string().contains("parseInt"), "{bad}: {err}");
    }
}

#[test]
fn every_native_follows_kubecfg() {
    let v = eval_json(&mut evaluator(), &file(&fixture("natives.jsonnet")), b"{}");
    assert_eq!(v["parseJson"], json!({"a": [1, 2.5, null]}));
    assert_eq!(v["parseJsonNull"], Value::Null);
    assert_eq!(v["parseYamlEmpty"], json!([]));
    assert_eq!(v["parseYamlDocs"], json!(["hello", "world"]));
    assert_eq!(
        v["parseYaml11"],
        json!([{"a": true, "b": "yes", "c": 31, "d": null}])
    );
    assert_eq!(
        v["manifestJson"],
        "{\n    \"baz\": [\n        3,\n        4\n    ],\n    \"foo\": \"bar\"\n}\n"
    );
    assert_eq!(v["manifestJsonString"], "\"foo\"\n");
    assert_eq!(
        v["manifestJsonHtml"],
        "{\n\"a\": \"\\u003c\\u0026\\u003e\"\n}\n"
    );
    assert_eq!(v["manifestYaml"], "baz:\n- 3\n- 4\nfoo: bar\n");
    assert_eq!(v["escapeStringRegex"], "f\\[o");
    assert_eq!(v["escapeKeepsDash"], "a-b#c");
    assert_eq!(v["regexMatch"], true);
    assert_eq!(v["regexNoMatch"], false);
    assert_eq!(v["regexSubst"], "-T-T-");
    assert_eq!(v["regexSubstGroup"], "-W-xxW-");
    assert_eq!(v["regexSubstTree"], "trolloll");
    assert_eq!(v["resolveImage"], "docker.io/library/busybox:latest");
    assert_eq!(v["missing"], Value::Null);
}

#[test]
fn native_errors_name_the_native() {
    let source = HookSource::JsonnetInline {
        name: "inline".into(),
        code: "std.native('regexMatch')('(', 'x')".into(),
        jpath: vec![],
    };
    let err = evaluator().evaluate(&source, b"{}").expect_err("bad regex");
    assert!(
        err.to_string()
            .contains("regexMatch: invalid regular expression \"(\""),
        "{err}"
    );
}

#[test]
fn imports_resolve_beside_the_file_then_jpath_then_the_bundled_library() {
    let options = JsonnetOptions {
        jpath: vec![fixture("lib")],
        ext_str: vec![("cluster".into(), "prod".into())],
        ..Default::default()
    };
    let mut ev = Evaluator::new(options, &Limits::default());
    let request = json!({"children": {"Pod.v1": {"b": {"n": 2}, "a": {"n": 1}}}});
    let v = eval_json(
        &mut ev,
        &file(&fixture("lib-user.jsonnet")),
        request.to_string().as_bytes(),
    );
    assert_eq!(v["beside"], "beside");
    assert_eq!(v["jpath"], "jpath");
    assert_eq!(v["ext"], "prod");
    assert_eq!(v["key"], "Deployment.apps/v1");
    assert_eq!(
        v["condition"],
        json!({"type": "Ready", "status": "True", "reason": "AllGood"})
    );
    assert_eq!(v["children"], json!([{"n": 1}, {"n": 2}]));
}

#[test]
fn extra_top_level_arguments_are_passed_with_request() {
    let options = JsonnetOptions {
        tla_str: vec![("env".into(), "staging".into())],
        tla_code: vec![("replicas".into(), "1 + 2".into())],
        ..Default::default()
    };
    let source = HookSource::JsonnetInline {
        name: "tla".into(),
        code: "function(request, env, replicas) { env: env, replicas: replicas, parent: request.parent }".into(),
        jpath: vec![],
    };
    let v = eval_json(
        &mut Evaluator::new(options, &Limits::default()),
        &source,
        br#"{"parent": "p"}"#,
    );
    assert_eq!(v, json!({"env": "staging", "replicas": 3, "parent": "p"}));
}

#[test]
fn a_file_that_is_not_a_function_is_returned_as_is() {
    let v = eval_json(
        &mut evaluator(),
        &file(&fixture("static.jsonnet")),
        b"{\"x\": 1}",
    );
    assert_eq!(v, json!({"children": [], "status": {"static": true}}));
}

#[test]
fn the_request_is_json_never_code() {
    let source = file(&fixture("static.jsonnet"));
    let err = evaluator()
        .evaluate(&source, b"importstr \"/etc/passwd\"")
        .expect_err("not JSON");
    assert!(matches!(err, EvalError::BadRequest(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "request body is not valid JSON: expected value at line 1 column 1"
    );
}

#[test]
fn integers_stay_integers() {
    let source = HookSource::JsonnetInline {
        name: "gen".into(),
        code: "function(request) { observedGeneration: request.parent.metadata.generation }".into(),
        jpath: vec![],
    };
    let out = evaluator()
        .evaluate(&source, br#"{"parent": {"metadata": {"generation": 7}}}"#)
        .expect("evaluates");
    assert_eq!(out, "{\n   \"observedGeneration\": 7\n}\n");
}

#[test]
fn errors_carry_the_file_and_line() {
    let err = evaluator()
        .evaluate(&file(&fixture("broken.jsonnet")), &example_request())
        .expect_err("missing field");
    let text = err.to_string();
    assert!(text.starts_with("no such field: missing"), "{text}");
    assert!(text.contains("broken.jsonnet"), "{text}");

    // jrsonnet gives a missing field no location: the lines that access it stand in.
    let source = HookSource::JsonnetInline {
        name: "inline-hook".into(),
        code: "function(request)\n  local spec = request.parent.spec;\n  {\n    a: spec.missing.deeper,\n    b: spec.missingness,\n  }".into(),
        jpath: vec![],
    };
    let text = evaluator()
        .evaluate(&source, br#"{"parent": {"spec": {}}}"#)
        .expect_err("fails")
        .to_string();
    assert!(
        text.contains("the access to field \"missing\" is at inline-hook:4"),
        "{text}"
    );

    let source = HookSource::JsonnetInline {
        name: "inline-hook".into(),
        code: "function(request)\n  local x = 1;\n  { a: std.length(request.nope) }".into(),
        jpath: vec![],
    };
    let text = evaluator()
        .evaluate(&source, b"{}")
        .expect_err("fails")
        .to_string();
    assert!(text.contains("inline-hook:3:18"), "{text}");
}

#[test]
fn infinite_recursion_breaks_the_stack_limit() {
    let mut ev = evaluator();
    let err = ev
        .evaluate(&file(&fixture("recursive.jsonnet")), b"{}")
        .expect_err("overflow");
    assert!(
        matches!(
            err,
            EvalError::Limit {
                limit: LimitKind::StackDepth,
                ..
            }
        ),
        "{err:?}"
    );
    // The same evaluator keeps working.
    eval_json(&mut ev, &file(&fixture("static.jsonnet")), b"{}");
}

#[test]
fn oversized_output_breaks_the_output_limit() {
    let limits = Limits {
        max_output_bytes: 1 << 20,
        ..Limits::default()
    };
    let mut ev = Evaluator::new(JsonnetOptions::default(), &limits);
    let err = ev
        .evaluate(&file(&fixture("big-output.jsonnet")), b"{}")
        .expect_err("too big");
    assert_eq!(
        err.to_string(),
        "hook exceeded its output size limit: the response is 2097171 bytes, the limit is 1048576"
    );
}

#[test]
fn an_edited_hook_file_is_read_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hook.jsonnet");
    let lib = dir.path().join("lib.libsonnet");
    std::fs::write(
        &path,
        "local l = import 'lib.libsonnet'; function(request) { v: 1, l: l }",
    )
    .expect("write");
    std::fs::write(&lib, "'a'").expect("write");
    let source = file(&path);
    let mut ev = evaluator();
    assert_eq!(
        eval_json(&mut ev, &source, b"{}"),
        json!({"v": 1, "l": "a"})
    );
    std::fs::write(
        &path,
        "local l = import 'lib.libsonnet'; function(request) { v: 22, l: l }",
    )
    .expect("rewrite");
    assert_eq!(
        eval_json(&mut ev, &source, b"{}"),
        json!({"v": 22, "l": "a"})
    );
    // An imported file counts too.
    std::fs::write(&lib, "'bb'").expect("rewrite lib");
    assert_eq!(
        eval_json(&mut ev, &source, b"{}"),
        json!({"v": 22, "l": "bb"})
    );
}

#[test]
fn tera_hooks_render_yaml_with_the_kubernetes_filters() {
    let v = eval_json(
        &mut evaluator(),
        &file(&fixture("sync.tera")),
        &example_request(),
    );
    let cm = &v["children"][0];
    assert_eq!(cm["metadata"]["name"], "demo-config");
    assert_eq!(cm["data"]["name"], "alpha");
    assert_eq!(cm["data"]["encoded"], "YWxwaGE=");
    assert_eq!(cm["data"]["decoded"], "hello");
    assert_eq!(cm["data"]["spec.yaml"], "name: alpha\n");
    assert_eq!(cm["data"]["children"], 1);
    // sha256 of the compact JSON of {"name":"alpha"}, cut to 12 characters.
    assert_eq!(cm["metadata"]["annotations"]["spec-hash"], "81d9c646b64c");
    assert_eq!(
        v["status"],
        json!({"observedGeneration": 2, "finalizing": false, "whole": "demo"})
    );
}

/// Both backends read YAML in one dialect (go-yaml v2 / sigs.k8s.io/yaml, YAML 1.1): a Tera
/// response and Jsonnet's `parseYaml` give the same value for the same text.
#[test]
fn tera_and_jsonnet_read_yaml_the_same_way() {
    const YAML: &str = "on: yes\nflag: off\nquoted: \"yes\"\nversion: 1.10\nreplicas: 3\nhalf: 0.5\nmode: 0o17\nnothing: ~\n";
    let expected = json!({
        "true": true,
        "flag": false,
        "quoted": "yes",
        "version": 1.1,
        "replicas": 3,
        "half": 0.5,
        "mode": 15,
        "nothing": null
    });
    let tera = eval_json(&mut evaluator(), &tera_inline("dialect", YAML), b"{}");
    assert_eq!(tera, expected);
    // Integers stay integers in the Tera response, as a Go webhook would send them.
    assert!(tera["replicas"].is_i64(), "{tera}");
    let code = format!(
        "function(request) std.native('parseYaml')({})[0]",
        serde_json::to_string(YAML).expect("a string serializes")
    );
    let jsonnet = eval_json(&mut evaluator(), &jsonnet_inline("dialect", &code), b"{}");
    assert_eq!(jsonnet, expected);

    // `---` lines around the one response document are fine; two documents are not.
    let framed = eval_json(
        &mut evaluator(),
        &tera_inline("framed", "---\non: yes\n---\n"),
        b"{}",
    );
    assert_eq!(framed, json!({"true": true}));
    let err = evaluator()
        .evaluate(&tera_inline("two", "a: 1\n---\nb: 2\n"), b"{}")
        .expect_err("two documents")
        .to_string();
    assert!(
        err.contains("two: the rendered template holds 2 YAML documents"),
        "{err}"
    );
}

#[test]
fn tera_filters_indent_like_helm() {
    let source = HookSource::TeraInline {
        name: "filters".into(),
        template: "a: {{ \"x\" | quote }}\nb: {{ 'say \"hi\"' | quote }}\nc:{{ parent | to_yaml | nindent(width=2) }}\nd: {{ parent | to_json }}\ne: {{ \"l1\nl2\" | indent(width=3) | quote }}\n".into(),
    };
    let v = eval_json(&mut evaluator(), &source, br#"{"parent": {"k": [1, 2]}}"#);
    assert_eq!(
        v,
        json!({"a": "x", "b": "say \"hi\"", "c": {"k": [1, 2]}, "d": {"k": [1, 2]}, "e": "   l1\n   l2"})
    );
}

#[test]
fn tera_errors_name_the_template_and_position() {
    let err = evaluator()
        .evaluate(&file(&fixture("broken.tera")), &example_request())
        .expect_err("missing variable");
    let text = err.to_string();
    assert!(text.contains("broken.tera"), "{text}");
    assert!(
        text.contains("Variable `parent.spec.nothing_here` not found"),
        "{text}"
    );

    let err = evaluator()
        .evaluate(&file(&fixture("bad-syntax.tera")), &example_request())
        .expect_err("syntax");
    let text = err.to_string();
    assert!(text.contains("bad-syntax.tera"), "{text}");
    assert!(text.contains("--> 3:1"), "{text}");

    let source = HookSource::TeraInline {
        name: "not-yaml".into(),
        template: "children: [\nstatus: {{ parent }}".into(),
    };
    let text = evaluator()
        .evaluate(&source, br#"{"parent": "x"}"#)
        .expect_err("bad yaml")
        .to_string();
    assert!(
        text.starts_with("not-yaml: the rendered template is not valid YAML"),
        "{text}"
    );
    assert!(text.contains("rendered line"), "{text}");
}

fn load(hook: HookSource) -> HookSource {
    HookSource::Load {
        hook: Box::new(hook),
    }
}

fn jsonnet_inline(name: &str, code: &str) -> HookSource {
    HookSource::JsonnetInline {
        name: name.into(),
        code: code.into(),
        jpath: vec![],
    }
}

fn tera_inline(name: &str, template: &str) -> HookSource {
    HookSource::TeraInline {
        name: name.into(),
        template: template.into(),
    }
}

#[test]
fn load_checks_a_hook_without_calling_it() {
    let mut ev = evaluator();
    // The hook would fail if called; loading it does not call it.
    let calls_fail = jsonnet_inline("cm", "function(request) error 'called'");
    assert_eq!(
        ev.evaluate(&load(calls_fail), b"null").as_deref(),
        Ok("null\n")
    );
    let tera_fails = tera_inline("t", "{{ request.missing.field }}");
    assert_eq!(
        ev.evaluate(&load(tera_fails), b"null").as_deref(),
        Ok("null\n")
    );
}

#[test]
fn load_refuses_syntax_errors_and_undefined_variables_naming_the_hook_and_line() {
    let mut ev = evaluator();
    let syntax = jsonnet_inline("/hooks/sync.jsonnet", "function(request)\n  {a: }\n");
    let Err(EvalError::Hook(text)) = ev.evaluate(&load(syntax), b"null") else {
        panic!("a syntax error is refused")
    };
    assert!(text.contains("/hooks/sync.jsonnet:2:"), "{text}");
    let undefined = jsonnet_inline("cm", "function(request)\n\n  request + nope\n");
    let Err(EvalError::Hook(text)) = ev.evaluate(&load(undefined), b"null") else {
        panic!("an undefined variable is refused")
    };
    // jrsonnet's static analysis names the variable, not its line.
    assert!(
        text.contains("undefined local: nope") && text.contains("in cm"),
        "{text}"
    );
    let tera = tera_inline("t.tera", "a: 1\nb: {{ x }\n");
    let Err(EvalError::Hook(text)) = ev.evaluate(&load(tera), b"null") else {
        panic!("a Tera template that does not compile is refused")
    };
    assert!(text.contains("t.tera") && text.contains("2:"), "{text}");
}

#[test]
fn a_new_version_of_a_named_inline_hook_replaces_the_old_one() {
    let mut ev = evaluator();
    for version in 0..3 {
        let hook = jsonnet_inline("cm", &format!("function(request) {{ v: {version} }}"));
        assert_eq!(eval_json(&mut ev, &hook, b"{}"), json!({"v": version}));
        let tera = tera_inline("t", &format!("v: {version}"));
        assert_eq!(eval_json(&mut ev, &tera, b"{}"), json!({"v": version}));
    }
    assert_eq!(ev.loaded_hooks(), 2, "one Jsonnet state and one template");
}

#[test]
fn file_text_is_evaluated_as_its_file_without_reading_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sync.jsonnet");
    std::fs::write(&path, "this file on disk is broken {").expect("write");
    std::fs::write(dir.path().join("lib.libsonnet"), "{ v: 'lib' }").expect("write lib");
    let text = |code: &str| HookSource::JsonnetFileText {
        path: path.clone(),
        code: code.into(),
        jpath: vec![],
    };
    let mut ev = evaluator();
    let good = text("local lib = import 'lib.libsonnet';\nfunction(request) { v: lib.v }\n");
    assert_eq!(eval_json(&mut ev, &good, b"{}"), json!({"v": "lib"}));
    // Gone from disk: the text is still what is evaluated.
    std::fs::remove_file(&path).expect("remove");
    assert_eq!(eval_json(&mut ev, &good, b"{}"), json!({"v": "lib"}));
    let broken = text("function(request)\n  {a: }\n");
    let Err(EvalError::Hook(error)) = ev.evaluate(&broken, b"{}") else {
        panic!("a syntax error fails")
    };
    let shown = format!("{}:2:", path.display());
    assert!(
        error.contains(&shown) && !error.contains("virtual:"),
        "{error}"
    );
}
