//! Conversions between `google.protobuf.Struct`/`Value` and `serde_json`,
//! used for pass-through fields and JSON schemas.

use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};
use serde_json::{Map, Number, Value as Json};

/// A JSON object as a protobuf `Struct`.
pub fn struct_from_map(map: Map<String, Json>) -> Struct {
    Struct {
        fields: map
            .into_iter()
            .map(|(k, v)| (k, value_from_json(v)))
            .collect(),
    }
}

/// A protobuf `Struct` as a JSON object.
pub fn map_from_struct(s: Struct) -> Map<String, Json> {
    s.fields
        .into_iter()
        .map(|(k, v)| (k, json_from_value(v)))
        .collect()
}

/// Borrowing variant of [`map_from_struct`].
pub fn map_from_struct_ref(s: &Struct) -> Map<String, Json> {
    s.fields
        .iter()
        .map(|(k, v)| (k.clone(), json_from_value(v.clone())))
        .collect()
}

pub fn value_from_json(v: Json) -> Value {
    let kind = match v {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(b),
        // Protobuf numbers are doubles; integers beyond 2^53 lose precision,
        // which JSON parsers in most SDKs do as well.
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Json::String(s) => Kind::StringValue(s),
        Json::Array(a) => Kind::ListValue(ListValue {
            values: a.into_iter().map(value_from_json).collect(),
        }),
        Json::Object(o) => Kind::StructValue(struct_from_map(o)),
    };
    Value { kind: Some(kind) }
}

pub fn json_from_value(v: Value) -> Json {
    match v.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(b),
        Some(Kind::NumberValue(n)) => number(n),
        Some(Kind::StringValue(s)) => Json::String(s),
        Some(Kind::ListValue(l)) => {
            Json::Array(l.values.into_iter().map(json_from_value).collect())
        }
        Some(Kind::StructValue(s)) => Json::Object(map_from_struct(s)),
    }
}

/// Integral doubles become JSON integers so `{"n": 1}` round-trips as `1`,
/// not `1.0` (some upstreams reject floats where they expect integers).
fn number(n: f64) -> Json {
    if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        Json::Number(Number::from(n as i64))
    } else {
        Number::from_f64(n).map_or(Json::Null, Json::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_nested_json() {
        let v = json!({"a": 1, "b": [true, null, "x", 2.5], "c": {"d": -3}});
        let Json::Object(map) = v.clone() else {
            panic!()
        };
        let back = Json::Object(map_from_struct(struct_from_map(map)));
        assert_eq!(back, v);
    }
}
