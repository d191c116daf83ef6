//! Deterministic telemetry generators for benchmarks and load tools.
//!
//! Every generator takes a seed and returns the same data for the same seed (rand 0.8
//! `StdRng`), so compression figures in `docs/codecs.md` can be reproduced exactly.
//! Timestamps are nanoseconds since the Unix epoch, as the engine stores them.
//!
//! - [`smooth_sensor`]: a room sensor at a regular 10 s interval: temperature (daily
//!   sine, 2 decimals), humidity (1 decimal), pressure (slow random walk, 2 decimals).
//! - [`tsbs_truck`]: the TSBS IoT use case's truck readings and diagnostics,
//!   reproducing its distributions (clamped uniform random walks printed with 0, 1 or
//!   5 decimals, fuel that refuels at empty, a load that changes 5 % of the time), at
//!   10 s intervals with optional millisecond jitter.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// 2023-11-14T22:13:20Z in nanoseconds: a realistic magnitude for timestamp varints.
pub const START_NS: i64 = 1_700_000_000_000_000_000;
/// The 10 s reporting interval of both data sets, in nanoseconds.
pub const INTERVAL_NS: i64 = 10_000_000_000;

/// One float field of a series.
#[derive(Debug, Clone)]
pub struct FieldData {
    pub name: &'static str,
    /// Decimals the values are printed with (0 = integers).
    pub decimals: u32,
    pub values: Vec<f64>,
}

/// One series: shared timestamps and its float fields (each as long as `timestamps`).
#[derive(Debug, Clone)]
pub struct SeriesData {
    pub timestamps: Vec<i64>,
    pub fields: Vec<FieldData>,
}

/// `n` timestamps `start, start + interval, ...`.
pub fn regular_timestamps(start: i64, interval: i64, n: usize) -> Vec<i64> {
    (0..n as i64).map(|i| start + i * interval).collect()
}

/// `n` timestamps at `interval`, each delayed by a uniform whole number of
/// milliseconds in `0..max_jitter_ms` (a device clock that reports late, in ms
/// resolution, as most MQTT/HTTP devices do). `max_jitter_ms = 0` gives regular data.
pub fn jittered_timestamps(seed: u64, start: i64, interval: i64, n: usize, max_jitter_ms: u32) -> Vec<i64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n as i64)
        .map(|i| {
            let jitter =
                if max_jitter_ms == 0 { 0 } else { i64::from(rng.gen_range(0..max_jitter_ms)) * 1_000_000 };
            start + i * interval + jitter
        })
        .collect()
}

/// `v` rounded to `decimals` digits: exactly the `f64` a parser returns for the
/// printed value (`n / 10^d` is correctly rounded, like parsing).
pub fn round_to(v: f64, decimals: u32) -> f64 {
    let p = 10f64.powi(decimals as i32);
    (v * p).round() / p
}

/// `v` truncated to `decimals` digits the way TSBS's `FloatPrecision` does:
/// `float64(int(v * p)) / p`.
pub fn truncate_to(v: f64, decimals: u32) -> f64 {
    let p = 10f64.powi(decimals as i32);
    (v * p).trunc() / p
}

/// A regular 10 s room sensor, `n` points: temperature `20 + 5 sin(day)` plus
/// +-0.03 noise (2 decimals), humidity `55 - 10 sin(day)` plus +-0.2 noise (1 decimal),
/// pressure a random walk of +-0.02 hPa steps around 1013.25 (2 decimals).
pub fn smooth_sensor(seed: u64, n: usize) -> SeriesData {
    let mut rng = StdRng::seed_from_u64(seed);
    let timestamps = regular_timestamps(START_NS, INTERVAL_NS, n);
    let day = std::f64::consts::TAU / 86_400.0;
    let phase = rng.gen_range(0.0..std::f64::consts::TAU);
    let mut temperature = Vec::with_capacity(n);
    let mut humidity = Vec::with_capacity(n);
    let mut pressure = Vec::with_capacity(n);
    let mut p = 1013.25;
    for i in 0..n {
        let t = i as f64 * 10.0;
        let s = (t * day + phase).sin();
        temperature.push(round_to(20.0 + 5.0 * s + rng.gen_range(-0.03..0.03), 2));
        humidity.push(round_to(55.0 - 10.0 * s + rng.gen_range(-0.2..0.2), 1));
        p += rng.gen_range(-0.02..0.02);
        pressure.push(round_to(p, 2));
    }
    SeriesData {
        timestamps,
        fields: vec![
            FieldData { name: "temperature", decimals: 2, values: temperature },
            FieldData { name: "humidity", decimals: 1, values: humidity },
            FieldData { name: "pressure", decimals: 2, values: pressure },
        ],
    }
}

/// TSBS `ClampedRandomWalkDistribution` with a uniform step.
struct Walk {
    state: f64,
    step: f64,
    min: f64,
    max: f64,
}

impl Walk {
    fn advance(&mut self, rng: &mut StdRng, lo: f64, hi: f64) -> f64 {
        self.state = (self.state + rng.gen_range(lo..hi) * self.step).clamp(self.min, self.max);
        self.state
    }
}

/// The names of the nine float fields [`tsbs_truck`] returns, in order.
pub const TRUCK_FIELDS: [&str; 9] = [
    "latitude",
    "longitude",
    "elevation",
    "velocity",
    "heading",
    "grade",
    "fuel_consumption",
    "fuel_state",
    "current_load",
];

/// One TSBS-IoT-like truck, `n` rows at 10 s (plus `0..max_jitter_ms` ms of jitter per
/// row; 0 for TSBS's regular timestamps). Fields, as in TSBS `readings.go` and
/// `diagnostics.go`:
///
/// | field | walk step | range | decimals |
/// |---|---|---|---|
/// | latitude | U(-0.005, 0.005) | -90..90 | 5 |
/// | longitude | U(-0.005, 0.005) | -180..180 | 5 |
/// | elevation | U(-10, 10) | 0..5000 | 0 |
/// | velocity | U(-10, 10) | 0..100 | 0 |
/// | heading | U(-5, 5) | 0..360 | 0 |
/// | grade | U(-5, 5) | 0..100 | 0 |
/// | fuel_consumption | U(-5, 5) | 0..50 | 1 |
/// | fuel_state | U(-0.001, 0), refuel to 1 at 0 | 0..1 | 1 |
/// | current_load | new U(0, 5000) with 5 % chance | 0..5000 | 0 |
///
/// Values are truncated to their decimals like TSBS's `FloatPrecision`.
pub fn tsbs_truck(seed: u64, n: usize, max_jitter_ms: u32) -> SeriesData {
    let mut rng = StdRng::seed_from_u64(seed);
    let timestamps = jittered_timestamps(seed ^ 0x5eed, START_NS, INTERVAL_NS, n, max_jitter_ms);
    let walk = |state, step, min, max| Walk { state, step, min, max };
    let mut lat = walk(rng.gen_range(0.0..90.0), 0.005, -90.0, 90.0);
    let mut lon = walk(rng.gen_range(0.0..180.0), 0.005, -180.0, 180.0);
    let mut elevation = walk(rng.gen_range(0.0..500.0), 10.0, 0.0, 5000.0);
    let mut velocity = walk(0.0, 10.0, 0.0, 100.0);
    let mut heading = walk(rng.gen_range(0.0..360.0), 5.0, 0.0, 360.0);
    let mut grade = walk(0.0, 5.0, 0.0, 100.0);
    let mut fuel_consumption = walk(25.0, 5.0, 0.0, 50.0);
    let mut fuel_state = walk(1.0, 0.001, 0.0, 1.0);
    let mut load = 0.0f64;

    let mut cols: Vec<Vec<f64>> = (0..TRUCK_FIELDS.len()).map(|_| Vec::with_capacity(n)).collect();
    for _ in 0..n {
        let row = [
            truncate_to(lat.advance(&mut rng, -1.0, 1.0), 5),
            truncate_to(lon.advance(&mut rng, -1.0, 1.0), 5),
            truncate_to(elevation.advance(&mut rng, -1.0, 1.0), 0),
            truncate_to(velocity.advance(&mut rng, -1.0, 1.0), 0),
            truncate_to(heading.advance(&mut rng, -1.0, 1.0), 0),
            truncate_to(grade.advance(&mut rng, -1.0, 1.0), 0),
            truncate_to(fuel_consumption.advance(&mut rng, -1.0, 1.0), 1),
            {
                // TSBS's customFuelDistribution: refuel as soon as the tank hits empty.
                if fuel_state.advance(&mut rng, -1.0, 0.0) == 0.0 {
                    fuel_state.state = 1.0;
                }
                truncate_to(fuel_state.state, 1)
            },
            {
                if rng.gen::<f64>() >= 0.95 {
                    load = rng.gen_range(0.0..5000.0);
                }
                truncate_to(load, 0)
            },
        ];
        for (c, v) in cols.iter_mut().zip(row) {
            c.push(v);
        }
    }
    let decimals = [5, 5, 0, 0, 0, 0, 1, 1, 0];
    SeriesData {
        timestamps,
        fields: TRUCK_FIELDS
            .iter()
            .zip(decimals)
            .zip(cols)
            .map(|((&name, decimals), values)| FieldData { name, decimals, values })
            .collect(),
    }
}

/// Opens an engine in `dir` holding `trucks` TSBS-iot trucks' readings (database `iot`,
/// measurement `readings`, tags name/fleet/model) every 10 s for `hours` hours from
/// [`START_NS`], written in 5,000-point batches and flushed to segments: the data set of the
/// query benchmark and the query profile.
pub fn load_tsbs_trucks(dir: &std::path::Path, trucks: usize, hours: usize) -> strata_engine::Engine {
    use strata_engine::{Engine, EngineOptions, FieldValue, WriteBatch};
    let engine = Engine::open(EngineOptions::new(dir)).expect("open engine");
    engine.create_database("iot").expect("create db");
    let n = hours * 360;
    let mut b = WriteBatch::with_capacity(1 << 20);
    for t in 0..trucks {
        let data = tsbs_truck(t as u64, n, 500);
        let name = format!("truck_{t}");
        for (i, ts) in data.timestamps.iter().enumerate() {
            {
                let mut p = b.point("readings");
                p.tag("name", &name)
                    .tag("fleet", ["East", "West", "North", "South"][t % 4])
                    .tag("model", "H-2");
                for (f, field) in TRUCK_FIELDS.iter().zip(&data.fields) {
                    p.field(f, FieldValue::F64(field.values[i]));
                }
                p.finish(*ts).expect("valid point");
            }
            if b.len_points() >= 5000 {
                engine.write("iot", &b).expect("write");
                b.clear();
            }
        }
    }
    engine.write("iot", &b).expect("write");
    engine.flush().expect("flush");
    engine
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_are_deterministic_and_decimal() {
        let a = tsbs_truck(7, 500, 100);
        let b = tsbs_truck(7, 500, 100);
        assert_eq!(a.timestamps, b.timestamps);
        for (fa, fb) in a.fields.iter().zip(&b.fields) {
            assert_eq!(fa.values, fb.values);
            assert_eq!(fa.values.len(), 500);
            for v in &fa.values {
                // Printing with the field's decimals and parsing gives the same bits.
                let printed = format!("{:.*}", fa.decimals as usize, v);
                assert_eq!(printed.parse::<f64>().unwrap().to_bits(), v.to_bits(), "{}", fa.name);
            }
        }
        assert!(a.timestamps.windows(2).all(|w| w[1] > w[0]));
        let s = smooth_sensor(1, 1000);
        assert_eq!(s.fields.len(), 3);
        assert!(s.fields[0].values.iter().all(|v| (14.9..25.1).contains(v)));
    }
}
