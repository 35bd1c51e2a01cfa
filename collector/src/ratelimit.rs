//! Per-app rate limiting: a token bucket per app, in process, so one runaway app (a bug in
//! an SDK integration, a replay storm) cannot take Redis from the others. Over the limit a
//! request gets 429 with `Retry-After`; SDKs keep it queued and send it later.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;
use tally_model::keys::AppId;

pub struct RateLimiter {
    /// Tokens (requests) added per second; 0 disables the limiter.
    rate: f64,
    /// Most tokens a bucket holds: how large a burst may be.
    burst: f64,
    buckets: Mutex<HashMap<AppId, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: f64) -> RateLimiter {
        RateLimiter {
            rate,
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `weight` tokens for `app`, or says in how many seconds enough will be there.
    pub fn take(&self, app: &AppId, weight: usize, now: Instant) -> Result<(), u64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let need = (weight as f64).min(self.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = buckets.entry(app.clone()).or_insert((self.burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * self.rate).min(self.burst);
        *last = now;
        if *tokens >= need {
            *tokens -= need;
            Ok(())
        } else {
            Err(((need - *tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_refills_at_the_rate() {
        let app = AppId::generate();
        let other = AppId::generate();
        let l = RateLimiter::new(10.0, 20.0);
        let t0 = Instant::now();
        assert!(l.take(&app, 20, t0).is_ok());
        assert_eq!(l.take(&app, 1, t0), Err(1));
        // Other apps have their own bucket.
        assert!(l.take(&other, 5, t0).is_ok());
        // 0.5 s later: 5 tokens.
        let t1 = t0 + Duration::from_millis(500);
        assert!(l.take(&app, 5, t1).is_ok());
        assert_eq!(l.take(&app, 15, t1), Err(2));
        assert!(RateLimiter::new(0.0, 0.0).take(&app, 1_000_000, t1).is_ok());
    }
}
