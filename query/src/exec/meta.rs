//! `SHOW ...`, `CREATE/DROP DATABASE`, retention policies, `DELETE`, `DROP SERIES` and
//! `DROP MEASUREMENT`: answered from the catalog and the engine's lifecycle methods.

use std::collections::BTreeSet;

use strata_engine::{DownsampleRule, RetentionPolicy, TagPredicate, TimeRange as EngineRange};

use super::select::to_tag_predicate;
use super::{resolve_database, resolve_measurements, QueryContext};
use crate::ast::{Expr, MeasurementName, SelectStatement, Source, Statement, TagDimension};
use crate::condition::{split_tag_condition, split_time_condition};
use crate::error::QueryError;
use crate::limits::Meter;
use crate::result::{Series, Value};

fn one_column(name: &str, column: &str, values: impl IntoIterator<Item = String>) -> Series {
    Series {
        name: name.to_owned(),
        tags: None,
        columns: vec![column.to_owned()],
        values: values.into_iter().map(|v| vec![Value::String(v)]).collect(),
    }
}

fn page<T>(v: Vec<T>, limit: Option<u64>, offset: u64) -> Vec<T> {
    v.into_iter().skip(offset as usize).take(limit.map_or(usize::MAX, |l| l as usize)).collect()
}

/// What one listed name costs until it is answered: the `String` itself, then the row it
/// becomes (`Vec<Value>` of one `Value::String`, the same heap bytes moved).
fn name_bytes(name: &str) -> u64 {
    (std::mem::size_of::<String>()
        + std::mem::size_of::<Vec<Value>>()
        + std::mem::size_of::<Value>()
        + name.len()) as u64
}

/// Charges a name about to be listed and checks the deadline every few thousand names: a
/// catalog of millions of series is listed as fast as memory allows, so these loops are the
/// ones that can hold the most and run the longest of a `SHOW`.
fn charge_name(meter: &mut Meter, i: &mut u64, name: &str) -> Result<(), QueryError> {
    meter.tick(*i)?;
    *i += 1;
    meter.add_memory(name_bytes(name))
}

/// Charges the id list a catalog lookup returned (an id and a shared key per series).
fn charge_ids(meter: &mut Meter, n: usize) -> Result<(), QueryError> {
    meter.check_time()?;
    meter.add_memory(16 * n as u64)
}

/// A tag-only condition (time terms removed) as an index predicate.
fn tag_predicate(
    ctx: &QueryContext<'_>,
    cond: Option<&Expr>,
    what: &str,
) -> Result<(TagPredicate, EngineRange), QueryError> {
    let Some(cond) = cond else { return Ok((TagPredicate::All, EngineRange::ALL)) };
    let (range, rest) = split_time_condition(cond, ctx.now_ns)?;
    let engine_range = EngineRange::inclusive(range.min.unwrap_or(i64::MIN), range.max.unwrap_or(i64::MAX));
    let Some(rest) = rest else { return Ok((TagPredicate::All, engine_range)) };
    let split = split_tag_condition(&rest, |_| true);
    let pred = split.tags.as_ref().and_then(to_tag_predicate).ok_or_else(|| {
        QueryError::Invalid(format!(
            "{what}: only tag comparisons (=, !=, =~, !~) with AND/OR are supported in WHERE"
        ))
    })?;
    Ok((pred, engine_range))
}

/// Go's `time.Duration` text for whole seconds (`0s`, `1h0m0s`, `168h0m0s`).
fn go_duration(ns: i64) -> String {
    let s = ns / 1_000_000_000;
    if s == 0 {
        return "0s".into();
    }
    let (h, m, sec) = (s / 3600, s % 3600 / 60, s % 60);
    if h > 0 {
        format!("{h}h{m}m{sec}s")
    } else if m > 0 {
        format!("{m}m{sec}s")
    } else {
        format!("{sec}s")
    }
}

fn unqualified(sources: &[crate::ast::Source]) -> Vec<crate::ast::Source> {
    sources.to_vec()
}

/// Runs a statement other than `SELECT`. What the `SHOW` statements list grows with the
/// catalog (series, tag values, measurements): each name is charged to `meter` before it is
/// copied into the answer, and the deadline is checked as they are listed. The id lists the
/// engine returns are charged after the lookup (they hold 16 bytes per series next to the
/// names the catalog already keeps in memory).
pub(crate) fn execute_meta(
    ctx: &QueryContext<'_>,
    stmt: &Statement,
    meter: &mut Meter,
) -> Result<Vec<Series>, QueryError> {
    let e = ctx.engine;
    let mut listed = 0u64;
    match stmt {
        Statement::Select(_) => unreachable!("SELECT is executed by select()"),
        Statement::ShowDatabases => {
            let mut dbs = e.databases();
            for d in &dbs {
                charge_name(meter, &mut listed, d)?;
            }
            dbs.sort();
            Ok(vec![one_column("databases", "name", dbs)])
        }
        Statement::ShowMeasurements { database, measurement, condition, limit, offset } => {
            let db = resolve_database(ctx, database.as_deref())?;
            let (pred, _) = tag_predicate(ctx, condition.as_ref(), "SHOW MEASUREMENTS")?;
            let mut names = Vec::new();
            for m in e.measurements(&db)? {
                charge_name(meter, &mut listed, &m)?;
                if measurement.as_ref().is_some_and(|f| !f.matches(&m)) {
                    continue;
                }
                if condition.is_some() {
                    let ids = e.series(&db, &m, &pred)?;
                    charge_ids(meter, ids.len())?;
                    meter.release(16 * ids.len() as u64);
                    if ids.is_empty() {
                        continue;
                    }
                }
                names.push(m);
            }
            let names = page(names, *limit, *offset);
            Ok(if names.is_empty() { Vec::new() } else { vec![one_column("measurements", "name", names)] })
        }
        Statement::ShowTagKeys { database, sources, condition, limit, offset } => {
            let db = resolve_database(ctx, database.as_deref())?;
            let (pred, _) = tag_predicate(ctx, condition.as_ref(), "SHOW TAG KEYS")?;
            let mut out = Vec::new();
            for m in resolve_measurements(ctx, &db, sources)? {
                let keys: Vec<String> = if condition.is_some() {
                    let mut set = BTreeSet::new();
                    let ids = e.series(&db, &m, &pred)?;
                    charge_ids(meter, ids.len())?;
                    for (_, key) in ids {
                        for (k, _) in key.tags.iter() {
                            meter.tick(listed)?;
                            listed += 1;
                            if set.insert(k.to_string()) {
                                meter.add_memory(name_bytes(k) + 32)?;
                            }
                        }
                    }
                    set.into_iter().collect()
                } else {
                    let keys = e.tag_keys(&db, &m)?;
                    for k in &keys {
                        charge_name(meter, &mut listed, k)?;
                    }
                    keys
                };
                let keys = page(keys, *limit, *offset);
                if !keys.is_empty() {
                    out.push(one_column(&m, "tagKey", keys));
                }
            }
            Ok(out)
        }
        Statement::ShowTagValues { database, sources, key, condition, limit, offset } => {
            let db = resolve_database(ctx, database.as_deref())?;
            let (pred, _) = tag_predicate(ctx, condition.as_ref(), "SHOW TAG VALUES")?;
            let mut out = Vec::new();
            for m in resolve_measurements(ctx, &db, sources)? {
                let mut rows: Vec<(String, String)> = Vec::new();
                if condition.is_some() {
                    let mut set = BTreeSet::new();
                    let ids = e.series(&db, &m, &pred)?;
                    charge_ids(meter, ids.len())?;
                    for (_, sk) in ids {
                        for (k, v) in &sk.tags {
                            meter.tick(listed)?;
                            listed += 1;
                            if key.matches(k) {
                                let bytes = name_bytes(k) + name_bytes(v) + 32;
                                if set.insert((k.to_string(), v.to_string())) {
                                    meter.add_memory(bytes)?;
                                }
                            }
                        }
                    }
                    rows.extend(set);
                } else {
                    for k in e.tag_keys(&db, &m)?.into_iter().filter(|k| key.matches(k)) {
                        let values = e.tag_values(&db, &m, &k)?;
                        // The engine's list is held while it is copied into rows.
                        let listing: u64 = values.iter().map(|v| 24 + v.len() as u64).sum();
                        meter.add_memory(listing)?;
                        for v in values {
                            charge_name(meter, &mut listed, &k)?;
                            charge_name(meter, &mut listed, &v)?;
                            rows.push((k.clone(), v));
                        }
                        meter.release(listing);
                    }
                }
                let rows = page(rows, *limit, *offset);
                if !rows.is_empty() {
                    out.push(Series {
                        name: m,
                        tags: None,
                        columns: vec!["key".into(), "value".into()],
                        values: rows
                            .into_iter()
                            .map(|(k, v)| vec![Value::String(k), Value::String(v)])
                            .collect(),
                    });
                }
            }
            Ok(out)
        }
        Statement::ShowFieldKeys { database, sources, limit, offset } => {
            let db = resolve_database(ctx, database.as_deref())?;
            let mut out = Vec::new();
            for m in resolve_measurements(ctx, &db, sources)? {
                let fields = e.field_keys(&db, &m)?;
                for (f, _) in &fields {
                    charge_name(meter, &mut listed, f)?;
                }
                let fields = page(fields, *limit, *offset);
                if !fields.is_empty() {
                    out.push(Series {
                        name: m,
                        tags: None,
                        columns: vec!["fieldKey".into(), "fieldType".into()],
                        values: fields
                            .into_iter()
                            .map(|(f, t)| vec![Value::String(f), Value::String(t.influx_name().to_owned())])
                            .collect(),
                    });
                }
            }
            Ok(out)
        }
        Statement::ShowSeries { database, sources, condition, limit, offset } => {
            let db = resolve_database(ctx, database.as_deref())?;
            let (pred, _) = tag_predicate(ctx, condition.as_ref(), "SHOW SERIES")?;
            let mut keys = Vec::new();
            for m in resolve_measurements(ctx, &db, sources)? {
                let ids = e.series(&db, &m, &pred)?;
                charge_ids(meter, ids.len())?;
                for (_, k) in &ids {
                    let key = k.to_string();
                    charge_name(meter, &mut listed, &key)?;
                    keys.push(key);
                }
                meter.release(16 * ids.len() as u64);
            }
            keys.sort();
            let keys = page(keys, *limit, *offset);
            Ok(if keys.is_empty() { Vec::new() } else { vec![one_column("", "key", keys)] })
        }
        Statement::ShowRetentionPolicies { database } => {
            let db = resolve_database(ctx, database.as_deref())?;
            let rp = e.retention_policy(&db)?;
            let shard = rp.partition_duration.unwrap_or(e.options().partition_duration.as_nanos() as i64);
            Ok(vec![Series {
                name: String::new(),
                tags: None,
                columns: ["name", "duration", "shardGroupDuration", "replicaN", "default"]
                    .map(String::from)
                    .to_vec(),
                values: vec![vec![
                    Value::String(rp.name),
                    Value::String(go_duration(rp.duration.unwrap_or(0))),
                    Value::String(go_duration(shard)),
                    Value::Integer(1),
                    Value::Boolean(true),
                ]],
            }])
        }
        Statement::ShowContinuousQueries => {
            let mut dbs = e.databases();
            dbs.sort();
            let mut out = Vec::new();
            for db in dbs {
                let mut rules = e.downsample_rules(&db)?;
                rules.sort_by(|a, b| a.name.cmp(&b.name));
                out.push(Series {
                    name: db.clone(),
                    tags: None,
                    columns: vec!["name".into(), "query".into()],
                    values: rules
                        .into_iter()
                        .map(|r| {
                            let text = rule_statement(&db, &r).to_string();
                            vec![Value::String(r.name), Value::String(text)]
                        })
                        .collect(),
                });
            }
            Ok(out)
        }
        Statement::CreateContinuousQuery { name, database, select } => {
            resolve_database(ctx, Some(database))?;
            let rule = downsample_rule(name, database, select)?;
            if e.downsample_rules(database)?.iter().any(|r| r.name == *name) {
                return Err(QueryError::Invalid(format!("continuous query {name:?} already exists")));
            }
            e.create_downsample_rule(database, rule)?;
            Ok(Vec::new())
        }
        Statement::DropContinuousQuery { name, database } => {
            resolve_database(ctx, Some(database))?;
            if !e.drop_downsample_rule(database, name)? {
                return Err(QueryError::Invalid(format!("continuous query {name:?} not found")));
            }
            Ok(Vec::new())
        }
        Statement::CreateDatabase { name, retention } => {
            e.create_database(name)?;
            if let Some(spec) = retention {
                e.set_retention_policy(
                    name,
                    RetentionPolicy {
                        name: spec.name.clone().unwrap_or_else(|| "autogen".into()),
                        duration: spec.duration.filter(|d| *d > 0),
                        partition_duration: spec.shard_duration.filter(|d| *d > 0),
                    },
                )?;
            }
            Ok(Vec::new())
        }
        Statement::DropDatabase { name } => {
            e.drop_database(name)?;
            Ok(Vec::new())
        }
        Statement::CreateRetentionPolicy { name, database, duration, shard_duration, .. } => {
            resolve_database(ctx, Some(database))?;
            e.set_retention_policy(
                database,
                RetentionPolicy {
                    name: name.clone(),
                    duration: Some(*duration).filter(|d| *d > 0),
                    partition_duration: shard_duration.filter(|d| *d > 0),
                },
            )?;
            Ok(Vec::new())
        }
        Statement::AlterRetentionPolicy { name, database, duration, shard_duration, .. } => {
            resolve_database(ctx, Some(database))?;
            let mut rp = e.retention_policy(database)?;
            if rp.name != *name {
                return Err(QueryError::RetentionPolicyNotFound { name: name.clone() });
            }
            if let Some(d) = duration {
                rp.duration = Some(*d).filter(|d| *d > 0);
            }
            if let Some(d) = shard_duration {
                rp.partition_duration = Some(*d).filter(|d| *d > 0);
            }
            e.set_retention_policy(database, rp)?;
            Ok(Vec::new())
        }
        Statement::DropRetentionPolicy { name, database } => {
            resolve_database(ctx, Some(database))?;
            let rp = e.retention_policy(database)?;
            if rp.name != *name {
                return Err(QueryError::RetentionPolicyNotFound { name: name.clone() });
            }
            // A database always has exactly one policy: dropping it restores the default
            // (keep forever), which is what the data then falls under.
            e.set_retention_policy(database, RetentionPolicy::default())?;
            Ok(Vec::new())
        }
        Statement::Delete { sources, condition } => {
            let db = resolve_database(ctx, None)?;
            let (pred, range) = tag_predicate(ctx, condition.as_ref(), "DELETE")?;
            if sources.is_empty() {
                e.delete(&db, None, &pred, range)?;
            } else {
                for m in resolve_measurements(ctx, &db, &unqualified(sources))? {
                    e.delete(&db, Some(&m), &pred, range)?;
                }
            }
            Ok(Vec::new())
        }
        Statement::DropSeries { sources, condition } => {
            let db = resolve_database(ctx, None)?;
            if condition.as_ref().is_some_and(Expr::references_time) {
                return Err(QueryError::Invalid("DROP SERIES doesn't support time in WHERE clause".into()));
            }
            let (pred, _) = tag_predicate(ctx, condition.as_ref(), "DROP SERIES")?;
            if sources.is_empty() {
                e.drop_series(&db, None, &pred)?;
            } else {
                for m in resolve_measurements(ctx, &db, sources)? {
                    e.drop_series(&db, Some(&m), &pred)?;
                }
            }
            Ok(Vec::new())
        }
        Statement::DropMeasurement { name } => {
            let db = resolve_database(ctx, None)?;
            e.drop_measurement(&db, name)?;
            Ok(Vec::new())
        }
    }
}

/// The aggregates a downsampling rule keeps for every numeric field.
const ROLLUP_AGGREGATES: [&str; 5] = ["count", "sum", "min", "max", "mean"];

/// A continuous query as a downsampling rule. Only the shape a rollup has is accepted:
/// aggregates among count/sum/min/max/mean of `*` or fields, `INTO` a measurement, one source
/// measurement, `GROUP BY time(d), *`, no `WHERE`. Whatever aggregates are named, the rule
/// keeps all five for every numeric field (`<field>_count`, ...): they cost a few bytes per
/// bucket and let coarser rollups be computed from finer ones.
fn downsample_rule(name: &str, database: &str, s: &SelectStatement) -> Result<DownsampleRule, QueryError> {
    let bad = |m: &str| Err(QueryError::Invalid(format!("continuous query {name:?}: {m}")));
    for f in &s.fields {
        let ok = matches!(&f.expr, Expr::Call { name, args }
            if ROLLUP_AGGREGATES.contains(&name.as_str())
                && args.len() == 1
                && matches!(args[0], Expr::Wildcard(_) | Expr::VarRef { .. }));
        if !ok {
            return bad("every field must be count, sum, min, max or mean of * or a field");
        }
    }
    let Some(into) = &s.into else { return bad("INTO a measurement is required") };
    let MeasurementName::Name(target) = &into.name else { return bad("INTO cannot be a regex") };
    let [Source::Measurement(src)] = s.sources.as_slice() else {
        return bad("FROM must name exactly one measurement");
    };
    let MeasurementName::Name(source) = &src.name else { return bad("FROM cannot be a regex") };
    if src.database.as_deref().is_some_and(|d| d != database) {
        return bad("FROM must be a measurement of the database the query is ON");
    }
    if s.condition.is_some() {
        return bad("WHERE is not supported: a rollup covers all of its source");
    }
    let Some(time) = s.group_by.time else { return bad("GROUP BY time(interval) is required") };
    if time.offset_ns != 0 {
        return bad("GROUP BY time() offsets are not supported");
    }
    if !matches!(s.group_by.tags.as_slice(), [TagDimension::Wildcard]) {
        return bad("GROUP BY time(interval), * is required: rollups keep every series");
    }
    if s.limit.is_some()
        || s.slimit.is_some()
        || s.offset != 0
        || s.soffset != 0
        || s.order_desc
        || s.tz.is_some()
    {
        return bad("LIMIT, OFFSET, ORDER BY and tz() are not supported");
    }
    Ok(DownsampleRule {
        name: name.to_owned(),
        source: source.clone(),
        target_db: into.database.clone().unwrap_or_else(|| database.to_owned()),
        target: target.clone(),
        interval: time.interval_ns,
    })
}

/// The statement `SHOW CONTINUOUS QUERIES` prints for a rule.
fn rule_statement(database: &str, r: &DownsampleRule) -> Statement {
    use crate::ast::{Field, GroupBy, Measurement, TimeDimension, WildcardKind};
    let fields = ROLLUP_AGGREGATES
        .iter()
        .map(|a| Field {
            expr: Expr::Call { name: (*a).into(), args: vec![Expr::Wildcard(WildcardKind::All)] },
            alias: None,
        })
        .collect();
    let mut into = Measurement::named(r.target.clone());
    into.database = Some(r.target_db.clone());
    Statement::CreateContinuousQuery {
        name: r.name.clone(),
        database: database.to_owned(),
        select: Box::new(SelectStatement {
            fields,
            into: Some(into),
            sources: vec![Source::Measurement(Measurement::named(r.source.clone()))],
            group_by: GroupBy {
                time: Some(TimeDimension { interval_ns: r.interval, offset_ns: 0 }),
                tags: vec![TagDimension::Wildcard],
            },
            ..SelectStatement::default()
        }),
    }
}
