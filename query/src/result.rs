//! Query results: what a statement returns, before encoding (JSON, CSV).
//!
//! The shape is InfluxDB 1.x's: a statement gives zero or more [`Series`], each with a name,
//! an optional tag set, column names and rows of [`Value`]s.

/// One cell of a result row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Float(f64),
    Integer(i64),
    Unsigned(u64),
    Boolean(bool),
    String(String),
    /// A timestamp in nanoseconds since the epoch; encoders print it as RFC 3339 or as an
    /// integer in the requested epoch precision.
    Time(i64),
    /// A timestamp of a query with `tz()`, with the zone's UTC offset at that instant in
    /// seconds: printed as RFC 3339 with that offset, or like [`Value::Time`] under `epoch=`.
    ZonedTime {
        ns: i64,
        offset_secs: i32,
    },
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value as a float, for numeric values.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(v) => Some(*v),
            Value::Integer(v) => Some(*v as f64),
            Value::Unsigned(v) => Some(*v as f64),
            _ => None,
        }
    }
}

/// One result series.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    /// Measurement name (or `databases`, `measurements`, ...); empty for `SHOW SERIES`.
    pub name: String,
    /// The `GROUP BY` tag set, sorted by key; `None` when the query does not group by tags.
    pub tags: Option<Vec<(String, String)>>,
    pub columns: Vec<String>,
    pub values: Vec<Vec<Value>>,
}

/// The result of one statement.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatementResult {
    pub statement_id: usize,
    pub series: Vec<Series>,
    /// The statement's error, as InfluxDB reports it inside `results[i].error`.
    pub error: Option<String>,
}

/// Formatting options for times in results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Epoch {
    /// RFC 3339 strings (the default, no `epoch=` parameter).
    #[default]
    Rfc3339,
    /// Integers in the given unit: `epoch=ns|u|µ|ms|s|m|h`.
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
    Minutes,
    Hours,
}

impl Epoch {
    /// Parses the `epoch` parameter as InfluxDB does (`n`/`ns`, `u`/`µ`, `ms`, `s`, `m`, `h`).
    pub fn parse(s: &str) -> Option<Epoch> {
        Some(match s {
            "" => Epoch::Rfc3339,
            "n" | "ns" => Epoch::Nanoseconds,
            "u" | "us" | "µ" => Epoch::Microseconds,
            "ms" => Epoch::Milliseconds,
            "s" => Epoch::Seconds,
            "m" => Epoch::Minutes,
            "h" => Epoch::Hours,
            _ => return None,
        })
    }

    /// Nanoseconds per unit; `None` for RFC 3339.
    pub fn divisor(self) -> Option<i64> {
        Some(match self {
            Epoch::Rfc3339 => return None,
            Epoch::Nanoseconds => 1,
            Epoch::Microseconds => 1_000,
            Epoch::Milliseconds => 1_000_000,
            Epoch::Seconds => 1_000_000_000,
            Epoch::Minutes => 60_000_000_000,
            Epoch::Hours => 3_600_000_000_000,
        })
    }
}
