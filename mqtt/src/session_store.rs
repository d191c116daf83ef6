//! The persistent sessions file, `<data_dir>/mqtt/sessions.bin`: the subscriptions and queued
//! QoS 1 commands of every persistent session (3.1.1 `clean session = false`, 5.0 Session
//! Expiry Interval > 0), and the delayed wills not yet published, so they survive a restart.
//!
//! Version 2 (MQTT 5.0 support) adds each session's expiry interval and deadline and each
//! command's expiry deadline; version 1 files are still read (their sessions and commands
//! never expire, as 3.1.1 sessions do). Version 3 adds the delayed Last Wills (5.0 Will Delay
//! Interval) waiting to be published, with their wall-clock due time, so a restart neither
//! loses nor cancels them; versions 1 and 2 are read as holding none. Version 4 adds each
//! session's owner, the identity (device id) it belongs to, so that another identity cannot
//! take it after a restart; sessions of versions 1 to 3 are read without one
//! (`Sessions::restore` says whose they become). The next save writes version 4.
//! Specified byte by byte in `docs/file-formats.md` ("MQTT sessions"); the test at the bottom
//! pins the example there.
//!
//! The whole file is rewritten on every save: written to `sessions.bin.tmp`, fsynced, renamed
//! over the old one, and the directory fsynced, so a reader sees the old or the new file,
//! never a mix. It is small (a device has a filter or two and a bounded queue), and saves are
//! coalesced by the caller. A file that fails its checksums is refused with an error naming
//! it (never deleted): it cannot be a torn write, so it is damage an operator should see.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use rumqttc::QoS;

use super::command::Command;

pub const MAGIC: &[u8; 8] = b"STRATSES";
pub const VERSION: u16 = 4;
/// The version before MQTT 5.0 support, still read.
pub const VERSION_1: u16 = 1;
/// The version before delayed wills were saved, still read.
pub const VERSION_2: u16 = 2;
/// The version before session owners were saved, still read.
pub const VERSION_3: u16 = 3;
const HEADER_LEN: usize = 16;
/// Largest body accepted when reading (a sanity bound against a damaged length).
const MAX_BODY: u32 = 1 << 30;

/// One persistent session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub client_id: String,
    /// The identity (device id) the session belongs to; empty when read from a file of
    /// version 1 to 3, which did not say.
    pub owner: String,
    /// Session Expiry Interval, seconds (`wire::EXPIRY_NEVER`: never).
    pub expiry: u32,
    /// When the (offline) session ends, Unix ms; `None` when it never does or was online.
    pub expires_at_ms: Option<u64>,
    pub subscriptions: Vec<(String, QoS)>,
    pub queue: Vec<Command>,
}

/// A delayed Last Will waiting to be published (5.0 Will Delay Interval), as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWill {
    /// The client whose will it is: a reconnect with this id cancels it.
    pub client_id: String,
    /// The device it is published for (the ACL and the topic mapping apply as for the device).
    pub device: String,
    pub topic: String,
    pub qos: QoS,
    /// When to publish it, Unix ms: its delay or its session's end, whichever came first.
    pub due_ms: u64,
    pub payload: Bytes,
}

/// What the file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Saved {
    pub sessions: Vec<StoredSession>,
    pub wills: Vec<StoredWill>,
}

/// Why the sessions file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SessionFileError {
    #[error("mqtt sessions file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("mqtt sessions file {path} is damaged at byte {offset}: {what} (move it aside to start without the saved sessions)")]
    Corrupt { path: PathBuf, offset: usize, what: &'static str },
    #[error(
        "mqtt sessions file {path} has version {version}; this build reads versions {VERSION_1} to {VERSION}"
    )]
    UnsupportedVersion { path: PathBuf, version: u16 },
}

/// The sessions file of a data directory.
pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join("mqtt").join("sessions.bin")
}

fn qos_byte(q: QoS) -> u8 {
    q as u8
}

/// Encodes `saved` as a whole file (header, then one checksummed record).
pub fn encode(saved: &Saved) -> Vec<u8> {
    let sessions = &saved.sessions;
    let mut body = Vec::new();
    body.extend_from_slice(&(sessions.len() as u32).to_le_bytes());
    // Lengths were bounded on the way in (client ids 256 B, topics by the packet size, at most
    // 100 filters per session): the casts cannot truncate.
    let str16 = |b: &mut Vec<u8>, s: &str| {
        b.extend_from_slice(&(s.len() as u16).to_le_bytes());
        b.extend_from_slice(s.as_bytes());
    };
    // 0 stands for "no deadline": no real deadline is at the epoch.
    let deadline = |t: Option<u64>| t.unwrap_or(0).to_le_bytes();
    for s in sessions {
        str16(&mut body, &s.client_id);
        // Device ids are at most 128 bytes (`topic::valid_device_id`).
        str16(&mut body, &s.owner);
        body.extend_from_slice(&s.expiry.to_le_bytes());
        body.extend_from_slice(&deadline(s.expires_at_ms));
        body.extend_from_slice(&(s.subscriptions.len() as u16).to_le_bytes());
        for (filter, qos) in &s.subscriptions {
            str16(&mut body, filter);
            body.push(qos_byte(*qos));
        }
        body.extend_from_slice(&(s.queue.len() as u32).to_le_bytes());
        for c in &s.queue {
            str16(&mut body, &c.topic);
            body.push(qos_byte(c.qos));
            body.extend_from_slice(&deadline(c.expires_at_ms));
            body.extend_from_slice(&(c.payload.len() as u32).to_le_bytes());
            body.extend_from_slice(&c.payload);
        }
    }
    body.extend_from_slice(&(saved.wills.len() as u32).to_le_bytes());
    for w in &saved.wills {
        // The payload came in a CONNECT bounded by `mqtt.max_packet_size` (256 MiB at most).
        str16(&mut body, &w.client_id);
        str16(&mut body, &w.device);
        str16(&mut body, &w.topic);
        body.push(qos_byte(w.qos));
        body.extend_from_slice(&w.due_ms.to_le_bytes());
        body.extend_from_slice(&(w.payload.len() as u32).to_le_bytes());
        body.extend_from_slice(&w.payload);
    }
    let mut out = Vec::with_capacity(HEADER_LEN + 8 + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    let crc = crc32c::crc32c(&out[..12]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// A cursor over the body that reports where it ran short.
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], (usize, &'static str)> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or((self.base + self.pos, "truncated"))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, (usize, &'static str)> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, (usize, &'static str)> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, (usize, &'static str)> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    /// A deadline: 0 is none.
    fn deadline(&mut self) -> Result<Option<u64>, (usize, &'static str)> {
        let t = self.u64()?;
        Ok((t != 0).then_some(t))
    }
    fn u64(&mut self) -> Result<u64, (usize, &'static str)> {
        let s = self.take(8)?;
        Ok(u64::from_le_bytes(s.try_into().expect("8 bytes")))
    }
    fn str16(&mut self) -> Result<String, (usize, &'static str)> {
        let at = self.base + self.pos;
        let n = usize::from(self.u16()?);
        let s = self.take(n)?;
        std::str::from_utf8(s).map(str::to_owned).map_err(|_| (at, "string is not UTF-8"))
    }
    fn qos(&mut self) -> Result<QoS, (usize, &'static str)> {
        let at = self.base + self.pos;
        match self.u8()? {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            _ => Err((at, "QoS is not 0 or 1")),
        }
    }
}

/// Decodes a whole file.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<Saved, SessionFileError> {
    let corrupt =
        |offset: usize, what: &'static str| SessionFileError::Corrupt { path: path.to_owned(), offset, what };
    if bytes.len() < HEADER_LEN + 8 {
        return Err(corrupt(bytes.len(), "shorter than the header"));
    }
    if &bytes[..8] != MAGIC {
        return Err(corrupt(0, "not a Strata sessions file (magic)"));
    }
    let stored_crc = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[..12]) != stored_crc {
        return Err(corrupt(12, "header checksum mismatch"));
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if !(VERSION_1..=VERSION).contains(&version) {
        return Err(SessionFileError::UnsupportedVersion { path: path.to_owned(), version });
    }
    let v2 = version >= VERSION_2;
    let v3 = version >= VERSION_3;
    let v4 = version >= 4;
    let len = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"));
    let start = HEADER_LEN + 8;
    if len > MAX_BODY || bytes.len() - start != len as usize {
        return Err(corrupt(16, "record length does not match the file"));
    }
    let body = &bytes[start..];
    if crc32c::crc32c(body) != crc {
        return Err(corrupt(20, "record checksum mismatch"));
    }
    let mut r = Reader { b: body, pos: 0, base: start };
    let parse = |r: &mut Reader<'_>| -> Result<Saved, (usize, &'static str)> {
        let n = r.u32()?;
        let mut out = Vec::new();
        for _ in 0..n {
            let client_id = r.str16()?;
            let owner = if v4 { r.str16()? } else { String::new() };
            let (expiry, expires_at_ms) =
                if v2 { (r.u32()?, r.deadline()?) } else { (super::wire::EXPIRY_NEVER, None) };
            let subs = r.u16()?;
            let mut subscriptions = Vec::with_capacity(usize::from(subs).min(100));
            for _ in 0..subs {
                let f = r.str16()?;
                subscriptions.push((f, r.qos()?));
            }
            let queued = r.u32()?;
            let mut queue = Vec::new();
            for _ in 0..queued {
                let topic = r.str16()?;
                let qos = r.qos()?;
                let expires_at_ms = if v2 { r.deadline()? } else { None };
                let len = r.u32()? as usize;
                let payload = Bytes::copy_from_slice(r.take(len)?);
                queue.push(Command { topic, payload, qos, expires_at_ms });
            }
            out.push(StoredSession { client_id, owner, expiry, expires_at_ms, subscriptions, queue });
        }
        let mut wills = Vec::new();
        if v3 {
            for _ in 0..r.u32()? {
                let client_id = r.str16()?;
                let device = r.str16()?;
                let topic = r.str16()?;
                let qos = r.qos()?;
                let due_ms = r.u64()?;
                let len = r.u32()? as usize;
                let payload = Bytes::copy_from_slice(r.take(len)?);
                wills.push(StoredWill { client_id, device, topic, qos, due_ms, payload });
            }
        }
        if r.pos != r.b.len() {
            return Err((r.base + r.pos, "bytes after the last session or will"));
        }
        Ok(Saved { sessions: out, wills })
    };
    parse(&mut r).map_err(|(offset, what)| corrupt(offset, what))
}

/// Reads the file; a missing one holds no sessions.
pub fn load(path: &Path) -> Result<Saved, SessionFileError> {
    match std::fs::read(path) {
        Ok(bytes) => decode(path, &bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Saved::default()),
        Err(source) => Err(SessionFileError::Io { path: path.to_owned(), source }),
    }
}

/// Replaces the file atomically (temporary file, fsync, rename, directory fsync).
pub fn save(path: &Path, saved: &Saved) -> Result<(), SessionFileError> {
    let io = |source| SessionFileError::Io { path: path.to_owned(), source };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("bin.tmp");
    {
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&encode(saved)).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(d) = dir.and_then(|d| std::fs::File::open(d).ok()) {
        // Makes the rename durable; some filesystems cannot fsync a directory: harmless.
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sessions of the version 3 example, with their owner: the `mqtt-sessions` block.
    fn example() -> Saved {
        let mut e = example_v3();
        e.sessions[0].owner = "pump-5".into();
        e
    }

    /// The sessions of the version 2 example, with one delayed will: the `mqtt-sessions-v3`
    /// block.
    fn example_v3() -> Saved {
        Saved {
            sessions: example_v2(),
            wills: vec![StoredWill {
                client_id: "d5".into(),
                device: "d5".into(),
                topic: "telemetry/d5/gone".into(),
                qos: QoS::AtMostOnce,
                due_ms: 1_700_000_002_000,
                payload: Bytes::from_static(b"gone v=1i"),
            }],
        }
    }

    /// One session as a version 2 file held it (no wills): the `mqtt-sessions-v2` block.
    fn example_v2() -> Vec<StoredSession> {
        vec![StoredSession {
            client_id: "d5".into(),
            owner: String::new(),
            expiry: 3600,
            expires_at_ms: Some(1_700_000_000_000),
            subscriptions: vec![("commands/d5/#".into(), QoS::AtLeastOnce)],
            queue: vec![Command {
                topic: "commands/d5/go".into(),
                payload: Bytes::from_static(b"now"),
                qos: QoS::AtLeastOnce,
                expires_at_ms: Some(1_700_000_060_000),
            }],
        }]
    }

    /// The same session as a version 1 file held it (no expiry): the `mqtt-sessions-v1` block.
    fn example_v1() -> Vec<StoredSession> {
        let mut e = example_v2();
        e[0].expiry = crate::wire::EXPIRY_NEVER;
        e[0].expires_at_ms = None;
        e[0].queue[0].expires_at_ms = None;
        e
    }

    fn doc_block(name: &str) -> Vec<u8> {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/file-formats.md")).unwrap();
        let block = doc.split(&format!("```hex {name}\n")).nth(1).expect("hex block");
        let block = block.split("```").next().unwrap();
        block
            .split_whitespace()
            .filter(|t| t.len() == 2)
            .filter_map(|t| u8::from_str_radix(t, 16).ok())
            .collect()
    }

    /// Version 1 files (written before MQTT 5.0 support) still load: the example of the old
    /// docs, kept in docs/file-formats.md.
    #[test]
    fn version_1_still_reads() {
        let path = Path::new("sessions.bin");
        let saved = decode(path, &doc_block("mqtt-sessions-v1")).unwrap();
        assert_eq!(saved, Saved { sessions: example_v1(), wills: Vec::new() });
    }

    /// Version 3 files (written before session owners were saved) still load, without owners.
    #[test]
    fn version_3_still_reads() {
        let path = Path::new("sessions.bin");
        let saved = decode(path, &doc_block("mqtt-sessions-v3")).unwrap();
        assert_eq!(saved, example_v3());
    }

    /// Version 2 files (written before delayed wills were saved) still load, with no wills.
    #[test]
    fn version_2_still_reads() {
        let path = Path::new("sessions.bin");
        let saved = decode(path, &doc_block("mqtt-sessions-v2")).unwrap();
        assert_eq!(saved, Saved { sessions: example_v2(), wills: Vec::new() });
    }

    /// The `hex mqtt-sessions` block of docs/file-formats.md is exactly [`example`] encoded.
    #[test]
    fn format_doc_is_pinned() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/file-formats.md")).unwrap();
        let block = doc.split("```hex mqtt-sessions\n").nth(1).expect("hex mqtt-sessions block");
        let block = block.split("```").next().unwrap();
        let want: Vec<u8> = block
            .split_whitespace()
            .filter(|t| t.len() == 2)
            .filter_map(|t| u8::from_str_radix(t, 16).ok())
            .collect();
        let got = encode(&example());
        let hex = |b: &[u8]| {
            b.chunks(16)
                .map(|c| c.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(hex(&want), hex(&got), "docs/file-formats.md drifted; actual bytes:\n{}", hex(&got));
    }

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        assert_eq!(load(&path).unwrap(), Saved::default());
        save(&path, &example()).unwrap();
        assert_eq!(load(&path).unwrap(), example());
        save(&path, &Saved::default()).unwrap();
        assert_eq!(load(&path).unwrap(), Saved::default());
        let good = encode(&example());
        // Every single flipped byte and every truncation is detected, never a panic.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(decode(&path, &bad).is_err(), "flip at {i}");
            assert!(decode(&path, &good[..i]).is_err(), "cut at {i}");
        }
        let mut v5 = good.clone();
        v5[8] = 5;
        let crc = crc32c::crc32c(&v5[..12]);
        v5[12..16].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(decode(&path, &v5), Err(SessionFileError::UnsupportedVersion { version: 5, .. })));
    }
}
