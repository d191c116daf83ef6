//! The function table: every function the language knows, its kind and arity.

/// How a function consumes points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionKind {
    /// Computes one value per window from all points (`mean`, `count`).
    Aggregate,
    /// Picks one point per window (`max`, `first`, `percentile`); its
    /// timestamp can be reported.
    Selector,
    /// Produces a series from a series (`derivative`, `moving_average`);
    /// its first argument may be an aggregate call when grouping by time.
    Transformation,
}

/// A function the parser accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionSpec {
    pub name: &'static str,
    pub kind: FunctionKind,
    pub min_args: usize,
    pub max_args: usize,
}

const fn spec(name: &'static str, kind: FunctionKind, min: usize, max: usize) -> FunctionSpec {
    FunctionSpec { name, kind, min_args: min, max_args: max }
}

/// Every function the language knows. Calls to anything else are parse
/// errors (`undefined function foo()`).
pub const FUNCTIONS: &[FunctionSpec] = &[
    spec("count", FunctionKind::Aggregate, 1, 1),
    spec("distinct", FunctionKind::Aggregate, 1, 1),
    spec("integral", FunctionKind::Aggregate, 1, 2),
    spec("mean", FunctionKind::Aggregate, 1, 1),
    spec("median", FunctionKind::Aggregate, 1, 1),
    spec("mode", FunctionKind::Aggregate, 1, 1),
    spec("spread", FunctionKind::Aggregate, 1, 1),
    spec("stddev", FunctionKind::Aggregate, 1, 1),
    spec("sum", FunctionKind::Aggregate, 1, 1),
    spec("first", FunctionKind::Selector, 1, 1),
    spec("last", FunctionKind::Selector, 1, 1),
    spec("max", FunctionKind::Selector, 1, 1),
    spec("min", FunctionKind::Selector, 1, 1),
    spec("percentile", FunctionKind::Selector, 2, 2),
    // `top(field[, tag ...], n)`: the n largest points (at most one per tag combination).
    spec("top", FunctionKind::Selector, 2, usize::MAX),
    spec("bottom", FunctionKind::Selector, 2, usize::MAX),
    spec("cumulative_sum", FunctionKind::Transformation, 1, 1),
    spec("derivative", FunctionKind::Transformation, 1, 2),
    spec("difference", FunctionKind::Transformation, 1, 1),
    spec("elapsed", FunctionKind::Transformation, 1, 2),
    spec("moving_average", FunctionKind::Transformation, 2, 2),
    spec("non_negative_derivative", FunctionKind::Transformation, 1, 2),
    spec("non_negative_difference", FunctionKind::Transformation, 1, 1),
];

/// Looks a function up by (lower-case) name.
pub fn function_spec(name: &str) -> Option<&'static FunctionSpec> {
    FUNCTIONS.iter().find(|f| f.name == name)
}
