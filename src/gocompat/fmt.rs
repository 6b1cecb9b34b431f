//! Go's `fmt` verbs over decoded JSON values: Metacontroller keys list-map items by `%v` of
//! their merge key, so `80` and `"80"` collide exactly as they do there.

use std::fmt::Write as _;

use serde_json::Value;

use super::float::format_float_go_g64;

/// `fmt.Sprintf("%v", v)` of a value decoded from JSON by Kubernetes (integers as `int64`,
/// other numbers as `float64`): `<nil>`, `true`, `80`, `1e+06`, `[a b]`, `map[a:1 b:x]`.
pub(crate) fn sprint_v(value: &Value) -> String {
    let mut out = String::new();
    write_go_v(&mut out, value);
    out
}

/// Go's `fmt` `%v` of a decoded JSON value: `<nil>`, `true`, `80`, `1e+06`, `[a b]`,
/// `map[a:1 b:x]` (map keys sorted, strings unquoted).
pub(crate) fn write_go_v(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            // Kubernetes' JSON decoding turns integral literals into int64 (printed exactly) and
            // everything else into float64 (printed with %g-style shortest digits).
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else {
                out.push_str(&format_float_go_g64(n.as_f64().unwrap_or(0.0)));
            }
        }
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_go_v(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push_str("map[");
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                write_go_v(out, v);
            }
            out.push(']');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn v_verb_matches_go() {
        assert_eq!(sprint_v(&Value::Null), "<nil>");
        assert_eq!(sprint_v(&json!(true)), "true");
        assert_eq!(sprint_v(&json!(80)), "80");
        assert_eq!(sprint_v(&json!(1e6)), "1e+06");
        assert_eq!(sprint_v(&json!(1.5)), "1.5");
        assert_eq!(sprint_v(&json!("x y")), "x y");
        assert_eq!(sprint_v(&json!(["a", 1])), "[a 1]");
        assert_eq!(
            sprint_v(&json!({"b": "x", "a": [1, {}]})),
            "map[a:[1 map[]] b:x]"
        );
    }
}
