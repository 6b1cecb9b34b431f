//! Go's `regexp` package: `QuoteMeta`, behind kubecfg's `escapeStringRegex` native.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
