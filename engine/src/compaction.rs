//! Compaction: merges a partition's segments into one.
//!
//! Flushes leave many small segments per partition (one per memtable), late data leaves
//! segments that overlap older ones, and deletes leave tombstoned points behind. Compaction
//! rewrites all segments of a partition as one: columns merged in age order (the newest write
//! of a point wins), tombstoned points and dropped series left out, blocks re-cut to full size,
//! so that scans touch fewer files and more blocks can be answered from their statistics.
//!
//! Crash safety: the output is written to a `.tmp` file, fsynced, renamed to its final name
//! `<hi>-<lo>-g<generation>.seg` and the directory fsynced; only then are the inputs removed
//! from the partition and deleted. The name says which sequences it replaces, so a crash
//! after the rename leaves inputs that [`crate::partition::SegmentName::replaces`] identifies
//! and open deletes; a crash before it leaves only a `.tmp` that open deletes. Either the old
//! or the new set is live, never a mix that loses or doubles a point.
//!
//! Readers are never blocked: they hold their own snapshot of a partition's segment list, and
//! inputs deleted under them stay readable through their memory maps (every input is opened
//! before the swap). Writes are never blocked: compaction takes no shard lock. A rate limit on
//! output bytes keeps it from starving ingest of disk bandwidth.

use std::collections::BTreeSet;
use std::fs;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::catalog::Tombstone;
use crate::engine::{Engine, Inner};
use crate::error::LifecycleError;
use crate::memtable::sort_dedup_last_wins;
use crate::model::{DbId, SeriesId, Values};
use crate::partition::{Partition, SegmentHandle, SegmentName};
use crate::segment::{SegmentReader, SegmentWriter};

/// What one compaction pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CompactionReport {
    pub partitions: u64,
    pub segments_in: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub values: u64,
}

impl Engine {
    /// Compacts every partition with more than one segment, or with tombstoned data, now.
    /// The maintenance thread compacts on its own once a partition has
    /// `compaction_min_segments`; this is for operators, tests and benchmarks.
    pub fn compact(&self) -> Result<CompactionReport, LifecycleError> {
        self.inner.compact_pass(2)
    }
}

impl Inner {
    /// Compacts every partition with at least `min_segments` segments (or one segment that a
    /// tombstone applies to).
    pub(crate) fn compact_pass(&self, min_segments: usize) -> Result<CompactionReport, LifecycleError> {
        let _maintenance = self.maintenance.lock();
        let mut report = CompactionReport::default();
        let dbs: Vec<_> = self.dbs.read().iter().map(|(id, s)| (*id, s.clone())).collect();
        for (db, storage) in dbs {
            // Deletes hold `maintenance` while they record a tombstone, so this list stays
            // complete for the whole pass: every output has all of them applied.
            let tombstones = self.catalog.tombstones(db);
            let applied = crate::partition::applied_set(&tombstones);
            for part in storage.partitions.all() {
                if self.shutdown.load(Ordering::Acquire) {
                    return Err(LifecycleError::ShuttingDown);
                }
                let n = part.segments().len();
                let tombstoned = n == 1 && {
                    let seg = &part.segments()[0];
                    // Tombstones this segment was compacted with are applied already: their
                    // block statistics may still overlap (other points of the series), but a
                    // rewrite would change nothing and would repeat every pass.
                    let pending: Vec<_> = tombstones
                        .iter()
                        .filter(|t| {
                            seg.id.0 < t.before_segment
                                && t.range.overlaps(part.start, part.max_ts())
                                && !seg.has_applied(t)
                        })
                        .collect();
                    !pending.is_empty()
                        && seg.reader().is_ok_and(|r| {
                            r.blocks().iter().any(|b| {
                                pending.iter().any(|t| t.hides(seg.id.0, b.series, b.min_ts, b.max_ts))
                            })
                        })
                };
                if n >= min_segments || tombstoned {
                    self.compact_partition(db, &part, &tombstones, &applied, &mut report)?;
                }
            }
        }
        self.collect_tombstones()?;
        Ok(report)
    }

    pub(crate) fn compact_partition(
        &self,
        db: DbId,
        part: &Arc<Partition>,
        tombstones: &[Arc<Tombstone>],
        applied: &Arc<[Weak<Tombstone>]>,
        report: &mut CompactionReport,
    ) -> Result<(), LifecycleError> {
        let started = Instant::now();
        // No flush may hold a sequence inside our range without having published it.
        let inputs = {
            let _publish = self.publish.write();
            part.segments()
        };
        if inputs.is_empty() {
            return Ok(());
        }
        let mut readers: Vec<(u64, Arc<SegmentReader>)> = Vec::with_capacity(inputs.len());
        for seg in inputs.iter() {
            readers.push((seg.id.0, seg.reader()?));
        }
        let name = SegmentName {
            hi: inputs.iter().map(|s| s.name.hi).max().expect("non-empty"),
            lo: inputs.iter().map(|s| s.name.lo).min().expect("non-empty"),
            generation: inputs.iter().map(|s| s.name.generation).max().expect("non-empty") + 1,
        };
        let path = part.dir.join(name.file_name());
        let mut w = SegmentWriter::create(&path)?;
        let series: BTreeSet<SeriesId> =
            readers.iter().flat_map(|(_, r)| r.blocks().iter().map(|b| b.series)).collect();
        let bytes_in: u64 = readers.iter().map(|(_, r)| r.size()).sum();
        let mut values_out = 0u64;
        for id in series {
            if self.shutdown.load(Ordering::Acquire) {
                drop(w);
                let _ = fs::remove_file(path.with_extension("seg.tmp"));
                return Err(LifecycleError::ShuttingDown);
            }
            // Dropped series (or series of another database, which cannot happen) go away.
            if self.catalog.series(id).is_none_or(|m| m.db != db) {
                continue;
            }
            let mut fields: Vec<Arc<str>> = readers
                .iter()
                .flat_map(|(_, r)| r.series_blocks(id).iter().map(|b| b.field.clone()))
                .collect();
            fields.sort();
            fields.dedup();
            for field in fields {
                let Some((ts, vals)) = merge_column(&readers, id, &field, tombstones)? else { continue };
                values_out += ts.len() as u64;
                w.add_column(id, &field, &ts, &vals)?;
                self.throttle(started, w.bytes_written());
            }
        }
        let output = if w.is_empty() {
            drop(w);
            let _ = fs::remove_file(path.with_extension("seg.tmp"));
            None
        } else {
            let (path, size) = w.finish()?;
            crate::fsutil::sync_dir(&part.dir)
                .map_err(|source| LifecycleError::Io { path: part.dir.clone(), source })?;
            report.bytes_out += size;
            let handle = SegmentHandle::with_reader(name, SegmentReader::open(&path)?);
            Some(Arc::new(handle.with_applied(applied.clone())))
        };
        part.replace_segments(&inputs, output);
        let mut durable = true;
        for seg in inputs.iter() {
            if let Err(e) = fs::remove_file(&seg.path) {
                // Harmless with an output: open deletes the segments it replaces.
                tracing::warn!(file = %seg.path.display(), error = %e, "deleting a compacted segment failed");
                durable = false;
            }
        }
        durable &= crate::fsutil::sync_dir(&part.dir).is_ok();
        if !durable {
            // An input left on disk comes back at the next open unless a file name says it is
            // obsolete: without an output none does, and with one the output itself may be
            // compacted away (to nothing) later, which drops that name. Either way only the
            // tombstones still hide the deleted points in it, so they must outlive it until a
            // restart (which deletes or reloads it).
            self.tombstone_gc_blocked.store(true, Ordering::Release);
        }
        report.partitions += 1;
        report.segments_in += inputs.len() as u64;
        report.bytes_in += bytes_in;
        report.values += values_out;
        let st = &self.stats;
        st.compactions.fetch_add(1, Ordering::Relaxed);
        st.compaction_bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        st.compaction_bytes_out.fetch_add(report.bytes_out, Ordering::Relaxed);
        st.compaction_values.fetch_add(values_out, Ordering::Relaxed);
        st.compaction_nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        tracing::info!(
            dir = %part.dir.display(),
            segments = inputs.len(),
            bytes_in,
            values = values_out,
            elapsed = ?started.elapsed(),
            "partition compacted"
        );
        Ok(())
    }

    /// Sleeps as needed to keep the output under `compaction_bytes_per_sec`.
    fn throttle(&self, started: Instant, written: u64) {
        let rate = self.opts.compaction_bytes_per_sec;
        if rate == 0 {
            return;
        }
        let due = Duration::from_secs_f64(written as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait.min(Duration::from_millis(200)));
        }
    }
}

/// One column of one series across inputs (oldest first), tombstones applied, merged so the
/// newest write wins.
fn merge_column(
    readers: &[(u64, Arc<SegmentReader>)],
    id: SeriesId,
    field: &str,
    tombstones: &[Arc<Tombstone>],
) -> Result<Option<(Vec<i64>, Values)>, LifecycleError> {
    let mut ts = Vec::new();
    let mut vals: Option<Values> = None;
    let mut sorted = true;
    for (seq, r) in readers {
        for b in r.series_blocks(id).iter().filter(|b| &*b.field == field) {
            let ty = vals.get_or_insert_with(|| Values::new(b.field_type)).field_type();
            if b.field_type != ty {
                continue;
            }
            let mut bt = Vec::with_capacity(b.count as usize);
            let mut bv = Values::new(b.field_type);
            r.read_block(b, &mut bt, &mut bv)?;
            let hiding: Vec<&Tombstone> =
                tombstones.iter().filter(|t| t.hides(*seq, id, b.min_ts, b.max_ts)).map(|t| &**t).collect();
            if !hiding.is_empty() {
                let keep: Vec<u32> = (0..bt.len() as u32)
                    .filter(|&i| !hiding.iter().any(|t| t.range.contains(bt[i as usize])))
                    .collect();
                bv = bv.gather(&keep);
                bt = keep.iter().map(|&i| bt[i as usize]).collect();
            }
            if bt.is_empty() {
                continue;
            }
            if ts.last().is_some_and(|&l: &i64| l >= bt[0]) {
                sorted = false;
            }
            ts.extend_from_slice(&bt);
            vals.as_mut().expect("set above").append(bv);
        }
    }
    let Some(vals) = vals else { return Ok(None) };
    if ts.is_empty() {
        return Ok(None);
    }
    if sorted {
        return Ok(Some((ts, vals)));
    }
    let mut perm: Vec<u32> = (0..ts.len() as u32).collect();
    sort_dedup_last_wins(&ts, &mut perm);
    let merged_ts = perm.iter().map(|&i| ts[i as usize]).collect();
    Ok(Some((merged_ts, vals.gather(&perm))))
}
