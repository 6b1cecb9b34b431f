//! The Jsonnet backend, on jrsonnet-evaluator.
//!
//! jrsonnet values are not `Send`, so an evaluator lives on one thread (in practice: one sandbox
//! worker process, see `hooks::sandbox`). It keeps one evaluation state per hook, with the hook's
//! top-level value already evaluated, and throws that state away when the hook file or anything it
//! imported changes on disk.

mod lazy_json;
mod natives;
mod resolver;
mod trace;

use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;

use jrsonnet_evaluator::{
    IStr, State, Val,
    error::ErrorKind,
    manifest::JsonFormat,
    tla::TlaArg,
    trace::{CompactFormat, PathResolver, TraceFormat},
};
use jrsonnet_ir::{SourceFile, SourcePath};
use jrsonnet_stdlib::ContextInitializer;
use serde::{Deserialize, Serialize};

use super::FileStamp;
use super::boundary::{ImportRoots, hook_file};
use super::{EvalError, HookSource, LimitKind};
pub use lazy_json::Json;
pub use resolver::BUNDLED;
use resolver::{HookImportResolver, Stamps};

/// Settings shared by every Jsonnet hook of a process: the CLI's `-J`, `--ext-str`, `--ext-code`,
/// `--tla-str` and `--tla-code`, and the limits that apply inside the evaluator.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonnetOptions {
    pub jpath: Vec<PathBuf>,
    pub ext_str: Vec<(String, String)>,
    pub ext_code: Vec<(String, String)>,
    pub tla_str: Vec<(String, String)>,
    pub tla_code: Vec<(String, String)>,
}

/// A hook whose top-level value is evaluated and ready to be called.
struct LoadedHook {
    name: String,
    state: State,
    value: Val,
    stamps: Stamps,
    /// Where the main program came from (its path, or the inline hook's name) and its text: to
    /// point at a failed field access when jrsonnet gives no location.
    main_text: (String, String),
}

impl LoadedHook {
    fn is_current(&self) -> bool {
        self.stamps.borrow().iter().all(FileStamp::is_current)
    }
}

pub struct JsonnetEvaluator {
    options: JsonnetOptions,
    max_stack: usize,
    max_output_bytes: usize,
    hooks: HashMap<HookSource, LoadedHook>,
    /// Whether the last evaluation called `std.trace`.
    last_traced: bool,
}

/// Formats an evaluation error with its stack (file:line:column where jrsonnet knows it). jrsonnet
/// does not locate every error (a missing field, for one), so an error without any location at
/// least names the hook it came from.
fn format_error(error: &jrsonnet_evaluator::Error, hook: &str) -> EvalError {
    if matches!(error.error(), ErrorKind::StackOverflow) {
        return EvalError::limit(
            LimitKind::StackDepth,
            "too many nested calls (infinite recursion?)",
        );
    }
    let format = CompactFormat {
        resolver: PathResolver::Absolute,
        max_trace: 20,
        padding: 4,
    };
    let mut text = format
        .format(error)
        .unwrap_or_else(|_| error.error().to_string());
    if error.trace().0.iter().all(|frame| frame.location.is_none()) {
        text.push_str(&format!("\n    in {hook}"));
    }
    EvalError::Hook(text)
}

/// jrsonnet reports a missing field without a location. When no frame of the error has one,
/// the lines of the hook's main file that access the field (`.name`, `['name']`, `["name"]`)
/// are the best pointer there is: `the access to field "name" is at sync.jsonnet:4`.
fn missing_field_lines(
    error: &jrsonnet_evaluator::Error,
    label: &str,
    text: &str,
) -> Option<String> {
    let ErrorKind::NoSuchField(field, _) = error.error() else {
        return None;
    };
    if error.trace().0.iter().any(|frame| frame.location.is_some()) {
        return None;
    }
    let field = field.to_string();
    let lines: Vec<String> = text
        .lines()
        .enumerate()
        .filter(|(_, line)| accesses(line, &field))
        .map(|(n, _)| (n + 1).to_string())
        .take(5)
        .collect();
    if lines.is_empty() {
        return None;
    }
    Some(format!(
        "the access to field {field:?} is at {label}:{}",
        lines.join(", ")
    ))
}

/// Whether `line` reads `field` with `.field` or an index by string.
fn accesses(line: &str, field: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let dotted = line
        .match_indices(&format!(".{field}"))
        .any(|(at, m)| !line[at + m.len()..].starts_with(is_ident));
    dotted || line.contains(&format!("['{field}']")) || line.contains(&format!("[\"{field}\"]"))
}

impl JsonnetEvaluator {
    pub fn new(options: JsonnetOptions, max_stack: usize, max_output_bytes: usize) -> Self {
        jrsonnet_evaluator::stack::set_stack_depth_limit(max_stack);
        Self {
            options,
            max_stack,
            max_output_bytes,
            hooks: HashMap::new(),
            last_traced: false,
        }
    }

    /// Evaluates `source` with the JSON `request` bound as the top-level argument `request`; a hook
    /// that is not a function is returned as it is. Returns the response as go-jsonnet formats it
    /// (3-space indent, trailing newline).
    pub fn evaluate(&mut self, source: &HookSource, request: &Json) -> Result<String, EvalError> {
        let stale = self.hooks.get(source).is_some_and(|h| !h.is_current());
        if stale {
            self.hooks.remove(source);
        }
        if !self.hooks.contains_key(source) {
            let loaded = self.load(source)?;
            // A hook's new version replaces its old one (a followed ConfigMap key or file was
            // edited), so edits do not pile up evaluation states.
            let name = source.display_name();
            self.hooks.retain(|old, _| old.display_name() != name);
            self.hooks.insert(source.clone(), loaded);
        }
        let Some(hook) = self.hooks.get(source) else {
            return Err(EvalError::Worker("hook vanished from the cache".into()));
        };
        trace::take_traced();
        let result = Self::call(hook, &self.options, request, self.max_output_bytes);
        self.last_traced = trace::take_traced();
        // Objects and thunks form reference cycles; without this a long-running worker grows.
        jrsonnet_gcmodule::collect_thread_cycles();
        result
    }

    /// What the last successful evaluation of `source` depended on, if its response may be
    /// reused for the same request: every file the hook has read (itself and its imports). A
    /// Jsonnet evaluation is a pure function of its files, the request and the process-wide
    /// options, with one exception: `std.trace`, whose log line the author wants on every call.
    pub fn dependencies(&self, source: &HookSource) -> Option<Vec<FileStamp>> {
        if self.last_traced {
            return None;
        }
        self.hooks
            .get(source)
            .map(|hook| hook.stamps.borrow().clone())
    }

    #[cfg(test)]
    pub fn loaded(&self) -> usize {
        self.hooks.len()
    }

    /// Parses and checks `source` and evaluates its top-level value, without calling it (see
    /// [`HookSource::Load`]). Nothing is kept.
    pub fn check(&self, source: &HookSource) -> Result<(), EvalError> {
        let checked = self.load(source).map(drop);
        // The state just dropped holds reference cycles.
        jrsonnet_gcmodule::collect_thread_cycles();
        checked
    }

    #[allow(clippy::mutable_key_type)] // IStr keys are interned, not mutated
    fn call(
        hook: &LoadedHook,
        options: &JsonnetOptions,
        request: &Json,
        max_output_bytes: usize,
    ) -> Result<String, EvalError> {
        let _entered = hook.state.enter();
        let mut tla: HashMap<IStr, TlaArg> = HashMap::new();
        for (name, value) in &options.tla_str {
            tla.insert(name.as_str().into(), TlaArg::String(value.as_str().into()));
        }
        for (name, code) in &options.tla_code {
            tla.insert(name.as_str().into(), TlaArg::InlineCode(code.clone()));
        }
        // Parsed as JSON, never as Jsonnet code: a request must not be able to import files.
        tla.insert("request".into(), TlaArg::Val(request.to_val()));
        let out = jrsonnet_evaluator::apply_tla(&tla, hook.value.clone())
            .and_then(|v| v.manifest(JsonFormat::cli(3)))
            .map_err(|e| {
                let (label, text) = &hook.main_text;
                match (
                    format_error(&e, &hook.name),
                    missing_field_lines(&e, label, text),
                ) {
                    (EvalError::Hook(message), Some(hint)) => {
                        EvalError::Hook(format!("{message}\n    {hint}"))
                    }
                    (other, _) => other,
                }
            })?;
        if out.len() + 1 > max_output_bytes {
            return Err(EvalError::limit(
                LimitKind::OutputSize,
                format!(
                    "the response is {} bytes, the limit is {max_output_bytes}",
                    out.len() + 1
                ),
            ));
        }
        let mut out = out;
        out.push('\n');
        Ok(out)
    }

    fn load(&self, source: &HookSource) -> Result<LoadedHook, EvalError> {
        let (roots, main) = match source {
            HookSource::JsonnetFile { path, jpath } => (
                ImportRoots::for_file(path, jpath, &self.options.jpath),
                Main::File(hook_file(path)?),
            ),
            HookSource::JsonnetInline { name, code, jpath } => (
                ImportRoots::inline(jpath, &self.options.jpath),
                Main::Inline(name, code),
            ),
            HookSource::JsonnetFileText { path, code, jpath } => (
                ImportRoots::for_file(path, jpath, &self.options.jpath),
                Main::FileText(path, code),
            ),
            _ => return Err(EvalError::Worker("not a Jsonnet hook".into())),
        };
        let main_real = match &main {
            Main::File(real) => Some(real.clone()),
            Main::FileText(path, _) => Some((*path).clone()),
            Main::Inline(..) => None,
        };
        let main_text = match &main {
            Main::File(real) => (
                real.display().to_string(),
                std::fs::read_to_string(real).unwrap_or_default(),
            ),
            Main::FileText(path, code) => (path.display().to_string(), (*code).clone()),
            Main::Inline(name, code) => ((*name).clone(), (*code).clone()),
        };
        let stamps: Stamps = Rc::default();
        let name = source.display_name();

        let std_ctx = ContextInitializer::new(PathResolver::Absolute);
        natives::register(&std_ctx);
        std_ctx.settings_mut().trace_printer = trace::printer();
        std_ctx.add_native(trace::NATIVE, trace::builtin_located_trace {});
        for (name, value) in &self.options.ext_str {
            std_ctx.add_ext_str(name.as_str().into(), value.as_str().into());
        }
        for (var, code) in &self.options.ext_code {
            std_ctx
                .add_ext_code(var, code)
                .map_err(|e| format_error(&e, &name))?;
        }
        let mut resolver = HookImportResolver::new(roots, main_real, stamps.clone());
        if let Main::FileText(path, code) = &main {
            resolver = resolver.with_main_text((*path).clone(), (*code).clone());
        }
        let mut builder = State::builder();
        builder
            .import_resolver(resolver)
            .context_initializer(std_ctx);
        let state = builder.build();
        let value = {
            let _entered = state.enter();
            let _depth = jrsonnet_evaluator::stack::limit_stack_depth(self.max_stack);
            match main {
                // Loaded as resolved: the hook file itself is not an import.
                Main::File(real) => state.import_resolved(SourcePath::new(SourceFile::new(real))),
                Main::Inline(name, code) => {
                    state.evaluate_snippet(name.as_str(), trace::rewrite(name, code))
                }
                // The resolver answers with the given text for this path.
                Main::FileText(path, _) => {
                    state.import_resolved(SourcePath::new(SourceFile::new(path.clone())))
                }
            }
            .map_err(|e| format_error(&e, &name))?
        };
        Ok(LoadedHook {
            name,
            state,
            value,
            stamps,
            main_text,
        })
    }
}

enum Main<'a> {
    /// The hook file's real path.
    File(PathBuf),
    Inline(&'a String, &'a String),
    FileText(&'a PathBuf, &'a String),
}
