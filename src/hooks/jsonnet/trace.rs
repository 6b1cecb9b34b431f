//! `std.trace` with file and line.
//!
//! jrsonnet 0.5.0-pre98 calls every builtin with a "native" call location, so its `std.trace`
//! cannot say where it was called. When a hook file is loaded, each `std.trace(` call site outside
//! strings and comments is rewritten to `std.native('kubelambda.trace')('<file>:<line>', `, a
//! native that logs the location it is given and otherwise behaves like `std.trace`. Only lines
//! that call `std.trace` change, and only after the call site.

use std::cell::Cell;
use std::rc::Rc;

use jrsonnet_evaluator::{IStr, Result, Thunk, Val, function::builtin, manifest::JsonFormat};
use jrsonnet_gcmodule::Acyclic;
use jrsonnet_stdlib::TracePrinter;

const CALL: &str = "std.trace(";
pub const NATIVE: &str = "kubelambda.trace";

/// Rewrites the `std.trace(` calls of one file; returns the text unchanged when there are none.
pub fn rewrite(file: &str, code: &str) -> String {
    if !code.contains(CALL) {
        return code.to_owned();
    }
    let bytes = code.as_bytes();
    let mut out = String::with_capacity(code.len() + 64);
    let mut line = 1usize;
    let mut copied = 0usize;
    let mut i = 0usize;
    let escaped_file = file.replace('\\', "\\\\").replace('\'', "\\'");
    while i < bytes.len() {
        let rest = &code[i..];
        match bytes[i] {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b'#' => i = skip_until(code, i, "\n"),
            b'/' if rest.starts_with("//") => i = skip_until(code, i, "\n"),
            b'/' if rest.starts_with("/*") => {
                let end = code[i + 2..]
                    .find("*/")
                    .map_or(code.len(), |p| i + 2 + p + 2);
                line += code[i..end].matches('\n').count();
                i = end;
            }
            b'|' if rest.starts_with("|||") => {
                let end = code[i + 3..]
                    .find("|||")
                    .map_or(code.len(), |p| i + 3 + p + 3);
                line += code[i..end].matches('\n').count();
                i = end;
            }
            b'@' if rest.starts_with("@'") || rest.starts_with("@\"") => {
                let quote = bytes[i + 1];
                let mut j = i + 2;
                while j < bytes.len() {
                    if bytes[j] == quote {
                        if bytes.get(j + 1) == Some(&quote) {
                            j += 2;
                            continue;
                        }
                        break;
                    }
                    j += 1;
                }
                let end = (j + 1).min(bytes.len());
                line += code[i..end].matches('\n').count();
                i = end;
            }
            quote @ (b'\'' | b'"') => {
                let mut j = i + 1;
                while j < bytes.len() && bytes[j] != quote {
                    j += if bytes[j] == b'\\' { 2 } else { 1 };
                }
                let end = (j + 1).min(bytes.len());
                line += code[i..end].matches('\n').count();
                i = end;
            }
            b's' if rest.starts_with(CALL) && !is_ident_byte(bytes.get(i.wrapping_sub(1))) => {
                out.push_str(&code[copied..i]);
                out.push_str(&format!("std.native('{NATIVE}')('{escaped_file}:{line}', "));
                i += CALL.len();
                copied = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&code[copied..]);
    out
}

fn is_ident_byte(b: Option<&u8>) -> bool {
    b.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.')
}

fn skip_until(code: &str, from: usize, end: &str) -> usize {
    code[from..].find(end).map_or(code.len(), |p| from + p)
}

thread_local! {
    /// Whether `std.trace` ran since [`take_traced`] last looked. A traced evaluation is not
    /// cached: its log line is part of what the hook author asked for, on every call.
    static TRACED: Cell<bool> = const { Cell::new(false) };
}

/// True if `std.trace` ran on this thread since the last call; resets the flag.
pub fn take_traced() -> bool {
    TRACED.with(|traced| traced.replace(false))
}

/// Logs `std.trace` output at info level with the location the rewrite recorded.
#[derive(Acyclic)]
pub struct LogTracePrinter;

impl TracePrinter for LogTracePrinter {
    fn print_trace(&self, _loc: jrsonnet_evaluator::function::CallLocation, value: IStr) {
        TRACED.with(|traced| traced.set(true));
        tracing::info!(target: "kubelambda::trace", "{value}");
    }
}

/// `std.native('kubelambda.trace')(location, str, rest)`: what a rewritten `std.trace` calls.
#[builtin]
pub fn builtin_located_trace(location: IStr, str: Val, rest: Thunk<Val>) -> Result<Val> {
    let message = match &str {
        Val::Str(s) => s.clone().into_flat().to_string(),
        other => other.manifest(JsonFormat::cli(0))?,
    };
    TRACED.with(|traced| traced.set(true));
    tracing::info!(target: "kubelambda::trace", "TRACE: {location} {message}");
    rest.evaluate()
}

pub fn printer() -> Rc<LogTracePrinter> {
    Rc::new(LogTracePrinter)
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn rewrites_calls_with_their_line() {
        let code = "local a = 1;\n{\n  x: std.trace('hi', a),\n}\n";
        assert_eq!(
            rewrite("/h/sync.jsonnet", code),
            "local a = 1;\n{\n  x: std.native('kubelambda.trace')('/h/sync.jsonnet:3', 'hi', a),\n}\n"
        );
    }

    #[test]
    fn leaves_strings_comments_and_other_names_alone() {
        let code = "// std.trace(\n/* std.trace(\n */ 'std.trace(' + \"std.trace(\" + |||\n std.trace(\n||| + mystd.trace(1)\n# std.trace(\n";
        assert_eq!(rewrite("f", code), code);
    }

    #[test]
    fn counts_lines_inside_skipped_text() {
        let code = "/*\n\n*/ |||\n a\n|||\n+ std.trace('x', 1)";
        assert_eq!(
            rewrite("f", code),
            "/*\n\n*/ |||\n a\n|||\n+ std.native('kubelambda.trace')('f:6', 'x', 1)"
        );
    }
}
