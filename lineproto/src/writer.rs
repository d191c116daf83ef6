//! Printing canonical line protocol: from a parsed [`Line`] ([`write_line`]) or
//! from an owned [`Point`] ([`Point::write_to`]).
//!
//! Canonical form: every escapable byte is escaped (including every backslash, so
//! the output never relies on a lone `\` being literal); floats use the shortest
//! text that parses back to the same bits, in exponent form outside
//! `1e-5 <= |x| < 1e16`; integers get `i`, unsigned `u`; booleans are `true` and
//! `false`; tags and fields keep their order (tags are not sorted); one line ends
//! with `\n`. Parsing the output gives back the same measurement, tags, fields
//! (floats bit for bit, `-0.0` included) and timestamp.

use std::fmt;

use crate::escape::{push_escaped, Context, Escaped};
use crate::line::{FieldValue, Line};

/// Appends `line` to `out` in canonical form, followed by `\n`. A parsed line is
/// always representable, so this cannot fail; duplicate fields are written once
/// (the value that won). Does not allocate beyond growing `out`.
pub fn write_line(out: &mut Vec<u8>, line: &Line<'_>) {
    write_escaped(out, &line.measurement, Context::Measurement);
    for (key, value) in line.tags() {
        out.push(b',');
        write_escaped(out, &key, Context::Key);
        out.push(b'=');
        write_escaped(out, &value, Context::Key);
    }
    let mut sep = b' ';
    for (key, value) in line.fields() {
        out.push(sep);
        sep = b',';
        write_escaped(out, &key, Context::Key);
        out.push(b'=');
        match value {
            FieldValue::F64(v) => write_f64(out, v),
            FieldValue::I64(v) => write_display(out, format_args!("{v}i")),
            FieldValue::U64(v) => write_display(out, format_args!("{v}u")),
            FieldValue::Bool(v) => out.extend_from_slice(if v { b"true" } else { b"false" }),
            FieldValue::Str(s) => {
                out.push(b'"');
                write_escaped(out, &s, Context::Str);
                out.push(b'"');
            }
        }
    }
    if let Some(ts) = line.timestamp {
        write_display(out, format_args!(" {ts}"));
    }
    out.push(b'\n');
}

fn write_escaped(out: &mut Vec<u8>, text: &Escaped<'_>, ctx: Context) {
    for chunk in text.chunks() {
        push_escaped(out, chunk.as_bytes(), ctx);
    }
}

fn write_display(out: &mut Vec<u8>, args: fmt::Arguments<'_>) {
    struct Adapter<'o>(&'o mut Vec<u8>);
    impl fmt::Write for Adapter<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0.extend_from_slice(s.as_bytes());
            Ok(())
        }
    }
    fmt::write(&mut Adapter(out), args).expect("writing to a Vec cannot fail");
}

/// Shortest round-trip text (Rust's float formatting is exact and shortest), in
/// exponent form for very large or small magnitudes so `1e300` is not 301 digits.
fn write_f64(out: &mut Vec<u8>, v: f64) {
    let magnitude = v.abs();
    if magnitude == 0.0 || (1e-5..1e16).contains(&magnitude) {
        write_display(out, format_args!("{v}"));
    } else {
        write_display(out, format_args!("{v:e}"));
    }
}

/// An owned field value, for building points to print.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    F64(f64),
    I64(i64),
    U64(u64),
    Bool(bool),
    Str(String),
}

impl From<FieldValue<'_>> for Value {
    fn from(v: FieldValue<'_>) -> Self {
        match v {
            FieldValue::F64(v) => Value::F64(v),
            FieldValue::I64(v) => Value::I64(v),
            FieldValue::U64(v) => Value::U64(v),
            FieldValue::Bool(v) => Value::Bool(v),
            FieldValue::Str(s) => Value::Str(s.as_str().into_owned()),
        }
    }
}

/// An owned, unescaped point: what an export tool or a test builds and prints with
/// [`Point::write_to`], and what [`Line::to_point`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub measurement: String,
    pub tags: Vec<(String, String)>,
    pub fields: Vec<(String, Value)>,
    /// Nanoseconds.
    pub timestamp: Option<i64>,
}

impl Line<'_> {
    /// Copies the line into an owned, unescaped [`Point`] (allocates; for tests,
    /// export and slow paths).
    pub fn to_point(&self) -> Point {
        Point {
            measurement: self.measurement.as_str().into_owned(),
            tags: self.tags().map(|(k, v)| (k.as_str().into_owned(), v.as_str().into_owned())).collect(),
            fields: self.fields().map(|(k, v)| (k.as_str().into_owned(), Value::from(v))).collect(),
            timestamp: self.timestamp,
        }
    }
}

/// Which part of a point a [`WriteError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Element {
    Measurement,
    TagKey,
    TagValue,
    FieldKey,
    StringField,
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Element::Measurement => "measurement",
            Element::TagKey => "tag key",
            Element::TagValue => "tag value",
            Element::FieldKey => "field key",
            Element::StringField => "string field value",
        })
    }
}

/// A [`Point`] that line protocol cannot represent (or that would not parse back
/// to the same point).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("{0} is empty")]
    Empty(Element),
    #[error("point has no fields")]
    NoFields,
    /// A raw newline always ends a line; there is no escape for it.
    #[error("{0} contains a newline")]
    Newline(Element),
    /// A line starting with `#` is a comment and leading tabs are skipped as
    /// whitespace, and no escape changes that.
    #[error("measurement starts with '#' or a tab")]
    UnrepresentableMeasurement,
    #[error("duplicate tag key {0:?}")]
    DuplicateTagKey(String),
    /// The parser keeps only the last of repeated field keys.
    #[error("duplicate field key {0:?}")]
    DuplicateFieldKey(String),
    #[error("field {0:?} is NaN or infinite")]
    NonFiniteFloat(String),
}

fn check_text(text: &str, element: Element) -> Result<(), WriteError> {
    if text.is_empty() {
        Err(WriteError::Empty(element))
    } else if text.contains('\n') {
        Err(WriteError::Newline(element))
    } else {
        Ok(())
    }
}

impl Point {
    /// Checks that the point is representable: non-empty names without newlines, a
    /// measurement not starting with `#` or a tab, unique tag and field keys, at
    /// least one field, finite floats, strings without newlines.
    pub fn validate(&self) -> Result<(), WriteError> {
        check_text(&self.measurement, Element::Measurement)?;
        if self.measurement.starts_with(['#', '\t']) {
            return Err(WriteError::UnrepresentableMeasurement);
        }
        for (i, (key, value)) in self.tags.iter().enumerate() {
            check_text(key, Element::TagKey)?;
            check_text(value, Element::TagValue)?;
            if self.tags[..i].iter().any(|(k, _)| k == key) {
                return Err(WriteError::DuplicateTagKey(key.clone()));
            }
        }
        if self.fields.is_empty() {
            return Err(WriteError::NoFields);
        }
        for (i, (key, value)) in self.fields.iter().enumerate() {
            check_text(key, Element::FieldKey)?;
            if self.fields[..i].iter().any(|(k, _)| k == key) {
                return Err(WriteError::DuplicateFieldKey(key.clone()));
            }
            match value {
                Value::F64(v) if !v.is_finite() => return Err(WriteError::NonFiniteFloat(key.clone())),
                Value::Str(s) if s.contains('\n') => return Err(WriteError::Newline(Element::StringField)),
                _ => {}
            }
        }
        Ok(())
    }

    /// Appends the point to `out` in canonical form, followed by `\n`; on error
    /// `out` is left unchanged. Parsing the output yields an equal point.
    pub fn write_to(&self, out: &mut Vec<u8>) -> Result<(), WriteError> {
        self.validate()?;
        push_escaped(out, self.measurement.as_bytes(), Context::Measurement);
        for (key, value) in &self.tags {
            out.push(b',');
            push_escaped(out, key.as_bytes(), Context::Key);
            out.push(b'=');
            push_escaped(out, value.as_bytes(), Context::Key);
        }
        let mut sep = b' ';
        for (key, value) in &self.fields {
            out.push(sep);
            sep = b',';
            push_escaped(out, key.as_bytes(), Context::Key);
            out.push(b'=');
            match value {
                Value::F64(v) => write_f64(out, *v),
                Value::I64(v) => write_display(out, format_args!("{v}i")),
                Value::U64(v) => write_display(out, format_args!("{v}u")),
                Value::Bool(v) => out.extend_from_slice(if *v { b"true" } else { b"false" }),
                Value::Str(s) => {
                    out.push(b'"');
                    push_escaped(out, s.as_bytes(), Context::Str);
                    out.push(b'"');
                }
            }
        }
        if let Some(ts) = self.timestamp {
            write_display(out, format_args!(" {ts}"));
        }
        out.push(b'\n');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Parser;

    fn point() -> Point {
        Point {
            measurement: "we ird,m=\\".into(),
            tags: vec![("k,=\\ ".into(), "v\"é".into())],
            fields: vec![
                ("f".into(), Value::F64(-0.0)),
                ("big".into(), Value::F64(1e300)),
                ("tiny".into(), Value::F64(5e-324)),
                ("i".into(), Value::I64(i64::MIN)),
                ("u".into(), Value::U64(u64::MAX)),
                ("b".into(), Value::Bool(false)),
                ("s".into(), Value::Str("a \"q\" \\ , =".into())),
            ],
            timestamp: Some(-1),
        }
    }

    #[test]
    fn canonical_text() {
        let mut out = Vec::new();
        point().write_to(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "we\\ ird\\,m=\\\\,k\\,\\=\\\\\\ =v\"é f=-0,big=1e300,tiny=5e-324,\
             i=-9223372036854775808i,u=18446744073709551615u,b=false,\
             s=\"a \\\"q\\\" \\\\ , =\" -1\n"
        );
    }

    #[test]
    fn point_round_trips_through_parser_and_write_line() {
        let p = point();
        let mut out = Vec::new();
        p.write_to(&mut out).unwrap();
        let line = Parser::new(&out).next().unwrap().unwrap();
        let back = line.to_point();
        assert_eq!(back.measurement, p.measurement);
        assert_eq!(back.tags, p.tags);
        assert_eq!(back.timestamp, p.timestamp);
        for ((k1, v1), (k2, v2)) in back.fields.iter().zip(&p.fields) {
            assert_eq!(k1, k2);
            match (v1, v2) {
                (Value::F64(a), Value::F64(b)) => assert_eq!(a.to_bits(), b.to_bits()),
                _ => assert_eq!(v1, v2),
            }
        }
        let mut again = Vec::new();
        write_line(&mut again, &line);
        assert_eq!(again, out);
    }

    #[test]
    fn unrepresentable_points_are_rejected_and_leave_out_unchanged() {
        type Mutation = Box<dyn Fn(&mut Point)>;
        let cases: Vec<(Mutation, WriteError)> = vec![
            (Box::new(|p| p.measurement.clear()), WriteError::Empty(Element::Measurement)),
            (Box::new(|p| p.measurement = "#m".into()), WriteError::UnrepresentableMeasurement),
            (Box::new(|p| p.measurement = "\tm".into()), WriteError::UnrepresentableMeasurement),
            (Box::new(|p| p.measurement = "a\nb".into()), WriteError::Newline(Element::Measurement)),
            (Box::new(|p| p.tags[0].0.clear()), WriteError::Empty(Element::TagKey)),
            (Box::new(|p| p.tags[0].1.clear()), WriteError::Empty(Element::TagValue)),
            (Box::new(|p| p.tags[0].1 = "\n".into()), WriteError::Newline(Element::TagValue)),
            (Box::new(|p| p.tags.push(p.tags[0].clone())), WriteError::DuplicateTagKey("k,=\\ ".into())),
            (Box::new(|p| p.fields.clear()), WriteError::NoFields),
            (Box::new(|p| p.fields[0].0.clear()), WriteError::Empty(Element::FieldKey)),
            (
                Box::new(|p| p.fields.push(("f".into(), Value::I64(1)))),
                WriteError::DuplicateFieldKey("f".into()),
            ),
            (Box::new(|p| p.fields[0].1 = Value::F64(f64::NAN)), WriteError::NonFiniteFloat("f".into())),
            (
                Box::new(|p| p.fields[0].1 = Value::F64(f64::NEG_INFINITY)),
                WriteError::NonFiniteFloat("f".into()),
            ),
            (
                Box::new(|p| p.fields[0].1 = Value::Str("a\nb".into())),
                WriteError::Newline(Element::StringField),
            ),
        ];
        for (mutate, want) in cases {
            let mut p = point();
            mutate(&mut p);
            let mut out = b"keep".to_vec();
            assert_eq!(p.write_to(&mut out), Err(want.clone()));
            assert_eq!(out, b"keep", "{want}");
        }
        // A leading space is fine: it is escaped.
        let mut p = point();
        p.measurement = " m".into();
        let mut out = Vec::new();
        p.write_to(&mut out).unwrap();
        assert!(out.starts_with(b"\\ m"));
    }
}
