//! Bodies of the fuzz targets for the server's on-disk decoders: the MQTT sessions file
//! (`mqtt/sessions.bin`) and the dead-letter store's entries. `fuzz/fuzz_targets/
//! {sessions,dead_letter}.rs` (cargo-fuzz) and the property tests below (the suite) call the
//! same functions. As in `strata_engine::fuzzing`, the sessions body fixes the checksums up
//! (and the record length) so mutated bytes reach the body decoder instead of stopping at the
//! checksum. Not part of the API: `#[doc(hidden)]`.

use std::path::Path;

use bytes::Bytes;
use rumqttc::QoS;

use crate::command::Command;
use crate::dead_letter::DeadLetter;
use crate::session_store::{self, Saved, StoredSession, StoredWill, MAGIC, VERSION, VERSION_1};

const HEADER_LEN: usize = 16;

/// Recomputes a sessions file's header checksum, its record length (to the end of the file)
/// and its body checksum.
pub fn fix_sessions_crcs(file: &mut [u8]) {
    if file.len() < HEADER_LEN {
        return;
    }
    let crc = crc32c::crc32c(&file[..12]);
    file[12..16].copy_from_slice(&crc.to_le_bytes());
    if file.len() < HEADER_LEN + 8 {
        return;
    }
    let body_len = (file.len() - HEADER_LEN - 8) as u32;
    file[16..20].copy_from_slice(&body_len.to_le_bytes());
    let crc = crc32c::crc32c(&file[HEADER_LEN + 8..]);
    file[20..24].copy_from_slice(&crc.to_le_bytes());
}

/// The sessions file decoder (`session_store::decode`). Input starting with the magic is a
/// whole file (checksums fixed up); any other input is `version selector u8` + the body. What
/// decodes must encode and decode back to the same sessions and wills.
pub fn sessions_file(data: &[u8]) {
    let file = if data.starts_with(MAGIC) {
        let mut file = data.to_vec();
        fix_sessions_crcs(&mut file);
        file
    } else {
        let Some((&pick, body)) = data.split_first() else { return };
        let version = VERSION_1 + u16::from(pick) % (VERSION - VERSION_1 + 1);
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&version.to_le_bytes());
        file.extend_from_slice(&[0; 2 + 4 + 4 + 4]);
        file.extend_from_slice(body);
        fix_sessions_crcs(&mut file);
        file
    };
    let path = Path::new("sessions.bin");
    if let Ok(saved) = session_store::decode(path, &file) {
        let again = session_store::encode(&saved);
        let back = session_store::decode(path, &again).expect("what was decoded encodes to a valid file");
        assert_eq!(back, saved, "decode, encode, decode is the identity");
    }
}

/// A dead letter as listed (`DeadLetters::get`): JSON that decodes must have a payload that
/// decodes (or is empty) and survive a round trip.
pub fn dead_letter(data: &[u8]) {
    if let Ok(d) = serde_json::from_slice::<DeadLetter>(data) {
        let _ = d.payload();
        let again = serde_json::to_vec(&d).expect("a dead letter serializes");
        let back: DeadLetter = serde_json::from_slice(&again).expect("what was serialized decodes");
        assert_eq!(back, d);
    }
}

/// Real files to start the fuzzers from: `(target, file name, bytes)`.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let session = |id: &str, subs: usize, queued: usize| StoredSession {
        client_id: id.into(),
        owner: id.into(),
        expiry: 3600,
        expires_at_ms: Some(1_700_000_000_000),
        subscriptions: (0..subs).map(|i| (format!("commands/{id}/{i}/#"), QoS::AtLeastOnce)).collect(),
        queue: (0..queued)
            .map(|i| Command {
                topic: format!("commands/{id}/go"),
                payload: Bytes::from(format!("cmd {i}")),
                qos: QoS::AtLeastOnce,
                expires_at_ms: (i % 2 == 0).then_some(1_700_000_060_000),
            })
            .collect(),
    };
    let will = StoredWill {
        client_id: "d5".into(),
        device: "d5".into(),
        topic: "telemetry/d5/gone".into(),
        qos: QoS::AtMostOnce,
        due_ms: 1_700_000_002_000,
        payload: Bytes::from_static(b"gone v=1i"),
    };
    let files = [
        Saved::default(),
        Saved { sessions: vec![session("d5", 1, 1)], wills: vec![will.clone()] },
        Saved { sessions: vec![session("a", 3, 4), session("b", 0, 0)], wills: vec![will] },
    ];
    let mut out: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(i, s)| ("sessions", format!("seed-{i}.bin"), session_store::encode(s)))
        .collect();
    let letter = DeadLetter {
        id: 7,
        time_ms: 1_700_000_000_000,
        client_id: "c".into(),
        device: "d1".into(),
        topic: "telemetry/d1/t".into(),
        qos: 1,
        reason: "field type conflict".into(),
        payload_base64: "dD0xLjU=".into(),
    };
    out.push(("dead_letter", "seed-0.json".into(), serde_json::to_vec(&letter).expect("serializes")));
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn seed_files(target: &str) -> Vec<Vec<u8>> {
        seeds().into_iter().filter(|s| s.0 == target).map(|s| s.2).collect()
    }

    /// A seed with a few bytes overwritten and maybe cut short.
    fn mutated(target: &'static str) -> impl Strategy<Value = Vec<u8>> {
        let files = seed_files(target);
        (
            0..files.len(),
            proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            any::<Option<usize>>(),
        )
            .prop_map(move |(i, edits, cut)| strata_engine::fuzzing::mutate(&files[i], &edits, cut))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: strata_engine::fuzzing::proptest_cases(500), failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn sessions_bodies_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            sessions_file(&data);
        }

        #[test]
        fn sessions_files_mutated_never_panic(data in mutated("sessions")) {
            sessions_file(&data);
        }

        #[test]
        fn dead_letters_mutated_never_panic(data in mutated("dead_letter")) {
            dead_letter(&data);
        }
    }

    /// The seeds decode whole, and fixing the checksums up lets a mutated body through to the
    /// body decoder (which a plain decode refuses at the checksum).
    #[test]
    fn seeds_decode_and_fix_up_reaches_the_body() {
        let path = Path::new("sessions.bin");
        let files = seed_files("sessions");
        for f in &files {
            session_store::decode(path, f).unwrap();
        }
        let mut f = files[1].clone();
        let last = f.len() - 1;
        f[last] = b'X'; // the will's payload: still a valid file once the checksum is fixed
        assert!(matches!(
            session_store::decode(path, &f),
            Err(session_store::SessionFileError::Corrupt { offset: 20, .. })
        ));
        fix_sessions_crcs(&mut f);
        let saved = session_store::decode(path, &f).unwrap();
        assert_eq!(saved.wills[0].payload.last(), Some(&b'X'));
        let letter = seed_files("dead_letter").remove(0);
        let d: DeadLetter = serde_json::from_slice(&letter).unwrap();
        assert_eq!(d.payload(), b"t=1.5");
    }

    /// Writes the seeds to `$STRATA_FUZZ_SEEDS/<target>/` (`scripts/fuzz.sh` runs this).
    #[test]
    #[ignore = "writes files; run by scripts/fuzz.sh"]
    fn write_fuzz_seeds() {
        let Some(out) = std::env::var_os("STRATA_FUZZ_SEEDS") else { return };
        for (target, name, bytes) in seeds() {
            let dir = Path::new(&out).join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}
