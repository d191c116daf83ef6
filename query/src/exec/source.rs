//! Where the executor reads series from: a small seam over the engine's streaming scan, so
//! the executor consumes one series at a time and tests can count what was read.

use std::ops::ControlFlow;
use std::sync::Arc;

use strata_engine::{
    Engine, ReadError, ScanOptions, ScanRequest, ScanSummary, SeriesCursor, SeriesId, SeriesKey,
    SeriesPieces, TagPredicate,
};

/// A streaming source of series pieces. `Sync` so that one query's series can be read from
/// several threads.
pub trait SeriesSource: Sync {
    /// The series of `measurement` matching `pred` (ascending ids), with their keys.
    fn series(
        &self,
        db: &str,
        measurement: &str,
        pred: &TagPredicate,
    ) -> Result<Vec<(SeriesId, Arc<SeriesKey>)>, ReadError>;

    /// Streams the series of `req` to `visit` (ascending series id), as
    /// [`Engine::scan_pieces`] does.
    fn scan(
        &self,
        req: &ScanRequest<'_>,
        opts: &ScanOptions<'_>,
        visit: &mut dyn FnMut(SeriesPieces) -> ControlFlow<()>,
    ) -> Result<ScanSummary, ReadError>;

    /// Like [`SeriesSource::scan`], but each column may be only its newest point in the range,
    /// as [`Engine::scan_last`] gives: for queries that need nothing else
    /// (`exec/last_value.rs`). By default the whole scan, which gives the same answer.
    fn scan_last(
        &self,
        req: &ScanRequest<'_>,
        opts: &ScanOptions<'_>,
        visit: &mut dyn FnMut(SeriesPieces) -> ControlFlow<()>,
    ) -> Result<ScanSummary, ReadError> {
        self.scan(req, opts, visit)
    }

    /// Opens a pull cursor per series of `ids` (ascending) that has data in the request's
    /// range, as [`Engine::series_cursors`] does: for merging many series by time while
    /// holding only the front of each.
    fn cursors(
        &self,
        req: &ScanRequest<'_>,
        ids: &[SeriesId],
        descending: bool,
    ) -> Result<Vec<SeriesCursor>, ReadError>;
}

impl SeriesSource for Engine {
    fn series(
        &self,
        db: &str,
        measurement: &str,
        pred: &TagPredicate,
    ) -> Result<Vec<(SeriesId, Arc<SeriesKey>)>, ReadError> {
        Engine::series(self, db, measurement, pred)
    }

    fn scan(
        &self,
        req: &ScanRequest<'_>,
        opts: &ScanOptions<'_>,
        visit: &mut dyn FnMut(SeriesPieces) -> ControlFlow<()>,
    ) -> Result<ScanSummary, ReadError> {
        self.scan_pieces(req, opts, visit)
    }

    fn scan_last(
        &self,
        req: &ScanRequest<'_>,
        opts: &ScanOptions<'_>,
        visit: &mut dyn FnMut(SeriesPieces) -> ControlFlow<()>,
    ) -> Result<ScanSummary, ReadError> {
        Engine::scan_last(self, req, opts, visit)
    }

    fn cursors(
        &self,
        req: &ScanRequest<'_>,
        ids: &[SeriesId],
        descending: bool,
    ) -> Result<Vec<SeriesCursor>, ReadError> {
        self.series_cursors(req, ids, descending)
    }
}
