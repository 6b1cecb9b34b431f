//! YAML exactly as kubecfg's Go natives read and write it.
//!
//! kubecfg's `parseYaml` runs `k8s.io/apimachinery`'s `NewYAMLToJSONDecoder`, which splits the
//! stream on `---` lines by hand and decodes every chunk with sigs.k8s.io/yaml (go-yaml v2 plus a
//! JSON round trip). Its `manifestYaml` is `ghodss/yaml.Marshal` (JSON round trip, then the
//! go-yaml v2 emitter). Hooks written for kubecfg depend on the YAML 1.1 details of both: `on:`
//! is the key `"true"`, `version: 1.10` is the number `1.1`, `"yes"` must be quoted on output, an
//! 81st column folds a long string, and so on. Off-the-shelf Rust YAML crates follow YAML 1.2 and
//! emit differently, so this module keeps an event parser (`yaml-rust2`, which reports the scalar
//! style) but does the k8s document splitting, the go-yaml v2 resolution, the sigs.k8s.io key
//! conversion and the go-yaml v2/libyaml emitter itself.
//!
//! Both directions were checked against the Go implementation (apimachinery v0.33 decoder,
//! sigs.k8s.io/yaml v1.5, ghodss/yaml + gopkg.in/yaml.v2 v2.4) on hand-written and randomly
//! generated inputs. Known differences, all outside what hooks normally produce:
//!
//! Parsing:
//! * Syntax acceptance is yaml-rust2's YAML 1.2 grammar rather than libyaml's: raw U+0085,
//!   U+2028 and U+2029 are content here but line breaks for go-yaml; `\/` is a valid escape here
//!   only; `key:<TAB>value` is rejected here but accepted by go-yaml, and a document holding only
//!   `...` the reverse. Error messages are this module's own (with document, line and column).
//! * go-yaml limits aliasing with a ratio heuristic ("document contains excessive aliasing");
//!   here fixed budgets ([`ALIAS_EXPANSION_BUDGET`] nodes, [`ALIAS_EXPANSION_BYTE_BUDGET`] bytes
//!   of strings per document) apply, and nesting is limited to [`MAX_NESTING_DEPTH`] levels
//!   (go-yaml allows 10000; yaml-rust2 itself stops flow collections at 256) to keep recursion
//!   bounded.
//! * When two keys of one mapping convert to the same string (`1:` and `"1":`) Go keeps one at
//!   random (map iteration order); here the later one wins.
//!
//! Emitting:
//! * Go's JSON→YAML step re-reads the JSON text with go-yaml, which fails ("control characters
//!   are not allowed") on strings containing U+007F, C1 controls other than U+0085, U+FFFE or
//!   U+FFFF, on keys containing U+0085, and on keys longer than 1024 characters. Here such values
//!   are emitted (escaped, or as `? key` complex keys) instead of failing.
//! * Key sorting treats only ASCII `0-9` as digits and uses Unicode `Alphabetic` for Go's
//!   `unicode.IsLetter`; the two differ only for unusual non-ASCII keys.
//! * Integers held as `i64`/`u64` are printed exactly; Go would see them as `float64`.

use std::collections::{HashMap, HashSet};
use std::fmt;

use base64::Engine as _;
use serde_json::{Map, Number, Value};
use thiserror::Error;
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::gocompat::{format_float_go_g32, format_float_go_g64, format_float_go_json};

/// Maximum number of nodes that alias expansion (`*anchor`, including `<<: *anchor` merges) may
/// materialise in one document. A "billion laughs" document needs only a few hundred bytes to
/// describe 10^9 nodes; a fixed budget stops it long before memory runs out while leaving room
/// for any realistic use of anchors.
pub const ALIAS_EXPANSION_BUDGET: usize = 1_000_000;

/// Maximum bytes of strings (keys and values) that alias expansion may copy in one document: a
/// node budget alone would let a million aliases of one large string through.
pub const ALIAS_EXPANSION_BYTE_BUDGET: usize = 64 << 20;

/// Maximum nesting of sequences and mappings. Values are converted and dropped recursively, so
/// the depth is bounded to stay well inside a 2 MiB worker-thread stack.
pub const MAX_NESTING_DEPTH: usize = 1_000;

/// Where in a multi-document stream something went wrong. Lines and columns are 1-based and
/// count from the start of the whole input; documents are counted the way the k8s decoder cuts
/// them (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub document: usize,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "document {}, line {}, column {}",
            self.document, self.line, self.column
        )
    }
}

/// Why [`parse_stream`] rejected its input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum YamlError {
    /// A line starts with `---` followed by something other than spaces or a comment. The k8s
    /// decoder rejects these (`invalid Yaml document separator: …`) instead of treating them as
    /// document starts with content.
    #[error("{at}: invalid YAML document separator: {found}")]
    InvalidSeparator { at: Location, found: String },
    /// The YAML parser rejected the document.
    #[error("{at}: {message}")]
    Syntax { at: Location, message: String },
    /// Alias expansion would create more than `limit` nodes in one document.
    #[error("{at}: alias expansion exceeds the budget of {limit} nodes")]
    AliasBudgetExceeded { at: Location, limit: usize },
    /// Alias expansion would copy more than `limit` bytes of strings in one document.
    #[error("{at}: alias expansion exceeds the budget of {limit} bytes of strings")]
    AliasByteBudgetExceeded { at: Location, limit: usize },
    /// Sequences and mappings are nested deeper than `limit`.
    #[error("{at}: nesting exceeds the maximum depth of {limit}")]
    TooDeep { at: Location, limit: usize },
    /// An alias refers to the node that contains it (`&a [*a]`).
    #[error("{at}: anchor value contains itself")]
    RecursiveAlias { at: Location },
    /// An alias refers to an anchor that was never defined.
    #[error("{at}: unknown anchor referenced")]
    UnknownAnchor { at: Location },
    /// A mapping key that cannot become a JSON object key (null, a sequence, a mapping, or an
    /// integer above `i64::MAX`), as in go-yaml/sigs.k8s.io/yaml.
    #[error("{at}: unsupported map key: {reason}")]
    InvalidKey { at: Location, reason: String },
    /// `<<` was given something other than a mapping or a sequence of mappings.
    #[error("{at}: map merge requires map or sequence of maps as the value")]
    InvalidMerge { at: Location },
    /// An explicit core tag does not fit the scalar (`!!int abc`).
    #[error("{at}: cannot decode {found} `{value}` as a {tag}")]
    TagMismatch {
        at: Location,
        value: String,
        found: String,
        tag: String,
    },
    /// A `!!binary` scalar is not valid base64.
    #[error("{at}: !!binary value contains invalid base64 data")]
    InvalidBinary { at: Location },
    /// `.inf`/`.nan` (or a tagged float that overflows): JSON, and so Go's decoder, cannot
    /// represent it (`json: unsupported value: +Inf`).
    #[error("{at}: JSON cannot represent the number {value}")]
    NonFiniteNumber { at: Location, value: String },
}

/// kubecfg's `parseYaml`: every document of a YAML stream, as JSON values.
///
/// Documents are cut exactly like `k8s.io/apimachinery/pkg/util/yaml.YAMLReader`: on lines that
/// start with `---` (followed only by spaces or a comment; anything else is an error). A chunk
/// that is empty is skipped, but a chunk holding only comments or blank lines (or a lone `---`
/// line at the start) yields `null`:
///
/// * `""` → `[]`; `"\n"` → `[null]`; `"a\n---"` → `["a"]`; `"a\n---\n---\nb"` → `["a", "b"]`;
///   `"a\n---\n# c\n---\nb"` → `["a", null, "b"]`.
///
/// Each chunk is decoded like go-yaml v2 into `interface{}` followed by sigs.k8s.io/yaml's JSON
/// conversion: YAML 1.1 scalars (`yes`/`No`/`on`/`OFF`/`y`… are booleans, `~`/`null`/empty are
/// null, `0x1F`, `0o17`, `017`, `0b101`, `1_000` are integers, `.5`, `1e3`, `09` are floats,
/// timestamps stay strings), every number becomes an `f64`, keys become strings (`true`, `16`,
/// floats via Go's 32-bit `%g`), `<<` merges are applied in go-yaml v2 order, and only the first
/// YAML document inside a chunk counts (text after a `...` marker is ignored).
pub fn parse_stream(text: &str) -> Result<Vec<Value>, YamlError> {
    let mut reader = DocumentReader::new(text);
    let mut documents = Vec::new();
    while let Some(chunk) = reader.next_chunk()? {
        documents.push(parse_document(&chunk, documents.len() + 1)?);
    }
    Ok(documents)
}

/// One document as cut by the k8s reader: its lines, each terminated by `\n`.
struct Chunk {
    text: String,
    first_line: usize,
}

/// The k8s `YAMLReader` over Go's `bufio.Reader.ReadLine`: lines end at `\n`, a `\r` right
/// before it is dropped, and a final line without newline still counts.
struct DocumentReader<'a> {
    rest: &'a str,
    line_number: usize,
    documents: usize,
}

impl<'a> DocumentReader<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            rest: text,
            line_number: 0,
            documents: 0,
        }
    }

    fn next_line(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        self.line_number += 1;
        match self.rest.find('\n') {
            Some(end) => {
                let line = &self.rest[..end];
                self.rest = &self.rest[end + 1..];
                Some(line.strip_suffix('\r').unwrap_or(line))
            }
            None => {
                let line = self.rest;
                self.rest = "";
                Some(line)
            }
        }
    }

    fn next_chunk(&mut self) -> Result<Option<Chunk>, YamlError> {
        let mut text = String::new();
        let mut first_line = 0;
        while let Some(line) = self.next_line() {
            if let Some(after) = line.strip_prefix("---") {
                let found = after.trim();
                if !found.is_empty() && !found.starts_with('#') {
                    return Err(YamlError::InvalidSeparator {
                        at: Location {
                            document: self.documents + 1,
                            line: self.line_number,
                            column: 1,
                        },
                        found: found.to_string(),
                    });
                }
                if !text.is_empty() {
                    self.documents += 1;
                    return Ok(Some(Chunk { text, first_line }));
                }
                // A separator with nothing buffered yet is kept as the chunk's first line, so
                // `---` alone (or `---` followed by comments) decodes as an explicit null
                // document, exactly as in the k8s reader.
            }
            if text.is_empty() {
                first_line = self.line_number;
            }
            text.push_str(line);
            text.push('\n');
        }
        if text.is_empty() {
            return Ok(None);
        }
        self.documents += 1;
        Ok(Some(Chunk { text, first_line }))
    }
}

/// Decodes the first YAML document of a chunk.
fn parse_document(chunk: &Chunk, document: usize) -> Result<Value, YamlError> {
    let mut builder = Builder {
        document,
        first_line: chunk.first_line,
        stack: Vec::new(),
        anchors: HashMap::new(),
        open_anchors: HashSet::new(),
        alias_nodes: 0,
        alias_bytes: 0,
        root: None,
    };
    // libyaml skips a byte-order mark at the start of its input, i.e. of every chunk.
    let text = chunk.text.strip_prefix('\u{FEFF}').unwrap_or(&chunk.text);
    let mut parser = Parser::new_from_str(text);
    loop {
        let (event, marker) = parser.next_token().map_err(|error| YamlError::Syntax {
            at: builder.location(error.marker()),
            message: error.info().to_string(),
        })?;
        let at = builder.location(&marker);
        match event {
            Event::Nothing | Event::StreamStart | Event::DocumentStart => {}
            // go-yaml's Unmarshal decodes one document and never looks further.
            Event::DocumentEnd | Event::StreamEnd => {
                return Ok(builder.root.unwrap_or(Value::Null));
            }
            Event::Scalar(text, style, anchor, tag) => {
                let node = scalar_node(text, style, tag.as_ref(), at)?;
                builder.finish(node, anchor)?;
            }
            Event::Alias(anchor) => builder.alias(anchor, at)?,
            Event::SequenceStart(anchor, _) => {
                builder.open(FrameKind::Sequence(Vec::new()), anchor, at)?
            }
            Event::MappingStart(anchor, _) => builder.open(
                FrameKind::Mapping {
                    map: Map::new(),
                    key: None,
                },
                anchor,
                at,
            )?,
            Event::SequenceEnd | Event::MappingEnd => builder.close()?,
        }
    }
}

/// A completed YAML node on its way into its parent.
struct Node {
    value: Value,
    /// The JSON object key this node becomes when used as a mapping key.
    key: Result<String, String>,
    /// A plain `<<` scalar (or one tagged `!!merge`): go-yaml's merge key.
    merge_key: bool,
    /// The node was written as `*alias` (go-yaml only merges aliases of mappings).
    alias: bool,
    /// `.inf`/`.nan`: fine as a mapping key (`".inf"`), an error anywhere else.
    non_finite: Option<String>,
    at: Location,
}

/// What an anchor stands for.
struct Anchored {
    value: Value,
    /// Nodes and string bytes in `value`: what one alias of it costs.
    nodes: usize,
    bytes: usize,
    key: Result<String, String>,
    non_finite: Option<String>,
}

enum FrameKind {
    Sequence(Vec<Value>),
    Mapping {
        map: Map<String, Value>,
        key: Option<PendingKey>,
    },
}

enum PendingKey {
    Merge,
    Key(String),
}

struct Frame {
    kind: FrameKind,
    anchor: usize,
    at: Location,
}

/// Turns parser events into a JSON value with go-yaml v2 + sigs.k8s.io/yaml semantics.
struct Builder {
    document: usize,
    first_line: usize,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Anchored>,
    /// Anchors of the collections still being built: an alias to one of them is recursive.
    open_anchors: HashSet<usize>,
    alias_nodes: usize,
    alias_bytes: usize,
    root: Option<Value>,
}

impl Builder {
    fn location(&self, marker: &Marker) -> Location {
        Location {
            document: self.document,
            line: self.first_line + marker.line().saturating_sub(1),
            column: marker.col() + 1,
        }
    }

    fn open(&mut self, kind: FrameKind, anchor: usize, at: Location) -> Result<(), YamlError> {
        if self.stack.len() >= MAX_NESTING_DEPTH {
            return Err(YamlError::TooDeep {
                at,
                limit: MAX_NESTING_DEPTH,
            });
        }
        if anchor != 0 {
            self.open_anchors.insert(anchor);
        }
        self.stack.push(Frame { kind, anchor, at });
        Ok(())
    }

    fn close(&mut self) -> Result<(), YamlError> {
        let Some(frame) = self.stack.pop() else {
            return Ok(());
        };
        self.open_anchors.remove(&frame.anchor);
        let (value, reason) = match frame.kind {
            FrameKind::Sequence(items) => (Value::Array(items), "a sequence"),
            FrameKind::Mapping { map, .. } => (Value::Object(map), "a mapping"),
        };
        let node = Node {
            value,
            key: Err(format!("invalid map key: {reason}")),
            merge_key: false,
            alias: false,
            non_finite: None,
            at: frame.at,
        };
        self.finish(node, frame.anchor)
    }

    fn alias(&mut self, anchor: usize, at: Location) -> Result<(), YamlError> {
        if self.open_anchors.contains(&anchor) {
            return Err(YamlError::RecursiveAlias { at });
        }
        let Some(anchored) = self.anchors.get(&anchor) else {
            return Err(YamlError::UnknownAnchor { at });
        };
        self.alias_nodes = self.alias_nodes.saturating_add(anchored.nodes);
        if self.alias_nodes > ALIAS_EXPANSION_BUDGET {
            return Err(YamlError::AliasBudgetExceeded {
                at,
                limit: ALIAS_EXPANSION_BUDGET,
            });
        }
        self.alias_bytes = self.alias_bytes.saturating_add(anchored.bytes);
        if self.alias_bytes > ALIAS_EXPANSION_BYTE_BUDGET {
            return Err(YamlError::AliasByteBudgetExceeded {
                at,
                limit: ALIAS_EXPANSION_BYTE_BUDGET,
            });
        }
        let node = Node {
            value: anchored.value.clone(),
            key: anchored.key.clone(),
            merge_key: false,
            alias: true,
            non_finite: anchored.non_finite.clone(),
            at,
        };
        self.finish(node, 0)
    }

    /// Registers the node's anchor and attaches the node to its parent (or makes it the root).
    fn finish(&mut self, node: Node, anchor: usize) -> Result<(), YamlError> {
        if anchor != 0 {
            let (nodes, bytes) = measure(&node.value);
            self.anchors.insert(
                anchor,
                Anchored {
                    value: node.value.clone(),
                    nodes,
                    bytes,
                    key: node.key.clone(),
                    non_finite: node.non_finite.clone(),
                },
            );
        }
        let used_as_key = matches!(
            self.stack.last(),
            Some(Frame {
                kind: FrameKind::Mapping { key: None, .. },
                ..
            })
        );
        if let (false, Some(value)) = (used_as_key, &node.non_finite) {
            return Err(YamlError::NonFiniteNumber {
                at: node.at,
                value: value.clone(),
            });
        }
        let Some(parent) = self.stack.last_mut() else {
            self.root = Some(node.value);
            return Ok(());
        };
        match &mut parent.kind {
            FrameKind::Sequence(items) => items.push(node.value),
            FrameKind::Mapping { map, key } => match key.take() {
                None if node.merge_key => *key = Some(PendingKey::Merge),
                None => match node.key {
                    Ok(text) => *key = Some(PendingKey::Key(text)),
                    Err(reason) => {
                        return Err(YamlError::InvalidKey {
                            at: node.at,
                            reason,
                        });
                    }
                },
                // Like go-yaml v2 (and unlike v3) entries are applied in order, so a later key
                // or merge overrides an earlier one.
                Some(PendingKey::Key(text)) => {
                    map.insert(text, node.value);
                }
                Some(PendingKey::Merge) => merge_into(map, node)?,
            },
        }
        Ok(())
    }
}

/// Nodes and string bytes (keys included) of a value.
fn measure(value: &Value) -> (usize, usize) {
    match value {
        Value::String(s) => (1, s.len()),
        Value::Array(items) => items.iter().fold((1, 0), |(nodes, bytes), item| {
            let (n, b) = measure(item);
            (nodes + n, bytes + b)
        }),
        Value::Object(map) => map.iter().fold((1, 0), |(nodes, bytes), (key, item)| {
            let (n, b) = measure(item);
            (nodes + n, bytes + key.len() + b)
        }),
        _ => (1, 0),
    }
}

/// go-yaml v2's `<<`: a mapping (or an alias of one) is merged as is; a sequence of mappings is
/// merged last to first so that earlier mappings win.
fn merge_into(map: &mut Map<String, Value>, node: Node) -> Result<(), YamlError> {
    let at = node.at;
    match node.value {
        Value::Object(source) => map.extend(source),
        Value::Array(items) if !node.alias => {
            if !items.iter().all(Value::is_object) {
                return Err(YamlError::InvalidMerge { at });
            }
            for item in items.into_iter().rev() {
                if let Value::Object(source) = item {
                    map.extend(source);
                }
            }
        }
        _ => return Err(YamlError::InvalidMerge { at }),
    }
    Ok(())
}

const CORE_TAG_PREFIX: &str = "tag:yaml.org,2002:";

/// A scalar resolved like go-yaml v2's `resolve`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Resolved {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str,
    /// Looks like a YAML timestamp; go-yaml hands these to `interface{}` as the original string.
    Timestamp,
}

impl Resolved {
    fn short_tag(self) -> &'static str {
        match self {
            Resolved::Null => "!!null",
            Resolved::Bool(_) => "!!bool",
            Resolved::Int(_) | Resolved::Uint(_) => "!!int",
            Resolved::Float(_) => "!!float",
            Resolved::Str => "!!str",
            Resolved::Timestamp => "!!timestamp",
        }
    }
}

fn scalar_node(
    text: String,
    style: TScalarStyle,
    tag: Option<&Tag>,
    at: Location,
) -> Result<Node, YamlError> {
    let tag = tag.map(|tag| format!("{}{}", tag.handle, tag.suffix));
    let plain = style == TScalarStyle::Plain;
    // go-yaml's "implicit" flag: untagged plain scalars and the non-specific `!` tag.
    let implicit = (tag.is_none() && plain) || tag.as_deref() == Some("!");
    let merge_key = text == "<<" && (implicit || tag.as_deref() == Some("tag:yaml.org,2002:merge"));
    let resolved = match tag.as_deref() {
        None if !plain => Resolved::Str,
        None => resolve(&text, true),
        Some(full) => match full.strip_prefix(CORE_TAG_PREFIX) {
            Some("binary") => {
                let decoded = decode_binary(&text).ok_or(YamlError::InvalidBinary { at })?;
                let key = Ok(decoded.clone());
                return Ok(Node {
                    value: Value::String(decoded),
                    key,
                    merge_key: false,
                    alias: false,
                    non_finite: None,
                    at,
                });
            }
            Some(kind @ ("bool" | "int" | "float" | "null" | "timestamp")) => {
                let resolved = resolve(&text, kind == "timestamp");
                match (kind, resolved) {
                    ("bool", Resolved::Bool(_))
                    | ("int", Resolved::Int(_) | Resolved::Uint(_))
                    | ("float", Resolved::Float(_))
                    | ("null", Resolved::Null)
                    | ("timestamp", Resolved::Timestamp) => resolved,
                    // go-yaml converts an int to float64 for `!!float`, but not a uint64.
                    ("float", Resolved::Int(i)) => Resolved::Float(i as f64),
                    _ => {
                        return Err(YamlError::TagMismatch {
                            at,
                            value: text,
                            found: resolved.short_tag().to_string(),
                            tag: format!("!!{kind}"),
                        });
                    }
                }
            }
            // `!!str`, local tags and unknown tags: the text as a string.
            _ => Resolved::Str,
        },
    };
    let key = match resolved {
        Resolved::Null => Err("unsupported map key of type <nil>".to_string()),
        Resolved::Bool(b) => Ok(b.to_string()),
        Resolved::Int(i) => Ok(i.to_string()),
        Resolved::Uint(_) => Err("unsupported map key of type uint64".to_string()),
        Resolved::Float(f) => Ok(match format_float_go_g32(f).as_str() {
            "+Inf" => ".inf".to_string(),
            "-Inf" => "-.inf".to_string(),
            "NaN" => ".nan".to_string(),
            other => other.to_string(),
        }),
        Resolved::Str | Resolved::Timestamp => Ok(text.clone()),
    };
    let mut non_finite = None;
    let value = match resolved {
        Resolved::Null => Value::Null,
        Resolved::Bool(b) => Value::Bool(b),
        Resolved::Int(i) => json_number(i as f64),
        Resolved::Uint(u) => json_number(u as f64),
        Resolved::Float(f) if f.is_finite() => json_number(f),
        Resolved::Float(_) => {
            non_finite = Some(text);
            Value::Null
        }
        Resolved::Str | Resolved::Timestamp => Value::String(text),
    };
    Ok(Node {
        value,
        key,
        merge_key,
        alias: false,
        non_finite,
        at,
    })
}

/// Every number Go hands back from `json.Unmarshal` is a `float64`.
fn json_number(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// Go's `base64.StdEncoding.DecodeString` (padding required, line breaks ignored, trailing bits
/// tolerated), then the bytes as a string the way `encoding/json` writes them: every byte of an
/// invalid UTF-8 sequence becomes U+FFFD.
fn decode_binary(text: &str) -> Option<String> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const GO_STD_ENCODING: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
    );
    let cleaned: String = text.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
    let bytes = GO_STD_ENCODING.decode(cleaned).ok()?;
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for _ in chunk.invalid() {
            out.push('\u{FFFD}');
        }
    }
    Some(out)
}

/// go-yaml v2's `resolve` for an untagged plain scalar (`timestamps` also for `!!timestamp`).
///
/// The first byte picks the candidates: sign or digit → timestamp, int (Go `ParseInt`/`ParseUint`
/// with base prefix detection, after removing `_`), then float; `.` → the special floats or Go
/// `ParseFloat`; `y n t f o ~` (either case) → the YAML 1.1 boolean/null words only; anything
/// else is a string. Sexagesimal numbers (`1:20`) are strings, as in go-yaml.
fn resolve(s: &str, timestamps: bool) -> Resolved {
    let hint = match s.as_bytes().first() {
        None => b'N',
        Some(b'+' | b'-') => b'S',
        Some(b'0'..=b'9') => b'D',
        Some(b'y' | b'Y' | b'n' | b'N' | b't' | b'T' | b'f' | b'F' | b'o' | b'O' | b'~') => b'M',
        Some(b'.') => b'.',
        Some(_) => return Resolved::Str,
    };
    match s {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Resolved::Bool(true);
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Resolved::Bool(false);
        }
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Resolved::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Resolved::Float(f64::NEG_INFINITY),
        _ => {}
    }
    match hint {
        b'.' => go_parse_decimal_float(s).map_or(Resolved::Str, Resolved::Float),
        b'D' | b'S' => {
            if timestamps && is_go_yaml_timestamp(s) {
                return Resolved::Timestamp;
            }
            let plain = s.replace('_', "");
            if let Some(i) = go_parse_int(&plain) {
                Resolved::Int(i)
            } else if let Some(u) = go_parse_uint(&plain) {
                Resolved::Uint(u)
            } else if is_yaml_style_float(&plain) {
                parse_finite_f64(&plain).map_or(Resolved::Str, Resolved::Float)
            } else {
                Resolved::Str
            }
        }
        _ => Resolved::Str,
    }
}

/// Go `strconv.ParseUint(s, 0, 64)` on a string without underscores: `0x`/`0o`/`0b` prefixes
/// (either case, only with at least one more character), a leading `0` means octal.
fn go_parse_uint(s: &str) -> Option<u64> {
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return None;
    }
    let (base, digits) = if bytes[0] == b'0' {
        match bytes.get(1).map(u8::to_ascii_lowercase) {
            Some(b'b') if bytes.len() >= 3 => (2, &s[2..]),
            Some(b'o') if bytes.len() >= 3 => (8, &s[2..]),
            Some(b'x') if bytes.len() >= 3 => (16, &s[2..]),
            _ => (8, &s[1..]),
        }
    } else {
        (10, s)
    };
    let mut value: u64 = 0;
    for c in digits.chars() {
        let digit = c.to_digit(base)?;
        value = value
            .checked_mul(u64::from(base))?
            .checked_add(u64::from(digit))?;
    }
    Some(value)
}

/// Go `strconv.ParseInt(s, 0, 64)`: an optional sign, then [`go_parse_uint`] within `i64` range.
fn go_parse_int(s: &str) -> Option<i64> {
    let (negative, magnitude) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let magnitude = go_parse_uint(magnitude)?;
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// go-yaml's `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// A decimal float that Go's `ParseFloat` accepts without a range error.
fn parse_finite_f64(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Go `strconv.ParseFloat` for the `.`-prefixed scalars go-yaml hands it: `.digits` with an
/// optional exponent, `_` allowed only between two digits.
fn go_parse_decimal_float(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'_' {
            let before = i.checked_sub(1).and_then(|j| b.get(j));
            let after = b.get(i + 1);
            if !before.is_some_and(u8::is_ascii_digit) || !after.is_some_and(u8::is_ascii_digit) {
                return None;
            }
        }
    }
    let plain = s.replace('_', "");
    if !is_yaml_style_float(&plain) {
        return None;
    }
    parse_finite_f64(&plain)
}

/// go-yaml v2's `parseTimestamp`: four digits and a dash, then Go `time.Parse` with one of
/// `2006-1-2T15:4:5.999999999Z07:00` (also with `t`), `2006-1-2 15:4:5.999999999`, `2006-1-2`.
/// Only used to decide what must be quoted (timestamps decode to their own text anyway).
fn is_go_yaml_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 5 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return false;
    }
    let year = b[..4]
        .iter()
        .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
    let mut i = 5;
    // Go's getnum for a non-zero-padded field: one or two digits.
    let number = |i: &mut usize| -> Option<u32> {
        let first = *b.get(*i).filter(|c| c.is_ascii_digit())?;
        *i += 1;
        let mut value = u32::from(first - b'0');
        if let Some(&second) = b.get(*i).filter(|c| c.is_ascii_digit()) {
            *i += 1;
            value = value * 10 + u32::from(second - b'0');
        }
        Some(value)
    };
    let Some(month) = number(&mut i) else {
        return false;
    };
    if b.get(i) != Some(&b'-') {
        return false;
    }
    i += 1;
    let Some(day) = number(&mut i) else {
        return false;
    };
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(month, year) {
        return false;
    }
    if i == b.len() {
        return true;
    }
    // The time part: `T`/`t` (then a mandatory zone) or one or more spaces (no zone).
    let with_zone = match b[i] {
        b'T' | b't' => {
            i += 1;
            true
        }
        b' ' => {
            while b.get(i) == Some(&b' ') {
                i += 1;
            }
            false
        }
        _ => return false,
    };
    let Some(hour) = number(&mut i) else {
        return false;
    };
    if b.get(i) != Some(&b':') {
        return false;
    }
    i += 1;
    let Some(minute) = number(&mut i) else {
        return false;
    };
    if b.get(i) != Some(&b':') {
        return false;
    }
    i += 1;
    let Some(second) = number(&mut i) else {
        return false;
    };
    if hour >= 24 || minute >= 60 || second >= 60 {
        return false;
    }
    if matches!(b.get(i), Some(b'.' | b',')) && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    if !with_zone {
        return i == b.len();
    }
    match b.get(i) {
        Some(b'Z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            let zone = &b[i + 1..];
            zone.len() == 5
                && zone[2] == b':'
                && [0, 1, 3, 4].iter().all(|&k| zone[k].is_ascii_digit())
                && (u32::from(zone[0] - b'0') * 10 + u32::from(zone[1] - b'0')) <= 24
                && (u32::from(zone[3] - b'0') * 10 + u32::from(zone[4] - b'0')) <= 60
        }
        _ => false,
    }
}

fn days_in_month(month: u32, year: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// go-yaml's sexagesimal check (`190:20:30`): such strings are quoted on output for the sake of
/// YAML 1.1 readers even though go-yaml itself reads them as strings.
fn is_base60_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    if !b.get(i).is_some_and(u8::is_ascii_digit) || !s.contains(':') {
        return false;
    }
    while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
        i += 1;
    }
    let mut groups = 0;
    while b.get(i) == Some(&b':') {
        i += 1;
        // `[0-5]?[0-9]`
        match (b.get(i), b.get(i + 1)) {
            (Some(b'0'..=b'5'), Some(b'0'..=b'9')) => i += 2,
            (Some(b'0'..=b'9'), _) => i += 1,
            _ => return false,
        }
        groups += 1;
    }
    if groups == 0 {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
            i += 1;
        }
    }
    i == b.len()
}

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
    if let Some(i) = go_parse_int(&json) {
        i.to_string()
    } else if let Some(u) = go_parse_uint(&json) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        assert!(
            matches!(parse_err("----"), YamlError::InvalidSeparator { found, .. } if found == "-")
        );
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
                31.0, -31.0, 15.0, 15.0, 15.0, 9.0, 1000.0, 5.0, -5.0, 12.0, 0.0, -0.0, 0.5, 0.5,
                -0.5, 1.0, 1000.0, 0.001, 0.1
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
            parse_one(
                "[9223372036854775807, 18446744073709551615, 123456789012345678901234567890]"
            ),
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
            to_yaml_go(
                &json!({"a": [{"b": 1, "c": [1, [2, 3], []]}, {}], "d": {"e": {"f": null}}})
            ),
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
}
