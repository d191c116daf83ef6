//! InfluxDB line protocol to a [`WriteBatch`].
//!
//! The hot path of ingest. The parser borrows from the body; names are copied once, straight
//! into the batch's buffer, and only names that contain escape sequences are unescaped first,
//! into scratch strings reused for the whole request: no allocation per point.
//!
//! Series repeat within a request (a device reports every few seconds; a 5,000-line TSBS
//! batch names each series about five times), so the encoded series key of every point is
//! remembered under the line's measurement-and-tags text: a line whose text was seen before
//! copies that key and skips unescaping, checking and sorting its tags.

use std::collections::HashMap;

use rustc_hash::FxBuildHasher;
use strata_engine::{FieldValue as Value, KeyRef, WriteBatch};
use strata_lineproto::{Escaped, FieldValue, Line, LineErrorKind, Parser, Precision};

use super::{bad_point, Decoded, Format, PointContext, PointLimits, Refusal};
use crate::metrics::LineReject;

/// Unescape buffers, one per name that may be alive at once while a point is built.
#[derive(Debug, Default)]
struct Scratch {
    measurement: String,
    key: String,
    value: String,
}

/// Encoded series keys already in the batch, by the measurement-and-tags text of their line
/// ([`Line::series`]). Only points that were stored are remembered: the checks on names are
/// a function of that text, so a later line with the same text would pass them too.
type KeyCache<'a> = HashMap<&'a [u8], KeyRef, FxBuildHasher>;

/// Decodes a whole body. `now_ns` is the timestamp of lines without one (one clock reading
/// per request, as InfluxDB does). Never fails: bad lines are listed in the result.
pub fn decode(body: &[u8], precision: Precision, now_ns: i64, limits: &PointLimits) -> Decoded {
    // The batch encoding is about as long as the text: reserve once instead of regrowing.
    let batch = WriteBatch::with_capacity(body.len());
    decode_with(body, precision, now_ns, limits, &PointContext::default(), batch)
}

/// [`decode`], adding `ctx`'s tag to every point and appending to `batch` (which may already
/// hold points: the MQTT listener decodes several messages into one batch). The origins kept
/// for [`Decoded::finish`] are only right when `batch` starts empty.
pub fn decode_with(
    body: &[u8],
    precision: Precision,
    now_ns: i64,
    limits: &PointLimits,
    ctx: &PointContext<'_>,
    batch: WriteBatch,
) -> Decoded {
    let mut out = Decoded::new(Format::LineProtocol, limits.max_errors);
    out.batch = batch;
    decode_appending(body, precision, now_ns, limits, ctx, &mut out);
    out
}

/// Decodes `body` onto what `out` holds already (its batch, counts and errors): the MQTT
/// listener decodes every message of a batch into one [`Decoded`], so a message costs no
/// allocation of its own.
pub fn decode_appending(
    body: &[u8],
    precision: Precision,
    now_ns: i64,
    limits: &PointLimits,
    ctx: &PointContext<'_>,
    out: &mut Decoded,
) {
    out.format = Format::LineProtocol;
    let mut scratch = Scratch::default();
    let mut keys = KeyCache::default();
    let parser = Parser::new(body).with_precision(precision).with_max_line_len(limits.max_line_length);
    for item in parser {
        out.seen += 1;
        match item {
            Err(e) => {
                let kind = if e.kind == LineErrorKind::LineTooLong {
                    LineReject::LineTooLong
                } else {
                    LineReject::Parse
                };
                out.errors.push(kind, || {
                    let excerpt = format!(
                        "{}{}{}",
                        if e.excerpt_cut_before() { "..." } else { "" },
                        e.excerpt(),
                        if e.excerpt_cut_after() { "..." } else { "" }
                    );
                    bad_point(
                        Format::LineProtocol,
                        e.line_no,
                        Some(e.column),
                        kind,
                        e.kind.to_string(),
                        excerpt,
                    )
                });
            }
            Ok(line) => {
                // `raw` is a slice of `body`, so the subtraction cannot underflow.
                let start = line.raw().as_ptr() as usize - body.as_ptr() as usize;
                // The key cache only pays when another line follows (it allocates on its
                // first insert): a one-line MQTT message skips it.
                let more = start + line.raw().len() + 1 < body.len();
                match add_line(
                    &mut out.batch,
                    &line,
                    now_ns,
                    limits,
                    ctx,
                    &mut scratch,
                    more.then_some(&mut keys),
                ) {
                    Ok(()) => out.origin(line.line_no, start, line.raw().len()),
                    Err(r) => out.refuse(line.line_no, line.raw(), r),
                }
            }
        }
    }
}

/// The unescaped text of `e`: borrowed from the body unless it contains escapes, else
/// unescaped into `buf`.
fn unescape<'s>(e: Escaped<'s>, buf: &'s mut String) -> &'s str {
    if e.is_escaped() {
        buf.clear();
        e.push_to(buf);
        buf
    } else {
        e.raw()
    }
}

/// Adds one line's point to the batch, or nothing if it breaks a limit.
fn add_line<'a>(
    batch: &mut WriteBatch,
    line: &Line<'a>,
    now_ns: i64,
    limits: &PointLimits,
    ctx: &PointContext<'_>,
    s: &mut Scratch,
    keys: Option<&mut KeyCache<'a>>,
) -> Result<(), Refusal> {
    limits.check_counts(line.tag_count(), line.field_count())?;
    let ts = line.timestamp.unwrap_or(now_ns);
    limits.check_time(ts, now_ns)?;
    let series = line.series().as_bytes();
    let Some(keys) = keys else {
        return add_new_series_line(batch, line, ts, limits, ctx, s);
    };
    if let Some(&key) = keys.get(series) {
        let mut p = batch.point_with_key(key);
        add_fields(&mut p, line, limits, s)?;
        return p.finish(ts).map_err(|e| Refusal::new(LineReject::InvalidPoint, e.to_string()));
    }
    add_new_series_line(batch, line, ts, limits, ctx, s)?;
    if let Some(key) = batch.last_key() {
        keys.insert(series, key);
    }
    Ok(())
}

/// [`add_line`] for a series not seen yet in this request.
fn add_new_series_line(
    batch: &mut WriteBatch,
    line: &Line<'_>,
    ts: i64,
    limits: &PointLimits,
    ctx: &PointContext<'_>,
    s: &mut Scratch,
) -> Result<(), Refusal> {
    let measurement = unescape(line.measurement, &mut s.measurement);
    limits.check_name("measurement", measurement)?;
    // Dropping `p` on an early return discards the unfinished point.
    let mut p = batch.point(measurement);
    for (k, v) in line.tags() {
        let k = unescape(k, &mut s.key);
        limits.check_name("tag key", k)?;
        let v = unescape(v, &mut s.value);
        limits.check_name("tag value", v)?;
        if let Some((ck, cv)) = ctx.tag {
            if k == ck {
                if v != cv {
                    return Err(context_tag_conflict(ck, cv, v));
                }
                continue; // added once below
            }
        }
        p.tag(k, v);
    }
    if let Some((ck, cv)) = ctx.tag {
        p.tag(ck, cv);
    }
    add_fields(&mut p, line, limits, s)?;
    p.finish(ts).map_err(|e| Refusal::new(LineReject::InvalidPoint, e.to_string()))
}

fn add_fields(
    p: &mut strata_engine::PointBuilder<'_>,
    line: &Line<'_>,
    limits: &PointLimits,
    s: &mut Scratch,
) -> Result<(), Refusal> {
    for (k, v) in line.fields() {
        let k = unescape(k, &mut s.key);
        limits.check_name("field key", k)?;
        let v = match v {
            FieldValue::F64(x) => Value::F64(x),
            FieldValue::I64(x) => Value::I64(x),
            FieldValue::U64(x) => Value::U64(x),
            FieldValue::Bool(x) => Value::Bool(x),
            FieldValue::Str(e) => {
                let text = unescape(e, &mut s.value);
                limits.check_string(k, text)?;
                Value::Str(text)
            }
        };
        p.field(k, v);
    }
    Ok(())
}

/// A point's own tag disagrees with the one its context adds.
pub(crate) fn context_tag_conflict(key: &str, want: &str, got: &str) -> Refusal {
    Refusal::new(
        LineReject::InvalidPoint,
        format!("tag {key}={got:?} conflicts with {key}={want:?} given by the topic"),
    )
}

#[cfg(test)]
mod tests {
    use strata_engine::batch::PointRef;
    use strata_lineproto::Precision;

    use super::*;
    use crate::config::LimitsConfig;

    fn limits() -> PointLimits {
        // The tests decode with a clock at 0: no future bound, or 2023 is "the future".
        PointLimits { max_future_ns: None, ..PointLimits::from_config(&LimitsConfig::default()) }
    }

    fn points(d: &Decoded) -> Vec<String> {
        d.batch.iter().map(|p| describe(&p.unwrap())).collect()
    }

    fn describe(p: &PointRef<'_>) -> String {
        let fields: Vec<String> = p.fields().map(|(k, v)| format!("{k}={v:?}")).collect();
        format!("{:?} {} {}", p.series_key(), fields.join(","), p.timestamp)
    }

    #[test]
    fn good_and_bad_lines_and_escapes() {
        let body = b"# comment\n\
            cpu,host=a usage=0.5,n=3i 1000\n\
            cpu,host=b\n\
            \n\
            my\\ cpu,ta\\=g=v\\,1 s=\"q\\\"uote\",b=t 2000\r\n\
            cpu usage=1\n";
        let d = decode(body, Precision::Nanoseconds, 42, &limits());
        assert_eq!(d.batch.len_points(), 3);
        assert_eq!(d.seen, 4);
        assert_eq!(d.errors.total, 1);
        let e = &d.errors.items[0];
        assert_eq!((e.line, e.kind, e.reason.as_str()), (Some(3), "parse", "missing fields"));
        assert_eq!(e.excerpt, "cpu,host=b");
        let pts: Vec<_> = d.batch.iter().map(|p| p.unwrap()).collect();
        assert_eq!(pts[0].timestamp, 1000);
        assert_eq!(pts[2].timestamp, 42, "no timestamp means the request's clock reading");
        let dbg = points(&d).join("\n");
        assert!(dbg.contains("my cpu") && dbg.contains("ta=g") && dbg.contains("v,1"), "{dbg}");
        assert!(dbg.contains("q\\\"uote") || dbg.contains("q\"uote"), "{dbg}");
    }

    #[test]
    fn precision_converts_and_overflow_is_a_line_error() {
        let body = b"m v=1 1700000000\nm v=2 9300000000\n";
        let d = decode(body, Precision::Seconds, 0, &limits());
        let pts: Vec<_> = d.batch.iter().map(|p| p.unwrap()).collect();
        assert_eq!(pts.len(), 1);
        assert_eq!(pts[0].timestamp, 1_700_000_000_000_000_000);
        assert_eq!(d.errors.items[0].line, Some(2));
        assert_eq!(d.errors.items[0].reason, "timestamp out of range");
        let d = decode(b"m v=1 1700000000000\n", Precision::Milliseconds, 0, &limits());
        assert_eq!(d.batch.iter().next().unwrap().unwrap().timestamp, 1_700_000_000_000_000_000);
    }

    #[test]
    fn repeated_series_encode_as_if_decoded_alone() {
        // The key cache must not change a byte: decoding the body at once gives the same
        // batch as decoding each line on its own and concatenating.
        let mut l = limits();
        l.max_name_length = 8;
        let lines = [
            "cpu,host=a,dc=x usage=1,idle=2i 1000",
            "cpu,host=a,dc=x usage=3 2000",
            "cpu,dc=x,host=a usage=4 3000", // same series, other text: not cached
            "cpu,host=a,dc=x usage=5,s=\"q\" 4000",
            "my\\ m,t\\ k=v\\,1 f=1 5000",
            "my\\ m,t\\ k=v\\,1 f=2 6000",
            "cpu,host=toolongvalue usage=1 7000", // refused: not cached, refused again
            "cpu,host=toolongvalue usage=2 8000",
            "mem free=1 9000",
            "mem free=2 10000",
        ];
        let body = lines.join("\n");
        let d = decode(body.as_bytes(), Precision::Nanoseconds, 0, &l);
        let mut want = Vec::new();
        let mut refused = 0;
        for line in lines {
            let one = decode(line.as_bytes(), Precision::Nanoseconds, 0, &l);
            want.extend_from_slice(one.batch.as_bytes());
            refused += one.errors.total;
        }
        assert_eq!(d.batch.as_bytes(), &want[..]);
        assert_eq!((d.batch.len_points(), d.errors.total, refused), (8, 2, 2));
        assert_eq!(d.errors.items.iter().map(|e| e.line).collect::<Vec<_>>(), vec![Some(7), Some(8)]);

        // A context tag is part of every cached key, and a conflict is refused every time.
        let ctx = PointContext { tag: Some(("dev", "d1")), ..PointContext::default() };
        let body = "m,dev=d1 v=1 1\nm v=2 2\nm v=3 3\nm,dev=d2 v=4 4\nm,dev=d2 v=5 5\n";
        let d = decode_with(body.as_bytes(), Precision::Nanoseconds, 0, &limits(), &ctx, WriteBatch::new());
        assert_eq!(d.batch.len_points(), 3);
        assert_eq!(d.errors.total, 2);
        let keys: Vec<_> = d.batch.iter().map(|p| p.unwrap().series_key()).collect();
        assert!(keys.iter().all(|k| k == &keys[0] && k.tags.len() == 1), "{keys:?}");
    }

    #[test]
    fn each_limit_refuses_only_its_line() {
        let mut l = limits();
        l.max_tags = 2;
        l.max_fields = 2;
        l.max_name_length = 8;
        l.max_string_length = 4;
        l.max_line_length = 64;
        l.max_future_ns = Some(1_000);
        l.max_past_ns = Some(1_000);
        let now = 1_000_000;
        let long = format!("m v=\"{}\"", "x".repeat(100));
        let body = format!(
            "ok,a=1 v=1\n\
             m,a=1,b=2,c=3 v=1\n\
             m v=1,w=2,x=3\n\
             measurement_name v=1\n\
             m,a=123456789 v=1\n\
             m s=\"12345\"\n\
             m v=1 {}\n\
             m v=1 {}\n\
             {long}\n\
             m,tag\\ key\\ 9=1 v=1\n\
             ok2 v=1 {now}\n",
            now + 1_001,
            now - 1_001,
        );
        let d = decode(body.as_bytes(), Precision::Nanoseconds, now, &l);
        let kinds: Vec<_> = d.errors.items.iter().map(|e| (e.line.unwrap(), e.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                (2, "too_many_tags"),
                (3, "too_many_fields"),
                (4, "name_too_long"),
                (5, "name_too_long"),
                (6, "string_too_long"),
                (7, "timestamp_out_of_window"),
                (8, "timestamp_out_of_window"),
                (9, "line_too_long"),
                (10, "name_too_long"),
            ]
        );
        assert_eq!(d.batch.len_points(), 2, "{:?}", d.errors.items);
        assert_eq!(d.errors.count(LineReject::NameTooLong), 3);
    }

    #[test]
    fn error_list_is_capped_in_line_order() {
        let mut l = limits();
        l.max_errors = 3;
        let body = "bad\n".repeat(10) + "ok v=1\n";
        let d = decode(body.as_bytes(), Precision::Nanoseconds, 0, &l);
        assert_eq!(d.errors.total, 10);
        assert_eq!(d.errors.items.iter().map(|e| e.line.unwrap()).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(d.batch.len_points(), 1);
    }

    #[test]
    fn engine_refusals_are_merged_by_line() {
        use strata_engine::{RejectReason, RejectedPoint, WriteOutcome};
        let body = b"a v=1\nbad\nb v=1\nc v=1\n";
        let d = decode(body, Precision::Nanoseconds, 0, &limits());
        assert_eq!(d.batch.len_points(), 3);
        let outcome = WriteOutcome {
            points_written: 1,
            values_written: 1,
            rejected: vec![
                RejectedPoint { index: 2, reason: RejectReason::SeriesLimit { limit: 1 } },
                RejectedPoint { index: 0, reason: RejectReason::SeriesLimit { limit: 1 } },
            ],
        };
        let errors = d.finish(&outcome, body);
        let got: Vec<_> =
            errors.items.iter().map(|e| (e.line.unwrap(), e.kind, e.excerpt.as_str())).collect();
        assert_eq!(
            got,
            vec![(1, "series_limit", "a v=1"), (2, "parse", "bad"), (4, "series_limit", "c v=1")]
        );
        assert_eq!(errors.total, 3);
    }
}
