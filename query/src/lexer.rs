//! Tokenizer for Strata's query language (InfluxQL's lexical grammar).
//!
//! The lexer is pull-based: the parser asks for one token at a time and keeps
//! at most one token of look-ahead. That matters for regular expressions: a
//! `/` is a division operator after an operand but opens a regex literal where
//! an operand is expected, and only the parser knows which. When the parser
//! wants a regex it takes the `/` token it peeked and calls
//! [`Lexer::scan_regex`], which continues from just after that slash (the
//! slash token never consumes more than its own byte, so nothing is lost).
//!
//! Numbers are returned as text (`Integer`, `Number`, `Duration`): whether
//! `9223372036854775808` fits depends on a unary minus the lexer cannot see,
//! so conversion and range checks happen in the parser, with positions.
//!
//! Lexing rules follow InfluxQL's scanner (`influxql/scanner.go`):
//! - unquoted identifiers are `[A-Za-z_][A-Za-z0-9_]*`; a keyword is an
//!   unquoted identifier matching the keyword table case-insensitively;
//! - `"..."` is a quoted identifier and `'...'` a string; both accept the
//!   escapes `\n`, `\\`, `\'`, `\"` and end at a raw newline with an error;
//! - digits followed by a letter or `µ` start a duration (`10s`, `1h30m`);
//!   digits with a `.` are a float; `.5` is a float;
//! - `-- comment` runs to the end of the line, `/* comment */` may span lines.

use std::fmt;

use crate::parse_error::ParseError;

/// Reserved words. An unquoted identifier spelled like one of these (in any
/// case) is a keyword and must be double-quoted to be used as a name.
///
/// The list is InfluxQL's full keyword table, including words Strata does not
/// use yet (GRANT, KILL, ...), so that a name which needs quoting in InfluxDB
/// also needs it here and queries stay portable both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keyword {
    All,
    Alter,
    Analyze,
    And,
    Any,
    As,
    Asc,
    Begin,
    By,
    Cardinality,
    Continuous,
    Create,
    Database,
    Databases,
    Default,
    Delete,
    Desc,
    Destinations,
    Diagnostics,
    Distinct,
    Drop,
    Duration,
    End,
    Every,
    Exact,
    Explain,
    False,
    Field,
    For,
    From,
    Grant,
    Grants,
    Group,
    Groups,
    In,
    Inf,
    Insert,
    Into,
    Key,
    Keys,
    Kill,
    Limit,
    Measurement,
    Measurements,
    Name,
    Offset,
    On,
    Or,
    Order,
    Password,
    Policies,
    Policy,
    Privileges,
    Queries,
    Query,
    Read,
    Replication,
    Resample,
    Retention,
    Revoke,
    Select,
    Series,
    Set,
    Shard,
    Shards,
    Show,
    Slimit,
    Soffset,
    Stats,
    Subscription,
    Subscriptions,
    Tag,
    To,
    True,
    User,
    Users,
    Values,
    Where,
    With,
    Write,
}

impl Keyword {
    /// Looks `word` up case-insensitively.
    pub fn lookup(word: &str) -> Option<Keyword> {
        // The longest keyword is SUBSCRIPTIONS (13 bytes); skip the
        // uppercase copy for longer identifiers.
        if word.len() > 13 || word.len() < 2 {
            return None;
        }
        let upper = word.to_ascii_uppercase();
        use Keyword::*;
        Some(match upper.as_str() {
            "ALL" => All,
            "ALTER" => Alter,
            "ANALYZE" => Analyze,
            "AND" => And,
            "ANY" => Any,
            "AS" => As,
            "ASC" => Asc,
            "BEGIN" => Begin,
            "BY" => By,
            "CARDINALITY" => Cardinality,
            "CONTINUOUS" => Continuous,
            "CREATE" => Create,
            "DATABASE" => Database,
            "DATABASES" => Databases,
            "DEFAULT" => Default,
            "DELETE" => Delete,
            "DESC" => Desc,
            "DESTINATIONS" => Destinations,
            "DIAGNOSTICS" => Diagnostics,
            "DISTINCT" => Distinct,
            "DROP" => Drop,
            "DURATION" => Duration,
            "END" => End,
            "EVERY" => Every,
            "EXACT" => Exact,
            "EXPLAIN" => Explain,
            "FALSE" => False,
            "FIELD" => Field,
            "FOR" => For,
            "FROM" => From,
            "GRANT" => Grant,
            "GRANTS" => Grants,
            "GROUP" => Group,
            "GROUPS" => Groups,
            "IN" => In,
            "INF" => Inf,
            "INSERT" => Insert,
            "INTO" => Into,
            "KEY" => Key,
            "KEYS" => Keys,
            "KILL" => Kill,
            "LIMIT" => Limit,
            "MEASUREMENT" => Measurement,
            "MEASUREMENTS" => Measurements,
            "NAME" => Name,
            "OFFSET" => Offset,
            "ON" => On,
            "OR" => Or,
            "ORDER" => Order,
            "PASSWORD" => Password,
            "POLICIES" => Policies,
            "POLICY" => Policy,
            "PRIVILEGES" => Privileges,
            "QUERIES" => Queries,
            "QUERY" => Query,
            "READ" => Read,
            "REPLICATION" => Replication,
            "RESAMPLE" => Resample,
            "RETENTION" => Retention,
            "REVOKE" => Revoke,
            "SELECT" => Select,
            "SERIES" => Series,
            "SET" => Set,
            "SHARD" => Shard,
            "SHARDS" => Shards,
            "SHOW" => Show,
            "SLIMIT" => Slimit,
            "SOFFSET" => Soffset,
            "STATS" => Stats,
            "SUBSCRIPTION" => Subscription,
            "SUBSCRIPTIONS" => Subscriptions,
            "TAG" => Tag,
            "TO" => To,
            "TRUE" => True,
            "USER" => User,
            "USERS" => Users,
            "VALUES" => Values,
            "WHERE" => Where,
            "WITH" => With,
            "WRITE" => Write,
            _ => return None,
        })
    }

    /// The keyword in upper case, as error messages and `Display` print it.
    pub fn as_str(self) -> &'static str {
        use Keyword::*;
        match self {
            All => "ALL",
            Alter => "ALTER",
            Analyze => "ANALYZE",
            And => "AND",
            Any => "ANY",
            As => "AS",
            Asc => "ASC",
            Begin => "BEGIN",
            By => "BY",
            Cardinality => "CARDINALITY",
            Continuous => "CONTINUOUS",
            Create => "CREATE",
            Database => "DATABASE",
            Databases => "DATABASES",
            Default => "DEFAULT",
            Delete => "DELETE",
            Desc => "DESC",
            Destinations => "DESTINATIONS",
            Diagnostics => "DIAGNOSTICS",
            Distinct => "DISTINCT",
            Drop => "DROP",
            Duration => "DURATION",
            End => "END",
            Every => "EVERY",
            Exact => "EXACT",
            Explain => "EXPLAIN",
            False => "FALSE",
            Field => "FIELD",
            For => "FOR",
            From => "FROM",
            Grant => "GRANT",
            Grants => "GRANTS",
            Group => "GROUP",
            Groups => "GROUPS",
            In => "IN",
            Inf => "INF",
            Insert => "INSERT",
            Into => "INTO",
            Key => "KEY",
            Keys => "KEYS",
            Kill => "KILL",
            Limit => "LIMIT",
            Measurement => "MEASUREMENT",
            Measurements => "MEASUREMENTS",
            Name => "NAME",
            Offset => "OFFSET",
            On => "ON",
            Or => "OR",
            Order => "ORDER",
            Password => "PASSWORD",
            Policies => "POLICIES",
            Policy => "POLICY",
            Privileges => "PRIVILEGES",
            Queries => "QUERIES",
            Query => "QUERY",
            Read => "READ",
            Replication => "REPLICATION",
            Resample => "RESAMPLE",
            Retention => "RETENTION",
            Revoke => "REVOKE",
            Select => "SELECT",
            Series => "SERIES",
            Set => "SET",
            Shard => "SHARD",
            Shards => "SHARDS",
            Show => "SHOW",
            Slimit => "SLIMIT",
            Soffset => "SOFFSET",
            Stats => "STATS",
            Subscription => "SUBSCRIPTION",
            Subscriptions => "SUBSCRIPTIONS",
            Tag => "TAG",
            To => "TO",
            True => "TRUE",
            User => "USER",
            Users => "USERS",
            Values => "VALUES",
            Where => "WHERE",
            With => "WITH",
            Write => "WRITE",
        }
    }
}

impl fmt::Display for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a token is. Literal payloads are already unescaped.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenKind {
    /// End of input.
    Eof,
    /// An identifier; `quoted` is true for `"..."` identifiers, which are
    /// never keywords.
    Ident {
        name: String,
        quoted: bool,
    },
    Keyword(Keyword),
    /// `'...'`, unescaped.
    String(String),
    /// Decimal digits, unsigned; range-checked by the parser.
    Integer(String),
    /// `digits.digits`, `.digits` or `digits.`; parsed by the parser.
    Number(String),
    /// Digits followed by unit letters, e.g. `10s`, `1h30m`, `1700000000000ms`;
    /// validated by the parser.
    Duration(String),
    /// A regex body between slashes with `\/` unescaped; only produced by
    /// [`Lexer::scan_regex`].
    Regex(String),
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Ampersand,
    Pipe,
    Caret,
    Eq,
    Neq,
    EqRegex,
    NeqRegex,
    Lt,
    Lte,
    Gt,
    Gte,
    LParen,
    RParen,
    Comma,
    Dot,
    Semicolon,
    Colon,
    DoubleColon,
    /// A character that starts no token.
    Illegal(char),
}

/// A token and the byte range it covers in the query text.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub kind: TokenKind,
    /// Byte offset of the first character.
    pub start: usize,
    /// Byte offset just past the last character.
    pub end: usize,
}

impl Token {
    /// The token as InfluxDB shows it after "found" in an error message:
    /// identifiers and strings by their value, keywords in upper case,
    /// operators by their symbol, end of input as `EOF`.
    pub fn describe(&self) -> String {
        let s = match &self.kind {
            TokenKind::Eof => return "EOF".to_string(),
            TokenKind::Ident { name, .. } => name.clone(),
            TokenKind::Keyword(k) => k.as_str().to_string(),
            TokenKind::String(s) => s.clone(),
            TokenKind::Integer(s) | TokenKind::Number(s) | TokenKind::Duration(s) => s.clone(),
            TokenKind::Regex(s) => format!("/{s}/"),
            TokenKind::Illegal(c) => c.to_string(),
            other => symbol(other).to_string(),
        };
        truncate_for_message(s)
    }
}

/// Limits what an error message echoes back of a (possibly huge) token.
fn truncate_for_message(s: String) -> String {
    const MAX_CHARS: usize = 64;
    if s.chars().count() <= MAX_CHARS {
        return s;
    }
    let mut out: String = s.chars().take(MAX_CHARS).collect();
    out.push_str("...");
    out
}

/// The source spelling of punctuation and operator tokens.
fn symbol(kind: &TokenKind) -> &'static str {
    match kind {
        TokenKind::Plus => "+",
        TokenKind::Minus => "-",
        TokenKind::Star => "*",
        TokenKind::Slash => "/",
        TokenKind::Percent => "%",
        TokenKind::Ampersand => "&",
        TokenKind::Pipe => "|",
        TokenKind::Caret => "^",
        TokenKind::Eq => "=",
        TokenKind::Neq => "!=",
        TokenKind::EqRegex => "=~",
        TokenKind::NeqRegex => "!~",
        TokenKind::Lt => "<",
        TokenKind::Lte => "<=",
        TokenKind::Gt => ">",
        TokenKind::Gte => ">=",
        TokenKind::LParen => "(",
        TokenKind::RParen => ")",
        TokenKind::Comma => ",",
        TokenKind::Dot => ".",
        TokenKind::Semicolon => ";",
        TokenKind::Colon => ":",
        TokenKind::DoubleColon => "::",
        _ => "?",
    }
}

/// A cursor over the query text producing [`Token`]s on demand.
pub struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(src: &'a str) -> Self {
        Lexer { src, pos: 0 }
    }

    /// The whole query text.
    pub fn source(&self) -> &'a str {
        self.src
    }

    fn peek_char(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        let mut it = self.src[self.pos..].chars();
        it.next();
        it.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek_char()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn error(&self, offset: usize, found: &str, message: String) -> ParseError {
        ParseError::with_message(self.src, offset, found.to_string(), message)
    }

    /// Skips whitespace and comments.
    fn skip_trivia(&mut self) -> Result<(), ParseError> {
        loop {
            match self.peek_char() {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                Some('-') if self.peek_second() == Some('-') => {
                    while let Some(c) = self.bump() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                Some('/') if self.peek_second() == Some('*') => {
                    let start = self.pos;
                    self.pos += 2;
                    match self.src[self.pos..].find("*/") {
                        Some(i) => self.pos += i + 2,
                        None => return Err(self.error(start, "/*", "unterminated comment".to_string())),
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// Scans the next token, skipping whitespace and comments.
    pub fn next_token(&mut self) -> Result<Token, ParseError> {
        self.skip_trivia()?;
        let start = self.pos;
        let Some(c) = self.bump() else {
            return Ok(Token { kind: TokenKind::Eof, start, end: start });
        };
        let kind = match c {
            'a'..='z' | 'A'..='Z' | '_' => {
                while let Some(c) = self.peek_char() {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        self.bump();
                    } else {
                        break;
                    }
                }
                let word = &self.src[start..self.pos];
                match Keyword::lookup(word) {
                    Some(k) => TokenKind::Keyword(k),
                    None => TokenKind::Ident { name: word.to_string(), quoted: false },
                }
            }
            '"' => TokenKind::Ident { name: self.scan_quoted('"', start)?, quoted: true },
            '\'' => TokenKind::String(self.scan_quoted('\'', start)?),
            '0'..='9' => self.scan_number(start),
            '.' => {
                if self.peek_char().is_some_and(|c| c.is_ascii_digit()) {
                    self.scan_number(start)
                } else {
                    TokenKind::Dot
                }
            }
            '+' => TokenKind::Plus,
            '-' => TokenKind::Minus,
            '*' => TokenKind::Star,
            '/' => TokenKind::Slash,
            '%' => TokenKind::Percent,
            '&' => TokenKind::Ampersand,
            '|' => TokenKind::Pipe,
            '^' => TokenKind::Caret,
            '=' => {
                if self.peek_char() == Some('~') {
                    self.bump();
                    TokenKind::EqRegex
                } else {
                    TokenKind::Eq
                }
            }
            '!' => match self.peek_char() {
                Some('=') => {
                    self.bump();
                    TokenKind::Neq
                }
                Some('~') => {
                    self.bump();
                    TokenKind::NeqRegex
                }
                _ => TokenKind::Illegal('!'),
            },
            '<' => match self.peek_char() {
                Some('=') => {
                    self.bump();
                    TokenKind::Lte
                }
                Some('>') => {
                    self.bump();
                    TokenKind::Neq
                }
                _ => TokenKind::Lt,
            },
            '>' => {
                if self.peek_char() == Some('=') {
                    self.bump();
                    TokenKind::Gte
                } else {
                    TokenKind::Gt
                }
            }
            '(' => TokenKind::LParen,
            ')' => TokenKind::RParen,
            ',' => TokenKind::Comma,
            ';' => TokenKind::Semicolon,
            ':' => {
                if self.peek_char() == Some(':') {
                    self.bump();
                    TokenKind::DoubleColon
                } else {
                    TokenKind::Colon
                }
            }
            other => TokenKind::Illegal(other),
        };
        Ok(Token { kind, start, end: self.pos })
    }

    /// Scans a number whose first character (a digit or `.`) is at `start`
    /// and has been consumed.
    fn scan_number(&mut self, start: usize) -> TokenKind {
        // Rewind to re-read the first character uniformly.
        self.pos = start;
        while self.peek_char().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        if self.peek_char() == Some('.') {
            // InfluxQL reads `1.` as the number 1 (the dot is consumed).
            self.bump();
            while self.peek_char().is_some_and(|c| c.is_ascii_digit()) {
                self.bump();
            }
            return TokenKind::Number(self.src[start..self.pos].to_string());
        }
        if self.peek_char().is_some_and(|c| c.is_ascii_alphabetic() || c == 'µ') {
            while self.peek_char().is_some_and(|c| c.is_ascii_alphanumeric() || c == 'µ') {
                self.bump();
            }
            return TokenKind::Duration(self.src[start..self.pos].to_string());
        }
        TokenKind::Integer(self.src[start..self.pos].to_string())
    }

    /// Scans the rest of a quoted string or identifier; the opening quote at
    /// `start` has been consumed.
    fn scan_quoted(&mut self, quote: char, start: usize) -> Result<String, ParseError> {
        let what = if quote == '"' { "quoted identifier" } else { "string" };
        let mut out = String::new();
        loop {
            let at = self.pos;
            match self.bump() {
                None | Some('\n') => {
                    return Err(self.error(
                        start,
                        &truncate_for_message(self.src[start..at].to_string()),
                        format!("unterminated {what}"),
                    ))
                }
                Some(c) if c == quote => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('n') => out.push('\n'),
                    Some('\\') => out.push('\\'),
                    Some('\'') => out.push('\''),
                    Some('"') => out.push('"'),
                    None => {
                        return Err(self.error(
                            start,
                            &truncate_for_message(self.src[start..].to_string()),
                            format!("unterminated {what}"),
                        ))
                    }
                    Some(c) => {
                        let esc = format!("\\{c}");
                        return Err(self.error(at, &esc, format!("bad escape: {esc}")));
                    }
                },
                Some(c) => out.push(c),
            }
        }
    }

    /// Scans a regex literal. `slash` is the byte offset of the opening `/`,
    /// which the caller has already consumed as a [`TokenKind::Slash`] token;
    /// the lexer must be positioned right after it.
    ///
    /// As in InfluxQL, `\/` stands for `/` and every other backslash is kept
    /// for the regex engine (so `\d`, `\.` and `\\` mean what they mean to the
    /// regex crate). A regex cannot span lines.
    pub fn scan_regex(&mut self, slash: usize) -> Result<Token, ParseError> {
        debug_assert_eq!(self.pos, slash + 1, "scan_regex must follow the slash");
        self.pos = slash + 1;
        let mut out = String::new();
        loop {
            match self.bump() {
                None | Some('\n') => {
                    return Err(self.error(
                        slash,
                        &truncate_for_message(self.src[slash..self.pos].to_string()),
                        "unterminated regex".to_string(),
                    ))
                }
                Some('/') => break,
                Some('\\') => {
                    if self.peek_char() == Some('/') {
                        self.bump();
                        out.push('/');
                    } else {
                        // Keep the backslash; the next character is read on
                        // the next iteration (so `\\/` is `\` then `\/`).
                        out.push('\\');
                    }
                }
                Some(c) => out.push(c),
            }
        }
        Ok(Token { kind: TokenKind::Regex(out), start: slash, end: self.pos })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<TokenKind> {
        let mut lx = Lexer::new(src);
        let mut out = Vec::new();
        loop {
            let t = lx.next_token().expect("lex");
            if t.kind == TokenKind::Eof {
                return out;
            }
            out.push(t.kind);
        }
    }

    fn ident(s: &str) -> TokenKind {
        TokenKind::Ident { name: s.to_string(), quoted: false }
    }

    #[test]
    fn keywords_are_case_insensitive_and_quoted_idents_are_not_keywords() {
        assert_eq!(
            kinds(r#"select SeLeCt "select" from_x"#),
            vec![
                TokenKind::Keyword(Keyword::Select),
                TokenKind::Keyword(Keyword::Select),
                TokenKind::Ident { name: "select".into(), quoted: true },
                ident("from_x"),
            ]
        );
    }

    #[test]
    fn numbers_durations_and_dots() {
        assert_eq!(
            kinds("1 1.5 .5 1. 10s 1h30m 5µ 1700000000000ms db..m"),
            vec![
                TokenKind::Integer("1".into()),
                TokenKind::Number("1.5".into()),
                TokenKind::Number(".5".into()),
                TokenKind::Number("1.".into()),
                TokenKind::Duration("10s".into()),
                TokenKind::Duration("1h30m".into()),
                TokenKind::Duration("5µ".into()),
                TokenKind::Duration("1700000000000ms".into()),
                ident("db"),
                TokenKind::Dot,
                TokenKind::Dot,
                ident("m"),
            ]
        );
    }

    #[test]
    fn operators() {
        assert_eq!(
            kinds("= != <> < <= > >= =~ !~ + - * / % & | ^ :: : ( ) , ; !"),
            vec![
                TokenKind::Eq,
                TokenKind::Neq,
                TokenKind::Neq,
                TokenKind::Lt,
                TokenKind::Lte,
                TokenKind::Gt,
                TokenKind::Gte,
                TokenKind::EqRegex,
                TokenKind::NeqRegex,
                TokenKind::Plus,
                TokenKind::Minus,
                TokenKind::Star,
                TokenKind::Slash,
                TokenKind::Percent,
                TokenKind::Ampersand,
                TokenKind::Pipe,
                TokenKind::Caret,
                TokenKind::DoubleColon,
                TokenKind::Colon,
                TokenKind::LParen,
                TokenKind::RParen,
                TokenKind::Comma,
                TokenKind::Semicolon,
                TokenKind::Illegal('!'),
            ]
        );
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(
            kinds(r#"'it\'s' 'a\\b' 'x\ny' "q\"i""#),
            vec![
                TokenKind::String("it's".into()),
                TokenKind::String("a\\b".into()),
                TokenKind::String("x\ny".into()),
                TokenKind::Ident { name: "q\"i".into(), quoted: true },
            ]
        );
    }

    #[test]
    fn comments_are_skipped() {
        assert_eq!(kinds("a -- comment\n b /* multi\nline */ c"), vec![ident("a"), ident("b"), ident("c")]);
    }

    #[test]
    fn string_errors_carry_positions() {
        let mut lx = Lexer::new("x 'abc");
        assert_eq!(lx.next_token().expect("x").kind, ident("x"));
        let err = lx.next_token().expect_err("unterminated");
        assert_eq!((err.line, err.char), (1, 3));
        assert_eq!(err.message.as_deref(), Some("unterminated string"));

        let mut lx = Lexer::new("'a\\qb'");
        let err = lx.next_token().expect_err("bad escape");
        assert_eq!((err.line, err.char), (1, 3));
        assert_eq!(err.message.as_deref(), Some("bad escape: \\q"));
    }

    #[test]
    fn regex_scanning_unescapes_only_slashes() {
        let src = r"/a\/b\d\\/x/ rest";
        let mut lx = Lexer::new(src);
        let slash = lx.next_token().expect("slash");
        assert_eq!(slash.kind, TokenKind::Slash);
        let re = lx.scan_regex(slash.start).expect("regex");
        // `\\/` is a kept backslash followed by an escaped slash, as in
        // InfluxQL, so the regex continues up to the next `/`.
        assert!(matches!(re.kind, TokenKind::Regex(ref s) if s == r"a/b\d\/x"));
        assert_eq!(lx.next_token().expect("ident").kind, ident("rest"));
    }

    #[test]
    fn unterminated_regex_is_an_error() {
        let mut lx = Lexer::new("/abc");
        let slash = lx.next_token().expect("slash");
        let err = lx.scan_regex(slash.start).expect_err("unterminated");
        assert_eq!(err.message.as_deref(), Some("unterminated regex"));
        assert_eq!((err.line, err.char), (1, 1));
    }
}
