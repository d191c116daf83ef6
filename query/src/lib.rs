//! strata-query: Strata's query language, an InfluxQL subset, from text to results.
//!
//! Grafana's InfluxDB data source, the Python `influxdb` client and most IoT
//! dashboards speak InfluxQL, so the grammar, literals, error messages and result
//! shapes follow InfluxQL (<https://docs.influxdata.com/influxdb/v1/query_language/spec/>).
//! The language is documented in `docs/query-language.md`.
//!
//! Layout, in the order a query flows through it:
//! - [`lexer`]: query text to tokens (keywords, identifiers, literals);
//! - [`parser`]: tokens to [`ast::Statement`]s; [`parse_query`] is the single
//!   entry point for untrusted text, with bounded input size, nesting depth
//!   and regex size, and positioned [`ParseError`]s;
//! - [`ast`]: the syntax tree, its function table and its `Display`;
//! - [`time`]: duration and time literals, RFC 3339 output;
//! - [`condition`]: the planner's condition helpers (time-range extraction,
//!   tag/field predicate split);
//! - [`exec`]: planning and execution against the engine's streaming scan
//!   (`exec::{select, agg, eval, transform, meta, source, tz}`), bounded by [`QueryLimits`];
//! - [`result`]: what statements return; [`encode`]: InfluxDB 1.x JSON and CSV.
//!
//! What this crate is not: it knows no HTTP (the server's `/query` handler parses the
//! request and calls [`execute`]) and stores nothing itself.

pub mod ast;
pub mod condition;
pub mod encode;
pub mod error;
pub mod exec;
pub mod lexer;
pub mod limits;
pub mod parse_error;
pub mod parser;
pub mod result;
pub mod time;

pub use ast::{Query, Statement};
pub use error::QueryError;
pub use exec::{execute, execute_statement, execute_statement_each, QueryContext};
pub use limits::QueryLimits;
pub use parser::{parse_query, ParseError};
pub use result::{Epoch, Series, StatementResult, Value};
