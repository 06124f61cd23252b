//! Progress bars for long commands (restore, export, import, verify, simulate, bench),
//! drawn on stderr only when stderr is a terminal and `--quiet` was not given. When stderr
//! is not a terminal (a log, a pipe), a long command prints one plain progress line every
//! [`LOG_EVERY`] instead, so that a run of minutes is not silent; a short one prints
//! nothing but its own output. Each is a [`ProgressSink`] behind the engine's [`Progress`].

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub use metapitr_core::progress::{human_bytes, human_duration, Progress, ProgressSink};

const SPINNER: &str = "{spinner} {msg} {elapsed}";

/// How often a progress line is printed when stderr is not a terminal.
pub const LOG_EVERY: Duration = Duration::from_secs(30);

/// Progress counted without a terminal, printed as a line now and then.
struct Logged {
    msg: std::sync::Mutex<String>,
    len: std::sync::atomic::AtomicU64,
    pos: std::sync::atomic::AtomicU64,
    started: std::time::Instant,
    /// When the last line was printed (or the start).
    last: std::sync::Mutex<std::time::Instant>,
    every: Duration,
}

impl Logged {
    fn new(len: u64, msg: &str, every: Duration) -> Self {
        let now = std::time::Instant::now();
        Logged {
            msg: std::sync::Mutex::new(msg.to_string()),
            len: len.into(),
            pos: 0.into(),
            started: now,
            last: std::sync::Mutex::new(now),
            every,
        }
    }

    /// The line to print now, if one is due.
    fn due(&self) -> Option<String> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut last = self.last.lock().ok()?;
        if last.elapsed() < self.every {
            return None;
        }
        *last = std::time::Instant::now();
        let (pos, len) = (self.pos.load(Relaxed), self.len.load(Relaxed));
        let msg = self.msg.lock().map(|m| m.clone()).unwrap_or_default();
        let done = if len > 0 {
            format!("{pos}/{len} ({:.0}%)", pos as f64 * 100.0 / len as f64)
        } else {
            pos.to_string()
        };
        Some(format!(
            "{msg}: {done} after {}",
            human_duration(self.started.elapsed())
        ))
    }

    fn tick(&self) {
        if let Some(line) = self.due() {
            use std::io::Write;
            // A progress line that cannot be written is not worth failing the command.
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    }
}

/// How a bar counts.
#[derive(Clone, Copy, Debug)]
pub enum Unit {
    /// Bytes, shown as KiB/MiB/... with a rate.
    Bytes,
    /// Items (objects, epochs, lines).
    Items,
}

impl ProgressSink for Logged {
    fn inc(&self, n: u64) {
        self.pos.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        self.tick();
    }
    fn set_position(&self, n: u64) {
        self.pos.store(n, std::sync::atomic::Ordering::Relaxed);
        self.tick();
    }
    fn set_length(&self, n: u64) {
        self.len.store(n, std::sync::atomic::Ordering::Relaxed);
    }
    fn set_message(&self, msg: &str) {
        if let Ok(mut m) = self.msg.lock() {
            *m = msg.to_string();
        }
    }
}

/// A terminal bar or spinner.
struct Bar(ProgressBar);

impl ProgressSink for Bar {
    fn inc(&self, n: u64) {
        self.0.inc(n)
    }
    fn set_position(&self, n: u64) {
        self.0.set_position(n)
    }
    fn set_length(&self, n: u64) {
        self.0.set_length(n)
    }
    fn set_message(&self, msg: &str) {
        self.0.set_message(msg.to_string())
    }
    fn finish(&self) {
        self.0.finish_and_clear()
    }
}

/// The ways the command line shows progress, as constructors of the engine's [`Progress`].
pub trait Bars: Sized {
    /// Plain progress lines on stderr every `every`, whatever stderr is.
    fn logged(len: u64, msg: &str, every: Duration) -> Self;
    /// A bar of `len` units labelled `msg`, shown when stderr is a terminal and not
    /// `quiet`; without a terminal, a plain line every [`LOG_EVERY`] unless `quiet`.
    fn new(len: u64, unit: Unit, msg: &str, quiet: bool) -> Self;
    /// A spinner with a message and the time elapsed, for a phase whose size is unknown
    /// (writing into a meta store); shown under the same conditions as [`Bars::new`].
    fn spinner(msg: &str, quiet: bool) -> Self;
}

impl Bars for Progress {
    fn logged(len: u64, msg: &str, every: Duration) -> Self {
        Progress::to_sink(Arc::new(Logged::new(len, msg, every)))
    }

    fn new(len: u64, unit: Unit, msg: &str, quiet: bool) -> Self {
        if quiet {
            return Progress::hidden();
        }
        if !std::io::stderr().is_terminal() {
            return <Progress as Bars>::logged(len, msg, LOG_EVERY);
        }
        let template = match unit {
            Unit::Bytes => {
                "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}"
            }
            Unit::Items => "{msg:>12} [{bar:30}] {human_pos}/{human_len} {per_sec} eta {eta}",
        };
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        // The templates are constants: a template error is a bug caught by the unit test
        // below; fall back to the default style rather than failing the command.
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(msg.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress::to_sink(Arc::new(Bar(bar)))
    }

    fn spinner(msg: &str, quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Progress::hidden();
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(SPINNER) {
            bar.set_style(style);
        }
        bar.set_message(msg.to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        Progress::to_sink(Arc::new(Bar(bar)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse() {
        for t in [
            "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            "{msg:>12} [{bar:30}] {human_pos}/{human_len} {per_sec} eta {eta}",
            SPINNER,
        ] {
            ProgressStyle::with_template(t).unwrap();
        }
    }

    #[test]
    fn logged_lines_only_when_due() {
        let l = Logged::new(10, "build", Duration::from_secs(3600));
        l.pos.store(5, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(l.due(), None, "a line before its time");
        let l = Logged::new(10, "build", Duration::ZERO);
        l.pos.store(5, std::sync::atomic::Ordering::Relaxed);
        let line = l.due().unwrap();
        assert!(line.starts_with("build: 5/10 (50%) after "), "{line}");
    }

    #[test]
    fn hidden_when_quiet() {
        let p = <Progress as Bars>::new(10, Unit::Items, "x", true);
        assert!(!p.is_visible());
        assert!(!<Progress as Bars>::spinner("x", true).is_visible());
        p.inc(1);
        p.finish();
    }
}
