//! [`IngestContext`]: the one set of shared state that every write path takes.

use std::sync::Arc;

use strata_auth::Auth;
use strata_engine::Engine;

use crate::budget::WriteMemory;
use crate::bufpool::BufferPool;
use crate::config::LimitsConfig;
use crate::metrics::IngestMetrics;
use crate::ratelimit::RateLimiter;
use crate::PointLimits;

/// Idle write buffers kept between requests: enough for the body and batch of eight requests
/// in flight at once, each buffer at most 4 MiB (a 5,000-line request needs about 1 MiB), so
/// at most 64 MiB is kept idle (about 2 MiB per buffer pair with 5,000-line requests). A
/// reused buffer's capacity is not charged to `limits.write_memory` beyond what its request
/// holds, so those 64 MiB are also the most the pool can add on top of the budget.
const IDLE_WRITE_BUFFERS: usize = 16;
const IDLE_WRITE_BUFFER_MAX: usize = 4 << 20;

/// What HTTP writes, the MQTT listener and bridge (and any later consumer) share: one engine,
/// one authenticator, one set of limits, one write-memory budget, one buffer pool, one set of
/// counters and one per-client rate limiter, so that a client or a byte counts the same
/// whichever protocol it came by.
#[derive(Debug)]
pub struct IngestContext {
    pub engine: Arc<Engine>,
    pub auth: Arc<Auth>,
    /// The per-point limits (`limits.*`).
    pub limits: PointLimits,
    /// Bounds what in-flight writes hold (`limits.write_memory`).
    pub write_memory: WriteMemory,
    /// Idle body and batch buffers of the write paths ([`BufferPool`]).
    pub buffers: Arc<BufferPool>,
    pub metrics: Arc<IngestMetrics>,
    /// Per-client write rate limits (`limits.client_write_rate`).
    pub rate_limit: RateLimiter,
    /// `storage.auto_create_databases`: a write to an unknown database creates it.
    pub auto_create_databases: bool,
}

impl IngestContext {
    pub fn new(
        engine: Arc<Engine>,
        auth: Arc<Auth>,
        limits: &LimitsConfig,
        metrics: Arc<IngestMetrics>,
        auto_create_databases: bool,
    ) -> IngestContext {
        IngestContext {
            write_memory: WriteMemory::new(
                limits.write_memory.bytes(),
                limits.write_memory_wait.get(),
                metrics.clone(),
            ),
            limits: PointLimits::from_config(limits),
            rate_limit: RateLimiter::from_config(limits),
            buffers: Arc::new(BufferPool::new(IDLE_WRITE_BUFFERS, IDLE_WRITE_BUFFER_MAX)),
            engine,
            auth,
            metrics,
            auto_create_databases,
        }
    }
}
