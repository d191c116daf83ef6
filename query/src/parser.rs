//! Recursive-descent parser from query text to [`crate::ast`].
//!
//! [`parse_query`] is the single entry point for untrusted text (the HTTP
//! `/query` handler and the fuzz target call it). It never panics, and its
//! resource use is bounded:
//! - input longer than [`MAX_QUERY_BYTES`] is refused before lexing;
//! - parentheses, calls and unary minus may nest [`MAX_NESTING`] deep, so a
//!   query of ten thousand `(` is an error, not a stack overflow;
//! - expression trees may be [`MAX_EXPR_DEPTH`] deep, which also bounds the
//!   recursion of everything that later walks, prints or drops the tree (a
//!   chain `a OR a OR ...` builds a left-deep tree one level per operator);
//! - regexes are compiled with [`crate::ast::REGEX_SIZE_LIMIT`], at most
//!   [`MAX_REGEXES`] different ones per query.
//!
//! The grammar and error messages follow InfluxQL's parser
//! (`influxql/parser.go`); `docs/query-language.md` lists the differences.

use std::collections::HashMap;

use crate::ast::{
    function_spec, BinaryOp, DataType, Expr, Field, Fill, FunctionKind, FunctionSpec, GroupBy, Measurement,
    MeasurementName, Query, RegexLiteral, RetentionPolicySpec, SelectStatement, Source, Statement,
    TagDimension, TagKeyFilter, TimeDimension, WildcardKind,
};
use crate::lexer::{Keyword, Lexer, Token, TokenKind};
use crate::time::{parse_duration, parse_time};

/// Longest query text accepted, in bytes (1 MiB).
pub const MAX_QUERY_BYTES: usize = 1 << 20;

/// Deepest nesting of parentheses, function calls and unary minus.
pub const MAX_NESTING: usize = 100;

/// Deepest expression tree (counted in nodes from root to leaf).
pub const MAX_EXPR_DEPTH: usize = 1000;

/// Most distinct regex literals in one query. Compiling a regex near
/// [`crate::ast::REGEX_SIZE_LIMIT`] takes about 10 ms, so without a cap a
/// 1 MiB query of `/\w{20}/`-like literals would cost minutes of CPU; with it
/// the worst case is about a second. Repeated literals (Grafana repeats the
/// same variable regex across statements) are compiled once and not counted
/// again.
pub const MAX_REGEXES: usize = 100;

pub use crate::parse_error::ParseError;

/// Parses query text: statements separated by `;` (empty statements are
/// skipped, so `""` parses to no statements).
pub fn parse_query(text: &str) -> Result<Query, ParseError> {
    if text.len() > MAX_QUERY_BYTES {
        return Err(ParseError::with_message(
            text,
            0,
            String::new(),
            format!("query is {} bytes, longer than the limit of {MAX_QUERY_BYTES} bytes", text.len()),
        ));
    }
    let mut p = Parser::new(text);
    let mut statements = Vec::new();
    let mut need_separator = false;
    loop {
        match p.peek()?.kind {
            TokenKind::Eof => return Ok(statements),
            TokenKind::Semicolon => {
                p.next()?;
                need_separator = false;
            }
            _ => {
                if need_separator {
                    let tok = p.next()?;
                    return Err(p.unexpected(&tok, &[";"]));
                }
                statements.push(p.parse_statement()?);
                need_separator = true;
            }
        }
    }
}

/// Parses text that must hold exactly one statement (a trailing `;` is
/// allowed).
pub fn parse_statement(text: &str) -> Result<Statement, ParseError> {
    let mut query = parse_query(text)?;
    if query.len() != 1 {
        return Err(ParseError::with_message(
            text,
            0,
            String::new(),
            format!("expected exactly one statement, found {}", query.len()),
        ));
    }
    Ok(query.remove(0))
}

/// Parses a standalone expression (as used in `SELECT` fields; no
/// restriction on calls). String literals compared with `time` become
/// [`Expr::Time`] as in statements.
pub fn parse_expr(text: &str) -> Result<Expr, ParseError> {
    if text.len() > MAX_QUERY_BYTES {
        return Err(ParseError::with_message(
            text,
            0,
            String::new(),
            format!("expression is longer than the limit of {MAX_QUERY_BYTES} bytes"),
        ));
    }
    let mut p = Parser::new(text);
    let expr = p.parse_expr()?;
    let tok = p.next()?;
    if tok.kind != TokenKind::Eof {
        return Err(p.unexpected(&tok, &["EOF"]));
    }
    Ok(expr)
}

/// Token shapes that the statement parsers test for often.
const EXPR_START: &[&str] = &["identifier", "string", "number", "bool"];
const CAST_TYPES: &[&str] = &["float", "integer", "unsigned", "string", "boolean", "field", "tag"];

struct Parser<'a> {
    lexer: Lexer<'a>,
    /// One token of look-ahead. Invariant: when it holds a `/`, the lexer is
    /// positioned right after that slash, so a regex can still be scanned.
    peeked: Option<Token>,
    /// Current nesting of parentheses, calls and unary minus.
    nesting: usize,
    /// True while parsing a `WHERE` clause, where calls other than `now()`
    /// are refused.
    in_condition: bool,
    /// Regexes compiled so far, by source (see [`MAX_REGEXES`]).
    regexes: HashMap<String, RegexLiteral>,
}

type PResult<T> = Result<T, ParseError>;

/// An operand on the stack of [`Parser::parse_binary`].
struct Operand {
    expr: Expr,
    /// Depth of `expr` as a tree.
    depth: usize,
    /// Its first token, for errors about it.
    start: Token,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser {
            lexer: Lexer::new(src),
            peeked: None,
            nesting: 0,
            in_condition: false,
            regexes: HashMap::new(),
        }
    }

    fn src(&self) -> &'a str {
        self.lexer.source()
    }

    fn peek(&mut self) -> PResult<&Token> {
        if self.peeked.is_none() {
            let tok = self.lexer.next_token()?;
            self.peeked = Some(tok);
        }
        Ok(self.peeked.as_ref().expect("filled just above"))
    }

    fn next(&mut self) -> PResult<Token> {
        match self.peeked.take() {
            Some(tok) => Ok(tok),
            None => self.lexer.next_token(),
        }
    }

    fn peek_is(&mut self, kind: &TokenKind) -> PResult<bool> {
        Ok(&self.peek()?.kind == kind)
    }

    /// True if the next token is the unquoted identifier `word` (any case).
    fn peek_is_word(&mut self, word: &str) -> PResult<bool> {
        Ok(matches!(
            &self.peek()?.kind,
            TokenKind::Ident { name, quoted: false } if name.eq_ignore_ascii_case(word)
        ))
    }

    /// Consumes the next token if it is `kind`.
    fn eat(&mut self, kind: &TokenKind) -> PResult<bool> {
        if self.peek_is(kind)? {
            self.next()?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn eat_keyword(&mut self, kw: Keyword) -> PResult<bool> {
        self.eat(&TokenKind::Keyword(kw))
    }

    fn expect(&mut self, kind: &TokenKind, expected: &str) -> PResult<Token> {
        let tok = self.next()?;
        if &tok.kind == kind {
            Ok(tok)
        } else {
            Err(self.unexpected(&tok, &[expected]))
        }
    }

    fn expect_keyword(&mut self, kw: Keyword) -> PResult<Token> {
        self.expect(&TokenKind::Keyword(kw), kw.as_str())
    }

    fn unexpected(&self, tok: &Token, expected: &[&str]) -> ParseError {
        ParseError::new(self.src(), tok.start, tok.describe(), expected)
    }

    fn error_at(&self, tok: &Token, message: impl Into<String>) -> ParseError {
        ParseError::with_message(self.src(), tok.start, tok.describe(), message.into())
    }

    // -- terminals ---------------------------------------------------------

    fn parse_ident(&mut self) -> PResult<String> {
        let tok = self.next()?;
        match &tok.kind {
            TokenKind::Ident { name, .. } => Ok(name.clone()),
            _ => Err(self.unexpected(&tok, &["identifier"])),
        }
    }

    /// An identifier, or (more lenient than InfluxQL) a string literal.
    fn parse_ident_or_string(&mut self) -> PResult<String> {
        let tok = self.next()?;
        match &tok.kind {
            TokenKind::Ident { name, .. } | TokenKind::String(name) => Ok(name.clone()),
            _ => Err(self.unexpected(&tok, &["identifier"])),
        }
    }

    fn parse_u64(&mut self) -> PResult<u64> {
        let tok = self.next()?;
        match &tok.kind {
            TokenKind::Integer(text) => {
                text.parse::<u64>().map_err(|_| self.error_at(&tok, "unable to parse integer"))
            }
            _ => Err(self.unexpected(&tok, &["integer"])),
        }
    }

    /// `KEYWORD n` if the next token is `kw`.
    fn parse_optional_u64(&mut self, kw: Keyword) -> PResult<Option<u64>> {
        if self.eat_keyword(kw)? {
            Ok(Some(self.parse_u64()?))
        } else {
            Ok(None)
        }
    }

    /// `REPLICATION n` value: 1 to 2^31-1, as in InfluxQL.
    fn parse_replication(&mut self) -> PResult<u32> {
        let tok = self.next()?;
        let TokenKind::Integer(text) = &tok.kind else {
            return Err(self.unexpected(&tok, &["integer"]));
        };
        match text.parse::<u32>() {
            Ok(n) if (1..=i32::MAX as u32).contains(&n) => Ok(n),
            _ => Err(self.error_at(&tok, format!("invalid value {text}: must be 1 <= n <= {}", i32::MAX))),
        }
    }

    /// A retention duration: a duration literal, or `INF` (0) if allowed.
    fn parse_policy_duration(&mut self, allow_inf: bool) -> PResult<i64> {
        let tok = self.next()?;
        match &tok.kind {
            TokenKind::Keyword(Keyword::Inf) if allow_inf => Ok(0),
            TokenKind::Keyword(Keyword::Inf) => {
                Err(self.error_at(&tok, "invalid duration INF for shard duration"))
            }
            TokenKind::Duration(text) => parse_duration(text).map_err(|e| self.error_at(&tok, e.to_string())),
            _ => Err(self.unexpected(&tok, &["duration"])),
        }
    }

    /// `[ON db]`
    fn parse_on(&mut self) -> PResult<Option<String>> {
        if self.eat_keyword(Keyword::On)? {
            Ok(Some(self.parse_ident()?))
        } else {
            Ok(None)
        }
    }

    /// Scans the regex whose opening `/` is `slash` (just consumed).
    fn finish_regex(&mut self, slash: &Token) -> PResult<RegexLiteral> {
        debug_assert!(self.peeked.is_none());
        let tok = self.lexer.scan_regex(slash.start)?;
        let TokenKind::Regex(source) = &tok.kind else {
            unreachable!("scan_regex returns a regex token");
        };
        if let Some(re) = self.regexes.get(source) {
            return Ok(re.clone());
        }
        if self.regexes.len() >= MAX_REGEXES {
            return Err(self.error_at(
                &tok,
                format!("too many regexes: more than {MAX_REGEXES} different ones in one query"),
            ));
        }
        let re = RegexLiteral::new(source.as_str())
            .map_err(|e| self.error_at(&tok, format!("invalid regex: {}", regex_error_summary(&e))))?;
        self.regexes.insert(source.clone(), re.clone());
        Ok(re)
    }

    /// A regex operand: the next token must open a regex.
    fn parse_regex(&mut self) -> PResult<RegexLiteral> {
        let tok = self.next()?;
        if tok.kind != TokenKind::Slash {
            return Err(self.unexpected(&tok, &["regex"]));
        }
        self.finish_regex(&tok)
    }

    // -- statements --------------------------------------------------------

    fn parse_statement(&mut self) -> PResult<Statement> {
        let tok = self.next()?;
        match tok.kind {
            TokenKind::Keyword(Keyword::Select) => Ok(Statement::Select(self.parse_select()?)),
            TokenKind::Keyword(Keyword::Show) => self.parse_show(),
            TokenKind::Keyword(Keyword::Create) => self.parse_create(),
            TokenKind::Keyword(Keyword::Drop) => self.parse_drop(),
            TokenKind::Keyword(Keyword::Delete) => self.parse_delete(),
            TokenKind::Keyword(Keyword::Alter) => self.parse_alter(),
            _ => Err(self.unexpected(&tok, &["SELECT", "DELETE", "SHOW", "CREATE", "DROP", "ALTER"])),
        }
    }

    fn parse_select(&mut self) -> PResult<SelectStatement> {
        let fields = self.parse_fields()?;
        let into = if self.eat_keyword(Keyword::Into)? { Some(self.parse_measurement(false)?) } else { None };
        self.expect_keyword(Keyword::From)?;
        let sources = self.parse_sources()?;
        let condition = self.parse_condition()?;
        let group_by = self.parse_group_by()?;
        let fill = self.parse_fill()?;
        let order_desc = self.parse_order_by()?;
        let limit = self.parse_optional_u64(Keyword::Limit)?;
        let offset = self.parse_optional_u64(Keyword::Offset)?.unwrap_or(0);
        let slimit = self.parse_optional_u64(Keyword::Slimit)?;
        let soffset = self.parse_optional_u64(Keyword::Soffset)?.unwrap_or(0);
        let tz = self.parse_tz()?;
        Ok(SelectStatement {
            fields,
            into,
            sources,
            condition,
            group_by,
            fill,
            order_desc,
            limit,
            offset,
            slimit,
            soffset,
            tz,
        })
    }

    fn parse_fields(&mut self) -> PResult<Vec<Field>> {
        let mut fields = Vec::new();
        loop {
            fields.push(self.parse_field()?);
            if !self.eat(&TokenKind::Comma)? {
                return Ok(fields);
            }
        }
    }

    fn parse_field(&mut self) -> PResult<Field> {
        let start = self.peek()?.clone();
        let expr = if start.kind == TokenKind::Star {
            self.parse_wildcard()?
        } else {
            let expr = self.parse_expr()?;
            // InfluxQL refuses boolean operators in SELECT (`SELECT a = 1`).
            let mut bad = None;
            expr.walk(&mut |e| {
                if let Expr::Binary { op, .. } = e {
                    if bad.is_none() && !op.is_arithmetic() {
                        bad = Some(*op);
                    }
                }
            });
            if let Some(op) = bad {
                return Err(self.error_at(
                    &start,
                    format!("invalid operator {op} in SELECT clause; operator is intended for WHERE clause"),
                ));
            }
            expr
        };
        let alias = if self.eat_keyword(Keyword::As)? { Some(self.parse_ident()?) } else { None };
        Ok(Field { expr, alias })
    }

    /// `*`, `*::field` or `*::tag` (the `*` is the next token).
    fn parse_wildcard(&mut self) -> PResult<Expr> {
        self.expect(&TokenKind::Star, "*")?;
        if !self.eat(&TokenKind::DoubleColon)? {
            return Ok(Expr::Wildcard(WildcardKind::All));
        }
        let tok = self.next()?;
        match tok.kind {
            TokenKind::Keyword(Keyword::Field) => Ok(Expr::Wildcard(WildcardKind::Fields)),
            TokenKind::Keyword(Keyword::Tag) => Ok(Expr::Wildcard(WildcardKind::Tags)),
            _ => Err(self.unexpected(&tok, &["field", "tag"])),
        }
    }

    fn parse_sources(&mut self) -> PResult<Vec<Source>> {
        let mut sources = Vec::new();
        loop {
            sources.push(Source::Measurement(self.parse_measurement(true)?));
            if !self.eat(&TokenKind::Comma)? {
                return Ok(sources);
            }
        }
    }

    /// `m`, `rp.m`, `db.rp.m`, `db..m`, and with `allow_regex` the same
    /// with `/regex/` in place of `m`.
    fn parse_measurement(&mut self, allow_regex: bool) -> PResult<Measurement> {
        let mut qualifiers: Vec<Option<String>> = Vec::new();
        let name = loop {
            let tok = self.next()?;
            match &tok.kind {
                TokenKind::Slash if allow_regex => {
                    break MeasurementName::Regex(self.finish_regex(&tok)?);
                }
                TokenKind::Ident { name, .. } => {
                    if qualifiers.len() < 2 && self.eat(&TokenKind::Dot)? {
                        qualifiers.push(Some(name.clone()).filter(|n| !n.is_empty()));
                        // `db..m`: an empty retention policy.
                        if qualifiers.len() == 1 && self.eat(&TokenKind::Dot)? {
                            qualifiers.push(None);
                        }
                        continue;
                    }
                    break MeasurementName::Name(name.clone());
                }
                TokenKind::LParen if allow_regex && qualifiers.is_empty() => {
                    return Err(self.error_at(&tok, "subqueries are not supported"));
                }
                _ => {
                    let expected: &[&str] =
                        if allow_regex { &["identifier", "regex"] } else { &["identifier"] };
                    return Err(self.unexpected(&tok, expected));
                }
            }
        };
        let (database, retention_policy) = match qualifiers.len() {
            0 => (None, None),
            1 => (None, qualifiers.pop().flatten()),
            _ => {
                let rp = qualifiers.pop().flatten();
                (qualifiers.pop().flatten(), rp)
            }
        };
        Ok(Measurement { database, retention_policy, name })
    }

    /// `[WHERE expr]`
    fn parse_condition(&mut self) -> PResult<Option<Expr>> {
        if !self.eat_keyword(Keyword::Where)? {
            return Ok(None);
        }
        self.in_condition = true;
        let cond = self.parse_expr();
        self.in_condition = false;
        Ok(Some(cond?))
    }

    /// `[GROUP BY dimension, ...]`
    fn parse_group_by(&mut self) -> PResult<GroupBy> {
        let mut group_by = GroupBy::default();
        if !self.eat_keyword(Keyword::Group)? {
            return Ok(group_by);
        }
        self.expect_keyword(Keyword::By)?;
        loop {
            let tok = self.next()?;
            match &tok.kind {
                TokenKind::Star => group_by.tags.push(TagDimension::Wildcard),
                TokenKind::Slash => {
                    let re = self.finish_regex(&tok)?;
                    group_by.tags.push(TagDimension::Regex(re));
                }
                TokenKind::Ident { name, .. } if name.eq_ignore_ascii_case("time") => {
                    if !self.eat(&TokenKind::LParen)? {
                        return Err(
                            self.error_at(&tok, "time() is a function and expects at least one argument")
                        );
                    }
                    if group_by.time.is_some() {
                        return Err(self.error_at(&tok, "multiple time dimensions"));
                    }
                    group_by.time = Some(self.parse_time_dimension()?);
                }
                TokenKind::Ident { name, .. } => {
                    if self.eat(&TokenKind::DoubleColon)? {
                        self.expect_keyword(Keyword::Tag)?;
                    }
                    group_by.tags.push(TagDimension::Name(name.clone()));
                }
                _ => {
                    return Err(self.unexpected(&tok, &["time()", "identifier", "*", "regex"]));
                }
            }
            if !self.eat(&TokenKind::Comma)? {
                return Ok(group_by);
            }
        }
    }

    /// `interval[, offset])` after `time(`.
    fn parse_time_dimension(&mut self) -> PResult<TimeDimension> {
        let (interval_tok, interval_ns) = self.parse_duration_arg()?;
        if interval_ns <= 0 {
            return Err(self.error_at(&interval_tok, "time dimension interval must be positive"));
        }
        let offset_ns = if self.eat(&TokenKind::Comma)? { self.parse_duration_arg()?.1 } else { 0 };
        self.expect(&TokenKind::RParen, ")")?;
        Ok(TimeDimension { interval_ns, offset_ns })
    }

    /// A duration literal with an optional leading `-`.
    fn parse_duration_arg(&mut self) -> PResult<(Token, i64)> {
        let negative = self.eat(&TokenKind::Minus)?;
        let tok = self.next()?;
        if !matches!(tok.kind, TokenKind::Duration(_)) {
            return Err(self.unexpected(&tok, &["duration"]));
        }
        match self.literal(&tok, negative)? {
            Expr::Duration(d) => Ok((tok, d)),
            _ => unreachable!("a duration token is a duration literal"),
        }
    }

    /// `[fill(null|none|previous|linear|number)]`
    fn parse_fill(&mut self) -> PResult<Fill> {
        if !self.peek_is_word("fill")? {
            return Ok(Fill::Null);
        }
        self.next()?;
        self.expect(&TokenKind::LParen, "(")?;
        let negative = self.eat(&TokenKind::Minus)?;
        let tok = self.next()?;
        let fill = match &tok.kind {
            TokenKind::Ident { name, quoted: false } if !negative => {
                match name.to_ascii_lowercase().as_str() {
                    "null" => Some(Fill::Null),
                    "none" => Some(Fill::None),
                    "previous" => Some(Fill::Previous),
                    "linear" => Some(Fill::Linear),
                    _ => None,
                }
            }
            TokenKind::Integer(_) | TokenKind::Number(_) => match self.literal(&tok, negative)? {
                Expr::Integer(v) => Some(Fill::Integer(v)),
                Expr::Number(v) => Some(Fill::Number(v)),
                _ => None,
            },
            _ => None,
        };
        let Some(fill) = fill else {
            let expected: &[&str] =
                if negative { &["number"] } else { &["null", "none", "previous", "linear", "number"] };
            return Err(self.unexpected(&tok, expected));
        };
        self.expect(&TokenKind::RParen, ")")?;
        Ok(fill)
    }

    /// `[ORDER BY [time] ASC|DESC]`; true for descending.
    fn parse_order_by(&mut self) -> PResult<bool> {
        if !self.eat_keyword(Keyword::Order)? {
            return Ok(false);
        }
        self.expect_keyword(Keyword::By)?;
        let tok = self.next()?;
        let desc = match &tok.kind {
            TokenKind::Keyword(Keyword::Asc) => false,
            TokenKind::Keyword(Keyword::Desc) => true,
            TokenKind::Ident { name, .. } => {
                if !name.eq_ignore_ascii_case("time") {
                    return Err(self.error_at(&tok, "only ORDER BY time supported at this time"));
                }
                if self.eat_keyword(Keyword::Desc)? {
                    true
                } else {
                    self.eat_keyword(Keyword::Asc)?;
                    false
                }
            }
            _ => return Err(self.unexpected(&tok, &["identifier", "ASC", "DESC"])),
        };
        if self.peek_is(&TokenKind::Comma)? {
            let comma = self.next()?;
            return Err(self.error_at(&comma, "only ORDER BY time supported at this time"));
        }
        Ok(desc)
    }

    /// `[tz('zone')]`
    fn parse_tz(&mut self) -> PResult<Option<String>> {
        if !self.peek_is_word("tz")? {
            return Ok(None);
        }
        self.next()?;
        self.expect(&TokenKind::LParen, "(")?;
        let tok = self.next()?;
        let TokenKind::String(zone) = tok.kind else {
            return Err(self.unexpected(&tok, &["string"]));
        };
        self.expect(&TokenKind::RParen, ")")?;
        Ok(Some(zone))
    }

    fn parse_show(&mut self) -> PResult<Statement> {
        let tok = self.next()?;
        match tok.kind {
            TokenKind::Keyword(Keyword::Databases) => Ok(Statement::ShowDatabases),
            TokenKind::Keyword(Keyword::Measurements) => self.parse_show_measurements(),
            TokenKind::Keyword(Keyword::Tag) => {
                let tok = self.next()?;
                match tok.kind {
                    TokenKind::Keyword(Keyword::Keys) => {
                        let database = self.parse_on()?;
                        let sources = self.parse_optional_from()?;
                        let condition = self.parse_condition()?;
                        let (limit, offset) = self.parse_limit_offset()?;
                        Ok(Statement::ShowTagKeys { database, sources, condition, limit, offset })
                    }
                    TokenKind::Keyword(Keyword::Values) => {
                        let database = self.parse_on()?;
                        let sources = self.parse_optional_from()?;
                        let key = self.parse_tag_key_filter()?;
                        let condition = self.parse_condition()?;
                        let (limit, offset) = self.parse_limit_offset()?;
                        Ok(Statement::ShowTagValues { database, sources, key, condition, limit, offset })
                    }
                    _ => Err(self.unexpected(&tok, &["KEYS", "VALUES"])),
                }
            }
            TokenKind::Keyword(Keyword::Field) => {
                self.expect_keyword(Keyword::Keys)?;
                let database = self.parse_on()?;
                let sources = self.parse_optional_from()?;
                let (limit, offset) = self.parse_limit_offset()?;
                Ok(Statement::ShowFieldKeys { database, sources, limit, offset })
            }
            TokenKind::Keyword(Keyword::Series) => {
                let database = self.parse_on()?;
                let sources = self.parse_optional_from()?;
                let condition = self.parse_condition()?;
                let (limit, offset) = self.parse_limit_offset()?;
                Ok(Statement::ShowSeries { database, sources, condition, limit, offset })
            }
            TokenKind::Keyword(Keyword::Retention) => {
                self.expect_keyword(Keyword::Policies)?;
                Ok(Statement::ShowRetentionPolicies { database: self.parse_on()? })
            }
            TokenKind::Keyword(Keyword::Continuous) => {
                self.expect_keyword(Keyword::Queries)?;
                Ok(Statement::ShowContinuousQueries)
            }
            _ => Err(self.unexpected(
                &tok,
                &["CONTINUOUS", "DATABASES", "FIELD", "MEASUREMENTS", "RETENTION", "SERIES", "TAG"],
            )),
        }
    }

    fn parse_show_measurements(&mut self) -> PResult<Statement> {
        let database = self.parse_on()?;
        let measurement = if self.eat_keyword(Keyword::With)? {
            self.expect_keyword(Keyword::Measurement)?;
            let tok = self.next()?;
            match tok.kind {
                TokenKind::Eq => {
                    // A bare name or a regex; InfluxQL also accepts `db.rp.m`
                    // here, but the qualifiers would mean nothing.
                    let tok = self.next()?;
                    match &tok.kind {
                        TokenKind::Ident { name, .. } => Some(MeasurementName::Name(name.clone())),
                        TokenKind::Slash => Some(MeasurementName::Regex(self.finish_regex(&tok)?)),
                        _ => return Err(self.unexpected(&tok, &["identifier", "regex"])),
                    }
                }
                TokenKind::EqRegex => Some(MeasurementName::Regex(self.parse_regex()?)),
                _ => return Err(self.unexpected(&tok, &["=", "=~"])),
            }
        } else {
            None
        };
        let condition = self.parse_condition()?;
        let (limit, offset) = self.parse_limit_offset()?;
        Ok(Statement::ShowMeasurements { database, measurement, condition, limit, offset })
    }

    /// `WITH KEY (= k | != k | IN (k, ...) | =~ /re/ | !~ /re/)`
    fn parse_tag_key_filter(&mut self) -> PResult<TagKeyFilter> {
        self.expect_keyword(Keyword::With)?;
        self.expect_keyword(Keyword::Key)?;
        let tok = self.next()?;
        match tok.kind {
            TokenKind::Eq => Ok(TagKeyFilter::Eq(self.parse_ident_or_string()?)),
            TokenKind::Neq => Ok(TagKeyFilter::NotEq(self.parse_ident_or_string()?)),
            TokenKind::EqRegex => Ok(TagKeyFilter::Regex(self.parse_regex()?)),
            TokenKind::NeqRegex => Ok(TagKeyFilter::NotRegex(self.parse_regex()?)),
            TokenKind::Keyword(Keyword::In) => {
                self.expect(&TokenKind::LParen, "(")?;
                let mut keys = vec![self.parse_ident_or_string()?];
                while self.eat(&TokenKind::Comma)? {
                    keys.push(self.parse_ident_or_string()?);
                }
                self.expect(&TokenKind::RParen, ")")?;
                Ok(TagKeyFilter::In(keys))
            }
            _ => Err(self.unexpected(&tok, &["IN", "=", "=~"])),
        }
    }

    fn parse_optional_from(&mut self) -> PResult<Vec<Source>> {
        if self.eat_keyword(Keyword::From)? {
            self.parse_sources()
        } else {
            Ok(Vec::new())
        }
    }

    fn parse_limit_offset(&mut self) -> PResult<(Option<u64>, u64)> {
        let limit = self.parse_optional_u64(Keyword::Limit)?;
        let offset = self.parse_optional_u64(Keyword::Offset)?.unwrap_or(0);
        Ok((limit, offset))
    }

    fn parse_create(&mut self) -> PResult<Statement> {
        let tok = self.next()?;
        match tok.kind {
            TokenKind::Keyword(Keyword::Database) => {
                let name = self.parse_ident()?;
                let retention =
                    if self.eat_keyword(Keyword::With)? { Some(self.parse_database_policy()?) } else { None };
                Ok(Statement::CreateDatabase { name, retention })
            }
            TokenKind::Keyword(Keyword::Retention) => {
                self.expect_keyword(Keyword::Policy)?;
                let name = self.parse_ident()?;
                self.expect_keyword(Keyword::On)?;
                let database = self.parse_ident()?;
                self.expect_keyword(Keyword::Duration)?;
                let duration = self.parse_policy_duration(true)?;
                self.expect_keyword(Keyword::Replication)?;
                let replication = self.parse_replication()?;
                let shard_duration = if self.eat_keyword(Keyword::Shard)? {
                    self.expect_keyword(Keyword::Duration)?;
                    Some(self.parse_policy_duration(false)?)
                } else {
                    None
                };
                let default = self.eat_keyword(Keyword::Default)?;
                Ok(Statement::CreateRetentionPolicy {
                    name,
                    database,
                    duration,
                    replication,
                    shard_duration,
                    default,
                })
            }
            TokenKind::Keyword(Keyword::Continuous) => {
                self.expect_keyword(Keyword::Query)?;
                let name = self.parse_ident()?;
                self.expect_keyword(Keyword::On)?;
                let database = self.parse_ident()?;
                let tok = self.next()?;
                match tok.kind {
                    TokenKind::Keyword(Keyword::Begin) => {}
                    TokenKind::Keyword(Keyword::Resample) => {
                        return Err(self.error_at(
                            &tok,
                            "RESAMPLE is not supported: Strata recomputes exactly the buckets that new or late data touched",
                        ))
                    }
                    _ => return Err(self.unexpected(&tok, &["BEGIN"])),
                }
                self.expect_keyword(Keyword::Select)?;
                let select = Box::new(self.parse_select()?);
                self.expect_keyword(Keyword::End)?;
                Ok(Statement::CreateContinuousQuery { name, database, select })
            }
            _ => Err(self.unexpected(&tok, &["CONTINUOUS", "DATABASE", "RETENTION"])),
        }
    }

    /// `[DURATION d] [REPLICATION n] [SHARD DURATION d] [NAME rp]` after
    /// `CREATE DATABASE x WITH`, at least one.
    fn parse_database_policy(&mut self) -> PResult<RetentionPolicySpec> {
        let tok = self.peek()?;
        if !matches!(
            tok.kind,
            TokenKind::Keyword(Keyword::Duration | Keyword::Replication | Keyword::Shard | Keyword::Name)
        ) {
            let tok = self.next()?;
            return Err(self.unexpected(&tok, &["DURATION", "REPLICATION", "SHARD", "NAME"]));
        }
        let mut spec = RetentionPolicySpec::default();
        if self.eat_keyword(Keyword::Duration)? {
            spec.duration = Some(self.parse_policy_duration(true)?);
        }
        if self.eat_keyword(Keyword::Replication)? {
            spec.replication = Some(self.parse_replication()?);
        }
        if self.eat_keyword(Keyword::Shard)? {
            self.expect_keyword(Keyword::Duration)?;
            spec.shard_duration = Some(self.parse_policy_duration(false)?);
        }
        if self.eat_keyword(Keyword::Name)? {
            spec.name = Some(self.parse_ident()?);
        }
        Ok(spec)
    }

    fn parse_alter(&mut self) -> PResult<Statement> {
        self.expect_keyword(Keyword::Retention)?;
        self.expect_keyword(Keyword::Policy)?;
        let name = self.parse_ident()?;
        self.expect_keyword(Keyword::On)?;
        let database = self.parse_ident()?;
        let (mut duration, mut replication, mut shard_duration, mut default) = (None, None, None, false);
        let mut seen: Vec<Keyword> = Vec::new();
        loop {
            let kw = match self.peek()?.kind {
                TokenKind::Keyword(
                    kw @ (Keyword::Duration | Keyword::Replication | Keyword::Shard | Keyword::Default),
                ) => kw,
                _ if seen.is_empty() => {
                    let tok = self.next()?;
                    return Err(self.unexpected(&tok, &["DURATION", "REPLICATION", "SHARD", "DEFAULT"]));
                }
                _ => break,
            };
            let tok = self.next()?;
            if seen.contains(&kw) {
                return Err(self.error_at(&tok, format!("found duplicate {kw} option")));
            }
            seen.push(kw);
            match kw {
                Keyword::Duration => duration = Some(self.parse_policy_duration(true)?),
                Keyword::Replication => replication = Some(self.parse_replication()?),
                Keyword::Shard => {
                    self.expect_keyword(Keyword::Duration)?;
                    shard_duration = Some(self.parse_policy_duration(false)?);
                }
                _ => default = true,
            }
        }
        Ok(Statement::AlterRetentionPolicy { name, database, duration, replication, shard_duration, default })
    }

    fn parse_drop(&mut self) -> PResult<Statement> {
        let tok = self.next()?;
        match tok.kind {
            TokenKind::Keyword(Keyword::Database) => {
                Ok(Statement::DropDatabase { name: self.parse_ident()? })
            }
            TokenKind::Keyword(Keyword::Measurement) => {
                Ok(Statement::DropMeasurement { name: self.parse_ident()? })
            }
            TokenKind::Keyword(Keyword::Retention) => {
                self.expect_keyword(Keyword::Policy)?;
                let name = self.parse_ident()?;
                self.expect_keyword(Keyword::On)?;
                let database = self.parse_ident()?;
                Ok(Statement::DropRetentionPolicy { name, database })
            }
            TokenKind::Keyword(Keyword::Series) => {
                let (sources, condition) = self.parse_from_where()?;
                Ok(Statement::DropSeries { sources, condition })
            }
            TokenKind::Keyword(Keyword::Continuous) => {
                self.expect_keyword(Keyword::Query)?;
                let name = self.parse_ident()?;
                self.expect_keyword(Keyword::On)?;
                let database = self.parse_ident()?;
                Ok(Statement::DropContinuousQuery { name, database })
            }
            _ => {
                Err(self.unexpected(&tok, &["CONTINUOUS", "DATABASE", "MEASUREMENT", "RETENTION", "SERIES"]))
            }
        }
    }

    fn parse_delete(&mut self) -> PResult<Statement> {
        let (sources, condition) = self.parse_from_where()?;
        Ok(Statement::Delete { sources, condition })
    }

    /// `[FROM sources] [WHERE cond]` with at least one of the two, for
    /// `DELETE` and `DROP SERIES`. As in InfluxQL, the sources may not name a
    /// database or retention policy: both statements apply to the current
    /// database across all of its retention policies.
    fn parse_from_where(&mut self) -> PResult<(Vec<Source>, Option<Expr>)> {
        let first = self.peek()?.clone();
        let sources = self.parse_optional_from()?;
        for Source::Measurement(m) in &sources {
            if m.database.is_some() {
                return Err(self.error_at(&first, "database not supported"));
            }
            if m.retention_policy.is_some() {
                return Err(self.error_at(&first, "retention policy not supported"));
            }
        }
        let condition = self.parse_condition()?;
        if sources.is_empty() && condition.is_none() {
            return Err(self.unexpected(&first, &["FROM", "WHERE"]));
        }
        Ok((sources, condition))
    }

    // -- expressions -------------------------------------------------------

    fn parse_expr(&mut self) -> PResult<Expr> {
        Ok(self.parse_binary()?.0)
    }

    /// Parses operands separated by binary operators into a tree,
    /// left-associatively by precedence. Returns the tree and its depth.
    ///
    /// Operator precedence parsing with explicit stacks (as InfluxQL's
    /// `ParseExpr` is iterative too): recursion happens only for nesting
    /// (parentheses, calls, unary minus), so stack use per nesting level is
    /// a few frames whatever the operators.
    fn parse_binary(&mut self) -> PResult<(Expr, usize)> {
        let mut operands: Vec<Operand> = Vec::new();
        let mut operators: Vec<(BinaryOp, Token)> = Vec::new();
        let start = self.peek()?.clone();
        let (expr, depth) = self.parse_unary()?;
        operands.push(Operand { expr, depth, start });
        while let Some(op) = binary_op(&self.peek()?.kind) {
            let op_tok = self.next()?;
            while operators.last().is_some_and(|(top, _)| top.precedence() >= op.precedence()) {
                self.reduce(&mut operands, &mut operators)?;
            }
            operators.push((op, op_tok));
            let start = self.peek()?.clone();
            let (expr, depth) = if matches!(op, BinaryOp::EqRegex | BinaryOp::NeqRegex) {
                (Expr::Regex(self.parse_regex()?), 1)
            } else {
                self.parse_unary()?
            };
            operands.push(Operand { expr, depth, start });
        }
        while !operators.is_empty() {
            self.reduce(&mut operands, &mut operators)?;
        }
        let top = operands.pop().expect("one operand is left after reducing");
        Ok((top.expr, top.depth))
    }

    /// Replaces the top two operands by the top operator applied to them.
    fn reduce(&self, operands: &mut Vec<Operand>, operators: &mut Vec<(BinaryOp, Token)>) -> PResult<()> {
        let (op, op_tok) = operators.pop().expect("reduce needs an operator");
        let mut rhs = operands.pop().expect("an operator has a right operand");
        let mut lhs = operands.pop().expect("an operator has a left operand");
        if matches!(op, BinaryOp::EqRegex | BinaryOp::NeqRegex) && !matches!(rhs.expr, Expr::Regex(_)) {
            // `a =~ /x/ + 1`: keep "the right side of =~ is a regex" true.
            return Err(self.error_at(&op_tok, format!("the right side of {op} must be a regex")));
        }
        if op.is_comparison() {
            if lhs.expr.is_time_ref() {
                self.resolve_time_strings(&mut rhs.expr, &rhs.start)?;
            } else if rhs.expr.is_time_ref() {
                self.resolve_time_strings(&mut lhs.expr, &lhs.start)?;
            }
        }
        let depth = 1 + lhs.depth.max(rhs.depth);
        if depth > MAX_EXPR_DEPTH {
            return Err(
                self.error_at(&op_tok, format!("expression is too deep: more than {MAX_EXPR_DEPTH} levels"))
            );
        }
        operands.push(Operand { expr: Expr::binary(op, lhs.expr, rhs.expr), depth, start: lhs.start });
        Ok(())
    }

    /// Turns string literals in a value compared with `time` into
    /// [`Expr::Time`] (through parentheses and `+`/`-`), refusing strings
    /// that are not times. `at` is where the value starts.
    fn resolve_time_strings(&self, e: &mut Expr, at: &Token) -> PResult<()> {
        match e {
            Expr::String(s) => {
                let t = parse_time(s).map_err(|err| self.error_at(at, err.to_string()))?;
                *e = Expr::Time(t);
                Ok(())
            }
            Expr::Paren(inner) => self.resolve_time_strings(inner, at),
            Expr::Binary { op: BinaryOp::Add | BinaryOp::Sub, lhs, rhs } => {
                self.resolve_time_strings(lhs, at)?;
                self.resolve_time_strings(rhs, at)
            }
            _ => Ok(()),
        }
    }

    fn parse_unary(&mut self) -> PResult<(Expr, usize)> {
        if self.nesting >= MAX_NESTING {
            let tok = self.next()?;
            return Err(self
                .error_at(&tok, format!("expression is nested too deeply: more than {MAX_NESTING} levels")));
        }
        self.nesting += 1;
        let result = self.parse_unary_inner();
        self.nesting -= 1;
        result
    }

    // The recursive path of expression parsing (`parse_unary` ->
    // `parse_unary_inner` -> `parse_nested`/`parse_call` -> `parse_binary`)
    // is kept to small functions: without optimizations every local of
    // every match arm gets its own stack slot, so the non-recursive cases
    // live in `parse_primary`.
    fn parse_unary_inner(&mut self) -> PResult<(Expr, usize)> {
        let tok = self.next()?;
        match tok.kind {
            TokenKind::LParen | TokenKind::Minus | TokenKind::Plus => self.parse_nested(&tok),
            TokenKind::Ident { ref name, .. } if self.peek_is(&TokenKind::LParen)? => {
                self.next()?;
                self.parse_call(&tok, name)
            }
            _ => self.parse_primary(tok),
        }
    }

    /// `( expr )`, `-operand` or `+operand`; `tok` is the first token.
    fn parse_nested(&mut self, tok: &Token) -> PResult<(Expr, usize)> {
        if tok.kind == TokenKind::LParen {
            let (inner, depth) = self.parse_binary()?;
            self.expect(&TokenKind::RParen, ")")?;
            return Ok((Expr::Paren(Box::new(inner)), depth + 1));
        }
        let negative = tok.kind == TokenKind::Minus;
        match self.peek()?.kind {
            TokenKind::Integer(_) | TokenKind::Number(_) | TokenKind::Duration(_) => {
                let lit = self.next()?;
                Ok((self.literal(&lit, negative)?, 1))
            }
            TokenKind::LParen | TokenKind::Ident { .. } => {
                let (operand, depth) = self.parse_unary()?;
                if !negative {
                    return Ok((operand, depth));
                }
                // `-x` is `(-1 * x)`; the parentheses make the printed form
                // parse back to the same tree.
                let neg = Expr::binary(BinaryOp::Mul, Expr::Integer(-1), operand);
                Ok((Expr::Paren(Box::new(neg)), depth + 2))
            }
            _ => {
                let tok = self.next()?;
                Err(self.unexpected(&tok, &["identifier", "number", "duration", "("]))
            }
        }
    }

    /// Operands that contain no sub-expression: names, literals, regexes,
    /// `DISTINCT x`.
    #[inline(never)]
    fn parse_primary(&mut self, tok: Token) -> PResult<(Expr, usize)> {
        match tok.kind {
            TokenKind::Ident { ref name, .. } => {
                let name = if name.eq_ignore_ascii_case("time") { "time".to_string() } else { name.clone() };
                let data_type =
                    if self.eat(&TokenKind::DoubleColon)? { Some(self.parse_cast()?) } else { None };
                Ok((Expr::VarRef { name, data_type }, 1))
            }
            TokenKind::Keyword(Keyword::Distinct) => {
                if self.eat(&TokenKind::LParen)? {
                    return self.parse_call(&tok, "distinct");
                }
                // `DISTINCT field` is `distinct(field)`.
                let field = self.next()?;
                let TokenKind::Ident { name, .. } = &field.kind else {
                    return Err(self.unexpected(&field, &["(", "identifier"]));
                };
                let args = vec![Expr::var(name.clone())];
                let spec = function_spec("distinct").expect("distinct is a known function");
                self.check_call(&tok, spec, &args)?;
                Ok((Expr::Call { name: "distinct".to_string(), args }, 2))
            }
            TokenKind::Keyword(Keyword::True) => Ok((Expr::Bool(true), 1)),
            TokenKind::Keyword(Keyword::False) => Ok((Expr::Bool(false), 1)),
            TokenKind::String(s) => Ok((Expr::String(s), 1)),
            TokenKind::Integer(_) | TokenKind::Number(_) | TokenKind::Duration(_) => {
                Ok((self.literal(&tok, false)?, 1))
            }
            TokenKind::Slash => Ok((Expr::Regex(self.finish_regex(&tok)?), 1)),
            _ => Err(self.unexpected(&tok, EXPR_START)),
        }
    }

    /// A numeric or duration literal, negated if `negative`.
    fn literal(&self, tok: &Token, negative: bool) -> PResult<Expr> {
        match &tok.kind {
            TokenKind::Integer(text) => {
                let magnitude: u64 =
                    text.parse().map_err(|_| self.error_at(tok, "unable to parse integer"))?;
                let value = if negative {
                    0i64.checked_sub_unsigned(magnitude)
                } else {
                    i64::try_from(magnitude).ok()
                };
                value.map(Expr::Integer).ok_or_else(|| self.error_at(tok, "unable to parse integer"))
            }
            TokenKind::Number(text) => match text.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(Expr::Number(if negative { -v } else { v })),
                _ => Err(self.error_at(tok, "unable to parse number")),
            },
            TokenKind::Duration(text) => {
                let parsed =
                    if negative { parse_duration(&format!("-{text}")) } else { parse_duration(text) };
                parsed.map(Expr::Duration).map_err(|e| self.error_at(tok, e.to_string()))
            }
            _ => Err(self.unexpected(tok, &["number", "duration"])),
        }
    }

    /// The type after `::`.
    fn parse_cast(&mut self) -> PResult<DataType> {
        let tok = self.next()?;
        let data_type = match &tok.kind {
            TokenKind::Keyword(Keyword::Field) => Some(DataType::Field),
            TokenKind::Keyword(Keyword::Tag) => Some(DataType::Tag),
            TokenKind::Ident { name, quoted: false } => DataType::from_name(name),
            _ => None,
        };
        data_type.ok_or_else(|| self.unexpected(&tok, CAST_TYPES))
    }

    /// A call after `name(`; `name_tok` is the name token.
    fn parse_call(&mut self, name_tok: &Token, name: &str) -> PResult<(Expr, usize)> {
        let lname = name.to_ascii_lowercase();
        if lname == "now" {
            self.expect(&TokenKind::RParen, ")")?;
            return Ok((Expr::Now, 1));
        }
        let Some(spec) = function_spec(&lname) else {
            return Err(self.error_at(name_tok, format!("undefined function {name}()")));
        };
        if self.in_condition {
            return Err(self.error_at(name_tok, format!("invalid function call in condition: {lname}()")));
        }
        let mut args = Vec::new();
        let mut depth = 0;
        if !self.eat(&TokenKind::RParen)? {
            loop {
                let (arg, d) = if self.peek_is(&TokenKind::Star)? {
                    (self.parse_wildcard()?, 1)
                } else {
                    self.parse_binary()?
                };
                args.push(arg);
                depth = depth.max(d);
                if !self.eat(&TokenKind::Comma)? {
                    break;
                }
            }
            self.expect(&TokenKind::RParen, ")")?;
        }
        self.check_call(name_tok, spec, &args)?;
        Ok((Expr::Call { name: lname, args }, depth + 1))
    }

    /// Arity and argument checks, with InfluxDB's messages.
    fn check_call(&self, name_tok: &Token, spec: &FunctionSpec, args: &[Expr]) -> PResult<()> {
        let name = spec.name;
        let n = args.len();
        if n < spec.min_args || n > spec.max_args {
            let msg = if spec.min_args == spec.max_args {
                format!("invalid number of arguments for {name}, expected {}, got {n}", spec.min_args)
            } else if spec.max_args == usize::MAX {
                format!(
                    "invalid number of arguments for {name}, expected at least {}, got {n}",
                    spec.min_args
                )
            } else {
                format!(
                    "invalid number of arguments for {name}, expected at least {} but no more than {}, got {n}",
                    spec.min_args, spec.max_args
                )
            };
            return Err(self.error_at(name_tok, msg));
        }
        let first_ok = match (&args[0], spec.kind) {
            (Expr::VarRef { .. } | Expr::Wildcard(_) | Expr::Regex(_), _) => true,
            (Expr::Call { name: inner, .. }, FunctionKind::Aggregate) => {
                name == "count" && inner == "distinct"
            }
            (Expr::Call { name: inner, .. }, FunctionKind::Transformation) => {
                function_spec(inner).is_some_and(|s| s.kind != FunctionKind::Transformation)
            }
            _ => false,
        };
        if !first_ok {
            let what = if spec.kind == FunctionKind::Transformation { "field or aggregate" } else { "field" };
            return Err(self.error_at(name_tok, format!("expected {what} argument in {name}()")));
        }
        if name == "top" || name == "bottom" {
            // InfluxDB's checks and messages: tags in the middle, a positive integer last.
            for a in &args[1..n - 1] {
                if !matches!(a, Expr::VarRef { .. }) {
                    return Err(self.error_at(
                        name_tok,
                        format!("only fields or tags are allowed in {name}(), found {a}"),
                    ));
                }
            }
            return match &args[n - 1] {
                Expr::Integer(k) if *k > 0 => Ok(()),
                Expr::Integer(k) => {
                    Err(self.error_at(name_tok, format!("limit ({k}) in {name} function must be at least 1")))
                }
                other => Err(self.error_at(
                    name_tok,
                    format!("expected integer as last argument in {name}(), found {other}"),
                )),
            };
        }
        let Some(second) = args.get(1) else {
            return Ok(());
        };
        match name {
            "percentile" => {
                if !matches!(second, Expr::Number(_) | Expr::Integer(_)) {
                    return Err(self.error_at(name_tok, "expected float argument in percentile()"));
                }
            }
            "moving_average" => match second {
                Expr::Integer(w) if *w > 1 => {}
                Expr::Integer(w) => {
                    return Err(self.error_at(
                        name_tok,
                        format!("moving_average window must be greater than 1, got {w}"),
                    ))
                }
                _ => {
                    return Err(
                        self.error_at(name_tok, "second argument for moving_average must be an integer")
                    )
                }
            },
            _ => match second {
                Expr::Duration(d) if *d > 0 => {}
                Expr::Duration(_) => {
                    return Err(
                        self.error_at(name_tok, format!("duration argument to {name} must be positive"))
                    )
                }
                _ => {
                    return Err(
                        self.error_at(name_tok, format!("second argument to {name} must be a duration"))
                    )
                }
            },
        }
        Ok(())
    }
}

/// The binary operator a token stands for, if any.
fn binary_op(kind: &TokenKind) -> Option<BinaryOp> {
    Some(match kind {
        TokenKind::Plus => BinaryOp::Add,
        TokenKind::Minus => BinaryOp::Sub,
        TokenKind::Star => BinaryOp::Mul,
        TokenKind::Slash => BinaryOp::Div,
        TokenKind::Percent => BinaryOp::Mod,
        TokenKind::Ampersand => BinaryOp::BitAnd,
        TokenKind::Pipe => BinaryOp::BitOr,
        TokenKind::Caret => BinaryOp::BitXor,
        TokenKind::Eq => BinaryOp::Eq,
        TokenKind::Neq => BinaryOp::Neq,
        TokenKind::Lt => BinaryOp::Lt,
        TokenKind::Lte => BinaryOp::Lte,
        TokenKind::Gt => BinaryOp::Gt,
        TokenKind::Gte => BinaryOp::Gte,
        TokenKind::EqRegex => BinaryOp::EqRegex,
        TokenKind::NeqRegex => BinaryOp::NeqRegex,
        TokenKind::Keyword(Keyword::And) => BinaryOp::And,
        TokenKind::Keyword(Keyword::Or) => BinaryOp::Or,
        _ => return None,
    })
}

/// The last line of a regex error ("unclosed group", "Compiled regex
/// exceeds size limit of ...") without the multi-line source diagram.
fn regex_error_summary(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    last.strip_prefix("error: ").unwrap_or(last).to_string()
}

#[cfg(test)]
mod tests;
