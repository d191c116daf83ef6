//! `last()` per series from the engine's last-value cache.
//!
//! An aggregate query whose every aggregate is `last()`, without `GROUP BY time`, needs one
//! point per column of each series: the newest in its range (a group's `last()` is the newest
//! of its series' newest points). The engine answers that from its last-value cache where it
//! can ([`strata_engine::Engine::scan_last`]) and reads where it cannot, so the answer is the
//! one a full scan gives, and "where is every device now" over 100,000 devices is a lookup.
//! A condition on field values needs the newest *matching* point, so it reads as before.

use super::agg::AggKind;

/// Whether the newest point of each column of each series is all an aggregate query needs.
pub(crate) fn newest_points_suffice(
    mut kinds: impl Iterator<Item = AggKind>,
    grouped_by_time: bool,
    field_condition: bool,
    row_tag_filter: bool,
) -> bool {
    !grouped_by_time && !field_condition && !row_tag_filter && kinds.all(|k| k == AggKind::Last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_last_per_series() {
        let last = || [AggKind::Last, AggKind::Last].into_iter();
        assert!(newest_points_suffice(last(), false, false, false));
        assert!(!newest_points_suffice(last(), true, false, false));
        assert!(!newest_points_suffice(last(), false, true, false));
        assert!(!newest_points_suffice(last(), false, false, true));
        assert!(!newest_points_suffice([AggKind::Last, AggKind::First].into_iter(), false, false, false));
    }
}
