//! Parser events → JSON values with go-yaml v2 + sigs.k8s.io/yaml semantics: anchors, aliases
//! (with budgets), `<<` merges, key conversion, tags.

use std::collections::{HashMap, HashSet};

use base64::Engine as _;
use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::resolve::{CORE_TAG_PREFIX, Resolved, resolve};
use super::split::Chunk;
use super::{
    ALIAS_EXPANSION_BUDGET, ALIAS_EXPANSION_BYTE_BUDGET, Location, MAX_NESTING_DEPTH, YamlError,
};
use crate::gocompat::float::format_float_go_g32;

/// Decodes the first YAML document of a chunk.
pub(super) fn parse_document(chunk: &Chunk, document: usize) -> Result<Value, YamlError> {
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
