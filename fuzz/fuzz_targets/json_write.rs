//! JSON write decoder (`POST /api/v1/json`, `strata_ingest::json`): arbitrary bytes
//! must never panic, and every point the decoder saw is either in the batch or in the error
//! count — none lost, none counted twice. Run with `cargo fuzz run json_write` in `fuzz/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_lineproto::Precision;
use strata_ingest::config::LimitsConfig;
use strata_ingest::{json, PointLimits};

fuzz_target!(|data: &[u8]| {
    // Small limits so the limit paths are reached with short inputs too.
    let config = LimitsConfig {
        max_tags_per_point: 4,
        max_fields_per_point: 4,
        max_name_length: 16,
        ..LimitsConfig::default()
    };
    let limits = PointLimits::from_config(&config);
    let precision = match data.first().map(|b| b % 4) {
        Some(0) => Precision::Seconds,
        Some(1) => Precision::Milliseconds,
        Some(2) => Precision::Microseconds,
        _ => Precision::Nanoseconds,
    };
    if let Ok(decoded) = json::decode(data, precision, 1_700_000_000_000_000_000, &limits) {
        assert_eq!(
            decoded.batch.len_points() + decoded.errors.total,
            decoded.seen,
            "every point is stored or refused"
        );
        assert!(decoded.errors.items.len() <= decoded.errors.total);
    }
});
