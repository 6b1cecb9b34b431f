//! Go's `encoding/json` output, byte for byte: the one writer behind kubecfg's `manifestJson`
//! native (`json.MarshalIndent`), Metacontroller's last-applied annotation (`json.Marshal`) and
//! every hash computed over "the JSON of" a value.
//!
//! Both modes are serde_json's serializer driven by [`GoFormatter`], which adds what Go does and
//! serde_json does not: HTML-safe string escaping (`<`, `>`, `&`, U+2028 and U+2029 become
//! `\u003c`, `\u003e`, `\u0026`, `\u2028`, `\u2029`) and Go's float formatting
//! ([`format_float_go_json`]). Object keys are sorted bytewise like Go's map encoding by
//! [`SortedKeys`], whatever order the `serde_json::Map` keeps (a dependency may turn on
//! serde_json's `preserve_order`). Control characters come out as `\b`, `\f`, `\n`, `\r`, `\t` or
//! `\u00XX` (lowercase hex), which is serde_json's escaping and Go's alike.
//!
//! Numbers: Jsonnet numbers are `f64`, and that is what Go sees too (`float64`). Values holding
//! `i64`/`u64` numbers (from other callers) are printed as exact integers, which is what Go prints
//! for every integer up to 2^53; beyond that Go would have rounded them through `float64` first.

use std::io;

use serde::ser::{Serialize, SerializeMap, SerializeSeq};
use serde_json::ser::{CompactFormatter, Formatter, PrettyFormatter, Serializer};
use serde_json::{Number, Value};

use super::float::format_float_go_json;

/// `json.Marshal(v)` of a decoded JSON value: no whitespace, keys sorted, Go's escaping and numbers.
///
/// The last-applied annotation must match what Metacontroller wrote, otherwise taking over a
/// cluster would rewrite every child once just to reformat the annotation.
pub fn to_json_compact_go(value: &Value) -> String {
    write_go(value, GoFormatter(CompactFormatter))
}

/// Go `json.MarshalIndent(v, "", strings.Repeat(" ", indent))` followed by `"\n"`: kubecfg's
/// `manifestJson` native.
///
/// Empty containers stay `{}`/`[]`. With `indent == 0` Go still breaks lines, it just indents
/// nothing, so `{"a":1}` becomes `"{\n\"a\": 1\n}\n"`.
pub fn to_json_indent_go(value: &Value, indent: usize) -> String {
    let indent = " ".repeat(indent);
    let mut out = write_go(
        value,
        GoFormatter(PrettyFormatter::with_indent(indent.as_bytes())),
    );
    out.push('\n');
    out
}

fn write_go<F: Formatter>(value: &Value, formatter: GoFormatter<F>) -> String {
    let mut out = Vec::with_capacity(128);
    let mut serializer = Serializer::with_formatter(&mut out, formatter);
    // Writing a `Value` into a `Vec` cannot fail: no I/O errors, no non-string keys, and
    // `Value` numbers are finite.
    let _ = SortedKeys(value).serialize(&mut serializer);
    // The serializer writes UTF-8 only (strings are copied from `&str` or escaped as ASCII).
    String::from_utf8(out).unwrap_or_default()
}

/// `value` as a Go program hands it on: decoded into `interface{}` (every number a `float64`) and
/// written with `encoding/json`, then read back. Each float becomes the number its Go text reads
/// as, so integral values are integers again (`3`, not `3.0`) and the rest stay floats.
///
/// YAML decoded like sigs.k8s.io/yaml ([`crate::yaml::parse_stream`]) holds only floats; a hook
/// response built from it must carry the integers a Go webhook would have sent.
pub fn reread_go_numbers(value: Value) -> Value {
    match value {
        Value::Number(n) if n.is_f64() => {
            let text = format_float_go_json(n.as_f64().unwrap_or(0.0));
            serde_json::from_str::<Number>(&text).map_or(Value::Number(n), Value::Number)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(reread_go_numbers).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, item)| (key, reread_go_numbers(item)))
                .collect(),
        ),
        other => other,
    }
}

/// Serializes a [`Value`] with object keys in bytewise order, which is `str`'s `Ord` and Go's
/// map key order.
pub struct SortedKeys<'a>(pub &'a Value);

impl Serialize for SortedKeys<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&SortedKeys(item))?;
                }
                seq.end()
            }
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                let mut out = serializer.serialize_map(Some(entries.len()))?;
                for (key, item) in entries {
                    out.serialize_entry(key, &SortedKeys(item))?;
                }
                out.end()
            }
            scalar => scalar.serialize(serializer),
        }
    }
}

/// A serde_json [`Formatter`] that writes strings and floats the way Go's `encoding/json` does
/// and leaves layout to the wrapped formatter ([`CompactFormatter`] for `json.Marshal`,
/// [`PrettyFormatter`] for `json.MarshalIndent`, whose layout matches Go's).
pub struct GoFormatter<F>(pub F);

impl<F: Formatter> Formatter for GoFormatter<F> {
    fn write_f64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        writer.write_all(format_float_go_json(value).as_bytes())
    }

    fn write_f32<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(writer, f64::from(value))
    }

    /// serde_json escapes `"`, `\` and control characters itself (through `write_char_escape`,
    /// with the same spellings as Go); the rest arrives here, where Go's HTML-safe escapes apply.
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let escape: &[u8] = match c {
                '<' => b"\\u003c",
                '>' => b"\\u003e",
                '&' => b"\\u0026",
                '\u{2028}' => b"\\u2028",
                '\u{2029}' => b"\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(escape)?;
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn begin_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_array(writer)
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array(writer)
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_array_value(writer, first)
    }

    fn end_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array_value(writer)
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object(writer)
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object(writer)
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_object_key(writer, first)
    }

    fn end_object_key<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object_key(writer)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object_value(writer)
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object_value(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compact_matches_json_marshal() {
        assert_eq!(
            to_json_compact_go(&json!({"b": [1.5, 1e21, 1e-7, -0.0], "a": {}, "c": [], "d": null})),
            r#"{"a":{},"b":[1.5,1e+21,1e-7,-0],"c":[],"d":null}"#
        );
        assert_eq!(
            to_json_compact_go(&json!({"<k>": "a&b\u{2028}\u{2029}\u{1}\"\\\n"})),
            r#"{"\u003ck\u003e":"a\u0026b\u2028\u2029\u0001\"\\\n"}"#
        );
        assert_eq!(to_json_compact_go(&json!("x")), r#""x""#);
        assert_eq!(
            to_json_compact_go(&json!([u64::MAX, i64::MIN])),
            "[18446744073709551615,-9223372036854775808]"
        );
    }

    #[test]
    fn manifest_json_documented_cases() {
        assert_eq!(
            to_json_indent_go(&json!({"foo": "bar", "baz": [3, 4]}), 4),
            "{\n    \"baz\": [\n        3,\n        4\n    ],\n    \"foo\": \"bar\"\n}\n"
        );
        assert_eq!(to_json_indent_go(&json!("foo"), 4), "\"foo\"\n");
    }

    #[test]
    fn manifest_json_zero_indent_still_breaks_lines() {
        assert_eq!(
            to_json_indent_go(&json!({"a": 1, "b": [true, null]}), 0),
            "{\n\"a\": 1,\n\"b\": [\ntrue,\nnull\n]\n}\n"
        );
        assert_eq!(
            to_json_indent_go(&json!({"a": {"b": {}}, "c": []}), 2),
            "{\n  \"a\": {\n    \"b\": {}\n  },\n  \"c\": []\n}\n"
        );
        assert_eq!(to_json_indent_go(&json!([]), 2), "[]\n");
        assert_eq!(to_json_indent_go(&json!({}), 2), "{}\n");
        assert_eq!(to_json_indent_go(&Value::Null, 2), "null\n");
    }

    #[test]
    fn manifest_json_escapes_like_go() {
        let s = "<a href=\"x\">&</a>\u{2028}\u{2029}\u{0}\u{1}\u{8}\u{c}\n\r\t\\\u{7f}é😀";
        assert_eq!(
            to_json_indent_go(&json!({ s: s }), 1),
            concat!(
                "{\n \"\\u003ca href=\\\"x\\\"\\u003e\\u0026\\u003c/a\\u003e\\u2028\\u2029\\u0000\\u0001\\b\\f\\n\\r\\t\\\\\u{7f}é😀\": ",
                "\"\\u003ca href=\\\"x\\\"\\u003e\\u0026\\u003c/a\\u003e\\u2028\\u2029\\u0000\\u0001\\b\\f\\n\\r\\t\\\\\u{7f}é😀\"\n}\n"
            )
        );
    }

    #[test]
    fn manifest_json_sorts_keys_bytewise_and_formats_numbers() {
        let value = json!({"b": 1.5, "B": 1e21, "a": 1e-7, "é": -0.0, "10": 2, "9": 3});
        assert_eq!(
            to_json_indent_go(&value, 2),
            "{\n  \"10\": 2,\n  \"9\": 3,\n  \"B\": 1e+21,\n  \"a\": 1e-7,\n  \"b\": 1.5,\n  \"é\": -0\n}\n"
        );
        // Integers from non-Jsonnet callers are printed exactly.
        assert_eq!(
            to_json_indent_go(&json!([u64::MAX, i64::MIN, 3.0]), 0),
            "[\n18446744073709551615,\n-9223372036854775808,\n3\n]\n"
        );
    }

    #[test]
    fn numbers_read_back_as_go_writes_them() {
        let value = json!({"a": [3.0, -0.0, 1.5, 1e20, 1e21, 7], "b": {"c": 2.0}, "d": "3.0"});
        let reread = reread_go_numbers(value);
        assert_eq!(
            serde_json::to_string(&reread).unwrap_or_default(),
            r#"{"a":[3,-0.0,1.5,1e+20,1e+21,7],"b":{"c":2},"d":"3.0"}"#
        );
        assert!(reread["a"][0].is_i64());
        assert!(reread["a"][3].is_f64(), "beyond u64 stays a float");
    }
}
