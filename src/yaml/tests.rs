//! Tests of parsing and emitting through the public functions, plus the resolver's corner cases.

use serde_json::{Value, json};

use super::resolve::{Resolved, is_base60_float, is_go_yaml_timestamp, resolve};
use super::*;

fn parse(text: &str) -> Vec<Value> {
    match parse_stream(text) {
        Ok(documents) => documents,
        Err(error) => panic!("parsing {text:?} failed: {error}"),
    }
}

fn parse_one(text: &str) -> Value {
    let mut documents = parse(text);
    assert_eq!(documents.len(), 1, "{text:?} should hold one document");
    documents.remove(0)
}

fn parse_err(text: &str) -> YamlError {
    match parse_stream(text) {
        Ok(documents) => panic!("parsing {text:?} should fail, got {documents:?}"),
        Err(error) => error,
    }
}

#[test]
fn kubecfg_documented_streams() {
    assert_eq!(parse(""), Vec::<Value>::new());
    assert_eq!(
        parse("---\nhello\n---\nworld"),
        vec![json!("hello"), json!("world")]
    );
}

#[test]
fn documents_are_cut_like_the_k8s_reader() {
    assert_eq!(parse("\n"), vec![Value::Null]);
    assert_eq!(parse("---"), vec![Value::Null]);
    assert_eq!(parse("---\n"), vec![Value::Null]);
    assert_eq!(parse("a\n---"), vec![json!("a")]);
    assert_eq!(parse("a: 1\n---\n"), vec![json!({"a": 1.0})]);
    // An empty chunk between separators is skipped...
    assert_eq!(parse("a\n---\n---\nb"), vec![json!("a"), json!("b")]);
    assert_eq!(parse("---\n---\n---\n"), vec![Value::Null, Value::Null]);
    // ...but one holding only a comment or a blank line decodes as null.
    assert_eq!(
        parse("a\n---\n# c\n---\nb"),
        vec![json!("a"), Value::Null, json!("b")]
    );
    assert_eq!(
        parse("a\n---\n\n---\nb"),
        vec![json!("a"), Value::Null, json!("b")]
    );
    assert_eq!(
        parse("a: 1\n--- # sep\nb: 2\n---   \nc: 3"),
        vec![json!({"a": 1.0}), json!({"b": 2.0}), json!({"c": 3.0})]
    );
    assert_eq!(
        parse("a: 1\r\nb: 2\r\n---\r\nc: 3\r\n"),
        vec![json!({"a": 1.0, "b": 2.0}), json!({"c": 3.0})]
    );
    // Only the first YAML document of a chunk counts.
    assert_eq!(parse("a\n...\nb"), vec![json!("a")]);
    assert_eq!(parse("a\n...\n{{{"), vec![json!("a")]);
    // A byte-order mark at the start is skipped.
    assert_eq!(parse("\u{feff}a: 1"), vec![json!({"a": 1.0})]);
}

#[test]
fn separators_with_content_are_rejected() {
    let error = parse_err("a: 1\n---\nb: 2\n--- foo\nc: 3");
    assert_eq!(
        error,
        YamlError::InvalidSeparator {
            at: Location {
                document: 2,
                line: 4,
                column: 1
            },
            found: "foo".to_string()
        }
    );
    assert_eq!(
        error.to_string(),
        "document 2, line 4, column 1: invalid YAML document separator: foo"
    );
    assert!(matches!(parse_err("----"), YamlError::InvalidSeparator { found, .. } if found == "-"));
    assert!(
        matches!(parse_err("--- |\n  x"), YamlError::InvalidSeparator { found, .. } if found == "|")
    );
}

#[test]
fn yaml_1_1_booleans_and_nulls() {
    let value = parse_one(
        "[y, Y, yes, Yes, YES, true, True, TRUE, on, On, ON, n, N, no, No, NO, false, False, FALSE, off, Off, OFF]",
    );
    let expected: Vec<Value> = (0..22).map(|i| Value::Bool(i < 11)).collect();
    assert_eq!(value, Value::Array(expected));
    assert_eq!(
        parse_one("[~, null, Null, NULL, '', nUll, tRUE, yEs, 'yes', \"on\", !!str no]"),
        json!([
            null, null, null, null, "", "nUll", "tRUE", "yEs", "yes", "on", "no"
        ])
    );
    assert_eq!(parse_one("a:\nb: ~"), json!({"a": null, "b": null}));
}

#[test]
fn yaml_1_1_numbers_become_f64() {
    let value = parse_one(
        "[0x1F, -0x1F, 017, 0o17, 0O17, 09, 1_000, 0b101, -0b101, +12, -0, -0.0, .5, +.5, -.5, 1., 1e3, 1E-3, 0.1]",
    );
    assert_eq!(
        value,
        json!([
            31.0, -31.0, 15.0, 15.0, 15.0, 9.0, 1000.0, 5.0, -5.0, 12.0, 0.0, -0.0, 0.5, 0.5, -0.5,
            1.0, 1000.0, 0.001, 0.1
        ])
    );
    let Value::Array(items) = &value else {
        panic!("expected an array")
    };
    assert!(
        items
            .iter()
            .all(|n| n.as_f64().is_some() && n.as_i64().is_none())
    );
    // Integers beyond 2^53 are rounded the way Go's float64 conversion does.
    assert_eq!(
        parse_one("[9223372036854775807, 18446744073709551615, 123456789012345678901234567890]"),
        json!([
            9223372036854775807.0,
            18446744073709551615.0,
            1.2345678901234568e29
        ])
    );
    // Not numbers under go-yaml's rules.
    assert_eq!(
        parse_one(
            "[1e400, 0x, 0b, _1, 1:20, 190:20:30, 2001-12-14, 2001-12-14 21:59:43.10, 1.2.3, inf, NaN]"
        ),
        json!([
            "1e400",
            "0x",
            "0b",
            "_1",
            "1:20",
            "190:20:30",
            "2001-12-14",
            "2001-12-14 21:59:43.10",
            "1.2.3",
            "inf",
            "NaN"
        ])
    );
}

#[test]
fn infinities_are_errors_as_values_but_fine_as_keys() {
    for text in [".inf", "-.inf", ".nan", "a: [.Inf]", "!!float 1e400"] {
        let error = parse_err(text);
        assert!(
            matches!(
                error,
                YamlError::NonFiniteNumber { .. } | YamlError::TagMismatch { .. }
            ),
            "{text}: {error}"
        );
    }
    assert_eq!(
        parse_err("a: [1, .NaN]").to_string(),
        "document 1, line 1, column 8: JSON cannot represent the number .NaN"
    );
    assert_eq!(
        parse_one(".inf: a\n-.inf: b\n.nan: c"),
        json!({".inf": "a", "-.inf": "b", ".nan": "c"})
    );
}

#[test]
fn non_string_keys_become_strings() {
    assert_eq!(
        parse_one(
            "1.5: a\n1e6: b\ntrue: c\n0x10: d\n2001-01-01: e\nno: f\n3.14159265358979: g\n0.1: h\n1234567: i\non: j"
        ),
        json!({"1.5": "a", "1e+06": "b", "true": "j", "16": "d", "2001-01-01": "e", "false": "f", "3.1415927": "g", "0.1": "h", "1234567": "i"})
    );
    assert_eq!(
        parse_one("'1': a\n\"yes\": b"),
        json!({"1": "a", "yes": "b"})
    );
}

#[test]
fn unsupported_keys_are_errors() {
    assert!(matches!(parse_err("~: a"), YamlError::InvalidKey { .. }));
    assert!(matches!(parse_err("null: a"), YamlError::InvalidKey { .. }));
    assert!(matches!(
        parse_err("? [1, 2]\n: a"),
        YamlError::InvalidKey { .. }
    ));
    assert!(matches!(
        parse_err("{a: 1}: b"),
        YamlError::InvalidKey { .. }
    ));
    assert!(matches!(
        parse_err("18446744073709551615: o"),
        YamlError::InvalidKey { .. }
    ));
    assert_eq!(
        parse_err("x:\n  [1, 2]: a").to_string(),
        "document 1, line 2, column 3: unsupported map key: invalid map key: a sequence"
    );
}

#[test]
fn anchors_aliases_and_merges() {
    assert_eq!(
        parse_one("- &a x\n- *a\n- &b [1, 2]\n- *b\n- &m {k: v}\n- *m"),
        json!(["x", "x", [1.0, 2.0], [1.0, 2.0], {"k": "v"}, {"k": "v"}])
    );
    // Anchors can be redefined; an alias uses the latest definition.
    assert_eq!(
        parse_one("a: &x 1\nb: *x\nc: &x 2\nd: *x"),
        json!({"a": 1.0, "b": 1.0, "c": 2.0, "d": 2.0})
    );
    // An aliased scalar used as a key keeps its key form.
    assert_eq!(parse_one("- &k 16\n- {*k : v}"), json!([16.0, {"16": "v"}]));
    assert_eq!(
        parse_one("base: &b {a: 1, b: 2}\nx:\n  <<: *b\n  b: 3\n  c: 4\n"),
        json!({"base": {"a": 1.0, "b": 2.0}, "x": {"a": 1.0, "b": 3.0, "c": 4.0}})
    );
    // go-yaml v2 applies entries in order: a merge after a key overrides it.
    assert_eq!(parse_one("a: 1\n<<: {a: 2}"), json!({"a": 2.0}));
    // In a merged sequence earlier mappings win.
    assert_eq!(
        parse_one("<<: [{a: 1}, {a: 2, b: 2}]\nc: 3"),
        json!({"a": 1.0, "b": 2.0, "c": 3.0})
    );
    // Only an untagged plain `<<` (or `!!merge`) merges.
    assert_eq!(parse_one("'<<': {a: 1}"), json!({"<<": {"a": 1.0}}));
    assert_eq!(parse_one("!!str <<: {a: 1}"), json!({"<<": {"a": 1.0}}));
    assert_eq!(parse_one("!!merge <<: {a: 1}"), json!({"a": 1.0}));
    assert_eq!(parse_one("v: <<"), json!({"v": "<<"}));
}

#[test]
fn invalid_merges_and_aliases_are_errors() {
    assert!(matches!(
        parse_err("m:\n  <<: 1"),
        YamlError::InvalidMerge { .. }
    ));
    assert!(matches!(
        parse_err("m:\n  <<: [1]"),
        YamlError::InvalidMerge { .. }
    ));
    // go-yaml merges an alias only when it names a mapping.
    assert!(matches!(
        parse_err("s: &s [{a: 1}]\nm:\n  <<: *s"),
        YamlError::InvalidMerge { .. }
    ));
    assert_eq!(
        parse_err("a: &a {b: *a}").to_string(),
        "document 1, line 1, column 11: anchor value contains itself"
    );
    assert!(matches!(
        parse_err("&a [*a]"),
        YamlError::RecursiveAlias { .. }
    ));
    assert!(matches!(
        parse_err("a: *b"),
        YamlError::Syntax { .. } | YamlError::UnknownAnchor { .. }
    ));
}

#[test]
fn alias_bombs_hit_the_budget() {
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    let names = ["b", "c", "d", "e", "f", "g", "h", "i", "j"];
    let mut previous = "a";
    for name in names {
        let refs = vec![format!("*{previous}"); 10].join(", ");
        bomb.push_str(&format!("{name}: &{name} [{refs}]\n"));
        previous = name;
    }
    let error = parse_err(&bomb);
    assert!(matches!(
        error,
        YamlError::AliasBudgetExceeded {
            limit: ALIAS_EXPANSION_BUDGET,
            ..
        }
    ));
    assert!(
        error.to_string().contains("budget of 1000000 nodes"),
        "{error}"
    );

    // Few nodes but a lot of copied text.
    let big = "x".repeat(1 << 20);
    let mut strings = format!("s: &s {big}\nl:\n");
    for _ in 0..80 {
        strings.push_str("- *s\n");
    }
    assert!(matches!(
        parse_err(&strings),
        YamlError::AliasByteBudgetExceeded {
            limit: ALIAS_EXPANSION_BYTE_BUDGET,
            ..
        }
    ));
    // Ordinary reuse stays well within the budget.
    assert_eq!(
        parse_one("a: &a [1, 2]\nb: [*a, *a, *a]")["b"][2],
        json!([1.0, 2.0])
    );
}

#[test]
fn nesting_is_bounded() {
    let deep = format!("{}x", "- ".repeat(MAX_NESTING_DEPTH + 1));
    assert!(matches!(
        parse_err(&deep),
        YamlError::TooDeep {
            limit: MAX_NESTING_DEPTH,
            ..
        }
    ));
    // yaml-rust2 itself stops flow collections at 256 levels.
    let flow = format!("{}{}", "[".repeat(300), "]".repeat(300));
    assert!(matches!(parse_err(&flow), YamlError::Syntax { .. }));
    let fine = format!("{}x", "- ".repeat(200));
    assert!(parse_one(&fine).is_array());
}

#[test]
fn tags() {
    assert_eq!(
        parse_one(
            "[!!str 123, !!int '12', !!float 1, !!bool 'on', !!null '', !foo bar, ! 12, !!int 0x10, !!timestamp 2001-01-01, !<tag:yaml.org,2002:int> '3']"
        ),
        json!([
            "123",
            12.0,
            1.0,
            true,
            null,
            "bar",
            "12",
            16.0,
            "2001-01-01",
            3.0
        ])
    );
    assert_eq!(parse_one("!!binary aGVsbG8="), json!("hello"));
    assert_eq!(parse_one("!!binary |\n  aGVs\n  bG8=\n"), json!("hello"));
    assert_eq!(parse_one("!!binary /w=="), json!("\u{fffd}"));
    assert!(matches!(
        parse_err("!!binary aGVsbG8"),
        YamlError::InvalidBinary { .. }
    ));
    assert_eq!(
        parse_err("x: !!int abc").to_string(),
        "document 1, line 1, column 10: cannot decode !!str `abc` as a !!int"
    );
    assert!(matches!(
        parse_err("!!int 1.5"),
        YamlError::TagMismatch { .. }
    ));
    assert!(matches!(
        parse_err("!!null x"),
        YamlError::TagMismatch { .. }
    ));
    assert!(matches!(
        parse_err("!!float 18446744073709551615"),
        YamlError::TagMismatch { .. }
    ));
    // Tags on collections are ignored.
    assert_eq!(parse_one("!!set {a: 1}"), json!({"a": 1.0}));
}

#[test]
fn scalar_styles_and_structure() {
    assert_eq!(
        parse_one(
            "a: 'it''s'\nb: \"x\\ty\\u00e9\"\nc: |\n  lit\n  eral\nd: >\n  fol\n  ded\ne: |-\n  x\nf: plain\n  multi\n"
        ),
        json!({"a": "it's", "b": "x\tyé", "c": "lit\neral\n", "d": "fol ded\n", "e": "x", "f": "plain multi"})
    );
    assert_eq!(
        parse_one("a:\n  - 1\n  - b: [x, {y: z}]\nc:\n- d"),
        json!({"a": [1.0, {"b": ["x", {"true": "z"}]}], "c": ["d"]})
    );
    // Duplicate keys: the later one wins, as in go-yaml v2.
    assert_eq!(parse_one("a: 1\na: 2"), json!({"a": 2.0}));
}

#[test]
fn syntax_errors_name_document_line_and_column() {
    let error = parse_err("ok: 1\n---\nfine: 2\nbad: b: c\n");
    let YamlError::Syntax { at, message } = &error else {
        panic!("expected a syntax error, got {error}");
    };
    assert_eq!(
        *at,
        Location {
            document: 2,
            line: 4,
            column: 7
        }
    );
    assert!(
        message.contains("mapping values are not allowed"),
        "{message}"
    );
    assert!(
        error
            .to_string()
            .starts_with("document 2, line 4, column 7: ")
    );
    assert!(matches!(
        parse_err("key: [unclosed"),
        YamlError::Syntax { .. }
    ));
    assert!(matches!(
        parse_err("\"unterminated"),
        YamlError::Syntax { .. }
    ));
}

#[test]
fn resolve_matches_go_yaml() {
    assert_eq!(resolve("", true), Resolved::Null);
    assert_eq!(resolve("yes", true), Resolved::Bool(true));
    assert_eq!(resolve("0o17", true), Resolved::Int(15));
    assert_eq!(
        resolve("9223372036854775808", true),
        Resolved::Uint(9223372036854775808)
    );
    assert_eq!(resolve("1e5_0", true), Resolved::Float(1e50));
    assert_eq!(resolve(".5_5", true), Resolved::Float(0.55));
    assert_eq!(resolve("._5", true), Resolved::Str);
    assert_eq!(
        resolve("2001-12-14t21:59:43.10-05:00", true),
        Resolved::Timestamp
    );
    assert_eq!(
        resolve("2001-12-14t21:59:43.10-05:00", false),
        Resolved::Str
    );
    assert_eq!(resolve("<<", true), Resolved::Str);
    assert!(is_go_yaml_timestamp("2024-1-5"));
    assert!(is_go_yaml_timestamp("2000-02-29"));
    assert!(!is_go_yaml_timestamp("2001-02-29"));
    assert!(!is_go_yaml_timestamp("2001-13-01"));
    assert!(is_go_yaml_timestamp("2001-12-14  21:59:43"));
    assert!(!is_go_yaml_timestamp("2001-12-14T21:59:43"));
    assert!(is_go_yaml_timestamp("2001-12-14T21:59:43Z"));
    assert!(is_base60_float("190:20:30"));
    assert!(is_base60_float("-1:20.5"));
    assert!(!is_base60_float("1:60"));
    assert!(!is_base60_float("a:1"));
}

#[test]
fn manifest_yaml_documented_case() {
    assert_eq!(
        to_yaml_go(&json!({"foo": "bar", "baz": [3, 4]})),
        "baz:\n- 3\n- 4\nfoo: bar\n"
    );
    assert_eq!(
        to_yaml(&json!({"foo": "bar"})),
        to_yaml_go(&json!({"foo": "bar"}))
    );
}

#[test]
fn manifest_yaml_roots_and_nesting() {
    assert_eq!(to_yaml_go(&json!("foo")), "foo\n");
    assert_eq!(to_yaml_go(&json!("")), "\"\"\n");
    assert_eq!(to_yaml_go(&Value::Null), "null\n");
    assert_eq!(to_yaml_go(&json!(true)), "true\n");
    assert_eq!(to_yaml_go(&json!({})), "{}\n");
    assert_eq!(to_yaml_go(&json!([])), "[]\n");
    assert_eq!(
        to_yaml_go(&json!({"a": [{"b": 1, "c": [1, [2, 3], []]}, {}], "d": {"e": {"f": null}}})),
        "a:\n- b: 1\n  c:\n  - 1\n  - - 2\n    - 3\n  - []\n- {}\nd:\n  e:\n    f: null\n"
    );
}

#[test]
fn manifest_yaml_numbers() {
    assert_eq!(
        to_yaml_go(&json!([
            3.0,
            1.5,
            1e20,
            1e21,
            1e-7,
            -0.0,
            1234567.5,
            18446744073709551616.0,
            1e19,
            0.1,
            100000.0,
            1e6
        ])),
        "- 3\n- 1.5\n- 1e+20\n- 1e+21\n- 1e-07\n- 0\n- 1.2345675e+06\n- 1.8446744073709552e+19\n- 10000000000000000000\n- 0.1\n- 100000\n- 1000000\n"
    );
    assert_eq!(
        to_yaml_go(&json!([7, -7, u64::MAX])),
        "- 7\n- -7\n- 18446744073709551615\n"
    );
}

#[test]
fn manifest_yaml_quotes_what_yaml_1_1_would_misread() {
    assert_eq!(
        to_yaml_go(&json!([
            "yes",
            "no",
            "on",
            "Off",
            "y",
            "1",
            "1.5",
            "~",
            "null",
            "",
            "2024-01-15",
            "1:20",
            "0x1F",
            "017",
            "1_000",
            ".5",
            "-.inf"
        ])),
        "- \"yes\"\n- \"no\"\n- \"on\"\n- \"Off\"\n- \"y\"\n- \"1\"\n- \"1.5\"\n- \"~\"\n- \"null\"\n- \"\"\n- \"2024-01-15\"\n- \"1:20\"\n- \"0x1F\"\n- \"017\"\n- \"1_000\"\n- \".5\"\n- \"-.inf\"\n"
    );
    assert_eq!(
        to_yaml_go(&json!([
            "a: b", "- x", "#x", " x", "x ", "@x", "'", "it's", "[x]", "{x}", "? x"
        ])),
        "- 'a: b'\n- '- x'\n- '#x'\n- ' x'\n- 'x '\n- '@x'\n- ''''\n- it's\n- '[x]'\n- '{x}'\n- '? x'\n"
    );
    assert_eq!(
        to_yaml_go(&json!([
            "a#b",
            "a:b",
            "-x",
            "<<",
            "inf",
            "NaN",
            "x?",
            "a, b",
            "é",
            "http://x.io/a?b=c#d"
        ])),
        "- a#b\n- a:b\n- -x\n- <<\n- inf\n- NaN\n- x?\n- a, b\n- é\n- http://x.io/a?b=c#d\n"
    );
}

#[test]
fn manifest_yaml_multiline_and_special_characters() {
    assert_eq!(
        to_yaml_go(&json!([
            "a\nb",
            "a\nb\n",
            "a\n\n",
            " a\nb",
            "a \nb",
            "a\tb",
            "😀",
            "\u{7}",
            "\u{1b}[0m"
        ])),
        "- |-\n  a\n  b\n- |\n  a\n  b\n- |+\n  a\n\n- |2-\n   a\n  b\n- \"a \\nb\"\n- \"a\\tb\"\n- \"\\U0001F600\"\n- \"\\a\"\n- \"\\e[0m\"\n"
    );
    assert_eq!(
        to_yaml_go(&json!({"data": {"config.yaml": "foo: bar\nbaz: 1\n"}})),
        "data:\n  config.yaml: |\n    foo: bar\n    baz: 1\n"
    );
    // go-yaml folds a raw NEL read back from the JSON text.
    assert_eq!(
        to_yaml_go(&json!(["a\u{85}b", "a\u{85}\u{85}b"])),
        "- a b\n- |-\n  a\n  b\n"
    );
}

#[test]
fn manifest_yaml_folds_long_lines() {
    assert_eq!(
        to_yaml_go(
            &json!({"long": "lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua"})
        ),
        "long: lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor\n  incididunt ut labore et dolore magna aliqua\n"
    );
    assert_eq!(
        to_yaml_go(
            &json!({"single": "'lorem ipsum dolor sit amet', consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua"})
        ),
        "single: '''lorem ipsum dolor sit amet'', consectetur adipiscing elit, sed do eiusmod\n  tempor incididunt ut labore et dolore magna aliqua'\n"
    );
    assert_eq!(
        to_yaml_go(
            &json!({"double": "lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod\ttempor incididunt ut labore et  dolore magna aliqua"})
        ),
        "double: \"lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod\\ttempor\n  incididunt ut labore et  dolore magna aliqua\"\n"
    );
    // Words longer than the line are never split.
    let word = "x".repeat(100);
    assert_eq!(to_yaml_go(&json!({ "k": word })), format!("k: {word}\n"));
}

#[test]
fn manifest_yaml_keys() {
    let long = "k".repeat(130);
    assert_eq!(
        to_yaml_go(&json!({ long.clone(): 1, "a\nb": 2, "yes": 3, "": 4 })),
        format!("\"\": 4\n? |-\n  a\n  b\n: 2\n? {long}\n: 1\n\"yes\": 3\n")
    );
    assert_eq!(
        to_yaml_go(
            &json!({"a10": 1, "a2": 2, "a1": 3, "b": 4, "B": 5, "_x": 6, "10": 7, "9": 8, "a01": 9})
        ),
        "_x: 6\n\"9\": 8\n\"10\": 7\nB: 5\na1: 3\na01: 9\na2: 2\na10: 1\nb: 4\n"
    );
}

#[test]
fn round_trip_through_both_directions() {
    let value = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "x", "labels": {"app": "y", "on": "yes"}},
        "data": {"a.yaml": "foo: bar\n", "port": "8080", "empty": "", "list": [1.5, "2", null, true]}
    });
    let text = to_yaml_go(&value);
    assert_eq!(parse_stream(&text), Ok(vec![value]));
}
