//! Condition helpers the planner needs: the time bounds of a `WHERE` clause, and the split
//! of the rest into predicates decided per series (tags) and per point (fields).

use crate::ast::{BinaryOp, DataType, Expr};
use crate::time::parse_time;

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
    use crate::time::{NANOS_PER_MINUTE, NANOS_PER_SECOND};

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
}
