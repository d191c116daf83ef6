//! The JSON write format, for devices that cannot build line protocol.
//!
//! A body is one point object or an array of them (`docs/http-api.md` has the full shape):
//!
//! ```json
//! {"measurement": "climate", "tags": {"room": "kitchen"},
//!  "fields": {"temp": 21.5, "door_open": false, "count": {"int": 3}, "note": "ok"},
//!  "time": "2024-05-01T12:00:00Z"}
//! ```
//!
//! The array is split into raw elements first (borrowed, no copy), and each element is
//! decoded on its own, so one malformed point is reported by its index and the others are
//! still written, as with line protocol. Plain JSON numbers are floats, as unsuffixed numbers
//! are in line protocol; integers are written `{"int": 3}` or `{"uint": 3}`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use strata_engine::{FieldValue as Value, WriteBatch};
use strata_lineproto::Precision;

use super::lineproto::context_tag_conflict;
use super::time::parse_rfc3339;
use super::{Decoded, Format, PointContext, PointLimits, Refusal};
use crate::metrics::LineReject;

/// A body that is not a JSON point or array of points at all (nothing is written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON write body: {message}")]
pub struct JsonError {
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonPoint<'a> {
    #[serde(borrow)]
    measurement: Cow<'a, str>,
    #[serde(default, borrow)]
    tags: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
    #[serde(borrow)]
    fields: BTreeMap<Cow<'a, str>, JsonValue<'a>>,
    /// Integer in the request's precision, or an RFC 3339 string. `ts` is accepted too.
    #[serde(default, alias = "ts", borrow)]
    time: Option<JsonTime<'a>>,
}

/// The flat shape, accepted when a [`PointContext`] gives a default measurement (MQTT): every
/// key other than `measurement`, `tags` and `time`/`ts` is a field.
#[derive(Deserialize)]
struct FlatPoint<'a> {
    #[serde(default, borrow)]
    measurement: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tags: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
    #[serde(default, alias = "ts", borrow)]
    time: Option<JsonTime<'a>>,
    #[serde(flatten, borrow)]
    fields: BTreeMap<Cow<'a, str>, JsonValue<'a>>,
}

/// Whether an object has a `fields` key (the full shape) without decoding the rest.
#[derive(Deserialize)]
struct ShapeProbe {
    #[serde(default)]
    fields: Option<de::IgnoredAny>,
}

/// Decodes one point object in the full shape, or (with a context measurement) the flat one.
fn parse_point<'a>(item: &'a str, ctx: &PointContext<'a>) -> Result<JsonPoint<'a>, String> {
    let Some(default_measurement) = ctx.measurement else {
        return serde_json::from_str::<JsonPoint<'_>>(item).map_err(|e| e.to_string());
    };
    let probe: ShapeProbe = serde_json::from_str(item).map_err(|e| e.to_string())?;
    if probe.fields.is_some() {
        return serde_json::from_str::<JsonPoint<'_>>(item).map_err(|e| e.to_string());
    }
    let flat: FlatPoint<'_> = serde_json::from_str(item).map_err(|e| e.to_string())?;
    Ok(JsonPoint {
        measurement: flat.measurement.unwrap_or(Cow::Borrowed(default_measurement)),
        tags: flat.tags,
        fields: flat.fields,
        time: flat.time,
    })
}

enum JsonValue<'a> {
    F64(f64),
    I64(i64),
    U64(u64),
    Bool(bool),
    Str(Cow<'a, str>),
}

impl<'de: 'a, 'a> Deserialize<'de> for JsonValue<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = JsonValue<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, boolean, string, or {\"int\": n} / {\"uint\": n} / {\"float\": x}")
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(JsonValue::Bool(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(JsonValue::F64(v as f64))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(JsonValue::F64(v as f64))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(JsonValue::F64(v))
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(JsonValue::Str(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(JsonValue::Str(Cow::Owned(v.to_owned())))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let key: Cow<'a, str> =
                    map.next_key()?.ok_or_else(|| de::Error::custom("empty object as a field value"))?;
                let value = match key.as_ref() {
                    "int" => JsonValue::I64(map.next_value()?),
                    "uint" => JsonValue::U64(map.next_value()?),
                    "float" => JsonValue::F64(map.next_value()?),
                    other => return Err(de::Error::unknown_field(other, &["int", "uint", "float"])),
                };
                if map.next_key::<Cow<'a, str>>()?.is_some() {
                    return Err(de::Error::custom("a typed field value has exactly one key"));
                }
                Ok(value)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

enum JsonTime<'a> {
    Int(i64),
    Text(Cow<'a, str>),
}

impl<'de: 'a, 'a> Deserialize<'de> for JsonTime<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = JsonTime<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer timestamp or an RFC 3339 string")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(JsonTime::Int(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v).map(JsonTime::Int).map_err(|_| E::custom("timestamp out of range"))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                // `1.7e12` is an integer written the float way; `1.5` is not a timestamp.
                if v.fract() == 0.0 && v >= i64::MIN as f64 && v < i64::MAX as f64 {
                    Ok(JsonTime::Int(v as i64))
                } else {
                    Err(E::custom("timestamp must be an integer"))
                }
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(JsonTime::Text(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(JsonTime::Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// Decodes a JSON body. Fails only if the body as a whole is not JSON of the right shape;
/// bad points are listed in the result.
pub fn decode(
    body: &[u8],
    precision: Precision,
    now_ns: i64,
    limits: &PointLimits,
) -> Result<Decoded, JsonError> {
    decode_with(
        body,
        precision,
        now_ns,
        limits,
        &PointContext::default(),
        WriteBatch::with_capacity(body.len()),
    )
}

/// [`decode`] with a context (default measurement and flat shape, an added tag), appending to
/// `batch` (see `lineproto::decode_with`).
pub fn decode_with(
    body: &[u8],
    precision: Precision,
    now_ns: i64,
    limits: &PointLimits,
    ctx: &PointContext<'_>,
    batch: WriteBatch,
) -> Result<Decoded, JsonError> {
    let mut out = Decoded::new(Format::Json, limits.max_errors);
    out.batch = batch;
    decode_appending(body, precision, now_ns, limits, ctx, &mut out)?;
    Ok(out)
}

/// Decodes `body` onto what `out` holds already (see `lineproto::decode_appending`). On an
/// error `out` is left as it was: the body is parsed whole before any point is added.
pub fn decode_appending(
    body: &[u8],
    precision: Precision,
    now_ns: i64,
    limits: &PointLimits,
    ctx: &PointContext<'_>,
    out: &mut Decoded,
) -> Result<(), JsonError> {
    let err = |message: String| JsonError { message };
    let text = std::str::from_utf8(body).map_err(|e| err(format!("not UTF-8: {e}")))?;
    let items: Vec<&RawValue> = match text.trim_start().as_bytes().first() {
        Some(b'[') => serde_json::from_str(text).map_err(|e| err(e.to_string()))?,
        Some(b'{') => vec![serde_json::from_str(text).map_err(|e| err(e.to_string()))?],
        Some(_) => return Err(err("expected a point object or an array of point objects".into())),
        None => Vec::new(),
    };
    out.format = Format::Json;
    for (i, raw) in items.iter().enumerate() {
        out.seen += 1;
        let item = raw.get();
        // `item` is a slice of `text`.
        let start = item.as_ptr() as usize - text.as_ptr() as usize;
        let point = match parse_point(item, ctx) {
            Ok(p) => p,
            Err(e) => {
                out.refuse(i, item, Refusal::new(LineReject::Parse, e));
                continue;
            }
        };
        match add_point(&mut out.batch, &point, precision, now_ns, limits, ctx) {
            Ok(()) => out.origin(i, start, item.len()),
            Err(r) => out.refuse(i, item, r),
        }
    }
    Ok(())
}

fn add_point(
    batch: &mut WriteBatch,
    p: &JsonPoint<'_>,
    precision: Precision,
    now_ns: i64,
    limits: &PointLimits,
    ctx: &PointContext<'_>,
) -> Result<(), Refusal> {
    limits.check_counts(p.tags.len(), p.fields.len())?;
    let ts = match &p.time {
        None => now_ns,
        Some(JsonTime::Int(t)) => precision.to_nanos(*t).ok_or_else(|| {
            Refusal::new(LineReject::Parse, format!("timestamp {t} ({precision}) is out of range"))
        })?,
        Some(JsonTime::Text(s)) => {
            parse_rfc3339(s).map_err(|e| Refusal::new(LineReject::Parse, e.to_string()))?
        }
    };
    limits.check_time(ts, now_ns)?;
    limits.check_name("measurement", &p.measurement)?;
    for (k, v) in &p.tags {
        limits.check_name("tag key", k)?;
        limits.check_name("tag value", v)?;
    }
    for (k, v) in &p.fields {
        limits.check_name("field key", k)?;
        if let JsonValue::Str(s) = v {
            limits.check_string(k, s)?;
        }
    }
    if let Some((ck, cv)) = ctx.tag {
        if let Some(v) = p.tags.get(ck) {
            if **v != *cv {
                return Err(context_tag_conflict(ck, cv, v));
            }
        }
    }
    let mut b = batch.point(&p.measurement);
    for (k, v) in &p.tags {
        if ctx.tag.is_some_and(|(ck, _)| **k == *ck) {
            continue; // equal to the context's (checked above), added once below
        }
        b.tag(k, v);
    }
    if let Some((ck, cv)) = ctx.tag {
        b.tag(ck, cv);
    }
    for (k, v) in &p.fields {
        let v = match v {
            JsonValue::F64(x) => Value::F64(*x),
            JsonValue::I64(x) => Value::I64(*x),
            JsonValue::U64(x) => Value::U64(*x),
            JsonValue::Bool(x) => Value::Bool(*x),
            JsonValue::Str(s) => Value::Str(s),
        };
        b.field(k, v);
    }
    b.finish(ts).map_err(|e| Refusal::new(LineReject::InvalidPoint, e.to_string()))
}

#[cfg(test)]
mod tests {
    use strata_engine::FieldValue;

    use super::*;
    use crate::config::LimitsConfig;

    fn limits() -> PointLimits {
        // The tests decode with a clock at 77 ns: no future bound, or 2009 is "the future".
        PointLimits { max_future_ns: None, ..PointLimits::from_config(&LimitsConfig::default()) }
    }

    #[test]
    fn single_object_and_all_value_types() {
        let body = br#"{"measurement": "climate", "tags": {"room": "kit\"chen"},
            "fields": {"temp": 21.5, "n": 3, "i": {"int": -4}, "u": {"uint": 18446744073709551615},
                       "f": {"float": 2}, "open": false, "note": "ok"},
            "time": 1700000000000}"#;
        let d = decode(body, Precision::Milliseconds, 0, &limits()).unwrap();
        assert!(d.errors.is_empty(), "{:?}", d.errors.items);
        let p = d.batch.iter().next().unwrap().unwrap();
        assert_eq!(p.timestamp, 1_700_000_000_000_000_000);
        assert_eq!(p.series_key().tag("room"), Some("kit\"chen"));
        let fields: BTreeMap<&str, FieldValue<'_>> = p.fields().collect();
        assert_eq!(fields["temp"], FieldValue::F64(21.5));
        assert_eq!(fields["n"], FieldValue::F64(3.0));
        assert_eq!(fields["i"], FieldValue::I64(-4));
        assert_eq!(fields["u"], FieldValue::U64(u64::MAX));
        assert_eq!(fields["f"], FieldValue::F64(2.0));
        assert_eq!(fields["open"], FieldValue::Bool(false));
        assert_eq!(fields["note"], FieldValue::Str("ok"));
    }

    #[test]
    fn array_with_bad_points_keeps_the_good_ones() {
        let body = br#"[
            {"measurement": "m", "fields": {"v": 1}, "ts": "2009-11-10T23:00:00Z"},
            {"measurement": "m", "fields": {"v": null}},
            {"measurement": "m", "fields": {"v": 1}, "colour": "red"},
            {"measurement": "m", "fields": {}},
            {"measurement": "m", "fields": {"v": 1}, "time": "yesterday"},
            {"measurement": "m", "fields": {"v": 1}, "time": 1.5},
            {"measurement": "m", "tags": {"t": 1}, "fields": {"v": 1}},
            {"measurement": "m", "fields": {"v": {"int": 1, "uint": 2}}},
            {"measurement": "m", "fields": {"v": 2}}
        ]"#;
        let d = decode(body, Precision::Nanoseconds, 77, &limits()).unwrap();
        assert_eq!(d.batch.len_points(), 2);
        assert_eq!(d.seen, 9);
        let idx: Vec<_> = d.errors.items.iter().map(|e| (e.index.unwrap(), e.kind)).collect();
        assert_eq!(
            idx,
            vec![
                (1, "parse"),
                (2, "parse"),
                (3, "invalid_point"),
                (4, "parse"),
                (5, "parse"),
                (6, "parse"),
                (7, "parse")
            ]
        );
        assert!(d.errors.items[1].reason.contains("colour"), "{:?}", d.errors.items[1]);
        let ts: Vec<_> = d.batch.iter().map(|p| p.unwrap().timestamp).collect();
        assert_eq!(ts, vec![1_257_894_000_000_000_000, 77]);
    }

    #[test]
    fn whole_body_errors() {
        for body in [&b"not json"[..], b"[{\"measurement\": ", b"42", b"\xff\xfe"] {
            assert!(decode(body, Precision::Nanoseconds, 0, &limits()).is_err(), "{body:?}");
        }
        let d = decode(b"  ", Precision::Nanoseconds, 0, &limits()).unwrap();
        assert_eq!(d.batch.len_points(), 0);
        let d = decode(b"[]", Precision::Nanoseconds, 0, &limits()).unwrap();
        assert_eq!((d.batch.len_points(), d.errors.total), (0, 0));
    }

    #[test]
    fn limits_apply() {
        let mut l = limits();
        l.max_tags = 1;
        l.max_string_length = 3;
        let body = br#"[{"measurement": "m", "tags": {"a": "1", "b": "2"}, "fields": {"v": 1}},
                        {"measurement": "m", "fields": {"s": "long"}},
                        {"measurement": "m", "fields": {"v": 1}, "time": 99999999999999999}]"#;
        let d = decode(body, Precision::Seconds, 0, &l).unwrap();
        let kinds: Vec<_> = d.errors.items.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, vec!["too_many_tags", "string_too_long", "parse"]);
        assert!(d.errors.items[2].reason.contains("out of range"));
    }
}
