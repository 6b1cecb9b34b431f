//! Go standard-library behaviour that Metacontroller, kubecfg's Jsonnet natives and go-yaml
//! expose to hooks and to the cluster, reproduced byte for byte.
//!
//! kubecfg implements its natives (`escapeStringRegex`, `manifestJson`, `resolveImage`, …) with
//! Go's `regexp`, `encoding/json` and go-containerregistry; Metacontroller records the
//! last-applied configuration with `json.Marshal` and merges list items by their `%v` keys;
//! controllers spell timeouts as Go durations. Hooks and clusters written for those observe the
//! exact bytes Go produces (e.g. a `manifestJson` result written into a ConfigMap, whose hash
//! then triggers a rollout), so "close enough" is not good enough. Everything here is a plain
//! function over strings or [`serde_json::Value`], unit-tested without a Jsonnet VM or cluster.
//!
//! One module per Go package:
//! * [`json`] — `encoding/json` output (one writer, compact and indented);
//! * [`float`] — float formatting for `encoding/json` and `strconv.FormatFloat(…, 'g', …)`;
//! * [`strconv`] — integer and float parsing with Go's base prefixes;
//! * [`fmt`] — `%v` of a decoded JSON value;
//! * [`duration`] — `time.ParseDuration`;
//! * [`regexp`] — `regexp.QuoteMeta`;
//! * [`image`] — go-containerregistry's image references.
//!
//! (`net.Listen` address syntax lives with the HTTP server in `crate::httpd`.)

pub mod duration;
pub mod float;
pub mod fmt;
pub mod image;
pub mod json;
pub mod regexp;
pub mod strconv;

pub use duration::{DurationError, parse_go_duration};
pub use float::format_float_go_json;
pub use image::{ImageNameError, normalize_image_name};
pub use json::{to_json_compact_go, to_json_indent_go};
pub use regexp::quote_meta;
