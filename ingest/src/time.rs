//! Time for the write paths: RFC 3339 timestamps (`2024-05-01T12:00:00.5Z`,
//! `2024-05-01T14:00:00+02:00`) to nanoseconds since the Unix epoch, for the JSON write format;
//! and [`ArrivalClock`], the server time given to MQTT messages that carry none.
//!
//! The RFC 3339 parser is hand-written because `humantime` accepts only `Z` offsets and the
//! time crates are heavy for one function; the grammar is RFC 3339 section 5.6, with `t`/`z`
//! and a space separator accepted as the RFC's note allows.

use std::sync::atomic::{AtomicI64, Ordering};

/// Server times for messages without a timestamp of their own: the wall clock, except that
/// no time is ever handed out twice and none is earlier than one handed out before.
///
/// Why: a point's key is (series, time) and a second write of the key replaces the first.
/// A device without a clock publishing back to back sends messages that are drained into one
/// batch; one wall-clock reading per batch stamped them all alike and kept the last of each
/// series (50 acknowledged, 6 stored). One reading per message is not enough either: a
/// coarse or stepped-back wall clock repeats readings. So every message gets its own time,
/// strictly after every earlier one from this clock (one clock per `Broker`: all connections
/// of a device, its reconnects, the bridge and wills share it, so none of them collide).
/// When the wall clock steps back, times keep counting up from the last one (1 ns per
/// message) until the wall clock passes it again: late by at most the step, never a repeat.
///
/// Cost: one compare-and-swap per batch ([`ArrivalClock::reserve`] hands out a run of
/// times), no allocation and no per-series state.
#[derive(Debug)]
pub struct ArrivalClock {
    /// The last time handed out, ns since the epoch.
    last: AtomicI64,
}

impl Default for ArrivalClock {
    fn default() -> ArrivalClock {
        ArrivalClock { last: AtomicI64::new(i64::MIN) }
    }
}

impl ArrivalClock {
    /// Reserves `n` consecutive nanoseconds for `n` messages read at wall-clock time
    /// `wall_ns`: returns the first, `t`; the messages get `t`, `t + 1`, ... `t + n - 1`.
    /// `t >= wall_ns`, and `t` is after every time reserved before.
    pub fn reserve(&self, wall_ns: i64, n: usize) -> i64 {
        let span = i64::try_from(n.max(1)).unwrap_or(i64::MAX) - 1;
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let first = wall_ns.max(last.saturating_add(1));
            match self.last.compare_exchange_weak(
                last,
                first.saturating_add(span),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return first,
                Err(now) => last = now,
            }
        }
    }
}

/// A timestamp that is not RFC 3339 or does not fit in `i64` nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RFC 3339 timestamp {value:?}: {reason}")]
pub struct BadTime {
    pub value: String,
    pub reason: &'static str,
}

/// Parses `s` to nanoseconds since 1970-01-01T00:00:00Z.
///
/// Not jiff's `Timestamp` parser (jiff is in the tree for `tz()`): it gives other answers on
/// inputs we take. It refuses more than nine fractional digits, which InfluxDB clients send and
/// this parser truncates to nanoseconds, reads a leap second `:60` as `:59` where this one
/// carries it into the next minute, and takes `,` as a decimal separator, which RFC 3339 does
/// not.
pub fn parse_rfc3339(s: &str) -> Result<i64, BadTime> {
    let bad = |reason| BadTime { value: s.chars().take(64).collect(), reason };
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = b.get(from..from + len)?;
        digits.iter().try_fold(0i64, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0')))
    };
    let expect = |at: usize, chars: &[u8]| b.get(at).is_some_and(|c| chars.contains(c));
    let year = num(0, 4).ok_or_else(|| bad("expected a four-digit year"))?;
    if !expect(4, b"-") || !expect(7, b"-") {
        return Err(bad("expected YYYY-MM-DD"));
    }
    let month = num(5, 2).ok_or_else(|| bad("expected a two-digit month"))?;
    let day = num(8, 2).ok_or_else(|| bad("expected a two-digit day"))?;
    if !expect(10, b"Tt ") {
        return Err(bad("expected 'T' between date and time"));
    }
    let hour = num(11, 2).ok_or_else(|| bad("expected a two-digit hour"))?;
    let minute = if expect(13, b":") { num(14, 2) } else { None }.ok_or_else(|| bad("expected :MM"))?;
    let second = if expect(16, b":") { num(17, 2) } else { None }.ok_or_else(|| bad("expected :SS"))?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(bad("no such date"));
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(bad("no such time of day"));
    }
    let mut i = 19;
    let mut nanos = 0i64;
    if expect(i, b".") {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            // Digits past nanoseconds are dropped (truncated, not rounded).
            if i - start < 9 {
                nanos = nanos * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return Err(bad("expected digits after '.'"));
        }
        for _ in digits..9 {
            nanos *= 10;
        }
    }
    let offset_secs = match b.get(i) {
        Some(b'Z' | b'z') => {
            i += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let h = num(i + 1, 2).ok_or_else(|| bad("expected a +HH:MM offset"))?;
            let m = if expect(i + 3, b":") { num(i + 4, 2) } else { None }
                .ok_or_else(|| bad("expected a +HH:MM offset"))?;
            if h > 23 || m > 59 {
                return Err(bad("offset out of range"));
            }
            i += 6;
            let secs = h * 3600 + m * 60;
            if sign == b'+' {
                secs
            } else {
                -secs
            }
        }
        _ => return Err(bad("expected a time zone offset ('Z' or +HH:MM)")),
    };
    if i != b.len() {
        return Err(bad("unexpected text after the time zone"));
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    secs.checked_mul(1_000_000_000)
        .and_then(|ns| ns.checked_add(nanos))
        .ok_or_else(|| bad("outside the representable range (years 1677 to 2262)"))
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reservation starts after the previous one ended, whatever the wall clock does:
    /// the same reading twice, a step back of an hour, a step forward.
    #[test]
    fn arrival_times_never_repeat_or_go_back() {
        let clock = ArrivalClock::default();
        let hour = 3_600_000_000_000;
        let t0 = 1_700_000_000_000_000_000;
        assert_eq!(clock.reserve(t0, 50), t0, "the wall clock when it is ahead");
        assert_eq!(clock.reserve(t0, 3), t0 + 50, "same reading: after the 50 before");
        assert_eq!(clock.reserve(t0 - hour, 1), t0 + 53, "stepped back: keeps counting up");
        assert_eq!(clock.reserve(t0 - hour, 0), t0 + 54, "an empty batch still gets a time");
        assert_eq!(clock.reserve(t0 + hour, 2), t0 + hour, "stepped forward: the wall clock");
        assert_eq!(clock.reserve(t0, 1), t0 + hour + 2);
    }

    /// Threads reserving at once never get overlapping runs.
    #[test]
    fn concurrent_reservations_do_not_overlap() {
        let clock = std::sync::Arc::new(ArrivalClock::default());
        let runs: Vec<Vec<(i64, i64)>> = (0..4)
            .map(|_| {
                let c = clock.clone();
                std::thread::spawn(move || {
                    (0..1000).map(|i| (c.reserve(42, i % 7), (i % 7).max(1) as i64)).collect()
                })
            })
            .map(|h| h.join().unwrap())
            .collect();
        let mut all: Vec<(i64, i64)> = runs.into_iter().flatten().collect();
        all.sort_unstable();
        for w in all.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0, "overlap: {w:?}");
        }
    }

    #[test]
    fn parses_valid_timestamps() {
        let cases = [
            ("1970-01-01T00:00:00Z", 0),
            ("1970-01-01T00:00:01.5Z", 1_500_000_000),
            ("2009-11-10T23:00:00Z", 1_257_894_000_000_000_000),
            ("2009-11-10T23:00:00.123456789Z", 1_257_894_000_123_456_789),
            ("2009-11-10T23:00:00.1234567891234z", 1_257_894_000_123_456_789),
            ("2009-11-11T01:00:00+02:00", 1_257_894_000_000_000_000),
            ("2009-11-10t20:30:00-02:30", 1_257_894_000_000_000_000),
            ("2009-11-10 23:00:00Z", 1_257_894_000_000_000_000),
            ("2024-02-29T00:00:00Z", 1_709_164_800_000_000_000),
            ("1969-12-31T23:59:59Z", -1_000_000_000),
            ("2262-04-11T23:47:16.854775807Z", i64::MAX),
        ];
        for (s, want) in cases {
            assert_eq!(parse_rfc3339(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn rejects_invalid_timestamps() {
        for s in [
            "",
            "2009-11-10",
            "2009-11-10T23:00:00",
            "2009-13-10T23:00:00Z",
            "2023-02-29T00:00:00Z",
            "2009-11-10T24:00:00Z",
            "2009-11-10T23:00:00.Z",
            "2009-11-10T23:00:00+2:00",
            "2009-11-10T23:00:00Zjunk",
            "09-11-10T23:00:00Z",
            "2262-04-11T23:47:16.854775808Z",
            "1000-01-01T00:00:00Z",
            "１９７０-01-01T00:00:00Z",
        ] {
            assert!(parse_rfc3339(s).is_err(), "{s:?} should not parse");
        }
    }
}
