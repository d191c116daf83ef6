//! The dead-letter store: messages that could not be stored whole, kept on disk so operators
//! can see why and replay them once the cause is fixed.
//!
//! One JSON file per message, `<data_dir>/mqtt/dead-letters/<id, 20 digits>.json`, holding
//! the topic, device, client id, reason, time and payload (base64). Bounded by
//! `mqtt.dead_letter_max_entries` and `mqtt.dead_letter_max_size`: past either, the oldest
//! entries are deleted (and counted).
//!
//! A dead letter of an acknowledged message is the only copy of what the device sent (the
//! message's points were refused, in part or whole, and the PUBACK tells the device not to
//! send it again), so it is made durable before the PUBACK, as an engine write is: the file
//! is fsynced ([`DeadLetters::push`] with `durable`) and then the directory, once per batch
//! ([`DeadLetters::sync_dir`]), so the new name survives a power loss too. Dead letters of
//! QoS 0 batches are only written (nothing was acknowledged). Deleting one (replay, bounds)
//! is not synced: an entry that comes back after a crash is replayed or listed again, which
//! is harmless.
//!
//! A file per entry keeps deletion (after a replay, or when full) O(1) and makes a torn write
//! cost one entry, which is skipped when listing.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// One dead letter as stored and listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub id: u64,
    /// Unix time in milliseconds when it was stored.
    pub time_ms: u64,
    pub client_id: String,
    pub device: String,
    pub topic: String,
    pub qos: u8,
    pub reason: String,
    /// The payload, base64 (standard alphabet, padded).
    pub payload_base64: String,
}

impl DeadLetter {
    pub fn payload(&self) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(&self.payload_base64).unwrap_or_default()
    }
}

/// What a new dead letter holds (the id and time are assigned by the store).
#[derive(Debug, Clone)]
pub struct NewDeadLetter<'a> {
    pub client_id: &'a str,
    pub device: &'a str,
    pub topic: &'a str,
    pub qos: u8,
    pub reason: &'a str,
    pub payload: &'a [u8],
}

#[derive(Debug)]
struct State {
    /// (id, file size), oldest first.
    entries: VecDeque<(u64, u64)>,
    bytes: u64,
    next_id: u64,
}

/// How the store makes a file (or its directory) durable: `File::sync_all` in production; a
/// seam so that tests can count fsyncs or make them fail.
pub type SyncFn = Arc<dyn Fn(&File) -> std::io::Result<()> + Send + Sync>;

/// The store. Methods do file I/O: call them from blocking contexts.
pub struct DeadLetters {
    dir: PathBuf,
    max_entries: usize,
    max_bytes: u64,
    state: Mutex<State>,
    sync: SyncFn,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters").field("dir", &self.dir).finish_non_exhaustive()
    }
}

fn file_name(id: u64) -> String {
    format!("{id:020}.json")
}

impl DeadLetters {
    /// Opens (creating) the store in `dir`, indexing what an earlier run left.
    pub fn open(dir: &Path, max_entries: usize, max_bytes: u64) -> std::io::Result<DeadLetters> {
        DeadLetters::open_with_sync(dir, max_entries, max_bytes, Arc::new(File::sync_all))
    }

    /// [`DeadLetters::open`] with `sync` in place of `File::sync_all` (tests).
    pub fn open_with_sync(
        dir: &Path,
        max_entries: usize,
        max_bytes: u64,
        sync: SyncFn,
    ) -> std::io::Result<DeadLetters> {
        std::fs::create_dir_all(dir)?;
        let mut entries = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name();
            let Some(id) =
                name.to_str().and_then(|n| n.strip_suffix(".json")).and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            entries.push((id, e.metadata()?.len()));
        }
        entries.sort_unstable();
        let bytes = entries.iter().map(|e| e.1).sum();
        let next_id = entries.last().map_or(1, |e| e.0 + 1);
        let store = DeadLetters {
            dir: dir.to_owned(),
            max_entries,
            max_bytes,
            state: Mutex::new(State { entries: entries.into(), bytes, next_id }),
            sync,
        };
        store.enforce_bounds(&mut store.state.lock());
        Ok(store)
    }

    /// Stores a dead letter; returns its id and how many old entries were dropped for room.
    /// With `durable` the file is fsynced before this returns; its name is durable once
    /// [`DeadLetters::sync_dir`] returned after it.
    pub fn push(&self, d: &NewDeadLetter<'_>, durable: bool) -> std::io::Result<(u64, usize)> {
        let time_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| t.as_millis() as u64);
        let mut st = self.state.lock();
        let id = st.next_id;
        st.next_id += 1;
        let letter = DeadLetter {
            id,
            time_ms,
            client_id: d.client_id.to_owned(),
            device: d.device.to_owned(),
            topic: d.topic.to_owned(),
            qos: d.qos,
            reason: d.reason.to_owned(),
            payload_base64: base64::engine::general_purpose::STANDARD.encode(d.payload),
        };
        let body = serde_json::to_vec(&letter).map_err(std::io::Error::other)?;
        // Written under the lock: ids stay in file order and the byte count exact. Dead
        // letters are rare (a misbehaving device), so the serialization is not a bottleneck.
        let path = self.dir.join(file_name(id));
        let written = File::create(&path).and_then(|mut f| {
            f.write_all(&body)?;
            if durable {
                (self.sync)(&f)?;
            }
            Ok(())
        });
        if let Err(e) = written {
            // Not indexed, so not listed; the next id is not reused (the id space is u64).
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        st.entries.push_back((id, body.len() as u64));
        st.bytes += body.len() as u64;
        let dropped = self.enforce_bounds(&mut st);
        Ok((id, dropped))
    }

    /// Makes the names of the files pushed before durable (fsyncs the directory).
    pub fn sync_dir(&self) -> std::io::Result<()> {
        (self.sync)(&File::open(&self.dir)?)
    }

    fn enforce_bounds(&self, st: &mut State) -> usize {
        let mut dropped = 0;
        while st.entries.len() > self.max_entries || (st.bytes > self.max_bytes && st.entries.len() > 1) {
            let Some((id, size)) = st.entries.pop_front() else { break };
            st.bytes -= size;
            let _ = std::fs::remove_file(self.dir.join(file_name(id)));
            dropped += 1;
        }
        dropped
    }

    /// Entries kept now.
    pub fn len(&self) -> usize {
        self.state.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `limit` entries with ids above `after`, oldest first. Unreadable files (a torn
    /// write) are skipped.
    pub fn list(&self, after: u64, limit: usize) -> Vec<DeadLetter> {
        let ids: Vec<u64> = {
            let st = self.state.lock();
            st.entries.iter().map(|e| e.0).filter(|id| *id > after).take(limit).collect()
        };
        ids.into_iter().filter_map(|id| self.get(id)).collect()
    }

    pub fn get(&self, id: u64) -> Option<DeadLetter> {
        let bytes = std::fs::read(self.dir.join(file_name(id))).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Deletes an entry; false if there is none with that id.
    pub fn remove(&self, id: u64) -> bool {
        let mut st = self.state.lock();
        let Some(pos) = st.entries.iter().position(|e| e.0 == id) else { return false };
        let (_, size) = st.entries.remove(pos).expect("position is in range");
        st.bytes -= size;
        let _ = std::fs::remove_file(self.dir.join(file_name(id)));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter<'a>(payload: &'a [u8]) -> NewDeadLetter<'a> {
        NewDeadLetter {
            client_id: "c",
            device: "d1",
            topic: "telemetry/d1/t",
            qos: 1,
            reason: "bad",
            payload,
        }
    }

    #[test]
    fn push_list_remove_reopen_and_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let store = DeadLetters::open(dir.path(), 3, 1 << 20).unwrap();
        for i in 0..5u8 {
            let (id, dropped) = store.push(&letter(&[i, 0xff]), i % 2 == 0).unwrap();
            assert_eq!(id, u64::from(i) + 1);
            assert_eq!(dropped, usize::from(i >= 3));
        }
        let all = store.list(0, 100);
        assert_eq!(all.iter().map(|d| d.id).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert_eq!(all[0].payload(), vec![2, 0xff]);
        assert_eq!(store.list(3, 1).len(), 1);
        assert!(store.remove(4));
        assert!(!store.remove(4));
        drop(store);
        // A torn file is skipped, not fatal.
        std::fs::write(dir.path().join(file_name(9)), b"{\"id\":").unwrap();
        let store = DeadLetters::open(dir.path(), 3, 1 << 20).unwrap();
        assert_eq!(store.list(0, 100).iter().map(|d| d.id).collect::<Vec<_>>(), vec![3, 5]);
        assert_eq!(store.push(&letter(b"x"), false).unwrap().0, 10, "ids continue after the highest file");
        // The byte bound drops the oldest too.
        let small = DeadLetters::open(&dir.path().join("small"), 100, 400).unwrap();
        for _ in 0..10 {
            small.push(&letter(&[7; 100]), false).unwrap();
        }
        assert!(small.len() < 10 && !small.is_empty(), "{}", small.len());
    }

    /// `durable` pushes fsync the file (and `sync_dir` the directory); a failed fsync fails
    /// the push and leaves no entry behind.
    #[test]
    fn durable_pushes_are_fsynced_and_a_failed_fsync_stores_nothing() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let syncs = Arc::new(AtomicUsize::new(0));
        let fail = Arc::new(AtomicBool::new(false));
        let (s, f) = (syncs.clone(), fail.clone());
        let sync: SyncFn = Arc::new(move |file: &File| {
            s.fetch_add(1, Ordering::SeqCst);
            if f.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("injected fsync failure"));
            }
            file.sync_all()
        });
        let store = DeadLetters::open_with_sync(dir.path(), 10, 1 << 20, sync).unwrap();
        store.push(&letter(b"a"), false).unwrap();
        assert_eq!(syncs.load(Ordering::SeqCst), 0, "not durable: written only");
        store.push(&letter(b"b"), true).unwrap();
        store.sync_dir().unwrap();
        assert_eq!(syncs.load(Ordering::SeqCst), 2, "the file, then the directory");
        fail.store(true, Ordering::SeqCst);
        assert!(store.push(&letter(b"c"), true).is_err());
        assert_eq!(store.len(), 2, "a dead letter that could not be made durable is not kept");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "nor its file");
    }
}
