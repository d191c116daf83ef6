//! `GET|POST /query`: InfluxQL over HTTP, answering as InfluxDB 1.x does.
//!
//! Parameters come from the query string and, for `POST` with a form body
//! (`application/x-www-form-urlencoded`, what Grafana sends), from the body too (the body
//! wins, as Go's `FormValue`): `q`, `db`, `epoch`, `chunked`, `chunk_size`, `pretty`, `p`
//! (1.x password = token), `u` and `rp` (ignored).
//!
//! Request-level problems (no `q`, a parse error, a bad `epoch`) answer 400 with
//! `{"error": ...}`; authorization failures 401/403 before anything runs. Once statements
//! run, the answer is 200 and a failing statement carries its error in `results[i].error`;
//! the statements after it do not run (InfluxDB's behaviour).
//!
//! Statements run on the blocking pool: a query is CPU-bound work over memory-mapped
//! segments, which must not stall the async workers that serve writes.

use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use strata_query::ast::Statement;
use strata_query::encode::{encode_csv, encode_error_json, encode_json, encode_json_chunks, EncodeOptions};
use strata_query::{execute_statement, parse_query, Epoch, QueryContext, QueryLimits, StatementResult};

use super::{ApiError, AppState};
use crate::auth::Access;
use crate::config::QueryConfig;
use crate::metrics::QueryOutcome;

/// The parameters of one request.
#[derive(Debug, Default)]
struct Params {
    q: Option<String>,
    db: Option<String>,
    epoch: Option<String>,
    chunked: bool,
    chunk_size: Option<usize>,
    pretty: bool,
    p: Option<String>,
}

impl Params {
    fn apply(&mut self, pairs: Vec<(String, String)>) {
        for (k, v) in pairs {
            match k.as_str() {
                "q" => self.q = Some(v),
                "db" => self.db = Some(v).filter(|d| !d.is_empty()),
                "epoch" => self.epoch = Some(v),
                "chunked" => self.chunked = v == "true",
                "chunk_size" => self.chunk_size = v.parse().ok().filter(|n| *n > 0),
                "pretty" => self.pretty = v == "true",
                "p" => self.p = Some(v),
                _ => {}
            }
        }
    }
}

/// Query limits from the `[query]` config section.
pub fn limits_from_config(c: &QueryConfig) -> QueryLimits {
    let t = c.timeout.get();
    QueryLimits {
        timeout: (!t.is_zero()).then_some(t),
        max_series: c.max_series,
        max_points_scanned: c.max_points_scanned,
        max_points_returned: c.max_points_returned,
        max_memory_bytes: c.max_memory.bytes(),
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn bad_request(message: &str) -> Response {
    json_response(StatusCode::BAD_REQUEST, encode_error_json(message))
}

/// What a statement needs from the token.
fn access_for<'a>(stmt: &'a Statement, db: Option<&'a str>) -> Access<'a> {
    let on = |named: &'a Option<String>| named.as_deref().or(db).unwrap_or("");
    match stmt {
        Statement::Select(s) => {
            let named = s.sources.iter().find_map(|src| match src {
                strata_query::ast::Source::Measurement(m) => m.database.as_deref(),
            });
            Access::Read(named.or(db).unwrap_or(""))
        }
        Statement::ShowMeasurements { database, .. }
        | Statement::ShowTagKeys { database, .. }
        | Statement::ShowTagValues { database, .. }
        | Statement::ShowFieldKeys { database, .. }
        | Statement::ShowSeries { database, .. }
        | Statement::ShowRetentionPolicies { database } => Access::Read(on(database)),
        Statement::ShowContinuousQueries => Access::Read(db.unwrap_or("")),
        Statement::Delete { .. } | Statement::DropSeries { .. } | Statement::DropMeasurement { .. } => {
            Access::Write(db.unwrap_or(""))
        }
        Statement::ShowDatabases
        | Statement::CreateDatabase { .. }
        | Statement::DropDatabase { .. }
        | Statement::CreateRetentionPolicy { .. }
        | Statement::AlterRetentionPolicy { .. }
        | Statement::DropRetentionPolicy { .. }
        | Statement::CreateContinuousQuery { .. }
        | Statement::DropContinuousQuery { .. } => Access::Admin,
    }
}

/// The database a `SELECT ... INTO` writes to: the one it names, else the one it reads.
fn into_database<'a>(stmt: &'a Statement, db: Option<&'a str>) -> Option<&'a str> {
    let Statement::Select(s) = stmt else { return None };
    let into = s.into.as_ref()?;
    into.database.as_deref().or_else(|| match access_for(stmt, db) {
        Access::Read(d) => Some(d),
        _ => None,
    })
}

#[tracing::instrument(skip_all, fields(method = %method))]
pub async fn query_handler(
    State(st): State<AppState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let (response, outcome) = answer(&st, method, headers, raw, body).await;
    st.metrics.query.record(outcome, started.elapsed());
    response
}

/// Runs one request; the outcome is what `strata_query_requests_total` counts.
async fn answer(
    st: &AppState,
    method: Method,
    headers: HeaderMap,
    raw: Option<String>,
    body: Bytes,
) -> (Response, QueryOutcome) {
    let bad = |message: &str| (bad_request(message), QueryOutcome::BadRequest);
    let mut params = Params::default();
    match serde_urlencoded::from_str::<Vec<(String, String)>>(raw.as_deref().unwrap_or("")) {
        Ok(pairs) => params.apply(pairs),
        Err(e) => return bad(&format!("invalid query string: {e}")),
    }
    if method == Method::POST && !body.is_empty() {
        let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if ct.starts_with("application/x-www-form-urlencoded") {
            match serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) {
                Ok(pairs) => params.apply(pairs),
                Err(e) => return bad(&format!("invalid form body: {e}")),
            }
        } else if ct.starts_with("application/vnd.influxql") || ct.starts_with("text/plain") {
            params.q = Some(String::from_utf8_lossy(&body).into_owned());
        }
    }
    let Some(q) = params.q.take().filter(|q| !q.trim().is_empty()) else {
        return bad("missing required parameter \"q\"");
    };
    let epoch = match params.epoch.as_deref().map(Epoch::parse) {
        None => Epoch::Rfc3339,
        Some(Some(e)) => e,
        Some(None) => return bad("invalid epoch: expected one of ns, u, µ, ms, s, m, h"),
    };
    let statements = match parse_query(&q) {
        Ok(s) => s,
        Err(e) => return (bad_request(&e.to_string()), QueryOutcome::Parse),
    };
    // Authorization, for every statement before any runs.
    for stmt in &statements {
        if let Err(e) = st.authorize(&headers, params.p.as_deref(), access_for(stmt, params.db.as_deref())) {
            let status = e.status();
            return (json_response(status, encode_error_json(&e.to_string())), QueryOutcome::Auth);
        }
        // SELECT ... INTO also writes: the token needs write access on the target database.
        if let Some(target) = into_database(stmt, params.db.as_deref()) {
            if let Err(e) = st.authorize(&headers, params.p.as_deref(), Access::Write(target)) {
                return (json_response(e.status(), encode_error_json(&e.to_string())), QueryOutcome::Auth);
            }
        }
        if method == Method::GET && !stmt.is_read_only() {
            let message = format!("{stmt}: only SELECT and SHOW queries may be sent with GET; use POST");
            let response = json_response(StatusCode::METHOD_NOT_ALLOWED, encode_error_json(&message));
            return (response, QueryOutcome::BadRequest);
        }
    }

    let limits = limits_from_config(&st.config.query);
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
        .unwrap_or(0);
    let engine = st.engine.clone();
    let db = params.db.clone();
    let n = statements.len();
    let run = tokio::task::spawn_blocking(move || {
        let ctx = QueryContext::new(&engine, db.as_deref(), now_ns, limits);
        run_statements(&ctx, &statements)
    });
    let (results, outcome) = match run.await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "query task failed");
            let response = ApiError::Internal("query execution failed".into()).into_response();
            return (response, QueryOutcome::Internal);
        }
    };
    tracing::debug!(statements = n, "query answered");
    let q = &st.metrics.query;
    let series = results.iter().map(|r| r.series.len() as u64).sum::<u64>();
    let rows = results.iter().flat_map(|r| &r.series).map(|s| s.values.len() as u64).sum::<u64>();
    q.series_returned.fetch_add(series, Ordering::Relaxed);
    q.rows_returned.fetch_add(rows, Ordering::Relaxed);
    (encode_results(st, &headers, &params, epoch, &results), outcome)
}

/// Runs the statements in order, stopping at the first failure as InfluxDB does (what
/// [`strata_query::execute`] does too, but that reports errors as strings only; the typed
/// error is kept here to classify the outcome).
fn run_statements(ctx: &QueryContext<'_>, statements: &[Statement]) -> (Vec<StatementResult>, QueryOutcome) {
    let mut out = Vec::with_capacity(statements.len());
    for (i, stmt) in statements.iter().enumerate() {
        match execute_statement(ctx, stmt) {
            Ok(series) => out.push(StatementResult { statement_id: i, series, error: None }),
            Err(e) => {
                tracing::debug!(statement = i, error = %e, "statement failed");
                let outcome = QueryOutcome::of_error(&e);
                out.push(StatementResult { statement_id: i, series: Vec::new(), error: Some(e.to_string()) });
                return (out, outcome);
            }
        }
    }
    (out, QueryOutcome::Ok)
}

/// Encodes the results as CSV, chunked JSON lines or one JSON document.
fn encode_results(
    st: &AppState,
    headers: &HeaderMap,
    params: &Params,
    epoch: Epoch,
    results: &[StatementResult],
) -> Response {
    let opts = EncodeOptions { epoch, pretty: params.pretty };
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if accept.contains("application/csv") || accept.contains("text/csv") {
        let mut r = (StatusCode::OK, encode_csv(results, opts)).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/csv"));
        return r;
    }
    if params.chunked {
        let size = params.chunk_size.unwrap_or(st.config.query.chunk_size.max(1));
        // One JSON document per line. The results are complete by now, so the lines go out
        // as one body; clients read them line by line either way.
        let mut body = String::new();
        for line in encode_json_chunks(results, opts, size) {
            body.push_str(&line);
            body.push('\n');
        }
        let mut r = Response::new(Body::from(body));
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return r;
    }
    json_response(StatusCode::OK, encode_json(results, opts))
}
