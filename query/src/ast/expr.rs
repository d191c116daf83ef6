//! Expressions: field expressions of `SELECT` and conditions of `WHERE`.

use std::fmt;

/// An expression: a field expression in `SELECT`, or a condition in `WHERE`.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Binary {
        op: BinaryOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// A function call; `name` is lower case and listed in [`FUNCTIONS`](super::FUNCTIONS), and
    /// the arguments passed the arity and type checks of the parser.
    Call {
        name: String,
        args: Vec<Expr>,
    },
    /// A field, tag or `time`, with an optional `::type` cast.
    VarRef {
        name: String,
        data_type: Option<DataType>,
    },
    /// `*`, `*::field` or `*::tag`; only a whole field or a call argument.
    Wildcard(WildcardKind),
    /// Float literal, always finite.
    Number(f64),
    Integer(i64),
    String(String),
    Bool(bool),
    /// Duration literal in nanoseconds (`10s`, `1h30m`, `-5m`).
    Duration(i64),
    /// Absolute time in nanoseconds since the epoch; the parser produces it
    /// from a string compared with `time`.
    Time(i64),
    /// `/regex/`, already compiled.
    Regex(RegexLiteral),
    /// `now()`
    Now,
    /// `( expr )`
    Paren(Box<Expr>),
}

impl Expr {
    /// `lhs op rhs`.
    pub fn binary(op: BinaryOp, lhs: Expr, rhs: Expr) -> Expr {
        Expr::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs) }
    }

    /// An untyped variable reference.
    pub fn var(name: impl Into<String>) -> Expr {
        Expr::VarRef { name: name.into(), data_type: None }
    }

    /// True for a reference to the `time` column.
    pub fn is_time_ref(&self) -> bool {
        matches!(self, Expr::VarRef { name, data_type: None } if name == "time")
    }

    /// The expression without enclosing parentheses.
    pub fn strip_parens(&self) -> &Expr {
        let mut e = self;
        while let Expr::Paren(inner) = e {
            e = inner;
        }
        e
    }

    /// Calls `f` on this expression and every sub-expression, parents first.
    pub fn walk<'a, F: FnMut(&'a Expr)>(&'a self, f: &mut F) {
        f(self);
        match self {
            Expr::Binary { lhs, rhs, .. } => {
                lhs.walk(f);
                rhs.walk(f);
            }
            Expr::Call { args, .. } => {
                for a in args {
                    a.walk(f);
                }
            }
            Expr::Paren(inner) => inner.walk(f),
            _ => {}
        }
    }

    /// True if `time` is referenced anywhere in this expression.
    pub fn references_time(&self) -> bool {
        let mut found = false;
        self.walk(&mut |e| found |= e.is_time_ref());
        found
    }

    /// The variable references in this expression, in order.
    pub fn var_refs(&self) -> Vec<(&str, Option<DataType>)> {
        let mut out = Vec::new();
        self.walk(&mut |e| {
            if let Expr::VarRef { name, data_type } = e {
                out.push((name.as_str(), *data_type));
            }
        });
        out
    }
}

/// Binary operators, from loosest to tightest binding:
/// `OR` < `AND` < comparisons < `+ - | ^` < `* / % &` (all left-associative).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    BitAnd,
    BitOr,
    BitXor,
    Eq,
    /// `!=` or `<>`.
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    /// `=~`
    EqRegex,
    /// `!~`
    NeqRegex,
    And,
    Or,
}

impl BinaryOp {
    /// Binding strength, as in InfluxQL: 1 (`OR`) to 5 (`*`).
    pub fn precedence(self) -> u8 {
        use BinaryOp::*;
        match self {
            Or => 1,
            And => 2,
            Eq | Neq | Lt | Lte | Gt | Gte | EqRegex | NeqRegex => 3,
            Add | Sub | BitOr | BitXor => 4,
            Mul | Div | Mod | BitAnd => 5,
        }
    }

    /// True for `= != < <= > >= =~ !~`.
    pub fn is_comparison(self) -> bool {
        self.precedence() == 3
    }

    /// True for `+ - * / % & | ^`.
    pub fn is_arithmetic(self) -> bool {
        self.precedence() >= 4
    }

    /// The operator with its operands swapped: `a < b` is `b > a`.
    pub fn flip(self) -> BinaryOp {
        use BinaryOp::*;
        match self {
            Lt => Gt,
            Lte => Gte,
            Gt => Lt,
            Gte => Lte,
            other => other,
        }
    }

    pub fn as_str(self) -> &'static str {
        use BinaryOp::*;
        match self {
            Add => "+",
            Sub => "-",
            Mul => "*",
            Div => "/",
            Mod => "%",
            BitAnd => "&",
            BitOr => "|",
            BitXor => "^",
            Eq => "=",
            Neq => "!=",
            Lt => "<",
            Lte => "<=",
            Gt => ">",
            Gte => ">=",
            EqRegex => "=~",
            NeqRegex => "!~",
            And => "AND",
            Or => "OR",
        }
    }
}

impl fmt::Display for BinaryOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The type named by a `::type` cast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Float,
    Integer,
    Unsigned,
    String,
    Boolean,
    /// `::field`: any field, never a tag.
    Field,
    /// `::tag`: a tag, never a field.
    Tag,
}

impl DataType {
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Float => "float",
            DataType::Integer => "integer",
            DataType::Unsigned => "unsigned",
            DataType::String => "string",
            DataType::Boolean => "boolean",
            DataType::Field => "field",
            DataType::Tag => "tag",
        }
    }

    /// Parses a cast name, case-insensitively.
    pub fn from_name(name: &str) -> Option<DataType> {
        Some(match name.to_ascii_lowercase().as_str() {
            "float" => DataType::Float,
            "integer" => DataType::Integer,
            "unsigned" => DataType::Unsigned,
            "string" => DataType::String,
            "boolean" => DataType::Boolean,
            "field" => DataType::Field,
            "tag" => DataType::Tag,
            _ => return None,
        })
    }
}

/// Which columns a `*` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WildcardKind {
    /// `*`: fields and tags.
    All,
    /// `*::field`
    Fields,
    /// `*::tag`
    Tags,
}

/// Compiled-size limit for regexes in queries (bytes of compiled program and
/// of lazy DFA cache; the regex crate's default is 10 MiB). A regex like
/// `/(a{1000}){1000}/` is refused at parse time instead of allocating
/// gigabytes, and compiling the largest accepted regex takes about 10 ms.
/// Grafana's multi-value variables produce alternations of names: a
/// thousand 10-character names need about 480 KiB.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A regex literal: the source text (between the slashes, with `\/`
/// unescaped) and the compiled regex. Equality compares the source.
#[derive(Clone)]
pub struct RegexLiteral {
    source: String,
    regex: regex::Regex,
}

impl RegexLiteral {
    /// Compiles `source` with the [`REGEX_SIZE_LIMIT`] applied. Matching is
    /// unanchored, as in InfluxQL: use `^...$` to match whole values.
    pub fn new(source: impl Into<String>) -> Result<Self, regex::Error> {
        let source = source.into();
        let regex = regex::RegexBuilder::new(&source)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()?;
        Ok(RegexLiteral { source, regex })
    }

    /// The regex source as written (with `\/` unescaped to `/`).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn regex(&self) -> &regex::Regex {
        &self.regex
    }

    pub fn is_match(&self, haystack: &str) -> bool {
        self.regex.is_match(haystack)
    }
}

impl PartialEq for RegexLiteral {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for RegexLiteral {}

impl fmt::Debug for RegexLiteral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/", self.source)
    }
}

impl fmt::Display for RegexLiteral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("/")?;
        // Only `/` needs escaping: the lexer keeps every other backslash
        // verbatim, and reads `\\/` as `\` followed by an escaped `/`.
        for c in self.source.chars() {
            if c == '/' {
                f.write_str("\\/")?;
            } else {
                write!(f, "{c}")?;
            }
        }
        f.write_str("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_literals_compare_by_source_and_escape_slashes() {
        let a = RegexLiteral::new("a/b").expect("valid");
        let b = RegexLiteral::new("a/b").expect("valid");
        assert_eq!(a, b);
        assert_eq!(a.to_string(), r"/a\/b/");
        assert!(a.is_match("xa/by"));
        assert!(RegexLiteral::new("(").is_err());
        assert!(RegexLiteral::new("(a{1000}){1000}").is_err(), "size limit");
    }
}
