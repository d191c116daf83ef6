//! RFC 3339 timestamps (`2024-05-01T12:00:00.5Z`, `2024-05-01T14:00:00+02:00`) to
//! nanoseconds since the Unix epoch, for the JSON write format.
//!
//! Hand-written because `humantime` accepts only `Z` offsets and the time crates are heavy
//! for one function; the grammar is RFC 3339 section 5.6, with `t`/`z` and a space separator
//! accepted as the RFC's note allows.

/// A timestamp that is not RFC 3339 or does not fit in `i64` nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RFC 3339 timestamp {value:?}: {reason}")]
pub struct BadTime {
    pub value: String,
    pub reason: &'static str,
}

/// Parses `s` to nanoseconds since 1970-01-01T00:00:00Z.
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
