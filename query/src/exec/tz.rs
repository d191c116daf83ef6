//! `tz('Zone/Name')` and `GROUP BY time()` windows.
//!
//! Zones come from the `jiff` crate: it reads the operating system's zone database
//! (`/usr/share/zoneinfo`, kept current by the OS) and falls back to the IANA database
//! compiled into the binary on hosts without one, and it evaluates the POSIX rule at the end
//! of each zone file, so times after the last listed transition (2037) get the right offset.
//! (An earlier hand-written TZif reader here did neither.)
//!
//! A zone does two things, as in InfluxDB 1.x:
//! - result times print as RFC 3339 with the zone's offset (`2024-07-01T02:00:00+02:00`);
//! - `GROUP BY time()` windows are aligned in local time: `time(1d)` buckets start at local
//!   midnight, so the day of a DST change is 23 or 25 hours long. The rule is InfluxDB's
//!   (`Window` in its query engine): truncate `t + zone offset at t`, then move the start (and
//!   the end) by the offset change between `t` and the window edge when that change is
//!   smaller than the interval. Intervals shorter than the change (`time(1h)` across a one-hour
//!   change) are therefore plain UTC windows. The `GROUP BY time(i, offset)` offset applies
//!   after the zone alignment.

use jiff::Timestamp;

use crate::result::Value;
use crate::time::{write_time, write_time_offset};

const NS: i64 = 1_000_000_000;

/// A time zone, or UTC.
#[derive(Debug, Clone)]
pub struct TimeZone {
    /// `None` for UTC (no lookups on the hot path).
    zone: Option<jiff::tz::TimeZone>,
}

impl TimeZone {
    /// UTC.
    pub fn utc() -> TimeZone {
        TimeZone { zone: None }
    }

    /// Loads `name` (`UTC`, `Europe/Berlin`, ...), as InfluxDB accepts it (IANA names,
    /// case-sensitive). `None` if the zone database does not know it.
    pub fn parse(name: &str) -> Option<TimeZone> {
        if name.is_empty() || name == "UTC" || name == "Etc/UTC" {
            return Some(TimeZone::utc());
        }
        // Names are looked up as paths below the zone directory; refuse anything that could
        // escape it before asking (jiff checks too, this keeps the rule visible here).
        if name.starts_with('/')
            || name.split('/').any(|c| c == ".." || c == "." || c.is_empty())
            || name.len() > 64
        {
            return None;
        }
        let zone = jiff::tz::TimeZone::get(name).ok()?;
        Some(TimeZone { zone: Some(zone) })
    }

    /// True for UTC.
    pub fn is_utc(&self) -> bool {
        self.zone.is_none()
    }

    /// The UTC offset at `ns`, in nanoseconds.
    #[inline]
    pub fn offset_ns(&self, ns: i64) -> i64 {
        match &self.zone {
            None => 0,
            Some(z) => {
                // i64 nanoseconds (1677..2262) always fit jiff's range.
                let ts = Timestamp::from_second(ns.div_euclid(NS)).unwrap_or(Timestamp::UNIX_EPOCH);
                z.to_offset(ts).seconds() as i64 * NS
            }
        }
    }

    /// RFC 3339 with this zone's offset (`Z` for UTC).
    pub fn format(&self, ns: i64) -> String {
        let mut s = String::with_capacity(32);
        match self.zoned(ns) {
            Value::ZonedTime { ns, offset_secs } => write_time_offset(&mut s, ns, offset_secs),
            _ => write_time(&mut s, ns),
        }
        s
    }

    /// A result time in this zone: [`Value::ZonedTime`] (so `epoch=` still prints integers), or
    /// [`Value::Time`] for UTC.
    pub fn zoned(&self, ns: i64) -> Value {
        if self.zone.is_none() {
            return Value::Time(ns);
        }
        // Offsets are whole seconds (jiff's, from the zone database), well inside i32.
        let offset_secs = (self.offset_ns(ns) / NS) as i32;
        Value::ZonedTime { ns, offset_secs }
    }
}

/// The windows of `GROUP BY time(interval, offset)` in a zone.
#[derive(Debug, Clone)]
pub struct Windows {
    interval: i64,
    offset: i64,
    tz: TimeZone,
}

fn clamp(x: i128) -> i64 {
    x.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

impl Windows {
    /// `interval` > 0 (the parser guarantees it).
    pub fn new(interval: i64, offset: i64, tz: TimeZone) -> Windows {
        debug_assert!(interval > 0);
        Windows { interval, offset, tz }
    }

    pub fn interval(&self) -> i64 {
        self.interval
    }

    /// `[start, end)` of the window holding `t`.
    #[inline]
    pub fn bounds(&self, t: i64) -> (i64, i64) {
        if self.tz.is_utc() {
            // i64 arithmetic unless near the ends of time (i128 division is several times
            // slower and this runs once per run of points).
            let (d, off) = (self.interval, self.offset);
            if let Some(x) = t.checked_sub(off) {
                if let Some(start) = x.checked_sub(x.rem_euclid(d)).and_then(|s| s.checked_add(off)) {
                    if let Some(end) = start.checked_add(d) {
                        return (start, end);
                    }
                }
            }
        }
        let d = self.interval as i128;
        let off = self.offset as i128;
        let t = t as i128 - off;
        if self.tz.is_utc() {
            let start = t - t.rem_euclid(d);
            return (clamp(start + off), clamp(start + d + off));
        }
        let at = |x: i128| self.tz.offset_ns(clamp(x)) as i128;
        let zone = at(t);
        let dt = (t + zone).rem_euclid(d);
        let mut start = t - dt;
        // `start` was found with the offset at `t`; if the offset changed in between (a DST
        // change inside the window), local midnight is that much earlier or later.
        let o = zone - at(start);
        if o != 0 && o.abs() < d {
            start += o;
        }
        let mut end = t + (d - dt);
        let end_zone = at(end);
        let o = zone - end_zone;
        if o != 0 && o.abs() < d {
            // Clocks went back inside the window: it is longer. Clocks went forward: it is
            // shorter, unless moving the end back crosses the change again.
            if o > 0 || at(end + o) == end_zone {
                end += o;
            }
        }
        (clamp(start + off), clamp(end + off))
    }

    /// Start of the window holding `t`.
    #[inline]
    pub fn start(&self, t: i64) -> i64 {
        self.bounds(t).0
    }

    /// The start of the window after the one starting at `start` (`None` past the end of time).
    pub fn next(&self, start: i64) -> Option<i64> {
        let (_, end) = self.bounds(start);
        if end <= start || end == i64::MAX {
            return None;
        }
        let next = self.start(end);
        Some(if next > start { next } else { end })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3600 * NS;

    fn ts(s: &str) -> i64 {
        crate::time::parse_time(s).unwrap()
    }

    #[test]
    fn utc_and_paris() {
        let utc = TimeZone::parse("UTC").unwrap();
        assert_eq!(utc.format(0), "1970-01-01T00:00:00Z");
        let paris = TimeZone::parse("Europe/Paris").unwrap();
        // 2024-07-01T00:00:00Z is summer time (+02:00), 2024-01-01 winter (+01:00).
        assert_eq!(paris.format(1_719_792_000_000_000_000), "2024-07-01T02:00:00+02:00");
        assert_eq!(paris.format(1_704_067_200_000_000_000), "2024-01-01T01:00:00+01:00");
        // After the last transition listed in the zone files: the POSIX rule applies.
        assert_eq!(paris.format(ts("2040-07-01T00:00:00Z")), "2040-07-01T02:00:00+02:00");
        assert_eq!(TimeZone::parse("America/St_Johns").unwrap().format(0), "1969-12-31T20:30:00-03:30");
        assert!(TimeZone::parse("Nowhere/Nothing").is_none());
        assert!(TimeZone::parse("../../etc/passwd").is_none());
        assert!(TimeZone::parse("Europe/./Berlin").is_none());
    }

    #[test]
    fn days_start_at_local_midnight_across_dst() {
        let w = Windows::new(24 * H, 0, TimeZone::parse("Europe/Berlin").unwrap());
        // Spring forward on 2024-03-31 (02:00 -> 03:00 local): a 23-hour day.
        assert_eq!(
            w.bounds(ts("2024-03-31T12:00:00Z")),
            (ts("2024-03-30T23:00:00Z"), ts("2024-03-31T22:00:00Z"))
        );
        assert_eq!(w.start(ts("2024-03-30T23:00:00Z")), ts("2024-03-30T23:00:00Z"));
        assert_eq!(w.start(ts("2024-03-30T22:59:59Z")), ts("2024-03-29T23:00:00Z"));
        // Fall back on 2024-10-27 (03:00 -> 02:00 local): a 25-hour day.
        assert_eq!(
            w.bounds(ts("2024-10-27T12:00:00Z")),
            (ts("2024-10-26T22:00:00Z"), ts("2024-10-27T23:00:00Z"))
        );
        // Walking the windows gives local midnights.
        let mut b = w.start(ts("2024-03-29T12:00:00Z"));
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(w.tz.format(b));
            b = w.next(b).unwrap();
        }
        assert_eq!(
            got,
            [
                "2024-03-29T00:00:00+01:00",
                "2024-03-30T00:00:00+01:00",
                "2024-03-31T00:00:00+01:00",
                "2024-04-01T00:00:00+02:00"
            ]
        );
        // An offset shifts the local-midnight windows: 06:00 local.
        let w6 = Windows::new(24 * H, 6 * H, TimeZone::parse("Europe/Berlin").unwrap());
        assert_eq!(w6.start(ts("2024-07-01T12:00:00Z")), ts("2024-07-01T04:00:00Z"));
    }

    #[test]
    fn hours_across_dst_are_utc_hours() {
        let w = Windows::new(H, 0, TimeZone::parse("Europe/Berlin").unwrap());
        let t = ts("2024-03-31T00:30:00Z");
        assert_eq!(w.bounds(t), (ts("2024-03-31T00:00:00Z"), ts("2024-03-31T01:00:00Z")));
        assert_eq!(w.next(ts("2024-03-31T00:00:00Z")), Some(ts("2024-03-31T01:00:00Z")));
        // A half-hour zone aligns hours to :30 UTC.
        let w = Windows::new(H, 0, TimeZone::parse("Asia/Kolkata").unwrap());
        assert_eq!(w.start(ts("2024-01-01T10:45:00Z")), ts("2024-01-01T10:30:00Z"));
    }

    #[test]
    fn utc_windows_match_plain_truncation() {
        let w = Windows::new(10 * NS, 3 * NS, TimeZone::utc());
        assert_eq!(w.bounds(25 * NS), (23 * NS, 33 * NS));
        assert_eq!(w.bounds(-1), (-7 * NS, 3 * NS));
        assert_eq!(w.next(23 * NS), Some(33 * NS));
        let w = Windows::new(10 * NS, 0, TimeZone::utc());
        // The window of the earliest time starts before i64::MIN: clamped, no overflow.
        assert_eq!(w.start(i64::MIN), i64::MIN);
        assert_eq!(w.bounds(i64::MAX).1, i64::MAX);
    }
}
