//! Go standard-library behaviour that kubecfg's Jsonnet natives expose to hooks.
//!
//! kubecfg implements its natives (`escapeStringRegex`, `manifestJson`, `resolveImage`, …) with
//! Go's `regexp`, `encoding/json` and go-containerregistry. Hooks written for kubecfg observe the
//! exact bytes those produce (e.g. a `manifestJson` result written into a ConfigMap, whose hash then
//! triggers a rollout), so "close enough" is not good enough: the functions here reproduce the Go
//! output byte for byte for every value a Jsonnet program can produce. They are plain functions
//! over [`serde_json::Value`] so they can be unit-tested without a Jsonnet VM.
//!
//! Numbers: Jsonnet numbers are `f64`, and that is what Go sees too (`float64`). Values holding
//! `i64`/`u64` numbers (from other callers) are printed as exact integers, which is what Go prints
//! for every integer up to 2^53; beyond that Go would have rounded them through `float64` first.

use std::fmt::Write as _;

use serde_json::{Number, Value};
use thiserror::Error;

/// Go's `regexp.QuoteMeta`: backslash-escapes exactly the bytes `\.+*?()|[]{}^$`.
///
/// Rust's `regex::escape` also escapes `#`, `&`, `-` and `~`, which would change the output of
/// kubecfg's `escapeStringRegex` native, so this is implemented by hand.
pub fn quote_meta(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Go `json.MarshalIndent(v, "", strings.Repeat(" ", indent))` followed by `"\n"`: kubecfg's
/// `manifestJson` native.
///
/// Go semantics reproduced: object keys sorted bytewise; HTML-safe string escaping (`<`, `>`,
/// `&`, U+2028 and U+2029 become `\u003c`, `\u003e`, `\u0026`, `\u2028`, `\u2029`); control
/// characters as `\b`, `\f`, `\n`, `\r`, `\t` or `\u00XX` (lowercase hex); empty containers stay
/// `{}`/`[]`; numbers formatted by [`format_float_go_json`]. With `indent == 0` Go still breaks
/// lines, it just indents nothing, so `{"a":1}` becomes `"{\n\"a\": 1\n}\n"`.
pub fn to_json_indent_go(value: &Value, indent: usize) -> String {
    let mut out = String::new();
    write_json_indent(&mut out, value, &" ".repeat(indent), 0);
    out.push('\n');
    out
}

fn write_json_indent(out: &mut String, value: &Value, indent: &str, depth: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&format_number_go_json(n)),
        Value::String(s) => write_json_string_go(out, s),
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline_indent(out, indent, depth + 1);
                write_json_indent(out, item, indent, depth + 1);
            }
            newline_indent(out, indent, depth);
            out.push(']');
        }
        Value::Object(map) if map.is_empty() => out.push_str("{}"),
        Value::Object(map) => {
            // Go sorts map keys with a bytewise string comparison, which is `str`'s `Ord`.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline_indent(out, indent, depth + 1);
                write_json_string_go(out, key);
                out.push_str(": ");
                write_json_indent(out, item, indent, depth + 1);
            }
            newline_indent(out, indent, depth);
            out.push('}');
        }
    }
}

fn newline_indent(out: &mut String, indent: &str, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str(indent);
    }
}

/// A JSON string literal exactly as Go's `encoding/json` writes it with HTML escaping on (the
/// default for `json.Marshal`/`MarshalIndent`).
pub(crate) fn write_json_string_go(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{0}'..='\u{1f}' => {
                let b = c as u32;
                out.push_str("\\u00");
                out.push(char::from(HEX[(b >> 4) as usize & 0xf]));
                out.push(char::from(HEX[b as usize & 0xf]));
            }
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            _ => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON number as Go prints it: integers (`i64`/`u64`) exactly, `f64` via
/// [`format_float_go_json`].
pub(crate) fn format_number_go_json(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        u.to_string()
    } else {
        // Without serde_json's `arbitrary_precision` every remaining number is an f64.
        format_float_go_json(n.as_f64().unwrap_or(0.0))
    }
}

/// A `float64` exactly as Go's `encoding/json` encodes it (ES6 number-to-string rules).
///
/// Shortest round-tripping digits; plain decimal (`'f'`) for `1e-6 <= |x| < 1e21` (so integral
/// values carry no decimal point: `3`, `-0`), otherwise exponent form (`'e'`) with Go's clean-up
/// of a single-digit negative exponent: `1e+21`, `1.5e-7`, `1e-10`.
///
/// `encoding/json` refuses NaN and ±Inf (`json: unsupported value`); JSON values cannot hold
/// them, and for direct callers this returns Go's `strconv` spelling (`NaN`, `+Inf`, `-Inf`).
pub fn format_float_go_json(x: f64) -> String {
    if !x.is_finite() {
        return go_non_finite(x).to_string();
    }
    let decimal = Decimal::shortest_f64(x);
    let abs = x.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let mut s = decimal.exponent_form();
        // Go's encoder turns "e-07" into "e-7" (only a single leading zero, only when negative).
        let len = s.len();
        if len >= 4 && s.as_bytes()[len - 4] == b'e' && &s[len - 3..len - 1] == "-0" {
            s.remove(len - 2);
        }
        s
    } else {
        decimal.fixed_form()
    }
}

/// `strconv.FormatFloat(x, 'g', -1, 64)`: shortest digits; for the shortest `'g'` format Go
/// decides with precision 6, so the exponent form (at least two exponent digits) is used when the
/// decimal exponent is `< -4` or `>= 6`: `1e+06`, `1.5e+20`, `1e-05`, but `123456`, `0.0001`.
/// go-yaml v2 prints floats this way.
pub(crate) fn format_float_go_g64(x: f64) -> String {
    if !x.is_finite() {
        return go_non_finite(x).to_string();
    }
    Decimal::shortest_f64(x).g_form()
}

/// `strconv.FormatFloat(x, 'g', -1, 32)`: like [`format_float_go_g64`] but with the shortest
/// digits that identify the value as a `float32`. sigs.k8s.io/yaml formats float map keys so.
pub(crate) fn format_float_go_g32(x: f64) -> String {
    if !x.is_finite() {
        return go_non_finite(x).to_string();
    }
    // Go converts the float64 to float32 (round to nearest) before formatting: `as` does that.
    let y = x as f32;
    if !y.is_finite() {
        return go_non_finite(f64::from(y)).to_string();
    }
    Decimal::shortest_f32(y).g_form()
}

fn go_non_finite(x: f64) -> &'static str {
    if x.is_nan() {
        "NaN"
    } else if x > 0.0 {
        "+Inf"
    } else {
        "-Inf"
    }
}

/// A finite float as `±0.d1d2…dn × 10^(exp+1)`, i.e. `d1.d2…dn × 10^exp`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    /// Significant digits without leading or trailing zeros; `"0"` for zero.
    digits: String,
    /// Decimal exponent of the first digit.
    exp: i32,
}

impl Decimal {
    /// Go's shortest digits for a `float64`.
    fn shortest_f64(x: f64) -> Self {
        Self::shortest(x, &format!("{x:e}"), |text| {
            text.parse::<f64>().ok() == Some(x)
        })
    }

    /// Go's shortest digits for a `float32`.
    fn shortest_f32(y: f32) -> Self {
        Self::shortest(f64::from(y), &format!("{y:e}"), |text| {
            text.parse::<f32>().ok() == Some(y)
        })
    }

    /// The fewest significant digits that read back as the same float and, among those, the
    /// closest to its exact value. Rust's shortest formatting (`repr`) agrees with Go except when
    /// the exact value lies exactly halfway between two such candidates: Rust rounds the tie up,
    /// Go's Ryu implementation rounds it to the even digit (`853951514273350.25` prints as
    /// `8.539515142733502e+14` in Go). Such a tie means the exact value has exactly one digit more
    /// than the shortest form, ending in 5, which exact formatting reveals.
    fn shortest(value: f64, repr: &str, round_trips: impl Fn(&str) -> bool) -> Self {
        let decimal = Self::parse(repr);
        let n = decimal.digits.len();
        if decimal.digits == "0" {
            return decimal;
        }
        // Cheap filter: n + 1 correctly rounded digits end in 5 whenever there is a tie.
        let probe = Self::parse(&format!("{:.*e}", n, value.abs()));
        if !probe.digits.ends_with('5') {
            return decimal;
        }
        // A float64 has at most 767 significant decimal digits, so this is its exact value.
        let exact = Self::parse(&format!("{:.767e}", value.abs()));
        let significant = exact.digits.trim_end_matches('0');
        if significant.len() != n + 1 || !significant.ends_with('5') {
            return decimal;
        }
        let down = &significant[..n];
        let even = if down.ends_with(['0', '2', '4', '6', '8']) {
            down.to_string()
        } else {
            // Rounding up an odd last digit; a 9 would carry, and then the shorter result
            // would already have been the shortest form.
            let mut up = down.as_bytes().to_vec();
            match up.last_mut() {
                Some(last) if *last < b'9' => *last += 1,
                _ => return decimal,
            }
            String::from_utf8(up).unwrap_or_default()
        };
        let candidate = Self {
            negative: decimal.negative,
            digits: {
                let trimmed = even.trim_end_matches('0');
                if trimmed.is_empty() { "0" } else { trimmed }.to_string()
            },
            exp: exact.exp,
        };
        if candidate != decimal && round_trips(&candidate.exponent_form()) {
            candidate
        } else {
            decimal
        }
    }

    /// Splits Rust's `{:e}`/`{:.Ne}` output (`-1.2345e-7`, `1e21`, `0e0`); trailing zeros of the
    /// fixed-precision form are kept.
    fn parse(repr: &str) -> Self {
        let (negative, rest) = match repr.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, repr),
        };
        let (mantissa, exp) = rest.split_once('e').unwrap_or((rest, "0"));
        Self {
            negative,
            digits: mantissa.chars().filter(char::is_ascii_digit).collect(),
            exp: exp.parse().unwrap_or(0),
        }
    }

    /// Go's `'e'` format with shortest precision: `d[.ddd]e±XX`, exponent at least two digits.
    fn exponent_form(&self) -> String {
        let mut s = String::with_capacity(self.digits.len() + 8);
        if self.negative {
            s.push('-');
        }
        let (first, rest) = self.digits.split_at(1.min(self.digits.len()));
        s.push_str(if first.is_empty() { "0" } else { first });
        if !rest.is_empty() {
            s.push('.');
            s.push_str(rest);
        }
        s.push('e');
        s.push(if self.exp < 0 { '-' } else { '+' });
        let _ = write!(s, "{:02}", self.exp.unsigned_abs());
        s
    }

    /// Go's `'f'` format with shortest precision: no exponent, no trailing zeros after the point.
    fn fixed_form(&self) -> String {
        let mut s = String::with_capacity(self.digits.len() + 8);
        if self.negative {
            s.push('-');
        }
        if self.digits == "0" {
            s.push('0');
            return s;
        }
        let len = self.digits.len();
        if self.exp < 0 {
            s.push_str("0.");
            s.extend(std::iter::repeat_n(
                '0',
                (-self.exp - 1).unsigned_abs() as usize,
            ));
            s.push_str(&self.digits);
        } else {
            let integral = self.exp.unsigned_abs() as usize + 1;
            if len <= integral {
                s.push_str(&self.digits);
                s.extend(std::iter::repeat_n('0', integral - len));
            } else {
                s.push_str(&self.digits[..integral]);
                s.push('.');
                s.push_str(&self.digits[integral..]);
            }
        }
        s
    }

    /// Go's `'g'` format with shortest precision (exponent form below 1e-4 and from 1e6 on).
    fn g_form(&self) -> String {
        if self.digits != "0" && !(-4..6).contains(&self.exp) {
            self.exponent_form()
        } else {
            self.fixed_form()
        }
    }
}

/// Why an image reference was rejected by [`normalize_image_name`]. The messages follow
/// go-containerregistry's `name` package, prefixed like kubecfg's `parsing reference %q: …`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ImageNameError {
    /// The repository part is empty (e.g. `""` or `":tag"`).
    #[error("parsing reference {image:?}: a repository name must be specified")]
    EmptyRepository { image: String },
    /// A repository or tag is too short or too long (counted in characters).
    #[error(
        "parsing reference {image:?}: {element} must be between {min} and {max} characters in length: {value}"
    )]
    Length {
        image: String,
        element: &'static str,
        min: usize,
        max: usize,
        value: String,
    },
    /// A repository or tag contains a character outside its allowed set (repositories must be
    /// lowercase).
    #[error(
        "parsing reference {image:?}: {element} can only contain the characters `{allowed}`: {value}"
    )]
    Characters {
        image: String,
        element: &'static str,
        allowed: &'static str,
        value: String,
    },
    /// The registry host is not a valid URI authority (bad port, space, `%`, …).
    #[error(
        "parsing reference {image:?}: registries must be valid RFC 3986 URI authorities: {registry}"
    )]
    Registry { image: String, registry: String },
    /// More than one `@`.
    #[error(
        "parsing reference {image:?}: a digest must contain exactly one '@' separator (e.g. registry/repository@digest) saw: {image}"
    )]
    DigestSeparator { image: String },
    /// The digest is not `sha256:…`.
    #[error("parsing reference {image:?}: unsupported digest algorithm: {digest}")]
    DigestAlgorithm { image: String, digest: String },
    /// The sha256 hex is not 64 characters long.
    #[error("parsing reference {image:?}: invalid checksum digest length: {digest}")]
    DigestLength { image: String, digest: String },
    /// The sha256 hex contains something other than `[a-f0-9]`.
    #[error("parsing reference {image:?}: invalid checksum digest format: {digest}")]
    DigestFormat { image: String, digest: String },
}

const DEFAULT_REGISTRY: &str = "index.docker.io";
const REPOSITORY_CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789_-./";
const TAG_CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789_-.ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// kubecfg's `resolveImage` in its default `noop` mode: go-containerregistry
/// `name.ParseReference` (weak validation) followed by kubecfg's `ImageName.String()`.
///
/// * `busybox` → `docker.io/library/busybox:latest`; `foo/bar` → `docker.io/foo/bar:latest`.
/// * The first path component is a registry only if it contains `.` or `:` (so `localhost/x` is
///   a Docker Hub repository, `localhost:5000/xy` is a registry); `index.docker.io` and
///   `docker.io` both print as `docker.io`.
/// * `repo@sha256:<64 lowercase hex>` keeps the digest and gets no tag; a tag next to a digest
///   (`repo:1@sha256:…`) is dropped, as go-containerregistry does.
/// * Repositories must be 2–255 characters of `[a-z0-9_./-]`, tags 1–128 of `[A-Za-z0-9_.-]`;
///   an empty tag (`busybox:`) means `latest`.
pub fn normalize_image_name(image: &str) -> Result<String, ImageNameError> {
    let reference = if image.contains('@') {
        parse_digest_reference(image)?
    } else {
        parse_tag_reference(image, image)?
    };
    let registry = if reference.registry == DEFAULT_REGISTRY {
        "docker.io"
    } else {
        reference.registry.as_str()
    };
    let separator = if reference.is_digest { '@' } else { ':' };
    Ok(format!(
        "{registry}/{}{separator}{}",
        reference.repository_str(),
        reference.identifier
    ))
}

struct ParsedReference {
    registry: String,
    repository: String,
    /// Tag or digest.
    identifier: String,
    is_digest: bool,
}

impl ParsedReference {
    /// go-containerregistry's `RepositoryStr`: Docker Hub repositories without a namespace live
    /// under `library/`.
    fn repository_str(&self) -> String {
        if !self.repository.contains('/') && self.registry == DEFAULT_REGISTRY {
            format!("library/{}", self.repository)
        } else {
            self.repository.clone()
        }
    }
}

/// `name.NewTag`: the last `:`-separated part is a tag unless it contains a `/` (then the colon
/// belonged to a registry port).
fn parse_tag_reference(name: &str, image: &str) -> Result<ParsedReference, ImageNameError> {
    let mut base = name;
    let mut tag = "";
    if let Some((before, after)) = name.rsplit_once(':')
        && !after.contains('/')
    {
        base = before;
        tag = after;
    }
    if !tag.is_empty() {
        check_element(image, "tag", tag, TAG_CHARS, 1, 128)?;
    }
    let (registry, repository) = parse_repository(base, image)?;
    Ok(ParsedReference {
        registry,
        repository,
        identifier: if tag.is_empty() { "latest" } else { tag }.to_string(),
        is_digest: false,
    })
}

/// `name.NewDigest`: exactly one `@`, a `sha256:` digest of 64 lowercase hex digits; a tag in
/// front of the `@` is validated and then dropped.
fn parse_digest_reference(image: &str) -> Result<ParsedReference, ImageNameError> {
    let mut parts = image.split('@');
    let (Some(base), Some(digest), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ImageNameError::DigestSeparator {
            image: image.to_string(),
        });
    };
    let Some(hex) = digest.strip_prefix("sha256:") else {
        return Err(ImageNameError::DigestAlgorithm {
            image: image.to_string(),
            digest: digest.to_string(),
        });
    };
    if hex.len() != 64 {
        return Err(ImageNameError::DigestLength {
            image: image.to_string(),
            digest: digest.to_string(),
        });
    }
    if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(ImageNameError::DigestFormat {
            image: image.to_string(),
            digest: digest.to_string(),
        });
    }
    let (registry, repository) = match parse_tag_reference(base, image) {
        // go-containerregistry re-parses `tag.Repository.Name()`, i.e. registry + repository
        // without the tag; the result is the same registry and `RepositoryStr`.
        Ok(tagged) => {
            let repository = tagged.repository_str();
            (tagged.registry, repository)
        }
        Err(_) => parse_repository(base, image)?,
    };
    Ok(ParsedReference {
        registry,
        repository,
        identifier: digest.to_string(),
        is_digest: true,
    })
}

/// `name.NewRepository` (weak validation): returns `(registry, repository)`.
fn parse_repository(name: &str, image: &str) -> Result<(String, String), ImageNameError> {
    if name.is_empty() {
        return Err(ImageNameError::EmptyRepository {
            image: image.to_string(),
        });
    }
    let mut registry = "";
    let mut repository = name;
    if let Some((first, rest)) = name.split_once('/')
        && (first.contains('.') || first.contains(':'))
    {
        registry = first;
        repository = rest;
    }
    check_element(image, "repository", repository, REPOSITORY_CHARS, 2, 255)?;
    if !is_valid_uri_authority(registry) {
        return Err(ImageNameError::Registry {
            image: image.to_string(),
            registry: registry.to_string(),
        });
    }
    let registry = match registry {
        "" | "docker.io" => DEFAULT_REGISTRY,
        other => other,
    };
    Ok((registry.to_string(), repository.to_string()))
}

/// go-containerregistry's `checkElement`: length in characters, then the allowed character set.
fn check_element(
    image: &str,
    element: &'static str,
    value: &str,
    allowed: &'static str,
    min: usize,
    max: usize,
) -> Result<(), ImageNameError> {
    let count = value.chars().count();
    if count < min || count > max {
        return Err(ImageNameError::Length {
            image: image.to_string(),
            element,
            min,
            max,
            value: value.to_string(),
        });
    }
    if value.chars().any(|c| !allowed.contains(c)) {
        return Err(ImageNameError::Characters {
            image: image.to_string(),
            element,
            allowed,
            value: value.to_string(),
        });
    }
    Ok(())
}

/// go-containerregistry accepts a registry when Go's `url.Parse("//" + name).Host == name`.
/// That holds when the name has no control characters, no URL delimiters (`#?/@`), no `%`
/// (percent-decoding would change it), only ASCII characters Go allows in a host, and a port
/// (text after the last `:`, or after `]` for a bracketed IPv6 literal) made of digits only.
fn is_valid_uri_authority(name: &str) -> bool {
    let allowed_ascii = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                '!' | '$'
                    | '&'
                    | '\''
                    | '('
                    | ')'
                    | '*'
                    | '+'
                    | ','
                    | ';'
                    | '='
                    | ':'
                    | '['
                    | ']'
                    | '<'
                    | '>'
                    | '"'
                    | '-'
                    | '_'
                    | '.'
                    | '~'
            )
    };
    if name.chars().any(|c| c.is_ascii() && !allowed_ascii(c)) {
        return false;
    }
    let valid_port = |port: &str| {
        port.is_empty()
            || port
                .strip_prefix(':')
                .is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_digit()))
    };
    if let Some(bracketed) = name.strip_prefix('[') {
        let Some(close) = bracketed.rfind(']') else {
            return false;
        };
        let literal = &bracketed[..close];
        valid_port(&bracketed[close + 1..]) && literal.parse::<std::net::Ipv6Addr>().is_ok()
    } else if let Some(colon) = name.rfind(':') {
        valid_port(&name[colon..])
    } else {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quote_meta_escapes_only_go_metacharacters() {
        assert_eq!(quote_meta("f[o"), "f\\[o");
        assert_eq!(
            quote_meta(r"\.+*?()|[]{}^$"),
            r"\\\.\+\*\?\(\)\|\[\]\{\}\^\$"
        );
        // regex::escape would escape these; Go does not.
        assert_eq!(quote_meta("a#b&c-d~e é"), "a#b&c-d~e é");
        assert_eq!(quote_meta(""), "");
    }

    #[test]
    fn float_formatting_matches_encoding_json() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (3.0, "3"),
            (-3.0, "-3"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (1e-6, "0.000001"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (1e-10, "1e-10"),
            (1.2345e-300, "1.2345e-300"),
            (123456789.0, "123456789"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1.5e21, "1.5e+21"),
            (1e100, "1e+100"),
            (-2.5e22, "-2.5e+22"),
            (9007199254740993.0, "9007199254740992"),
            (0.000123, "0.000123"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
        ];
        for (x, want) in cases {
            assert_eq!(format_float_go_json(*x), *want, "formatting {x:e}");
        }
        assert_eq!(format_float_go_json(f64::NAN), "NaN");
    }

    #[test]
    fn float_ties_round_to_even_like_go() {
        // Exact values ending in ...25 / ...75 (written as sums: the literals themselves would be
        // "excessively precise"): two shortest candidates are equally close.
        let tie = 853_951_514_273_350.0 + 0.25;
        assert_eq!(format_float_go_json(tie), "853951514273350.2");
        assert_eq!(format_float_go_json(tie + 0.5), "853951514273350.8");
        assert_eq!(
            format_float_go_json(1_817_587_900_046_491.0 + 0.25),
            "1817587900046491.2"
        );
        assert_eq!(
            format_float_go_json(-811_291_951_910_112.0 - 0.25),
            "-811291951910112.2"
        );
        assert_eq!(format_float_go_g64(tie), "8.539515142733502e+14");
        assert_eq!(format_float_go_g64(1e23), "1e+23");
        assert_eq!(format_float_go_g64(5e-324), "5e-324");
        assert_eq!(format_float_go_g32(33554434.0), "3.3554432e+07");
        assert_eq!(format_float_go_g32(3.4028235e38), "3.4028235e+38");
        assert_eq!(format_float_go_g32(1e-45), "1e-45");
        assert_eq!(format_float_go_json(f64::INFINITY), "+Inf");
    }

    #[test]
    fn float_g_formatting_matches_strconv() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (1.5, "1.5"),
            (100000.0, "100000"),
            (1e6, "1e+06"),
            (1234567.5, "1.2345675e+06"),
            (1e20, "1e+20"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-1.5e-7, "-1.5e-07"),
            (1e100, "1e+100"),
        ];
        for (x, want) in cases {
            assert_eq!(format_float_go_g64(*x), *want, "formatting {x:e}");
        }
        assert_eq!(format_float_go_g32(std::f64::consts::PI), "3.1415927");
        assert_eq!(format_float_go_g32(1e6), "1e+06");
        assert_eq!(format_float_go_g32(0.1), "0.1");
        assert_eq!(format_float_go_g32(1e40), "+Inf");
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

    fn image_ok(input: &str) -> String {
        match normalize_image_name(input) {
            Ok(s) => s,
            Err(e) => panic!("{input}: unexpected error {e}"),
        }
    }

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn image_names_are_normalised_like_go_containerregistry() {
        assert_eq!(image_ok("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(image_ok("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(image_ok("busybox:"), "docker.io/library/busybox:latest");
        assert_eq!(image_ok("foo/bar"), "docker.io/foo/bar:latest");
        assert_eq!(image_ok("gcr.io/x/y:1"), "gcr.io/x/y:1");
        assert_eq!(image_ok("gcr.io/xy"), "gcr.io/xy:latest");
        assert_eq!(
            image_ok("index.docker.io/foo/bar:v1"),
            "docker.io/foo/bar:v1"
        );
        assert_eq!(
            image_ok("docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            image_ok("index.docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            image_ok("registry-1.docker.io/busybox"),
            "registry-1.docker.io/busybox:latest"
        );
        assert_eq!(
            image_ok("localhost:5000/foo/bar"),
            "localhost:5000/foo/bar:latest"
        );
        assert_eq!(image_ok("localhost:5000/xy:2"), "localhost:5000/xy:2");
        // Without a dot or colon the first component is not a registry.
        assert_eq!(image_ok("localhost/foo"), "docker.io/localhost/foo:latest");
        assert_eq!(image_ok("[::1]:5000/foo"), "[::1]:5000/foo:latest");
        assert_eq!(image_ok("quay.io/a/b/c:V1.2_x-y"), "quay.io/a/b/c:V1.2_x-y");
    }

    #[test]
    fn image_digests_are_kept_without_latest() {
        let digest = format!("sha256:{HEX}");
        assert_eq!(
            image_ok(&format!("busybox@{digest}")),
            format!("docker.io/library/busybox@{digest}")
        );
        assert_eq!(
            image_ok(&format!("gcr.io/x/y@{digest}")),
            format!("gcr.io/x/y@{digest}")
        );
        // A tag next to a digest is dropped.
        assert_eq!(
            image_ok(&format!("busybox:1.0@{digest}")),
            format!("docker.io/library/busybox@{digest}")
        );
        assert_eq!(
            image_ok(&format!("localhost:5000/foo:1@{digest}")),
            format!("localhost:5000/foo@{digest}")
        );
    }

    #[test]
    fn invalid_image_names_name_the_problem() {
        let err = |s: &str| match normalize_image_name(s) {
            Ok(v) => panic!("{s}: expected an error, got {v}"),
            Err(e) => e,
        };
        assert!(matches!(
            err("Busybox"),
            ImageNameError::Characters {
                element: "repository",
                ..
            }
        ));
        assert_eq!(
            err("Busybox").to_string(),
            "parsing reference \"Busybox\": repository can only contain the characters `abcdefghijklmnopqrstuvwxyz0123456789_-./`: Busybox"
        );
        assert!(matches!(
            err("a"),
            ImageNameError::Length {
                element: "repository",
                min: 2,
                ..
            }
        ));
        assert!(matches!(
            err("localhost:5000/x"),
            ImageNameError::Length { .. }
        ));
        assert!(matches!(err(""), ImageNameError::EmptyRepository { .. }));
        assert!(matches!(
            err(":tag"),
            ImageNameError::EmptyRepository { .. }
        ));
        assert!(matches!(err("busy box"), ImageNameError::Characters { .. }));
        assert!(matches!(
            err("busybox:bad!tag"),
            ImageNameError::Characters { element: "tag", .. }
        ));
        assert!(matches!(
            err(&format!("busybox:{}", "x".repeat(129))),
            ImageNameError::Length {
                element: "tag",
                max: 128,
                ..
            }
        ));
        assert!(matches!(
            err("host.io:port/foo"),
            ImageNameError::Registry { .. }
        ));
        assert!(matches!(
            err("ho st.io/foo"),
            ImageNameError::Registry { .. }
        ));
        assert!(matches!(
            err("a%41.io/foo"),
            ImageNameError::Registry { .. }
        ));
        assert!(matches!(
            err("busybox@sha256:abc"),
            ImageNameError::DigestLength { .. }
        ));
        assert!(matches!(
            err(&format!("busybox@sha256:{}", HEX.to_uppercase())),
            ImageNameError::DigestFormat { .. }
        ));
        assert!(matches!(
            err(&format!("busybox@md5:{HEX}")),
            ImageNameError::DigestAlgorithm { .. }
        ));
        assert!(matches!(
            err(&format!("a@b@sha256:{HEX}")),
            ImageNameError::DigestSeparator { .. }
        ));
        assert_eq!(
            err("busybox@sha256:abc").to_string(),
            "parsing reference \"busybox@sha256:abc\": invalid checksum digest length: sha256:abc"
        );
    }
}
