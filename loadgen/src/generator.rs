//! Cutting the devices' line streams into units: HTTP batches or MQTT messages.
//!
//! A [`Generator`] owns the devices `d` with `d % generators == index` and renders units into
//! recycled buffers: an HTTP batch takes the next `--batch` lines in round-major order (every
//! device's round `r` before any round `r + 1`, as a gateway forwarding a fleet would); an MQTT
//! message takes `--lines-per-message` consecutive rounds of one device and one measurement (a
//! device that buffers readings and sends them together), so its topic can name both.
//! Generators run on their own threads; one renders a few million lines per second, far above
//! what a server on the same machine ingests (see docs/loadgen.md for the measured ceiling).

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::schema::{Device, SchemaKind};

/// How lines are grouped into units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// HTTP: `n` lines per batch, round-major across devices and measurements.
    Batch(u32),
    /// MQTT: `n` lines per message, one device and measurement each.
    Message(u32),
}

#[derive(Debug, Clone)]
pub struct GenConfig {
    pub kind: SchemaKind,
    pub seed: u64,
    pub devices: u32,
    pub start_ns: i64,
    pub interval_ns: i64,
    pub layout: Layout,
    /// Total lines over all generators; `None` for unbounded (a `--duration` run).
    pub limit: Option<u64>,
    pub gzip: bool,
    /// Keep the first line of every `sample_every`-th unit for `--verify` spot checks.
    pub sample_every: u64,
}

/// The first line of a unit, kept so `--verify` can look its value up.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sample {
    pub measurement: String,
    pub tags: Vec<(String, String)>,
    pub field: String,
    /// As printed in the line protocol.
    pub value: String,
    pub ts: i64,
}

impl Sample {
    /// Parses one line as this crate renders it (no escapes, first field only).
    pub fn from_line(line: &[u8]) -> Option<Sample> {
        let text = std::str::from_utf8(line).ok()?.trim_end();
        let mut parts = text.split(' ');
        let (key, fields, ts) = (parts.next()?, parts.next()?, parts.next()?);
        let mut key_parts = key.split(',');
        let measurement = key_parts.next()?.to_owned();
        let tags = key_parts
            .map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect::<Option<Vec<_>>>()?;
        let (field, value) = fields.split(',').next()?.split_once('=')?;
        Some(Sample {
            measurement,
            tags,
            field: field.to_owned(),
            value: value.to_owned(),
            ts: ts.parse().ok()?,
        })
    }
}

/// One HTTP batch or MQTT message, ready to send.
#[derive(Debug)]
pub struct Unit {
    /// The payload as sent (gzipped with `--gzip`).
    pub body: Bytes,
    /// Uncompressed size.
    pub raw_bytes: u32,
    pub lines: u32,
    /// Lines per measurement (index into `SchemaKind::measurements`).
    pub per_measurement: [u32; 2],
    pub values: u64,
    /// MQTT: the device and measurement of every line.
    pub device: u32,
    pub measurement: usize,
    pub min_ts: i64,
    pub max_ts: i64,
    pub sample: Option<Sample>,
}

/// Buffers that finished units hand back to the generators, so a steady run renders into the
/// same few allocations (one per unit in flight) instead of allocating per unit.
#[derive(Debug, Clone, Default)]
pub struct Pool(Arc<Mutex<Vec<Vec<u8>>>>);

/// More idle buffers than this are freed rather than kept.
const POOL_MAX: usize = 1024;

impl Pool {
    /// Returns `body`'s allocation to the pool if nobody else holds it.
    pub fn recycle(&self, body: Bytes) {
        if let Ok(m) = body.try_into_mut() {
            let mut v: Vec<u8> = m.into();
            v.clear();
            let mut pool = self.0.lock().expect("pool lock");
            if pool.len() < POOL_MAX {
                pool.push(v);
            }
        }
    }

    fn take(&self) -> Vec<u8> {
        self.0.lock().expect("pool lock").pop().unwrap_or_default()
    }

    #[cfg(test)]
    fn idle(&self) -> usize {
        self.0.lock().expect("pool lock").len()
    }
}

pub struct Generator {
    cfg: GenConfig,
    devices: Vec<Device>,
    /// Lines this generator may still render.
    remaining: Option<u64>,
    // Cursor: (round or message block, device position, measurement).
    block: u64,
    dev: usize,
    m: usize,
    units: u64,
    pool: Pool,
    gzip_scratch: Vec<u8>,
}

impl Generator {
    /// Generator `index` of `count`, taking buffers from `pool`.
    pub fn new(cfg: &GenConfig, index: u32, count: u32, pool: Pool) -> Generator {
        let devices: Vec<Device> = (index..cfg.devices)
            .step_by(count as usize)
            .map(|d| Device::new(cfg.kind, cfg.seed, d))
            .collect();
        // Split the line limit by device share; generator 0 takes the remainder.
        let remaining = cfg.limit.map(|total| {
            let share = total * devices.len() as u64 / u64::from(cfg.devices.max(1));
            if index == 0 {
                let all: u64 = (0..count)
                    .map(|g| {
                        total * u64::from((cfg.devices + count - 1 - g) / count)
                            / u64::from(cfg.devices.max(1))
                    })
                    .sum();
                share + (total - all)
            } else {
                share
            }
        });
        Generator {
            cfg: cfg.clone(),
            devices,
            remaining,
            block: 0,
            dev: 0,
            m: 0,
            units: 0,
            pool,
            gzip_scratch: Vec::new(),
        }
    }

    /// Renders the next unit, or `None` when the line limit is reached.
    pub fn next_unit(&mut self) -> Option<Unit> {
        if self.devices.is_empty() || self.remaining == Some(0) {
            return None;
        }
        let measurements = self.cfg.kind.measurements().len();
        let mut buf = self.pool.take();
        let (want, device, measurement) = match self.cfg.layout {
            Layout::Batch(n) => (n, self.devices[self.dev].index, self.m),
            Layout::Message(n) => (n, self.devices[self.dev].index, self.m),
        };
        let want = self.remaining.map_or(u64::from(want), |r| r.min(u64::from(want))) as u32;
        let mut unit = Unit {
            body: Bytes::new(),
            raw_bytes: 0,
            lines: 0,
            per_measurement: [0; 2],
            values: 0,
            device,
            measurement,
            min_ts: i64::MAX,
            max_ts: i64::MIN,
            sample: None,
        };
        let (start, interval) = (self.cfg.start_ns, self.cfg.interval_ns);
        let sample = self.units.checked_rem(self.cfg.sample_every) == Some(0);
        match self.cfg.layout {
            Layout::Batch(_) => {
                for i in 0..want {
                    let m = self.m;
                    let line_start = buf.len();
                    let ts = self.devices[self.dev].render_line(m, start, interval, &mut buf);
                    if i == 0 && sample {
                        unit.sample = Sample::from_line(&buf[line_start..]);
                    }
                    note(&mut unit, self.cfg.kind, m, ts);
                    // Advance: measurement, then device, then round.
                    self.m += 1;
                    if self.m == measurements {
                        self.m = 0;
                        self.dev += 1;
                        if self.dev == self.devices.len() {
                            self.dev = 0;
                            self.block += 1;
                        }
                    }
                }
            }
            Layout::Message(_) => {
                let m = self.m;
                let d = &mut self.devices[self.dev];
                for i in 0..want {
                    let line_start = buf.len();
                    let ts = d.render_line(m, start, interval, &mut buf);
                    if i == 0 && sample {
                        unit.sample = Sample::from_line(&buf[line_start..]);
                    }
                    note(&mut unit, self.cfg.kind, m, ts);
                }
                self.m += 1;
                if self.m == measurements {
                    self.m = 0;
                    self.dev += 1;
                    if self.dev == self.devices.len() {
                        self.dev = 0;
                        self.block += 1;
                    }
                }
            }
        }
        if let Some(r) = &mut self.remaining {
            *r -= u64::from(want);
        }
        self.units += 1;
        unit.raw_bytes = buf.len() as u32;
        unit.body = if self.cfg.gzip {
            self.gzip_scratch.clear();
            let mut enc = flate2::write::GzEncoder::new(
                std::mem::take(&mut self.gzip_scratch),
                flate2::Compression::fast(),
            );
            enc.write_all(&buf).expect("writing to a Vec cannot fail");
            let out = enc.finish().expect("writing to a Vec cannot fail");
            buf.clear();
            self.gzip_scratch = buf; // the uncompressed buffer becomes the next scratch
            Bytes::from(out)
        } else {
            Bytes::from(buf)
        };
        Some(unit)
    }
}

fn note(unit: &mut Unit, kind: SchemaKind, m: usize, ts: i64) {
    unit.lines += 1;
    unit.per_measurement[m] += 1;
    unit.values += kind.values_per_line(m);
    unit.min_ts = unit.min_ts.min(ts);
    unit.max_ts = unit.max_ts.max(ts);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(layout: Layout, limit: Option<u64>) -> GenConfig {
        GenConfig {
            kind: SchemaKind::Iot,
            seed: 42,
            devices: 7,
            start_ns: 1_000_000_000_000,
            interval_ns: 10_000_000_000,
            layout,
            limit,
            gzip: false,
            sample_every: 1,
        }
    }

    fn all_lines(layout: Layout, generators: u32, limit: u64) -> Vec<String> {
        let mut lines = Vec::new();
        for g in 0..generators {
            let pool = Pool::default();
            let mut gen = Generator::new(&cfg(layout, Some(limit)), g, generators, pool.clone());
            let mut rendered = 0;
            while let Some(u) = gen.next_unit() {
                rendered += u64::from(u.lines);
                let text = std::str::from_utf8(&u.body).unwrap().to_owned();
                assert_eq!(text.lines().count(), u.lines as usize);
                let s = u.sample.as_ref().expect("every unit sampled");
                assert!(text.starts_with(&format!("{},", s.measurement)));
                lines.extend(text.lines().map(str::to_owned));
                pool.recycle(u.body);
                assert_eq!(pool.idle(), 1, "the buffer goes back to the pool");
                assert!(gen.pool.take().capacity() > 0);
            }
            assert!(rendered > 0);
        }
        lines.sort();
        lines
    }

    #[test]
    fn same_lines_whatever_the_layout_and_thread_count() {
        // 7 devices x 2 measurements x 6 rounds = 84 lines.
        let a = all_lines(Layout::Batch(10), 1, 84);
        assert_eq!(a.len(), 84);
        assert_eq!(a, all_lines(Layout::Batch(5000), 3, 84));
        assert_eq!(a, all_lines(Layout::Message(6), 1, 84));
        assert_eq!(a, all_lines(Layout::Message(3), 2, 84));
    }

    #[test]
    fn the_limit_is_exact_across_generators() {
        for generators in 1..5 {
            let mut total = 0;
            for g in 0..generators {
                let mut gen =
                    Generator::new(&cfg(Layout::Batch(7), Some(1001)), g, generators, Pool::default());
                while let Some(u) = gen.next_unit() {
                    total += u64::from(u.lines);
                }
            }
            assert_eq!(total, 1001, "{generators} generators");
        }
    }

    #[test]
    fn messages_hold_one_device_and_measurement() {
        let mut gen = Generator::new(&cfg(Layout::Message(4), Some(200)), 0, 1, Pool::default());
        while let Some(u) = gen.next_unit() {
            let text = std::str::from_utf8(&u.body).unwrap();
            let m = SchemaKind::Iot.measurements()[u.measurement];
            let prefix = format!("{m},name=truck_{},", u.device);
            assert!(text.lines().all(|l| l.starts_with(&prefix)), "{text}");
            assert_eq!(u.per_measurement[u.measurement], u.lines);
        }
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read as _;
        let mut c = cfg(Layout::Batch(50), Some(50));
        let mut plain = Generator::new(&c, 0, 1, Pool::default());
        c.gzip = true;
        let mut zipped = Generator::new(&c, 0, 1, Pool::default());
        let (p, z) = (plain.next_unit().unwrap(), zipped.next_unit().unwrap());
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&z.body[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, p.body.to_vec());
        assert_eq!(z.raw_bytes as usize, out.len());
    }

    #[test]
    fn sample_parses_the_first_line() {
        let s = Sample::from_line(b"readings,name=truck_1,fleet=East latitude=1.5,longitude=2 10\n").unwrap();
        assert_eq!(s.measurement, "readings");
        assert_eq!(s.tags, vec![("name".into(), "truck_1".into()), ("fleet".into(), "East".into())]);
        assert_eq!((s.field.as_str(), s.value.as_str(), s.ts), ("latitude", "1.5", 10));
    }
}
