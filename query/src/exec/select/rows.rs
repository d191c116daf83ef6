//! Iterating one series' rows: the union of its columns' timestamps, with the row slots
//! filled and the field condition applied.

use strata_engine::{Piece, SeriesPieces};

use super::plan::*;
use crate::error::QueryError;
use crate::exec::agg::Col;
use crate::exec::eval::V;
use crate::limits::Meter;

/// Called per row: time, slots, meter.
pub(super) type RowFn<'a, 'f> = dyn FnMut(i64, &[V<'a>], &mut Meter) -> Result<(), QueryError> + 'f;

/// A cursor over one column's pieces (data only).
pub(super) struct ColCursor<'a> {
    pub(super) pieces: &'a [Piece],
    pub(super) p: usize,
    pub(super) i: usize,
}

impl<'a> ColCursor<'a> {
    fn peek(&mut self) -> Option<i64> {
        while self.p < self.pieces.len() {
            match &self.pieces[self.p] {
                Piece::Data { timestamps, .. } if self.i < timestamps.len() => {
                    return Some(timestamps[self.i])
                }
                _ => {
                    self.p += 1;
                    self.i = 0;
                }
            }
        }
        None
    }

    fn take(&mut self) -> V<'a> {
        let pieces = self.pieces;
        let v = match &pieces[self.p] {
            Piece::Data { values, .. } => Col::from_values(values).get(self.i),
            Piece::Summary(_) => V::Null,
        };
        self.i += 1;
        v
    }
}

/// Iterates the rows of one series (the union of its columns' timestamps), filling
/// `slots` and calling `f(time, slots)` for rows passing `cond`.
pub(super) fn for_each_row<'a>(
    s: &'a SeriesPieces,
    plan: &'a Plan,
    meter: &mut Meter,
    f: &mut RowFn<'a, '_>,
) -> Result<(), QueryError> {
    // Column index per scan field.
    let mut cursors: Vec<Option<ColCursor<'a>>> = plan
        .scan_fields
        .iter()
        .map(|f| {
            s.columns.iter().find(|c| &*c.field == f).map(|c| ColCursor { pieces: &c.pieces, p: 0, i: 0 })
        })
        .collect();
    let mut slots: Vec<V<'a>> = plan
        .slots
        .iter()
        .map(|src| match src {
            SlotSrc::Tag(k) => V::S(s.key.tag(k).unwrap_or("")),
            SlotSrc::Field(_) => V::Null,
        })
        .collect();
    let mut rows = 0u64;
    loop {
        let mut t = i64::MAX;
        let mut any = false;
        for c in cursors.iter_mut().flatten() {
            if let Some(ts) = c.peek() {
                any = true;
                t = t.min(ts);
            }
        }
        if !any {
            break;
        }
        for (k, src) in plan.slots.iter().enumerate() {
            if let SlotSrc::Field(fi) = src {
                slots[k] = V::Null;
                if let Some(c) = cursors[*fi].as_mut() {
                    if c.peek() == Some(t) {
                        slots[k] = c.take();
                    }
                }
            }
        }
        // Fields not in any slot still need advancing.
        for c in cursors.iter_mut().flatten() {
            if c.peek() == Some(t) {
                c.take();
            }
        }
        rows += 1;
        if rows.is_multiple_of(65_536) {
            meter.check_time()?;
        }
        if let Some(cond) = &plan.cond {
            if !cond.test(&slots) {
                continue;
            }
        }
        f(t, &slots, meter)?;
    }
    Ok(())
}
