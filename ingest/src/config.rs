//! The ingest part of the configuration: the `[limits]` section (what a client may send, the
//! write-memory budget, per-client rates), the value types with human-readable units every
//! section uses ([`units`]), and [`InvalidConfig`], the error of every section's `validate()`.

use serde::{Deserialize, Serialize};

pub use crate::units::{ByteSize, HumanDuration, OptDuration};

/// A value that parses but makes no sense; names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {key}: {reason}")]
pub struct InvalidConfig {
    pub key: &'static str,
    pub reason: String,
}

/// Limits on what a client may send. Each violation gets a clear 4xx and bumps a counter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body, before and after gzip decoding (413 past it). Default 32 MiB.
    pub max_body_size: ByteSize,
    /// Longest line of line protocol. Default 1 MiB.
    pub max_line_length: ByteSize,
    /// Most tags per point. Default 128 (at most 256).
    pub max_tags_per_point: usize,
    /// Most fields per point. Default 512 (at most 1024).
    pub max_fields_per_point: usize,
    /// Longest measurement, tag key, tag value or field key, in bytes after unescaping.
    /// Default 1024 (at most 4096).
    pub max_name_length: usize,
    /// Longest string field value. Default 64 KiB (at most 1 MiB).
    pub max_string_length: ByteSize,
    /// Refuse points with timestamps further than this ahead of the server clock. Default 1 day
    /// (time-zone mistakes pass; clocks in another century are refused per line).
    pub max_future: OptDuration,
    /// Refuse points with timestamps further than this behind the server clock. Default off.
    pub max_past: OptDuration,
    /// Series per database; points that would create more are refused. Default 10 million.
    pub max_series_per_database: u64,
    /// Field keys per measurement; points that would add more are refused. Default 1024.
    pub max_fields_per_measurement: usize,
    /// Time partitions one write may create that did not exist; points past it are refused.
    /// 0 turns the bound off. Default 100.
    pub max_new_partitions_per_write: usize,
    /// Most bad lines listed in one error response (the count is always complete). Default 100.
    pub max_errors_reported: usize,
    /// Memory that in-flight write requests may hold (bodies, decoded bodies, batches) across
    /// all connections; a request that cannot get its share within `write_memory_wait` is
    /// answered 503 with `Retry-After`. Must be at least 4 x `max_body_size`. Default 256 MiB.
    pub write_memory: ByteSize,
    /// How long a request waits for write memory before 503. Default 1 s.
    pub write_memory_wait: HumanDuration,
    /// Per-client write rate on the write routes, in `client_write_rate_unit` per second; a
    /// client is a token (auth on) or an IP address (auth off). Over it: 429 with
    /// `Retry-After`. 0 turns the limit off. Default 0 (off).
    pub client_write_rate: f64,
    /// What `client_write_rate` counts: `points` (charged once the body is decoded) or
    /// `requests`. Default `points`.
    pub client_write_rate_unit: RateUnit,
    /// Most units a client may spend at once after being idle; 0 means one second's worth of
    /// `client_write_rate`. Default 0.
    pub client_write_burst: f64,
}

/// The unit of `limits.client_write_rate`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateUnit {
    #[default]
    Points,
    Requests,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_body_size: ByteSize::mib(32),
            max_line_length: ByteSize::mib(1),
            max_tags_per_point: 128,
            max_fields_per_point: 512,
            max_name_length: 1024,
            max_string_length: ByteSize::kib(64),
            max_future: OptDuration(Some(std::time::Duration::from_secs(86_400))),
            max_past: OptDuration::OFF,
            max_series_per_database: 10_000_000,
            max_fields_per_measurement: 1024,
            max_new_partitions_per_write: 100,
            max_errors_reported: 100,
            write_memory: ByteSize::mib(256),
            write_memory_wait: HumanDuration::secs(1),
            client_write_rate: 0.0,
            client_write_rate_unit: RateUnit::Points,
            client_write_burst: 0.0,
        }
    }
}

impl LimitsConfig {
    /// Checks values that parse but make no sense; the error names the key.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        use strata_engine::batch::{MAX_FIELDS, MAX_NAME_LEN, MAX_STRING_LEN, MAX_TAGS};
        let bad = |key: &'static str, reason: String| Err(InvalidConfig { key, reason });
        let l = self;
        if l.max_body_size < ByteSize::kib(1) {
            return bad("limits.max_body_size", "must be at least 1KiB".into());
        }
        // A line longer than the body limit is refused by the body limit first; no need to
        // force operators to lower both.
        if l.max_line_length < ByteSize(64) {
            return bad("limits.max_line_length", "must be at least 64B".into());
        }
        let ranges: [(&'static str, usize, usize); 5] = [
            ("limits.max_tags_per_point", l.max_tags_per_point, MAX_TAGS),
            ("limits.max_fields_per_point", l.max_fields_per_point, MAX_FIELDS),
            ("limits.max_fields_per_measurement", l.max_fields_per_measurement, 1_000_000),
            ("limits.max_name_length", l.max_name_length, MAX_NAME_LEN),
            ("limits.max_errors_reported", l.max_errors_reported, 10_000),
        ];
        for (key, v, max) in ranges {
            if v == 0 || v > max {
                return bad(key, format!("{v} is not between 1 and {max}"));
            }
        }
        if l.max_string_length.bytes() == 0 || l.max_string_length.as_usize() > MAX_STRING_LEN {
            return bad(
                "limits.max_string_length",
                format!("must be between 1B and {}", ByteSize(MAX_STRING_LEN as u64)),
            );
        }
        if l.max_series_per_database == 0 {
            return bad("limits.max_series_per_database", "must be at least 1".into());
        }
        let min_memory = l.max_body_size.bytes().saturating_mul(4);
        if l.write_memory.bytes() < min_memory {
            return bad(
                "limits.write_memory",
                format!(
                    "{} is less than 4 x limits.max_body_size ({}): a request of the largest size could never be admitted",
                    l.write_memory,
                    ByteSize(min_memory)
                ),
            );
        }
        if !(l.client_write_rate.is_finite() && l.client_write_rate >= 0.0) {
            return bad("limits.client_write_rate", "must be a number >= 0 (0 turns the limit off)".into());
        }
        if !(l.client_write_burst.is_finite() && l.client_write_burst >= 0.0) {
            return bad("limits.client_write_burst", "must be a number >= 0".into());
        }
        if l.write_memory.bytes() >> 10 > u64::from(u32::MAX) {
            return bad("limits.write_memory", "must be less than 4TiB".into());
        }
        Ok(())
    }
}
