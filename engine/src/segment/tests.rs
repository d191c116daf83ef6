use std::sync::Arc;

use super::*;
use crate::error::SegmentError;
use crate::model::Values;

fn write_sample(path: &std::path::Path) -> u64 {
    let mut w = SegmentWriter::create(path).unwrap();
    let f: Arc<str> = Arc::from("temp");
    let g: Arc<str> = Arc::from("z");
    let ts: Vec<i64> = (0..5000).map(|i| i * 10).collect();
    let vals = Values::F64((0..5000).map(|i| 20.0 + (i % 7) as f64 * 0.1).collect());
    w.add_column(SeriesId(1), &f, &ts, &vals).unwrap();
    w.add_column(SeriesId(1), &g, &ts[..3], &Values::Str(vec!["a".into(), "b".into(), "a".into()])).unwrap();
    w.add_column(SeriesId(2), &f, &[5], &Values::I64(vec![-7])).unwrap();
    w.finish().unwrap().1
}

#[test]
fn round_trip_with_block_split_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("00000001.seg");
    let size = write_sample(&path);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
    assert!(!dir.path().join("00000001.seg.tmp").exists());
    let r = SegmentReader::open(&path).unwrap();
    r.verify().unwrap();
    let blocks = r.series_blocks(SeriesId(1));
    assert_eq!(blocks.len(), 3, "5000 values split into 4096 + 904, plus the string column");
    assert_eq!(blocks[0].count as usize, BLOCK_MAX_VALUES);
    assert_eq!(blocks[0].min_ts, 0);
    assert_eq!(f64::from_bits(blocks[0].stats.first), 20.0);
    let mut ts = Vec::new();
    let mut v = Values::new(crate::model::FieldType::F64);
    for b in &blocks[..2] {
        r.read_block(b, &mut ts, &mut v).unwrap();
    }
    assert_eq!(ts, (0..5000).map(|i| i * 10).collect::<Vec<_>>());
    let s2 = r.series_blocks(SeriesId(2));
    assert_eq!(s2.len(), 1);
    assert_eq!(s2[0].stats.sum as i64, -7);
    assert!(r.series_blocks(SeriesId(3)).is_empty());
}

#[test]
fn every_flipped_byte_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("00000001.seg");
    write_sample(&path);
    let good = std::fs::read(&path).unwrap();
    // Flip bytes across header, blocks, index and trailer (every 37th byte keeps it quick).
    for i in (0..good.len()).step_by(37).chain([good.len() - 1, good.len() - 20]) {
        let mut bad = good.clone();
        bad[i] ^= 0x10;
        std::fs::write(&path, &bad).unwrap();
        let res = SegmentReader::open(&path).and_then(|r| r.verify());
        assert!(res.is_err(), "flip at byte {i} of {} went unnoticed", good.len());
    }
}

#[test]
fn truncated_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("00000001.seg");
    write_sample(&path);
    let good = std::fs::read(&path).unwrap();
    for cut in [0, 10, 16, good.len() / 2, good.len() - 1] {
        std::fs::write(&path, &good[..cut]).unwrap();
        assert!(matches!(SegmentReader::open(&path), Err(SegmentError::Corrupt { .. })), "cut {cut}");
    }
}
