//! Prints compressed bytes per value of Strata's timestamp and float codecs against the
//! `tsz` crate (a public Gorilla implementation) on the `datagen` data sets.
//!
//! ```text
//! cargo run --release -p strata-bench --example compression_report [-- BLOCK...]
//! ```
//! BLOCK is the number of values per block (default: 1000 and 8192). Every block is
//! decoded again and compared bit for bit, so the figures are for lossless output.

use strata_bench::datagen::{self, SeriesData};
use strata_engine::codec::{self, FloatCodec};
use tsz::stream::BufferedWriter;
use tsz::{DataPoint, Encode, StdEncoder};

#[derive(Default, Clone, Copy)]
struct Sizes {
    points: usize,
    ts: usize,
    gorilla: usize,
    decimal: usize,
    chosen: usize,
    tsz: usize,
    decimal_blocks: usize,
    blocks: usize,
}

impl Sizes {
    fn add(&mut self, o: &Sizes) {
        self.points += o.points;
        self.ts += o.ts;
        self.gorilla += o.gorilla;
        self.decimal += o.decimal;
        self.chosen += o.chosen;
        self.tsz += o.tsz;
        self.decimal_blocks += o.decimal_blocks;
        self.blocks += o.blocks;
    }
}

fn measure(ts: &[i64], vals: &[f64], block: usize) -> Sizes {
    let mut s = Sizes::default();
    let mut buf = Vec::new();
    let mut back_ts = Vec::new();
    let mut back = Vec::new();
    for (t, v) in ts.chunks(block).zip(vals.chunks(block)) {
        s.points += t.len();
        s.blocks += 1;

        buf.clear();
        codec::encode_timestamps(t, &mut buf);
        s.ts += buf.len();
        back_ts.clear();
        codec::decode_timestamps(&buf, t.len(), &mut back_ts).expect("timestamps decode");
        assert_eq!(back_ts, t);

        for (forced, total) in [(FloatCodec::Gorilla, &mut s.gorilla), (FloatCodec::Decimal, &mut s.decimal)]
        {
            buf.clear();
            codec::encode_f64_with(v, forced, &mut buf);
            *total += buf.len();
        }
        buf.clear();
        codec::encode_f64(v, &mut buf);
        s.chosen += buf.len();
        if codec::float_codec_name(&buf) == Some("decimal") {
            s.decimal_blocks += 1;
        }
        back.clear();
        codec::decode_f64(&buf, v.len(), &mut back).expect("f64 decode");
        assert!(back.iter().zip(v).all(|(a, b)| a.to_bits() == b.to_bits()));

        // tsz takes u64 timestamps and a 14-bit first delta: milliseconds fit.
        let ms = |t: i64| (t / 1_000_000) as u64;
        let mut enc = StdEncoder::new(ms(t[0]), BufferedWriter::new());
        for (&ti, &vi) in t.iter().zip(v) {
            enc.encode(DataPoint::new(ms(ti), vi));
        }
        s.tsz += enc.close().len();
    }
    s
}

fn per(bytes: usize, points: usize) -> f64 {
    bytes as f64 / points as f64
}

fn header() {
    println!(
        "{:<18} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10} {:>8}",
        "field", "ts bit", "gorilla", "decimal", "chosen", "ts+val", "tsz ts+val", "vs tsz", "decimal%"
    );
}

fn row(name: &str, s: &Sizes) {
    let p = s.points;
    println!(
        "{:<18} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>10.3} {:>9.2}x {:>7.0}%",
        name,
        per(s.ts * 8, p),
        per(s.gorilla, p),
        per(s.decimal, p),
        per(s.chosen, p),
        per(s.ts + s.chosen, p),
        per(s.tsz, p),
        s.tsz as f64 / (s.ts + s.chosen) as f64,
        100.0 * s.decimal_blocks as f64 / s.blocks as f64,
    );
}

fn report(title: &str, series: &[SeriesData], block: usize) {
    println!("\n{title} (block = {block} values)");
    header();
    let nfields = series[0].fields.len();
    let mut all = Sizes::default();
    for f in 0..nfields {
        let mut s = Sizes::default();
        for sd in series {
            s.add(&measure(&sd.timestamps, &sd.fields[f].values, block));
        }
        row(series[0].fields[f].name, &s);
        all.add(&s);
    }
    row("ALL (ts per column)", &all);
    // Timestamps stored once per row instead of once per column.
    let shared = per(all.chosen, all.points) + per(all.ts, all.points) / nfields as f64;
    println!(
        "ALL, ts stored once per row: {shared:.3} B/field value (ts {:.4} B/row)",
        per(all.ts, all.points)
    );
}

fn main() {
    let blocks: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("block size")).collect();
    let blocks = if blocks.is_empty() { vec![1000, 8192] } else { blocks };

    // 10 days of one room sensor.
    let sensor = [datagen::smooth_sensor(1, 86_400)];
    // 10 trucks x 3 days, TSBS-like: regular timestamps, and with 0-99 ms jitter.
    let trucks: Vec<SeriesData> = (0..10).map(|i| datagen::tsbs_truck(100 + i, 25_920, 0)).collect();
    let jittery: Vec<SeriesData> = (0..10).map(|i| datagen::tsbs_truck(100 + i, 25_920, 100)).collect();

    println!("bytes per value; 'ts bit' = timestamp bits per point; 'ts+val' and tsz in bytes per point");
    for &block in &blocks {
        report("(a) smooth sensor, regular 10 s", &sensor, block);
        report("(b) TSBS-iot-like trucks, regular 10 s", &trucks, block);
        report("(b') TSBS-iot-like trucks, 10 s + 0..99 ms jitter", &jittery, block);
    }
}
