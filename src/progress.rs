//! Progress bars for long commands (restore, export, import, verify, simulate), drawn on
//! stderr only when stderr is a terminal and `--quiet` was not given; otherwise every call
//! is a no-op, so scripts and logs see only the commands' own output.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

const SPINNER: &str = "{spinner} {msg} {elapsed}";

/// A progress bar, or nothing.
#[derive(Clone, Default)]
pub struct Progress(Option<ProgressBar>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Progress({})",
            if self.0.is_some() { "shown" } else { "hidden" }
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
        Progress(None)
    }

    /// A bar of `len` units labelled `msg`, shown only when stderr is a terminal and not
    /// `quiet`.
    pub fn new(len: u64, unit: Unit, msg: &str, quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Progress(None);
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
        Progress(Some(bar))
    }

    /// A spinner with a message and the time elapsed, for a phase whose size is unknown
    /// (writing into a meta store); shown under the same conditions as [`Progress::new`].
    pub fn spinner(msg: &str, quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(SPINNER) {
            bar.set_style(style);
        }
        bar.set_message(msg.to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        Progress(Some(bar))
    }

    pub fn is_visible(&self) -> bool {
        self.0.is_some()
    }

    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n)
        }
    }

    pub fn set_position(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.set_position(n)
        }
    }

    pub fn set_length(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.set_length(n)
        }
    }

    pub fn set_message(&self, msg: &str) {
        if let Some(b) = &self.0 {
            b.set_message(msg.to_string())
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
    fn hidden_when_quiet() {
        let p = Progress::new(10, Unit::Items, "x", true);
        assert!(!p.is_visible());
        assert!(!Progress::spinner("x", true).is_visible());
        p.inc(1);
        p.finish();
    }
}
