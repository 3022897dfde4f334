//! Login rate limiting per account and per address: at most `max` failures in a sliding
//! `window`; further attempts are refused until the oldest failure leaves the window. Pure: the
//! caller passes `now`. Memory is bounded: keys with no failures in the window are pruned.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Failures remembered per key.
#[derive(Debug)]
pub struct RateLimiter {
    max: usize,
    window: Duration,
    failures: HashMap<String, VecDeque<Instant>>,
}

impl RateLimiter {
    /// At most `max` failures per `window` per key.
    pub fn new(max: usize, window: Duration) -> Self {
        Self {
            max,
            window,
            failures: HashMap::new(),
        }
    }

    fn trim(&mut self, key: &str, now: Instant) -> usize {
        let window = self.window;
        match self.failures.get_mut(key) {
            Some(q) => {
                while q
                    .front()
                    .is_some_and(|t| now.saturating_duration_since(*t) >= window)
                {
                    q.pop_front();
                }
                let n = q.len();
                if n == 0 {
                    self.failures.remove(key);
                }
                n
            }
            None => 0,
        }
    }

    /// Whether another attempt is allowed now; if not, how long until it is.
    pub fn check(&mut self, key: &str, now: Instant) -> Result<(), Duration> {
        if self.trim(key, now) < self.max {
            return Ok(());
        }
        let oldest = self.failures[key]
            .front()
            .copied()
            .expect("trim keeps only non-empty queues");
        Err(self
            .window
            .saturating_sub(now.saturating_duration_since(oldest)))
    }

    /// Records a failed attempt.
    pub fn fail(&mut self, key: &str, now: Instant) {
        self.trim(key, now);
        let q = self.failures.entry(key.to_owned()).or_default();
        q.push_back(now);
        while q.len() > self.max {
            q.pop_front();
        }
        if self.failures.len() > 100_000 {
            let window = self.window;
            self.failures.retain(|_, q| {
                q.back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < window)
            });
        }
    }

    /// Forgets a key's failures (after a successful login).
    pub fn reset(&mut self, key: &str) {
        self.failures.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_failures_until_the_window_passes() {
        let mut rl = RateLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(rl.check("teacher", t0 + Duration::from_secs(i)).is_ok());
            rl.fail("teacher", t0 + Duration::from_secs(i));
        }
        let wait = rl
            .check("teacher", t0 + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(rl.check("other", t0).is_ok(), "keys are independent");
        assert!(
            rl.check("teacher", t0 + Duration::from_secs(60)).is_ok(),
            "the oldest failure left the window"
        );
        rl.reset("teacher");
        assert!(rl.check("teacher", t0 + Duration::from_secs(61)).is_ok());
    }
}
