//! The `max_rotations_per_minute` limit on RotateSecret calls, shared by every attempt of
//! the process.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::EngineError;

/// At most `per_minute` RotateSecret calls in any 60 s (the config's
/// `max_rotations_per_minute`), across all attempts of this process.
pub struct RateLimiter {
    per_minute: usize,
    recent: Mutex<VecDeque<Instant>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute: per_minute.max(1) as usize,
            recent: Mutex::new(VecDeque::new()),
        }
    }

    /// Waits for a slot. The lock is held across the sleep on purpose: waiters queue in
    /// order and none can overtake the one whose slot frees first.
    pub async fn acquire(&self, cancel: &CancellationToken) -> Result<(), EngineError> {
        let mut recent = self.recent.lock().await;
        loop {
            let now = Instant::now();
            while recent
                .front()
                .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
            {
                recent.pop_front();
            }
            if recent.len() < self.per_minute {
                recent.push_back(now);
                return Ok(());
            }
            let wait = Duration::from_secs(60) - now.duration_since(recent[0]);
            tokio::select! {
                _ = cancel.cancelled() => return Err(EngineError::Cancelled),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_allows_n_per_minute() {
        let limiter = RateLimiter::new(2);
        let cancel = CancellationToken::new();
        let start = tokio::time::Instant::now();
        limiter.acquire(&cancel).await.unwrap();
        limiter.acquire(&cancel).await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO);
        limiter.acquire(&cancel).await.unwrap();
        assert!(start.elapsed() >= Duration::from_secs(60));
    }
}
