//! Human-readable units in the config: sizes (`64MiB`) and durations (`10s`, `off`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A size in bytes, written `64MiB`, `512KiB`, `25MB`, `1GiB` or a plain number of bytes.
/// Binary units (`KiB`, `MiB`, `GiB`, `TiB`) are powers of 1024, decimal ones (`KB`, `MB`,
/// `GB`, `TB`) powers of 1000; units are case-insensitive and may follow a space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const fn kib(n: u64) -> ByteSize {
        ByteSize(n << 10)
    }

    pub const fn mib(n: u64) -> ByteSize {
        ByteSize(n << 20)
    }

    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// The size as a `usize`, saturating (sizes past the address space are unusable anyway).
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

/// A size that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {value:?}: expected a number of bytes with an optional unit (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB), e.g. \"64MiB\"")]
pub struct BadSize {
    pub value: String,
}

impl FromStr for ByteSize {
    type Err = BadSize;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadSize { value: s.to_owned() };
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        if num.is_empty() {
            return Err(bad());
        }
        let n: u64 = num.parse().map_err(|_| bad())?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kib" | "k" => 1 << 10,
            "mib" | "m" => 1 << 20,
            "gib" | "g" => 1 << 30,
            "tib" | "t" => 1 << 40,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            _ => return Err(bad()),
        };
        n.checked_mul(mult).map(ByteSize).ok_or_else(bad)
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides the size exactly: `64MiB`, `1536KiB`, `100B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] =
            [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        for (m, name) in UNITS {
            // `m` is a power of two: a multiple of it has no low bits set.
            if self.0 >= m && self.0 & (m - 1) == 0 {
                return write!(f, "{}{name}", self.0 / m);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"64MiB\" or a number of bytes")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v).map(ByteSize).map_err(|_| E::custom("a size cannot be negative"))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration, written the `humantime` way: `10s`, `250ms`, `1h 30m`, `7d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn secs(n: u64) -> HumanDuration {
        HumanDuration(Duration::from_secs(n))
    }

    pub const fn millis(n: u64) -> HumanDuration {
        HumanDuration(Duration::from_millis(n))
    }

    pub const fn get(self) -> Duration {
        self.0
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(HumanDuration).map_err(de::Error::custom)
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}): expected e.g. \"10s\", \"250ms\", \"1h 30m\""))
}

/// A duration that can be switched off: `off` (or `none`, or empty) means no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct OptDuration(pub Option<Duration>);

impl OptDuration {
    pub const OFF: OptDuration = OptDuration(None);

    pub const fn get(self) -> Option<Duration> {
        self.0
    }
}

impl fmt::Display for OptDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("off"),
            Some(d) => humantime::format_duration(d).fmt(f),
        }
    }
}

impl Serialize for OptDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for OptDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "off" | "none" => Ok(OptDuration(None)),
            _ => parse_duration(&s).map(|d| OptDuration(Some(d))).map_err(de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        let cases = [
            ("64MiB", 64 << 20),
            ("64 mib", 64 << 20),
            ("512KiB", 512 << 10),
            ("1GiB", 1 << 30),
            ("25MB", 25_000_000),
            ("1000", 1000),
            ("7B", 7),
            ("2k", 2048),
        ];
        for (s, want) in cases {
            assert_eq!(s.parse::<ByteSize>(), Ok(ByteSize(want)), "{s}");
        }
        for bad in ["", "MiB", "-1", "1.5MiB", "12 parsecs", "99999999999999TiB"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad:?} should not parse");
        }
        assert_eq!(ByteSize::mib(64).to_string(), "64MiB");
        assert_eq!(ByteSize(1536 << 10).to_string(), "1536KiB");
        assert_eq!(ByteSize(100).to_string(), "100B");
        assert_eq!(ByteSize(0).to_string(), "0B");
        for n in [0, 1, 1023, 1024, 3 << 30, 12_345_678] {
            assert_eq!(ByteSize(n).to_string().parse::<ByteSize>(), Ok(ByteSize(n)));
        }
    }

    #[test]
    fn durations_parse_and_round_trip() {
        #[derive(Deserialize, Serialize)]
        struct T {
            d: HumanDuration,
            o: OptDuration,
        }
        let t: T = toml::from_str("d = \"1m 30s\"\no = \"off\"").unwrap();
        assert_eq!(t.d.get(), Duration::from_secs(90));
        assert_eq!(t.o.get(), None);
        let t: T = toml::from_str("d = \"250ms\"\no = \"7d\"").unwrap();
        assert_eq!(t.d.get(), Duration::from_millis(250));
        assert_eq!(t.o.get(), Some(Duration::from_secs(7 * 86_400)));
        let back: T = toml::from_str(&toml::to_string(&t).unwrap()).unwrap();
        assert_eq!(back.d, t.d);
        assert_eq!(back.o, t.o);
        let err = toml::from_str::<T>("d = \"ten seconds\"\no = \"off\"").err().unwrap();
        assert!(err.to_string().contains("invalid duration"), "{err}");
    }
}
