//! Where the executor reads series from: a small seam over the engine's streaming scan, so
//! the executor consumes one series at a time and tests can count what was read.

use std::ops::ControlFlow;

use strata_engine::{Engine, ReadError, ScanOptions, ScanRequest, ScanSummary, SeriesPieces};

/// A streaming source of series pieces.
pub trait SeriesSource {
    /// Streams the series of `req` to `visit` (ascending series id), as
    /// [`Engine::scan_pieces`] does.
    fn scan(
        &self,
        req: &ScanRequest<'_>,
        opts: &ScanOptions<'_>,
        visit: &mut dyn FnMut(SeriesPieces) -> ControlFlow<()>,
    ) -> Result<ScanSummary, ReadError>;
}

impl SeriesSource for Engine {
    fn scan(
        &self,
        req: &ScanRequest<'_>,
        opts: &ScanOptions<'_>,
        visit: &mut dyn FnMut(SeriesPieces) -> ControlFlow<()>,
    ) -> Result<ScanSummary, ReadError> {
        self.scan_pieces(req, opts, visit)
    }
}
