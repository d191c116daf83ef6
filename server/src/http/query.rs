//! `GET|POST /query`: InfluxQL over HTTP, answering as InfluxDB 1.x does.
//!
//! Parameters come from the query string and, for `POST` with a form body
//! (`application/x-www-form-urlencoded`, what Grafana sends), from the body too (the body
//! wins, as Go's `FormValue`): `q`, `db`, `epoch`, `chunked`, `chunk_size`, `pretty`, `p`
//! (1.x password = token), `u` and `rp` (ignored).
//!
//! A request is authenticated before its body is read: with auth on, a request whose token is
//! missing or unknown is answered 401 without reading the body. The one exception is a small
//! form body (at most [`FORM_TOKEN_MAX_BODY`], declared by `Content-Length`) when the request
//! carries no token elsewhere, because Grafana may send `p` there. The body (at most
//! [`MAX_BODY`]) is then read, the statements parsed, and each authorized (403) before any
//! runs.
//!
//! Request-level problems (no `q`, a parse error, a bad `epoch`) answer 400 with
//! `{"error": ...}`; authorization failures 401/403 before anything runs. Once statements
//! run, the answer is 200 and a failing statement carries its error in `results[i].error`;
//! the statements after it do not run (InfluxDB's behaviour).
//!
//! Statements run on the blocking pool: a query is CPU-bound work over memory-mapped
//! segments, which must not stall the async workers that serve writes. The exception is a
//! small SELECT (at most 16 series and 16,384 points read), which runs on the request's task
//! because the hand-off would cost more than the query (`run_small_inline`).
//!
//! `chunked=true` (JSON) and every CSV answer stream: the query thread encodes each series as
//! it is produced and hands the text to the response body through a channel of
//! [`STREAM_CAPACITY`] pieces (JSON lines, or CSV text of up to `chunk_size` rows), so a
//! client that reads slowly blocks the query thread instead of letting the answer pile up in
//! memory; a client that hangs up cancels the query at its next piece (outcome `cancelled`).
//! The outcome and latency of a streamed query are recorded when it ends.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use strata_auth::{request_token, Access, Grant};
use strata_query::ast::Statement;
use strata_query::encode::{encode_error_json, encode_json, ChunkEncoder, CsvEncoder, EncodeOptions};
use strata_query::{
    execute_statement, execute_statement_each, parse_query, Epoch, QueryContext, QueryError, QueryLimits,
    Series, StatementResult,
};
use tokio::sync::mpsc;

use super::{ApiError, AppState};
use crate::config::QueryConfig;
use crate::metrics::{Metrics, QueryOutcome};

/// Pieces of a streamed answer buffered between the query thread and the connection. Small:
/// each is up to `chunk_size` rows, and the socket buffers hold more behind it.
pub const STREAM_CAPACITY: usize = 4;

/// A CSV piece is sent at `chunk_size` rows or at this many bytes, whichever comes first, so
/// wide rows do not make one piece huge.
const CSV_PIECE_BYTES: usize = 1 << 20;

/// The most rows one chunk may hold, whatever `chunk_size` the request or `query.chunk_size`
/// asks: a chunk is encoded whole before it is sent, so an unbounded `chunk_size` would turn
/// the streamed answer back into one held in memory. JSON chunks also end at
/// [`strata_query::encode::CHUNK_BYTES`] of rows, CSV pieces at [`CSV_PIECE_BYTES`].
pub const MAX_CHUNK_SIZE: usize = 10_000;

/// Largest `/query` body (the text of the statements, or a form holding it).
pub const MAX_BODY: usize = 2 << 20;

/// Largest form body read from a client that has shown no token yet, to look for `p` in it.
pub const FORM_TOKEN_MAX_BODY: usize = 64 << 10;

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
    QueryLimits {
        timeout: c.timeout.get().filter(|t| !t.is_zero()),
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
            Access::Delete(db.unwrap_or(""))
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
    body: Body,
) -> Response {
    let started = Instant::now();
    let (response, outcome) = answer(&st, method, headers, raw, body, started).await;
    // A streamed answer records its outcome when it ends.
    if let Some(outcome) = outcome {
        st.metrics.query.record(outcome, started.elapsed());
    }
    response
}

/// Runs one request; the outcome is what `strata_query_requests_total` counts (`None`: the
/// answer streams and records it when done).
async fn answer(
    st: &AppState,
    method: Method,
    headers: HeaderMap,
    raw: Option<String>,
    body: Body,
    started: Instant,
) -> (Response, Option<QueryOutcome>) {
    let bad = |message: &str| (bad_request(message), Some(QueryOutcome::BadRequest));
    let refuse = |e: ApiError| {
        (json_response(e.status(), encode_error_json(&e.to_string())), Some(QueryOutcome::Auth))
    };
    let mut params = Params::default();
    match serde_urlencoded::from_str::<Vec<(String, String)>>(raw.as_deref().unwrap_or("")) {
        Ok(pairs) => params.apply(pairs),
        Err(e) => return bad(&format!("invalid query string: {e}")),
    }
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let is_form = ct.starts_with("application/x-www-form-urlencoded");
    // Authenticate before reading the body (see the module header).
    let mut grant: Option<Grant> = None;
    let mut body_limit = MAX_BODY;
    if st.auth.enabled() {
        let token = match request_token(&headers, params.p.as_deref()) {
            Ok(t) => t,
            Err(e) => return refuse(e.into()),
        };
        let small_form = method == Method::POST
            && is_form
            && declared_length(&headers).is_some_and(|n| n <= FORM_TOKEN_MAX_BODY);
        match token {
            Some(t) => match st.authenticate_token(Some(&t)) {
                Ok(g) => grant = g,
                Err(e) => return refuse(e),
            },
            None if small_form => body_limit = FORM_TOKEN_MAX_BODY,
            None => return refuse(strata_auth::AuthError::MissingCredentials.into()),
        }
    }
    let body = if method == Method::POST {
        match super::body::read_bounded(body, body_limit, st.config.http.body_timeout.get()).await {
            Ok(b) => b,
            Err(e) => return (e.into_response(), Some(QueryOutcome::BadRequest)),
        }
    } else {
        Bytes::new()
    };
    if method == Method::POST && !body.is_empty() {
        if is_form {
            match serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) {
                Ok(pairs) => params.apply(pairs),
                Err(e) => return bad(&format!("invalid form body: {e}")),
            }
        } else if ct.starts_with("application/vnd.influxql") || ct.starts_with("text/plain") {
            params.q = Some(String::from_utf8_lossy(&body).into_owned());
        }
    }
    if st.auth.enabled() && grant.is_none() {
        // The token was in the form body, or nowhere.
        match st.authenticate(&HeaderMap::new(), params.p.as_deref()) {
            Ok(g) => grant = g,
            Err(e) => return refuse(e),
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
        Err(e) => return (bad_request(&e.to_string()), Some(QueryOutcome::Parse)),
    };
    // Authorization, for every statement before any runs.
    for stmt in &statements {
        if let Some(g) = &grant {
            if let Err(e) = g.check(access_for(stmt, params.db.as_deref())) {
                return refuse(e.into());
            }
            // SELECT ... INTO also writes: the token needs write access on the target database.
            if let Some(target) = into_database(stmt, params.db.as_deref()) {
                if let Err(e) = g.check(Access::Write(target)) {
                    return refuse(e.into());
                }
            }
        }
        if method == Method::GET && !stmt.is_read_only() {
            let message = format!("{stmt}: only SELECT and SHOW queries may be sent with GET; use POST");
            let response = json_response(StatusCode::METHOD_NOT_ALLOWED, encode_error_json(&message));
            return (response, Some(QueryOutcome::BadRequest));
        }
    }

    let limits = limits_from_config(&st.config.query);
    // One deadline for the whole request, however many tries it takes (inline, then pool).
    let deadline = limits.timeout.map(|t| Instant::now() + t);
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
        .unwrap_or(0);
    let opts = EncodeOptions { epoch, pretty: params.pretty };
    let csv = wants_csv(&headers);
    if params.chunked || csv {
        let size = params.chunk_size.unwrap_or(st.config.query.chunk_size).clamp(1, MAX_CHUNK_SIZE);
        let ctx = StreamContext {
            engine: st.engine.clone(),
            metrics: st.metrics.clone(),
            db: params.db.clone(),
            now_ns,
            limits,
            deadline,
            started,
        };
        let format = if csv { StreamFormat::Csv } else { StreamFormat::Json };
        return (stream_answer(ctx, statements, format, opts, size), None);
    }
    let n = statements.len();
    let inline = run_small_inline(&st.engine, params.db.as_deref(), now_ns, limits, deadline, &statements);
    let (results, outcome) = match inline {
        Some(r) => r,
        None => {
            let engine = st.engine.clone();
            let db = params.db.clone();
            let run = tokio::task::spawn_blocking(move || {
                let mut ctx = QueryContext::new(&engine, db.as_deref(), now_ns, limits);
                ctx.deadline = deadline;
                run_statements(&ctx, &statements)
            });
            match run.await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "query task failed");
                    let response = ApiError::Internal("query execution failed".into()).into_response();
                    return (response, Some(QueryOutcome::Internal));
                }
            }
        }
    };
    tracing::debug!(statements = n, "query answered");
    let q = &st.metrics.query;
    let series = results.iter().map(|r| r.series.len() as u64).sum::<u64>();
    let rows = results.iter().flat_map(|r| &r.series).map(|s| s.values.len() as u64).sum::<u64>();
    q.series_returned.fetch_add(series, Ordering::Relaxed);
    q.rows_returned.fetch_add(rows, Ordering::Relaxed);
    let (response, too_big) = encode_results(opts, results, limits.max_memory_bytes);
    let outcome = if too_big { QueryOutcome::Limit } else { outcome };
    (response, Some(outcome))
}

/// What a streamed query's thread needs, owned.
struct StreamContext {
    engine: Arc<strata_engine::Engine>,
    metrics: Arc<Metrics>,
    db: Option<String>,
    now_ns: i64,
    limits: QueryLimits,
    deadline: Option<Instant>,
    started: Instant,
}

/// The encodings a streamed answer comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamFormat {
    /// `chunked=true`: InfluxDB's chunked JSON lines.
    Json,
    /// `Accept: application/csv`, chunked or not: the same text as a materialised CSV answer.
    Csv,
}

/// Runs the statements on the blocking pool, sending the answer as it is encoded (see the
/// module header), and answers with a body that yields what is sent.
fn stream_answer(
    c: StreamContext,
    statements: Vec<Statement>,
    format: StreamFormat,
    opts: EncodeOptions,
    chunk_size: usize,
) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(STREAM_CAPACITY);
    let metrics = c.metrics.clone();
    let started = c.started;
    let runtime = tokio::runtime::Handle::current();
    let task = tokio::task::spawn_blocking(move || {
        let mut ctx = QueryContext::new(&c.engine, c.db.as_deref(), c.now_ns, c.limits);
        ctx.deadline = c.deadline;
        let mut enc = StreamEncoder::new(format, opts, chunk_size);
        let outcome = stream_statements(&ctx, &statements, &mut enc, &c.metrics, &mut |piece| {
            send_line(&runtime, &tx, piece, &ctx)
        });
        c.metrics.query.record(outcome, c.started.elapsed());
    });
    // A panic in the query thread ends the body early (the sender is dropped); it still counts.
    tokio::spawn(async move {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "query task failed");
            metrics.query.record(QueryOutcome::Internal, started.elapsed());
        }
    });
    let mut r = Response::new(Body::from_stream(LineStream { rx }));
    let content_type = match format {
        StreamFormat::Json => "application/json",
        StreamFormat::Csv => "application/csv",
    };
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Where a streamed answer's text is encoded and cut into the pieces that are sent.
enum StreamEncoder {
    Json {
        enc: ChunkEncoder,
        lines: Vec<String>,
    },
    /// `rows`: rows in `buf`, sent once they reach `chunk_size` (or `buf` reaches
    /// [`CSV_PIECE_BYTES`]).
    Csv {
        enc: CsvEncoder,
        buf: String,
        rows: usize,
        chunk_size: usize,
    },
}

type Send<'s> = dyn FnMut(Bytes) -> Result<(), QueryError> + 's;

impl StreamEncoder {
    fn new(format: StreamFormat, opts: EncodeOptions, chunk_size: usize) -> StreamEncoder {
        match format {
            StreamFormat::Json => {
                StreamEncoder::Json { enc: ChunkEncoder::new(opts, chunk_size), lines: Vec::new() }
            }
            StreamFormat::Csv => {
                StreamEncoder::Csv { enc: CsvEncoder::new(opts), buf: String::new(), rows: 0, chunk_size }
            }
        }
    }

    fn begin(&mut self, statement: usize) {
        if let StreamEncoder::Json { enc, .. } = self {
            enc.begin(statement);
        }
    }

    /// Encodes rows of a series ([`ChunkEncoder::part`]) and sends what is ready.
    fn part(&mut self, s: Series, more: bool, send: &mut Send<'_>) -> Result<(), QueryError> {
        match self {
            StreamEncoder::Json { enc, lines } => {
                enc.part(s, more, lines);
                Self::send_lines(lines, send)
            }
            StreamEncoder::Csv { enc, buf, rows, chunk_size } => {
                enc.part(&s, more, buf);
                *rows += s.values.len();
                if *rows >= *chunk_size || buf.len() >= CSV_PIECE_BYTES {
                    *rows = 0;
                    send(Bytes::from(std::mem::take(buf)))?;
                }
                Ok(())
            }
        }
    }

    /// Ends a statement, with its error if it failed, and sends everything held.
    fn end(&mut self, error: Option<&str>, send: &mut Send<'_>) -> Result<(), QueryError> {
        match self {
            StreamEncoder::Json { enc, lines } => {
                enc.end(error, lines);
                Self::send_lines(lines, send)
            }
            StreamEncoder::Csv { enc, buf, rows, .. } => {
                if let Some(e) = error {
                    enc.error(e, buf);
                }
                // The next statement's series start a block of their own, as InfluxDB writes
                // each statement's CSV apart.
                enc.end_statement();
                *rows = 0;
                if buf.is_empty() {
                    return Ok(());
                }
                send(Bytes::from(std::mem::take(buf)))
            }
        }
    }

    fn send_lines(lines: &mut Vec<String>, send: &mut Send<'_>) -> Result<(), QueryError> {
        for mut line in lines.drain(..) {
            line.push('\n');
            send(Bytes::from(line))?;
        }
        Ok(())
    }
}

/// Runs the statements, encoding their series into `send` as they are produced; stops at the
/// first failing statement (whose error ends the answer) or when `send` fails (the client
/// went away). Returns how the query ended.
fn stream_statements(
    ctx: &QueryContext<'_>,
    statements: &[Statement],
    enc: &mut StreamEncoder,
    metrics: &Metrics,
    send: &mut Send<'_>,
) -> QueryOutcome {
    for (i, stmt) in statements.iter().enumerate() {
        enc.begin(i);
        let mut continued = false;
        let r = execute_statement_each(ctx, stmt, &mut |s, more| {
            if !continued {
                metrics.query.series_returned.fetch_add(1, Ordering::Relaxed);
            }
            continued = more;
            metrics.query.rows_returned.fetch_add(s.values.len() as u64, Ordering::Relaxed);
            enc.part(s, more, send)
        });
        match r {
            Ok(()) => {
                if enc.end(None, send).is_err() {
                    return cancelled(i);
                }
            }
            Err(QueryError::Cancelled) => return cancelled(i),
            Err(e) => {
                tracing::debug!(statement = i, error = %e, "statement failed");
                // The client may be gone too; the outcome is the error either way.
                let _ = enc.end(Some(&e.to_string()), send);
                return QueryOutcome::of_error(&e);
            }
        }
    }
    QueryOutcome::Ok
}

/// Hands one line to the connection, waiting while the channel is full: the query thread
/// goes no faster than the client reads. The wait counts against the query timeout (a client
/// that stalls must not hold a thread forever); a closed channel means the client left.
fn send_line(
    runtime: &tokio::runtime::Handle,
    tx: &mpsc::Sender<Bytes>,
    line: Bytes,
    ctx: &QueryContext<'_>,
) -> Result<(), QueryError> {
    let line = match tx.try_send(line) {
        Ok(()) => return Ok(()),
        Err(mpsc::error::TrySendError::Closed(_)) => return Err(QueryError::Cancelled),
        Err(mpsc::error::TrySendError::Full(line)) => line,
    };
    match (ctx.deadline, ctx.limits.timeout) {
        (Some(deadline), Some(limit)) => {
            let left = deadline.saturating_duration_since(Instant::now());
            // A blocking-pool thread may block on the runtime (it is not one of its workers).
            match runtime.block_on(tokio::time::timeout(left, tx.send(line))) {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(QueryError::Cancelled),
                Err(_) => Err(QueryError::Timeout { limit_ms: limit.as_millis() as u64 }),
            }
        }
        _ => tx.blocking_send(line).map_err(|_| QueryError::Cancelled),
    }
}

/// A client that hangs up on a streamed answer: not a server failure, and not an answer
/// either; counted as `cancelled`, and the log says where it stopped.
fn cancelled(statement: usize) -> QueryOutcome {
    tracing::debug!(statement, "client closed a streamed query answer; query stopped");
    QueryOutcome::Cancelled
}

/// The body of a streamed answer: the lines the query thread sends, until it is done.
struct LineStream {
    rx: mpsc::Receiver<Bytes>,
}

impl futures_core::Stream for LineStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|line| line.map(Ok))
    }
}

fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

fn wants_csv(headers: &HeaderMap) -> bool {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    accept.contains("application/csv") || accept.contains("text/csv")
}

/// Series, points, rows and bytes a query may use on the request's own task (see
/// [`run_small_inline`]).
const INLINE_MAX_SERIES: u64 = 16;
const INLINE_MAX_POINTS: u64 = 16_384;
/// Rows (and `GROUP BY time` buckets): a few points can ask for millions of buckets, whose
/// making is work the points limit does not see.
const INLINE_MAX_ROWS: u64 = 16_384;
const INLINE_MAX_MEMORY: u64 = 16 << 20;

/// Runs small SELECTs on the request's async task instead of the blocking pool: one truck's
/// readings over an hour take ~30 us to answer, and the hand-off to a pool thread and back
/// (two thread wake-ups) cost more than that on this 2-core machine. "Small" is found by
/// trying: the statements run with at most [`INLINE_MAX_SERIES`] series and
/// [`INLINE_MAX_POINTS`] points read, [`INLINE_MAX_ROWS`] rows or buckets made and
/// [`INLINE_MAX_MEMORY`] bytes held (a few tens of microseconds of work at most), and when
/// one of those tighter limits trips, `None` says to run the whole request again on the pool
/// with the real limits. Every other limit (the deadline, shared with the pool run, and the
/// configured limits where they are tighter) applies here as there. Only read-only SELECTs
/// qualify (running one twice changes nothing); SHOW, DDL and `SELECT ... INTO` always go to
/// the pool.
fn run_small_inline(
    engine: &strata_engine::Engine,
    db: Option<&str>,
    now_ns: i64,
    limits: QueryLimits,
    deadline: Option<Instant>,
    statements: &[Statement],
) -> Option<(Vec<StatementResult>, QueryOutcome)> {
    if !statements.iter().all(|s| matches!(s, Statement::Select(sel) if sel.into.is_none())) {
        return None;
    }
    let tighter =
        |configured: u64, inline: u64| if configured == 0 { inline } else { configured.min(inline) };
    let probe = QueryLimits {
        max_series: tighter(limits.max_series, INLINE_MAX_SERIES),
        max_points_scanned: tighter(limits.max_points_scanned, INLINE_MAX_POINTS),
        max_points_returned: tighter(limits.max_points_returned, INLINE_MAX_ROWS),
        max_memory_bytes: tighter(limits.max_memory_bytes, INLINE_MAX_MEMORY),
        ..limits
    };
    let mut ctx = QueryContext::new(engine, db, now_ns, probe);
    ctx.deadline = deadline;
    // Too big for inline, unless the configured limit is the one that tripped.
    run_statements_unless(&ctx, statements, |e| match e {
        QueryError::TooManySeries { .. } => probe.max_series != limits.max_series,
        QueryError::TooManyPointsScanned { .. } => probe.max_points_scanned != limits.max_points_scanned,
        QueryError::TooManyPointsReturned { .. } | QueryError::TooManyBuckets { .. } => {
            probe.max_points_returned != limits.max_points_returned
        }
        QueryError::MemoryExceeded { .. } => probe.max_memory_bytes != limits.max_memory_bytes,
        _ => false,
    })
}

fn run_statements(ctx: &QueryContext<'_>, statements: &[Statement]) -> (Vec<StatementResult>, QueryOutcome) {
    run_statements_unless(ctx, statements, |_| false).expect("never gives up")
}

/// Runs `statements` in order and stops after the first failing one (its result carries the
/// error); `None` when that error is one `give_up` says to abandon the whole request for.
///
/// Each statement's memory limit is what the results of the statements before it left of
/// `query.max_memory`: a materialised answer holds them all until it is encoded, so many
/// statements must not each take the whole limit. (What [`strata_query::execute`] does too,
/// but that reports errors as strings only; the typed error is kept here to classify the
/// outcome.)
fn run_statements_unless(
    ctx: &QueryContext<'_>,
    statements: &[Statement],
    give_up: impl Fn(&QueryError) -> bool,
) -> Option<(Vec<StatementResult>, QueryOutcome)> {
    let mut out = Vec::with_capacity(statements.len());
    let limit = ctx.limits.max_memory_bytes;
    let mut held = 0u64;
    for (i, stmt) in statements.iter().enumerate() {
        let mut c = *ctx;
        if limit > 0 {
            // At least one byte: 0 would mean unlimited.
            c.limits.max_memory_bytes = limit.saturating_sub(held).max(1);
        }
        let r = if limit > 0 && held >= limit {
            Err(QueryError::MemoryExceeded { limit })
        } else {
            execute_statement(&c, stmt)
        };
        match r {
            Ok(series) => {
                if limit > 0 {
                    held += series.iter().map(strata_query::limits::series_bytes).sum::<u64>();
                }
                out.push(StatementResult { statement_id: i, series, error: None })
            }
            Err(e) if give_up(&e) => return None,
            Err(e) => {
                tracing::debug!(statement = i, error = %e, "statement failed");
                // The limit as configured, not the share this statement had left.
                let e = match e {
                    QueryError::MemoryExceeded { .. } => QueryError::MemoryExceeded { limit },
                    e => e,
                };
                let outcome = QueryOutcome::of_error(&e);
                out.push(StatementResult { statement_id: i, series: Vec::new(), error: Some(e.to_string()) });
                return Some((out, outcome));
            }
        }
    }
    Some((out, QueryOutcome::Ok))
}

/// Encodes the results as one JSON document (chunked JSON and CSV stream instead, see
/// [`stream_answer`]). The text is held whole until it is sent, so it must fit in
/// `query.max_memory` too (`max_memory`, 0 for no limit): the first statement whose text
/// would not fit answers the memory limit's error instead, and the statements after it are
/// dropped, as after any failing statement. At most about twice the limit is held: the
/// results, then their text. The flag says the text was too big.
fn encode_results(
    opts: EncodeOptions,
    mut results: Vec<StatementResult>,
    max_memory: u64,
) -> (Response, bool) {
    let mut total = 0u64;
    let over = if max_memory == 0 {
        None
    } else {
        results.iter().position(|r| {
            total += strata_query::encode::json_len_bound(&r.series, opts, max_memory);
            total > max_memory
        })
    };
    if let Some(i) = over {
        let error = QueryError::MemoryExceeded { limit: max_memory }.to_string();
        results.truncate(i);
        results.push(StatementResult { statement_id: i, series: Vec::new(), error: Some(error) });
    }
    (json_response(StatusCode::OK, encode_json(&results, opts)), over.is_some())
}
