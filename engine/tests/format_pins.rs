//! Pins the byte layouts drawn in `docs/file-formats.md`: every ```hex NAME block there must
//! equal the bytes the code produces for the example it describes.

use std::collections::HashMap;
use std::sync::Arc;

use strata_engine::segment::SegmentWriter;
use strata_engine::wal::record::RecordEncoder;
use strata_engine::wal::{frame_record, log_header, WAL_MAGIC, WAL_VERSION};
use strata_engine::{FieldValue, SeriesId, Values, WriteBatch};

fn doc_blocks() -> HashMap<String, Vec<u8>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/file-formats.md");
    let doc = std::fs::read_to_string(path).expect("docs/file-formats.md");
    let mut out = HashMap::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if let Some(name) = line.strip_prefix("```hex ") {
            let mut bytes = Vec::new();
            for l in lines.by_ref() {
                if l.starts_with("```") {
                    break;
                }
                for tok in l.split_whitespace() {
                    match u8::from_str_radix(tok, 16) {
                        Ok(b) if tok.len() == 2 => bytes.push(b),
                        _ => {}
                    }
                }
            }
            out.insert(name.trim().to_owned(), bytes);
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(|c| c.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

fn pin(name: &str, got: &[u8]) {
    let blocks = doc_blocks();
    let want = blocks.get(name).unwrap_or_else(|| panic!("no ```hex {name} block in docs/file-formats.md"));
    assert_eq!(
        hex(want),
        hex(got),
        "docs/file-formats.md block `{name}` drifted from the code; actual bytes:\n{}",
        hex(got)
    );
}

#[test]
fn wal_header() {
    pin("wal-header", &log_header(WAL_MAGIC, WAL_VERSION));
}

#[test]
fn wal_record() {
    let mut out = Vec::new();
    frame_record(b"abc", &mut out);
    pin("wal-record-abc", &out);
}

#[test]
fn wal_record_v2() {
    // Series 5 (durable in the catalog) at t=10 with v=1.5, then a new series `cpu,host=a`
    // logged with its key at t=12 with v=-0.0 (no decimal form: raw bits).
    let mut b = WriteBatch::new();
    b.point("cpu").tag("host", "a").field("v", FieldValue::F64(1.5)).finish(10).unwrap();
    b.point("cpu").tag("host", "a").field("v", FieldValue::F64(-0.0)).finish(12).unwrap();
    let points: Vec<_> = b.iter().map(|p| p.unwrap()).collect();
    let mut enc = RecordEncoder::default();
    enc.begin("db");
    enc.push(SeriesId(5), true, points[0].key, 10, points[0].field_bytes());
    enc.push(SeriesId(9), false, points[1].key, 12, points[1].field_bytes());
    pin("wal-record-v2", enc.payload());
}

#[test]
fn batch_point() {
    let mut b = WriteBatch::new();
    b.point("cpu").tag("host", "a").field("v", FieldValue::F64(1.5)).finish(10).unwrap();
    pin("batch-point-cpu", b.as_bytes());
}

#[test]
fn segment_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("00000001.seg");
    let mut w = SegmentWriter::create(&path).unwrap();
    w.add_column(SeriesId(1), &Arc::from("v"), &[10, 20], &Values::F64(vec![1.5, 2.5])).unwrap();
    w.finish().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    pin("segment-header", &bytes[..16]);
    pin("segment-one-block", &bytes);
}

/// The last record of a catalog log: database 0's tombstone of series {1, 5}, time 0..100,
/// before segment 7, removed again (record type 12).
#[test]
fn catalog_drop_tombstone_record() {
    use strata_engine::catalog::Catalog;
    use strata_engine::{TimeRange, Tombstone};
    let dir = tempfile::tempdir().unwrap();
    let c = Catalog::open(dir.path(), 100).unwrap();
    let db = c.create_db("d");
    c.add_tombstone(
        db,
        Tombstone {
            series: [1u32, 5].into_iter().collect(),
            range: TimeRange::new(0, 100),
            before_segment: 7,
        },
    );
    c.remove_tombstones(db, &c.tombstones(db));
    c.sync().unwrap();
    drop(c);
    let bytes = std::fs::read(dir.path().join("catalog.log")).unwrap();
    // Walk the frames (16-byte header, then len u32, crc u32, payload) to the last one.
    let (mut at, mut last) = (16, 16);
    while at < bytes.len() {
        last = at;
        at += 8 + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    }
    pin("catalog-drop-tombstone", &bytes[last..]);
}
