use std::path::Path;

use super::*;
use crate::model::FieldValue;
use crate::{EngineOptions, SyncPolicy, TagPredicate, WriteBatch};

fn engine(dir: &Path) -> Engine {
    let mut o = EngineOptions::new(dir);
    o.shards = 2;
    o.sync = SyncPolicy::Never;
    let e = Engine::open(o).unwrap();
    e.create_database("db").unwrap();
    e
}

fn write(e: &Engine, host: &str, points: impl IntoIterator<Item = (i64, f64)>) {
    let mut b = WriteBatch::new();
    for (ts, v) in points {
        b.point("m").tag("host", host).field("v", FieldValue::F64(v)).finish(ts).unwrap();
    }
    e.write("db", &b).unwrap();
}

fn req(range: TimeRange) -> ScanRequest<'static> {
    ScanRequest { db: "db", measurement: "m", predicate: &TagPredicate::All, fields: None, range }
}

/// Every piece of every series, with the scan summary.
fn pieces(e: &Engine, range: TimeRange, summarize: bool) -> (Vec<SeriesPieces>, ScanSummary) {
    let always = |_: i64, _: i64| true;
    let opts = ScanOptions { summarize: summarize.then_some(&always as _), series: None };
    let mut out = Vec::new();
    let s = e
        .scan_pieces(&req(range), &opts, &mut |s| {
            out.push(s);
            ControlFlow::Continue(())
        })
        .unwrap();
    (out, s)
}

#[test]
fn disjoint_blocks_are_summarised_with_exact_stats() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    write(&e, "a", (0..100).map(|i| (i, i as f64)));
    e.flush().unwrap();
    write(&e, "a", (100..150).map(|i| (i, -(i as f64))));
    e.flush().unwrap();
    let (series, s) = pieces(&e, TimeRange::ALL, true);
    assert_eq!(s.blocks_summarized, 2);
    assert_eq!(s.blocks_decoded, 0);
    let p = &series[0].columns[0].pieces;
    assert_eq!(
        p[0],
        Piece::Summary(BlockSummary {
            min_ts: 0,
            max_ts: 99,
            count: 100,
            stats: SummaryStats::F64 { min: 0.0, max: 99.0, sum: 4950.0, first: 0.0, last: 99.0 },
        })
    );
    assert_eq!(
        p[1],
        Piece::Summary(BlockSummary {
            min_ts: 100,
            max_ts: 149,
            count: 50,
            stats: SummaryStats::F64 {
                min: -149.0,
                max: -100.0,
                sum: -(100..150).sum::<i64>() as f64,
                first: -100.0,
                last: -149.0,
            },
        })
    );
    // Without summaries the same data decodes, identical to `scan`.
    let (series, s) = pieces(&e, TimeRange::ALL, false);
    assert_eq!(s.blocks_summarized, 0);
    assert_eq!(s.blocks_decoded, 2);
    assert_eq!(series[0].columns[0].pieces.len(), 2);
    let whole = e.scan(&req(TimeRange::ALL)).unwrap();
    assert_eq!(whole[0].columns[0].timestamps, (0..150).collect::<Vec<_>>());
}

#[test]
fn overlapping_blocks_and_memtables_are_merged_newest_wins() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    write(&e, "a", (0..10).map(|i| (i * 10, 1.0)));
    e.flush().unwrap();
    // A late rewrite of part of the first block, in a second segment.
    write(&e, "a", [(20, 2.0), (25, 2.5)]);
    e.flush().unwrap();
    // And an unflushed rewrite in the memtable.
    write(&e, "a", [(30, 3.0)]);
    let (series, s) = pieces(&e, TimeRange::ALL, true);
    assert_eq!(s.blocks_summarized, 0, "overlapped blocks must not be summarised");
    let p = &series[0].columns[0].pieces;
    assert_eq!(p.len(), 1);
    let Piece::Data { timestamps, values } = &p[0] else { panic!("data expected") };
    assert_eq!(timestamps, &vec![0, 10, 20, 25, 30, 40, 50, 60, 70, 80, 90]);
    assert_eq!(values, &Values::F64(vec![1.0, 1.0, 2.0, 2.5, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]));
}

#[test]
fn blocks_cut_by_the_range_are_decoded_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    write(&e, "a", (0..100).map(|i| (i, i as f64)));
    e.flush().unwrap();
    write(&e, "a", (200..300).map(|i| (i, i as f64)));
    e.flush().unwrap();
    let (series, s) = pieces(&e, TimeRange { start: 50, end: 250 }, true);
    assert_eq!((s.blocks_summarized, s.blocks_decoded), (0, 2));
    let p = &series[0].columns[0].pieces;
    assert_eq!(p.len(), 2);
    assert_eq!((p[0].min_ts(), p[0].max_ts(), p[0].count()), (50, 99, 50));
    assert_eq!((p[1].min_ts(), p[1].max_ts(), p[1].count()), (200, 249, 50));
    // The caller decides per block: summarise only blocks inside [0, 100).
    let only_first = |lo: i64, hi: i64| lo >= 0 && hi < 100;
    let opts = ScanOptions { summarize: Some(&only_first), series: None };
    let mut kinds = Vec::new();
    e.scan_pieces(&req(TimeRange::ALL), &opts, &mut |s| {
        kinds.extend(s.columns[0].pieces.iter().map(|p| matches!(p, Piece::Summary(_))));
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(kinds, vec![true, false]);
}

#[test]
fn visitor_can_stop_and_series_can_be_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    for h in ["a", "b", "c"] {
        write(&e, h, [(1, 1.0)]);
    }
    let mut seen = 0;
    e.scan_pieces(&req(TimeRange::ALL), &ScanOptions::default(), &mut |_| {
        seen += 1;
        ControlFlow::Break(())
    })
    .unwrap();
    assert_eq!(seen, 1);
    let all = e.series("db", "m", &TagPredicate::All).unwrap();
    let chosen = [all[2].0];
    let opts = ScanOptions { summarize: None, series: Some(&chosen) };
    let mut keys = Vec::new();
    e.scan_pieces(&req(TimeRange::ALL), &opts, &mut |s| {
        keys.push(s.key.to_string());
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(keys, vec![all[2].1.to_string()]);
}

#[test]
fn string_blocks_are_never_summarised() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let mut b = WriteBatch::new();
    let texts: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
    for (i, t) in texts.iter().enumerate() {
        b.point("m").tag("host", "a").field("s", FieldValue::Str(t)).finish(i as i64).unwrap();
    }
    e.write("db", &b).unwrap();
    e.flush().unwrap();
    let (series, s) = pieces(&e, TimeRange::ALL, true);
    assert_eq!((s.blocks_summarized, s.blocks_decoded), (0, 1));
    assert!(matches!(series[0].columns[0].pieces[0], Piece::Data { .. }));
}

/// Drains a column cursor into (timestamps, values).
fn drain(c: &mut ColumnCursor) -> (Vec<i64>, Values) {
    let mut ts = Vec::new();
    let mut vals = Values::new(c.field_type);
    while let Some(p) = c.next_piece().unwrap() {
        let Piece::Data { timestamps, values } = p else { panic!("cursors never summarise") };
        assert!(!timestamps.is_empty());
        ts.extend_from_slice(&timestamps);
        vals.append(values);
    }
    (ts, vals)
}

#[test]
fn cursors_read_what_the_scan_reads_in_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    // Overlapping flushed blocks (late data, rewrites), a memtable on top, a series of its own.
    write(&e, "a", (0..500).map(|i| (i * 10, i as f64)));
    e.flush().unwrap();
    write(&e, "a", (0..200).map(|i| (i * 25 + 3, -(i as f64))));
    write(&e, "a", (100..150).map(|i| (i * 10, 1000.0 + i as f64)));
    e.flush().unwrap();
    write(&e, "a", (6000..6100).map(|i| (i, 0.5)));
    write(&e, "b", (0..50).map(|i| (i * 7, 2.0)));
    write(&e, "a", (40..45).map(|i| (i * 10, 7.0)));
    for range in [TimeRange::ALL, TimeRange::new(1234, 6050)] {
        let want = e.scan(&req(range)).unwrap();
        let ids: Vec<SeriesId> = want.iter().map(|s| s.id).collect();
        for desc in [false, true] {
            let mut got = e.series_cursors(&req(range), &ids, desc).unwrap();
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter_mut().zip(&want) {
                assert_eq!((g.id, &g.key), (w.id, &w.key));
                assert_eq!(g.columns.len(), w.columns.len());
                for (gc, wc) in g.columns.iter_mut().zip(&w.columns) {
                    let (mut ts, vals) = drain(gc);
                    let mut vals = vals;
                    if desc {
                        assert!(ts.windows(2).all(|p| p[0] > p[1]), "descending");
                        ts.reverse();
                        let perm: Vec<u32> = (0..vals.len() as u32).rev().collect();
                        vals = vals.gather(&perm);
                    }
                    assert_eq!((&ts, &vals), (&wc.timestamps, &wc.values), "range {range:?} desc {desc}");
                }
            }
        }
    }
}

#[test]
fn memtable_chunks_are_summarised_like_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let n = crate::memtable::CHUNK_VALUES as i64;
    // Two sealed chunks and a raw head of 44 values, nothing flushed.
    write(&e, "a", (0..2 * n + 44).map(|i| (i, (i % 7) as f64)));
    // Buckets of one chunk each (a span of several chunks is the next test's).
    let per_chunk = |a: i64, b: i64| a / n == b / n;
    let opts = ScanOptions { summarize: Some(&per_chunk), series: None };
    let mut series = Vec::new();
    let s = e
        .scan_pieces(&req(TimeRange::ALL), &opts, &mut |s| {
            series.push(s);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!((s.chunks_summarized, s.chunks_decoded, s.blocks_decoded), (2, 0, 0));
    let p = &series[0].columns[0].pieces;
    assert_eq!(p.len(), 3);
    let stats = |lo: i64, hi: i64| {
        let v: Vec<f64> = (lo..hi).map(|i| (i % 7) as f64).collect();
        SummaryStats::F64 { min: 0.0, max: 6.0, sum: v.iter().sum(), first: v[0], last: v[v.len() - 1] }
    };
    assert_eq!(
        p[0],
        Piece::Summary(BlockSummary { min_ts: 0, max_ts: n - 1, count: n as u64, stats: stats(0, n) })
    );
    assert_eq!(
        p[1],
        Piece::Summary(BlockSummary {
            min_ts: n,
            max_ts: 2 * n - 1,
            count: n as u64,
            stats: stats(n, 2 * n)
        })
    );
    assert!(matches!(&p[2], Piece::Data { timestamps, .. } if timestamps.len() == 44));

    // A chunk cut by the range, or not wanted summarised, is decoded and trimmed.
    let (series, s) = pieces(&e, TimeRange::new(10, 2 * n), true);
    assert_eq!((s.chunks_summarized, s.chunks_decoded), (1, 1));
    assert_eq!(series[0].columns[0].pieces[0].count(), (n - 10) as u64);
    let (_, s) = pieces(&e, TimeRange::ALL, false);
    assert_eq!((s.chunks_summarized, s.chunks_decoded), (0, 2));
    // Chunks outside the range are not even decoded.
    let (series, s) = pieces(&e, TimeRange::new(2 * n, i64::MAX), true);
    assert_eq!((s.chunks_summarized, s.chunks_decoded), (0, 0));
    assert_eq!(series[0].columns[0].pieces.len(), 1);

    // A late rewrite in the head overlaps the first chunk: that chunk is merged, newest wins;
    // the second one is still summarised.
    write(&e, "a", [(5, 99.0)]);
    let (series, s) = pieces(&e, TimeRange::ALL, true);
    let p = &series[0].columns[0].pieces;
    assert_eq!((s.chunks_summarized, s.chunks_decoded), (0, 2), "the head spans both chunks");
    let Piece::Data { timestamps, values } = &p[0] else { panic!("data expected") };
    assert_eq!(timestamps.len(), (2 * n + 44) as usize);
    let Values::F64(v) = values else { panic!("f64") };
    assert_eq!(v[5], 99.0);
}

#[test]
fn out_of_order_chunks_are_sorted_when_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let n = crate::memtable::CHUNK_VALUES as i64;
    // One chunk written backwards with every timestamp twice (the second write wins), and a
    // later in-order chunk that overlaps nothing.
    write(&e, "a", (0..n / 2).rev().flat_map(|i| [(i * 10, 1.0), (i * 10, i as f64)]));
    write(&e, "a", (0..n).map(|i| (100_000 + i, 2.0)));
    let (series, s) = pieces(&e, TimeRange::ALL, true);
    assert_eq!(s.chunks_summarized, 2);
    let p = &series[0].columns[0].pieces;
    // Sorted and deduplicated to n/2 points (the later write of each timestamp), of which the
    // newest quarter of a chunk stays in the head (the column has seen points out of order)
    // and is sealed with the first of the later points: both chunks, as one span, hold every
    // deduplicated point once.
    let (sealed, later) = (n / 2, n - n / 4 - (n / 2 - (n / 2 - n / 4)));
    let sum = (0..sealed).map(|i| i as f64).sum::<f64>() + later as f64 * 2.0;
    assert_eq!(
        p[0],
        Piece::Summary(BlockSummary {
            min_ts: 0,
            max_ts: 100_000 + later - 1,
            count: (sealed + later) as u64,
            stats: SummaryStats::F64 { min: 0.0, max: (sealed - 1) as f64, sum, first: 0.0, last: 2.0 },
        })
    );
    let whole = e.scan(&req(TimeRange::ALL)).unwrap();
    assert_eq!(whole[0].columns[0].timestamps.len(), (n / 2 + n) as usize);
    assert!(whole[0].columns[0].timestamps.windows(2).all(|w| w[0] < w[1]));
}

/// Every series' newest point per field through `scan_last`, with the scan summary.
fn newest(e: &Engine, range: TimeRange) -> (Vec<(String, String, i64, Values)>, ScanSummary) {
    let mut out = Vec::new();
    let s = e
        .scan_last(&req(range), &ScanOptions::default(), &mut |s| {
            for c in s.columns {
                let [Piece::Data { timestamps, values }] = c.pieces.as_slice() else { panic!("one piece") };
                out.push((s.key.to_string(), c.field.to_string(), timestamps[0], values.clone()));
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    (out, s)
}

/// The same through a full scan.
fn newest_scanned(e: &Engine, range: TimeRange) -> Vec<(String, String, i64, Values)> {
    let mut out = Vec::new();
    for s in e.scan(&req(range)).unwrap() {
        for c in s.columns {
            let i = c.timestamps.len() - 1;
            let perm = [i as u32];
            out.push((s.key.to_string(), c.field.to_string(), c.timestamps[i], c.values.gather(&perm)));
        }
    }
    out
}

#[test]
fn newest_points_come_from_the_cache_and_match_a_scan() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    write(&e, "a", (0..300).map(|i| (i * 10, i as f64)));
    write(&e, "b", (0..10).map(|i| (i, -(i as f64))));
    e.flush().unwrap();
    // Late and out-of-order points after the flush; a rewrite of b's newest point.
    write(&e, "a", [(55, 100.0), (5000, 7.0), (4000, 8.0)]);
    write(&e, "b", [(9, 42.0)]);
    let (got, s) = newest(&e, TimeRange::ALL);
    assert_eq!(got, newest_scanned(&e, TimeRange::ALL));
    assert_eq!(got[0].2, 5000);
    assert_eq!(got[1].3, Values::F64(vec![42.0]));
    assert_eq!((s.columns_cached, s.blocks_decoded + s.chunks_decoded), (2, 0), "{s:?}");
    // A range that ends before a newest point is read, with the same answer.
    let r = TimeRange::new(0, 4500);
    let (got, s) = newest(&e, r);
    assert_eq!(got, newest_scanned(&e, r));
    assert_eq!(got[0].2, 4000);
    assert_eq!(s.columns_cached, 1, "b is still answered from the cache");

    // After a restart the cache is rebuilt from the segments (the WAL is replayed into them).
    drop(e);
    let e = engine(dir.path());
    let (got, s) = newest(&e, TimeRange::ALL);
    assert_eq!(got, newest_scanned(&e, TimeRange::ALL));
    assert_eq!(got[0].2, 5000);
    assert_eq!(s.columns_cached, 2);
}

#[test]
fn newest_points_survive_deletes_and_strings() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    write(&e, "a", (0..300).map(|i| (i * 10, i as f64)));
    let mut b = WriteBatch::new();
    for i in 0..5 {
        b.point("m").tag("host", "s").field("s", FieldValue::Str(&format!("v{i}"))).finish(i).unwrap();
    }
    e.write("db", &b).unwrap();
    e.flush().unwrap();
    let pred = TagPredicate::Eq("host".into(), "a".into());
    // Deleting the newest points: the next newest is found by reading.
    e.delete("db", Some("m"), &pred, TimeRange::new(2500, i64::MAX)).unwrap();
    let (got, _) = newest(&e, TimeRange::ALL);
    assert_eq!(got, newest_scanned(&e, TimeRange::ALL));
    assert_eq!(got[0].2, 2490);
    assert_eq!(got[1].3, Values::Str(vec!["v4".into()]));
    // A write above the deleted range is the newest again and answered from the cache.
    write(&e, "a", [(10_000, 1.5)]);
    let (got, s) = newest(&e, TimeRange::ALL);
    assert_eq!(got, newest_scanned(&e, TimeRange::ALL));
    assert_eq!(s.columns_cached, 2);

    // Reopened: the newest block of `a` is partly hidden by the tombstone, strings have no
    // index statistics: both are read when the cache is rebuilt.
    drop(e);
    let e = engine(dir.path());
    e.delete("db", Some("m"), &pred, TimeRange::new(5000, i64::MAX)).unwrap();
    let (got, s) = newest(&e, TimeRange::ALL);
    assert_eq!(got, newest_scanned(&e, TimeRange::ALL));
    assert_eq!(got[0].2, 2490);
    assert_eq!(s.columns_cached, 2, "{s:?}");
    // Dropped series are gone from it.
    e.drop_series("db", Some("m"), &pred).unwrap();
    let (got, _) = newest(&e, TimeRange::ALL);
    assert_eq!(got.len(), 1);
}

#[test]
fn newest_points_respect_retention() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    const DAY: i64 = 86_400_000_000_000;
    let now = crate::model::now_ns();
    // Two days ago and an hour ago for a; only two days ago for b.
    write(&e, "a", [(now - 2 * DAY, 1.0), (now - DAY / 24, 2.0)]);
    write(&e, "b", [(now - 2 * DAY, 3.0)]);
    let (got, _) = newest(&e, TimeRange::ALL);
    assert_eq!(got.len(), 2);
    let rp = |d: i64| crate::RetentionPolicy {
        name: "autogen".into(),
        duration: Some(d),
        partition_duration: None,
    };
    e.set_retention_policy("db", rp(DAY)).unwrap();
    let (got, _) = newest(&e, TimeRange::ALL);
    assert_eq!(got, newest_scanned(&e, TimeRange::ALL));
    assert_eq!(got.len(), 1);
    e.flush().unwrap();
    e.inner.enforce_retention(now).unwrap();
    // A longer policy must not bring back what was dropped.
    e.set_retention_policy("db", rp(30 * DAY)).unwrap();
    let (got, _) = newest(&e, TimeRange::ALL);
    assert_eq!(got, newest_scanned(&e, TimeRange::ALL));
    assert_eq!(got.len(), 1);
}

#[test]
fn batches_a_little_out_of_order_still_seal_disjoint_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    // What concurrent writers do: batches of 5 points, each pair of batches swapped.
    let batches: Vec<Vec<(i64, f64)>> =
        (0..120).map(|b| (b * 5..b * 5 + 5).map(|t| (t, t as f64)).collect()).collect();
    for pair in batches.chunks(2) {
        write(&e, "a", pair[1].iter().copied());
        write(&e, "a", pair[0].iter().copied());
    }
    let (series, s) = pieces(&e, TimeRange::ALL, true);
    assert!(s.chunks_summarized >= 4, "{s:?}");
    assert_eq!(s.chunks_decoded, 0, "chunks overlap: {s:?}");
    // Summaries and the head together hold every point once.
    let p = &series[0].columns[0].pieces;
    assert_eq!(p.iter().map(|p| p.count()).sum::<u64>(), 600);
    assert!(p.windows(2).all(|w| w[0].max_ts() < w[1].min_ts()));
    let whole = e.scan(&req(TimeRange::ALL)).unwrap();
    assert_eq!(whole[0].columns[0].timestamps, (0..600).collect::<Vec<_>>());
}

#[test]
fn chunks_in_one_bucket_are_summarised_as_one_span() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let n = crate::memtable::CHUNK_VALUES as i64;
    write(&e, "a", (0..5 * n + 7).map(|i| (i, (i % 11) as f64 - 3.0)));
    // Five chunks wholly inside the range: one summary, with the statistics of all of them.
    let (series, s) = pieces(&e, TimeRange::ALL, true);
    assert_eq!((s.chunks_summarized, s.chunks_decoded), (5, 0));
    let p = &series[0].columns[0].pieces;
    assert_eq!(p.len(), 2, "one span and the head");
    let v: Vec<f64> = (0..5 * n).map(|i| (i % 11) as f64 - 3.0).collect();
    let sum = (0..5).map(|k| v[(k * n) as usize..((k + 1) * n) as usize].iter().sum::<f64>()).sum::<f64>();
    assert_eq!(
        p[0],
        Piece::Summary(BlockSummary {
            min_ts: 0,
            max_ts: 5 * n - 1,
            count: 5 * n as u64,
            stats: SummaryStats::F64 { min: -3.0, max: 7.0, sum, first: v[0], last: v[v.len() - 1] },
        })
    );
    // A range cutting the first and last chunks: those two decoded, the three between as one.
    let (series, s) = pieces(&e, TimeRange::new(10, 4 * n + 3), true);
    assert_eq!((s.chunks_summarized, s.chunks_decoded), (3, 2));
    assert_eq!(series[0].columns[0].pieces.len(), 3);
    // Buckets smaller than the span: one summary per chunk.
    let per_chunk = |a: i64, b: i64| a / n == b / n;
    let opts = ScanOptions { summarize: Some(&per_chunk), series: None };
    let mut count = 0;
    e.scan_pieces(&req(TimeRange::ALL), &opts, &mut |s| {
        count = s.columns[0].pieces.len();
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(count, 6);
}
