//! Progress bars for long commands (restore, export, import, verify, simulate, bench),
//! drawn on stderr only when stderr is a terminal and `--quiet` was not given. When stderr
//! is not a terminal (a log, a pipe), a long command prints one plain progress line every
//! [`LOG_EVERY`] instead, so that a run of minutes is not silent; a short one prints
//! nothing but its own output.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

const SPINNER: &str = "{spinner} {msg} {elapsed}";

/// How often a progress line is printed when stderr is not a terminal.
pub const LOG_EVERY: Duration = Duration::from_secs(30);

/// A progress bar, plain progress lines, or nothing.
#[derive(Clone, Default)]
pub struct Progress(Option<ProgressBar>, Option<std::sync::Arc<Logged>>);

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

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Progress({})",
            match (&self.0, &self.1) {
                (Some(_), _) => "shown",
                (None, Some(_)) => "logged",
                _ => "hidden",
            }
        )
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

impl Progress {
    /// Draws nothing.
    pub fn hidden() -> Self {
        Progress(None, None)
    }

    /// Plain progress lines on stderr every `every`, whatever stderr is.
    pub fn logged(len: u64, msg: &str, every: Duration) -> Self {
        Progress(
            None,
            Some(std::sync::Arc::new(Logged::new(len, msg, every))),
        )
    }

    /// A bar of `len` units labelled `msg`, shown when stderr is a terminal and not
    /// `quiet`; without a terminal, a plain line every [`LOG_EVERY`] unless `quiet`.
    pub fn new(len: u64, unit: Unit, msg: &str, quiet: bool) -> Self {
        if quiet {
            return Progress::hidden();
        }
        if !std::io::stderr().is_terminal() {
            return Progress::logged(len, msg, LOG_EVERY);
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
        Progress(Some(bar), None)
    }

    /// A spinner with a message and the time elapsed, for a phase whose size is unknown
    /// (writing into a meta store); shown under the same conditions as [`Progress::new`].
    pub fn spinner(msg: &str, quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Progress::hidden();
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(SPINNER) {
            bar.set_style(style);
        }
        bar.set_message(msg.to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        Progress(Some(bar), None)
    }

    pub fn is_visible(&self) -> bool {
        self.0.is_some()
    }

    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n)
        }
        if let Some(l) = &self.1 {
            l.pos.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            l.tick();
        }
    }

    pub fn set_position(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.set_position(n)
        }
        if let Some(l) = &self.1 {
            l.pos.store(n, std::sync::atomic::Ordering::Relaxed);
            l.tick();
        }
    }

    pub fn set_length(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.set_length(n)
        }
        if let Some(l) = &self.1 {
            l.len.store(n, std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub fn set_message(&self, msg: &str) {
        if let Some(b) = &self.0 {
            b.set_message(msg.to_string())
        }
        if let Some(l) = &self.1 {
            if let Ok(mut m) = l.msg.lock() {
                *m = msg.to_string();
            }
        }
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear()
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
        let p = Progress::new(10, Unit::Items, "x", true);
        assert!(!p.is_visible());
        assert!(!Progress::spinner("x", true).is_visible());
        p.inc(1);
        p.finish();
    }
}
