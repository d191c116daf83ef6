//! Line protocol parse throughput: `strata-lineproto` against InfluxDB IOx's
//! `influxdb-line-protocol` 2.x on the same TSBS-IoT-like body.
//!
//! Both sides do the work an ingest path does: parse every line and look at the
//! measurement, every tag, every field value and the timestamp, as `&str`s and
//! typed values. Our `Line` parses lazily, so only iterating everything is a fair
//! comparison; `strata/validate_only` shows what skipping the iteration saves.
//! The IOx side includes `str::from_utf8` of the body, because its API takes
//! `&str` and a request body arrives as bytes (ours validates UTF-8 per line).
//!
//! Run: `cargo bench -p strata-bench --bench lineproto -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use strata_lineproto::{FieldValue, Parser};

const LINES: usize = 20_000;

/// Deterministic TSBS "IoT" use case body: alternating `readings` and
/// `diagnostics` lines for 1000 trucks, 10 s apart.
fn tsbs_iot_body(lines: usize) -> Vec<u8> {
    const FLEETS: [&str; 5] = ["South", "North", "East", "West", "Central"];
    const DRIVERS: [&str; 8] = ["Trish", "Derek", "Albert", "Rodney", "Seth", "Andy", "Annie", "Zack"];
    const MODELS: [&str; 3] = ["H-2", "F-150", "G-2000"];
    const VERSIONS: [&str; 4] = ["v1.0", "v1.5", "v2.0", "v2.3"];
    // xorshift64*: reproducible without a dependency on rand's algorithms.
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move |n: u64| {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    };
    let mut body = String::with_capacity(lines * 200);
    let mut ts = 1_451_606_400_000_000_000_i64;
    for i in 0..lines {
        let truck = (i / 2) % 1000;
        let tags = format!(
            "name=truck_{truck},fleet={},driver={},model={},device_version={}",
            FLEETS[truck % FLEETS.len()],
            DRIVERS[truck % DRIVERS.len()],
            MODELS[truck % MODELS.len()],
            VERSIONS[truck % VERSIONS.len()],
        );
        let cents = |n: u64, next: &mut dyn FnMut(u64) -> u64| {
            let v = next(n * 100);
            format!("{}.{:02}", v / 100, v % 100)
        };
        if i % 2 == 0 {
            body.push_str(&format!(
                "readings,{tags} latitude={},longitude={},elevation={},velocity={},heading={},grade={},fuel_consumption={} {ts}\n",
                cents(90, &mut next),
                cents(180, &mut next),
                next(5000),
                next(100),
                next(360),
                next(100),
                cents(50, &mut next),
            ));
        } else {
            body.push_str(&format!(
                "diagnostics,{tags} fuel_state={},current_load={},status={}i {ts}\n",
                cents(1, &mut next),
                next(5000),
                next(5),
            ));
            ts += 10_000_000_000;
        }
    }
    body.into_bytes()
}

/// Parse and touch everything with strata-lineproto; returns a checksum.
fn strata_all(body: &[u8]) -> u64 {
    let mut sum = 0u64;
    for line in Parser::new(body) {
        let line = line.expect("valid input");
        sum += line.measurement.as_str().len() as u64;
        for (k, v) in line.tags() {
            sum += (k.as_str().len() + v.as_str().len()) as u64;
        }
        for (k, v) in line.fields() {
            sum += k.as_str().len() as u64;
            sum += match v {
                FieldValue::F64(f) => f.to_bits() & 1,
                FieldValue::I64(i) => i as u64,
                FieldValue::U64(u) => u,
                FieldValue::Bool(b) => u64::from(b),
                FieldValue::Str(s) => s.as_str().len() as u64,
            };
        }
        sum = sum.wrapping_add(line.timestamp.unwrap_or(0) as u64);
    }
    sum
}

/// Parse (validate) only, without iterating tags and fields.
fn strata_validate(body: &[u8]) -> u64 {
    let mut sum = 0u64;
    for line in Parser::new(body) {
        let line = line.expect("valid input");
        sum += (line.tag_count() + line.field_count()) as u64;
    }
    sum
}

/// Parse and touch everything with influxdb-line-protocol; returns a checksum.
fn iox_all(body: &[u8]) -> u64 {
    use influxdb_line_protocol::FieldValue as F;
    let text = std::str::from_utf8(body).expect("utf-8");
    let mut sum = 0u64;
    for line in influxdb_line_protocol::parse_lines(text) {
        let line = line.expect("valid input");
        sum += line.series.measurement.as_str().len() as u64;
        for (k, v) in line.series.tag_set.iter().flatten() {
            sum += (k.as_str().len() + v.as_str().len()) as u64;
        }
        for (k, v) in &line.field_set {
            sum += k.as_str().len() as u64;
            sum += match v {
                F::F64(f) => f.to_bits() & 1,
                F::I64(i) => *i as u64,
                F::U64(u) => *u,
                F::Boolean(b) => u64::from(*b),
                F::String(s) => s.as_str().len() as u64,
            };
        }
        sum = sum.wrapping_add(line.timestamp.unwrap_or(0) as u64);
    }
    sum
}

fn bench(c: &mut Criterion) {
    let body = tsbs_iot_body(LINES);
    assert_eq!(strata_all(&body), iox_all(&body), "both parsers read the same data");

    type Case = (&'static str, fn(&[u8]) -> u64);
    let cases: [Case; 3] = [
        ("strata", strata_all),
        ("strata_validate_only", strata_validate),
        ("influxdb_line_protocol", iox_all),
    ];
    for (group, throughput) in [
        ("lineproto_bytes", Throughput::Bytes(body.len() as u64)),
        ("lineproto_lines", Throughput::Elements(LINES as u64)),
    ] {
        let mut g = c.benchmark_group(group);
        g.throughput(throughput);
        for (name, f) in cases {
            g.bench_with_input(BenchmarkId::new(name, "tsbs_iot"), &body, |b, body| {
                b.iter(|| black_box(f(black_box(body))))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
