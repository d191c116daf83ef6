//! Codec throughput: Strata's timestamp and float codecs against the `tsz` crate (a
//! public Rust Gorilla implementation) on the same blocks in the same run, so the
//! ratio survives a noisy 2-core machine.
//!
//! ```text
//! cargo bench -p strata-bench --bench codecs -- --warm-up-time 1 --measurement-time 3
//! ```
//! Each benchmark encodes or decodes one block of `BLOCK` values; criterion's
//! "elements" throughput is values per second (ns/value = 1e9 / that).
//! tsz always encodes (timestamp, value) pairs, so it is compared with the
//! `strata_ts+f64` pair; the single-column figures show where our time goes.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use strata_bench::datagen;
use strata_engine::codec::{self, FloatCodec};
use tsz::stream::{BufferedReader, BufferedWriter};
use tsz::{DataPoint, Decode, Encode, StdDecoder, StdEncoder};

const BLOCK: usize = 4096;

struct Dataset {
    name: &'static str,
    ts: Vec<i64>,
    vals: Vec<f64>,
}

fn datasets() -> Vec<Dataset> {
    let sensor = datagen::smooth_sensor(1, BLOCK);
    let truck = datagen::tsbs_truck(2, BLOCK, 0);
    let jittery = datagen::tsbs_truck(3, BLOCK, 100);
    vec![
        Dataset {
            name: "sensor_temperature",
            ts: sensor.timestamps.clone(),
            vals: sensor.fields[0].values.clone(),
        },
        Dataset {
            name: "truck_latitude",
            ts: truck.timestamps.clone(),
            vals: truck.fields[0].values.clone(),
        },
        Dataset {
            name: "truck_velocity_jitter",
            ts: jittery.timestamps.clone(),
            vals: jittery.fields[3].values.clone(),
        },
    ]
}

fn ms(t: i64) -> u64 {
    (t / 1_000_000) as u64
}

fn tsz_encode(ts: &[i64], vals: &[f64]) -> Box<[u8]> {
    let mut enc = StdEncoder::new(ms(ts[0]), BufferedWriter::new());
    for (&t, &v) in ts.iter().zip(vals) {
        enc.encode(DataPoint::new(ms(t), v));
    }
    enc.close()
}

fn bench_encode(c: &mut Criterion) {
    for d in datasets() {
        let mut g = c.benchmark_group(format!("encode/{}", d.name));
        g.throughput(Throughput::Elements(BLOCK as u64));
        let mut out = Vec::with_capacity(BLOCK * 16);
        g.bench_function("strata_ts", |b| {
            b.iter(|| {
                out.clear();
                codec::encode_timestamps(black_box(&d.ts), &mut out);
            })
        });
        g.bench_function("strata_f64", |b| {
            b.iter(|| {
                out.clear();
                codec::encode_f64(black_box(&d.vals), &mut out);
            })
        });
        for forced in [FloatCodec::Gorilla, FloatCodec::Decimal] {
            g.bench_function(format!("strata_f64_{}", forced.name()), |b| {
                b.iter(|| {
                    out.clear();
                    codec::encode_f64_with(black_box(&d.vals), forced, &mut out);
                })
            });
        }
        g.bench_function("strata_ts+f64", |b| {
            b.iter(|| {
                out.clear();
                codec::encode_timestamps(black_box(&d.ts), &mut out);
                codec::encode_f64(black_box(&d.vals), &mut out);
            })
        });
        g.bench_function("tsz_ts+f64", |b| b.iter(|| tsz_encode(black_box(&d.ts), black_box(&d.vals))));
        g.finish();
    }
}

fn bench_decode(c: &mut Criterion) {
    for d in datasets() {
        let mut g = c.benchmark_group(format!("decode/{}", d.name));
        g.throughput(Throughput::Elements(BLOCK as u64));
        let mut ts_enc = Vec::new();
        codec::encode_timestamps(&d.ts, &mut ts_enc);
        let mut f_enc = Vec::new();
        codec::encode_f64(&d.vals, &mut f_enc);
        let forced: Vec<(FloatCodec, Vec<u8>)> = [FloatCodec::Gorilla, FloatCodec::Decimal]
            .into_iter()
            .map(|c| {
                let mut e = Vec::new();
                codec::encode_f64_with(&d.vals, c, &mut e);
                (c, e)
            })
            .collect();
        let tsz_bytes = tsz_encode(&d.ts, &d.vals);
        let mut ts_out: Vec<i64> = Vec::with_capacity(BLOCK);
        let mut f_out: Vec<f64> = Vec::with_capacity(BLOCK);

        g.bench_function("strata_ts", |b| {
            b.iter(|| {
                ts_out.clear();
                codec::decode_timestamps(black_box(&ts_enc), BLOCK, &mut ts_out).expect("decode");
            })
        });
        g.bench_function("strata_f64", |b| {
            b.iter(|| {
                f_out.clear();
                codec::decode_f64(black_box(&f_enc), BLOCK, &mut f_out).expect("decode");
            })
        });
        for (c, enc) in &forced {
            g.bench_function(format!("strata_f64_{}", c.name()), |b| {
                b.iter(|| {
                    f_out.clear();
                    codec::decode_f64(black_box(enc), BLOCK, &mut f_out).expect("decode");
                })
            });
        }
        g.bench_function("strata_ts+f64", |b| {
            b.iter(|| {
                ts_out.clear();
                f_out.clear();
                codec::decode_timestamps(black_box(&ts_enc), BLOCK, &mut ts_out).expect("decode");
                codec::decode_f64(black_box(&f_enc), BLOCK, &mut f_out).expect("decode");
            })
        });
        g.bench_function("tsz_ts+f64", |b| {
            b.iter_batched(
                || tsz_bytes.clone(),
                |bytes| {
                    ts_out.clear();
                    f_out.clear();
                    let mut dec = StdDecoder::new(BufferedReader::new(bytes));
                    while let Ok(dp) = dec.next() {
                        ts_out.push(dp.get_time() as i64);
                        f_out.push(dp.get_value());
                    }
                    assert_eq!(f_out.len(), BLOCK);
                },
                BatchSize::SmallInput,
            )
        });
        g.finish();
    }
}

criterion_group!(benches, bench_encode, bench_decode);
criterion_main!(benches);
