//! The go-yaml v2 (libyaml) emitter, as `ghodss/yaml.Marshal` drives it for a JSON value.

use serde_json::{Number, Value};

use super::resolve::{Resolved, is_base60_float, resolve};
use crate::gocompat::float::{format_float_go_g64, format_float_go_json};
use crate::gocompat::strconv::{parse_int, parse_uint};

/// kubecfg's `manifestYaml` (`ghodss/yaml.Marshal`): the go-yaml v2 rendering of the value's
/// JSON form.
///
/// * Keys sorted in go-yaml's natural order (`a2` before `a10`, non-letters before letters);
///   2-space indentation; block sequences are not indented under their key (`baz:\n- 3\n`);
///   `{}` and `[]` for empty containers; a trailing newline.
/// * Strings are plain unless that would read back as something else under YAML 1.1 (`"yes"`,
///   `"1"`, `"1.5"`, `"~"`, `""`, `"2024-01-15"`, `"1:20"`) — then double-quoted — or unless
///   they contain YAML indicators or leading/trailing spaces (`'a: b'`, `'- x'`, `'#x'`,
///   `' x'`) — then single-quoted. Strings with a newline become literal blocks (`|`, `|-`,
///   `|+`, with an indentation hint when they start with a space); non-printable characters,
///   characters outside the BMP and trailing spaces on a line force double quotes with go-yaml's
///   escapes (`\t`, `\e`, `\x7F`, `\U0001F600`).
/// * Long plain and quoted strings are folded at spaces once a line passes 80 columns.
/// * Keys longer than 128 bytes or spanning lines are written as complex keys (`? key`).
/// * Numbers as Go prints them after the JSON round trip: integral values without a decimal
///   point up to `u64::MAX`, others with `%g`-style shortest formatting (`1.5`, `1e+21`,
///   `1e-07`, `1.2345675e+06`).
pub fn to_yaml_go(value: &Value) -> String {
    let folded;
    let value = if contains_nel(value) {
        folded = fold_nel_value(value);
        &folded
    } else {
        value
    };
    let mut emitter = Emitter {
        out: String::new(),
        column: 0,
        indent: -1,
        indents: Vec::new(),
        whitespace: true,
        indention: true,
    };
    emitter.node(value, Context::default());
    emitter.write_indent();
    emitter.out
}

fn contains_nel(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\u{85}'),
        Value::Array(items) => items.iter().any(contains_nel),
        Value::Object(map) => map
            .iter()
            .any(|(key, item)| key.contains('\u{85}') || contains_nel(item)),
        _ => false,
    }
}

/// Go's JSON→YAML step writes U+0085 (NEL) unescaped inside JSON strings, and go-yaml reads a raw
/// NEL in a double-quoted scalar as a line break and folds it: one NEL (with the spaces around
/// it) becomes a space, `n` consecutive NELs become `n - 1` newlines. Keys collapsing onto the
/// same string keep the value that comes last in Go's (bytewise sorted) JSON output.
fn fold_nel_value(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(fold_nel(s)),
        Value::Array(items) => Value::Array(items.iter().map(fold_nel_value).collect()),
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(key, item)| (fold_nel(key), fold_nel_value(item)))
                    .collect(),
            )
        }
        other => other.clone(),
    }
}

/// libyaml's double-quoted scalar folding where the only raw blank is a space and the only raw
/// line break is NEL (JSON escapes everything else).
fn fold_nel(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    loop {
        while let Some(&c) = chars.peek() {
            if c == ' ' || c == '\u{85}' {
                break;
            }
            out.push(c);
            chars.next();
        }
        if chars.peek().is_none() {
            return out;
        }
        let mut whitespace = String::new();
        let mut leading_break = false;
        let mut trailing_breaks = 0;
        while let Some(&c) = chars.peek() {
            match c {
                ' ' if !leading_break => whitespace.push(' '),
                ' ' => {}
                '\u{85}' if !leading_break => {
                    whitespace.clear();
                    leading_break = true;
                }
                '\u{85}' => trailing_breaks += 1,
                _ => break,
            }
            chars.next();
        }
        if !leading_break {
            out.push_str(&whitespace);
        } else if trailing_breaks == 0 {
            out.push(' ');
        } else {
            out.extend(std::iter::repeat_n('\n', trailing_breaks));
        }
    }
}

/// Tera's `to_yaml` filter uses the same rendering as kubecfg's `manifestYaml`, so templates and
/// Jsonnet hooks produce identical YAML.
pub fn to_yaml(value: &Value) -> String {
    to_yaml_go(value)
}

/// go-yaml v2 prints an integer as an integer and a float with `%g`; after Go's JSON round trip
/// a `float64` is an integer exactly when its JSON text parses as `int64`/`uint64`.
fn yaml_number(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    let json = format_float_go_json(f);
    if let Some(i) = parse_int(&json) {
        i.to_string()
    } else if let Some(u) = parse_uint(&json) {
        u.to_string()
    } else {
        format_float_go_g64(f)
    }
}

const BEST_INDENT: i64 = 2;
const BEST_WIDTH: usize = 80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
}

/// The emitter state of libyaml/go-yaml that decides spacing and line breaks.
#[derive(Debug, Clone, Copy, Default)]
struct Context {
    /// The node is a mapping key or value.
    mapping: bool,
    /// The node is a simple (single-line, `key: value`) mapping key.
    simple_key: bool,
}

/// A port of the parts of go-yaml v2's `emitterc.go` that a JSON value exercises: block
/// collections, flow style only for empty collections, no anchors or tags.
struct Emitter {
    out: String,
    /// Column in characters (runes), as libyaml counts.
    column: usize,
    indent: i64,
    indents: Vec<i64>,
    /// The last character written was whitespace (no separating space needed).
    whitespace: bool,
    /// Only indentation has been written on the current line.
    indention: bool,
}

impl Emitter {
    fn put(&mut self, c: char) {
        self.out.push(c);
        self.column += 1;
    }

    fn put_str(&mut self, s: &str) {
        for c in s.chars() {
            self.put(c);
        }
    }

    fn put_break(&mut self) {
        self.out.push('\n');
        self.column = 0;
    }

    fn write_break(&mut self, c: char) {
        if c == '\n' {
            self.put_break();
        } else {
            self.out.push(c);
            self.column = 0;
        }
    }

    fn increase_indent(&mut self, flow: bool, indentless: bool) {
        self.indents.push(self.indent);
        if self.indent < 0 {
            self.indent = if flow { BEST_INDENT } else { 0 };
        } else if !indentless {
            self.indent += BEST_INDENT;
        }
    }

    fn restore_indent(&mut self) {
        self.indent = self.indents.pop().unwrap_or(-1);
    }

    fn write_indent(&mut self) {
        let indent = usize::try_from(self.indent).unwrap_or(0);
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.put_break();
        }
        while self.column < indent {
            self.put(' ');
        }
        self.whitespace = true;
        self.indention = true;
    }

    fn write_indicator(
        &mut self,
        indicator: &str,
        need_whitespace: bool,
        is_whitespace: bool,
        is_indention: bool,
    ) {
        if need_whitespace && !self.whitespace {
            self.put(' ');
        }
        self.put_str(indicator);
        self.whitespace = is_whitespace;
        self.indention = self.indention && is_indention;
    }

    fn node(&mut self, value: &Value, context: Context) {
        match value {
            Value::Null => self.scalar("null", Style::Plain, context),
            Value::Bool(b) => self.scalar(if *b { "true" } else { "false" }, Style::Plain, context),
            Value::Number(n) => self.scalar(&yaml_number(n), Style::Plain, context),
            Value::String(s) => self.string(s, context),
            Value::Array(items) if items.is_empty() => {
                self.write_indicator("[", true, true, false);
                self.write_indicator("]", false, false, false);
            }
            Value::Array(items) => {
                self.increase_indent(false, context.mapping && !self.indention);
                for item in items {
                    self.write_indent();
                    self.write_indicator("-", true, false, true);
                    self.node(item, Context::default());
                }
                self.restore_indent();
            }
            Value::Object(map) if map.is_empty() => {
                self.write_indicator("{", true, true, false);
                self.write_indicator("}", false, false, false);
            }
            Value::Object(map) => {
                let mut keys: Vec<&str> = map.keys().map(String::as_str).collect();
                sort_keys_go(&mut keys);
                self.increase_indent(false, false);
                for key in keys {
                    self.write_indent();
                    let simple = key.len() <= 128 && !analyze(key).multiline;
                    if simple {
                        self.string(
                            key,
                            Context {
                                mapping: true,
                                simple_key: true,
                            },
                        );
                        self.write_indicator(":", false, false, false);
                    } else {
                        self.write_indicator("?", true, false, true);
                        self.string(
                            key,
                            Context {
                                mapping: true,
                                simple_key: false,
                            },
                        );
                        self.write_indent();
                        self.write_indicator(":", true, false, true);
                    }
                    if let Some(item) = map.get(key) {
                        self.node(
                            item,
                            Context {
                                mapping: true,
                                simple_key: false,
                            },
                        );
                    }
                }
                self.restore_indent();
            }
        }
    }

    /// go-yaml's `stringv`: literal block for multi-line text, plain when the text would read
    /// back as a string, double quotes otherwise; the emitter may then downgrade the style.
    fn string(&mut self, s: &str, context: Context) {
        let requested = if s.contains('\n') {
            Style::Literal
        } else if resolve(s, true) == Resolved::Str && !is_base60_float(s) {
            Style::Plain
        } else {
            Style::DoubleQuoted
        };
        self.scalar(s, requested, context);
    }

    /// libyaml's `select_scalar_style` followed by `process_scalar`.
    fn scalar(&mut self, s: &str, requested: Style, context: Context) {
        let analysis = analyze(s);
        let mut style = requested;
        if context.simple_key && analysis.multiline {
            style = Style::DoubleQuoted;
        }
        if style == Style::Plain
            && (!analysis.block_plain_allowed || (s.is_empty() && context.simple_key))
        {
            style = Style::SingleQuoted;
        }
        if style == Style::SingleQuoted && !analysis.single_quoted_allowed {
            style = Style::DoubleQuoted;
        }
        if style == Style::Literal && (!analysis.block_allowed || context.simple_key) {
            style = Style::DoubleQuoted;
        }
        let allow_breaks = !context.simple_key;
        self.increase_indent(true, false);
        match style {
            Style::Plain => self.write_plain(s, allow_breaks),
            Style::SingleQuoted => self.write_single_quoted(s, allow_breaks),
            Style::DoubleQuoted => self.write_double_quoted(s, allow_breaks),
            Style::Literal => self.write_literal(s),
        }
        self.restore_indent();
    }

    fn write_plain(&mut self, s: &str, allow_breaks: bool) {
        if !self.whitespace {
            self.put(' ');
        }
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        let mut breaks = false;
        for (i, &c) in chars.iter().enumerate() {
            if c == ' ' {
                let next_is_space = chars.get(i + 1) == Some(&' ');
                if allow_breaks && !spaces && self.column > BEST_WIDTH && !next_is_space {
                    self.write_indent();
                } else {
                    self.put(c);
                }
                spaces = true;
            } else if is_break(c) {
                if !breaks && c == '\n' {
                    self.put_break();
                }
                self.write_break(c);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                self.put(c);
                self.indention = false;
                spaces = false;
                breaks = false;
            }
        }
        self.whitespace = false;
        self.indention = false;
    }

    fn write_single_quoted(&mut self, s: &str, allow_breaks: bool) {
        self.write_indicator("'", true, false, false);
        let chars: Vec<char> = s.chars().collect();
        let last = chars.len().saturating_sub(1);
        let mut spaces = false;
        let mut breaks = false;
        for (i, &c) in chars.iter().enumerate() {
            if c == ' ' {
                let next_is_space = chars.get(i + 1) == Some(&' ');
                if allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && i > 0
                    && i < last
                    && !next_is_space
                {
                    self.write_indent();
                } else {
                    self.put(c);
                }
                spaces = true;
            } else if is_break(c) {
                if !breaks && c == '\n' {
                    self.put_break();
                }
                self.write_break(c);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                if c == '\'' {
                    self.put('\'');
                }
                self.put(c);
                self.indention = false;
                spaces = false;
                breaks = false;
            }
        }
        self.write_indicator("'", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_double_quoted(&mut self, s: &str, allow_breaks: bool) {
        self.write_indicator("\"", true, false, false);
        // libyaml checks for a byte-order mark at the start of the *value* on every character,
        // so a value starting with U+FEFF is escaped in full.
        let starts_with_bom = s.starts_with('\u{FEFF}');
        let chars: Vec<char> = s.chars().collect();
        let last = chars.len().saturating_sub(1);
        let mut spaces = false;
        for (i, &c) in chars.iter().enumerate() {
            if !is_printable(c) || starts_with_bom || is_break(c) || c == '"' || c == '\\' {
                self.put('\\');
                match c {
                    '\0' => self.put('0'),
                    '\u{7}' => self.put('a'),
                    '\u{8}' => self.put('b'),
                    '\t' => self.put('t'),
                    '\n' => self.put('n'),
                    '\u{b}' => self.put('v'),
                    '\u{c}' => self.put('f'),
                    '\r' => self.put('r'),
                    '\u{1b}' => self.put('e'),
                    '"' => self.put('"'),
                    '\\' => self.put('\\'),
                    '\u{85}' => self.put('N'),
                    '\u{a0}' => self.put('_'),
                    '\u{2028}' => self.put('L'),
                    '\u{2029}' => self.put('P'),
                    _ => {
                        let code = u32::from(c);
                        let (marker, width) = if code <= 0xFF {
                            ('x', 2)
                        } else if code <= 0xFFFF {
                            ('u', 4)
                        } else {
                            ('U', 8)
                        };
                        self.put(marker);
                        self.put_str(&format!("{code:0width$X}"));
                    }
                }
                spaces = false;
            } else if c == ' ' {
                if allow_breaks && !spaces && self.column > BEST_WIDTH && i > 0 && i < last {
                    self.write_indent();
                    if chars.get(i + 1) == Some(&' ') {
                        self.put('\\');
                    }
                } else {
                    self.put(c);
                }
                spaces = true;
            } else {
                self.put(c);
                spaces = false;
            }
        }
        self.write_indicator("\"", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_literal(&mut self, s: &str) {
        self.write_indicator("|", true, false, false);
        let chars: Vec<char> = s.chars().collect();
        if chars.first().is_some_and(|&c| c == ' ' || is_break(c)) {
            self.write_indicator("2", false, false, false);
        }
        let chomp = match chars.as_slice() {
            [] => Some("-"),
            [.., last] if !is_break(*last) => Some("-"),
            [_] => Some("+"),
            [.., before, _] if is_break(*before) => Some("+"),
            _ => None,
        };
        if let Some(chomp) = chomp {
            self.write_indicator(chomp, false, false, false);
        }
        self.put_break();
        self.indention = true;
        self.whitespace = true;
        let mut breaks = true;
        for &c in &chars {
            if is_break(c) {
                self.write_break(c);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                self.put(c);
                self.indention = false;
                breaks = false;
            }
        }
    }
}

/// libyaml's `is_printable` over UTF-8 (characters outside the BMP count as non-printable).
fn is_printable(c: char) -> bool {
    matches!(c, '\n' | ' '..='~' | '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
        && c != '\u{FEFF}'
}

fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// What libyaml's `analyze_scalar` decides about a scalar (in block context).
struct Analysis {
    multiline: bool,
    block_plain_allowed: bool,
    single_quoted_allowed: bool,
    block_allowed: bool,
}

fn analyze(s: &str) -> Analysis {
    if s.is_empty() {
        return Analysis {
            multiline: false,
            block_plain_allowed: true,
            single_quoted_allowed: true,
            block_allowed: false,
        };
    }
    let chars: Vec<char> = s.chars().collect();
    let last = chars.len() - 1;
    let mut block_indicators = s.starts_with("---") || s.starts_with("...");
    let mut line_breaks = false;
    let mut special_characters = false;
    let mut leading_space = false;
    let mut leading_break = false;
    let mut trailing_space = false;
    let mut trailing_break = false;
    let mut break_space = false;
    let mut space_break = false;
    let mut preceded_by_whitespace = true;
    let mut previous_space = false;
    let mut previous_break = false;
    for (i, &c) in chars.iter().enumerate() {
        let followed_by_whitespace = chars.get(i + 1).is_none_or(|&next| is_blank(next));
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => block_indicators = true,
                '?' | ':' | '-' if followed_by_whitespace => block_indicators = true,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_whitespace => block_indicators = true,
                '#' if preceded_by_whitespace => block_indicators = true,
                _ => {}
            }
        }
        if !is_printable(c) {
            special_characters = true;
        }
        if c == ' ' {
            leading_space |= i == 0;
            trailing_space |= i == last;
            break_space |= previous_break;
            previous_space = true;
            previous_break = false;
        } else if is_break(c) {
            line_breaks = true;
            leading_break |= i == 0;
            trailing_break |= i == last;
            space_break |= previous_space;
            previous_space = false;
            previous_break = true;
        } else {
            previous_space = false;
            previous_break = false;
        }
        preceded_by_whitespace = is_blank(c) || is_break(c) || c == '\0';
    }
    let mut analysis = Analysis {
        multiline: line_breaks,
        block_plain_allowed: true,
        single_quoted_allowed: true,
        block_allowed: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break || line_breaks {
        analysis.block_plain_allowed = false;
    }
    if trailing_space {
        analysis.block_allowed = false;
    }
    if break_space {
        analysis.block_plain_allowed = false;
        analysis.single_quoted_allowed = false;
    }
    if space_break || special_characters {
        analysis.block_plain_allowed = false;
        analysis.single_quoted_allowed = false;
        analysis.block_allowed = false;
    }
    if block_indicators {
        analysis.block_plain_allowed = false;
    }
    analysis
}

/// go-yaml v2's key order (`keyList.Less` for strings): runs of digits compare numerically,
/// letters compare by code point and sort after non-letters. Sorted with a merge sort of our own:
/// the order is not guaranteed to be total for odd keys, and std's sort may panic on that.
fn sort_keys_go(keys: &mut Vec<&str>) {
    let decoded: Vec<(Vec<char>, &str)> = keys.iter().map(|k| (k.chars().collect(), *k)).collect();
    let mut order: Vec<usize> = (0..decoded.len()).collect();
    let mut buffer = order.clone();
    let mut width = 1;
    while width < order.len() {
        let mut start = 0;
        while start < order.len() {
            let middle = (start + width).min(order.len());
            let end = (start + 2 * width).min(order.len());
            let (mut left, mut right) = (start, middle);
            for slot in &mut buffer[start..end] {
                let take_right = right < end
                    && (left >= middle
                        || go_key_less(&decoded[order[right]].0, &decoded[order[left]].0));
                if take_right {
                    *slot = order[right];
                    right += 1;
                } else {
                    *slot = order[left];
                    left += 1;
                }
            }
            start = end;
        }
        std::mem::swap(&mut order, &mut buffer);
        width *= 2;
    }
    *keys = order.into_iter().map(|i| decoded[i].1).collect();
}

fn go_key_less(a: &[char], b: &[char]) -> bool {
    let is_digit = |c: char| c.is_ascii_digit();
    let digit = |c: char| i64::from(u32::from(c)) - i64::from(u32::from('0'));
    for i in 0..a.len().min(b.len()) {
        if a[i] == b[i] {
            continue;
        }
        let a_letter = a[i].is_alphabetic();
        let b_letter = b[i].is_alphabetic();
        if a_letter && b_letter {
            return a[i] < b[i];
        }
        if a_letter || b_letter {
            return b_letter;
        }
        let mut a_number: i64 = 0;
        let mut b_number: i64 = 0;
        if a[i] == '0' || b[i] == '0' {
            // A zero inside a number that already has a non-zero digit is not a leading zero.
            for j in (0..i).rev() {
                if !is_digit(a[j]) {
                    break;
                }
                if a[j] != '0' {
                    a_number = 1;
                    b_number = 1;
                    break;
                }
            }
        }
        let mut a_end = i;
        while a_end < a.len() && is_digit(a[a_end]) {
            a_number = a_number.wrapping_mul(10).wrapping_add(digit(a[a_end]));
            a_end += 1;
        }
        let mut b_end = i;
        while b_end < b.len() && is_digit(b[b_end]) {
            b_number = b_number.wrapping_mul(10).wrapping_add(digit(b[b_end]));
            b_end += 1;
        }
        if a_number != b_number {
            return a_number < b_number;
        }
        if a_end != b_end {
            return a_end < b_end;
        }
        return a[i] < b[i];
    }
    a.len() < b.len()
}
