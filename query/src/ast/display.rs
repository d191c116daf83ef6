//! The printer: every node as query text that parses back to the same tree.

use std::fmt;

use super::*;
use crate::time::{format_duration, format_time};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
