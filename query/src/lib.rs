//! strata-query: Strata's query language, an InfluxQL subset, from text to a
//! typed syntax tree (and, later, plans and results).
//!
//! Grafana's InfluxDB data source, the Python `influxdb` client and most IoT
//! dashboards speak InfluxQL, so the grammar, literals and error messages
//! follow InfluxQL (<https://docs.influxdata.com/influxdb/v1/query_language/spec/>).
//! The language is documented in `docs/query-language.md`.
//!
//! Layout, in the order a query flows through it:
//! - [`lexer`]: query text to tokens (keywords, identifiers, literals);
//! - [`parser`]: tokens to [`ast::Statement`]s; [`parse_query`] is the single
//!   entry point for untrusted text, with bounded input size, nesting depth
//!   and regex size, and positioned [`ParseError`]s;
//! - [`ast`]: the syntax tree, its `Display` (prints query text that parses
//!   back to the same tree), time and duration literals, and the condition
//!   helpers a planner needs (time-range extraction, tag/field predicate
//!   split).
//!
//! What this crate is not: it does not read or write data itself; execution
//! goes through the engine's scan API.

pub mod ast;
pub mod lexer;
pub mod parser;

pub use ast::{Query, Statement};
pub use parser::{parse_query, ParseError};
