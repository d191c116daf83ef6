//! Timestamp precision: the unit of the timestamps in a write request.

use std::fmt;
use std::str::FromStr;

/// The unit of the timestamps in a body (the `precision` query parameter).
/// [`Parser::with_precision`](crate::Parser::with_precision) converts every
/// timestamp to nanoseconds with it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    #[default]
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
    /// InfluxDB 1.x only (`m`).
    Minutes,
    /// InfluxDB 1.x only (`h`).
    Hours,
}

impl Precision {
    /// Nanoseconds in one unit.
    pub const fn nanos_per_unit(self) -> i64 {
        match self {
            Precision::Nanoseconds => 1,
            Precision::Microseconds => 1_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Seconds => 1_000_000_000,
            Precision::Minutes => 60_000_000_000,
            Precision::Hours => 3_600_000_000_000,
        }
    }

    /// `ts` in nanoseconds, or `None` if that does not fit in an `i64` (about
    /// years 1677..2262).
    pub const fn to_nanos(self, ts: i64) -> Option<i64> {
        ts.checked_mul(self.nanos_per_unit())
    }

    /// The InfluxDB 2.x name (`ns`, `us`, `ms`, `s`), or 1.x for minutes and hours
    /// (`m`, `h`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Precision::Nanoseconds => "ns",
            Precision::Microseconds => "us",
            Precision::Milliseconds => "ms",
            Precision::Seconds => "s",
            Precision::Minutes => "m",
            Precision::Hours => "h",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `precision` value that is not one of InfluxDB's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown precision {value:?}: expected one of ns, us, ms, s (or 1.x n, u, µ, m, h)")]
pub struct UnknownPrecision {
    pub value: String,
}

impl FromStr for Precision {
    type Err = UnknownPrecision;

    /// Accepts the 2.x names `ns`, `us`, `ms`, `s` and the 1.x names `n`, `u`, `µ`,
    /// `ms`, `s`, `m`, `h` (and `µs`, with either micro sign). Case-sensitive, as
    /// in InfluxDB.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "ns" | "n" => Precision::Nanoseconds,
            // U+00B5 MICRO SIGN and U+03BC GREEK SMALL LETTER MU look the same.
            "us" | "u" | "µ" | "µs" | "μ" | "μs" => Precision::Microseconds,
            "ms" => Precision::Milliseconds,
            "s" => Precision::Seconds,
            "m" => Precision::Minutes,
            "h" => Precision::Hours,
            _ => return Err(UnknownPrecision { value: s.to_owned() }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v1_and_v2_names() {
        let cases = [
            ("ns", Precision::Nanoseconds),
            ("n", Precision::Nanoseconds),
            ("us", Precision::Microseconds),
            ("u", Precision::Microseconds),
            ("µ", Precision::Microseconds),
            ("μs", Precision::Microseconds),
            ("ms", Precision::Milliseconds),
            ("s", Precision::Seconds),
            ("m", Precision::Minutes),
            ("h", Precision::Hours),
        ];
        for (s, p) in cases {
            assert_eq!(s.parse::<Precision>(), Ok(p), "{s}");
        }
        for p in [
            Precision::Nanoseconds,
            Precision::Microseconds,
            Precision::Milliseconds,
            Precision::Seconds,
            Precision::Minutes,
            Precision::Hours,
        ] {
            assert_eq!(p.to_string().parse::<Precision>(), Ok(p));
        }
        for bad in ["", "NS", "sec", "1s", "mss"] {
            let err = bad.parse::<Precision>().unwrap_err();
            assert_eq!(err.value, bad);
        }
    }

    #[test]
    fn to_nanos_checks_overflow() {
        assert_eq!(Precision::Seconds.to_nanos(1), Some(1_000_000_000));
        assert_eq!(Precision::Milliseconds.to_nanos(-5), Some(-5_000_000));
        assert_eq!(Precision::Nanoseconds.to_nanos(i64::MIN), Some(i64::MIN));
        assert_eq!(Precision::Seconds.to_nanos(9_223_372_036), Some(9_223_372_036_000_000_000));
        assert_eq!(Precision::Seconds.to_nanos(9_223_372_037), None);
        assert_eq!(Precision::Hours.to_nanos(i64::MIN / 2), None);
    }
}
