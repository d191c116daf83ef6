//! Codec tests: pinned bytes for every layout in `docs/codecs.md`, size targets,
//! property round trips over arbitrary values, and corruption (every prefix, byte
//! flips, arbitrary bytes) that must error without panicking.

use super::*;
use proptest::prelude::*;

// ---------------------------------------------------------------- helpers

fn ts_round_trip(ts: &[i64]) -> Vec<u8> {
    let mut buf = vec![0xAA]; // encoders append: keep a prefix to prove it
    encode_timestamps(ts, &mut buf);
    let enc = buf[1..].to_vec();
    let mut out = vec![7];
    decode_timestamps(&enc, ts.len(), &mut out).expect("decode");
    assert_eq!(&out[1..], ts);
    enc
}

fn f64_bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn f64_round_trip(vals: &[f64]) -> Vec<u8> {
    let mut enc = Vec::new();
    encode_f64(vals, &mut enc);
    let mut out = Vec::new();
    decode_f64(&enc, vals.len(), &mut out).expect("decode");
    assert_eq!(f64_bits(&out), f64_bits(vals));
    for codec in [FloatCodec::Gorilla, FloatCodec::Decimal, FloatCodec::Constant] {
        let mut forced = Vec::new();
        encode_f64_with(vals, codec, &mut forced);
        let mut out = Vec::new();
        decode_f64(&forced, vals.len(), &mut out).expect("decode forced");
        assert_eq!(f64_bits(&out), f64_bits(vals), "{codec:?}");
        if codec == FloatCodec::Gorilla && !vals.is_empty() {
            // The counting pass that drives the codec choice matches the encoder.
            assert_eq!(forced.len(), 1 + gorilla::size_bits(vals).div_ceil(8) as usize);
        }
    }
    enc
}

fn i64_round_trip(vals: &[i64]) -> Vec<u8> {
    let mut enc = Vec::new();
    encode_i64(vals, &mut enc);
    let mut out = Vec::new();
    decode_i64(&enc, vals.len(), &mut out).expect("decode");
    assert_eq!(out, vals);
    enc
}

fn u64_round_trip(vals: &[u64]) -> Vec<u8> {
    let mut enc = Vec::new();
    encode_u64(vals, &mut enc);
    let mut out = Vec::new();
    decode_u64(&enc, vals.len(), &mut out).expect("decode");
    assert_eq!(out, vals);
    enc
}

fn bool_round_trip(vals: &[bool]) -> Vec<u8> {
    let mut enc = Vec::new();
    encode_bool(vals, &mut enc);
    let mut out = Vec::new();
    decode_bool(&enc, vals.len(), &mut out).expect("decode");
    assert_eq!(out, vals);
    enc
}

fn str_round_trip(vals: &[String]) -> Vec<u8> {
    let mut enc = Vec::new();
    encode_str(vals, &mut enc);
    let mut out = Vec::new();
    decode_str(&enc, vals.len(), &mut out).expect("decode");
    assert_eq!(out, vals);
    enc
}

/// Any decoder, type-erased, for the corruption tests.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Ts,
    F64,
    I64,
    U64,
    Bool,
    Str,
}

fn decode_any(kind: Kind, input: &[u8], count: usize) -> Result<(), CodecError> {
    match kind {
        Kind::Ts => decode_timestamps(input, count, &mut Vec::new()),
        Kind::F64 => decode_f64(input, count, &mut Vec::new()),
        Kind::I64 => decode_i64(input, count, &mut Vec::new()),
        Kind::U64 => decode_u64(input, count, &mut Vec::new()),
        Kind::Bool => decode_bool(input, count, &mut Vec::new()),
        Kind::Str => decode_str(input, count, &mut Vec::new()),
    }
}

/// Every strict prefix of a valid non-empty block must be an error (never a panic and
/// never a silent success with made-up values).
fn assert_prefixes_fail(kind: Kind, enc: &[u8], count: usize) {
    assert!(decode_any(kind, enc, count).is_ok());
    for len in 0..enc.len() {
        let res = decode_any(kind, &enc[..len], count);
        assert!(res.is_err(), "{kind:?}: prefix of {len}/{} bytes decoded: {res:?}", enc.len());
    }
    let mut longer = enc.to_vec();
    longer.push(0);
    assert!(decode_any(kind, &longer, count).is_err(), "{kind:?}: trailing byte accepted");
}

fn decimal_walk(seed: u64, decimals: u32, len: usize, step: i64) -> Vec<f64> {
    // xorshift: deterministic without pulling rand into every helper.
    let mut s = seed | 1;
    let mut n: i64 = 2_000 * 10i64.pow(decimals);
    let pow = 10f64.powi(decimals as i32);
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            n += (s % (2 * step as u64 + 1)) as i64 - step;
            // Exactly what parsing the printed decimal gives.
            format!("{:.*}", decimals as usize, n as f64 / pow).parse::<f64>().unwrap()
        })
        .collect()
}

// ---------------------------------------------------------------- pinned bytes

#[test]
fn pinned_timestamp_layouts() {
    // TS_CONST: zigzag varint first (1000 -> 2000 = d0 0f), zigzag delta (10 -> 20).
    assert_eq!(ts_round_trip(&[1000, 1010, 1020]), [0x01, 0xd0, 0x0f, 0x14]);
    assert_eq!(ts_round_trip(&[-1]), [0x01, 0x01]);
    assert_eq!(ts_round_trip(&[]), [0x01]);
    // TS_DOD: 200 points every 10 with one glitch, ts[2] = 31: deltas 10, 21, -1, 10,
    // ... so g = 1; header first 0, g 1, q0 10 (zz 20 = 0x14); dods +11 (zz 22), -22
    // (zz 43), +11 as '10' + 7 bits each, then 195 '0' bits: 222 bits = 28 bytes.
    // (TS_LINEAR would need a 4-bit mini-block for the glitch: 66+ bytes.)
    let mut ts: Vec<i64> = (0..200).map(|i| i * 10).collect();
    ts[2] = 31;
    let enc = ts_round_trip(&ts);
    assert_eq!(enc[..4], [0x02, 0x00, 0x01, 0x14]);
    // 1,0,0,1,1,0,1,0 | 0,1,0,1,1,0,1,0 | 1,0,1,0,0,1,1,0 | 1,0,0,...
    assert_eq!(enc[4..8], [0x59, 0x5a, 0x65, 0x01]);
    assert_eq!(enc.len(), 4 + 28);
    assert!(enc[8..].iter().all(|&b| b == 0));
    // TS_PACKED: jittery deltas 7, 3, 5, 1, 6 in one mini-block: min 1 (zz 2), width 3.
    let enc = ts_round_trip(&[0, 7, 10, 15, 16, 22]);
    assert_eq!(enc[..3], [0x03, 0x00, 0x01]);
    assert_eq!(enc[3..5], [0x02, 0x03]);
    // (6, 2, 4, 0, 5) in 3 bits each, LSB-first.
    assert_eq!(enc[5..], [0b0001_0110, 0b0101_0001]);
    // TS_LINEAR: 17 points 10 * i + j, j cycling 0, 3, 1, 2. Deltas span 8..=13 (3 bits,
    // 8 bytes as TS_PACKED); residuals from the line of slope 10 are j (2 bits, 7 bytes).
    let ts: Vec<i64> = (0..17).map(|i| 10 * i + [0, 3, 1, 2][i as usize % 4]).collect();
    let enc = ts_round_trip(&ts);
    // tag, first 0, g 1, slope zz(10), mini-block min 0, width 2, (3, 1, 2, 0) x 4.
    assert_eq!(enc, [0x04, 0x00, 0x01, 0x14, 0x00, 0x02, 0x27, 0x27, 0x27, 0x27]);
}

#[test]
fn pinned_float_layouts() {
    // Constant: tag + raw bits.
    let enc = f64_round_trip(&[1.5, 1.5, 1.5]);
    assert_eq!(enc[0], tag::F64_CONST);
    assert_eq!(enc[1..], 1.5f64.to_bits().to_le_bytes());
    // Decimal: e = 1, no exceptions, mantissas 215, 216, 214 as INT_FOR (4 bytes,
    // INT_DELTA would take 5): min 214 (zz 428 = ac 03), width 2, values (1, 2, 0).
    let enc = f64_round_trip(&[21.5, 21.6, 21.4]);
    assert_eq!(float_codec_name(&enc), Some("decimal"));
    assert_eq!(enc, [0x11, 0x01, 0x00, 0x21, 0xac, 0x03, 0x02, 0b0000_1001]);
    // Gorilla: first value raw, then '0' for a repeat.
    let mut enc = Vec::new();
    encode_f64_with(&[0.1, 0.1], FloatCodec::Gorilla, &mut enc);
    assert_eq!(enc[0], tag::F64_GORILLA);
    assert_eq!(enc[1..9], 0.1f64.to_bits().to_le_bytes());
    assert_eq!(enc[9..], [0x00]);
    // Gorilla new window: 2.0 ^ 3.0 = 0x0008_0000_0000_0000 -> lead 12, trail 51,
    // sig 1: '11', 01100, 000000, '1' = 14 bits (LSB-first, so read right to left).
    let mut enc = Vec::new();
    encode_f64_with(&[2.0, 3.0], FloatCodec::Gorilla, &mut enc);
    let ctl = u16::from_le_bytes([enc[9], enc[10]]);
    // sig - 1 = 0 sits in bits 7..13.
    assert_eq!(ctl, (1 << 13) | (0b01100 << 2) | 0b11);
    assert_eq!(enc.len(), 11);
}

#[test]
fn pinned_int_bool_str_layouts() {
    assert_eq!(i64_round_trip(&[]), [0x20]);
    assert_eq!(i64_round_trip(&[5, 5, 5]), [0x20, 0x0a]);
    // FOR: values 100, 90, 110, 95 -> min 90 (zz 180 = b4 01), width 5, (10, 0, 20, 5).
    let enc = i64_round_trip(&[100, 90, 110, 95]);
    assert_eq!(enc[..4], [0x21, 0xb4, 0x01, 0x05]);
    // 0,1,0,1,0 0,0,0,0,0 0,0,1,0,1 1,0,1,0,0 LSB-first.
    assert_eq!(enc[4..], [0b0000_1010, 0b1101_0000, 0b0000_0010]);
    // DELTA: counter 1000.. step 1 -> first zz 2000, min 1, width 0.
    let ramp: Vec<i64> = (1000..1100).collect();
    assert_eq!(i64_round_trip(&ramp), [0x22, 0xd0, 0x0f, 0x02, 0x00]);

    assert_eq!(bool_round_trip(&[true, false, true]), [0x30, 0b101]);
    let mut flags = vec![false; 300];
    flags[200..].fill(true);
    assert_eq!(bool_round_trip(&flags), [0x31, 0x00, 0xc8, 0x01, 0x64]);

    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(str_round_trip(&s(&["ab", ""])), [0x40, 0x02, b'a', b'b', 0x00]);
    assert_eq!(
        str_round_trip(&s(&["on", "off", "on", "on"])),
        [0x41, 0x02, 0x02, b'o', b'n', 0x03, b'o', b'f', b'f', 0b0010]
    );
}

// ---------------------------------------------------------------- sizes

#[test]
fn regular_timestamps_cost_well_under_a_bit() {
    let start = 1_700_000_000_000_000_000i64;
    let regular: Vec<i64> = (0..10_000).map(|i| start + i * 10_000_000_000).collect();
    let enc = ts_round_trip(&regular);
    assert!(enc.len() <= 16, "{} bytes", enc.len());

    // One missing point every 1000: scale g = interval, mostly width-0 mini-blocks.
    let gappy: Vec<i64> =
        (0..10_000i64).filter(|i| i % 1000 != 999).map(|i| start + i * 10_000_000_000).collect();
    let enc = ts_round_trip(&gappy);
    let bits = enc.len() as f64 * 8.0 / gappy.len() as f64;
    assert!(bits < 0.3, "{bits} bits/point");

    // Millisecond jitter on nanosecond timestamps: the scale removes 20 zero bits.
    let mut s = 12345u64;
    let jitter: Vec<i64> = (0..10_000i64)
        .map(|i| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            start + i * 10_000_000_000 + ((s >> 33) % 200) as i64 * 1_000_000
        })
        .collect();
    let enc = ts_round_trip(&jitter);
    assert_eq!(enc[0], tag::TS_LINEAR);
    // 200 possible delays: log2(200) = 7.64 bits of entropy; 8-bit residuals + headers.
    let bits = enc.len() as f64 * 8.0 / jitter.len() as f64;
    assert!(bits < 8.2, "{bits} bits/point");

    // Event-driven series (deltas wander, no period): TS_PACKED.
    let mut t = start;
    let wander: Vec<i64> = (0..5000i64)
        .map(|i| {
            t += 1_000_000 * (1 + (i * i * 7919) % 5000);
            t
        })
        .collect();
    let enc = ts_round_trip(&wander);
    assert_eq!(enc[0], tag::TS_PACKED, "{}", block_codec_name(&enc).unwrap());
}

#[test]
fn dod_mode_wins_for_rare_irregularities() {
    // Regular, with isolated glitches of +-37 in most mini-blocks: 1 bit per point
    // plus two 9-bit buckets per glitch beats a 6-7 bit FOR width for 128 values.
    let mut ts: Vec<i64> = (0..4096).map(|i| i * 1000).collect();
    for i in (100..4096).step_by(97) {
        ts[i] += 37;
    }
    let enc = ts_round_trip(&ts);
    assert_eq!(enc[0], tag::TS_DOD, "{}", block_codec_name(&enc).unwrap());
}

#[test]
fn decimal_walks_pick_decimal_and_beat_gorilla() {
    for decimals in 1..=5 {
        let vals = decimal_walk(decimals as u64 * 7919, decimals, 4096, 50);
        let enc = f64_round_trip(&vals);
        assert_eq!(float_codec_name(&enc), Some("decimal"), "{decimals} decimals");
        let mut gorilla = Vec::new();
        encode_f64_with(&vals, FloatCodec::Gorilla, &mut gorilla);
        assert!(enc.len() * 3 < gorilla.len(), "{} vs {}", enc.len(), gorilla.len());
        // +-50 units: 7 bits + mini-block headers.
        assert!(enc.len() * 8 < vals.len() * 8, "{} bytes", enc.len());
    }
}

#[test]
fn decimal_exceptions_cover_special_values() {
    let mut vals = decimal_walk(3, 2, 1000, 20);
    let specials = [
        f64::NAN,
        f64::from_bits(0x7ff0_0000_dead_beef),
        f64::from_bits(0xfff8_0000_0000_0001),
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        f64::MIN_POSITIVE / 3.0,
        0.1 + 0.2,
        f64::MAX,
        f64::MIN,
    ];
    for (i, v) in specials.iter().enumerate() {
        vals[i * 97 + 1] = *v;
    }
    vals[999] = f64::NAN;
    let enc = f64_round_trip(&vals);
    assert_eq!(float_codec_name(&enc), Some("decimal"));
    // The exception count sits right after the tag and exponent.
    assert_eq!(enc[1], 2);
    assert_eq!(enc[2], specials.len() as u8 + 1);
}

#[test]
fn one_odd_value_does_not_force_a_huge_exponent() {
    let mut vals = decimal_walk(11, 1, 2048, 10);
    vals[500] = 0.1 + 0.2; // needs e = 17
    let enc = f64_round_trip(&vals);
    assert_eq!(float_codec_name(&enc), Some("decimal"));
    assert_eq!(enc[1], 1, "exponent");
}

#[test]
fn random_doubles_pick_gorilla() {
    let mut s = 99u64;
    let vals: Vec<f64> = (0..1000)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64
        })
        .collect();
    let enc = f64_round_trip(&vals);
    assert_eq!(float_codec_name(&enc), Some("gorilla"));
}

#[test]
fn special_floats_round_trip_everywhere() {
    let vals = [
        0.0,
        -0.0,
        f64::NAN,
        -f64::NAN,
        f64::from_bits(0x7ff0_0000_0000_0001),
        f64::from_bits(u64::MAX),
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MIN_POSITIVE,
        f64::from_bits(1),
        f64::MAX,
        f64::MIN,
        f64::EPSILON,
        1e300,
        -1e-300,
    ];
    f64_round_trip(&vals);
    for v in vals {
        f64_round_trip(&[v]);
        f64_round_trip(&[v, v]);
    }
    f64_round_trip(&[]);
}

#[test]
fn gorilla_window_grows_on_either_side() {
    // XORs whose meaningful bits move below, above and inside the current window, so
    // both the reuse ('10') and the new-window ('11') paths are taken with every
    // leading/trailing combination.
    let base = 0x4000_0000_0000_0000u64;
    let xors = [
        0xff00u64,
        0x0f00,
        0xf000,
        0x00f0,
        0xff_0000,
        0x1,
        0x8000_0000_0000_0000,
        0x3c00,
        0x7fff_ffff_ffff_ffff,
        0x1000,
        0x0800,
    ];
    let mut bits = base;
    let mut vals = vec![f64::from_bits(bits)];
    for x in xors {
        bits ^= x;
        vals.push(f64::from_bits(bits));
    }
    let mut enc = Vec::new();
    encode_f64_with(&vals, FloatCodec::Gorilla, &mut enc);
    let mut out = Vec::new();
    decode_f64(&enc, vals.len(), &mut out).expect("decode");
    assert_eq!(f64_bits(&out), f64_bits(&vals));
}

#[test]
fn integer_extremes_round_trip() {
    i64_round_trip(&[i64::MIN, i64::MAX, 0, -1, 1, i64::MIN, i64::MIN + 1, i64::MAX]);
    i64_round_trip(&[i64::MAX, i64::MIN]);
    i64_round_trip(&[i64::MIN]);
    u64_round_trip(&[u64::MAX, 0, u64::MAX, 1 << 63, (1 << 63) - 1]);
    u64_round_trip(&[]);
    let many: Vec<u64> = (0..1000).map(|i| if i % 3 == 0 { u64::MAX - i } else { i }).collect();
    u64_round_trip(&many);
}

#[test]
fn timestamp_extremes_round_trip() {
    ts_round_trip(&[i64::MIN, i64::MAX, i64::MIN, 0, i64::MAX, -1, 1]);
    ts_round_trip(&[i64::MAX, i64::MIN]);
    ts_round_trip(&[0, i64::MIN, 0, i64::MIN, 0]);
    ts_round_trip(&[5, 5, 5, 5, 4, 4, 9, -3]);
    ts_round_trip(&[i64::MIN; 3]);
    let desc: Vec<i64> = (0..500).rev().map(|i| i * 1_000_000_000).collect();
    ts_round_trip(&desc);
}

#[test]
fn strings_choose_dict_zstd_and_reject_bad_utf8() {
    let states: Vec<String> = (0..1000).map(|i| ["idle", "driving", "loading"][i % 3].to_string()).collect();
    let enc = str_round_trip(&states);
    assert!(matches!(block_codec_name(&enc), Some("str-dict") | Some("str-dict-zstd")));
    assert!(enc.len() < 300, "{}", enc.len());

    let ids: Vec<String> = (0..1000).map(|i| format!("device-{i:05}")).collect();
    let enc = str_round_trip(&ids);
    assert_eq!(block_codec_name(&enc), Some("str-plain-zstd"));

    let mut bad = Vec::new();
    encode_str(&[b"ok".as_slice(), b"\xff\xfe"], &mut bad);
    assert_eq!(decode_str(&bad, 2, &mut Vec::new()), Err(CodecError::InvalidUtf8 { index: 1 }));
    let mut bad = Vec::new();
    encode_str(&[b"\xc3".as_slice(); 100], &mut bad);
    assert!(matches!(decode_str(&bad, 100, &mut Vec::new()), Err(CodecError::InvalidUtf8 { .. })));
}

#[test]
fn huge_declared_string_size_is_rejected_before_allocating() {
    let ids: Vec<String> = (0..200).map(|i| format!("device-{i:05}")).collect();
    let mut enc = Vec::new();
    encode_str(&ids, &mut enc);
    assert_eq!(enc[0], tag::STR_PLAIN_ZSTD);
    // Replace raw_len with 2^40.
    let mut r = bits::ByteReader::new(&enc[1..], "t");
    r.varint().unwrap();
    let frame = r.rest();
    let mut forged = vec![tag::STR_PLAIN_ZSTD];
    bits::put_varint(&mut forged, 1 << 40);
    forged.extend_from_slice(frame);
    assert!(matches!(decode_str(&forged, 200, &mut Vec::new()), Err(CodecError::TooLarge { .. })));
    // A plausible but wrong length disagrees with the frame header.
    let mut forged = vec![tag::STR_PLAIN_ZSTD];
    bits::put_varint(&mut forged, 1 << 20);
    forged.extend_from_slice(frame);
    assert!(matches!(decode_str(&forged, 200, &mut Vec::new()), Err(CodecError::Corrupt { .. })));
}

#[test]
fn wrong_family_count_and_out_restoration() {
    let mut enc = Vec::new();
    encode_f64(&[1.0, 2.5], &mut enc);
    assert!(matches!(decode_i64(&enc, 2, &mut Vec::new()), Err(CodecError::UnknownCodec { .. })));
    assert!(matches!(decode_timestamps(&enc, 2, &mut Vec::new()), Err(CodecError::UnknownCodec { .. })));
    assert_eq!(float_codec_name(&[0x99]), None);
    assert_eq!(float_codec_name(&[]), None);
    assert_eq!(
        decode_f64(&enc, MAX_BLOCK_VALUES + 1, &mut Vec::new()),
        Err(CodecError::TooManyValues { count: MAX_BLOCK_VALUES + 1, max: MAX_BLOCK_VALUES })
    );
    let mut out = vec![9.0];
    assert!(decode_f64(&enc[..enc.len() - 1], 2, &mut out).is_err());
    assert_eq!(out, [9.0]);
    // Wrong count is caught by the strict end-of-payload check.
    assert!(decode_f64(&enc, 1, &mut Vec::new()).is_err());
    assert!(decode_f64(&enc, 3, &mut Vec::new()).is_err());
}

#[test]
fn every_prefix_of_every_layout_fails() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut t = 0i64;
    let jitter: Vec<i64> = (0..300i64)
        .map(|i| {
            t += 1_000_000 * (1 + (i * i * 7919) % 5000);
            t
        })
        .collect();
    let mut rare: Vec<i64> = (0..300).map(|i| i * 1000).collect();
    rare[150] += 50;
    let periodic: Vec<i64> = (0..300).map(|i| i * 10_000 + (i * 7919) % 100).collect();
    let ts_cases: Vec<Vec<i64>> =
        vec![vec![1], vec![1, 2], vec![i64::MIN, i64::MAX, 0], jitter, rare, periodic];
    let mut modes = std::collections::BTreeSet::new();
    for ts in &ts_cases {
        let mut enc = Vec::new();
        encode_timestamps(ts, &mut enc);
        modes.insert(enc[0]);
        assert_prefixes_fail(Kind::Ts, &enc, ts.len());
    }
    // Every timestamp mode is covered.
    assert_eq!(modes.into_iter().collect::<Vec<_>>(), [0x01, 0x02, 0x03, 0x04]);
    let walk = decimal_walk(5, 3, 300, 100);
    let mut with_exc = walk.clone();
    with_exc[299] = f64::NAN;
    for vals in [vec![1.0], vec![1.0, 2.0], walk, with_exc, vec![0.1, 0.2, 0.30000000000000004]] {
        for codec in [FloatCodec::Gorilla, FloatCodec::Decimal, FloatCodec::Constant] {
            let mut enc = Vec::new();
            encode_f64_with(&vals, codec, &mut enc);
            assert_prefixes_fail(Kind::F64, &enc, vals.len());
        }
    }
    for vals in
        [vec![7i64], vec![1, 2, 3, 4, 100], vec![i64::MIN, i64::MAX], (0..300).map(|i| i * i).collect()]
    {
        let mut enc = Vec::new();
        encode_i64(&vals, &mut enc);
        assert_prefixes_fail(Kind::I64, &enc, vals.len());
        let u: Vec<u64> = vals.iter().map(|&v| v as u64).collect();
        let mut enc = Vec::new();
        encode_u64(&u, &mut enc);
        assert_prefixes_fail(Kind::U64, &enc, u.len());
    }
    let mut runs = vec![true; 100];
    runs[50..].fill(false);
    for vals in [vec![true], vec![false, true, true], runs, (0..77).map(|i| i % 3 == 0).collect()] {
        let mut enc = Vec::new();
        encode_bool(&vals, &mut enc);
        assert_prefixes_fail(Kind::Bool, &enc, vals.len());
    }
    let ids: Vec<String> = (0..100).map(|i| format!("sensor-{i}")).collect();
    let states: Vec<String> = (0..100).map(|i| ["a", "bb", "ccc"][i % 3].to_string()).collect();
    for vals in [s(&[""]), s(&["x", ""]), s(&["on", "off", "on"]), ids, states] {
        let mut enc = Vec::new();
        encode_str(&vals, &mut enc);
        assert_prefixes_fail(Kind::Str, &enc, vals.len());
    }
}

// ---------------------------------------------------------------- properties

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<u64>().prop_map(f64::from_bits),
        any::<f64>(),
        Just(f64::NAN),
        Just(-0.0),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        (0u64..(1 << 52)).prop_map(f64::from_bits), // subnormals
        (-100_000i64..100_000).prop_map(|n| n as f64 / 100.0),
    ]
}

fn any_i64() -> impl Strategy<Value = i64> {
    prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX), -1000i64..1000]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn prop_timestamps_round_trip(ts in proptest::collection::vec(any_i64(), 0..600)) {
        ts_round_trip(&ts);
    }

    #[test]
    fn prop_near_regular_timestamps_round_trip(
        start in any::<i64>(),
        interval in prop_oneof![Just(1i64), Just(1_000_000_000), 1i64..1_000_000_000_000],
        jitter in proptest::collection::vec(-3i64..=3, 1..3000),
    ) {
        let ts: Vec<i64> = jitter
            .iter()
            .enumerate()
            .map(|(i, j)| start.wrapping_add((i as i64).wrapping_mul(interval)).wrapping_add(j * interval / 4))
            .collect();
        ts_round_trip(&ts);
    }

    #[test]
    fn prop_f64_round_trip(vals in proptest::collection::vec(any_f64(), 0..600)) {
        f64_round_trip(&vals);
    }

    #[test]
    fn prop_decimal_walks_pick_decimal(
        seed in any::<u64>(),
        decimals in 1u32..=5,
        len in 8usize..3000,
        step in 1i64..5000,
    ) {
        let vals = decimal_walk(seed, decimals, len, step);
        let enc = f64_round_trip(&vals);
        prop_assert_eq!(float_codec_name(&enc), Some("decimal"));
    }

    #[test]
    fn prop_i64_u64_round_trip(vals in proptest::collection::vec(any_i64(), 0..600)) {
        i64_round_trip(&vals);
        let u: Vec<u64> = vals.iter().map(|&v| v as u64).collect();
        u64_round_trip(&u);
    }

    #[test]
    fn prop_bool_round_trip(vals in proptest::collection::vec(any::<bool>(), 0..600), runs in 0usize..5) {
        bool_round_trip(&vals);
        let mut runny = vals.clone();
        runny.sort_unstable();
        runny.truncate(runny.len() / (runs + 1));
        bool_round_trip(&runny);
    }

    #[test]
    fn prop_str_round_trip(vals in proptest::collection::vec(
        prop_oneof![".{0,12}", "(on|off|idle)", Just(String::new())], 0..300)) {
        str_round_trip(&vals);
    }

    /// Flipping bytes of a valid block: any result but a panic, and `out` untouched on
    /// error.
    #[test]
    fn prop_byte_flips_never_panic(
        kind in 0usize..6,
        seed in any::<u64>(),
        len in 1usize..400,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        let (k, mut enc) = valid_block(kind, seed, len);
        for (pos, x) in flips {
            let i = pos % enc.len();
            enc[i] ^= x.max(1);
        }
        let _ = decode_any(k, &enc, len);
        let mut out = vec![1i64, 2];
        if decode_i64(&enc, len, &mut out).is_err() {
            prop_assert_eq!(out, vec![1, 2]);
        }
    }

    #[test]
    fn prop_arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        tag in prop_oneof![0x01u8..=0x04, 0x10u8..=0x12, 0x20u8..=0x22, 0x30u8..=0x31, 0x40u8..=0x43, any::<u8>()],
        count in prop_oneof![0usize..10, 0usize..3000, Just(MAX_BLOCK_VALUES)],
    ) {
        let mut input = vec![tag];
        input.extend_from_slice(&bytes);
        for k in [Kind::Ts, Kind::F64, Kind::I64, Kind::U64, Kind::Bool, Kind::Str] {
            let _ = decode_any(k, &input, count);
        }
    }
}

/// A valid block of some kind, for the flip test.
fn valid_block(kind: usize, seed: u64, len: usize) -> (Kind, Vec<u8>) {
    let mut enc = Vec::new();
    let walk = decimal_walk(seed, (seed % 5) as u32 + 1, len, 30);
    match kind {
        0 => {
            let ts: Vec<i64> =
                walk.iter().enumerate().map(|(i, v)| i as i64 * 1000 + (*v as i64 % 7)).collect();
            encode_timestamps(&ts, &mut enc);
            (Kind::Ts, enc)
        }
        1 => {
            encode_f64(&walk, &mut enc);
            (Kind::F64, enc)
        }
        2 => {
            let mut g = Vec::new();
            encode_f64_with(&walk, FloatCodec::Gorilla, &mut g);
            (Kind::F64, g)
        }
        3 => {
            let ints: Vec<i64> = walk.iter().map(|v| (*v * 100.0) as i64).collect();
            encode_i64(&ints, &mut enc);
            (Kind::I64, enc)
        }
        4 => {
            let b: Vec<bool> = walk.iter().map(|v| v.to_bits() % 3 == 0).collect();
            encode_bool(&b, &mut enc);
            (Kind::Bool, enc)
        }
        _ => {
            let s: Vec<String> = walk.iter().map(|v| format!("{}", (*v as i64) % 13)).collect();
            encode_str(&s, &mut enc);
            (Kind::Str, enc)
        }
    }
}
