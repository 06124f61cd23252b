//! Progress reporting for long engine operations (restore, verify). The engine counts;
//! how progress is shown (a terminal bar, a log line now and then, nothing) is the
//! embedder's choice, given as a [`ProgressSink`].

use std::sync::Arc;
use std::time::Duration;

/// Where progress goes. Every method has a no-op default.
pub trait ProgressSink: Send + Sync {
    fn inc(&self, _n: u64) {}
    fn set_position(&self, _n: u64) {}
    fn set_length(&self, _n: u64) {}
    fn set_message(&self, _msg: &str) {}
    /// The operation ended; remove whatever was drawn.
    fn finish(&self) {}
}

/// A handle the engine advances; [`Progress::hidden`] (the default) reports nothing.
#[derive(Clone, Default)]
pub struct Progress(Option<Arc<dyn ProgressSink>>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Progress({})",
            if self.0.is_some() { "shown" } else { "hidden" }
        )
    }
}

impl Progress {
    /// Reports nothing.
    pub fn hidden() -> Self {
        Progress(None)
    }

    /// Reports to `sink`.
    pub fn to_sink(sink: Arc<dyn ProgressSink>) -> Self {
        Progress(Some(sink))
    }

    /// Whether anything receives the progress.
    pub fn is_visible(&self) -> bool {
        self.0.is_some()
    }

    pub fn inc(&self, n: u64) {
        if let Some(s) = &self.0 {
            s.inc(n)
        }
    }

    pub fn set_position(&self, n: u64) {
        if let Some(s) = &self.0 {
            s.set_position(n)
        }
    }

    pub fn set_length(&self, n: u64) {
        if let Some(s) = &self.0 {
            s.set_length(n)
        }
    }

    pub fn set_message(&self, msg: &str) {
        if let Some(s) = &self.0 {
            s.set_message(msg)
        }
    }

    pub fn finish(&self) {
        if let Some(s) = &self.0 {
            s.finish()
        }
    }
}

/// A byte count for people: `512 B`, `1.5 KiB`, `3.2 MiB`.
pub fn human_bytes(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// A duration for people: `850 ms`, `4.2 s`, `3m 05s`, `2h 10m`, `3d 4h`.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    let s = ms / 1000;
    match s {
        _ if ms < 1000 => format!("{ms} ms"),
        0..60 => format!("{:.1} s", ms as f64 / 1000.0),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
        assert_eq!(human_duration(Duration::from_millis(850)), "850 ms");
        assert_eq!(human_duration(Duration::from_millis(4200)), "4.2 s");
        assert_eq!(human_duration(Duration::from_secs(185)), "3m 05s");
        assert_eq!(human_duration(Duration::from_secs(7800)), "2h 10m");
        assert_eq!(
            human_duration(Duration::from_secs(3 * 86400 + 4 * 3600)),
            "3d 4h"
        );
    }

    struct Count(std::sync::atomic::AtomicU64);
    impl ProgressSink for Count {
        fn inc(&self, n: u64) {
            self.0.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[test]
    fn a_sink_receives_what_the_engine_counts() {
        let c = Arc::new(Count(0.into()));
        let p = Progress::to_sink(c.clone());
        p.inc(2);
        p.inc(3);
        assert_eq!(c.0.load(std::sync::atomic::Ordering::Relaxed), 5);
        assert!(p.is_visible() && !Progress::hidden().is_visible());
    }
}
