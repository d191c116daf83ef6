//! Expressions compiled for evaluation per row: variables and calls become slot indexes,
//! so evaluating a row does no name lookups and allocates nothing.
//!
//! Semantics follow InfluxQL: any operation on a null is null, a comparison with a null is
//! false, division by zero gives 0, integer arithmetic wraps, `/` always gives a float.

use std::cmp::Ordering;

use regex::Regex;

use crate::ast::{BinaryOp, DataType, Expr};
use crate::result::Value;

/// A borrowed value: what a row slot holds while an expression is evaluated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum V<'a> {
    Null,
    F(f64),
    I(i64),
    U(u64),
    B(bool),
    S(&'a str),
}

impl<'a> V<'a> {
    pub fn from_value(v: &'a Value) -> V<'a> {
        match v {
            Value::Null => V::Null,
            Value::Float(f) => V::F(*f),
            Value::Integer(i) => V::I(*i),
            Value::Unsigned(u) => V::U(*u),
            Value::Boolean(b) => V::B(*b),
            Value::String(s) => V::S(s),
            Value::Time(t) | Value::ZonedTime { ns: t, .. } => V::I(*t),
        }
    }

    pub fn to_value(self) -> Value {
        match self {
            V::Null => Value::Null,
            V::F(f) => Value::Float(f),
            V::I(i) => Value::Integer(i),
            V::U(u) => Value::Unsigned(u),
            V::B(b) => Value::Boolean(b),
            V::S(s) => Value::String(s.to_owned()),
        }
    }

    fn as_f64(self) -> Option<f64> {
        match self {
            V::F(f) => Some(f),
            V::I(i) => Some(i as f64),
            V::U(u) => Some(u as f64),
            _ => None,
        }
    }

    fn truthy(self) -> bool {
        matches!(self, V::B(true))
    }
}

/// A compiled expression.
#[derive(Debug, Clone)]
pub enum CExpr {
    Slot(usize),
    Const(Value),
    Match {
        expr: Box<CExpr>,
        re: Regex,
        negate: bool,
    },
    Binary {
        op: BinaryOp,
        lhs: Box<CExpr>,
        rhs: Box<CExpr>,
    },
    /// A numeric `::float`, `::integer` or `::unsigned` cast of a variable.
    Cast {
        expr: Box<CExpr>,
        to: DataType,
    },
}

/// Compiles `e`; `slot` maps a variable or call node to its slot (None: the node is unknown,
/// and evaluates to null).
pub fn compile(e: &Expr, slot: &mut dyn FnMut(&Expr) -> Option<usize>) -> CExpr {
    match e {
        Expr::VarRef {
            data_type: Some(to @ (DataType::Float | DataType::Integer | DataType::Unsigned)),
            ..
        } => match slot(e) {
            Some(i) => CExpr::Cast { expr: Box::new(CExpr::Slot(i)), to: *to },
            None => CExpr::Const(Value::Null),
        },
        Expr::VarRef { .. } | Expr::Call { .. } => match slot(e) {
            Some(i) => CExpr::Slot(i),
            None => CExpr::Const(Value::Null),
        },
        Expr::Paren(inner) => compile(inner, slot),
        Expr::Number(f) => CExpr::Const(Value::Float(*f)),
        Expr::Integer(i) => CExpr::Const(Value::Integer(*i)),
        Expr::Duration(d) | Expr::Time(d) => CExpr::Const(Value::Integer(*d)),
        Expr::String(s) => CExpr::Const(Value::String(s.clone())),
        Expr::Bool(b) => CExpr::Const(Value::Boolean(*b)),
        Expr::Binary { op: op @ (BinaryOp::EqRegex | BinaryOp::NeqRegex), lhs, rhs } => {
            let (target, re) = match (lhs.strip_parens(), rhs.strip_parens()) {
                (_, Expr::Regex(re)) => (&**lhs, re),
                (Expr::Regex(re), _) => (&**rhs, re),
                _ => return CExpr::Const(Value::Boolean(false)),
            };
            CExpr::Match {
                expr: Box::new(compile(target, slot)),
                re: re.regex().clone(),
                negate: *op == BinaryOp::NeqRegex,
            }
        }
        Expr::Binary { op, lhs, rhs } => {
            CExpr::Binary { op: *op, lhs: Box::new(compile(lhs, slot)), rhs: Box::new(compile(rhs, slot)) }
        }
        Expr::Wildcard(_) | Expr::Regex(_) | Expr::Now => CExpr::Const(Value::Null),
    }
}

impl CExpr {
    pub fn eval<'a>(&'a self, slots: &[V<'a>]) -> V<'a> {
        match self {
            CExpr::Slot(i) => slots[*i],
            CExpr::Const(v) => V::from_value(v),
            CExpr::Cast { expr, to } => cast(expr.eval(slots), *to),
            CExpr::Match { expr, re, negate } => match expr.eval(slots) {
                V::S(s) => V::B(re.is_match(s) != *negate),
                _ => V::B(false),
            },
            CExpr::Binary { op, lhs, rhs } => {
                let l = lhs.eval(slots);
                match op {
                    BinaryOp::And => {
                        if !l.truthy() {
                            return V::B(false);
                        }
                        V::B(rhs.eval(slots).truthy())
                    }
                    BinaryOp::Or => {
                        if l.truthy() {
                            return V::B(true);
                        }
                        V::B(rhs.eval(slots).truthy())
                    }
                    _ => binary(*op, l, rhs.eval(slots)),
                }
            }
        }
    }

    /// Evaluates as a condition: only `true` passes.
    pub fn test(&self, slots: &[V<'_>]) -> bool {
        self.eval(slots).truthy()
    }
}

/// A numeric cast as InfluxDB converts (Go's conversions: floats truncate toward zero and
/// saturate); anything else is null.
fn cast(v: V<'_>, to: DataType) -> V<'_> {
    match (v, to) {
        (V::F(_), DataType::Float) | (V::I(_), DataType::Integer) | (V::U(_), DataType::Unsigned) => v,
        (V::I(i), DataType::Float) => V::F(i as f64),
        (V::U(u), DataType::Float) => V::F(u as f64),
        (V::F(f), DataType::Integer) => V::I(f as i64),
        (V::U(u), DataType::Integer) => V::I(u as i64),
        (V::F(f), DataType::Unsigned) => V::U(f as u64),
        (V::I(i), DataType::Unsigned) => V::U(i as u64),
        _ => V::Null,
    }
}

fn compare(l: V<'_>, r: V<'_>) -> Option<Ordering> {
    match (l, r) {
        (V::I(a), V::I(b)) => Some(a.cmp(&b)),
        (V::U(a), V::U(b)) => Some(a.cmp(&b)),
        (V::I(a), V::U(b)) => Some(if a < 0 { Ordering::Less } else { (a as u64).cmp(&b) }),
        (V::U(a), V::I(b)) => Some(if b < 0 { Ordering::Greater } else { a.cmp(&(b as u64)) }),
        (V::S(a), V::S(b)) => Some(a.cmp(b)),
        (V::B(a), V::B(b)) => Some(a.cmp(&b)),
        (a, b) => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// Applies a binary operator (not AND/OR, which short-circuit in [`CExpr::eval`]).
pub fn binary<'a>(op: BinaryOp, l: V<'a>, r: V<'a>) -> V<'a> {
    use BinaryOp::*;
    if l == V::Null || r == V::Null {
        return if op.is_comparison() { V::B(false) } else { V::Null };
    }
    match op {
        Eq => V::B(compare(l, r) == Some(Ordering::Equal)),
        Neq => V::B(matches!(compare(l, r), Some(o) if o != Ordering::Equal)),
        Lt => V::B(compare(l, r) == Some(Ordering::Less)),
        Lte => V::B(matches!(compare(l, r), Some(Ordering::Less | Ordering::Equal))),
        Gt => V::B(compare(l, r) == Some(Ordering::Greater)),
        Gte => V::B(matches!(compare(l, r), Some(Ordering::Greater | Ordering::Equal))),
        EqRegex | NeqRegex | And | Or => V::Null,
        BitAnd | BitOr | BitXor => match (l, r) {
            (V::I(a), V::I(b)) => V::I(bit(op, a as u64, b as u64) as i64),
            (V::U(a), V::U(b)) => V::U(bit(op, a, b)),
            (V::B(a), V::B(b)) => V::B(bit(op, a as u64, b as u64) != 0),
            _ => V::Null,
        },
        Add | Sub | Mul | Div | Mod => arith(op, l, r),
    }
}

fn bit(op: BinaryOp, a: u64, b: u64) -> u64 {
    match op {
        BinaryOp::BitAnd => a & b,
        BinaryOp::BitOr => a | b,
        _ => a ^ b,
    }
}

fn arith<'a>(op: BinaryOp, l: V<'a>, r: V<'a>) -> V<'a> {
    use BinaryOp::*;
    match (l, r) {
        (V::I(a), V::I(b)) if op != Div => V::I(match op {
            Add => a.wrapping_add(b),
            Sub => a.wrapping_sub(b),
            Mul => a.wrapping_mul(b),
            _ => {
                if b == 0 {
                    0
                } else {
                    a.wrapping_rem(b)
                }
            }
        }),
        (V::U(a), V::U(b)) if op != Div => V::U(match op {
            Add => a.wrapping_add(b),
            Sub => a.wrapping_sub(b),
            Mul => a.wrapping_mul(b),
            _ => a.checked_rem(b).unwrap_or(0),
        }),
        (a, b) => {
            let (Some(a), Some(b)) = (a.as_f64(), b.as_f64()) else { return V::Null };
            V::F(match op {
                Add => a + b,
                Sub => a - b,
                Mul => a * b,
                Div => {
                    if b == 0.0 {
                        0.0
                    } else {
                        a / b
                    }
                }
                _ => {
                    if b == 0.0 {
                        0.0
                    } else {
                        a % b
                    }
                }
            })
        }
    }
}
