//! An upload rate limit shared by every connection of a node: a token bucket refilled at the
//! configured rate. Waiters are served in arrival order, so connections share the bandwidth
//! fairly.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// A shared bytes-per-second limit.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimit {
    /// A limit of `bytes_per_second`, allowing bursts of a quarter second's worth (at least two
    /// blocks).
    pub fn new(bytes_per_second: u64) -> Self {
        let rate = bytes_per_second as f64;
        let burst = (rate / 4.0).max(f64::from(mtorrent_shared::BLOCK_SIZE) * 2.0);
        Self {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Waits until `bytes` may be sent.
    pub async fn acquire(&self, bytes: usize) {
        let mut state = self.state.lock().await;
        let (tokens, last) = &mut *state;
        let now = Instant::now();
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        *tokens -= bytes as f64;
        if *tokens < 0.0 {
            // Holding the lock while sleeping makes later senders queue behind this one.
            tokio::time::sleep(Duration::from_secs_f64(-*tokens / self.rate)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sending_is_paced_at_the_rate() {
        let limit = RateLimit::new(1_000_000);
        let start = Instant::now();
        for _ in 0..20 {
            limit.acquire(100_000).await;
        }
        // 2 MB at 1 MB/s, less the initial burst (two blocks, more than a quarter second).
        let expected = (2_000_000.0 - limit.burst) / 1_000_000.0;
        let elapsed = start.elapsed().as_secs_f64();
        assert!(
            (elapsed - expected).abs() < 0.05,
            "{elapsed} s, not {expected} s"
        );
    }
}
