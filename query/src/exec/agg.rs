//! Aggregate and selector accumulators.
//!
//! An [`Acc`] takes runs of points of one column (a slice of one block or memtable chunk that
//! falls into one bucket), single points (when a field condition filters rows), or block
//! summaries (when the engine did not decode the block). Tie rules are InfluxDB's: `min`/`max`
//! keep the earliest point among equal values, `first`/`last` the larger value among equal
//! timestamps.

use std::cmp::Ordering;

use strata_engine::{BlockSummary, FieldType, SummaryStats};

use super::eval::V;
use crate::result::Value;

/// An aggregate or selector function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AggKind {
    Count,
    Sum,
    Mean,
    Median,
    Mode,
    Spread,
    Stddev,
    First,
    Last,
    Min,
    Max,
    /// `percentile(f, p)`, `p` in 0..=100.
    Percentile(f64),
    /// `distinct(f)`: every distinct value, one row each (planned apart: it must be the only
    /// field).
    Distinct,
    /// `count(distinct(f))`.
    CountDistinct,
    /// `integral(f[, unit])`: area under the points by the trapezoid rule, in value x `unit`
    /// (ns). Needs the neighbouring buckets (see [`integral`]), so [`Acc::finish`] does not
    /// answer it.
    Integral {
        unit: i64,
    },
}

impl AggKind {
    pub fn from_name(name: &str) -> Option<AggKind> {
        Some(match name {
            "count" => AggKind::Count,
            "sum" => AggKind::Sum,
            "mean" => AggKind::Mean,
            "median" => AggKind::Median,
            "mode" => AggKind::Mode,
            "spread" => AggKind::Spread,
            "stddev" => AggKind::Stddev,
            "first" => AggKind::First,
            "last" => AggKind::Last,
            "min" => AggKind::Min,
            "max" => AggKind::Max,
            "percentile" => AggKind::Percentile(0.0),
            "distinct" => AggKind::Distinct,
            "integral" => AggKind::Integral { unit: crate::time::NANOS_PER_SECOND },
            _ => return None,
        })
    }

    /// Computable from block statistics alone.
    pub fn summarizable(self) -> bool {
        matches!(
            self,
            AggKind::Count
                | AggKind::Sum
                | AggKind::Mean
                | AggKind::Spread
                | AggKind::First
                | AggKind::Last
                | AggKind::Min
                | AggKind::Max
        )
    }

    /// Picks one point (its time can be reported).
    pub fn is_selector(self) -> bool {
        matches!(self, AggKind::First | AggKind::Last | AggKind::Min | AggKind::Max | AggKind::Percentile(_))
    }

    /// Keeps every value until the end (memory is charged per value).
    pub fn retains_values(self) -> bool {
        matches!(
            self,
            AggKind::Median
                | AggKind::Mode
                | AggKind::Stddev
                | AggKind::Percentile(_)
                | AggKind::Distinct
                | AggKind::CountDistinct
                | AggKind::Integral { .. }
        )
    }

    /// Accepts values of this type (the others are ignored, as InfluxDB returns nothing for
    /// `mean` of a string field).
    pub fn accepts(self, ty: FieldType) -> bool {
        match self {
            AggKind::Count
            | AggKind::First
            | AggKind::Last
            | AggKind::Mode
            | AggKind::Distinct
            | AggKind::CountDistinct => true,
            _ => matches!(ty, FieldType::F64 | FieldType::I64 | FieldType::U64),
        }
    }
}

/// A numeric value with its type.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    F(f64),
    I(i64),
    U(u64),
}

impl Num {
    fn f(self) -> f64 {
        match self {
            Num::F(v) => v,
            Num::I(v) => v as f64,
            Num::U(v) => v as f64,
        }
    }

    fn cmp(self, o: Num) -> Ordering {
        match (self, o) {
            (Num::I(a), Num::I(b)) => a.cmp(&b),
            (Num::U(a), Num::U(b)) => a.cmp(&b),
            (a, b) => a.f().total_cmp(&b.f()),
        }
    }

    fn is_nan(self) -> bool {
        matches!(self, Num::F(v) if v.is_nan())
    }

    fn value(self) -> Value {
        match self {
            Num::F(v) => Value::Float(v),
            Num::I(v) => Value::Integer(v),
            Num::U(v) => Value::Unsigned(v),
        }
    }

    fn sub(self, o: Num) -> Num {
        match (self, o) {
            (Num::I(a), Num::I(b)) => Num::I(a.wrapping_sub(b)),
            (Num::U(a), Num::U(b)) => Num::U(a.wrapping_sub(b)),
            (a, b) => Num::F(a.f() - b.f()),
        }
    }
}

/// A column slice handed to an accumulator.
#[derive(Debug, Clone, Copy)]
pub enum Col<'a> {
    F(&'a [f64]),
    I(&'a [i64]),
    U(&'a [u64]),
    B(&'a [bool]),
    S(&'a [String]),
}

impl<'a> Col<'a> {
    pub fn from_values(v: &'a strata_engine::Values) -> Col<'a> {
        use strata_engine::Values;
        match v {
            Values::F64(v) => Col::F(v),
            Values::I64(v) => Col::I(v),
            Values::U64(v) => Col::U(v),
            Values::Bool(v) => Col::B(v),
            Values::Str(v) => Col::S(v),
        }
    }

    pub fn slice(self, a: usize, b: usize) -> Col<'a> {
        match self {
            Col::F(v) => Col::F(&v[a..b]),
            Col::I(v) => Col::I(&v[a..b]),
            Col::U(v) => Col::U(&v[a..b]),
            Col::B(v) => Col::B(&v[a..b]),
            Col::S(v) => Col::S(&v[a..b]),
        }
    }

    pub fn get(self, i: usize) -> V<'a> {
        match self {
            Col::F(v) => V::F(v[i]),
            Col::I(v) => V::I(v[i]),
            Col::U(v) => V::U(v[i]),
            Col::B(v) => V::B(v[i]),
            Col::S(v) => V::S(&v[i]),
        }
    }

    pub fn field_type(self) -> FieldType {
        match self {
            Col::F(_) => FieldType::F64,
            Col::I(_) => FieldType::I64,
            Col::U(_) => FieldType::U64,
            Col::B(_) => FieldType::Bool,
            Col::S(_) => FieldType::Str,
        }
    }
}

fn v_num(v: V<'_>) -> Option<Num> {
    match v {
        V::F(x) => Some(Num::F(x)),
        V::I(x) => Some(Num::I(x)),
        V::U(x) => Some(Num::U(x)),
        _ => None,
    }
}

/// Orders two values of one column for tie-breaking: numbers, then bools, then strings.
fn v_cmp(a: &V<'_>, b: &V<'_>) -> Ordering {
    match (a, b) {
        (V::S(x), V::S(y)) => x.cmp(y),
        (V::B(x), V::B(y)) => x.cmp(y),
        _ => match (v_num(*a), v_num(*b)) {
            (Some(x), Some(y)) => x.cmp(y),
            _ => Ordering::Equal,
        },
    }
}

/// One call's result per bucket: `None` when undefined; the time for selectors.
pub type BucketValues = Vec<Option<(Option<i64>, Value)>>;

/// The state of one aggregate over one bucket.
#[derive(Debug, Clone)]
pub struct Acc {
    kind: AggKind,
    count: u64,
    ty: Option<FieldType>,
    sum_f: f64,
    sum_i: i64,
    sum_u: u64,
    /// first/last/min/max: the selected point.
    sel: Option<(i64, Value)>,
    lo: Option<Num>,
    hi: Option<Num>,
    vals: Vec<(i64, Num)>,
    modes: Vec<Value>,
    /// distinct: (time, value) of every point taken.
    pts: Vec<(i64, Value)>,
}

impl Acc {
    pub fn new(kind: AggKind) -> Acc {
        Acc {
            kind,
            count: 0,
            ty: None,
            sum_f: 0.0,
            sum_i: 0,
            sum_u: 0,
            sel: None,
            lo: None,
            hi: None,
            vals: Vec::new(),
            modes: Vec::new(),
            pts: Vec::new(),
        }
    }

    pub fn kind(&self) -> AggKind {
        self.kind
    }

    /// Number of points taken.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Offers a candidate point to a selector.
    fn select(&mut self, t: i64, v: V<'_>) {
        let replace = match &self.sel {
            None => true,
            Some((ct, cv)) => {
                let cv = V::from_value(cv);
                let ord = v_cmp(&v, &cv);
                match self.kind {
                    AggKind::First => t < *ct || (t == *ct && ord == Ordering::Greater),
                    AggKind::Last => t > *ct || (t == *ct && ord == Ordering::Greater),
                    AggKind::Min => {
                        let nan_cur = matches!(cv, V::F(x) if x.is_nan());
                        let nan_new = matches!(v, V::F(x) if x.is_nan());
                        (nan_cur && !nan_new)
                            || (!nan_new && (ord == Ordering::Less || (ord == Ordering::Equal && t < *ct)))
                    }
                    AggKind::Max => {
                        let nan_cur = matches!(cv, V::F(x) if x.is_nan());
                        let nan_new = matches!(v, V::F(x) if x.is_nan());
                        (nan_cur && !nan_new)
                            || (!nan_new && (ord == Ordering::Greater || (ord == Ordering::Equal && t < *ct)))
                    }
                    _ => false,
                }
            }
        };
        if replace {
            self.sel = Some((t, v.to_value()));
        }
    }

    fn spread(&mut self, n: Num) {
        if n.is_nan() {
            return;
        }
        if self.lo.is_none_or(|lo| n.cmp(lo) == Ordering::Less) {
            self.lo = Some(n);
        }
        if self.hi.is_none_or(|hi| n.cmp(hi) == Ordering::Greater) {
            self.hi = Some(n);
        }
    }

    /// Takes one point.
    pub fn feed_one(&mut self, t: i64, v: V<'_>) {
        let ty = match v {
            V::Null => return,
            V::F(_) => FieldType::F64,
            V::I(_) => FieldType::I64,
            V::U(_) => FieldType::U64,
            V::B(_) => FieldType::Bool,
            V::S(_) => FieldType::Str,
        };
        if !self.kind.accepts(ty) {
            return;
        }
        self.ty = Some(ty);
        self.count += 1;
        match self.kind {
            AggKind::Count => {}
            AggKind::Sum | AggKind::Mean => match v {
                V::F(x) => self.sum_f += x,
                V::I(x) => {
                    self.sum_i = self.sum_i.wrapping_add(x);
                    self.sum_f += x as f64
                }
                V::U(x) => {
                    self.sum_u = self.sum_u.wrapping_add(x);
                    self.sum_f += x as f64
                }
                _ => {}
            },
            AggKind::First | AggKind::Last | AggKind::Min | AggKind::Max => self.select(t, v),
            AggKind::Spread => {
                if let Some(n) = v_num(v) {
                    self.spread(n)
                }
            }
            AggKind::Median | AggKind::Stddev | AggKind::Percentile(_) | AggKind::Integral { .. } => {
                if let Some(n) = v_num(v) {
                    self.vals.push((t, n))
                }
            }
            AggKind::Mode => self.modes.push(v.to_value()),
            AggKind::Distinct | AggKind::CountDistinct => self.pts.push((t, v.to_value())),
        }
    }

    /// Takes a run of points (ascending, unique timestamps) of one column.
    pub fn feed(&mut self, ts: &[i64], col: Col<'_>) {
        let n = ts.len();
        if n == 0 || !self.kind.accepts(col.field_type()) {
            return;
        }
        match self.kind {
            AggKind::Count => {
                self.ty = Some(col.field_type());
                self.count += n as u64;
            }
            AggKind::Sum | AggKind::Mean => {
                self.ty = Some(col.field_type());
                self.count += n as u64;
                match col {
                    Col::F(v) => self.sum_f += v.iter().sum::<f64>(),
                    Col::I(v) => {
                        for &x in v {
                            self.sum_i = self.sum_i.wrapping_add(x);
                            self.sum_f += x as f64;
                        }
                    }
                    Col::U(v) => {
                        for &x in v {
                            self.sum_u = self.sum_u.wrapping_add(x);
                            self.sum_f += x as f64;
                        }
                    }
                    _ => {}
                }
            }
            AggKind::First => {
                self.ty = Some(col.field_type());
                self.count += n as u64;
                self.select(ts[0], col.get(0));
            }
            AggKind::Last => {
                self.ty = Some(col.field_type());
                self.count += n as u64;
                self.select(ts[n - 1], col.get(n - 1));
            }
            AggKind::Min | AggKind::Max => {
                self.ty = Some(col.field_type());
                self.count += n as u64;
                // Best in the run first (strictly better keeps the earliest), then one offer.
                let want = if self.kind == AggKind::Min { Ordering::Less } else { Ordering::Greater };
                if let Col::F(v) = col {
                    // The common case without the per-value dispatch of `v_cmp` (same order:
                    // `total_cmp`, NaN skipped unless every value is NaN).
                    let mut best: Option<usize> = None;
                    for (i, x) in v.iter().enumerate() {
                        if !x.is_nan() && best.is_none_or(|b| x.total_cmp(&v[b]) == want) {
                            best = Some(i);
                        }
                    }
                    let b = best.unwrap_or(0);
                    self.select(ts[b], V::F(v[b]));
                    return;
                }
                let mut best = 0;
                let mut best_v = col.get(0);
                for i in 1..n {
                    let v = col.get(i);
                    let best_nan = matches!(best_v, V::F(x) if x.is_nan());
                    let nan = matches!(v, V::F(x) if x.is_nan());
                    if !nan && (best_nan || v_cmp(&v, &best_v) == want) {
                        best = i;
                        best_v = v;
                    }
                }
                self.select(ts[best], best_v);
            }
            _ => {
                for (i, &t) in ts.iter().enumerate() {
                    self.feed_one(t, col.get(i));
                }
            }
        }
    }

    /// Takes what `o` (the same aggregate over other series of the same group and bucket,
    /// read by another thread) accumulated.
    pub fn merge(&mut self, o: Acc) {
        if o.count == 0 {
            return;
        }
        self.count += o.count;
        self.ty = o.ty.or(self.ty);
        self.sum_f += o.sum_f;
        self.sum_i = self.sum_i.wrapping_add(o.sum_i);
        self.sum_u = self.sum_u.wrapping_add(o.sum_u);
        // The selector tie rules depend on values and times only, not on arrival order.
        if let Some((t, v)) = &o.sel {
            self.select(*t, V::from_value(v));
        }
        if let Some(lo) = o.lo {
            self.spread(lo);
        }
        if let Some(hi) = o.hi {
            self.spread(hi);
        }
        self.vals.extend(o.vals);
        self.modes.extend(o.modes);
        self.pts.extend(o.pts);
    }

    /// Takes a block summary (only for [`AggKind::summarizable`] kinds).
    pub fn feed_summary(&mut self, s: &BlockSummary) {
        if s.count == 0 {
            return;
        }
        let (ty, min, max, sum, first, last) = match s.stats {
            SummaryStats::F64 { min, max, sum, first, last } => {
                (FieldType::F64, Num::F(min), Num::F(max), Num::F(sum), V::F(first), V::F(last))
            }
            SummaryStats::I64 { min, max, sum, first, last } => {
                (FieldType::I64, Num::I(min), Num::I(max), Num::I(sum), V::I(first), V::I(last))
            }
            SummaryStats::U64 { min, max, sum, first, last } => {
                (FieldType::U64, Num::U(min), Num::U(max), Num::U(sum), V::U(first), V::U(last))
            }
            SummaryStats::Bool { first, last, .. } => {
                if !self.kind.accepts(FieldType::Bool) {
                    return;
                }
                self.ty = Some(FieldType::Bool);
                self.count += s.count;
                match self.kind {
                    AggKind::First => self.select(s.min_ts, V::B(first)),
                    AggKind::Last => self.select(s.max_ts, V::B(last)),
                    _ => {}
                }
                return;
            }
        };
        self.ty = Some(ty);
        self.count += s.count;
        match self.kind {
            AggKind::Count => {}
            AggKind::Sum | AggKind::Mean => match sum {
                Num::F(x) => self.sum_f += x,
                Num::I(x) => {
                    self.sum_i = self.sum_i.wrapping_add(x);
                    self.sum_f += x as f64
                }
                Num::U(x) => {
                    self.sum_u = self.sum_u.wrapping_add(x);
                    self.sum_f += x as f64
                }
            },
            AggKind::First => self.select(s.min_ts, first),
            AggKind::Last => self.select(s.max_ts, last),
            AggKind::Min => self.select(s.min_ts, num_v(min)),
            AggKind::Max => self.select(s.min_ts, num_v(max)),
            AggKind::Spread => {
                self.spread(min);
                self.spread(max);
            }
            _ => debug_assert!(false, "summary fed to a non-summarizable aggregate"),
        }
    }

    /// The result: `None` when no point was taken. The time is the selected point's time
    /// for selectors.
    pub fn finish(&mut self) -> Option<(Option<i64>, Value)> {
        if self.count == 0 {
            return None;
        }
        Some(match self.kind {
            AggKind::Count => (None, Value::Integer(self.count as i64)),
            AggKind::Sum => (
                None,
                match self.ty {
                    Some(FieldType::I64) => Value::Integer(self.sum_i),
                    Some(FieldType::U64) => Value::Unsigned(self.sum_u),
                    _ => Value::Float(self.sum_f),
                },
            ),
            AggKind::Mean => (None, Value::Float(self.sum_f / self.count as f64)),
            AggKind::First | AggKind::Last | AggKind::Min | AggKind::Max => {
                let (t, v) = self.sel.clone()?;
                (Some(t), v)
            }
            AggKind::Spread => {
                let (lo, hi) = (self.lo?, self.hi?);
                (None, hi.sub(lo).value())
            }
            AggKind::Median => {
                let mut v: Vec<f64> = self.vals.iter().map(|(_, n)| n.f()).collect();
                v.sort_by(f64::total_cmp);
                let n = v.len();
                let m = if n % 2 == 1 { v[n / 2] } else { v[n / 2 - 1] + (v[n / 2] - v[n / 2 - 1]) / 2.0 };
                (None, Value::Float(m))
            }
            AggKind::Stddev => {
                let n = self.vals.len();
                if n < 2 {
                    return None;
                }
                let mean = self.vals.iter().map(|(_, x)| x.f()).sum::<f64>() / n as f64;
                let var = self.vals.iter().map(|(_, x)| (x.f() - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
                (None, Value::Float(var.sqrt()))
            }
            AggKind::Percentile(p) => {
                self.vals.sort_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(&b.0)));
                let n = self.vals.len();
                let i = (n as f64 * p / 100.0 + 0.5).floor() as i64 - 1;
                if i < 0 || i as usize >= n {
                    return None;
                }
                let (t, v) = self.vals[i as usize];
                (Some(t), v.value())
            }
            AggKind::Mode => {
                self.modes.sort_by(|a, b| v_cmp(&V::from_value(a), &V::from_value(b)));
                let mut best: Option<(usize, usize)> = None; // (start, len)
                let mut i = 0;
                while i < self.modes.len() {
                    let mut j = i + 1;
                    while j < self.modes.len() && self.modes[j] == self.modes[i] {
                        j += 1;
                    }
                    if best.is_none_or(|(_, len)| j - i > len) {
                        best = Some((i, j - i));
                    }
                    i = j;
                }
                let (start, _) = best?;
                (None, self.modes[start].clone())
            }
            AggKind::CountDistinct => (None, Value::Integer(self.distinct_values().len() as i64)),
            // Multi-row (distinct) or cross-bucket (integral): the caller asks
            // `distinct_values` / `integral_points`.
            AggKind::Distinct | AggKind::Integral { .. } => return None,
        })
    }

    /// distinct: each value once, in the order of its first occurrence (ties by value), as
    /// InfluxDB emits them.
    pub fn distinct_values(&mut self) -> Vec<Value> {
        let mut pts = std::mem::take(&mut self.pts);
        // Group equal values, earliest first, keep that one.
        pts.sort_by(|a, b| value_cmp(&a.1, &b.1).then(a.0.cmp(&b.0)));
        pts.dedup_by(|later, first| later.1 == first.1);
        pts.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| value_cmp(&a.1, &b.1)));
        pts.into_iter().map(|(_, v)| v).collect()
    }

    /// integral: the points taken, by time; of points sharing a timestamp (two series in one
    /// group) the larger value is kept, the tie rule of `first`/`last`.
    pub fn integral_points(&mut self) -> Vec<(i64, f64)> {
        let mut v: Vec<(i64, f64)> = self.vals.drain(..).map(|(t, n)| (t, n.f())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
        v.dedup_by_key(|p| p.0);
        v
    }
}

/// Total order on one column's values (equal values compare equal; NaNs by bits).
fn value_cmp(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.total_cmp(y),
        _ => v_cmp(&V::from_value(a), &V::from_value(b)),
    }
}

/// One `GROUP BY time` bucket's input to [`integral`]: `[start, end)` and its points by time.
pub struct IntegralWindow<'a> {
    pub start: i64,
    pub end: i64,
    pub points: &'a [(i64, f64)],
}

/// `integral()` over a group's buckets (ascending, only those with points), InfluxDB's way:
/// trapezoids between consecutive points, each divided by `unit`; when two consecutive points
/// fall in different buckets, the value at the first bucket's end is interpolated linearly,
/// the area up to there goes to the first bucket and the rest to the second (also when
/// empty buckets lie between). A bucket gets a value once a later point closes it; the last
/// one gets one unless its only point sits exactly at its start (no area). Returns the value
/// per input window.
pub fn integral(windows: &[IntegralWindow<'_>], unit: i64) -> Vec<Option<f64>> {
    let unit = unit as f64;
    let mut out = vec![None; windows.len()];
    let mut prev: Option<(i64, f64)> = None;
    let mut cur = 0usize;
    let mut sum = 0.0;
    for (wi, w) in windows.iter().enumerate() {
        for &(t, v) in w.points {
            let Some((mut pt, mut pv)) = prev else {
                prev = Some((t, v));
                cur = wi;
                continue;
            };
            if wi != cur {
                let end = windows[cur].end;
                if pt != end {
                    let at_end = pv + (v - pv) * ((end - pt) as f64 / (t - pt) as f64);
                    sum += 0.5 * (at_end + pv) * ((end - pt) as f64 / unit);
                    (pt, pv) = (end, at_end);
                }
                out[cur] = Some(sum);
                sum = 0.0;
                cur = wi;
            }
            sum += 0.5 * (v + pv) * ((t - pt) as f64 / unit);
            prev = Some((t, v));
        }
    }
    if let Some((pt, _)) = prev {
        if pt != windows[cur].start {
            out[cur] = Some(sum);
        }
    }
    out
}

fn num_v(n: Num) -> V<'static> {
    match n {
        Num::F(x) => V::F(x),
        Num::I(x) => V::I(x),
        Num::U(x) => V::U(x),
    }
}
