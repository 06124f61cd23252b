//! Prometheus metrics and a health endpoint for `metapitr archive --metrics-addr`.
//!
//! The server is hyper's HTTP/1.1 connection driver on a tokio listener. The exposition
//! text (format 0.0.4) is written by hand in [`render`]: it is a tiny, stable format, and
//! no metrics crate is in the dependency tree.
//!
//! Routes: `GET /metrics` (the gauges and counters below), `GET /health` and `/healthz`
//! (200 with a one-line summary when the repo can restore what this archiver recorded up
//! to a recent epoch, else 503 with the reason: see [`health`]), anything else 404.
//!
//! Epochs are printed exactly as integers; a Prometheus server stores samples as float64,
//! which holds integers exactly only up to 2^53 (today's epochs are larger), so it may
//! round their low bits. The `_seconds` variants carry the same instants as unix time.
//! Every gauge an alert uses has a sample in every state: an age with nothing to measure
//! (nothing archived, no snapshot) is `+Inf`, an empty window is 0 seconds long.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tracing::{debug, warn};

use crate::archive::ArchiveReport;
use crate::clock::SharedClock;
use crate::epoch;
use crate::error::{Error, ErrorKind, Result};
use crate::pb::Manifest;
use crate::repo::Repo;

/// The Content-Type of the text exposition format.
pub const CONTENT_TYPE_METRICS: &str = "text/plain; version=0.0.4";

/// The manifest-derived gauges are re-read after every pass that uploaded something, and
/// at least this often otherwise (snapshots and retention change it from other processes).
pub const MANIFEST_REFRESH_MS: u64 = 30_000;

/// What `/metrics` and `/health` report, as of one instant. [`render`] and [`health`]
/// are pure functions of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// The clock's unix time in milliseconds when the snapshot was taken.
    pub now_ms: u64,
    /// The archiver's timeline: the WAL directory's, else the repo's newest.
    pub timeline: u32,
    /// The archive's end on the archiver's timeline (0, 0: nothing archived).
    pub archived_epoch: u64,
    pub archived_lsn: u64,
    /// Committed epochs in sealed segments still in the WAL directory and after the
    /// archived epoch: sealed, so ready to ship, but not archived yet.
    pub unarchived_epochs: u64,
    /// The archiver's timeline's restorable window: the first range's start and the last
    /// range's end (None: nothing is restorable).
    pub window: Option<(u64, u64)>,
    /// Snapshots in the repo, every timeline.
    pub snapshots: u64,
    /// The newest snapshot's max_committed_epoch (None: no snapshot).
    pub newest_snapshot_epoch: Option<u64>,
    /// Stored (compressed) bytes of the segments this process published.
    pub uploaded_bytes: u64,
    pub uploaded_objects: u64,
    pub passes: u64,
    pub errors: u64,
    /// Another writer took the timeline over.
    pub fenced: bool,
    /// The last pass's error (None: it succeeded, or none has run).
    pub last_error: Option<String>,
    /// `/health` fails when the archive lags more than this (setting
    /// `archive.health_max_lag`; None: no limit).
    pub max_lag_ms: Option<u64>,
}

impl MetricsSnapshot {
    /// Committed epochs sealed locally and not archived yet.
    pub fn lag_epochs(&self) -> u64 {
        self.unarchived_epochs
    }

    /// Milliseconds from the archived epoch's wall time to now, floored at 0 (None:
    /// nothing archived).
    pub fn lag_ms(&self) -> Option<u64> {
        (self.archived_epoch != 0).then(|| self.age_ms(self.archived_epoch))
    }

    fn age_ms(&self, e: u64) -> u64 {
        self.now_ms.saturating_sub(epoch::to_unix_ms(e))
    }
}

/// The text format's positive infinity: the age of something that does not exist.
const INF: &str = "+Inf";

/// Milliseconds as seconds with three decimals, exactly.
fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// One metric family: HELP and TYPE, then its sample when it has one.
fn family(out: &mut String, name: &str, kind: &str, help: &str, value: Option<String>) {
    // Writing into a String cannot fail.
    let _ = writeln!(out, "# HELP metapitr_{name} {help}");
    let _ = writeln!(out, "# TYPE metapitr_{name} {kind}");
    if let Some(v) = value {
        let _ = writeln!(out, "metapitr_{name} {v}");
    }
}

/// The Prometheus text exposition (format 0.0.4) of a snapshot. A gauge with no
/// meaningful value (lag before anything is archived, the window of an empty repo, the
/// age of a snapshot that does not exist) keeps its HELP and TYPE lines but has no sample.
pub fn render(s: &MetricsSnapshot) -> String {
    let mut o = String::with_capacity(4096);
    let g = "gauge";
    let c = "counter";
    family(
        &mut o,
        "archive_lag_epochs",
        g,
        "Committed epochs in sealed WAL segments not archived yet (the open segment is not counted).",
        Some(s.lag_epochs().to_string()),
    );
    family(
        &mut o,
        "archive_lag_seconds",
        g,
        "Seconds from the wall time of the archived epoch to now, floored at 0; +Inf while nothing is archived.",
        Some(s.lag_ms().map_or_else(|| INF.to_string(), seconds)),
    );
    family(
        &mut o,
        "archived_epoch",
        g,
        "Last epoch archived on the archiver's timeline.",
        Some(s.archived_epoch.to_string()),
    );
    family(
        &mut o,
        "archived_lsn",
        g,
        "Last lsn archived on the archiver's timeline.",
        Some(s.archived_lsn.to_string()),
    );
    let (start, end) = (s.window.map(|w| w.0), s.window.map(|w| w.1));
    family(
        &mut o,
        "restorable_window_start_epoch",
        g,
        "First restorable epoch of the archiver's timeline.",
        start.map(|e| e.to_string()),
    );
    family(
        &mut o,
        "restorable_window_end_epoch",
        g,
        "Last restorable epoch of the archiver's timeline.",
        end.map(|e| e.to_string()),
    );
    family(
        &mut o,
        "restorable_window_start_seconds",
        g,
        "First restorable instant of the archiver's timeline, unix seconds.",
        start.map(|e| seconds(epoch::to_unix_ms(e))),
    );
    family(
        &mut o,
        "restorable_window_end_seconds",
        g,
        "Last restorable instant of the archiver's timeline, unix seconds.",
        end.map(|e| seconds(epoch::to_unix_ms(e))),
    );
    family(
        &mut o,
        "restorable_window_seconds",
        g,
        "Seconds from the first to the last restorable instant of the archiver's timeline; 0 when nothing is restorable.",
        Some(seconds(s.window.map_or(0, |(a, b)| {
            epoch::to_unix_ms(b).saturating_sub(epoch::to_unix_ms(a))
        }))),
    );
    family(
        &mut o,
        "newest_snapshot_age_seconds",
        g,
        "Seconds from the newest snapshot's max committed epoch to now, floored at 0; +Inf when there is none.",
        Some(
            s.newest_snapshot_epoch
                .map_or_else(|| INF.to_string(), |e| seconds(s.age_ms(e))),
        ),
    );
    family(
        &mut o,
        "snapshots",
        g,
        "Snapshots in the repo.",
        Some(s.snapshots.to_string()),
    );
    family(
        &mut o,
        "uploaded_bytes_total",
        c,
        "Stored (compressed) bytes of the WAL segments this process archived.",
        Some(s.uploaded_bytes.to_string()),
    );
    family(
        &mut o,
        "uploaded_objects_total",
        c,
        "WAL segments this process archived.",
        Some(s.uploaded_objects.to_string()),
    );
    family(
        &mut o,
        "archive_errors_total",
        c,
        "Archive passes that failed.",
        Some(s.errors.to_string()),
    );
    family(
        &mut o,
        "archive_passes_total",
        c,
        "Archive passes run, failed ones included.",
        Some(s.passes.to_string()),
    );
    family(
        &mut o,
        "archiver_fenced",
        g,
        "1 when another writer took the timeline over and this archiver must stop, else 0.",
        Some(u8::from(s.fenced).to_string()),
    );
    family(
        &mut o,
        "healthy",
        g,
        "1 when /health answers 200 (the repo can restore this archiver's recent epochs), else 0.",
        Some(u8::from(health(s).is_ok()).to_string()),
    );
    o
}

/// An epoch with its UTC time, for messages.
fn at(e: u64) -> String {
    format!("{e} ({})", epoch::format(e))
}

/// What `/health` answers: a one-line summary (200) or why the repo cannot restore this
/// archiver's recent epochs (503). Unhealthy, first reason first:
///
/// 1. fenced: another writer took the timeline over;
/// 2. the last archive pass failed (its error);
/// 3. no pass has finished yet;
/// 4. nothing is archived on the archiver's timeline;
/// 5. nothing on it is restorable: no snapshot and no WAL from lsn 1 to replay from;
/// 6. the archive reaches past the last restorable epoch (a gap, or no base after one);
/// 7. the archived epoch is older than `max_lag_ms`.
pub fn health(s: &MetricsSnapshot) -> std::result::Result<String, String> {
    if s.fenced {
        let why = s
            .last_error
            .as_deref()
            .unwrap_or("another writer took the timeline over");
        return Err(if why.starts_with("fenced") {
            why.to_string()
        } else {
            format!("fenced: {why}")
        });
    }
    if let Some(e) = &s.last_error {
        return Err(e.clone());
    }
    if s.passes == 0 {
        return Err("starting: no archive pass has finished yet".into());
    }
    let tl = s.timeline;
    if s.archived_epoch == 0 {
        return Err(format!(
            "nothing archived: the repo holds no WAL of timeline {tl}, so it can restore \
             nothing this archiver recorded; {} epochs wait in sealed segments of the WAL \
             directory (the open segment ships once the writer seals it)",
            s.unarchived_epochs
        ));
    }
    let Some((start, end)) = s.window else {
        return Err(format!(
            "nothing restorable: timeline {tl} is archived up to epoch {} but has no base to \
             replay it from (no snapshot of it, and its WAL does not start at lsn 1); a \
             store restored or imported mid-history gets one when the recorder opens it, \
             before anything archives it; see `metapitr info` and `metapitr snapshot list`",
            at(s.archived_epoch)
        ));
    };
    if end < s.archived_epoch {
        return Err(format!(
            "timeline {tl} is archived up to epoch {} but restorable only up to epoch {}: \
             the WAL after it has a gap or no base; run `metapitr verify`",
            at(s.archived_epoch),
            at(end)
        ));
    }
    let lag = s.lag_ms().unwrap_or(0);
    if let Some(max) = s.max_lag_ms.filter(|m| lag > *m) {
        return Err(format!(
            "archive lag {} s is above archive.health_max_lag ({} s): the newest archived \
             epoch is {}; later commits exist only in the WAL directory (or the meta service \
             committed nothing since)",
            seconds(lag),
            seconds(max),
            at(s.archived_epoch)
        ));
    }
    Ok(format!(
        "ok: timeline {tl} archived up to epoch {}, {} s ago; restorable from {} to {}; {} \
         snapshots",
        at(s.archived_epoch),
        seconds(lag),
        epoch::format(start),
        epoch::format(end),
        s.snapshots
    ))
}

#[derive(Debug, Default)]
struct State {
    snap: MetricsSnapshot,
    /// Each sealed local segment's distinct epochs (sealed segments never change).
    sealed: std::collections::HashMap<PathBuf, Vec<u64>>,
    manifest_read_ms: Option<u64>,
}

/// The archiver's metrics, shared between the archive loop and the HTTP server.
#[derive(Debug, Clone)]
pub struct ArchiverMetrics {
    state: Arc<Mutex<State>>,
    clock: SharedClock,
    wal_dir: PathBuf,
    /// The timeline the WAL directory records on (None: the manifest's newest).
    timeline: Option<u32>,
    max_lag_ms: Option<u64>,
}

impl ArchiverMetrics {
    pub fn new(clock: SharedClock, wal_dir: &Path, timeline: Option<u32>) -> ArchiverMetrics {
        ArchiverMetrics {
            state: Arc::new(Mutex::new(State::default())),
            clock,
            wal_dir: wal_dir.to_path_buf(),
            timeline,
            max_lag_ms: None,
        }
    }

    /// Makes `/health` fail when the archived epoch is older than `max` (None or zero: no
    /// limit).
    pub fn with_max_lag(mut self, max: Option<Duration>) -> Self {
        self.max_lag_ms = max
            .filter(|d| !d.is_zero())
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain numbers behind: still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current values, stamped with the clock's time.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let mut s = self.lock().snap.clone();
        s.now_ms = self.clock.now_ms();
        s.max_lag_ms = self.max_lag_ms;
        s
    }

    /// Sets the manifest-derived gauges.
    pub fn observe_manifest(&self, m: &Manifest) {
        let tl = self.timeline.unwrap_or_else(|| m.newest_timeline());
        let (lsn, ep) = m.timeline(tl).map_or((0, 0), |t| t.last());
        let ranges = crate::manifest::restorable_ranges(m, tl);
        let window = match (ranges.first(), ranges.last()) {
            (Some(f), Some(l)) => Some((f.0, l.1)),
            _ => None,
        };
        let now = self.clock.now_ms();
        let mut st = self.lock();
        st.snap.timeline = tl;
        st.snap.archived_lsn = lsn;
        st.snap.archived_epoch = ep;
        st.snap.window = window;
        st.snap.snapshots = m.snapshots.len() as u64;
        st.snap.newest_snapshot_epoch = m.snapshots.iter().map(|s| s.max_committed_epoch).max();
        st.manifest_read_ms = Some(now);
    }

    /// Reads the newest manifest into the gauges. A failure is logged and leaves the
    /// previous values (false); the next pass tries again.
    pub async fn refresh(&self, repo: &Repo) -> bool {
        match repo.load_manifest().await {
            Ok(m) => {
                let m = m.unwrap_or_default();
                // An idle archiver learns of a takeover only at its next publish; the
                // manifest already says so.
                if let Some((tl, ours)) = repo.fence() {
                    if m.timeline(tl).is_some_and(|t| t.writer_epoch > ours) {
                        let mut st = self.lock();
                        st.snap.fenced = true;
                        st.snap.last_error = Some(format!(
                            "fenced: another writer took timeline {tl} over (writer epoch {} > {ours})",
                            m.timeline(tl).map_or(0, |t| t.writer_epoch)
                        ));
                    }
                }
                self.observe_manifest(&m);
                true
            }
            Err(e) => {
                warn!(error = %e, "metrics: cannot read the manifest; keeping the previous values");
                false
            }
        }
    }

    /// Records one archive pass: counters, health, and (after an upload, or every
    /// [`MANIFEST_REFRESH_MS`]) the manifest-derived gauges and the local WAL's lag.
    pub async fn after_pass(&self, repo: &Repo, r: &Result<ArchiveReport>) {
        let refresh = {
            let mut st = self.lock();
            st.snap.passes += 1;
            match r {
                Ok(rep) => {
                    st.snap.last_error = None;
                    if rep.segments > 0 {
                        st.snap.uploaded_objects += rep.segments;
                        st.snap.uploaded_bytes += rep.stored_bytes;
                    }
                }
                Err(e) => {
                    st.snap.errors += 1;
                    st.snap.last_error = Some(e.to_string());
                    if e.kind() == ErrorKind::Fenced {
                        st.snap.fenced = true;
                    }
                }
            }
            let uploaded = matches!(r, Ok(rep) if rep.segments > 0);
            let due = st
                .manifest_read_ms
                .is_none_or(|t| self.clock.now_ms().saturating_sub(t) >= MANIFEST_REFRESH_MS);
            uploaded || due
        };
        // The archive's end moves with the window, from one manifest, so that /health never
        // sees the one without the other; the pass's report stands in when the manifest
        // cannot be read.
        let read = refresh && !self.lock().snap.fenced && self.refresh(repo).await;
        if let Some(rep) = r.as_ref().ok().filter(|rep| rep.segments > 0 && !read) {
            let mut st = self.lock();
            st.snap.archived_lsn = rep.archived_lsn;
            st.snap.archived_epoch = rep.archived_epoch;
        }
        self.observe_wal().await;
    }

    /// Counts the committed epochs in sealed local segments after the archived epoch. An
    /// unreadable directory or segment is logged and counts as none (the archive pass
    /// reports the problem itself).
    pub async fn observe_wal(&self) {
        let sealed: Vec<PathBuf> = match crate::wal::list_segments(&self.wal_dir) {
            Ok(segs) => segs
                .into_iter()
                .filter(|s| s.sealed)
                .map(|s| s.path)
                .collect(),
            Err(e) => {
                debug!(error = %e, "metrics: cannot list the WAL directory");
                Vec::new()
            }
        };
        let mut known = std::mem::take(&mut self.lock().sealed);
        known.retain(|p, _| sealed.contains(p));
        for p in &sealed {
            if !known.contains_key(p) {
                if let Some(epochs) = epochs_of(p).await {
                    known.insert(p.clone(), epochs);
                }
            }
        }
        let mut st = self.lock();
        let archived = st.snap.archived_epoch;
        let mut pending: Vec<u64> = known
            .values()
            .flatten()
            .copied()
            .filter(|e| *e > archived)
            .collect();
        pending.sort_unstable();
        pending.dedup();
        st.snap.unarchived_epochs = pending.len() as u64;
        st.sealed = known;
    }
}

/// The distinct epochs of a sealed segment file's records (None: unreadable, or archived
/// and deleted meanwhile).
async fn epochs_of(path: &Path) -> Option<Vec<u64>> {
    let data = match tokio::fs::read(path).await {
        Ok(d) => d,
        Err(e) => {
            debug!(path = %path.display(), error = %e, "metrics: cannot read a sealed segment");
            return None;
        }
    };
    let what = path.display().to_string();
    let r = tokio::task::spawn_blocking(move || {
        crate::wal::format::read_sealed(&data, &what).map(|(_, recs)| {
            let mut e: Vec<u64> = recs.iter().map(|r| r.epoch).collect();
            e.dedup();
            e
        })
    })
    .await;
    match r {
        Ok(Ok(e)) => Some(e),
        Ok(Err(e)) => {
            debug!(error = %e, "metrics: cannot read a sealed segment");
            None
        }
        Err(e) => {
            debug!(error = %e, "metrics: segment read task failed");
            None
        }
    }
}

/// The running HTTP server; it stops when dropped.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// The address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` and serves `/metrics` and `/health` from `metrics` until dropped.
pub async fn serve(addr: SocketAddr, metrics: ArchiverMetrics) -> Result<MetricsServer> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| bind_error(addr, e))?;
    let addr = listener.local_addr().map_err(|e| bind_error(addr, e))?;
    let task = tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors and the like: do not spin.
                    warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if let Err(e) = stream.set_nodelay(true) {
                debug!(error = %e, "metrics: cannot set TCP_NODELAY");
            }
            let m = metrics.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let m = m.clone();
                    async move { Ok::<_, Infallible>(handle(&req, &m)) }
                });
                if let Err(e) = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await
                {
                    debug!(error = %e, "metrics: connection ended with an error");
                }
            });
        }
    });
    Ok(MetricsServer { addr, task })
}

fn bind_error(addr: SocketAddr, e: std::io::Error) -> Error {
    use std::io::ErrorKind as K;
    let msg = format!("cannot serve metrics on {addr}: {e}");
    match e.kind() {
        K::AddrInUse => Error::invalid_input(format!(
            "{msg}; another process listens there: pick another --metrics-addr (port 0 picks a free one)"
        )),
        K::AddrNotAvailable | K::PermissionDenied | K::InvalidInput => Error::invalid_input(
            format!("{msg}; pick a local address and a port this user may bind for --metrics-addr"),
        ),
        _ => Error::archive(
            format!("{msg}; retry, or pick another --metrics-addr"),
            ErrorKind::Unavailable,
        ),
    }
}

fn handle(req: &Request<Incoming>, m: &ArchiverMetrics) -> Response<Full<Bytes>> {
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    let (status, content_type, body) = match req.uri().path() {
        "/metrics" if get => (StatusCode::OK, CONTENT_TYPE_METRICS, render(&m.snapshot())),
        "/health" | "/healthz" if get => match health(&m.snapshot()) {
            Ok(summary) => (StatusCode::OK, "text/plain", format!("{summary}\n")),
            Err(e) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("{e}\n"),
            ),
        },
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found; try /metrics or /health\n".to_string(),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    /// 2026-01-01T00:00:00Z.
    const JAN1_MS: u64 = 1_767_225_600_000;

    fn known() -> MetricsSnapshot {
        let e = |ms: u64| epoch::from_unix_ms(ms);
        MetricsSnapshot {
            now_ms: JAN1_MS + 10_500,
            timeline: 1,
            archived_epoch: e(JAN1_MS) | 7,
            archived_lsn: 1234,
            unarchived_epochs: 3,
            window: Some((e(JAN1_MS - 86_400_000), e(JAN1_MS) | 7)),
            snapshots: 3,
            newest_snapshot_epoch: Some(e(JAN1_MS - 60_000)),
            uploaded_bytes: 4096,
            uploaded_objects: 2,
            passes: 9,
            errors: 1,
            fenced: false,
            last_error: None,
            max_lag_ms: None,
        }
    }

    fn samples(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn render_prints_the_exact_samples() {
        let e0 = epoch::from_unix_ms(JAN1_MS);
        assert_eq!(e0, 9_829_770_854_400_000);
        let text = render(&known());
        assert_eq!(
            samples(&text),
            vec![
                "metapitr_archive_lag_epochs 3",
                "metapitr_archive_lag_seconds 10.500",
                "metapitr_archived_epoch 9829770854400007",
                "metapitr_archived_lsn 1234",
                "metapitr_restorable_window_start_epoch 9824108544000000",
                "metapitr_restorable_window_end_epoch 9829770854400007",
                "metapitr_restorable_window_start_seconds 1767139200.000",
                "metapitr_restorable_window_end_seconds 1767225600.000",
                "metapitr_restorable_window_seconds 86400.000",
                "metapitr_newest_snapshot_age_seconds 70.500",
                "metapitr_snapshots 3",
                "metapitr_uploaded_bytes_total 4096",
                "metapitr_uploaded_objects_total 2",
                "metapitr_archive_errors_total 1",
                "metapitr_archive_passes_total 9",
                "metapitr_archiver_fenced 0",
                "metapitr_healthy 1",
            ]
        );
        assert!(text.contains("# TYPE metapitr_uploaded_bytes_total counter\n"));
        assert!(text.contains("# TYPE metapitr_archived_epoch gauge\n"));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn every_family_has_help_then_type_then_at_most_one_sample() {
        for s in [known(), MetricsSnapshot::default()] {
            let text = render(&s);
            let lines: Vec<&str> = text.lines().collect();
            let mut i = 0;
            let mut families = 0;
            while i < lines.len() {
                let name = lines[i]
                    .strip_prefix("# HELP ")
                    .and_then(|r| r.split(' ').next())
                    .unwrap_or_else(|| panic!("expected HELP at line {i}: {}", lines[i]));
                assert!(name.starts_with("metapitr_"), "{name}");
                let ty = lines[i + 1]
                    .strip_prefix(&format!("# TYPE {name} "))
                    .unwrap_or_else(|| panic!("expected TYPE of {name}: {}", lines[i + 1]));
                assert_eq!(ty == "counter", name.ends_with("_total"), "{name} {ty}");
                i += 2;
                if let Some(v) = lines
                    .get(i)
                    .and_then(|l| l.strip_prefix(&format!("{name} ")))
                {
                    assert!(v.parse::<f64>().is_ok(), "{name} {v}");
                    i += 1;
                }
                families += 1;
            }
            assert_eq!(families, 17);
        }
    }

    #[test]
    fn unknown_instants_have_no_sample_unknown_ages_are_infinite_and_lag_is_floored() {
        let text = render(&MetricsSnapshot::default());
        let got = samples(&text);
        for absent in [
            "metapitr_restorable_window_start_epoch",
            "metapitr_restorable_window_end_seconds",
        ] {
            assert!(!got.iter().any(|l| l.starts_with(absent)), "{absent}");
            assert!(text.contains(&format!("# TYPE {absent} gauge")), "{absent}");
        }
        // What alerts compare has a sample that makes them fire: nothing archived and no
        // snapshot are infinitely old, an empty window is 0 s long.
        for present in [
            "metapitr_archive_lag_seconds +Inf",
            "metapitr_newest_snapshot_age_seconds +Inf",
            "metapitr_restorable_window_seconds 0.000",
            "metapitr_archive_lag_epochs 0",
            "metapitr_healthy 0",
        ] {
            assert!(got.contains(&present), "{present}: {got:?}");
        }
        assert_eq!("+Inf".parse::<f64>(), Ok(f64::INFINITY));
        // Archived ahead of the clock: 0, not negative.
        let mut s = known();
        s.now_ms = JAN1_MS - 1;
        s.unarchived_epochs = 0;
        let text = render(&s);
        let got = samples(&text);
        assert!(
            got.contains(&"metapitr_archive_lag_seconds 0.000"),
            "{got:?}"
        );
        assert!(got.contains(&"metapitr_archive_lag_epochs 0"), "{got:?}");
    }

    #[test]
    fn health_names_the_first_reason_the_repo_cannot_restore_recent_epochs() {
        let ok = known();
        let summary = health(&ok).unwrap();
        assert!(
            summary.starts_with("ok: timeline 1 archived up to epoch 9829770854400007")
                && summary.contains("10.500 s ago")
                && summary.contains("3 snapshots"),
            "{summary}"
        );
        let unhealthy = |f: &dyn Fn(&mut MetricsSnapshot)| {
            let mut s = known();
            f(&mut s);
            assert!(render(&s).contains("\nmetapitr_healthy 0\n"));
            health(&s).unwrap_err()
        };
        // The archive lags more than the limit; at the limit it is still healthy.
        let mut s = known();
        s.max_lag_ms = Some(10_500);
        assert!(health(&s).is_ok());
        let e = unhealthy(&|s| s.max_lag_ms = Some(10_499));
        assert!(
            e.contains("archive lag 10.500 s is above archive.health_max_lag (10.499 s)"),
            "{e}"
        );
        // Archived past the last restorable epoch.
        let e = unhealthy(&|s| s.window = Some((1 << 16, 2 << 16)));
        assert!(e.contains("restorable only up to epoch 131072"), "{e}");
        // Archived, but no base to replay it from (a WAL directory that began at a
        // checkpoint, no snapshot).
        let e = unhealthy(&|s| s.window = None);
        assert!(e.starts_with("nothing restorable: timeline 1"), "{e}");
        // Nothing archived (the WAL directory holds only a checkpoint).
        let e = unhealthy(&|s| {
            s.archived_epoch = 0;
            s.window = None;
        });
        assert!(e.starts_with("nothing archived"), "{e}");
        // No pass finished yet, the last pass failed, fenced: those come first.
        let e = unhealthy(&|s| {
            s.passes = 0;
            s.archived_epoch = 0;
        });
        assert!(e.contains("no archive pass"), "{e}");
        let e = unhealthy(&|s| {
            s.last_error = Some("object store down".into());
            s.archived_epoch = 0;
        });
        assert_eq!(e, "object store down");
        let e = unhealthy(&|s| {
            s.last_error = Some("object store down".into());
            s.fenced = true;
        });
        assert!(e.starts_with("fenced: "), "{e}");
        assert!(health(&MetricsSnapshot::default())
            .unwrap_err()
            .contains("no archive pass"));
    }

    /// A timeline archived from lsn 1 (epochs JAN1 - 60 s ..= JAN1) with a snapshot in the
    /// middle.
    fn manifest() -> Manifest {
        use crate::pb::{SegmentEntry, SnapshotEntry, TimelineEntry};
        let e = |ms: u64| epoch::from_unix_ms(ms);
        Manifest {
            timelines: vec![TimelineEntry {
                id: 1,
                segments: vec![SegmentEntry {
                    timeline: 1,
                    first_lsn: 1,
                    last_lsn: 10,
                    first_epoch: e(JAN1_MS - 60_000),
                    last_epoch: e(JAN1_MS),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            snapshots: vec![SnapshotEntry {
                id: 1,
                timeline: 1,
                lsn: 5,
                max_committed_epoch: e(JAN1_MS - 30_000),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// A memory repo holding [`manifest`].
    async fn archived_repo(clock: SharedClock) -> Repo {
        let repo = Repo::open("memory://", clock).unwrap();
        repo.update_manifest(|m| {
            *m = manifest();
            Ok(true)
        })
        .await
        .unwrap();
        repo
    }

    #[tokio::test]
    async fn the_manifest_sets_the_gauges_and_the_injected_clock_the_ages() {
        let clock = ManualClock::new(JAN1_MS + 1_000);
        let repo = Repo::open("memory://", clock.clone()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let m = ArchiverMetrics::new(clock.clone(), dir.path(), None);
        // An empty repo: nothing archived, nothing restorable.
        m.refresh(&repo).await;
        let s = m.snapshot();
        assert_eq!((s.archived_epoch, s.window, s.snapshots), (0, None, 0));
        assert_eq!(s.lag_ms(), None);
        let want = manifest();
        repo.update_manifest(|m| {
            *m = want.clone();
            Ok(true)
        })
        .await
        .unwrap();
        // An upload makes the pass re-read the manifest.
        let report = ArchiveReport {
            segments: 1,
            raw_bytes: 100,
            stored_bytes: 40,
            archived_lsn: 10,
            archived_epoch: epoch::from_unix_ms(JAN1_MS),
        };
        m.after_pass(&repo, &Ok(report)).await;
        let s = m.snapshot();
        let e = |ms: u64| epoch::from_unix_ms(ms);
        assert_eq!((s.archived_lsn, s.archived_epoch), (10, e(JAN1_MS)));
        assert_eq!(s.window, Some((e(JAN1_MS - 60_000), e(JAN1_MS))));
        assert_eq!(s.snapshots, 1);
        assert_eq!(s.newest_snapshot_epoch, Some(e(JAN1_MS - 30_000)));
        assert_eq!((s.uploaded_objects, s.uploaded_bytes), (1, 40));
        assert_eq!(s.lag_ms(), Some(1_000));
        // The ages move with the injected clock, not the system's.
        clock.advance(2_500);
        let text = render(&m.snapshot());
        assert!(
            text.contains("\nmetapitr_archive_lag_seconds 3.500\n"),
            "{text}"
        );
        assert!(
            text.contains("\nmetapitr_newest_snapshot_age_seconds 33.500\n"),
            "{text}"
        );
        // No sealed segment in the directory: no lag in epochs.
        assert!(text.contains("\nmetapitr_archive_lag_epochs 0\n"), "{text}");
    }

    #[tokio::test]
    async fn an_idle_archiver_sees_a_takeover_in_the_manifest() {
        let clock = ManualClock::new(JAN1_MS);
        let repo = archived_repo(clock.clone()).await;
        let ours = repo.claim_timeline(1).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let m = ArchiverMetrics::new(clock.clone(), dir.path(), Some(1));
        m.after_pass(&ours, &Ok(ArchiveReport::default())).await;
        assert!(health(&m.snapshot()).is_ok(), "{:?}", health(&m.snapshot()));
        // Another writer takes the timeline over; no pass of ours fails, but the next
        // manifest refresh tells.
        repo.claim_timeline(1).await.unwrap();
        clock.advance(MANIFEST_REFRESH_MS);
        m.after_pass(&ours, &Ok(ArchiveReport::default())).await;
        let s = m.snapshot();
        assert!(s.fenced);
        assert!(health(&s).unwrap_err().contains("took timeline 1 over"));
        assert!(render(&s).contains("\nmetapitr_archiver_fenced 1\n"));
    }

    #[tokio::test]
    async fn passes_update_the_counters_the_fence_and_health() {
        let clock = ManualClock::new(JAN1_MS);
        let repo = archived_repo(clock.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let m = ArchiverMetrics::new(clock, dir.path(), Some(1));
        assert!(health(&m.snapshot()).is_err(), "healthy before any pass");
        m.after_pass(&repo, &Ok(ArchiveReport::default())).await;
        assert!(health(&m.snapshot()).is_ok());
        let down = Error::archive("S3 is down", ErrorKind::Unavailable);
        m.after_pass(&repo, &Err(down)).await;
        let s = m.snapshot();
        assert_eq!((s.passes, s.errors, s.fenced), (2, 1, false));
        assert_eq!(health(&s), Err("S3 is down".into()));
        m.after_pass(&repo, &Ok(ArchiveReport::default())).await;
        assert!(health(&m.snapshot()).is_ok());
        m.after_pass(&repo, &Err(Error::fenced("taken over"))).await;
        let s = m.snapshot();
        assert_eq!((s.passes, s.errors, s.fenced), (4, 2, true));
        assert!(render(&s).contains("\nmetapitr_archiver_fenced 1\n"));
        assert_eq!(health(&s), Err("fenced: taken over".into()));
    }

    #[tokio::test]
    async fn lag_in_epochs_counts_sealed_epochs_not_archived() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(JAN1_MS);
        let w = crate::wal::Wal::open(dir.path(), 1, 1, Default::default(), clock.clone()).unwrap();
        for i in 1..=3u64 {
            let c = crate::model::Change {
                kind: Some(crate::model::change::Kind::SetParam(
                    crate::model::pb::SystemParam {
                        name: format!("p{i}"),
                        value: "v".into(),
                    },
                )),
            };
            w.append(epoch::from_unix_ms(JAN1_MS + i), &[c])
                .unwrap()
                .await
                .unwrap();
        }
        w.seal().await.unwrap();
        w.close().await.unwrap();
        let m = ArchiverMetrics::new(clock, dir.path(), Some(1));
        m.observe_manifest(&manifest());
        m.observe_wal().await;
        let s = m.snapshot();
        assert_eq!(s.lag_epochs(), 3);
        // Two of the three epochs archived: one left.
        let mut m2 = manifest();
        m2.timelines[0].segments.push(crate::pb::SegmentEntry {
            timeline: 1,
            first_lsn: 11,
            last_lsn: 12,
            first_epoch: epoch::from_unix_ms(JAN1_MS + 1),
            last_epoch: epoch::from_unix_ms(JAN1_MS + 2),
            ..Default::default()
        });
        m.observe_manifest(&m2);
        m.observe_wal().await;
        assert_eq!(m.snapshot().lag_epochs(), 1);
    }
}
