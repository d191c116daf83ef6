//! Per-client write rate limits: one token bucket per client (the token's id when auth is on,
//! the client IP when it is off) on the write routes.
//!
//! A bucket holds at most `burst` tokens and refills at `rate` tokens per second. A request is
//! admitted while the bucket holds at least one token; it is then charged its cost — one token
//! per request, or one per point once the body is decoded (`unit = "points"`). Charging after
//! decoding may take the balance below zero: the debt delays the client's next requests, so a
//! client sending huge batches is held to the rate on average without the server having to
//! decode a body before it knows whether to refuse it. An over-limit request gets 429 with
//! `Retry-After` (whole seconds until the bucket holds one token again).
//!
//! Time is passed in explicitly ([`TokenBucket`] takes `Duration`s since an origin, or
//! `Instant`s) so the schedule arithmetic is unit-tested without sleeping; [`RateLimiter`]
//! reads a monotonic clock. The MQTT listener's per-device buckets are the same
//! [`TokenBucket`] (`strata-mqtt`'s `rate.rs`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::{LimitsConfig, RateUnit};

/// Buckets kept before idle (full) ones are dropped; a full bucket is the same as no bucket.
const MAX_BUCKETS: usize = 10_000;

/// A point in time a [`TokenBucket`] is told: `Duration` since an origin (the HTTP limiter,
/// and unit tests that count from zero) or `Instant` (the MQTT per-device buckets).
pub trait BucketTime: Copy + Ord {
    /// Seconds from `earlier` to `self`; zero if `earlier` is later.
    fn secs_since(self, earlier: Self) -> f64;
}

impl BucketTime for Duration {
    fn secs_since(self, earlier: Duration) -> f64 {
        self.saturating_sub(earlier).as_secs_f64()
    }
}

impl BucketTime for Instant {
    fn secs_since(self, earlier: Instant) -> f64 {
        self.saturating_duration_since(earlier).as_secs_f64()
    }
}

/// A token bucket with explicit time: the one bucket of the HTTP per-client limits and the
/// MQTT per-device limits. It holds at most `burst` tokens and refills at `rate` per second;
/// charges may take it into debt.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenBucket<T = Duration> {
    /// Tokens per second.
    rate: f64,
    /// Capacity.
    burst: f64,
    /// Balance at `at`; negative while in debt.
    tokens: f64,
    at: T,
}

impl<T: BucketTime> TokenBucket<T> {
    /// A full bucket at time `now`. `rate` must be positive.
    pub fn new(rate: f64, burst: f64, now: T) -> TokenBucket<T> {
        TokenBucket { rate, burst, tokens: burst, at: now }
    }

    fn refill(&mut self, now: T) {
        // A clock that goes backwards (it cannot with Instant, but tests pass times) adds nothing.
        let dt = now.secs_since(self.at);
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.at = self.at.max(now);
    }

    /// The balance at `now`.
    pub fn tokens(&mut self, now: T) -> f64 {
        self.refill(now);
        self.tokens
    }

    /// The balance it would have at `now`, without touching the bucket.
    pub fn level_at(&self, now: T) -> f64 {
        (self.tokens + now.secs_since(self.at) * self.rate).min(self.burst)
    }

    /// Whether the bucket holds its whole burst at `now`: indistinguishable from a new one, so
    /// it can be dropped.
    pub fn full_at(&self, now: T) -> bool {
        self.level_at(now) >= self.burst
    }

    /// Admits a request if the bucket holds at least one token; otherwise returns how long
    /// until it will.
    pub fn check(&mut self, now: T) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }

    /// Takes `cost` tokens (the balance may go negative).
    pub fn charge(&mut self, cost: f64, now: T) {
        self.refill(now);
        self.tokens -= cost;
    }

    /// Takes `cost` tokens, going into debt if need be (a batch larger than the burst is
    /// taken whole), and returns how long the caller must wait until the debt is paid, zero
    /// if there is none.
    pub fn take(&mut self, cost: f64, now: T) -> Duration {
        self.charge(cost, now);
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }

    fn is_full(&mut self, now: T) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// Who a bucket belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// The id of the token the request authenticated with.
    Token(String),
    Ip(IpAddr),
    /// Auth off and no peer address known (tests that drive the router directly).
    Anonymous,
}

/// A request refused for exceeding its client's rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("write rate limit exceeded for this client; retry in {retry_after_secs}s")]
pub struct RateLimited {
    /// Whole seconds, at least 1 (the `Retry-After` header value).
    pub retry_after_secs: u64,
}

/// The server's per-client write limiter; does nothing when `limits.client_write_rate` is 0.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    unit: RateUnit,
    origin: Instant,
    buckets: Mutex<HashMap<ClientKey, TokenBucket>>,
}

impl RateLimiter {
    pub fn from_config(l: &LimitsConfig) -> RateLimiter {
        let rate = l.client_write_rate;
        let burst = if l.client_write_burst > 0.0 { l.client_write_burst } else { rate.max(1.0) };
        RateLimiter {
            rate,
            burst,
            unit: l.client_write_rate_unit,
            origin: Instant::now(),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.rate > 0.0
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Admits or refuses a write request before its body is read. In `requests` mode it is
    /// charged here.
    pub fn admit(&self, key: &ClientKey) -> Result<(), RateLimited> {
        if !self.enabled() {
            return Ok(());
        }
        let now = self.now();
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            buckets.retain(|_, b| !b.is_full(now));
        }
        let bucket =
            buckets.entry(key.clone()).or_insert_with(|| TokenBucket::new(self.rate, self.burst, now));
        bucket.check(now).map_err(|wait| RateLimited { retry_after_secs: retry_after_secs(wait) })?;
        if self.unit == RateUnit::Requests {
            bucket.charge(1.0, now);
        }
        Ok(())
    }

    /// Charges the points of an admitted request (`points` mode only).
    pub fn charge_points(&self, key: &ClientKey, points: usize) {
        if !self.enabled() || self.unit != RateUnit::Points || points == 0 {
            return;
        }
        let now = self.now();
        if let Some(b) = self.buckets.lock().get_mut(key) {
            b.charge(points as f64, now);
        }
    }
}

/// `Retry-After` in whole seconds: rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let s = wait.as_secs_f64().ceil() as u64;
    s.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The wait, rounded to whole milliseconds (float arithmetic is exact only to ~1 ns).
    fn wait_ms(r: Result<(), Duration>) -> u128 {
        (r.expect_err("should be refused").as_secs_f64() * 1e3).round() as u128
    }

    #[test]
    fn burst_then_refill_at_rate() {
        // 10 tokens/s, burst 5: five requests at t=0, the sixth waits 100 ms.
        let mut b = TokenBucket::new(10.0, 5.0, ms(0));
        for _ in 0..5 {
            assert_eq!(b.check(ms(0)), Ok(()));
            b.charge(1.0, ms(0));
        }
        assert_eq!(wait_ms(b.check(ms(0))), 100);
        assert_eq!(wait_ms(b.check(ms(50))), 50);
        assert_eq!(b.check(ms(100)), Ok(()));
        b.charge(1.0, ms(100));
        // Refill never exceeds the burst.
        assert_eq!(b.tokens(Duration::from_secs(3600)), 5.0);
    }

    #[test]
    fn debt_delays_later_requests() {
        // Points mode: 100 points/s, burst 100; one request of 350 points is admitted (the
        // bucket was full) and leaves a debt of 250: the next request waits until the balance
        // is back to 1 token, (1 + 250) / 100 = 2.51 s.
        let mut b = TokenBucket::new(100.0, 100.0, ms(0));
        assert!(b.check(ms(0)).is_ok());
        b.charge(350.0, ms(0));
        assert_eq!(b.tokens(ms(0)), -250.0);
        assert_eq!(wait_ms(b.check(ms(0))), 2510);
        assert_eq!(retry_after_secs(ms(2510)), 3);
        assert!(b.check(ms(2500)).is_err());
        assert!(b.check(ms(2511)).is_ok());
    }

    #[test]
    fn time_going_backwards_adds_nothing() {
        let mut b = TokenBucket::new(1.0, 1.0, Duration::from_secs(10));
        b.charge(1.0, Duration::from_secs(10));
        assert!(b.check(Duration::from_secs(5)).is_err());
        assert!(b.check(Duration::from_secs(10)).is_err());
        assert!(b.check(Duration::from_secs(11)).is_ok());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(ms(1)), 1);
        assert_eq!(retry_after_secs(ms(1000)), 1);
        assert_eq!(retry_after_secs(ms(1001)), 2);
    }

    fn limiter(rate: f64, burst: f64, unit: RateUnit) -> RateLimiter {
        let l = LimitsConfig {
            client_write_rate: rate,
            client_write_burst: burst,
            client_write_rate_unit: unit,
            ..LimitsConfig::default()
        };
        RateLimiter::from_config(&l)
    }

    #[test]
    fn limiter_keeps_one_bucket_per_client() {
        // A rate so low that nothing refills during the test.
        let rl = limiter(0.001, 2.0, RateUnit::Requests);
        let a = ClientKey::Token("a".into());
        let b = ClientKey::Ip("127.0.0.2".parse().unwrap());
        assert!(rl.admit(&a).is_ok());
        assert!(rl.admit(&a).is_ok());
        let refused = rl.admit(&a).unwrap_err();
        assert!(refused.retry_after_secs >= 999, "{refused:?}");
        assert!(rl.admit(&b).is_ok(), "another client has its own bucket");
    }

    #[test]
    fn points_mode_charges_after_decoding() {
        let rl = limiter(0.001, 10.0, RateUnit::Points);
        let a = ClientKey::Anonymous;
        assert!(rl.admit(&a).is_ok());
        assert!(rl.admit(&a).is_ok(), "admission alone costs nothing in points mode");
        rl.charge_points(&a, 10);
        assert!(rl.admit(&a).is_err());
    }

    #[test]
    fn off_by_default() {
        let rl = RateLimiter::from_config(&LimitsConfig::default());
        assert!(!rl.enabled());
        for _ in 0..1000 {
            assert!(rl.admit(&ClientKey::Anonymous).is_ok());
        }
    }
}
