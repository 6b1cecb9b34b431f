//! The Tera backend: a template renders YAML (or JSON, which is YAML) that parses to the response.
//!
//! The template context holds the request's top-level fields (`parent`, `children`, `related`,
//! `controller`, `finalizing`, or `object` and `attachments` for decorators) and `request`, the
//! whole request. Filters Kubernetes authors expect from Helm are registered on every template.
//!
//! What a template can reach beyond the request: `get_env` sees only the variables the operator
//! allowed with `--tera-env-allow` (their values as they were when kubelambda started), and
//! `include`, `import` and `extends` see only the hook's own template (each hook is its own Tera
//! instance with one template), so a template reads no files.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use base64::Engine;
use serde_json::Value;
use sha2::Digest;

use super::{EvalError, FileStamp, HookSource, LimitKind};
use crate::gocompat::json::reread_go_numbers;

struct LoadedTemplate {
    tera: tera::Tera,
    name: String,
    /// For file templates: what the file looked like when it was read.
    stamp: Option<FileStamp>,
}

impl LoadedTemplate {
    fn is_current(&self) -> bool {
        self.stamp.as_ref().is_none_or(FileStamp::is_current)
    }
}

/// The environment variables templates may read with `get_env`: the names the operator allowed
/// (`--tera-env-allow NAME`), with their values in the kubelambda process (`None`: not set).
pub type TeraEnv = BTreeMap<String, Option<String>>;

/// The flag that allows a name for `get_env`, as errors name it.
pub const TERA_ENV_FLAG: &str = "--tera-env-allow";

/// Renders Tera hooks; keeps each template parsed until its file changes.
#[derive(Default)]
pub struct TeraEvaluator {
    templates: HashMap<HookSource, LoadedTemplate>,
    env: Arc<TeraEnv>,
}

/// Joins an error with its causes: Tera puts the useful part (which variable, which line) in the
/// source chain.
fn describe(error: &tera::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

impl TeraEvaluator {
    /// An evaluator whose templates may read the variables in `env` with `get_env`.
    pub fn with_env(env: TeraEnv) -> Self {
        Self {
            templates: HashMap::new(),
            env: Arc::new(env),
        }
    }

    #[cfg(test)]
    pub fn loaded(&self) -> usize {
        self.templates.len()
    }

    pub fn evaluate(
        &mut self,
        source: &HookSource,
        request: &[u8],
        max_output_bytes: usize,
    ) -> Result<String, EvalError> {
        if self.templates.get(source).is_some_and(|t| !t.is_current()) {
            self.templates.remove(source);
        }
        if !self.templates.contains_key(source) {
            let loaded = load(source, &self.env)?;
            // A hook's new version replaces its old one (a followed ConfigMap key or file was
            // edited), so edits do not pile up parsed templates.
            let name = source.display_name();
            self.templates.retain(|old, _| old.display_name() != name);
            self.templates.insert(source.clone(), loaded);
        }
        let Some(template) = self.templates.get(source) else {
            return Err(EvalError::Worker("template vanished from the cache".into()));
        };

        let request: Value =
            serde_json::from_slice(request).map_err(|e| EvalError::BadRequest(e.to_string()))?;
        let Value::Object(fields) = &request else {
            return Err(EvalError::BadRequest(
                "a Tera hook needs a JSON object as its request".into(),
            ));
        };
        let mut context = tera::Context::new();
        for (key, value) in fields {
            context.insert(key.as_str(), value);
        }
        context.insert("request", &request);

        let text = template
            .tera
            .render(&template.name, &context)
            .map_err(|e| EvalError::Hook(describe(&e)))?;
        if text.len() > max_output_bytes {
            return Err(EvalError::limit(
                LimitKind::OutputSize,
                format!(
                    "the template rendered {} bytes, the limit is {max_output_bytes}",
                    text.len()
                ),
            ));
        }
        let response = parse_rendered(&template.name, &text)?;
        Ok(to_response_json(&response))
    }
}

/// Compiles the template of `source` without rendering it (see [`HookSource::Load`]).
pub fn check(source: &HookSource) -> Result<(), EvalError> {
    load(source, &Arc::new(TeraEnv::default())).map(drop)
}

fn load(source: &HookSource, env: &Arc<TeraEnv>) -> Result<LoadedTemplate, EvalError> {
    let (name, text, stamp) = match source {
        HookSource::TeraFile { path } => {
            let stamp = FileStamp::of(path);
            let real = super::boundary::hook_file(path)?;
            let text = std::fs::read_to_string(real).map_err(|e| EvalError::Load {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            (path.display().to_string(), text, stamp)
        }
        HookSource::TeraInline { name, template } => (name.clone(), template.clone(), None),
        _ => return Err(EvalError::Worker("not a Tera hook".into())),
    };
    let mut tera = tera::Tera::default();
    // Responses are YAML, not HTML.
    tera.autoescape_on(vec![]);
    register_filters(&mut tera);
    // Replaces Tera's built-in, which reads any variable of the process.
    tera.register_function("get_env", env_function(env.clone()));
    tera.add_raw_template(&name, &text)
        .map_err(|e| EvalError::Hook(describe(&e)))?;
    Ok(LoadedTemplate { tera, name, stamp })
}

/// Parses the rendered text as YAML; on error, shows the rendered line so the author can find the
/// template line that produced it.
///
/// The YAML dialect is the one of Jsonnet's `parseYaml` ([`crate::yaml::parse_stream`]: go-yaml
/// v2 and sigs.k8s.io/yaml, i.e. YAML 1.1, as `kubectl` and Helm read rendered manifests), so a
/// document means the same whichever backend produced it: `on: yes` is `{"true": true}`. Numbers
/// come back as a Go program would send them on ([`reread_go_numbers`]: `3` stays an integer).
/// The response is one document; `---` lines around it are allowed, a second non-empty
/// document is an error.
fn parse_rendered(name: &str, text: &str) -> Result<Value, EvalError> {
    let documents = crate::yaml::parse_stream(text).map_err(|e| {
        let mut message = format!("{name}: the rendered template is not valid YAML: {e}");
        // The parser may point one line past the end; show the last line then.
        let lines: Vec<&str> = text.lines().collect();
        let shown = lines.len().checked_sub(1).map(|last| {
            let index = e.location().line.saturating_sub(1).min(last);
            (index + 1, lines[index])
        });
        if let Some((number, line)) = shown {
            message.push_str(&format!("\n    rendered line {number}: {line}"));
        }
        EvalError::Hook(message)
    })?;
    let mut documents = documents.into_iter().filter(|d| !d.is_null());
    let response = documents.next().unwrap_or(Value::Null);
    let extra = documents.count();
    if extra > 0 {
        return Err(EvalError::Hook(format!(
            "{name}: the rendered template holds {} YAML documents; a hook response is one document",
            extra + 1
        )));
    }
    Ok(reread_go_numbers(response))
}

/// The response as JSON with go-jsonnet's layout (3-space indent, trailing newline), so both
/// backends answer in the same shape.
pub fn to_response_json(value: &Value) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"   ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    // Serializing a serde_json::Value into a Vec cannot fail.
    let _ = serde::Serialize::serialize(value, &mut ser);
    let mut text = String::from_utf8(out).unwrap_or_default();
    text.push('\n');
    text
}

type FilterArgs = HashMap<String, Value>;

/// `get_env(name="X", default=...)` over the allowed variables only. Like Tera's: an unset
/// variable gives `default`, or an error without one. A name the operator did not allow is an
/// error naming the flag, whether or not a default is given, so a template cannot probe names.
fn env_function(env: Arc<TeraEnv>) -> impl tera::Function {
    move |args: &FilterArgs| -> tera::Result<Value> {
        let name = match args.get("name") {
            Some(Value::String(name)) => name,
            Some(other) => {
                return Err(tera::Error::msg(format!(
                    "get_env: `name` must be a string, got {other}"
                )));
            }
            None => return Err(tera::Error::msg("get_env: missing the `name` argument")),
        };
        match env.get(name) {
            None => Err(tera::Error::msg(format!(
                "get_env(name={name:?}): {name} is not an allowed environment variable; \
                 the operator can allow it with {TERA_ENV_FLAG} {name}"
            ))),
            Some(Some(value)) => Ok(Value::String(value.clone())),
            Some(None) => args.get("default").cloned().ok_or_else(|| {
                tera::Error::msg(format!(
                    "get_env(name={name:?}): {name} is allowed but not set in kubelambda's environment"
                ))
            }),
        }
    }
}

fn register_filters(tera: &mut tera::Tera) {
    tera.register_filter("to_json", filter_to_json);
    tera.register_filter("to_yaml", filter_to_yaml);
    tera.register_filter("b64encode", filter_b64encode);
    tera.register_filter("b64decode", filter_b64decode);
    tera.register_filter("sha256", filter_sha256);
    tera.register_filter("indent", filter_indent);
    tera.register_filter("nindent", filter_nindent);
    tera.register_filter("quote", filter_quote);
}

fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn string_arg<'a>(value: &'a Value, filter: &str) -> tera::Result<&'a str> {
    value
        .as_str()
        .ok_or_else(|| tera::Error::msg(format!("filter `{filter}` needs a string, got {value}")))
}

/// `to_json` (compact) or `to_json(pretty=true)`.
fn filter_to_json(value: &Value, args: &FilterArgs) -> tera::Result<Value> {
    let pretty = args.get("pretty").and_then(Value::as_bool).unwrap_or(false);
    let text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    };
    text.map(Value::String)
        .map_err(|e| tera::Error::msg(format!("to_json: {e}")))
}

/// `to_yaml`: block YAML without the trailing newline, ready for `nindent`.
fn filter_to_yaml(value: &Value, _: &FilterArgs) -> tera::Result<Value> {
    Ok(Value::String(
        crate::yaml::to_yaml(value)
            .trim_end_matches('\n')
            .to_owned(),
    ))
}

fn filter_b64encode(value: &Value, _: &FilterArgs) -> tera::Result<Value> {
    Ok(Value::String(
        base64::engine::general_purpose::STANDARD.encode(as_text(value)),
    ))
}

fn filter_b64decode(value: &Value, _: &FilterArgs) -> tera::Result<Value> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(string_arg(value, "b64decode")?)
        .map_err(|e| tera::Error::msg(format!("b64decode: {e}")))?;
    String::from_utf8(bytes)
        .map(Value::String)
        .map_err(|_| tera::Error::msg("b64decode: the decoded bytes are not UTF-8 text"))
}

fn filter_sha256(value: &Value, _: &FilterArgs) -> tera::Result<Value> {
    let digest = sha2::Sha256::digest(as_text(value).as_bytes());
    Ok(Value::String(
        digest.iter().map(|b| format!("{b:02x}")).collect(),
    ))
}

/// The indentation prefix: `width=N` spaces (Helm's `indent N`) or an explicit `prefix`.
fn indent_prefix(args: &FilterArgs, filter: &str) -> tera::Result<String> {
    if let Some(prefix) = args.get("prefix") {
        return Ok(string_arg(prefix, filter)?.to_owned());
    }
    match args.get("width") {
        None => Ok("    ".into()),
        Some(w) => w.as_u64().map(|n| " ".repeat(n as usize)).ok_or_else(|| {
            tera::Error::msg(format!(
                "{filter}: `width` must be a non-negative integer, got {w}"
            ))
        }),
    }
}

fn indent_lines(text: &str, prefix: &str) -> String {
    text.split('\n')
        .map(|line| {
            if line.is_empty() {
                String::new()
            } else {
                format!("{prefix}{line}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `indent(width=N)`: Helm's `indent`: every non-empty line, the first included.
fn filter_indent(value: &Value, args: &FilterArgs) -> tera::Result<Value> {
    let prefix = indent_prefix(args, "indent")?;
    Ok(Value::String(indent_lines(&as_text(value), &prefix)))
}

/// `nindent(width=N)`: a newline, then `indent`.
fn filter_nindent(value: &Value, args: &FilterArgs) -> tera::Result<Value> {
    let prefix = indent_prefix(args, "nindent")?;
    Ok(Value::String(format!(
        "\n{}",
        indent_lines(&as_text(value), &prefix)
    )))
}

/// `quote`: a double-quoted, escaped string that YAML reads back as the same string.
fn filter_quote(value: &Value, _: &FilterArgs) -> tera::Result<Value> {
    Ok(Value::String(Value::String(as_text(value)).to_string()))
}
