//! Message payloads to points: line protocol (one or more lines) or JSON, told apart by the
//! first non-blank byte (`{` or `[` is JSON). Decoding reuses the HTTP decoders
//! (`ingest::lineproto`, `ingest::json`) with a [`PointContext`] that adds the device tag and,
//! for JSON, the topic's measurement; several messages are decoded into one `WriteBatch` so
//! one engine write (and one fsync) covers them all.

use strata_lineproto::Precision;

use strata_ingest::{BadPoint, Decoded, PointContext, PointLimits};

/// The payload format of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    LineProtocol,
    Json,
}

impl PayloadFormat {
    pub fn detect(payload: &[u8]) -> PayloadFormat {
        match payload.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{' | b'[') => PayloadFormat::Json,
            _ => PayloadFormat::LineProtocol,
        }
    }
}

/// How decoding one message went.
#[derive(Debug, Default)]
pub struct MessageResult {
    /// Points added to the batch.
    pub points: usize,
    /// Lines or JSON points seen.
    pub seen: usize,
    /// Bad lines or points (at most `limits.max_errors` listed, `rejected` counts all).
    pub errors: Vec<BadPoint>,
    pub rejected: usize,
    /// The payload as a whole could not be read (not UTF-8 JSON, wrong shape, empty).
    pub fatal: Option<String>,
}

impl MessageResult {
    /// A short reason for logs and the dead-letter store, or `None` if everything was stored.
    pub fn reason(&self) -> Option<String> {
        if let Some(f) = &self.fatal {
            return Some(f.clone());
        }
        let first = self.errors.first()?;
        let pos = match (first.line, first.index) {
            (Some(l), _) => format!("line {l}"),
            (_, Some(i)) => format!("point {i}"),
            _ => String::new(),
        };
        Some(format!(
            "{} of {} rejected; first: {pos}: {} ({})",
            self.rejected, self.seen, first.reason, first.kind
        ))
    }
}

/// The decoding settings of a listener.
#[derive(Debug, Clone)]
pub struct Decoding {
    pub device_tag: String,
    pub line_precision: Precision,
    pub json_precision: Precision,
    pub limits: PointLimits,
}

/// Decodes one message published by (or, ACL off, for) `device` with the topic's
/// `measurement`, appending its good points to `out` (which holds the batch of every message
/// decoded so far; see [`Decoded::appending`]).
pub fn decode_message(
    out: &mut Decoded,
    payload: &[u8],
    device: &str,
    measurement: Option<&str>,
    d: &Decoding,
    now_ns: i64,
) -> MessageResult {
    let ctx = PointContext { measurement, tag: Some((&d.device_tag, device)) };
    let (points, seen) = (out.batch.len_points(), out.seen);
    let fatal = match PayloadFormat::detect(payload) {
        PayloadFormat::LineProtocol => {
            strata_ingest::lineproto::decode_appending(
                payload,
                d.line_precision,
                now_ns,
                &d.limits,
                &ctx,
                out,
            );
            None
        }
        // Fails before adding anything: the points of earlier messages stay.
        PayloadFormat::Json => {
            strata_ingest::json::decode_appending(payload, d.json_precision, now_ns, &d.limits, &ctx, out)
                .err()
                .map(|e| format!("invalid JSON payload: {}", e.message))
        }
    };
    let errors = out.take_errors();
    let mut r = MessageResult {
        points: out.batch.len_points() - points,
        seen: out.seen - seen,
        rejected: errors.total,
        errors: errors.items,
        fatal,
    };
    if r.seen == 0 && r.fatal.is_none() {
        r.fatal = Some("empty payload: no line or point".into());
    }
    r
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use strata_engine::{FieldValue, WriteBatch};

    use super::*;
    use strata_ingest::config::LimitsConfig;

    fn dec() -> Decoding {
        Decoding {
            device_tag: "device".into(),
            line_precision: Precision::Nanoseconds,
            json_precision: Precision::Milliseconds,
            // The tests pass small server times next to real dates: no time window.
            limits: PointLimits::from_config(&LimitsConfig {
                max_future: strata_ingest::config::OptDuration::OFF,
                max_past: strata_ingest::config::OptDuration::OFF,
                ..LimitsConfig::default()
            }),
        }
    }

    fn new_out() -> Decoded {
        Decoded::appending(WriteBatch::new(), 10)
    }

    fn describe(out: &Decoded) -> Vec<String> {
        out.batch
            .iter()
            .map(|p| {
                let p = p.unwrap();
                let f: BTreeMap<&str, FieldValue<'_>> = p.fields().collect();
                format!("{} {:?} {}", p.series_key(), f, p.timestamp)
            })
            .collect()
    }

    #[test]
    fn several_lines_get_the_device_tag() {
        let mut b = new_out();
        let r =
            decode_message(&mut b, b"temp,room=lab v=1 10\ntemp v=2 20\n", "d1", Some("ignored"), &dec(), 0);
        assert_eq!((r.points, r.seen, r.rejected), (2, 2, 0));
        assert!(r.reason().is_none());
        let got = describe(&b);
        assert!(got[0].starts_with("temp,device=d1,room=lab"), "{got:?}");
        assert!(got[1].starts_with("temp,device=d1 "), "{got:?}");
    }

    #[test]
    fn json_shapes() {
        let mut b = new_out();
        let flat = br#"{"ts": 1700000000000, "temperature": 21.5, "ok": true, "n": {"int": 3}, "tags": {"room": "lab"}}"#;
        let r = decode_message(&mut b, flat, "d1", Some("climate"), &dec(), 0);
        assert_eq!((r.points, r.rejected), (1, 0), "{:?}", r.errors);
        let arr = br#"[{"ts": 1, "v": 1}, {"measurement": "other", "v": 2}, {"measurement": "full", "fields": {"v": 3}, "time": 5}]"#;
        let r = decode_message(&mut b, arr, "d1", Some("climate"), &dec(), 7_000_000);
        assert_eq!((r.points, r.rejected), (3, 0), "{:?}", r.errors);
        let got = describe(&b);
        assert_eq!(got.len(), 4);
        assert!(got[0].starts_with("climate,device=d1,room=lab"), "{got:?}");
        assert!(got[0].ends_with(" 1700000000000000000"), "ms precision: {got:?}");
        assert!(got[1].starts_with("climate,device=d1 ") && got[1].ends_with(" 1000000"), "{got:?}");
        assert!(
            got[2].starts_with("other,device=d1 ") && got[2].ends_with(" 7000000"),
            "no ts: now; {got:?}"
        );
        assert!(got[3].starts_with("full,device=d1 ") && got[3].ends_with(" 5000000"), "{got:?}");
    }

    #[test]
    fn bad_payloads_keep_earlier_points_and_report() {
        let mut b = new_out();
        decode_message(&mut b, b"m v=1 1", "d1", None, &dec(), 0);
        for (payload, needle) in [
            (&b"{not json"[..], "invalid JSON"),
            (b"[1, 2", "invalid JSON"),
            (b"\xff{", "invalid"),
            (b"", "empty"),
            (b"  \n", "empty"),
            (b"{\"v\": 1}", "measurement"),
            (b"42", "invalid JSON"),
        ] {
            let r = decode_message(&mut b, payload, "d1", None, &dec(), 0);
            let reason = r.reason().unwrap_or_else(|| panic!("{payload:?} accepted"));
            assert!(reason.contains(needle) || r.rejected > 0, "{payload:?}: {reason}");
            assert_eq!(r.points, 0);
        }
        assert_eq!(b.batch.len_points(), 1, "an earlier message's point survives bad ones");
        let r = decode_message(
            &mut b,
            b"m v=2 2\nbad line\nm,device=d2 v=3 3\nm,device=d1 v=4 4",
            "d1",
            None,
            &dec(),
            0,
        );
        assert_eq!((r.points, r.rejected), (2, 2));
        let reason = r.reason().unwrap();
        assert!(reason.contains("2 of 4 rejected") && reason.contains("line 2"), "{reason}");
        assert!(r.errors[1].reason.contains("conflicts"), "{:?}", r.errors);
    }
}
