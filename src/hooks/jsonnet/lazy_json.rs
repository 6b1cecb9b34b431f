//! The request as a Jsonnet value that is converted only where the hook looks.
//!
//! A sync request carries the parent and every child in full, and a typical hook reads a handful of
//! fields from it. Turning the whole document into jrsonnet objects up front (interning every key
//! and string, building a field map per object) was the largest single cost of a small hook's
//! evaluation. Here the body is parsed once into a plain, immutable tree ([`Json`]); an object or
//! array becomes a jrsonnet value whose fields and elements are converted when first read. jrsonnet
//! caches each field an object returns, so a field is converted at most once per object.
//!
//! The result behaves like the eager conversion everywhere a hook can tell: same fields, same
//! values, same order when manifested, `==`, `+`, `super`, `std.objectFields` and the rest (the
//! tests compare the two).

use std::fmt;
use std::ops::ControlFlow;
use std::rc::Rc;

use jrsonnet_evaluator::{
    EnumFields, EnumFieldsHandler, FieldVisibility, GetFor, HasFieldIncludeHidden, IStr, NumValue,
    ObjValue, ObjectCore, Result, SupThis, Thunk, Val, Visibility,
    ordering::{FieldIndex, SuperDepth},
    val::ArrayLike,
};
use jrsonnet_gcmodule::Trace;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A parsed JSON document. Containers are reference-counted so that lazy values can share them.
#[derive(Debug, Clone)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(Box<str>),
    Arr(Rc<[Json]>),
    Obj(Rc<JsonObject>),
}

/// An object's fields, sorted by key with no duplicates (the last one wins, as in Go's
/// encoding/json and serde_json), so a field is found by binary search.
#[derive(Debug)]
pub struct JsonObject {
    fields: Vec<(Box<str>, Json)>,
}

impl JsonObject {
    fn new(mut fields: Vec<(Box<str>, Json)>) -> Self {
        // Reversed, then stably sorted: of several equal keys the last one comes first, and
        // `dedup_by` keeps the first of each run.
        fields.reverse();
        fields.sort_by(|(a, _), (b, _)| a.cmp(b));
        fields.dedup_by(|(later, _), (kept, _)| later == kept);
        Self { fields }
    }

    fn get(&self, key: &str) -> Option<&Json> {
        self.fields
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &self.fields[i].1)
    }
}

impl Json {
    /// The jrsonnet value of this JSON value; objects and arrays stay lazy.
    pub fn to_val(&self) -> Val {
        match self {
            Self::Null => Val::Null,
            Self::Bool(b) => Val::Bool(*b),
            // JSON numbers are finite, so `new` cannot refuse them; NaN is the impossible case.
            Self::Num(n) => NumValue::new(*n).map_or(Val::Null, Val::Num),
            Self::Str(s) => Val::string(&**s),
            Self::Arr(items) => Val::arr(LazyArray(items.clone())),
            Self::Obj(object) => {
                let mut builder = ObjValue::builder();
                builder.extend_with_core(LazyObject(object.clone()));
                Val::Obj(builder.build())
            }
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Json, E> {
        Ok(Json::Bool(v))
    }
    // Jsonnet numbers are doubles; integers beyond 2^53 lose precision exactly as they do in
    // jrsonnet's own conversion and in go-jsonnet.
    #[allow(clippy::cast_precision_loss)]
    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Json, E> {
        Ok(Json::Num(v as f64))
    }
    #[allow(clippy::cast_precision_loss)]
    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Json, E> {
        Ok(Json::Num(v as f64))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Json, E> {
        if v.is_finite() {
            Ok(Json::Num(v))
        } else {
            Err(E::custom("only finite numbers are supported"))
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Json, E> {
        Ok(Json::Str(v.into()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Json, E> {
        Ok(Json::Str(v.into_boxed_str()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Json, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element::<Json>()? {
            items.push(item);
        }
        Ok(Json::Arr(items.into()))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Json, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some((key, value)) = map.next_entry::<String, Json>()? {
            fields.push((key.into_boxed_str(), value));
        }
        Ok(Json::Obj(Rc::new(JsonObject::new(fields))))
    }
}

/// An object whose fields are converted when read.
#[derive(Debug)]
struct LazyObject(Rc<JsonObject>);

// Holds no jrsonnet values, so it can never be part of a reference cycle.
impl Trace for LazyObject {
    fn is_type_tracked() -> bool {
        false
    }
}

impl ObjectCore for LazyObject {
    fn enum_fields_core(
        &self,
        super_depth: &mut SuperDepth,
        handler: &mut EnumFieldsHandler<'_>,
    ) -> bool {
        let mut index = FieldIndex::default();
        for (key, _) in &self.0.fields {
            let visible = EnumFields::Normal(Visibility::Normal);
            if handler(*super_depth, index, IStr::from(&**key), visible) == ControlFlow::Break(()) {
                return false;
            }
            index = index.next();
        }
        true
    }

    fn has_field_include_hidden_core(&self, name: IStr) -> HasFieldIncludeHidden {
        match self.0.get(&name) {
            Some(_) => HasFieldIncludeHidden::Exists,
            None => HasFieldIncludeHidden::NotFound,
        }
    }

    fn get_for_core(&self, key: IStr, _sup_this: SupThis, omit_only: bool) -> Result<GetFor> {
        if omit_only {
            return Ok(GetFor::NotFound);
        }
        Ok(self
            .0
            .get(&key)
            .map_or(GetFor::NotFound, |value| GetFor::Final(value.to_val())))
    }

    fn field_visibility_core(&self, field: IStr) -> FieldVisibility {
        match self.0.get(&field) {
            Some(_) => FieldVisibility::Found(Visibility::Normal),
            None => FieldVisibility::NotFound,
        }
    }

    fn run_assertions_core(&self, _sup_this: SupThis) -> Result<()> {
        Ok(())
    }
}

/// An array whose elements are converted when read.
#[derive(Debug)]
struct LazyArray(Rc<[Json]>);

impl Trace for LazyArray {
    fn is_type_tracked() -> bool {
        false
    }
}

impl ArrayLike for LazyArray {
    fn len(&self) -> u32 {
        // A request body is at most a few MiB, far below 2^32 elements.
        u32::try_from(self.0.len()).unwrap_or(u32::MAX)
    }

    fn get(&self, index: u32) -> Result<Option<Val>> {
        Ok(self.0.get(index as usize).map(Json::to_val))
    }

    fn get_lazy(&self, index: u32) -> Option<Thunk<Val>> {
        self.0
            .get(index as usize)
            .map(|item| Thunk::evaluated(item.to_val()))
    }
}

#[cfg(test)]
mod tests;
