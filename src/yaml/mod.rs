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

//!
//! One submodule per job: [`split`] cuts the stream into documents, [`build`] turns parser events
//! into JSON values, [`resolve`] decides what a plain scalar means under YAML 1.1, [`emit`]
//! writes YAML. Go's number parsing and formatting come from [`crate::gocompat`].

mod build;
mod emit;
mod resolve;
mod split;
#[cfg(test)]
mod tests;

use std::fmt;

use serde_json::Value;
use thiserror::Error;

use build::parse_document;
pub use emit::{to_yaml, to_yaml_go};
use split::DocumentReader;

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

impl YamlError {
    /// Where the error is, to show the offending line.
    pub fn location(&self) -> Location {
        match self {
            YamlError::InvalidSeparator { at, .. }
            | YamlError::Syntax { at, .. }
            | YamlError::AliasBudgetExceeded { at, .. }
            | YamlError::AliasByteBudgetExceeded { at, .. }
            | YamlError::TooDeep { at, .. }
            | YamlError::RecursiveAlias { at }
            | YamlError::UnknownAnchor { at }
            | YamlError::InvalidKey { at, .. }
            | YamlError::InvalidMerge { at }
            | YamlError::TagMismatch { at, .. }
            | YamlError::InvalidBinary { at }
            | YamlError::NonFiniteNumber { at, .. } => *at,
        }
    }
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
