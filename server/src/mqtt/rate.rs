//! A token bucket per device: `rate` messages per second on average, bursts of `burst`. Time
//! is passed in, so tests drive it without sleeping.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. `rate` is in tokens per second and must be positive.
    pub fn new(rate: u32, burst: u32, now: Instant) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket { rate: f64::from(rate.max(1)), burst, tokens: burst, last: now }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes `n` tokens. The bucket may go into debt (a batch larger than the burst is taken
    /// whole); the result is how long the caller must wait before it reads more, zero if none.
    pub fn take(&mut self, n: u32, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= f64::from(n);
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_throttles_then_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 5, t0);
        for _ in 0..5 {
            assert_eq!(b.take(1, t0), Duration::ZERO);
        }
        // Sixth message at the same instant: one token of debt, 100 ms at 10/s.
        let wait = b.take(1, t0);
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        // After the wait the debt is paid; after 0.5 s more, five tokens again (the burst cap).
        assert_eq!(b.take(0, t0 + Duration::from_millis(100)), Duration::ZERO);
        let t1 = t0 + Duration::from_secs(10);
        for _ in 0..5 {
            assert_eq!(b.take(1, t1), Duration::ZERO);
        }
        assert!(b.take(1, t1) > Duration::ZERO, "the bucket never holds more than the burst");
    }

    #[test]
    fn big_batches_go_into_debt() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100, 10, t0);
        let wait = b.take(110, t0);
        assert!((wait.as_secs_f64() - 1.0).abs() < 1e-9, "{wait:?}");
    }
}
