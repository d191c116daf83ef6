//! Durations and timestamps as InfluxQL writes them: duration literals (`1h30m`), the time
//! strings a query may compare with `time`, and the RFC 3339 form results print.
//!
//! All values are `i64` nanoseconds (timestamps since the Unix epoch, UTC).

use std::fmt::Write as _;

pub const NANOS_PER_MICRO: i64 = 1_000;
pub const NANOS_PER_MILLI: i64 = 1_000_000;
pub const NANOS_PER_SECOND: i64 = 1_000_000_000;
pub const NANOS_PER_MINUTE: i64 = 60 * NANOS_PER_SECOND;
pub const NANOS_PER_HOUR: i64 = 60 * NANOS_PER_MINUTE;
pub const NANOS_PER_DAY: i64 = 24 * NANOS_PER_HOUR;
pub const NANOS_PER_WEEK: i64 = 7 * NANOS_PER_DAY;

/// Why a duration literal was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration")]
    Invalid,
    #[error("overflowed duration: choose a smaller duration or INF")]
    Overflow,
}

/// Parses an InfluxQL duration: an optional `-`, then one or more
/// `<digits><unit>` groups with units `ns`, `u`/`µ`, `ms`, `s`, `m`, `h`,
/// `d`, `w` (`10s`, `1h30m`, `1700000000000ms`). Returns nanoseconds.
pub fn parse_duration(s: &str) -> Result<i64, DurationError> {
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if body.is_empty() {
        return Err(DurationError::Invalid);
    }
    let mut total: i128 = 0;
    let mut rest = body;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits == rest.len() {
            return Err(DurationError::Invalid);
        }
        // At most 39 digits fit an i128; anything that long overflows anyway.
        if digits > 30 {
            return Err(DurationError::Overflow);
        }
        let n: i128 = rest[..digits].parse().map_err(|_| DurationError::Invalid)?;
        rest = &rest[digits..];
        let (unit, len) = if let Some(r) = rest.strip_prefix("ns") {
            (1, rest.len() - r.len())
        } else if let Some(r) = rest.strip_prefix("ms") {
            (NANOS_PER_MILLI, rest.len() - r.len())
        } else {
            let c = rest.chars().next().ok_or(DurationError::Invalid)?;
            let unit = match c {
                'u' | 'µ' => NANOS_PER_MICRO,
                's' => NANOS_PER_SECOND,
                'm' => NANOS_PER_MINUTE,
                'h' => NANOS_PER_HOUR,
                'd' => NANOS_PER_DAY,
                'w' => NANOS_PER_WEEK,
                _ => return Err(DurationError::Invalid),
            };
            (unit, c.len_utf8())
        };
        rest = &rest[len..];
        total += n * i128::from(unit);
        if total > i128::from(i64::MAX) + 1 {
            return Err(DurationError::Overflow);
        }
    }
    let total = if negative { -total } else { total };
    i64::try_from(total).map_err(|_| DurationError::Overflow)
}

/// Formats nanoseconds as an InfluxQL duration literal using the largest unit
/// that divides it exactly (`90m`, `1500ms`, `0s`), as InfluxQL's
/// `FormatDuration` does. [`parse_duration`] reads it back exactly.
pub fn format_duration(ns: i64) -> String {
    const UNITS: [(i64, &str); 7] = [
        (NANOS_PER_WEEK, "w"),
        (NANOS_PER_DAY, "d"),
        (NANOS_PER_HOUR, "h"),
        (NANOS_PER_MINUTE, "m"),
        (NANOS_PER_SECOND, "s"),
        (NANOS_PER_MILLI, "ms"),
        (NANOS_PER_MICRO, "u"),
    ];
    if ns == 0 {
        return "0s".to_string();
    }
    for (unit, suffix) in UNITS {
        if ns % unit == 0 {
            return format!("{}{suffix}", ns / unit);
        }
    }
    format!("{ns}ns")
}

/// Why a time string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeParseError {
    #[error("invalid time string '{0}'")]
    Invalid(String),
    #[error("time '{0}' is outside the range of nanosecond timestamps (1677-09-21 to 2262-04-11)")]
    OutOfRange(String),
}

fn digits_at(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = b.get(at..at + n)?;
    if !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |acc, d| acc * 10 + u32::from(d - b'0')))
}

/// RFC 3339 of `ns` in the zone `offset_secs` east of UTC (`2024-10-27T02:00:00+01:00`;
/// `Z` for a zero offset), appended to `out`.
pub fn write_time_offset(out: &mut String, ns: i64, offset_secs: i32) {
    if offset_secs == 0 {
        return write_time(out, ns);
    }
    write_time(out, ns.saturating_add(i64::from(offset_secs) * NANOS_PER_SECOND));
    out.pop(); // the `Z`
    let sign = if offset_secs < 0 { '-' } else { '+' };
    let mins = offset_secs.unsigned_abs() / 60;
    let _ = write!(out, "{sign}{:02}:{:02}", mins / 60, mins % 60);
}

/// The date of a day number since 1970-01-01 (Howard Hinnant's `civil_from_days`). Written
/// out rather than asked of jiff because [`write_time`] runs once per result row; the test
/// compares it with jiff over the whole nanosecond range.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses a time string as InfluxQL accepts them, returning nanoseconds
/// since the epoch:
/// - RFC 3339: `2024-01-01T00:00:00Z`, `2024-01-01T00:00:00.123456789Z`,
///   `2024-01-01T02:00:00+02:00`;
/// - `2024-01-01 00:00:00` and `2024-01-01 00:00:00.5` (UTC);
/// - `2024-01-01` (midnight UTC).
///
/// Fractions have 1 to 9 digits; a missing zone means UTC. The grammar is checked here
/// (jiff's parsers accept more forms than InfluxQL does: `T10`, `+0200`, basic format);
/// the calendar (valid days, leap years, offsets) is jiff's.
pub fn parse_time(s: &str) -> Result<i64, TimeParseError> {
    let invalid = || TimeParseError::Invalid(s.to_string());
    let b = s.as_bytes();
    let year = digits_at(b, 0, 4).ok_or_else(invalid)?;
    let month = digits_at(b, 5, 2).ok_or_else(invalid)?;
    let day = digits_at(b, 8, 2).ok_or_else(invalid)?;
    if b[4] != b'-' || b[7] != b'-' {
        return Err(invalid());
    }
    let date = i16::try_from(year)
        .ok()
        .and_then(|y| jiff::civil::Date::new(y, month as i8, day as i8).ok())
        .ok_or_else(invalid)?;
    let (mut hour, mut minute, mut second, mut nanos) = (0u32, 0u32, 0u32, 0u32);
    let mut offset_secs: i32 = 0;
    let mut i = 10;
    if b.len() > 10 {
        if !matches!(b[10], b'T' | b't' | b' ') {
            return Err(invalid());
        }
        hour = digits_at(b, 11, 2).ok_or_else(invalid)?;
        minute = digits_at(b, 14, 2).ok_or_else(invalid)?;
        second = digits_at(b, 17, 2).ok_or_else(invalid)?;
        if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
            return Err(invalid());
        }
        if hour > 23 || minute > 59 || second > 59 {
            return Err(invalid());
        }
        i = 19;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let n = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 || n > 9 {
                return Err(invalid());
            }
            let frac = digits_at(b, i, n).ok_or_else(invalid)?;
            nanos = frac * 10u32.pow(9 - n as u32);
            i += n;
        }
        match b.get(i) {
            None => {}
            Some(b'Z' | b'z') => i += 1,
            Some(&sign @ (b'+' | b'-')) => {
                let oh = digits_at(b, i + 1, 2).ok_or_else(invalid)?;
                let om = digits_at(b, i + 4, 2).ok_or_else(invalid)?;
                if b.get(i + 3) != Some(&b':') || oh > 23 || om > 59 {
                    return Err(invalid());
                }
                let secs = (oh * 3600 + om * 60) as i32;
                offset_secs = if sign == b'+' { secs } else { -secs };
                i += 6;
            }
            Some(_) => return Err(invalid()),
        }
    }
    if i != b.len() {
        return Err(invalid());
    }
    // Every field was range-checked above, so jiff cannot refuse the time of day; the
    // instant can still fall outside i64 nanoseconds.
    let local = date.at(hour as i8, minute as i8, second as i8, nanos as i32);
    let offset = jiff::tz::Offset::from_seconds(offset_secs).map_err(|_| invalid())?;
    let ts = offset.to_timestamp(local).map_err(|_| invalid())?;
    i64::try_from(ts.as_nanosecond()).map_err(|_| TimeParseError::OutOfRange(s.to_string()))
}

/// Formats nanoseconds since the epoch as RFC 3339 in UTC with the fraction
/// trimmed of trailing zeros (Go's `RFC3339Nano`): `2024-01-01T00:00:00Z`,
/// `2024-01-01T00:00:00.5Z`.
pub fn format_time(ns: i64) -> String {
    let mut out = String::with_capacity(30);
    write_time(&mut out, ns);
    out
}

/// [`format_time`] appended to `out`, without allocating: result encoders call it per row,
/// and going through `core::fmt` for the seven fixed-width numbers was a sixth of the
/// in-process time of a one-series, 60-row query.
pub fn write_time(out: &mut String, ns: i64) {
    fn digits(buf: &mut [u8], mut v: u64) {
        for b in buf.iter_mut().rev() {
            *b = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    let secs = ns.div_euclid(NANOS_PER_SECOND);
    let mut frac = ns.rem_euclid(NANOS_PER_SECOND) as u64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u64;
    let (y, m, d) = civil_from_days(days);
    // Years of i64 nanoseconds are 1677..=2262: always four digits.
    let mut b = *b"0000-00-00T00:00:00.000000000Z";
    digits(&mut b[0..4], y as u64);
    digits(&mut b[5..7], m as u64);
    digits(&mut b[8..10], d as u64);
    digits(&mut b[11..13], sod / 3600);
    digits(&mut b[14..16], sod % 3600 / 60);
    digits(&mut b[17..19], sod % 60);
    let len = if frac == 0 {
        19
    } else {
        let mut n = 9;
        while frac.is_multiple_of(10) {
            frac /= 10;
            n -= 1;
        }
        digits(&mut b[20..20 + n], frac);
        20 + n
    };
    b[len] = b'Z';
    out.push_str(std::str::from_utf8(&b[..=len]).expect("ASCII digits and separators"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_format() {
        assert_eq!(parse_duration("10s"), Ok(10 * NANOS_PER_SECOND));
        assert_eq!(parse_duration("1h30m"), Ok(NANOS_PER_HOUR + 30 * NANOS_PER_MINUTE));
        assert_eq!(parse_duration("5µ"), Ok(5_000));
        assert_eq!(parse_duration("5u"), Ok(5_000));
        assert_eq!(parse_duration("7ns"), Ok(7));
        assert_eq!(parse_duration("2w"), Ok(2 * NANOS_PER_WEEK));
        assert_eq!(parse_duration("1d"), Ok(NANOS_PER_DAY));
        assert_eq!(parse_duration("1700000000000ms"), Ok(1_700_000_000_000 * NANOS_PER_MILLI));
        assert_eq!(parse_duration("-5m"), Ok(-5 * NANOS_PER_MINUTE));
        assert_eq!(parse_duration("-9223372036854775808ns"), Ok(i64::MIN));
        assert_eq!(parse_duration("9223372036854775808ns"), Err(DurationError::Overflow));
        assert_eq!(parse_duration("100000w"), Err(DurationError::Overflow));
        for bad in ["", "s", "10", "10x", "1n", "5m10", "1.5s", "-", "10us"] {
            assert_eq!(parse_duration(bad), Err(DurationError::Invalid), "{bad}");
        }
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(90 * NANOS_PER_MINUTE), "90m");
        assert_eq!(format_duration(1_500 * NANOS_PER_MILLI), "1500ms");
        assert_eq!(format_duration(-2 * NANOS_PER_WEEK), "-2w");
        assert_eq!(format_duration(1_001), "1001ns");
        assert_eq!(format_duration(i64::MIN), "-9223372036854775808ns");
        for v in [1, 1000, i64::MAX, i64::MIN, -3 * NANOS_PER_DAY] {
            assert_eq!(parse_duration(&format_duration(v)), Ok(v));
        }
    }

    #[test]
    fn times_parse_and_format() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_time("2024-01-01T00:00:00Z"), Ok(1_704_067_200 * NANOS_PER_SECOND));
        assert_eq!(parse_time("2024-01-01"), parse_time("2024-01-01T00:00:00Z"));
        assert_eq!(parse_time("2024-01-01 00:00:00"), parse_time("2024-01-01T00:00:00Z"));
        assert_eq!(parse_time("2024-01-01T02:00:00+02:00"), parse_time("2024-01-01T00:00:00Z"));
        assert_eq!(parse_time("2023-12-31T22:30:00-01:30"), parse_time("2024-01-01T00:00:00Z"));
        assert_eq!(parse_time("2024-01-01T00:00:00.5Z"), Ok(1_704_067_200 * NANOS_PER_SECOND + 500_000_000));
        assert_eq!(parse_time("2024-01-01 00:00:00.000000001"), Ok(1_704_067_200 * NANOS_PER_SECOND + 1));
        assert_eq!(parse_time("2024-02-29"), Ok(1_709_164_800 * NANOS_PER_SECOND));
        assert_eq!(parse_time("1969-12-31T23:59:59.999999999Z"), Ok(-1), "before the epoch");
        for bad in [
            "",
            "2024",
            "2024-13-01",
            "2023-02-29",
            "2024-01-32",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:60Z",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00.1234567891Z",
            "2024-01-01T00:00:00+0200",
            "2024-01-01T00:00",
            "2024-01-01X00:00:00",
            "2024-01-01T00:00:00Zjunk",
            "now",
            "２０２４-01-01",
        ] {
            assert!(matches!(parse_time(bad), Err(TimeParseError::Invalid(_))), "{bad}");
        }
        assert!(matches!(parse_time("2262-04-11T23:47:17Z"), Err(TimeParseError::OutOfRange(_))));
        assert!(matches!(parse_time("1677-09-21T00:12:43Z"), Err(TimeParseError::OutOfRange(_))));
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(format_time(1_704_067_200 * NANOS_PER_SECOND + 500_000_000), "2024-01-01T00:00:00.5Z");
        assert_eq!(format_time(i64::MAX), "2262-04-11T23:47:16.854775807Z");
        assert_eq!(format_time(i64::MIN), "1677-09-21T00:12:43.145224192Z");
        for v in [0, 1, -1, i64::MAX, i64::MIN, 1_709_164_800 * NANOS_PER_SECOND] {
            assert_eq!(parse_time(&format_time(v)), Ok(v));
        }
    }

    #[test]
    fn civil_dates_match_jiff_over_the_whole_range() {
        // Every 97th day from 1677-09-21 to 2262-04-11 (covers all leap-year rules).
        let epoch = jiff::civil::date(1970, 1, 1);
        let mut day: i64 = -106_751;
        while day <= 106_750 {
            let (y, m, d) = civil_from_days(day);
            let want = epoch.checked_add(jiff::Span::new().days(day)).expect("in jiff's range");
            assert_eq!(
                (y, m, d),
                (i64::from(want.year()), want.month() as u32, want.day() as u32),
                "day {day}"
            );
            day += 97;
        }
    }
}
