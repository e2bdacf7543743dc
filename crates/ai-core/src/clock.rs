//! [`Clock`]: wall-clock time for layers that keep meters and windows (rate limits,
//! budgets), advanced by tokio's monotonic clock so tests can pause and advance it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock microseconds, read once at creation and advanced from then on by tokio's
/// clock: a wall-clock step (NTP, a VM resume) never makes a meter jump, and a test that
/// pauses tokio time (`tokio::time::pause`, `advance`) moves this clock with it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let clock = ai_core::Clock::at_us(1_000_000);
/// tokio::time::advance(std::time::Duration::from_secs(2)).await;
/// assert_eq!(clock.now_us(), 3_000_000);
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base_us: u64,
    base: tokio::time::Instant,
}

impl Clock {
    /// Wall-clock time now, advanced from here on by tokio's monotonic clock.
    pub fn system() -> Self {
        let base_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Clock::at_us(base_us)
    }

    /// A clock that reads `us` (microseconds since the Unix epoch) now: for tests that
    /// need a given date, e.g. the last second of a month.
    pub fn at_us(us: u64) -> Self {
        Clock {
            base_us: us,
            base: tokio::time::Instant::now(),
        }
    }

    /// Microseconds since the Unix epoch.
    pub fn now_us(&self) -> u64 {
        self.base_us
            + tokio::time::Instant::now()
                .duration_since(self.base)
                .as_micros() as u64
    }

    /// The time now as a `SystemTime`, plus `after`.
    pub fn wall(&self, after: Duration) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.now_us()) + after
    }
}
