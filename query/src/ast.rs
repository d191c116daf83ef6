//! Typed syntax tree of Strata's query language, its printer, and the
//! condition helpers the planner needs.
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

use std::fmt;

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

// ---------------------------------------------------------------------------
// Expressions
// ---------------------------------------------------------------------------

/// An expression: a field expression in `SELECT`, or a condition in `WHERE`.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Binary {
        op: BinaryOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// A function call; `name` is lower case and listed in [`FUNCTIONS`], and
    /// the arguments passed the arity and type checks of the parser.
    Call {
        name: String,
        args: Vec<Expr>,
    },
    /// A field, tag or `time`, with an optional `::type` cast.
    VarRef {
        name: String,
        data_type: Option<DataType>,
    },
    /// `*`, `*::field` or `*::tag`; only a whole field or a call argument.
    Wildcard(WildcardKind),
    /// Float literal, always finite.
    Number(f64),
    Integer(i64),
    String(String),
    Bool(bool),
    /// Duration literal in nanoseconds (`10s`, `1h30m`, `-5m`).
    Duration(i64),
    /// Absolute time in nanoseconds since the epoch; the parser produces it
    /// from a string compared with `time`.
    Time(i64),
    /// `/regex/`, already compiled.
    Regex(RegexLiteral),
    /// `now()`
    Now,
    /// `( expr )`
    Paren(Box<Expr>),
}

impl Expr {
    /// `lhs op rhs`.
    pub fn binary(op: BinaryOp, lhs: Expr, rhs: Expr) -> Expr {
        Expr::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs) }
    }

    /// An untyped variable reference.
    pub fn var(name: impl Into<String>) -> Expr {
        Expr::VarRef { name: name.into(), data_type: None }
    }

    /// True for a reference to the `time` column.
    pub fn is_time_ref(&self) -> bool {
        matches!(self, Expr::VarRef { name, data_type: None } if name == "time")
    }

    /// The expression without enclosing parentheses.
    pub fn strip_parens(&self) -> &Expr {
        let mut e = self;
        while let Expr::Paren(inner) = e {
            e = inner;
        }
        e
    }

    /// Calls `f` on this expression and every sub-expression, parents first.
    pub fn walk<'a, F: FnMut(&'a Expr)>(&'a self, f: &mut F) {
        f(self);
        match self {
            Expr::Binary { lhs, rhs, .. } => {
                lhs.walk(f);
                rhs.walk(f);
            }
            Expr::Call { args, .. } => {
                for a in args {
                    a.walk(f);
                }
            }
            Expr::Paren(inner) => inner.walk(f),
            _ => {}
        }
    }

    /// True if `time` is referenced anywhere in this expression.
    pub fn references_time(&self) -> bool {
        let mut found = false;
        self.walk(&mut |e| found |= e.is_time_ref());
        found
    }

    /// The variable references in this expression, in order.
    pub fn var_refs(&self) -> Vec<(&str, Option<DataType>)> {
        let mut out = Vec::new();
        self.walk(&mut |e| {
            if let Expr::VarRef { name, data_type } = e {
                out.push((name.as_str(), *data_type));
            }
        });
        out
    }
}

/// Binary operators, from loosest to tightest binding:
/// `OR` < `AND` < comparisons < `+ - | ^` < `* / % &` (all left-associative).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    BitAnd,
    BitOr,
    BitXor,
    Eq,
    /// `!=` or `<>`.
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    /// `=~`
    EqRegex,
    /// `!~`
    NeqRegex,
    And,
    Or,
}

impl BinaryOp {
    /// Binding strength, as in InfluxQL: 1 (`OR`) to 5 (`*`).
    pub fn precedence(self) -> u8 {
        use BinaryOp::*;
        match self {
            Or => 1,
            And => 2,
            Eq | Neq | Lt | Lte | Gt | Gte | EqRegex | NeqRegex => 3,
            Add | Sub | BitOr | BitXor => 4,
            Mul | Div | Mod | BitAnd => 5,
        }
    }

    /// True for `= != < <= > >= =~ !~`.
    pub fn is_comparison(self) -> bool {
        self.precedence() == 3
    }

    /// True for `+ - * / % & | ^`.
    pub fn is_arithmetic(self) -> bool {
        self.precedence() >= 4
    }

    /// The operator with its operands swapped: `a < b` is `b > a`.
    pub fn flip(self) -> BinaryOp {
        use BinaryOp::*;
        match self {
            Lt => Gt,
            Lte => Gte,
            Gt => Lt,
            Gte => Lte,
            other => other,
        }
    }

    pub fn as_str(self) -> &'static str {
        use BinaryOp::*;
        match self {
            Add => "+",
            Sub => "-",
            Mul => "*",
            Div => "/",
            Mod => "%",
            BitAnd => "&",
            BitOr => "|",
            BitXor => "^",
            Eq => "=",
            Neq => "!=",
            Lt => "<",
            Lte => "<=",
            Gt => ">",
            Gte => ">=",
            EqRegex => "=~",
            NeqRegex => "!~",
            And => "AND",
            Or => "OR",
        }
    }
}

impl fmt::Display for BinaryOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The type named by a `::type` cast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Float,
    Integer,
    Unsigned,
    String,
    Boolean,
    /// `::field`: any field, never a tag.
    Field,
    /// `::tag`: a tag, never a field.
    Tag,
}

impl DataType {
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Float => "float",
            DataType::Integer => "integer",
            DataType::Unsigned => "unsigned",
            DataType::String => "string",
            DataType::Boolean => "boolean",
            DataType::Field => "field",
            DataType::Tag => "tag",
        }
    }

    /// Parses a cast name, case-insensitively.
    pub fn from_name(name: &str) -> Option<DataType> {
        Some(match name.to_ascii_lowercase().as_str() {
            "float" => DataType::Float,
            "integer" => DataType::Integer,
            "unsigned" => DataType::Unsigned,
            "string" => DataType::String,
            "boolean" => DataType::Boolean,
            "field" => DataType::Field,
            "tag" => DataType::Tag,
            _ => return None,
        })
    }
}

/// Which columns a `*` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WildcardKind {
    /// `*`: fields and tags.
    All,
    /// `*::field`
    Fields,
    /// `*::tag`
    Tags,
}

/// Compiled-size limit for regexes in queries (bytes of compiled program and
/// of lazy DFA cache; the regex crate's default is 10 MiB). A regex like
/// `/(a{1000}){1000}/` is refused at parse time instead of allocating
/// gigabytes, and compiling the largest accepted regex takes about 10 ms.
/// Grafana's multi-value variables produce alternations of names: a
/// thousand 10-character names need about 480 KiB.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A regex literal: the source text (between the slashes, with `\/`
/// unescaped) and the compiled regex. Equality compares the source.
#[derive(Clone)]
pub struct RegexLiteral {
    source: String,
    regex: regex::Regex,
}

impl RegexLiteral {
    /// Compiles `source` with the [`REGEX_SIZE_LIMIT`] applied. Matching is
    /// unanchored, as in InfluxQL: use `^...$` to match whole values.
    pub fn new(source: impl Into<String>) -> Result<Self, regex::Error> {
        let source = source.into();
        let regex = regex::RegexBuilder::new(&source)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()?;
        Ok(RegexLiteral { source, regex })
    }

    /// The regex source as written (with `\/` unescaped to `/`).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn regex(&self) -> &regex::Regex {
        &self.regex
    }

    pub fn is_match(&self, haystack: &str) -> bool {
        self.regex.is_match(haystack)
    }
}

impl PartialEq for RegexLiteral {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for RegexLiteral {}

impl fmt::Debug for RegexLiteral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/", self.source)
    }
}

impl fmt::Display for RegexLiteral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("/")?;
        // Only `/` needs escaping: the lexer keeps every other backslash
        // verbatim, and reads `\\/` as `\` followed by an escaped `/`.
        for c in self.source.chars() {
            if c == '/' {
                f.write_str("\\/")?;
            } else {
                write!(f, "{c}")?;
            }
        }
        f.write_str("/")
    }
}

// ---------------------------------------------------------------------------
// Functions
// ---------------------------------------------------------------------------

/// How a function consumes points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionKind {
    /// Computes one value per window from all points (`mean`, `count`).
    Aggregate,
    /// Picks one point per window (`max`, `first`, `percentile`); its
    /// timestamp can be reported.
    Selector,
    /// Produces a series from a series (`derivative`, `moving_average`);
    /// its first argument may be an aggregate call when grouping by time.
    Transformation,
}

/// A function the parser accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionSpec {
    pub name: &'static str,
    pub kind: FunctionKind,
    pub min_args: usize,
    pub max_args: usize,
}

const fn spec(name: &'static str, kind: FunctionKind, min: usize, max: usize) -> FunctionSpec {
    FunctionSpec { name, kind, min_args: min, max_args: max }
}

/// Every function the language knows. Calls to anything else are parse
/// errors (`undefined function foo()`).
pub const FUNCTIONS: &[FunctionSpec] = &[
    spec("count", FunctionKind::Aggregate, 1, 1),
    spec("distinct", FunctionKind::Aggregate, 1, 1),
    spec("integral", FunctionKind::Aggregate, 1, 2),
    spec("mean", FunctionKind::Aggregate, 1, 1),
    spec("median", FunctionKind::Aggregate, 1, 1),
    spec("mode", FunctionKind::Aggregate, 1, 1),
    spec("spread", FunctionKind::Aggregate, 1, 1),
    spec("stddev", FunctionKind::Aggregate, 1, 1),
    spec("sum", FunctionKind::Aggregate, 1, 1),
    spec("first", FunctionKind::Selector, 1, 1),
    spec("last", FunctionKind::Selector, 1, 1),
    spec("max", FunctionKind::Selector, 1, 1),
    spec("min", FunctionKind::Selector, 1, 1),
    spec("percentile", FunctionKind::Selector, 2, 2),
    spec("cumulative_sum", FunctionKind::Transformation, 1, 1),
    spec("derivative", FunctionKind::Transformation, 1, 2),
    spec("difference", FunctionKind::Transformation, 1, 1),
    spec("elapsed", FunctionKind::Transformation, 1, 2),
    spec("moving_average", FunctionKind::Transformation, 2, 2),
    spec("non_negative_derivative", FunctionKind::Transformation, 1, 2),
    spec("non_negative_difference", FunctionKind::Transformation, 1, 1),
];

/// Looks a function up by (lower-case) name.
pub fn function_spec(name: &str) -> Option<&'static FunctionSpec> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

// ---------------------------------------------------------------------------
// Display
// ---------------------------------------------------------------------------

/// True if `name` must be double-quoted to be read back as this identifier.
pub fn ident_needs_quotes(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        None => return true,
        Some(c) if !(c.is_ascii_alphabetic() || c == '_') => return true,
        _ => {}
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return true;
    }
    crate::lexer::Keyword::lookup(name).is_some()
}

/// An identifier as query text: bare if possible, else double-quoted with
/// `\`, `"` and newline escaped.
pub fn quote_ident(name: &str) -> String {
    if !ident_needs_quotes(name) {
        return name.to_string();
    }
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A string literal as query text: single-quoted with `\`, `'` and newline
/// escaped.
pub fn quote_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A float literal that reads back as the same `f64` and as a float (never
/// as an integer): Rust's shortest round-trip formatting, plus `.0` when it
/// has no decimal point. Rust never uses exponent notation here, which
/// InfluxQL could not read.
pub fn format_float(v: f64) -> String {
    let s = format!("{v}");
    if s.contains('.') || !v.is_finite() {
        s
    } else {
        s + ".0"
    }
}

fn write_list<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

// Printing recurses once per tree level, so the recursive arms call
// `Display::fmt` directly (no `write!` frame in between) and the leaves are
// printed by a separate function: unoptimized builds give every local of
// every match arm its own stack slot.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Binary { op, lhs, rhs } => {
                let lhs_parens =
                    matches!(**lhs, Expr::Binary { op: l, .. } if l.precedence() < op.precedence());
                let rhs_parens =
                    matches!(**rhs, Expr::Binary { op: r, .. } if r.precedence() <= op.precedence());
                fmt_operand(lhs, lhs_parens, f)?;
                f.write_str(" ")?;
                f.write_str(op.as_str())?;
                f.write_str(" ")?;
                fmt_operand(rhs, rhs_parens, f)
            }
            Expr::Call { name, args } => {
                f.write_str(name)?;
                f.write_str("(")?;
                for (i, arg) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    fmt::Display::fmt(arg, f)?;
                }
                f.write_str(")")
            }
            Expr::Paren(inner) => fmt_operand(inner, true, f),
            leaf => fmt_leaf(leaf, f),
        }
    }
}

fn fmt_operand(e: &Expr, parens: bool, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if parens {
        f.write_str("(")?;
    }
    fmt::Display::fmt(e, f)?;
    if parens {
        f.write_str(")")?;
    }
    Ok(())
}

#[inline(never)]
fn fmt_leaf(e: &Expr, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match e {
        Expr::VarRef { name, data_type } => {
            f.write_str(&quote_ident(name))?;
            if let Some(t) = data_type {
                write!(f, "::{}", t.as_str())?;
            }
            Ok(())
        }
        Expr::Wildcard(kind) => f.write_str(match kind {
            WildcardKind::All => "*",
            WildcardKind::Fields => "*::field",
            WildcardKind::Tags => "*::tag",
        }),
        Expr::Number(v) => f.write_str(&format_float(*v)),
        Expr::Integer(v) => write!(f, "{v}"),
        Expr::String(s) => f.write_str(&quote_string(s)),
        Expr::Bool(b) => f.write_str(if *b { "true" } else { "false" }),
        Expr::Duration(d) => f.write_str(&format_duration(*d)),
        Expr::Time(t) => f.write_str(&quote_string(&format_time(*t))),
        Expr::Regex(re) => write!(f, "{re}"),
        Expr::Now => f.write_str("now()"),
        Expr::Binary { .. } | Expr::Call { .. } | Expr::Paren(_) => fmt::Display::fmt(e, f),
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.expr)?;
        if let Some(a) = &self.alias {
            write!(f, " AS {}", quote_ident(a))?;
        }
        Ok(())
    }
}

impl fmt::Display for MeasurementName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MeasurementName::Name(n) => f.write_str(&quote_ident(n)),
            MeasurementName::Regex(re) => write!(f, "{re}"),
        }
    }
}

impl fmt::Display for Measurement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.database, &self.retention_policy) {
            (Some(db), Some(rp)) => write!(f, "{}.{}.", quote_ident(db), quote_ident(rp))?,
            (Some(db), None) => write!(f, "{}..", quote_ident(db))?,
            (None, Some(rp)) => write!(f, "{}.", quote_ident(rp))?,
            (None, None) => {}
        }
        write!(f, "{}", self.name)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Measurement(m) => write!(f, "{m}"),
        }
    }
}

impl fmt::Display for TagDimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TagDimension::Name(n) => f.write_str(&quote_ident(n)),
            TagDimension::Wildcard => f.write_str("*"),
            TagDimension::Regex(re) => write!(f, "{re}"),
        }
    }
}

impl fmt::Display for TimeDimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "time({}", format_duration(self.interval_ns))?;
        if self.offset_ns != 0 {
            write!(f, ", {}", format_duration(self.offset_ns))?;
        }
        f.write_str(")")
    }
}

impl fmt::Display for GroupBy {
    /// The dimension list without `GROUP BY`; time first.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        if let Some(t) = &self.time {
            write!(f, "{t}")?;
            first = false;
        }
        for d in &self.tags {
            if !first {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
            first = false;
        }
        Ok(())
    }
}

impl fmt::Display for Fill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fill::Null => f.write_str("fill(null)"),
            Fill::None => f.write_str("fill(none)"),
            Fill::Previous => f.write_str("fill(previous)"),
            Fill::Linear => f.write_str("fill(linear)"),
            Fill::Number(v) => write!(f, "fill({})", format_float(*v)),
            Fill::Integer(v) => write!(f, "fill({v})"),
        }
    }
}

impl fmt::Display for TagKeyFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TagKeyFilter::Eq(k) => write!(f, "= {}", quote_ident(k)),
            TagKeyFilter::NotEq(k) => write!(f, "!= {}", quote_ident(k)),
            TagKeyFilter::In(ks) => {
                f.write_str("IN (")?;
                for (i, k) in ks.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    f.write_str(&quote_ident(k))?;
                }
                f.write_str(")")
            }
            TagKeyFilter::Regex(re) => write!(f, "=~ {re}"),
            TagKeyFilter::NotRegex(re) => write!(f, "!~ {re}"),
        }
    }
}

impl fmt::Display for SelectStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SELECT ")?;
        write_list(f, &self.fields)?;
        if let Some(into) = &self.into {
            write!(f, " INTO {into}")?;
        }
        f.write_str(" FROM ")?;
        write_list(f, &self.sources)?;
        if let Some(c) = &self.condition {
            write!(f, " WHERE {c}")?;
        }
        if !self.group_by.is_empty() {
            write!(f, " GROUP BY {}", self.group_by)?;
        }
        if self.fill != Fill::Null {
            write!(f, " {}", self.fill)?;
        }
        if self.order_desc {
            f.write_str(" ORDER BY time DESC")?;
        }
        write_limits(f, self.limit, self.offset)?;
        if let Some(n) = self.slimit {
            write!(f, " SLIMIT {n}")?;
        }
        if self.soffset != 0 {
            write!(f, " SOFFSET {}", self.soffset)?;
        }
        if let Some(tz) = &self.tz {
            write!(f, " tz({})", quote_string(tz))?;
        }
        Ok(())
    }
}

fn write_limits(f: &mut fmt::Formatter<'_>, limit: Option<u64>, offset: u64) -> fmt::Result {
    if let Some(n) = limit {
        write!(f, " LIMIT {n}")?;
    }
    if offset != 0 {
        write!(f, " OFFSET {offset}")?;
    }
    Ok(())
}

fn write_on(f: &mut fmt::Formatter<'_>, database: &Option<String>) -> fmt::Result {
    if let Some(db) = database {
        write!(f, " ON {}", quote_ident(db))?;
    }
    Ok(())
}

fn write_from(f: &mut fmt::Formatter<'_>, sources: &[Source]) -> fmt::Result {
    if !sources.is_empty() {
        f.write_str(" FROM ")?;
        write_list(f, sources)?;
    }
    Ok(())
}

fn write_where(f: &mut fmt::Formatter<'_>, condition: &Option<Expr>) -> fmt::Result {
    if let Some(c) = condition {
        write!(f, " WHERE {c}")?;
    }
    Ok(())
}

/// A retention duration: 0 is infinite.
fn format_retention(ns: i64) -> String {
    if ns == 0 {
        "INF".to_string()
    } else {
        format_duration(ns)
    }
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Statement::Select(s) => write!(f, "{s}"),
            Statement::ShowDatabases => f.write_str("SHOW DATABASES"),
            Statement::ShowMeasurements { database, measurement, condition, limit, offset } => {
                f.write_str("SHOW MEASUREMENTS")?;
                write_on(f, database)?;
                match measurement {
                    Some(MeasurementName::Name(n)) => write!(f, " WITH MEASUREMENT = {}", quote_ident(n))?,
                    Some(MeasurementName::Regex(re)) => write!(f, " WITH MEASUREMENT =~ {re}")?,
                    None => {}
                }
                write_where(f, condition)?;
                write_limits(f, *limit, *offset)
            }
            Statement::ShowTagKeys { database, sources, condition, limit, offset } => {
                f.write_str("SHOW TAG KEYS")?;
                write_on(f, database)?;
                write_from(f, sources)?;
                write_where(f, condition)?;
                write_limits(f, *limit, *offset)
            }
            Statement::ShowTagValues { database, sources, key, condition, limit, offset } => {
                f.write_str("SHOW TAG VALUES")?;
                write_on(f, database)?;
                write_from(f, sources)?;
                write!(f, " WITH KEY {key}")?;
                write_where(f, condition)?;
                write_limits(f, *limit, *offset)
            }
            Statement::ShowFieldKeys { database, sources, limit, offset } => {
                f.write_str("SHOW FIELD KEYS")?;
                write_on(f, database)?;
                write_from(f, sources)?;
                write_limits(f, *limit, *offset)
            }
            Statement::ShowSeries { database, sources, condition, limit, offset } => {
                f.write_str("SHOW SERIES")?;
                write_on(f, database)?;
                write_from(f, sources)?;
                write_where(f, condition)?;
                write_limits(f, *limit, *offset)
            }
            Statement::ShowRetentionPolicies { database } => {
                f.write_str("SHOW RETENTION POLICIES")?;
                write_on(f, database)
            }
            Statement::ShowContinuousQueries => f.write_str("SHOW CONTINUOUS QUERIES"),
            Statement::CreateContinuousQuery { name, database, select } => write!(
                f,
                "CREATE CONTINUOUS QUERY {} ON {} BEGIN {} END",
                quote_ident(name),
                quote_ident(database),
                Statement::Select((**select).clone())
            ),
            Statement::DropContinuousQuery { name, database } => {
                write!(f, "DROP CONTINUOUS QUERY {} ON {}", quote_ident(name), quote_ident(database))
            }
            Statement::CreateDatabase { name, retention } => {
                write!(f, "CREATE DATABASE {}", quote_ident(name))?;
                if let Some(rp) = retention.as_ref().filter(|rp| !rp.is_empty()) {
                    f.write_str(" WITH")?;
                    if let Some(d) = rp.duration {
                        write!(f, " DURATION {}", format_retention(d))?;
                    }
                    if let Some(n) = rp.replication {
                        write!(f, " REPLICATION {n}")?;
                    }
                    if let Some(d) = rp.shard_duration {
                        write!(f, " SHARD DURATION {}", format_duration(d))?;
                    }
                    if let Some(n) = &rp.name {
                        write!(f, " NAME {}", quote_ident(n))?;
                    }
                }
                Ok(())
            }
            Statement::DropDatabase { name } => write!(f, "DROP DATABASE {}", quote_ident(name)),
            Statement::CreateRetentionPolicy {
                name,
                database,
                duration,
                replication,
                shard_duration,
                default,
            } => {
                write!(
                    f,
                    "CREATE RETENTION POLICY {} ON {} DURATION {} REPLICATION {replication}",
                    quote_ident(name),
                    quote_ident(database),
                    format_retention(*duration),
                )?;
                if let Some(d) = shard_duration {
                    write!(f, " SHARD DURATION {}", format_duration(*d))?;
                }
                if *default {
                    f.write_str(" DEFAULT")?;
                }
                Ok(())
            }
            Statement::AlterRetentionPolicy {
                name,
                database,
                duration,
                replication,
                shard_duration,
                default,
            } => {
                write!(f, "ALTER RETENTION POLICY {} ON {}", quote_ident(name), quote_ident(database))?;
                if let Some(d) = duration {
                    write!(f, " DURATION {}", format_retention(*d))?;
                }
                if let Some(n) = replication {
                    write!(f, " REPLICATION {n}")?;
                }
                if let Some(d) = shard_duration {
                    write!(f, " SHARD DURATION {}", format_duration(*d))?;
                }
                if *default {
                    f.write_str(" DEFAULT")?;
                }
                Ok(())
            }
            Statement::DropRetentionPolicy { name, database } => {
                write!(f, "DROP RETENTION POLICY {} ON {}", quote_ident(name), quote_ident(database))
            }
            Statement::Delete { sources, condition } => {
                f.write_str("DELETE")?;
                write_from(f, sources)?;
                write_where(f, condition)
            }
            Statement::DropSeries { sources, condition } => {
                f.write_str("DROP SERIES")?;
                write_from(f, sources)?;
                write_where(f, condition)
            }
            Statement::DropMeasurement { name } => {
                write!(f, "DROP MEASUREMENT {}", quote_ident(name))
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Durations and timestamps
// ---------------------------------------------------------------------------

pub const NANOS_PER_MICRO: i64 = 1_000;
pub const NANOS_PER_MILLI: i64 = 1_000_000;
pub const NANOS_PER_SECOND: i64 = 1_000_000_000;
pub const NANOS_PER_MINUTE: i64 = 60 * NANOS_PER_SECOND;
pub const NANOS_PER_HOUR: i64 = 60 * NANOS_PER_MINUTE;
pub const NANOS_PER_DAY: i64 = 24 * NANOS_PER_HOUR;
pub const NANOS_PER_WEEK: i64 = 7 * NANOS_PER_DAY;

/// Why a duration literal was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration")]
    Invalid,
    #[error("overflowed duration: choose a smaller duration or INF")]
    Overflow,
}

/// Parses an InfluxQL duration: an optional `-`, then one or more
/// `<digits><unit>` groups with units `ns`, `u`/`µ`, `ms`, `s`, `m`, `h`,
/// `d`, `w` (`10s`, `1h30m`, `1700000000000ms`). Returns nanoseconds.
pub fn parse_duration(s: &str) -> Result<i64, DurationError> {
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if body.is_empty() {
        return Err(DurationError::Invalid);
    }
    let mut total: i128 = 0;
    let mut rest = body;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits == rest.len() {
            return Err(DurationError::Invalid);
        }
        // At most 39 digits fit an i128; anything that long overflows anyway.
        if digits > 30 {
            return Err(DurationError::Overflow);
        }
        let n: i128 = rest[..digits].parse().map_err(|_| DurationError::Invalid)?;
        rest = &rest[digits..];
        let (unit, len) = if let Some(r) = rest.strip_prefix("ns") {
            (1, rest.len() - r.len())
        } else if let Some(r) = rest.strip_prefix("ms") {
            (NANOS_PER_MILLI, rest.len() - r.len())
        } else {
            let c = rest.chars().next().ok_or(DurationError::Invalid)?;
            let unit = match c {
                'u' | 'µ' => NANOS_PER_MICRO,
                's' => NANOS_PER_SECOND,
                'm' => NANOS_PER_MINUTE,
                'h' => NANOS_PER_HOUR,
                'd' => NANOS_PER_DAY,
                'w' => NANOS_PER_WEEK,
                _ => return Err(DurationError::Invalid),
            };
            (unit, c.len_utf8())
        };
        rest = &rest[len..];
        total += n * i128::from(unit);
        if total > i128::from(i64::MAX) + 1 {
            return Err(DurationError::Overflow);
        }
    }
    let total = if negative { -total } else { total };
    i64::try_from(total).map_err(|_| DurationError::Overflow)
}

/// Formats nanoseconds as an InfluxQL duration literal using the largest unit
/// that divides it exactly (`90m`, `1500ms`, `0s`), as InfluxQL's
/// `FormatDuration` does. [`parse_duration`] reads it back exactly.
pub fn format_duration(ns: i64) -> String {
    const UNITS: [(i64, &str); 7] = [
        (NANOS_PER_WEEK, "w"),
        (NANOS_PER_DAY, "d"),
        (NANOS_PER_HOUR, "h"),
        (NANOS_PER_MINUTE, "m"),
        (NANOS_PER_SECOND, "s"),
        (NANOS_PER_MILLI, "ms"),
        (NANOS_PER_MICRO, "u"),
    ];
    if ns == 0 {
        return "0s".to_string();
    }
    for (unit, suffix) in UNITS {
        if ns % unit == 0 {
            return format!("{}{suffix}", ns / unit);
        }
    }
    format!("{ns}ns")
}

/// Why a time string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeParseError {
    #[error("invalid time string '{0}'")]
    Invalid(String),
    #[error("time '{0}' is outside the range of nanosecond timestamps (1677-09-21 to 2262-04-11)")]
    OutOfRange(String),
}

fn digits_at(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = b.get(at..at + n)?;
    if !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |acc, d| acc * 10 + u32::from(d - b'0')))
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses a time string as InfluxQL accepts them, returning nanoseconds
/// since the epoch:
/// - RFC 3339: `2024-01-01T00:00:00Z`, `2024-01-01T00:00:00.123456789Z`,
///   `2024-01-01T02:00:00+02:00`;
/// - `2024-01-01 00:00:00` and `2024-01-01 00:00:00.5` (UTC);
/// - `2024-01-01` (midnight UTC).
///
/// Fractions have 1 to 9 digits; a missing zone means UTC. Hand-written to
/// avoid a date-time dependency for three formats.
pub fn parse_time(s: &str) -> Result<i64, TimeParseError> {
    let invalid = || TimeParseError::Invalid(s.to_string());
    let b = s.as_bytes();
    let year = digits_at(b, 0, 4).ok_or_else(invalid)?;
    let month = digits_at(b, 5, 2).ok_or_else(invalid)?;
    let day = digits_at(b, 8, 2).ok_or_else(invalid)?;
    if b[4] != b'-' || b[7] != b'-' {
        return Err(invalid());
    }
    let year = i64::from(year);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(invalid());
    }
    let (mut hour, mut minute, mut second, mut nanos) = (0u32, 0u32, 0u32, 0u32);
    let mut offset_secs: i64 = 0;
    let mut i = 10;
    if b.len() > 10 {
        if !matches!(b[10], b'T' | b't' | b' ') {
            return Err(invalid());
        }
        hour = digits_at(b, 11, 2).ok_or_else(invalid)?;
        minute = digits_at(b, 14, 2).ok_or_else(invalid)?;
        second = digits_at(b, 17, 2).ok_or_else(invalid)?;
        if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
            return Err(invalid());
        }
        if hour > 23 || minute > 59 || second > 59 {
            return Err(invalid());
        }
        i = 19;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let n = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 || n > 9 {
                return Err(invalid());
            }
            let frac = digits_at(b, i, n).ok_or_else(invalid)?;
            nanos = frac * 10u32.pow(9 - n as u32);
            i += n;
        }
        match b.get(i) {
            None => {}
            Some(b'Z' | b'z') => i += 1,
            Some(&sign @ (b'+' | b'-')) => {
                let oh = digits_at(b, i + 1, 2).ok_or_else(invalid)?;
                let om = digits_at(b, i + 4, 2).ok_or_else(invalid)?;
                if b.get(i + 3) != Some(&b':') || oh > 23 || om > 59 {
                    return Err(invalid());
                }
                let secs = i64::from(oh * 3600 + om * 60);
                offset_secs = if sign == b'+' { secs } else { -secs };
                i += 6;
            }
            Some(_) => return Err(invalid()),
        }
    }
    if i != b.len() {
        return Err(invalid());
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_secs;
    let ns = i128::from(secs) * i128::from(NANOS_PER_SECOND) + i128::from(nanos);
    i64::try_from(ns).map_err(|_| TimeParseError::OutOfRange(s.to_string()))
}

/// Formats nanoseconds since the epoch as RFC 3339 in UTC with the fraction
/// trimmed of trailing zeros (Go's `RFC3339Nano`): `2024-01-01T00:00:00Z`,
/// `2024-01-01T00:00:00.5Z`.
pub fn format_time(ns: i64) -> String {
    let mut out = String::with_capacity(30);
    write_time(&mut out, ns);
    out
}

/// [`format_time`] appended to `out`, without allocating: result encoders call it per row,
/// and going through `core::fmt` for the seven fixed-width numbers was a sixth of the
/// in-process time of a one-series, 60-row query.
pub fn write_time(out: &mut String, ns: i64) {
    fn digits(buf: &mut [u8], mut v: u64) {
        for b in buf.iter_mut().rev() {
            *b = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    let secs = ns.div_euclid(NANOS_PER_SECOND);
    let mut frac = ns.rem_euclid(NANOS_PER_SECOND) as u64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u64;
    let (y, m, d) = civil_from_days(days);
    // Years of i64 nanoseconds are 1677..=2262: always four digits.
    let mut b = *b"0000-00-00T00:00:00.000000000Z";
    digits(&mut b[0..4], y as u64);
    digits(&mut b[5..7], m as u64);
    digits(&mut b[8..10], d as u64);
    digits(&mut b[11..13], sod / 3600);
    digits(&mut b[14..16], sod % 3600 / 60);
    digits(&mut b[17..19], sod % 60);
    let len = if frac == 0 {
        19
    } else {
        let mut n = 9;
        while frac.is_multiple_of(10) {
            frac /= 10;
            n -= 1;
        }
        digits(&mut b[20..20 + n], frac);
        20 + n
    };
    b[len] = b'Z';
    out.push_str(std::str::from_utf8(&b[..=len]).expect("ASCII digits and separators"));
}

// ---------------------------------------------------------------------------
// Condition helpers
// ---------------------------------------------------------------------------

/// Inclusive time bounds in nanoseconds; `None` is unbounded on that side.
/// `time > x` becomes `min = x + 1`, `time < y` becomes `max = y - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeRange {
    pub min: Option<i64>,
    pub max: Option<i64>,
}

impl TimeRange {
    /// True if no timestamp satisfies the bounds (`min > max`).
    pub fn is_empty(&self) -> bool {
        matches!((self.min, self.max), (Some(a), Some(b)) if a > b)
    }

    pub fn contains(&self, t: i64) -> bool {
        self.min.is_none_or(|m| t >= m) && self.max.is_none_or(|m| t <= m)
    }

    fn raise_min(&mut self, v: i64) {
        self.min = Some(self.min.map_or(v, |m| m.max(v)));
    }

    fn lower_max(&mut self, v: i64) {
        self.max = Some(self.max.map_or(v, |m| m.min(v)));
    }
}

/// Why the time terms of a condition could not be turned into bounds.
/// Messages follow InfluxDB's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeConditionError {
    #[error("cannot use OR with time conditions")]
    Or,
    #[error("invalid time comparison operator: {op}")]
    Operator { op: BinaryOp },
    #[error("invalid time condition: {expr}")]
    Value { expr: String },
    #[error("time value overflows in {expr}")]
    Overflow { expr: String },
}

/// Splits `cond` into the time bounds it imposes and the rest of the
/// condition.
///
/// Time terms are comparisons `time <op> value` or `value <op> time` with
/// `op` one of `= < <= > >=`, combined with the rest by `AND` (at any depth,
/// through parentheses). Values are `now()`, [`Expr::Time`], time strings,
/// integers (nanoseconds), floats (truncated nanoseconds), durations
/// (nanoseconds since the epoch, so `1700000000000ms` is an epoch in ms), and
/// `+`/`-` combinations of those (`now() - 1h`). Several terms intersect.
///
/// Errors: `time` under an `OR`, `!=`/`=~`/`!~` on time, or a value that is
/// not a time. The returned condition has every time term removed, keeps
/// the other terms' structure (and parentheses), and is `None` if nothing
/// but time terms was there.
pub fn split_time_condition(
    cond: &Expr,
    now_ns: i64,
) -> Result<(TimeRange, Option<Expr>), TimeConditionError> {
    let mut range = TimeRange::default();
    let rest = strip_time(cond, now_ns, &mut range)?;
    Ok((range, rest))
}

/// The time bounds of `cond` (see [`split_time_condition`]).
pub fn time_range(cond: &Expr, now_ns: i64) -> Result<TimeRange, TimeConditionError> {
    split_time_condition(cond, now_ns).map(|(r, _)| r)
}

fn strip_time(e: &Expr, now: i64, range: &mut TimeRange) -> Result<Option<Expr>, TimeConditionError> {
    match e {
        Expr::Paren(inner) => Ok(strip_time(inner, now, range)?.map(|x| Expr::Paren(Box::new(x)))),
        Expr::Binary { op: BinaryOp::And, lhs, rhs } => {
            let l = strip_time(lhs, now, range)?;
            let r = strip_time(rhs, now, range)?;
            Ok(match (l, r) {
                (None, None) => None,
                (Some(x), None) | (None, Some(x)) => Some(x),
                (Some(l), Some(r)) => Some(Expr::binary(BinaryOp::And, l, r)),
            })
        }
        Expr::Binary { op: BinaryOp::Or, .. } => {
            if e.references_time() {
                Err(TimeConditionError::Or)
            } else {
                Ok(Some(e.clone()))
            }
        }
        Expr::Binary { op, lhs, rhs } if op.is_comparison() && (lhs.is_time_ref() || rhs.is_time_ref()) => {
            let (op, value) = if lhs.is_time_ref() { (*op, &**rhs) } else { (op.flip(), &**lhs) };
            let v = eval_time(value, now)?;
            match op {
                BinaryOp::Gt => range.raise_min(v.saturating_add(1)),
                BinaryOp::Gte => range.raise_min(v),
                BinaryOp::Lt => range.lower_max(v.saturating_sub(1)),
                BinaryOp::Lte => range.lower_max(v),
                BinaryOp::Eq => {
                    range.raise_min(v);
                    range.lower_max(v);
                }
                op => return Err(TimeConditionError::Operator { op }),
            }
            Ok(None)
        }
        other => {
            if other.references_time() {
                Err(TimeConditionError::Value { expr: other.to_string() })
            } else {
                Ok(Some(other.clone()))
            }
        }
    }
}

/// Evaluates a time value expression to nanoseconds since the epoch.
fn eval_time(e: &Expr, now: i64) -> Result<i64, TimeConditionError> {
    let value_err = || TimeConditionError::Value { expr: e.to_string() };
    match e {
        Expr::Now => Ok(now),
        Expr::Integer(v) | Expr::Duration(v) | Expr::Time(v) => Ok(*v),
        Expr::Number(v) => {
            let t = v.trunc();
            if t.is_finite() && t >= i64::MIN as f64 && t < i64::MAX as f64 {
                Ok(t as i64)
            } else {
                Err(value_err())
            }
        }
        Expr::String(s) => parse_time(s).map_err(|_| value_err()),
        Expr::Paren(inner) => eval_time(inner, now),
        Expr::Binary { op: op @ (BinaryOp::Add | BinaryOp::Sub), lhs, rhs } => {
            let l = eval_time(lhs, now)?;
            let r = eval_time(rhs, now)?;
            let v = if *op == BinaryOp::Add { l.checked_add(r) } else { l.checked_sub(r) };
            v.ok_or_else(|| TimeConditionError::Overflow { expr: e.to_string() })
        }
        _ => Err(value_err()),
    }
}

/// The terms of a conjunction: `a AND (b AND c)` gives `[a, b, c]`.
/// Parentheses around `AND`s are looked through; other terms are returned
/// as written (possibly parenthesized).
pub fn conjuncts(e: &Expr) -> Vec<&Expr> {
    fn go<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
        match e {
            Expr::Binary { op: BinaryOp::And, lhs, rhs } => {
                go(lhs, out);
                go(rhs, out);
            }
            Expr::Paren(inner) if matches!(inner.strip_parens(), Expr::Binary { op: BinaryOp::And, .. }) => {
                go(inner.strip_parens(), out)
            }
            other => out.push(other),
        }
    }
    let mut out = Vec::new();
    go(e, &mut out);
    out
}

/// `a AND b AND ...` of `terms` (left-associative); `None` for no terms, the
/// term itself for one. When there are several, `OR` terms are
/// parenthesized so the result means what it says.
pub fn conjoin(terms: impl IntoIterator<Item = Expr>) -> Option<Expr> {
    let mut terms: Vec<Expr> = terms.into_iter().collect();
    if terms.len() <= 1 {
        return terms.pop();
    }
    terms
        .into_iter()
        .map(|t| match t {
            Expr::Binary { op: BinaryOp::Or, .. } => Expr::Paren(Box::new(t)),
            t => t,
        })
        .reduce(|acc, t| Expr::binary(BinaryOp::And, acc, t))
}

/// A condition split for execution: `tags` can be decided per series from
/// its tag set alone; `fields` must be evaluated per point (and may also
/// reference tags).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConditionSplit {
    pub tags: Option<Expr>,
    pub fields: Option<Expr>,
}

/// Splits the top-level `AND` terms of `cond` into tag predicates and field
/// predicates. A term is a tag predicate if every variable it references is
/// a tag: cast `::tag`, or uncast and `is_tag(name)`. Terms without
/// variables (`true`) count as tag predicates; anything else (a field, a
/// `::field` cast, `time`) makes the term a field predicate. Remove time
/// terms first with [`split_time_condition`].
pub fn split_tag_condition(cond: &Expr, is_tag: impl Fn(&str) -> bool) -> ConditionSplit {
    let mut tags = Vec::new();
    let mut fields = Vec::new();
    for term in conjuncts(cond) {
        let all_tags = term.var_refs().iter().all(|(name, t)| match t {
            Some(DataType::Tag) => true,
            None => is_tag(name),
            Some(_) => false,
        });
        if all_tags {
            tags.push(term.clone());
        } else {
            fields.push(term.clone());
        }
    }
    ConditionSplit { tags: conjoin(tags), fields: conjoin(fields) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_format() {
        assert_eq!(parse_duration("10s"), Ok(10 * NANOS_PER_SECOND));
        assert_eq!(parse_duration("1h30m"), Ok(NANOS_PER_HOUR + 30 * NANOS_PER_MINUTE));
        assert_eq!(parse_duration("5µ"), Ok(5_000));
        assert_eq!(parse_duration("5u"), Ok(5_000));
        assert_eq!(parse_duration("7ns"), Ok(7));
        assert_eq!(parse_duration("2w"), Ok(2 * NANOS_PER_WEEK));
        assert_eq!(parse_duration("1d"), Ok(NANOS_PER_DAY));
        assert_eq!(parse_duration("1700000000000ms"), Ok(1_700_000_000_000 * NANOS_PER_MILLI));
        assert_eq!(parse_duration("-5m"), Ok(-5 * NANOS_PER_MINUTE));
        assert_eq!(parse_duration("-9223372036854775808ns"), Ok(i64::MIN));
        assert_eq!(parse_duration("9223372036854775808ns"), Err(DurationError::Overflow));
        assert_eq!(parse_duration("100000w"), Err(DurationError::Overflow));
        for bad in ["", "s", "10", "10x", "1n", "5m10", "1.5s", "-", "10us"] {
            assert_eq!(parse_duration(bad), Err(DurationError::Invalid), "{bad}");
        }
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(90 * NANOS_PER_MINUTE), "90m");
        assert_eq!(format_duration(1_500 * NANOS_PER_MILLI), "1500ms");
        assert_eq!(format_duration(-2 * NANOS_PER_WEEK), "-2w");
        assert_eq!(format_duration(1_001), "1001ns");
        assert_eq!(format_duration(i64::MIN), "-9223372036854775808ns");
        for v in [1, 1000, i64::MAX, i64::MIN, -3 * NANOS_PER_DAY] {
            assert_eq!(parse_duration(&format_duration(v)), Ok(v));
        }
    }

    #[test]
    fn times_parse_and_format() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_time("2024-01-01T00:00:00Z"), Ok(1_704_067_200 * NANOS_PER_SECOND));
        assert_eq!(parse_time("2024-01-01"), parse_time("2024-01-01T00:00:00Z"));
        assert_eq!(parse_time("2024-01-01 00:00:00"), parse_time("2024-01-01T00:00:00Z"));
        assert_eq!(parse_time("2024-01-01T02:00:00+02:00"), parse_time("2024-01-01T00:00:00Z"));
        assert_eq!(parse_time("2023-12-31T22:30:00-01:30"), parse_time("2024-01-01T00:00:00Z"));
        assert_eq!(parse_time("2024-01-01T00:00:00.5Z"), Ok(1_704_067_200 * NANOS_PER_SECOND + 500_000_000));
        assert_eq!(parse_time("2024-01-01 00:00:00.000000001"), Ok(1_704_067_200 * NANOS_PER_SECOND + 1));
        assert_eq!(parse_time("2024-02-29"), Ok(1_709_164_800 * NANOS_PER_SECOND));
        assert_eq!(parse_time("1969-12-31T23:59:59.999999999Z"), Ok(-1), "before the epoch");
        for bad in [
            "",
            "2024",
            "2024-13-01",
            "2023-02-29",
            "2024-01-32",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:60Z",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00.1234567891Z",
            "2024-01-01T00:00:00+0200",
            "2024-01-01T00:00",
            "2024-01-01X00:00:00",
            "2024-01-01T00:00:00Zjunk",
            "now",
            "２０２４-01-01",
        ] {
            assert!(matches!(parse_time(bad), Err(TimeParseError::Invalid(_))), "{bad}");
        }
        assert!(matches!(parse_time("2262-04-11T23:47:17Z"), Err(TimeParseError::OutOfRange(_))));
        assert!(matches!(parse_time("1677-09-21T00:12:43Z"), Err(TimeParseError::OutOfRange(_))));
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(format_time(1_704_067_200 * NANOS_PER_SECOND + 500_000_000), "2024-01-01T00:00:00.5Z");
        assert_eq!(format_time(i64::MAX), "2262-04-11T23:47:16.854775807Z");
        assert_eq!(format_time(i64::MIN), "1677-09-21T00:12:43.145224192Z");
        for v in [0, 1, -1, i64::MAX, i64::MIN, 1_709_164_800 * NANOS_PER_SECOND] {
            assert_eq!(parse_time(&format_time(v)), Ok(v));
        }
    }

    #[test]
    fn civil_conversion_round_trips_over_the_whole_range() {
        // Every 97th day from 1677 to 2262 (covers all leap-year rules).
        let mut day = days_from_civil(1677, 9, 21);
        let last = days_from_civil(2262, 4, 11);
        while day <= last {
            let (y, m, d) = civil_from_days(day);
            assert!(d >= 1 && d <= days_in_month(y, m));
            assert_eq!(days_from_civil(y, m, d), day);
            day += 97;
        }
    }

    #[test]
    fn identifiers_are_quoted_only_when_needed() {
        assert_eq!(quote_ident("cpu"), "cpu");
        assert_eq!(quote_ident("_x9"), "_x9");
        assert_eq!(quote_ident("time"), "time");
        assert_eq!(quote_ident("select"), "\"select\"");
        assert_eq!(quote_ident("AND"), "\"AND\"");
        assert_eq!(quote_ident("9lives"), "\"9lives\"");
        assert_eq!(quote_ident("cpu-total"), "\"cpu-total\"");
        assert_eq!(quote_ident(""), "\"\"");
        assert_eq!(quote_ident("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
        assert_eq!(quote_string("it's\\\n"), r"'it\'s\\\n'");
    }

    #[test]
    fn floats_always_print_as_floats() {
        assert_eq!(format_float(1.0), "1.0");
        assert_eq!(format_float(-0.5), "-0.5");
        assert_eq!(format_float(1e21), "1000000000000000000000.0");
        assert_eq!(format_float(1e-7), "0.0000001");
    }

    #[test]
    fn display_adds_parentheses_that_precedence_requires() {
        let a = Expr::var("a");
        let b = Expr::var("b");
        let c = Expr::var("c");
        let sum = Expr::binary(BinaryOp::Add, a.clone(), b.clone());
        let e = Expr::binary(BinaryOp::Mul, sum.clone(), c.clone());
        assert_eq!(e.to_string(), "(a + b) * c");
        let e = Expr::binary(BinaryOp::Sub, c.clone(), sum);
        assert_eq!(e.to_string(), "c - (a + b)");
        let prod = Expr::binary(BinaryOp::Mul, a, b);
        let e = Expr::binary(BinaryOp::Add, prod, c);
        assert_eq!(e.to_string(), "a * b + c");
    }

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

    fn cmp(op: BinaryOp, lhs: Expr, rhs: Expr) -> Expr {
        Expr::binary(op, lhs, rhs)
    }

    #[test]
    fn time_range_extraction() {
        let now = 1_000 * NANOS_PER_SECOND;
        let host = cmp(BinaryOp::Eq, Expr::var("host"), Expr::String("a".into()));
        let cond = Expr::binary(
            BinaryOp::And,
            Expr::binary(
                BinaryOp::And,
                Expr::Paren(Box::new(host.clone())),
                cmp(
                    BinaryOp::Gte,
                    Expr::var("time"),
                    Expr::binary(BinaryOp::Sub, Expr::Now, Expr::Duration(NANOS_PER_MINUTE)),
                ),
            ),
            cmp(BinaryOp::Gt, Expr::Duration(now), Expr::var("time")),
        );
        let (range, rest) = split_time_condition(&cond, now).expect("split");
        assert_eq!(range, TimeRange { min: Some(now - NANOS_PER_MINUTE), max: Some(now - 1) });
        assert_eq!(rest, Some(Expr::Paren(Box::new(host.clone()))));

        // Only time terms: nothing left.
        let only = cmp(BinaryOp::Eq, Expr::var("time"), Expr::Integer(5));
        assert_eq!(split_time_condition(&only, now), Ok((TimeRange { min: Some(5), max: Some(5) }, None)));

        // Strings and floats.
        let s = cmp(BinaryOp::Lt, Expr::var("time"), Expr::String("1970-01-01T00:00:01Z".into()));
        assert_eq!(time_range(&s, now).expect("range").max, Some(NANOS_PER_SECOND - 1));
        let f = cmp(BinaryOp::Gte, Expr::var("time"), Expr::Number(10.7));
        assert_eq!(time_range(&f, now).expect("range").min, Some(10));

        // Contradictions give an empty range.
        let empty = Expr::binary(
            BinaryOp::And,
            cmp(BinaryOp::Gt, Expr::var("time"), Expr::Integer(10)),
            cmp(BinaryOp::Lt, Expr::var("time"), Expr::Integer(5)),
        );
        assert!(time_range(&empty, now).expect("range").is_empty());

        // Errors.
        let or = Expr::binary(BinaryOp::Or, host.clone(), only.clone());
        assert_eq!(split_time_condition(&or, now), Err(TimeConditionError::Or));
        let neq = cmp(BinaryOp::Neq, Expr::var("time"), Expr::Integer(1));
        assert_eq!(split_time_condition(&neq, now), Err(TimeConditionError::Operator { op: BinaryOp::Neq }));
        let bad = cmp(BinaryOp::Gt, Expr::var("time"), Expr::var("host"));
        assert!(matches!(split_time_condition(&bad, now), Err(TimeConditionError::Value { .. })));
        let overflow = cmp(
            BinaryOp::Gt,
            Expr::var("time"),
            Expr::binary(BinaryOp::Add, Expr::Integer(i64::MAX), Expr::Duration(1)),
        );
        assert!(matches!(split_time_condition(&overflow, now), Err(TimeConditionError::Overflow { .. })));
        // No time at all.
        assert_eq!(split_time_condition(&host, now), Ok((TimeRange::default(), Some(host))));
    }

    #[test]
    fn tag_and_field_predicates_are_separated() {
        let is_tag = |n: &str| n == "host" || n == "region";
        let host = cmp(BinaryOp::Eq, Expr::var("host"), Expr::String("a".into()));
        let region_or = Expr::Paren(Box::new(Expr::binary(
            BinaryOp::Or,
            cmp(BinaryOp::Eq, Expr::var("region"), Expr::String("eu".into())),
            cmp(BinaryOp::Eq, Expr::var("region"), Expr::String("us".into())),
        )));
        let value = cmp(BinaryOp::Gt, Expr::var("value"), Expr::Integer(1));
        let mixed = Expr::Paren(Box::new(Expr::binary(BinaryOp::Or, host.clone(), value.clone())));
        let cast = cmp(
            BinaryOp::Eq,
            Expr::VarRef { name: "value".into(), data_type: Some(DataType::Tag) },
            Expr::String("x".into()),
        );
        let cond = conjoin([host.clone(), value.clone(), region_or.clone(), mixed.clone(), cast.clone()])
            .expect("non-empty");
        let split = split_tag_condition(&cond, is_tag);
        assert_eq!(split.tags, conjoin([host, region_or, cast]));
        assert_eq!(split.fields, conjoin([value, mixed]));
    }

    #[test]
    fn conjuncts_look_through_parenthesized_ands() {
        let a = Expr::var("a");
        let b = Expr::var("b");
        let c = Expr::var("c");
        let e = Expr::binary(
            BinaryOp::And,
            a.clone(),
            Expr::Paren(Box::new(Expr::binary(BinaryOp::And, b.clone(), c.clone()))),
        );
        assert_eq!(conjuncts(&e), vec![&a, &b, &c]);
        assert_eq!(conjoin(Vec::new()), None);
        let or = Expr::binary(BinaryOp::Or, a.clone(), b.clone());
        assert_eq!(conjoin([or.clone()]), Some(or), "a single term is not wrapped");
        let or = Expr::binary(BinaryOp::Or, a.clone(), b.clone());
        assert_eq!(
            conjoin([c.clone(), or.clone()]),
            Some(Expr::binary(BinaryOp::And, c, Expr::Paren(Box::new(or))))
        );
    }

    #[test]
    fn regex_literals_compare_by_source_and_escape_slashes() {
        let a = RegexLiteral::new("a/b").expect("valid");
        let b = RegexLiteral::new("a/b").expect("valid");
        assert_eq!(a, b);
        assert_eq!(a.to_string(), r"/a\/b/");
        assert!(a.is_match("xa/by"));
        assert!(RegexLiteral::new("(").is_err());
        assert!(RegexLiteral::new("(a{1000}){1000}").is_err(), "size limit");
    }
}
