//! Time, injected. Nothing in metapitr reads the system clock or sleeps on the runtime's
//! timer except [`SystemClock`], so a simulation driven by a [`ManualClock`] replays
//! exactly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;

pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Unix time in milliseconds.
    fn now_ms(&self) -> u64;

    /// Waits `d` of this clock's time (a backoff between retries).
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()>;
}

pub type SharedClock = Arc<dyn Clock>;

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock that moves only when told to.
///
/// Its [`Clock::sleep`] returns at once (after letting other tasks run) without moving
/// the clock: a retry's backoff costs no time, and what the simulation sees of time does
/// not depend on how often a call was retried. Every requested sleep is recorded
/// ([`ManualClock::sleeps`]).
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
    sleeps: Mutex<Vec<Duration>>,
}

impl ManualClock {
    pub fn new(unix_ms: u64) -> Arc<Self> {
        Arc::new(ManualClock {
            now: AtomicU64::new(unix_ms),
            sleeps: Mutex::new(Vec::new()),
        })
    }
    pub fn set(&self, unix_ms: u64) {
        self.now.store(unix_ms, Ordering::SeqCst);
    }
    pub fn advance(&self, ms: u64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }

    /// Every sleep requested of this clock so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.sleeps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        self.sleeps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(d);
        Box::pin(tokio::task::yield_now())
    }
}

pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_records_sleeps_and_does_not_move() {
        let c = ManualClock::new(1_000);
        c.sleep(Duration::from_millis(50)).await;
        c.sleep(Duration::from_secs(3)).await;
        assert_eq!(c.now_ms(), 1_000);
        assert_eq!(
            c.sleeps(),
            [Duration::from_millis(50), Duration::from_secs(3)]
        );
        c.advance(5);
        assert_eq!(c.now_ms(), 1_005);
    }
}
