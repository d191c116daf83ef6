//! strata-lineproto: a zero-copy, allocation-free parser (and a printer) for the
//! [InfluxDB line protocol](https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/).
//!
//! ```text
//! measurement[,tag=value...] field=value[,field=value...] [timestamp]
//! ```
//!
//! The HTTP (`/api/v2/write`) and MQTT ingest paths hand a whole request body to
//! [`Parser`], which yields one `Result<Line, LineError>` per non-blank,
//! non-comment line. A [`Line`] borrows from the body: measurement, tag and field
//! keys and string values are [`Escaped`] slices of the input that are unescaped
//! only when asked, and tags and fields are re-scanned lazily by [`Line::tags`] and
//! [`Line::fields`] from slices validated once at parse time, so parsing a line
//! allocates nothing. A bad line yields an error with line, column and an excerpt,
//! and parsing resumes at the next line.
//!
//! ```
//! use strata_lineproto::{FieldValue, Parser};
//!
//! let body = b"cpu,host=a,region=eu usage=0.5,count=3i 1700000000000000000\n";
//! let line = Parser::new(body).next().unwrap().unwrap();
//! assert_eq!(line.measurement, "cpu");
//! assert_eq!(line.tag("host").unwrap(), "a");
//! assert_eq!(line.field("count"), Some(FieldValue::I64(3)));
//! assert_eq!(line.timestamp, Some(1_700_000_000_000_000_000));
//! ```
//!
//! # Layout
//! - [`parser`]: [`Parser`], line splitting, the single-pass scanner and the
//!   duplicate-key check.
//! - [`line`](mod@line): [`Line`] and its lazy [`Tags`] / [`Fields`] iterators, [`FieldValue`].
//! - [`escape`]: [`Escaped`], the escaping rules of each element.
//! - [`number`]: field value and integer syntax (what InfluxDB accepts as a number).
//! - [`error`]: [`LineError`], [`LineErrorKind`] and their messages.
//! - [`precision`]: [`Precision`] (`ns`, `us`, `ms`, `s`, ...) and conversion to
//!   nanoseconds.
//! - [`writer`]: [`write_line`] and the owned [`Point`], printing canonical line
//!   protocol.
//!
//! # What this crate is not
//! - Not a streaming parser: the caller passes a whole body (bounded by the HTTP
//!   layer's size limit).
//! - Not a schema check: field type conflicts between lines, InfluxDB's naming
//!   restrictions (leading `_`) and per-series limits belong to the engine.
//! - It does not sort tags or build series keys.
//!
//! The accepted syntax, error messages and the decisions taken where the spec is
//! silent (duplicate fields, NaN, newlines in strings, ...) are written up in
//! `docs/line-protocol.md`.
#![forbid(unsafe_code)]

pub mod error;
pub mod escape;
pub mod line;
pub mod number;
pub mod parser;
pub mod precision;
pub mod writer;

pub use error::{LineError, LineErrorKind};
pub use escape::{Chunks, Escaped};
pub use line::{FieldValue, Fields, Line, Tags};
pub use parser::Parser;
pub use precision::{Precision, UnknownPrecision};
pub use writer::{write_line, Element, Point, Value, WriteError};
