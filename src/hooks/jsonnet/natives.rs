//! kubecfg's native functions, reachable through `std.native(name)`, with kubecfg's (Go) semantics.
//!
//! Arguments arrive as jrsonnet values; they are manifested to JSON first, as go-jsonnet does for
//! natives, so a native sees exactly the data kubecfg's Go code would.

use std::cell::RefCell;
use std::collections::HashMap;

use jrsonnet_evaluator::{IStr, Result, Val, bail, function::builtin};
use jrsonnet_stdlib::ContextInitializer;
use serde::Deserialize;

use crate::gocompat;

/// Registers every native on a stdlib context.
pub fn register(std_ctx: &ContextInitializer) {
    std_ctx.add_native("parseJson", builtin_parse_json {});
    std_ctx.add_native("parseYaml", builtin_parse_yaml {});
    std_ctx.add_native("manifestJson", builtin_manifest_json {});
    std_ctx.add_native("manifestYaml", builtin_manifest_yaml {});
    std_ctx.add_native("escapeStringRegex", builtin_escape_string_regex {});
    std_ctx.add_native("regexMatch", builtin_regex_match {});
    std_ctx.add_native("regexSubst", builtin_regex_subst {});
    std_ctx.add_native("resolveImage", builtin_resolve_image {});
    // jsonnetd's (Metacontroller's Jsonnet webhook server), so its hooks run unchanged.
    std_ctx.add_native("jsonUnmarshal", builtin_json_unmarshal {});
    std_ctx.add_native("parseInt", builtin_parse_int {});
}

fn to_json(value: &Val, what: &str) -> Result<serde_json::Value> {
    match serde_json::to_value(value) {
        Ok(v) => Ok(v),
        Err(e) => bail!("{what}: cannot manifest argument as JSON: {e}"),
    }
}

fn from_json(value: serde_json::Value, what: &str) -> Result<Val> {
    match Val::deserialize(value) {
        Ok(v) => Ok(v),
        Err(e) => bail!("{what}: cannot convert result: {e}"),
    }
}

/// `parseJson(json)`: any JSON value, as Go's `json.Unmarshal` into `interface{}`.
#[builtin]
fn builtin_parse_json(json: IStr) -> Result<Val> {
    match serde_json::from_str::<Val>(&json) {
        Ok(v) => Ok(v),
        Err(e) => bail!("parseJson: {e}"),
    }
}

/// `jsonUnmarshal(json)`: jsonnetd's name for [`builtin_parse_json`].
#[builtin]
fn builtin_json_unmarshal(json: IStr) -> Result<Val> {
    match serde_json::from_str::<Val>(&json) {
        Ok(v) => Ok(v),
        Err(e) => bail!("jsonUnmarshal: {e}"),
    }
}

/// `parseInt(str)`: jsonnetd's, a base-10 64-bit integer as a number (Go's `strconv.ParseInt`:
/// an optional sign and digits only, no spaces).
#[builtin]
fn builtin_parse_int(str: IStr) -> Result<f64> {
    let text: &str = &str;
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        bail!("parseInt: {text:?} is not a base-10 integer");
    }
    match text.parse::<i64>() {
        // Jsonnet numbers are doubles, as jsonnetd's were.
        Ok(n) => Ok(n as f64),
        Err(e) => bail!("parseInt: {text:?}: {e}"),
    }
}

/// `parseYaml(yaml)`: a multi-document stream, always returned as an array of documents.
#[builtin]
fn builtin_parse_yaml(yaml: IStr) -> Result<Val> {
    match crate::yaml::parse_stream(&yaml) {
        Ok(docs) => from_json(serde_json::Value::Array(docs), "parseYaml"),
        Err(e) => bail!("parseYaml: {e}"),
    }
}

/// `manifestJson(json, indent=4)`: Go's `json.MarshalIndent` plus a newline.
#[builtin]
fn builtin_manifest_json(json: Val, indent: Option<usize>) -> Result<String> {
    let value = to_json(&json, "manifestJson")?;
    Ok(gocompat::to_json_indent_go(&value, indent.unwrap_or(4)))
}

/// `manifestYaml(json)`: ghodss/yaml (go-yaml v2) output, one document.
#[builtin]
fn builtin_manifest_yaml(json: Val) -> Result<String> {
    let value = to_json(&json, "manifestYaml")?;
    Ok(crate::yaml::to_yaml_go(&value))
}

/// `escapeStringRegex(str)`: Go's `regexp.QuoteMeta`, which escapes fewer characters than
/// `regex::escape`.
#[builtin]
fn builtin_escape_string_regex(str: IStr) -> String {
    gocompat::quote_meta(&str)
}

/// `regexMatch(regex, string)`: unanchored search, RE2 syntax.
#[builtin]
fn builtin_regex_match(regex: IStr, string: IStr) -> Result<bool> {
    with_regex(&regex, "regexMatch", |re| re.is_match(&string))
}

/// `regexSubst(regex, src, repl)`: replace all matches; `$1`, `${1}` and `$name` expand as in Go.
#[builtin]
fn builtin_regex_subst(regex: IStr, src: IStr, repl: IStr) -> Result<String> {
    with_regex(&regex, "regexSubst", |re| {
        re.replace_all(&src, repl.as_str()).into_owned()
    })
}

/// `resolveImage(image)`: kubecfg's `noop` resolver, a pure name normaliser
/// (`busybox` → `docker.io/library/busybox:latest`).
#[builtin]
fn builtin_resolve_image(image: IStr) -> Result<String> {
    match gocompat::normalize_image_name(&image) {
        Ok(name) => Ok(name),
        Err(e) => bail!("resolveImage: {e}"),
    }
}

thread_local! {
    /// Hooks call the same few patterns on every request; compiling them once per worker matters.
    static REGEX_CACHE: RefCell<HashMap<String, regex::Regex>> = RefCell::new(HashMap::new());
}
const REGEX_CACHE_CAPACITY: usize = 256;

fn with_regex<T>(pattern: &str, what: &str, f: impl FnOnce(&regex::Regex) -> T) -> Result<T> {
    REGEX_CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if !cache.contains_key(pattern) {
            let re = match regex::Regex::new(pattern) {
                Ok(re) => re,
                Err(e) => bail!("{what}: invalid regular expression {pattern:?}: {e}"),
            };
            if cache.len() >= REGEX_CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(pattern.to_owned(), re);
        }
        match cache.get(pattern) {
            Some(re) => Ok(f(re)),
            None => bail!("{what}: regular expression cache lost {pattern:?}"),
        }
    })
}
