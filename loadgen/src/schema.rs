//! The simulated devices and the line protocol they send.
//!
//! A device owns one independent value stream per measurement: `iot` trucks have a `readings`
//! stream and a `diagnostics` stream, `sensors` have one `sensors` stream. Each stream is seeded
//! from (`--seed`, device index, measurement) only, and advances one step per simulated
//! interval. So the value of (device, measurement, round) is the same whatever the transport,
//! batch size, lines per message or number of generator threads: a run over HTTP and a run over
//! MQTT with the same seed write the same points (MQTT adds the `device` tag of its topic).
//!
//! Rendering appends to a caller-owned buffer; tag prefixes are rendered once per device, and
//! numbers are printed by hand from scaled integers (no `format!`, no per-point allocation).
//! Values are truncated to a fixed number of decimals like TSBS's `FloatPrecision`, so the
//! printed text is exactly the value.

use std::f64::consts::TAU;

/// Which data set to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemaKind {
    /// TSBS-iot-like trucks: `readings` (7 floats) and `diagnostics` (2 floats, 1 integer).
    Iot,
    /// Room sensors: `sensors` with smooth temperature, humidity and pressure.
    Sensors,
}

impl SchemaKind {
    /// Measurement names, in the order a device emits them per round.
    pub fn measurements(self) -> &'static [&'static str] {
        match self {
            SchemaKind::Iot => &["readings", "diagnostics"],
            SchemaKind::Sensors => &["sensors"],
        }
    }

    /// Field names of measurement `m` (index into [`SchemaKind::measurements`]).
    pub fn fields(self, m: usize) -> &'static [&'static str] {
        match (self, m) {
            (SchemaKind::Iot, 0) => &READINGS_FIELDS,
            (SchemaKind::Iot, _) => &DIAGNOSTICS_FIELDS,
            (SchemaKind::Sensors, _) => &SENSOR_FIELDS,
        }
    }

    /// Field values in one line of measurement `m`.
    pub fn values_per_line(self, m: usize) -> u64 {
        self.fields(m).len() as u64
    }

    /// Name of device `d`: also its MQTT client id suffix and topic segment.
    pub fn device_name(self, d: u32) -> String {
        match self {
            SchemaKind::Iot => format!("truck_{d}"),
            SchemaKind::Sensors => format!("sensor_{d}"),
        }
    }
}

pub const READINGS_FIELDS: [&str; 7] =
    ["latitude", "longitude", "elevation", "velocity", "heading", "grade", "fuel_consumption"];
pub const DIAGNOSTICS_FIELDS: [&str; 3] = ["fuel_state", "current_load", "status"];
pub const SENSOR_FIELDS: [&str; 3] = ["temperature", "humidity", "pressure"];

pub const FLEETS: [&str; 4] = ["East", "West", "North", "South"];
const DRIVERS: [&str; 6] = ["Albert", "Derek", "Andy", "Seth", "Trish", "Rodney"];
const MODELS: [&str; 3] = ["F-150", "G-2000", "H-2"];
const VERSIONS: [&str; 4] = ["v1.0", "v1.5", "v2.0", "v2.3"];

/// SplitMix64: tiny, fast, and its output is fixed by this code, not by a crate version
/// (rand's `StdRng` is documented as not reproducible across versions).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next_u64() % items.len() as u64) as usize]
    }
}

/// Seed of one (device, measurement) stream.
fn stream_seed(seed: u64, device: u32, measurement: usize) -> u64 {
    let mut r = Rng::new(seed ^ (u64::from(device) << 8) ^ measurement as u64);
    r.next_u64() ^ r.next_u64().rotate_left(17)
}

/// TSBS's clamped random walk with a uniform step.
#[derive(Debug, Clone)]
struct Walk {
    state: f64,
    step: f64,
    min: f64,
    max: f64,
}

impl Walk {
    fn advance(&mut self, rng: &mut Rng, lo: f64, hi: f64) -> f64 {
        self.state = (self.state + rng.range(lo, hi) * self.step).clamp(self.min, self.max);
        self.state
    }
}

fn walk(state: f64, step: f64, min: f64, max: f64) -> Walk {
    Walk { state, step, min, max }
}

/// One measurement's value stream of one device.
#[derive(Debug, Clone)]
enum Stream {
    Readings { rng: Rng, walks: [Walk; 7] },
    Diagnostics { rng: Rng, fuel: Walk, load: f64 },
    Sensor { rng: Rng, phase: f64, pressure: f64 },
}

/// Decimals each field is printed with, per stream kind.
const READINGS_DECIMALS: [u32; 7] = [5, 5, 0, 0, 0, 0, 1];

impl Stream {
    fn new(kind: SchemaKind, seed: u64, device: u32, m: usize) -> Stream {
        let mut rng = Rng::new(stream_seed(seed, device, m));
        match (kind, m) {
            (SchemaKind::Iot, 0) => {
                let walks = [
                    walk(rng.range(0.0, 90.0), 0.005, -90.0, 90.0),
                    walk(rng.range(0.0, 180.0), 0.005, -180.0, 180.0),
                    walk(rng.range(0.0, 500.0), 10.0, 0.0, 5000.0),
                    walk(0.0, 10.0, 0.0, 100.0),
                    walk(rng.range(0.0, 360.0), 5.0, 0.0, 360.0),
                    walk(0.0, 5.0, 0.0, 100.0),
                    walk(25.0, 5.0, 0.0, 50.0),
                ];
                Stream::Readings { rng, walks }
            }
            (SchemaKind::Iot, _) => Stream::Diagnostics { rng, fuel: walk(1.0, 0.001, 0.0, 1.0), load: 0.0 },
            (SchemaKind::Sensors, _) => {
                let phase = rng.range(0.0, TAU);
                Stream::Sensor { rng, phase, pressure: 1013.25 }
            }
        }
    }

    /// Advances one round and appends the field set (`a=1,b=2`) to `out`.
    fn render_fields(&mut self, round: u64, interval_s: f64, out: &mut Vec<u8>) {
        match self {
            Stream::Readings { rng, walks } => {
                for (i, (w, &dec)) in walks.iter_mut().zip(&READINGS_DECIMALS).enumerate() {
                    let v = w.advance(rng, -1.0, 1.0);
                    field(out, i, READINGS_FIELDS[i], v, dec);
                }
            }
            Stream::Diagnostics { rng, fuel, load } => {
                // TSBS refuels as soon as the tank is empty.
                if fuel.advance(rng, -1.0, 0.0) == 0.0 {
                    fuel.state = 1.0;
                }
                if rng.unit() >= 0.95 {
                    *load = rng.range(0.0, 5000.0);
                }
                let status = rng.next_u64() % 8;
                field(out, 0, "fuel_state", fuel.state, 1);
                field(out, 1, "current_load", *load, 0);
                out.extend_from_slice(b",status=");
                push_u64(out, status);
                out.push(b'i');
            }
            Stream::Sensor { rng, phase, pressure } => {
                let t = round as f64 * interval_s;
                let s = (t * TAU / 86_400.0 + *phase).sin();
                let temp = 20.0 + 5.0 * s + rng.range(-0.03, 0.03);
                let hum = 55.0 - 10.0 * s + rng.range(-0.2, 0.2);
                *pressure += rng.range(-0.02, 0.02);
                field(out, 0, "temperature", temp, 2);
                field(out, 1, "humidity", hum, 1);
                field(out, 2, "pressure", *pressure, 2);
            }
        }
    }
}

fn field(out: &mut Vec<u8>, i: usize, name: &str, v: f64, decimals: u32) {
    if i > 0 {
        out.push(b',');
    }
    out.extend_from_slice(name.as_bytes());
    out.push(b'=');
    push_fixed(out, v, decimals);
}

/// Appends `n` in decimal.
pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Appends `n` in decimal, with a sign if negative.
pub fn push_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    push_u64(out, n.unsigned_abs());
}

/// Appends `v` truncated (towards zero) to `decimals` digits, e.g. `-12.05000` for
/// (-12.05, 5). `decimals` is at most 9.
pub fn push_fixed(out: &mut Vec<u8>, v: f64, decimals: u32) {
    let p = 10u64.pow(decimals);
    let scaled = (v * p as f64).trunc();
    let neg = scaled < 0.0;
    let a = scaled.abs() as u64;
    if neg {
        out.push(b'-');
    }
    push_u64(out, a / p);
    if decimals > 0 {
        out.push(b'.');
        let mut frac = a % p;
        let mut digits = [b'0'; 9];
        for k in (0..decimals as usize).rev() {
            digits[k] = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        out.extend_from_slice(&digits[..decimals as usize]);
    }
}

/// One simulated device: its rendered tag prefixes and value streams.
#[derive(Debug, Clone)]
pub struct Device {
    pub index: u32,
    /// `measurement,tag=v,... ` (with the trailing space) per measurement.
    prefixes: Vec<Vec<u8>>,
    streams: Vec<Stream>,
    /// Next round of each stream.
    next_round: Vec<u64>,
}

impl Device {
    pub fn new(kind: SchemaKind, seed: u64, index: u32) -> Device {
        let mut tag_rng = Rng::new(stream_seed(seed, index, 0xff));
        let name = kind.device_name(index);
        let tags = match kind {
            SchemaKind::Iot => format!(
                "name={name},fleet={},driver={},model={},device_version={}",
                tag_rng.pick(&FLEETS),
                tag_rng.pick(&DRIVERS),
                tag_rng.pick(&MODELS),
                tag_rng.pick(&VERSIONS)
            ),
            SchemaKind::Sensors => format!("device={name},site=site_{}", index % 10),
        };
        let ms = kind.measurements();
        Device {
            index,
            prefixes: ms.iter().map(|m| format!("{m},{tags} ").into_bytes()).collect(),
            streams: (0..ms.len()).map(|m| Stream::new(kind, seed, index, m)).collect(),
            next_round: vec![0; ms.len()],
        }
    }

    /// Appends the next line of measurement `m` (round `next_round(m)`, at
    /// `start_ns + round * interval_ns`) and a newline; returns its timestamp.
    pub fn render_line(&mut self, m: usize, start_ns: i64, interval_ns: i64, out: &mut Vec<u8>) -> i64 {
        let round = self.next_round[m];
        self.next_round[m] += 1;
        let ts = start_ns + round as i64 * interval_ns;
        out.extend_from_slice(&self.prefixes[m]);
        self.streams[m].render_fields(round, interval_ns as f64 / 1e9, out);
        out.push(b' ');
        push_i64(out, ts);
        out.push(b'\n');
        ts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_lineproto::{FieldValue, Parser};

    fn render(kind: SchemaKind, seed: u64, devices: u32, rounds: u32) -> Vec<u8> {
        let mut devs: Vec<Device> = (0..devices).map(|d| Device::new(kind, seed, d)).collect();
        let mut out = Vec::new();
        for _ in 0..rounds {
            for d in &mut devs {
                for m in 0..kind.measurements().len() {
                    d.render_line(m, 1_700_000_000_000_000_000, 10_000_000_000, &mut out);
                }
            }
        }
        out
    }

    #[test]
    fn same_seed_same_lines_other_seed_other_values() {
        for kind in [SchemaKind::Iot, SchemaKind::Sensors] {
            let a = render(kind, 7, 5, 50);
            assert_eq!(a, render(kind, 7, 5, 50), "{kind:?} not deterministic");
            assert_ne!(a, render(kind, 8, 5, 50), "{kind:?} ignores the seed");
        }
    }

    #[test]
    fn a_stream_does_not_depend_on_the_render_order() {
        // Device-major (as MQTT messages render) vs round-major (as HTTP batches render).
        let kind = SchemaKind::Iot;
        let mut d1 = Device::new(kind, 3, 4);
        let mut a = Vec::new();
        for m in 0..2 {
            for _ in 0..20 {
                d1.render_line(m, 0, 10, &mut a);
            }
        }
        let mut d2 = Device::new(kind, 3, 4);
        let (mut r, mut g) = (Vec::new(), Vec::new());
        for _ in 0..20 {
            d2.render_line(0, 0, 10, &mut r);
            d2.render_line(1, 0, 10, &mut g);
        }
        r.extend_from_slice(&g);
        assert_eq!(a, r);
    }

    #[test]
    fn lines_parse_with_strata_lineproto() {
        for kind in [SchemaKind::Iot, SchemaKind::Sensors] {
            let body = render(kind, 1, 10, 30);
            let mut n = 0;
            for line in Parser::new(&body) {
                let line = line.unwrap_or_else(|e| panic!("{kind:?}: {e}"));
                let m = kind
                    .measurements()
                    .iter()
                    .position(|m| line.measurement == *m)
                    .expect("known measurement");
                let names: Vec<String> = line.fields().map(|(k, _)| k.to_string()).collect();
                assert_eq!(names, kind.fields(m), "{kind:?}");
                for (k, v) in line.fields() {
                    match v {
                        FieldValue::F64(x) => assert!(x.is_finite(), "{k}"),
                        FieldValue::I64(x) => assert!((0..8).contains(&x), "{k}"),
                        other => panic!("unexpected {other:?} for {k}"),
                    }
                }
                assert!(line.timestamp.is_some());
                n += 1;
            }
            assert_eq!(n, 10 * 30 * kind.measurements().len());
        }
    }

    #[test]
    fn fixed_point_printing() {
        let cases: [(f64, u32, &str); 7] = [
            (12.345678, 5, "12.34567"),
            (-0.5, 1, "-0.5"),
            (0.0, 2, "0.00"),
            (4999.9, 0, "4999"),
            (-179.000011, 5, "-179.00001"),
            (0.05, 1, "0.0"),
            (1013.25, 2, "1013.25"),
        ];
        for (v, d, want) in cases {
            let mut out = Vec::new();
            push_fixed(&mut out, v, d);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{v} {d}");
        }
        let mut out = Vec::new();
        push_i64(&mut out, i64::MIN);
        assert_eq!(out, i64::MIN.to_string().as_bytes());
    }
}
