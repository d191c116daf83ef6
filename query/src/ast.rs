//! Typed syntax tree of Strata's query language: statements and their clauses here,
//! expressions in [`expr`], the function table in [`function`], the printer in `display`.
//! Time literals live in [`crate::time`], the planner's condition helpers in
//! [`crate::condition`].
//!
//! Every node implements `Display`, printing query text that parses back to
//! the same tree: `parse(print(parse(q))) == parse(q)` (property-tested in
//! `parser/tests.rs`). The printer inserts parentheses wherever precedence
//! requires them, so hand-built trees also print as correct queries; trees
//! built by the parser already carry [`Expr::Paren`] where the text had them,
//! and print without extra ones.
//!
//! Conventions of the tree:
//! - durations and timestamps are `i64` nanoseconds (timestamps since the
//!   Unix epoch, UTC);
//! - function names are lower case and always one of [`FUNCTIONS`];
//! - a reference to `time` (any case, quoted or not) is `VarRef { name:
//!   "time", .. }`;
//! - in a comparison with `time`, a string literal has already been turned
//!   into [`Expr::Time`] (`time > '2024-01-01'`); integers compared with time
//!   are nanoseconds and durations are offsets from the epoch
//!   (`time >= 1700000000000ms`), as in InfluxQL;
//! - unary minus on a literal folds into the literal (`-5s`); on anything
//!   else it becomes `(-1 * expr)`, an [`Expr::Paren`] around a
//!   multiplication, so the printed form reparses to the same tree.

mod display;
pub mod expr;
pub mod function;

pub use display::{format_float, ident_needs_quotes, quote_ident, quote_string};
pub use expr::{BinaryOp, DataType, Expr, RegexLiteral, WildcardKind, REGEX_SIZE_LIMIT};
pub use function::{function_spec, FunctionKind, FunctionSpec, FUNCTIONS};

/// A parsed query: the statements separated by `;`, in order.
pub type Query = Vec<Statement>;

/// Prints a query, one statement per line, separated by `;`.
pub fn format_query(query: &[Statement]) -> String {
    query.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(";\n")
}

/// One statement of a query.
#[derive(Debug, Clone, PartialEq)]
// `Select` is much larger than the other variants. Statements are created
// once per query and never stored in bulk, so boxing would only make every
// `match` in the planner noisier.
#[allow(clippy::large_enum_variant)]
pub enum Statement {
    Select(SelectStatement),
    /// `SHOW DATABASES`
    ShowDatabases,
    /// `SHOW MEASUREMENTS [ON db] [WITH MEASUREMENT = m | =~ /re/] [WHERE]
    /// [LIMIT n] [OFFSET n]`
    ShowMeasurements {
        database: Option<String>,
        measurement: Option<MeasurementName>,
        condition: Option<Expr>,
        limit: Option<u64>,
        offset: u64,
    },
    /// `SHOW TAG KEYS [ON db] [FROM m, ...] [WHERE] [LIMIT n] [OFFSET n]`
    ShowTagKeys {
        database: Option<String>,
        sources: Vec<Source>,
        condition: Option<Expr>,
        limit: Option<u64>,
        offset: u64,
    },
    /// `SHOW TAG VALUES [ON db] [FROM m, ...] WITH KEY <filter> [WHERE]
    /// [LIMIT n] [OFFSET n]`
    ShowTagValues {
        database: Option<String>,
        sources: Vec<Source>,
        key: TagKeyFilter,
        condition: Option<Expr>,
        limit: Option<u64>,
        offset: u64,
    },
    /// `SHOW FIELD KEYS [ON db] [FROM m, ...] [LIMIT n] [OFFSET n]`
    ShowFieldKeys {
        database: Option<String>,
        sources: Vec<Source>,
        limit: Option<u64>,
        offset: u64,
    },
    /// `SHOW SERIES [ON db] [FROM m, ...] [WHERE] [LIMIT n] [OFFSET n]`
    ShowSeries {
        database: Option<String>,
        sources: Vec<Source>,
        condition: Option<Expr>,
        limit: Option<u64>,
        offset: u64,
    },
    /// `SHOW RETENTION POLICIES [ON db]`
    ShowRetentionPolicies {
        database: Option<String>,
    },
    /// `SHOW CONTINUOUS QUERIES`: the downsampling rules of every database.
    ShowContinuousQueries,
    /// `CREATE CONTINUOUS QUERY name ON db BEGIN SELECT ... INTO target FROM m
    /// GROUP BY time(d), * END`: a downsampling rule (`docs/lifecycle.md`).
    CreateContinuousQuery {
        name: String,
        database: String,
        select: Box<SelectStatement>,
    },
    /// `DROP CONTINUOUS QUERY name ON db`
    DropContinuousQuery {
        name: String,
        database: String,
    },
    /// `CREATE DATABASE name [WITH [DURATION d] [REPLICATION n]
    /// [SHARD DURATION d] [NAME rp]]`
    CreateDatabase {
        name: String,
        retention: Option<RetentionPolicySpec>,
    },
    /// `DROP DATABASE name`
    DropDatabase {
        name: String,
    },
    /// `CREATE RETENTION POLICY name ON db DURATION d REPLICATION n
    /// [SHARD DURATION d] [DEFAULT]`
    CreateRetentionPolicy {
        name: String,
        database: String,
        /// Nanoseconds; 0 means infinite (`INF`).
        duration: i64,
        replication: u32,
        /// Nanoseconds; `None` lets the server choose.
        shard_duration: Option<i64>,
        default: bool,
    },
    /// `ALTER RETENTION POLICY name ON db [DURATION d] [REPLICATION n]
    /// [SHARD DURATION d] [DEFAULT]` (at least one option).
    AlterRetentionPolicy {
        name: String,
        database: String,
        /// Nanoseconds; `Some(0)` means infinite (`INF`).
        duration: Option<i64>,
        replication: Option<u32>,
        shard_duration: Option<i64>,
        default: bool,
    },
    /// `DROP RETENTION POLICY name ON db`
    DropRetentionPolicy {
        name: String,
        database: String,
    },
    /// `DELETE [FROM m, ...] [WHERE cond]` (at least one of the two). The
    /// sources never name a database or retention policy: the statement
    /// applies to the current database across all its retention policies.
    Delete {
        sources: Vec<Source>,
        condition: Option<Expr>,
    },
    /// `DROP SERIES [FROM m, ...] [WHERE cond]` (at least one of the two);
    /// sources are unqualified, as for `Delete`.
    DropSeries {
        sources: Vec<Source>,
        condition: Option<Expr>,
    },
    /// `DROP MEASUREMENT name`
    DropMeasurement {
        name: String,
    },
}

impl Statement {
    /// True for statements that only read: `SELECT` without `INTO` and every
    /// `SHOW`. InfluxDB's `/query` endpoint refuses the others over `GET`.
    pub fn is_read_only(&self) -> bool {
        match self {
            Statement::Select(s) => s.into.is_none(),
            Statement::ShowDatabases
            | Statement::ShowMeasurements { .. }
            | Statement::ShowTagKeys { .. }
            | Statement::ShowTagValues { .. }
            | Statement::ShowFieldKeys { .. }
            | Statement::ShowSeries { .. }
            | Statement::ShowRetentionPolicies { .. }
            | Statement::ShowContinuousQueries => true,
            Statement::CreateDatabase { .. }
            | Statement::DropDatabase { .. }
            | Statement::CreateRetentionPolicy { .. }
            | Statement::AlterRetentionPolicy { .. }
            | Statement::DropRetentionPolicy { .. }
            | Statement::Delete { .. }
            | Statement::DropSeries { .. }
            | Statement::DropMeasurement { .. }
            | Statement::CreateContinuousQuery { .. }
            | Statement::DropContinuousQuery { .. } => false,
        }
    }
}

/// `SELECT fields [INTO m] FROM sources [WHERE cond] [GROUP BY ...]
/// [fill(...)] [ORDER BY time ASC|DESC] [LIMIT n] [OFFSET n] [SLIMIT n]
/// [SOFFSET n] [tz('...')]`
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SelectStatement {
    /// At least one.
    pub fields: Vec<Field>,
    /// `INTO` target (never a regex). Parsed so it can be rejected or
    /// implemented by the executor.
    pub into: Option<Measurement>,
    /// At least one.
    pub sources: Vec<Source>,
    pub condition: Option<Expr>,
    pub group_by: GroupBy,
    /// `fill(...)`; [`Fill::Null`] when absent, as in InfluxQL.
    pub fill: Fill,
    /// `ORDER BY time DESC`.
    pub order_desc: bool,
    /// Maximum points per series; `None` = unlimited.
    pub limit: Option<u64>,
    pub offset: u64,
    /// Maximum number of series; `None` = unlimited.
    pub slimit: Option<u64>,
    pub soffset: u64,
    /// `tz('Europe/Paris')`, unvalidated IANA zone name.
    pub tz: Option<String>,
}

impl SelectStatement {
    /// Output column names of the fields (without the leading `time`
    /// column), resolved as InfluxDB does: aliases first, then generated
    /// names ([`Field::name`]), with clashes renamed `name_1`, `name_2`, ...
    pub fn column_names(&self) -> Vec<String> {
        use std::collections::HashMap;
        let mut names: Vec<Option<String>> = vec![None; self.fields.len()];
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, f) in self.fields.iter().enumerate() {
            if let Some(a) = &f.alias {
                names[i] = Some(a.clone());
                seen.insert(a.clone(), 1);
            }
        }
        for (i, f) in self.fields.iter().enumerate() {
            if names[i].is_some() {
                continue;
            }
            let mut name = f.name();
            if let Some(&count) = seen.get(&name) {
                let mut count = count;
                loop {
                    let candidate = format!("{name}_{count}");
                    if !seen.contains_key(&candidate) {
                        seen.insert(name.clone(), count + 1);
                        name = candidate;
                        break;
                    }
                    count += 1;
                }
            }
            *seen.entry(name.clone()).or_insert(0) += 1;
            names[i] = Some(name);
        }
        names.into_iter().map(Option::unwrap_or_default).collect()
    }

    /// True when any field calls a function (the query aggregates or
    /// transforms instead of returning raw points).
    pub fn has_calls(&self) -> bool {
        self.fields.iter().any(|f| {
            let mut found = false;
            f.expr.walk(&mut |e| found |= matches!(e, Expr::Call { .. }));
            found
        })
    }
}

/// One output column of a `SELECT`.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub expr: Expr,
    pub alias: Option<String>,
}

impl Field {
    /// The column name InfluxDB gives this field: the alias; else a call's
    /// function name (`mean` for `mean(v)`, `derivative` for
    /// `derivative(mean(v))`); else a variable's name; for arithmetic, the
    /// names of the variables and calls it contains joined with `_`
    /// (`mean(a) + mean(b)` is `mean_mean`). Empty for literals.
    pub fn name(&self) -> String {
        match &self.alias {
            Some(a) => a.clone(),
            None => expr_name(&self.expr),
        }
    }
}

fn expr_name(e: &Expr) -> String {
    match e {
        Expr::Call { name, .. } => name.clone(),
        Expr::VarRef { name, .. } => name.clone(),
        Expr::Paren(inner) => expr_name(inner),
        Expr::Binary { .. } => {
            fn collect(e: &Expr, out: &mut Vec<String>) {
                match e {
                    Expr::VarRef { name, .. } => out.push(name.clone()),
                    Expr::Call { name, .. } => out.push(name.clone()),
                    Expr::Binary { lhs, rhs, .. } => {
                        collect(lhs, out);
                        collect(rhs, out);
                    }
                    Expr::Paren(inner) => collect(inner, out),
                    _ => {}
                }
            }
            let mut names = Vec::new();
            collect(e, &mut names);
            names.join("_")
        }
        _ => String::new(),
    }
}

/// A data source of `FROM`.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// `m`, `rp.m`, `db.rp.m`, `db..m`, `/regex/`, `db.rp./regex/`.
    /// Subqueries are not supported.
    Measurement(Measurement),
}

/// A measurement reference, optionally qualified by database and retention
/// policy. Empty qualifiers (`db..m`) are `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub database: Option<String>,
    pub retention_policy: Option<String>,
    pub name: MeasurementName,
}

impl Measurement {
    /// An unqualified measurement by name.
    pub fn named(name: impl Into<String>) -> Self {
        Measurement { database: None, retention_policy: None, name: MeasurementName::Name(name.into()) }
    }
}

/// A measurement name or a regex matching measurement names.
#[derive(Debug, Clone, PartialEq)]
pub enum MeasurementName {
    Name(String),
    Regex(RegexLiteral),
}

impl MeasurementName {
    /// True if `name` is this measurement or matches this regex.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            MeasurementName::Name(n) => n == name,
            MeasurementName::Regex(re) => re.is_match(name),
        }
    }
}

/// `GROUP BY` dimensions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GroupBy {
    /// `time(interval[, offset])`; at most one.
    pub time: Option<TimeDimension>,
    /// Tag dimensions in query order.
    pub tags: Vec<TagDimension>,
}

impl GroupBy {
    pub fn is_empty(&self) -> bool {
        self.time.is_none() && self.tags.is_empty()
    }
}

/// `time(interval[, offset])`: windows of `interval_ns` starting at
/// multiples of the interval shifted by `offset_ns` (which may be negative).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeDimension {
    /// Always > 0.
    pub interval_ns: i64,
    pub offset_ns: i64,
}

/// A non-time `GROUP BY` dimension.
#[derive(Debug, Clone, PartialEq)]
pub enum TagDimension {
    /// A tag key (`host`, `"host"`, `host::tag`).
    Name(String),
    /// `*`: every tag.
    Wildcard,
    /// `/regex/`: every tag whose key matches.
    Regex(RegexLiteral),
}

/// `fill(...)`: what to emit for empty `GROUP BY time` windows.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Fill {
    /// `fill(null)`, the default: emit the window with null values.
    #[default]
    Null,
    /// `fill(none)`: omit empty windows.
    None,
    /// `fill(previous)`: repeat the previous window's value.
    Previous,
    /// `fill(linear)`: interpolate between neighbours.
    Linear,
    /// `fill(1.5)`.
    Number(f64),
    /// `fill(0)`.
    Integer(i64),
}

/// `WITH KEY ...` of `SHOW TAG VALUES`.
#[derive(Debug, Clone, PartialEq)]
pub enum TagKeyFilter {
    /// `= "key"`
    Eq(String),
    /// `!= "key"`
    NotEq(String),
    /// `IN ("a", "b")`
    In(Vec<String>),
    /// `=~ /re/`
    Regex(RegexLiteral),
    /// `!~ /re/`
    NotRegex(RegexLiteral),
}

impl TagKeyFilter {
    /// True if tag key `key` is selected by this filter.
    pub fn matches(&self, key: &str) -> bool {
        match self {
            TagKeyFilter::Eq(k) => k == key,
            TagKeyFilter::NotEq(k) => k != key,
            TagKeyFilter::In(ks) => ks.iter().any(|k| k == key),
            TagKeyFilter::Regex(re) => re.is_match(key),
            TagKeyFilter::NotRegex(re) => !re.is_match(key),
        }
    }
}

/// Options of `CREATE DATABASE ... WITH ...`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetentionPolicySpec {
    /// Nanoseconds; `Some(0)` means infinite (`INF`).
    pub duration: Option<i64>,
    pub replication: Option<u32>,
    pub shard_duration: Option<i64>,
    /// Name of the default retention policy to create.
    pub name: Option<String>,
}

impl RetentionPolicySpec {
    fn is_empty(&self) -> bool {
        self.duration.is_none()
            && self.replication.is_none()
            && self.shard_duration.is_none()
            && self.name.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_follow_influxdb() {
        let call = |name: &str, args: Vec<Expr>| Expr::Call { name: name.into(), args };
        let field = |expr: Expr| Field { expr, alias: None };
        let s = SelectStatement {
            fields: vec![
                field(call("mean", vec![Expr::var("v")])),
                field(call("mean", vec![Expr::var("w")])),
                field(Expr::binary(
                    BinaryOp::Add,
                    call("mean", vec![Expr::var("a")]),
                    call("max", vec![Expr::var("b")]),
                )),
                field(Expr::binary(BinaryOp::Mul, Expr::var("v"), Expr::Integer(2))),
                Field { expr: call("max", vec![Expr::var("v")]), alias: Some("mean_1".into()) },
                field(call("mean", vec![Expr::var("x")])),
            ],
            ..SelectStatement::default()
        };
        assert_eq!(s.column_names(), vec!["mean", "mean_2", "mean_max", "v", "mean_1", "mean_3"]);
        assert!(s.has_calls());
    }
}
