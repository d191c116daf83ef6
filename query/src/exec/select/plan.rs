//! Planning: one measurement of a `SELECT` turned into a [`Plan`]: the columns, the fields
//! to scan, the compiled condition, the index predicate and the shape of the query.

use strata_engine::{FieldType, SeriesId, SeriesKey, TagPredicate};

use crate::ast::{BinaryOp, DataType, Expr, Field, SelectStatement, TagDimension, WildcardKind};
use crate::condition::split_tag_condition;
use crate::error::QueryError;
use crate::exec::agg::AggKind;
use crate::exec::eval::{compile, CExpr, V};
use crate::exec::source::SeriesSource;
use crate::exec::transform::TKind;
use crate::exec::QueryContext;
use crate::result::Value;

/// Where a row slot's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum SlotSrc {
    /// Index into the scan's fields.
    Field(usize),
    Tag(String),
}

#[derive(Debug)]
pub(super) struct CallSpec {
    pub(super) kind: AggKind,
    /// Index into the scan's fields.
    pub(super) field: usize,
    /// Row slot of the field (for the row path).
    pub(super) slot: usize,
}

#[derive(Debug)]
pub(super) enum AggOut {
    Expr(CExpr),
    Transform { kind: TKind, call: usize },
}

#[derive(Debug)]
pub(super) struct RawTransform {
    pub(super) kind: TKind,
    pub(super) slot: usize,
}

/// Which points a [`Mode::Points`] query picks per group and bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PointPick {
    First,
    Last,
    Min,
    Max,
    /// The n largest values (ties: the earlier point).
    Top(usize),
    /// The n smallest values (ties: the earlier point).
    Bottom(usize),
}

/// A selector that reports whole points: `last(temp), host, msg` (InfluxDB returns the
/// selected point's other fields and tags) and `top()`/`bottom()`.
#[derive(Debug)]
pub(super) struct PointsSpec {
    pub(super) pick: PointPick,
    /// Row slot of the selected field.
    pub(super) value: usize,
    /// `top(f, tag, ..., n)`: at most one point per combination of these tags, which are also
    /// columns.
    pub(super) tag_args: Vec<String>,
    /// The other columns, evaluated on the selected point, and whether each is a tag.
    pub(super) aux: Vec<(CExpr, bool)>,
}

#[derive(Debug)]
pub(super) enum Mode {
    Raw { exprs: Vec<CExpr>, tag_only: Vec<bool> },
    Points(PointsSpec),
    Agg { calls: Vec<CallSpec>, outs: Vec<AggOut> },
    RawTransform { outs: Vec<RawTransform> },
}

/// The values of a series' `GROUP BY` tags, in `GROUP BY` order (`""` for a missing tag).
pub(super) type GroupKey = Vec<String>;

pub(super) struct Plan {
    pub(super) measurement: String,
    pub(super) columns: Vec<String>,
    pub(super) scan_fields: Vec<String>,
    pub(super) slots: Vec<SlotSrc>,
    pub(super) cond: Option<CExpr>,
    pub(super) tag_pred: TagPredicate,
    /// Tag condition the index cannot answer, evaluated per series over `tag_filter_slots`.
    pub(super) tag_filter: Option<(CExpr, Vec<String>)>,
    pub(super) group_tags: Vec<String>,
    pub(super) mode: Mode,
}

impl Plan {
    /// The group a series belongs to.
    pub(super) fn group_key(&self, key: &SeriesKey) -> GroupKey {
        self.group_tags.iter().map(|t| key.tag(t).unwrap_or("").to_owned()).collect()
    }
}

/// True when a series key passes the tag condition the index cannot answer.
pub(super) fn tag_filter_ok(plan: &Plan, key: &strata_engine::SeriesKey) -> bool {
    match &plan.tag_filter {
        None => true,
        Some((e, names)) => {
            let slots: Vec<V<'_>> = names.iter().map(|n| V::S(key.tag(n).unwrap_or(""))).collect();
            e.test(&slots)
        }
    }
}

pub(super) fn field_type_ok(dt: Option<DataType>, ty: FieldType) -> bool {
    match dt {
        None | Some(DataType::Field) => true,
        Some(DataType::Float) => ty == FieldType::F64,
        Some(DataType::Integer) => ty == FieldType::I64,
        Some(DataType::Unsigned) => ty == FieldType::U64,
        Some(DataType::String) => ty == FieldType::Str,
        Some(DataType::Boolean) => ty == FieldType::Bool,
        Some(DataType::Tag) => false,
    }
}

/// Whether a field of type `ty` can be read as `dt` in a raw column: its own type, or a
/// numeric cast between float, integer and unsigned (InfluxDB converts the values:
/// `usage::integer` truncates, `count::float` widens).
pub(super) fn castable(dt: Option<DataType>, ty: FieldType) -> bool {
    let numeric = matches!(ty, FieldType::F64 | FieldType::I64 | FieldType::U64);
    match dt {
        Some(DataType::Float | DataType::Integer | DataType::Unsigned) => numeric,
        _ => field_type_ok(dt, ty),
    }
}

/// Expands `*` fields and `f(*)` calls against the measurement's schema.
pub(super) fn expand_fields(
    stmt: &SelectStatement,
    fields: &[(String, FieldType)],
    tags: &[String],
    group_tags: &[String],
) -> Vec<Field> {
    let mut out = Vec::new();
    for f in &stmt.fields {
        // `*` and a raw `/regex/` (InfluxDB matches it against field and tag keys alike).
        let wildcard = match &f.expr {
            Expr::Wildcard(kind) => Some((*kind, None)),
            Expr::Regex(re) => Some((WildcardKind::All, Some(re))),
            _ => None,
        };
        match &f.expr {
            _ if wildcard.is_some() => {
                let (kind, re) = wildcard.expect("checked by the guard");
                let wanted = |n: &str| re.is_none_or(|re| re.is_match(n));
                let mut names: Vec<(String, Option<DataType>)> = Vec::new();
                if kind != WildcardKind::Tags {
                    names.extend(
                        fields
                            .iter()
                            .filter(|(n, _)| wanted(n))
                            .map(|(n, _)| (n.clone(), Some(DataType::Field))),
                    );
                }
                if kind != WildcardKind::Fields {
                    names.extend(
                        tags.iter()
                            .filter(|t| !group_tags.contains(t) && !fields.iter().any(|(n, _)| n == *t))
                            .filter(|t| wanted(t))
                            .map(|t| (t.clone(), Some(DataType::Tag))),
                    );
                }
                names.sort_by(|a, b| a.0.cmp(&b.0));
                for (name, dt) in names {
                    out.push(Field { expr: Expr::VarRef { name, data_type: dt }, alias: None });
                }
            }
            Expr::Call { name, args }
                if matches!(args.first(), Some(Expr::Wildcard(_)) | Some(Expr::Regex(_))) =>
            {
                let kind = AggKind::from_name(name);
                for (fname, ty) in fields {
                    if let Some(Expr::Regex(re)) = args.first() {
                        if !re.is_match(fname) {
                            continue;
                        }
                    }
                    if kind.is_some_and(|k| !k.accepts(*ty)) {
                        continue;
                    }
                    let mut new_args = args.clone();
                    new_args[0] = Expr::VarRef { name: fname.clone(), data_type: None };
                    let alias = Some(format!("{}_{fname}", f.alias.as_deref().unwrap_or(name)));
                    out.push(Field { expr: Expr::Call { name: name.clone(), args: new_args }, alias });
                }
            }
            _ => out.push(f.clone()),
        }
    }
    out
}

pub(super) fn has_call(e: &Expr) -> bool {
    let mut found = false;
    e.walk(&mut |x| found |= matches!(x, Expr::Call { .. }));
    found
}

/// Field keys (with a type) and tag keys of several measurements together.
pub(super) type Schema = (Vec<(String, FieldType)>, Vec<String>);

/// The union of the measurements' field and tag keys when there are several: InfluxDB
/// expands `*`, `/regex/` and `f(*)` against it, so every measurement's series has the same
/// columns (null where the measurement lacks one). `None` for a single measurement.
pub(super) fn union_schema(
    ctx: &QueryContext<'_>,
    db: &str,
    measurements: &[String],
) -> Result<Option<Schema>, QueryError> {
    if measurements.len() < 2 {
        return Ok(None);
    }
    let (mut fields, mut tags): Schema = (Vec::new(), Vec::new());
    for m in measurements {
        for (f, ty) in ctx.engine.field_keys(db, m)? {
            if !fields.iter().any(|(g, _)| *g == f) {
                fields.push((f, ty));
            }
        }
        for t in ctx.engine.tag_keys(db, m)? {
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
    }
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    tags.sort();
    Ok(Some((fields, tags)))
}

pub(super) fn plan_measurement(
    ctx: &QueryContext<'_>,
    db: &str,
    measurement: &str,
    stmt: &SelectStatement,
    rest: Option<&Expr>,
    schema: Option<&Schema>,
) -> Result<Option<Plan>, QueryError> {
    let fields = ctx.engine.field_keys(db, measurement)?;
    let tags = ctx.engine.tag_keys(db, measurement)?;
    let is_field = |n: &str| fields.iter().any(|(f, _)| f == n);
    let is_tag = |n: &str| tags.iter().any(|t| t == n) && !is_field(n);

    // GROUP BY tags.
    let mut group_tags: Vec<String> = Vec::new();
    for d in &stmt.group_by.tags {
        match d {
            TagDimension::Name(n) => {
                if !group_tags.contains(n) {
                    group_tags.push(n.clone())
                }
            }
            TagDimension::Wildcard => {
                for t in &tags {
                    if !group_tags.contains(t) {
                        group_tags.push(t.clone())
                    }
                }
            }
            TagDimension::Regex(re) => {
                for t in tags.iter().filter(|t| re.is_match(t)) {
                    if !group_tags.contains(t) {
                        group_tags.push(t.clone())
                    }
                }
            }
        }
    }
    group_tags.sort();

    let expanded = match schema {
        Some((all_fields, all_tags)) => expand_fields(stmt, all_fields, all_tags, &group_tags),
        None => expand_fields(stmt, &fields, &tags, &group_tags),
    };
    if expanded.is_empty() {
        return Ok(None);
    }
    let columns = SelectStatement { fields: expanded.clone(), ..Default::default() }.column_names();

    let mut scan_fields: Vec<String> = Vec::new();
    let mut slots: Vec<SlotSrc> = Vec::new();
    let slot_of =
        |name: &str, dt: Option<DataType>, slots: &mut Vec<SlotSrc>, scan_fields: &mut Vec<String>| {
            let src = if dt == Some(DataType::Tag) || (dt.is_none() && is_tag(name)) {
                SlotSrc::Tag(name.to_owned())
            } else if let Some((_, ty)) = fields.iter().find(|(f, _)| f == name) {
                if !castable(dt, *ty) {
                    return None;
                }
                let i = scan_fields.iter().position(|f| f == name).unwrap_or_else(|| {
                    scan_fields.push(name.to_owned());
                    scan_fields.len() - 1
                });
                SlotSrc::Field(i)
            } else {
                return None;
            };
            Some(slots.iter().position(|s| *s == src).unwrap_or_else(|| {
                slots.push(src);
                slots.len() - 1
            }))
        };

    // Conditions.
    let split = rest.map(|c| split_tag_condition(c, |n| is_tag(n)));
    let (tag_cond, field_cond) = split.map(|s| (s.tags, s.fields)).unwrap_or((None, None));
    let (tag_pred, tag_filter) = match &tag_cond {
        None => (TagPredicate::All, None),
        Some(c) => match to_tag_predicate(c) {
            Some(p) => (p, None),
            None => {
                let mut names: Vec<String> = Vec::new();
                let e = compile(c, &mut |x| match x {
                    Expr::VarRef { name, .. } => {
                        Some(names.iter().position(|n| n == name).unwrap_or_else(|| {
                            names.push(name.clone());
                            names.len() - 1
                        }))
                    }
                    _ => None,
                });
                (TagPredicate::All, Some((e, names)))
            }
        },
    };

    let points = plan_points(&expanded, &mut |n, dt| {
        let s = slot_of(n, dt, &mut slots, &mut scan_fields)?;
        Some((s, matches!(slots[s], SlotSrc::Tag(_))))
    })?;
    if let Some(spec) = points {
        let Some(spec) = spec else { return Ok(None) };
        // Columns: the selector, top()'s tag arguments, then the other fields.
        let mut columns = vec![columns[0].clone()];
        columns.extend(spec.tag_args.iter().cloned());
        columns
            .extend(SelectStatement { fields: expanded[1..].to_vec(), ..Default::default() }.column_names());
        let cond = field_cond.as_ref().map(|c| {
            compile(c, &mut |x| match x {
                Expr::VarRef { name, data_type } => slot_of(name, *data_type, &mut slots, &mut scan_fields),
                _ => None,
            })
        });
        return Ok(Some(Plan {
            measurement: measurement.to_owned(),
            columns,
            scan_fields,
            slots,
            cond,
            tag_pred,
            tag_filter,
            group_tags,
            mode: Mode::Points(spec),
        }));
    }

    let any_call = expanded.iter().any(|f| has_call(&f.expr));
    let all_call = expanded
        .iter()
        .all(|f| has_call(&f.expr) || matches!(f.expr.strip_parens(), Expr::Number(_) | Expr::Integer(_)));
    if any_call && !all_call {
        return Err(QueryError::MixedAggregate);
    }

    let mode = if !any_call {
        if stmt.group_by.time.is_some() {
            return Err(QueryError::Invalid("GROUP BY requires at least one aggregate function".into()));
        }
        let mut exprs = Vec::new();
        let mut tag_only = Vec::new();
        for f in &expanded {
            let mut only_tags = true;
            let mut any_var = false;
            let e = compile(&f.expr, &mut |x| match x {
                Expr::VarRef { name, data_type } => {
                    any_var = true;
                    let s = slot_of(name, *data_type, &mut slots, &mut scan_fields);
                    // A field, or a name the measurement does not have: not a tag.
                    if s.is_none_or(|s| !matches!(slots[s], SlotSrc::Tag(_))) {
                        only_tags = false;
                    }
                    s
                }
                _ => None,
            });
            exprs.push(e);
            tag_only.push(only_tags && any_var);
        }
        // Only tags (or only names the measurement lacks): InfluxDB 1.x answers nothing.
        if tag_only.iter().all(|t| *t) {
            return Ok(None);
        }
        Mode::Raw { exprs, tag_only }
    } else {
        // Top-level transformations?
        let is_transform = |e: &Expr| matches!(e.strip_parens(), Expr::Call { name, .. } if TKind::from_name(name).is_some());
        let n_trans = expanded.iter().filter(|f| is_transform(&f.expr)).count();
        let raw_transform = n_trans > 0
            && expanded.iter().all(|f| match f.expr.strip_parens() {
                Expr::Call { name, args } if TKind::from_name(name).is_some() => {
                    matches!(args.first().map(Expr::strip_parens), Some(Expr::VarRef { .. }))
                }
                _ => false,
            });
        if raw_transform {
            if stmt.group_by.time.is_some() {
                let name = match expanded[0].expr.strip_parens() {
                    Expr::Call { name, .. } => name.clone(),
                    _ => String::new(),
                };
                return Err(QueryError::invalid_call(&name, "aggregate function required inside the call"));
            }
            let mut outs = Vec::new();
            for f in &expanded {
                let Expr::Call { name, args } = f.expr.strip_parens() else { unreachable!("checked above") };
                let Some(Expr::VarRef { name: v, data_type }) = args.first().map(Expr::strip_parens) else {
                    unreachable!("checked above")
                };
                let kind = TKind::parse(name, args.get(1), None)?;
                let Some(slot) = slot_of(v, *data_type, &mut slots, &mut scan_fields) else {
                    continue;
                };
                outs.push(RawTransform { kind, slot });
            }
            if outs.is_empty() {
                return Ok(None);
            }
            Mode::RawTransform { outs }
        } else {
            let mut calls: Vec<CallSpec> = Vec::new();
            let mut outs = Vec::new();
            let mut err: Option<QueryError> = None;
            let mut add_call = |name: &str,
                                args: &[Expr],
                                slots: &mut Vec<SlotSrc>,
                                scan_fields: &mut Vec<String>,
                                err: &mut Option<QueryError>|
             -> Option<usize> {
                let Some(mut kind) = AggKind::from_name(name) else {
                    *err = Some(QueryError::Unsupported { what: format!("{name}()") });
                    return None;
                };
                if let AggKind::Percentile(_) = kind {
                    let p = match args.get(1).map(Expr::strip_parens) {
                        Some(Expr::Integer(i)) => *i as f64,
                        Some(Expr::Number(f)) => *f,
                        _ => {
                            *err = Some(QueryError::invalid_call(
                                name,
                                "expected float argument in percentile()",
                            ));
                            return None;
                        }
                    };
                    kind = AggKind::Percentile(p);
                }
                if let AggKind::Integral { .. } = kind {
                    match args.get(1).map(Expr::strip_parens) {
                        None => {}
                        Some(Expr::Duration(d)) if *d > 0 => kind = AggKind::Integral { unit: *d },
                        Some(other) => {
                            *err = Some(QueryError::invalid_call(
                                name,
                                format!("second argument must be a duration, got {other}"),
                            ));
                            return None;
                        }
                    }
                }
                let (v, dt) = match args.first().map(Expr::strip_parens) {
                    Some(Expr::VarRef { name, data_type }) => (name.as_str(), *data_type),
                    // count(distinct(f)): the parser allows no other nesting of aggregates.
                    Some(Expr::Call { name: inner, args: inner_args })
                        if name == "count" && inner == "distinct" =>
                    {
                        kind = AggKind::CountDistinct;
                        match inner_args.first().map(Expr::strip_parens) {
                            Some(Expr::VarRef { name, data_type }) => (name.as_str(), *data_type),
                            _ => {
                                *err = Some(QueryError::invalid_call(inner, "expected field argument"));
                                return None;
                            }
                        }
                    }
                    Some(Expr::Call { .. }) => {
                        *err = Some(QueryError::invalid_call(name, "expected field argument, got a call"));
                        return None;
                    }
                    _ => {
                        *err = Some(QueryError::invalid_call(name, "expected field argument"));
                        return None;
                    }
                };
                // Calls read the field as stored: a cast must name its own type.
                if fields.iter().any(|(f, ty)| f == v && !field_type_ok(dt, *ty)) {
                    return None;
                }
                // A numeric aggregate of a string field fails the statement, with InfluxDB's
                // message (it names its Go iterator type).
                if matches!(name, "mean" | "sum" | "median" | "stddev" | "spread")
                    && fields.iter().any(|(f, ty)| f == v && *ty == FieldType::Str)
                {
                    *err = Some(QueryError::Invalid(format!(
                        "unsupported {name} iterator type: *query.stringInterruptIterator"
                    )));
                    return None;
                }
                let slot = slot_of(v, dt, slots, scan_fields)?;
                let SlotSrc::Field(field) = slots[slot] else { return None };
                calls.push(CallSpec { kind, field, slot });
                Some(calls.len() - 1)
            };
            for f in &expanded {
                match f.expr.strip_parens() {
                    Expr::Call { name, args } if TKind::from_name(name).is_some() => {
                        if stmt.group_by.time.is_none() {
                            return Err(QueryError::Invalid(format!(
                                "{name} aggregate requires a GROUP BY interval"
                            )));
                        }
                        let kind =
                            TKind::parse(name, args.get(1), stmt.group_by.time.map(|t| t.interval_ns))?;
                        let Some(Expr::Call { name: inner, args: inner_args }) =
                            args.first().map(Expr::strip_parens)
                        else {
                            return Err(QueryError::invalid_call(
                                name,
                                "expected an aggregate call as argument",
                            ));
                        };
                        match add_call(inner, inner_args, &mut slots, &mut scan_fields, &mut err) {
                            Some(call) => outs.push(AggOut::Transform { kind, call }),
                            None => outs.push(AggOut::Expr(CExpr::Const(Value::Null))),
                        }
                    }
                    e => {
                        let compiled = compile(e, &mut |x| match x {
                            Expr::Call { name, args } => {
                                if TKind::from_name(name).is_some() {
                                    err = Some(QueryError::Unsupported {
                                        what: format!("{name}() inside an expression"),
                                    });
                                    return None;
                                }
                                add_call(name, args, &mut slots, &mut scan_fields, &mut err)
                            }
                            _ => None,
                        });
                        outs.push(AggOut::Expr(compiled));
                    }
                }
                if let Some(e) = err.take() {
                    return Err(e);
                }
            }
            // distinct() yields several rows per bucket: nothing can share them (InfluxDB's rule).
            let has_distinct = calls.iter().any(|c| c.kind == AggKind::Distinct);
            if has_distinct && !(outs.len() == 1 && matches!(outs[0], AggOut::Expr(CExpr::Slot(_)))) {
                return Err(QueryError::Invalid(
                    "aggregate function distinct() cannot be combined with other functions or fields".into(),
                ));
            }
            Mode::Agg { calls, outs }
        }
    };

    let cond = field_cond.as_ref().map(|c| {
        compile(c, &mut |x| match x {
            Expr::VarRef { name, data_type } => slot_of(name, *data_type, &mut slots, &mut scan_fields),
            _ => None,
        })
    });
    Ok(Some(Plan {
        measurement: measurement.to_owned(),
        columns,
        scan_fields,
        slots,
        cond,
        tag_pred,
        tag_filter,
        group_tags,
        mode,
    }))
}

/// A name's row slot and whether it holds a tag (`None`: no such field or tag).
type SlotOf<'a> = dyn FnMut(&str, Option<DataType>) -> Option<(usize, bool)> + 'a;

/// The [`Mode::Points`] plan of a statement whose first field is `top()`/`bottom()`, or
/// `first/last/min/max(f)` followed only by plain fields and tags; `None` for other shapes.
/// `Some(None)`: the selected field does not exist here (the measurement answers nothing).
/// `slot_of` gives a name's row slot and whether it holds a tag.
fn plan_points(
    expanded: &[Field],
    slot_of: &mut SlotOf<'_>,
) -> Result<Option<Option<PointsSpec>>, QueryError> {
    let Some(Expr::Call { name, args }) = expanded.first().map(|f| f.expr.strip_parens()) else {
        return Ok(None);
    };
    let plain = |f: &Field| matches!(f.expr.strip_parens(), Expr::VarRef { .. });
    let rest_plain = expanded[1..].iter().all(plain);
    let pick = match name.as_str() {
        "top" | "bottom" => {
            let Some(Expr::Integer(n)) = args.last() else { return Ok(None) };
            let n = usize::try_from(*n).unwrap_or(usize::MAX);
            if name == "top" {
                PointPick::Top(n)
            } else {
                PointPick::Bottom(n)
            }
        }
        "first" if expanded.len() > 1 => PointPick::First,
        "last" if expanded.len() > 1 => PointPick::Last,
        "min" if expanded.len() > 1 => PointPick::Min,
        "max" if expanded.len() > 1 => PointPick::Max,
        _ => return Ok(None),
    };
    if !rest_plain {
        if matches!(pick, PointPick::Top(_) | PointPick::Bottom(_)) {
            return Err(QueryError::Invalid(format!(
                "selector function {name}() cannot be combined with other functions"
            )));
        }
        return Ok(None);
    }
    let Some(Expr::VarRef { name: field, data_type }) = args.first().map(Expr::strip_parens) else {
        return Ok(None);
    };
    let tag_args: Vec<String> = match pick {
        PointPick::Top(_) | PointPick::Bottom(_) => args[1..args.len() - 1]
            .iter()
            .filter_map(|a| match a {
                Expr::VarRef { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let Some((value, false)) = slot_of(field, *data_type) else { return Ok(Some(None)) };
    let mut aux = Vec::new();
    for f in &expanded[1..] {
        let mut is_tag = false;
        let e = compile(&f.expr, &mut |x| match x {
            Expr::VarRef { name, data_type } => {
                let (s, tag) = slot_of(name, *data_type)?;
                is_tag = tag;
                Some(s)
            }
            _ => None,
        });
        aux.push((e, is_tag));
    }
    Ok(Some(Some(PointsSpec { pick, value, tag_args, aux })))
}

/// Converts a tag condition to an index predicate, if it only uses what the index answers.
pub fn to_tag_predicate(e: &Expr) -> Option<TagPredicate> {
    match e.strip_parens() {
        Expr::Binary { op: BinaryOp::And, lhs, rhs } => {
            Some(TagPredicate::and(to_tag_predicate(lhs)?, to_tag_predicate(rhs)?))
        }
        Expr::Binary { op: BinaryOp::Or, lhs, rhs } => {
            Some(TagPredicate::or(to_tag_predicate(lhs)?, to_tag_predicate(rhs)?))
        }
        Expr::Bool(true) => Some(TagPredicate::All),
        Expr::Binary { op, lhs, rhs } => {
            let (name, other) = match (lhs.strip_parens(), rhs.strip_parens()) {
                (Expr::VarRef { name, .. }, o) => (name.clone(), o),
                (o, Expr::VarRef { name, .. }) if matches!(op, BinaryOp::Eq | BinaryOp::Neq) => {
                    (name.clone(), o)
                }
                _ => return None,
            };
            match (op, other) {
                (BinaryOp::Eq, Expr::String(v)) => Some(TagPredicate::Eq(name, v.clone())),
                (BinaryOp::Neq, Expr::String(v)) => Some(TagPredicate::NotEq(name, v.clone())),
                (BinaryOp::EqRegex, Expr::Regex(re)) => Some(TagPredicate::Regex(name, re.regex().clone())),
                (BinaryOp::NeqRegex, Expr::Regex(re)) => {
                    Some(TagPredicate::NotRegex(name, re.regex().clone()))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// The series a plan reads: the index's answer to its tag predicate, minus those failing the
/// tag condition the index cannot answer (checked on the key, before any data is read).
pub(super) fn matching_series(
    source: &dyn SeriesSource,
    db: &str,
    plan: &Plan,
) -> Result<Vec<SeriesId>, QueryError> {
    let series = source.series(db, &plan.measurement, &plan.tag_pred)?;
    Ok(series.into_iter().filter(|(_, key)| tag_filter_ok(plan, key)).map(|(id, _)| id).collect())
}
