//! `tz('Zone/Name')`: UTC offsets from the operating system's zone database
//! (`/usr/share/zoneinfo`, TZif files), so result times print as RFC 3339 with the zone's
//! offset (`2024-07-01T02:00:00+02:00`), as InfluxDB does.
//!
//! Why not the `chrono-tz` crate: it compiles the whole database into the binary and adds a
//! large build step; every Linux system we run on ships the TZif files, which are a small,
//! stable format (RFC 8536). Times after the last transition in the file keep the last
//! offset (the files' POSIX footer rule is not evaluated); the files shipped today list
//! transitions up to 2037.

use std::path::Path;

use crate::ast::format_time;

/// A time zone: transition times (seconds) and the UTC offset (seconds) from each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeZone {
    transitions: Vec<(i64, i32)>,
    /// Offset before the first transition.
    initial: i32,
}

impl TimeZone {
    /// Loads `name` (`UTC`, `Europe/Paris`, ...). `None` if unknown.
    pub fn parse(name: &str) -> Option<TimeZone> {
        if name.eq_ignore_ascii_case("utc") || name == "Etc/UTC" || name.is_empty() {
            return Some(TimeZone { transitions: Vec::new(), initial: 0 });
        }
        // Names are paths below the zone directory: refuse anything that could escape it.
        if name.starts_with('/') || name.split('/').any(|c| c == ".." || c.is_empty()) || name.len() > 64 {
            return None;
        }
        let bytes = std::fs::read(Path::new("/usr/share/zoneinfo").join(name)).ok()?;
        parse_tzif(&bytes)
    }

    /// The UTC offset in seconds at `ns`.
    pub fn offset_at(&self, ns: i64) -> i32 {
        let s = ns.div_euclid(1_000_000_000);
        match self.transitions.partition_point(|(t, _)| *t <= s) {
            0 => self.initial,
            i => self.transitions[i - 1].1,
        }
    }

    /// RFC 3339 with this zone's offset (`Z` when the offset is 0).
    pub fn format(&self, ns: i64) -> String {
        let off = self.offset_at(ns);
        let local = ns.saturating_add(off as i64 * 1_000_000_000);
        let mut s = format_time(local);
        if off != 0 {
            s.pop();
            let sign = if off < 0 { '-' } else { '+' };
            let a = off.unsigned_abs();
            s.push_str(&format!("{sign}{:02}:{:02}", a / 3600, a % 3600 / 60));
        }
        s
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses a TZif file (versions 1 to 4; the 64-bit block when present).
fn parse_tzif(b: &[u8]) -> Option<TimeZone> {
    if b.get(0..4)? != b"TZif" {
        return None;
    }
    let version = *b.get(4)?;
    let counts = |at: usize| -> Option<[usize; 6]> {
        let mut c = [0usize; 6];
        for (i, x) in c.iter_mut().enumerate() {
            *x = be32(b, at + 20 + 4 * i)? as usize;
        }
        Some(c)
    };
    // [isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt]
    let c1 = counts(0)?;
    let (mut at, time_size, c) = if version >= b'2' {
        let v1_len = c1[3] * 5 + c1[4] * 6 + c1[5] + c1[2] * 8 + c1[1] + c1[0];
        let second = 44 + v1_len;
        (second + 44, 8, counts(second)?)
    } else {
        (44, 4, c1)
    };
    let [_, _, _, timecnt, typecnt, _] = c;
    let mut times = Vec::with_capacity(timecnt);
    for i in 0..timecnt {
        let p = at + i * time_size;
        let t = if time_size == 8 {
            i64::from_be_bytes(b.get(p..p + 8)?.try_into().ok()?)
        } else {
            be32(b, p)? as i32 as i64
        };
        times.push(t);
    }
    at += timecnt * time_size;
    let idx = b.get(at..at + timecnt)?.to_vec();
    at += timecnt;
    let mut types = Vec::with_capacity(typecnt);
    for i in 0..typecnt {
        let p = at + i * 6;
        let off = be32(b, p)? as i32;
        let dst = *b.get(p + 4)? != 0;
        types.push((off, dst));
    }
    if types.is_empty() {
        return None;
    }
    let initial = types.iter().find(|(_, dst)| !dst).unwrap_or(&types[0]).0;
    let transitions = times
        .into_iter()
        .zip(idx)
        .map(|(t, i)| types.get(i as usize).map(|ty| (t, ty.0)))
        .collect::<Option<Vec<_>>>()?;
    Some(TimeZone { transitions, initial })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_and_paris() {
        let utc = TimeZone::parse("UTC").unwrap();
        assert_eq!(utc.format(0), "1970-01-01T00:00:00Z");
        let Some(paris) = TimeZone::parse("Europe/Paris") else {
            eprintln!("no zoneinfo on this system");
            return;
        };
        // 2024-07-01T00:00:00Z is summer time (+02:00), 2024-01-01 winter (+01:00).
        assert_eq!(paris.format(1_719_792_000_000_000_000), "2024-07-01T02:00:00+02:00");
        assert_eq!(paris.format(1_704_067_200_000_000_000), "2024-01-01T01:00:00+01:00");
        assert!(TimeZone::parse("Nowhere/Nothing").is_none());
        assert!(TimeZone::parse("../../etc/passwd").is_none());
    }
}
