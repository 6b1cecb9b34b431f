//! Kubernetes label selectors (`matchLabels` + `matchExpressions`), parsed once and matched often.

use std::collections::BTreeMap;

pub mod text;

/// The API's label selector (`metav1.LabelSelector`), which every selector in a spec or a hook
/// answer is written as.
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement as Requirement,
};

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error(
        "matchExpressions[{index}] ({key}): unknown operator {operator:?} (In, NotIn, Exists, DoesNotExist)"
    )]
    UnknownOperator {
        index: usize,
        key: String,
        operator: String,
    },
    #[error("matchExpressions[{index}] ({key}): operator {operator} needs at least one value")]
    MissingValues {
        index: usize,
        key: String,
        operator: String,
    },
    #[error("matchExpressions[{index}] ({key}): operator {operator} takes no values")]
    UnexpectedValues {
        index: usize,
        key: String,
        operator: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

/// Whether no label value can satisfy both requirements on the same key.
fn excludes(a: &Op, b: &Op) -> bool {
    match (a, b) {
        (Op::In(x), Op::In(y)) => !x.iter().any(|v| y.contains(v)),
        (Op::In(_) | Op::Exists, Op::DoesNotExist) | (Op::DoesNotExist, Op::In(_) | Op::Exists) => {
            true
        }
        (Op::In(x), Op::NotIn(y)) | (Op::NotIn(y), Op::In(x)) => x.iter().all(|v| y.contains(v)),
        _ => false,
    }
}

/// A validated selector. An empty selector matches everything, as in Kubernetes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<(String, Op)>,
}

impl Selector {
    pub fn from_label_selector(sel: &LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            requirements.push((k.clone(), Op::In(vec![v.clone()])));
        }
        for (index, req) in sel.match_expressions.iter().flatten().enumerate() {
            let values = req.values.clone().unwrap_or_default();
            let op = match req.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(SelectorError::MissingValues {
                        index,
                        key: req.key.clone(),
                        operator: req.operator.clone(),
                    });
                }
                "In" => Op::In(values),
                "NotIn" => Op::NotIn(values),
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(SelectorError::UnexpectedValues {
                        index,
                        key: req.key.clone(),
                        operator: req.operator.clone(),
                    });
                }
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                other => {
                    return Err(SelectorError::UnknownOperator {
                        index,
                        key: req.key.clone(),
                        operator: other.to_owned(),
                    });
                }
            };
            requirements.push((req.key.clone(), op));
        }
        Ok(Self { requirements })
    }

    /// `key=value` for every pair, e.g. the generated `controller-uid` selector.
    pub fn equals(labels: &[(&str, &str)]) -> Self {
        Self {
            requirements: labels
                .iter()
                .map(|(k, v)| (k.to_string(), Op::In(vec![v.to_string()])))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|(key, op)| match op {
            Op::In(values) => labels.get(key).is_some_and(|v| values.contains(v)),
            Op::NotIn(values) => labels.get(key).is_none_or(|v| !values.contains(v)),
            Op::Exists => labels.contains_key(key),
            Op::DoesNotExist => !labels.contains_key(key),
        })
    }

    /// Whether some set of labels could match both selectors. Conservative: `false` only when a
    /// pair of requirements on one key rules the other out (`app=a` and `app=b`, `Exists` and
    /// `DoesNotExist`, `In (a)` and `NotIn (a, b)`).
    pub fn may_overlap(&self, other: &Selector) -> bool {
        !self.requirements.iter().any(|(key, a)| {
            other
                .requirements
                .iter()
                .any(|(other_key, b)| key == other_key && excludes(a, b))
        })
    }

    /// The selector in the API server's `labelSelector` query syntax.
    pub fn to_query(&self) -> String {
        self.requirements
            .iter()
            .map(|(key, op)| match op {
                Op::In(v) if v.len() == 1 => format!("{key}={}", v[0]),
                Op::In(v) => format!("{key} in ({})", v.join(",")),
                Op::NotIn(v) => format!("{key} notin ({})", v.join(",")),
                Op::Exists => key.clone(),
                Op::DoesNotExist => format!("!{key}"),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_query())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn overlap_is_ruled_out_only_by_contradicting_requirements() {
        let sel = |labels: &[(&str, &str)], exprs: serde_json::Value| {
            let mut s: LabelSelector =
                serde_json::from_value(serde_json::json!({"matchExpressions": exprs}))
                    .expect("selector");
            s.match_labels = Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            );
            Selector::from_label_selector(&s).expect("valid")
        };
        let none = serde_json::json!([]);
        let a = sel(&[("app", "a")], none.clone());
        let b = sel(&[("app", "b")], none.clone());
        let any = sel(&[], none.clone());
        let team = sel(&[("team", "x")], none.clone());
        assert!(!a.may_overlap(&b));
        assert!(a.may_overlap(&any) && any.may_overlap(&a));
        assert!(a.may_overlap(&team), "different keys can both hold");
        assert!(a.may_overlap(&a));
        let no_app = sel(
            &[],
            serde_json::json!([{"key": "app", "operator": "DoesNotExist"}]),
        );
        assert!(!a.may_overlap(&no_app) && !no_app.may_overlap(&a));
        let not_a = sel(
            &[],
            serde_json::json!([{"key": "app", "operator": "NotIn", "values": ["a", "c"]}]),
        );
        assert!(!a.may_overlap(&not_a));
        assert!(b.may_overlap(&not_a));
        let in_ab = sel(
            &[],
            serde_json::json!([{"key": "app", "operator": "In", "values": ["a", "b"]}]),
        );
        assert!(in_ab.may_overlap(&b));
    }

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(json: serde_json::Value) -> Result<Selector, SelectorError> {
        let sel: LabelSelector = serde_json::from_value(json).expect("selector json");
        Selector::from_label_selector(&sel)
    }

    #[test]
    fn match_labels_and_expressions_all_must_hold() {
        let sel = parse(serde_json::json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "legacy", "operator": "DoesNotExist"},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
                {"key": "team", "operator": "Exists"}
            ]
        }))
        .expect("valid");
        assert!(sel.matches(&labels(&[("app", "web"), ("tier", "a"), ("team", "x")])));
        assert!(!sel.matches(&labels(&[("app", "web"), ("tier", "c"), ("team", "x")])));
        assert!(!sel.matches(&labels(&[
            ("app", "web"),
            ("tier", "a"),
            ("team", "x"),
            ("legacy", "1")
        ])));
        assert!(!sel.matches(&labels(&[
            ("app", "web"),
            ("tier", "a"),
            ("team", "x"),
            ("env", "prod")
        ])));
        assert!(!sel.matches(&labels(&[("app", "web"), ("tier", "a")])));
        assert_eq!(
            sel.to_query(),
            "app=web,tier in (a,b),!legacy,env notin (prod),team"
        );
    }

    #[test]
    fn empty_selector_matches_everything() {
        let sel = parse(serde_json::json!({})).expect("valid");
        assert!(sel.is_empty());
        assert!(sel.matches(&labels(&[])));
    }

    #[test]
    fn bad_expressions_are_named() {
        let err =
            parse(serde_json::json!({"matchExpressions": [{"key": "a", "operator": "Like"}]}))
                .expect_err("unknown op");
        assert_eq!(
            err.to_string(),
            "matchExpressions[0] (a): unknown operator \"Like\" (In, NotIn, Exists, DoesNotExist)"
        );
        let err = parse(serde_json::json!({"matchExpressions": [{"key": "a", "operator": "In"}]}))
            .expect_err("no values");
        assert_eq!(
            err.to_string(),
            "matchExpressions[0] (a): operator In needs at least one value"
        );
        let err = parse(serde_json::json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}))
            .expect_err("values");
        assert_eq!(
            err.to_string(),
            "matchExpressions[0] (a): operator Exists takes no values"
        );
    }
}
