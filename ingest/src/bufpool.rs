//! Reusable request-sized byte buffers for the write path.
//!
//! A 5,000-line request needs about 1 MiB for its body and as much for its encoded batch.
//! Allocated fresh, each such buffer is a new `mmap` (the allocator's threshold is fixed at
//! 256 KiB to keep resident memory honest, see `cli/src/main.rs`), and the kernel zero-fills
//! and maps every page on first touch and unmaps it on free: page faults were a quarter of the server's
//! CPU at 600K lines/s. Keeping a few idle buffers for the next request removes that work while
//! bounding what is kept: at most `max_idle` buffers of at most `max_capacity` bytes each
//! (docs/architecture.md, "Memory of the process").

use parking_lot::Mutex;

#[derive(Debug)]
pub struct BufferPool {
    idle: Mutex<Vec<Vec<u8>>>,
    max_idle: usize,
    max_capacity: usize,
}

impl BufferPool {
    pub fn new(max_idle: usize, max_capacity: usize) -> BufferPool {
        BufferPool { idle: Mutex::new(Vec::with_capacity(max_idle)), max_idle, max_capacity }
    }

    /// An empty buffer with room for at least `capacity` bytes: an idle one when there is one.
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        let reused = self.idle.lock().pop();
        match reused {
            Some(mut buf) => {
                buf.reserve(capacity);
                buf
            }
            None => Vec::with_capacity(capacity),
        }
    }

    /// Keeps `buf` for a later [`take`](Self::take), unless the pool is full or the buffer is
    /// larger than the pool keeps (an unusually large request's buffer goes back to the system).
    pub fn give(&self, mut buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > self.max_capacity {
            return;
        }
        buf.clear();
        let mut idle = self.idle.lock();
        if idle.len() < self.max_idle {
            idle.push(buf);
        }
    }

    /// Bytes held by idle buffers.
    pub fn idle_bytes(&self) -> usize {
        self.idle.lock().iter().map(Vec::capacity).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_buffers_and_bounds_what_it_keeps() {
        let pool = BufferPool::new(2, 1024);
        let mut a = pool.take(100);
        a.extend_from_slice(b"hello");
        let a_ptr = a.as_ptr();
        pool.give(a);
        let b = pool.take(10);
        assert!(b.is_empty(), "a reused buffer comes back empty");
        assert_eq!(b.as_ptr(), a_ptr, "the idle buffer is reused");
        // Larger than the pool keeps: dropped.
        pool.give(Vec::with_capacity(4096));
        assert_eq!(pool.idle_bytes(), 0);
        // At most max_idle are kept.
        for _ in 0..5 {
            pool.give(Vec::with_capacity(512));
        }
        assert_eq!(pool.idle_bytes(), 1024);
        // A reused buffer grows to what the caller asked for.
        assert!(pool.take(900).capacity() >= 900);
    }
}
