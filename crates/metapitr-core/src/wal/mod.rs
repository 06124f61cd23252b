//! The write-ahead log: every metadata change, framed and checksummed, in segment files.
//!
//! Layout of a WAL directory:
//!
//! ```text
//! LOCK                                   held (flock) by the one writer
//! {timeline:08}-{first_lsn:020}.wal      sealed segments, immutable, waiting for the archiver
//! {timeline:08}-{first_lsn:020}.wal.open the active segment (at most one)
//! ```
//!
//! Commits go through one writer thread that takes every commit waiting for it, writes
//! them, and fsyncs once for the group (group commit). A segment is sealed (fsynced,
//! renamed from `.wal.open` to `.wal`, directory fsynced) when it reaches
//! [`WalOptions::segment_max_bytes`] or its first record is
//! [`WalOptions::segment_max_age_ms`] old, and only at a commit boundary.

pub mod format;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use crate::clock::SharedClock;
use crate::error::{Error, Result};
pub use format::Record;
use format::{SegmentHeader, HEADER_LEN};
use prost::Message;

pub const LOCK_FILE: &str = "LOCK";

/// WAL tuning. Every field states its default.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// A segment is sealed once it holds this many bytes. Default 16 MiB.
    pub segment_max_bytes: u64,
    /// A segment is sealed once its first record is this old (by the injected clock), which
    /// bounds what a lost machine can take with it. Default 1000 ms.
    pub segment_max_age_ms: u64,
    /// A commit group stops taking commits at this many bytes. Default 4 MiB.
    pub group_max_bytes: usize,
    /// fsync every group. Turning this off loses the durability of acknowledged commits on a
    /// machine crash; it exists for simulations. Default true.
    pub sync: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_max_bytes: 16 << 20,
            segment_max_age_ms: 1000,
            group_max_bytes: 4 << 20,
            sync: true,
        }
    }
}

/// A segment file found in a WAL directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    pub path: PathBuf,
    pub timeline: u32,
    pub first_lsn: u64,
    pub sealed: bool,
}

pub fn segment_file_name(timeline: u32, first_lsn: u64, sealed: bool) -> String {
    format!(
        "{timeline:08}-{first_lsn:020}.wal{}",
        if sealed { "" } else { ".open" }
    )
}

/// Whether `name` is a segment file's name (sealed or active).
pub fn is_segment_name(name: &str) -> bool {
    parse_segment_name(name).is_some()
}

fn parse_segment_name(name: &str) -> Option<(u32, u64, bool)> {
    let (stem, sealed) = match name.strip_suffix(".wal.open") {
        Some(s) => (s, false),
        None => (name.strip_suffix(".wal")?, true),
    };
    let (tl, lsn) = stem.split_once('-')?;
    if tl.len() != 8 || lsn.len() != 20 {
        return None;
    }
    Some((tl.parse().ok()?, lsn.parse().ok()?, sealed))
}

/// The segment files of a directory, in lsn order.
pub fn list_segments(dir: &Path) -> Result<Vec<SegmentFile>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for ent in rd {
        let ent = ent.map_err(|e| Error::io(dir, e))?;
        let name = ent.file_name();
        if let Some((timeline, first_lsn, sealed)) = name.to_str().and_then(parse_segment_name) {
            out.push(SegmentFile {
                path: ent.path(),
                timeline,
                first_lsn,
                sealed,
            });
        }
    }
    out.sort_by_key(|s| (s.first_lsn, s.sealed));
    Ok(out)
}

pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Takes the directory's lock file, or fails with [`Error::locked`] (kind `Fenced`).
pub fn lock_dir(dir: &Path) -> Result<File> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(LOCK_FILE);
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(fs::TryLockError::WouldBlock) => Err(Error::locked(dir.to_path_buf())),
        Err(fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

/// What opening a WAL directory found and repaired.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// Set when a torn or checksum-failing tail was cut off the active segment.
    pub truncated: Option<Truncation>,
    /// The lsn the next record gets.
    pub next_lsn: u64,
    /// The epoch of the last record kept (0 if none).
    pub last_epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    pub file: PathBuf,
    pub offset: u64,
    pub dropped_bytes: u64,
    pub reason: String,
}

/// Reads and checks every segment of a directory, repairing a torn tail of the active
/// segment. Damage anywhere else is an error naming the file and byte offset.
fn recover(dir: &Path, timeline: u32, start_lsn: u64) -> Result<(Recovery, Option<ActiveSegment>)> {
    let segs = list_segments(dir)?;
    let mut rec = Recovery {
        next_lsn: start_lsn,
        ..Default::default()
    };
    let mut expected: Option<u64> = None;
    let mut active = None;
    let open_count = segs.iter().filter(|s| !s.sealed).count();
    if open_count > 1 {
        return Err(Error::corrupt(
            dir.display().to_string(),
            0,
            format!("{open_count} active (.wal.open) segments; at most one may exist"),
        ));
    }
    for (i, seg) in segs.iter().enumerate() {
        let what = seg.path.display().to_string();
        if !seg.sealed && i != segs.len() - 1 {
            return Err(Error::corrupt(
                &what,
                0,
                "an active segment is followed by other segments",
            ));
        }
        if seg.timeline != timeline {
            return Err(Error::invalid_input(format!(
                "{what} belongs to timeline {} but this WAL is opened on timeline {timeline}; archive it and move it away first",
                seg.timeline
            )));
        }
        if let Some(e) = expected {
            if seg.first_lsn != e {
                return Err(Error::corrupt(
                    &what,
                    0,
                    format!(
                        "segment starts at lsn {} but the previous one ends at {}",
                        seg.first_lsn,
                        e - 1
                    ),
                ));
            }
        }
        let data = fs::read(&seg.path).map_err(|e| Error::io(&seg.path, e))?;
        if seg.sealed {
            let (h, records) = format::read_sealed::<format::Unparsed>(&data, &what)?;
            check_header(&h, seg, &what)?;
            let last = records.last().map(|r| (r.lsn, r.epoch)).unwrap_or_default();
            expected = Some(last.0.saturating_add(1));
            rec.last_epoch = last.1;
            continue;
        }
        // The active segment: a torn tail is expected after a crash.
        if data.len() <= HEADER_LEN && format::SegmentHeader::decode(&data, &what).is_err() {
            warn!(file = %what, bytes = data.len(), "removing an active segment whose header was never completely written");
            fs::remove_file(&seg.path).map_err(|e| Error::io(&seg.path, e))?;
            continue;
        }
        let s = format::scan::<format::Unparsed>(&data, &what)?;
        check_header(&s.header, seg, &what)?;
        let cut = if let Some(e) = &s.error {
            let next_lsn = seg.first_lsn.saturating_add(s.records.len() as u64);
            if let Some(p) = format::intact_frame_after(&data, e.offset as usize, next_lsn) {
                return Err(Error::corrupt(
                    &what,
                    e.offset,
                    format!(
                        "{} (an intact record follows at offset {p}, so this is not a torn tail)",
                        e.reason
                    ),
                ));
            }
            Some(e.reason.clone())
        } else if s.batch_end != data.len() {
            Some("the last commit batch is incomplete".to_string())
        } else {
            None
        };
        if let Some(reason) = cut {
            let t = Truncation {
                file: seg.path.clone(),
                offset: s.batch_end as u64,
                dropped_bytes: (data.len() - s.batch_end) as u64,
                reason,
            };
            warn!(file = %what, offset = t.offset, dropped = t.dropped_bytes, reason = %t.reason, "truncated the torn tail of the WAL");
            let f = OpenOptions::new()
                .write(true)
                .open(&seg.path)
                .map_err(|e| Error::io(&seg.path, e))?;
            f.set_len(s.batch_end as u64)
                .and_then(|_| f.sync_all())
                .map_err(|e| Error::io(&seg.path, e))?;
            rec.truncated = Some(t);
        }
        let kept = &s.records[..s.batch_records];
        if let Some(r) = kept.last() {
            rec.last_epoch = r.epoch;
        }
        expected = Some(seg.first_lsn + kept.len() as u64);
        if kept.is_empty() {
            fs::remove_file(&seg.path).map_err(|e| Error::io(&seg.path, e))?;
        } else {
            let file = OpenOptions::new()
                .append(true)
                .open(&seg.path)
                .map_err(|e| Error::io(&seg.path, e))?;
            active = Some(ActiveSegment {
                file,
                path: seg.path.clone(),
                first_lsn: seg.first_lsn,
                bytes: s.batch_end as u64,
                opened_ms: None,
                first_epoch_ms: s.records.first().map(|r| crate::epoch::to_unix_ms(r.epoch)),
            });
        }
    }
    if let Some(e) = expected {
        rec.next_lsn = rec.next_lsn.max(e);
    }
    Ok((rec, active))
}

fn check_header(h: &SegmentHeader, seg: &SegmentFile, what: &str) -> Result<()> {
    if h.first_lsn != seg.first_lsn || h.timeline != seg.timeline {
        return Err(Error::corrupt(
            what,
            12,
            format!(
                "header says timeline {} lsn {} but the file name says timeline {} lsn {}",
                h.timeline, h.first_lsn, seg.timeline, seg.first_lsn
            ),
        ));
    }
    Ok(())
}

/// Reads the records of every local segment with lsn > `after`, in order.
pub fn read_local_records<C: Message + Default>(dir: &Path, after: u64) -> Result<Vec<Record<C>>> {
    let mut out = Vec::new();
    for seg in list_segments(dir)? {
        let data = fs::read(&seg.path).map_err(|e| Error::io(&seg.path, e))?;
        let what = seg.path.display().to_string();
        let records = if seg.sealed {
            format::read_sealed(&data, &what)?.1
        } else {
            let s = format::scan(&data, &what)?;
            s.records.into_iter().take(s.batch_records).collect()
        };
        out.extend(records.into_iter().filter(|r| r.lsn > after));
    }
    Ok(out)
}

struct ActiveSegment {
    file: File,
    path: PathBuf,
    first_lsn: u64,
    bytes: u64,
    /// Clock time of the segment's first record, or of the open that recovered it (None:
    /// nothing written yet).
    opened_ms: Option<u64>,
    /// The time of the first epoch written into the segment by this writer (None: none).
    first_epoch_ms: Option<u64>,
}

enum Request {
    Append {
        first_lsn: u64,
        last_lsn: u64,
        /// The batch's epoch.
        epoch: u64,
        frames: Vec<u8>,
        ack: oneshot::Sender<Result<()>>,
    },
    Seal(oneshot::Sender<Result<()>>),
    Flush(oneshot::Sender<Result<()>>),
}

/// lsns given to one commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LsnRange {
    pub first: u64,
    pub last: u64,
}

struct Tail {
    next_lsn: u64,
    last_epoch: u64,
}

/// An open WAL with its writer thread.
pub struct Wal {
    dir: PathBuf,
    timeline: u32,
    tx: Option<mpsc::Sender<Request>>,
    thread: Option<std::thread::JoinHandle<()>>,
    tail: Mutex<Tail>,
    sealed: watch::Receiver<u64>,
    recovery: Recovery,
    _lock: File,
}

impl Wal {
    /// Opens (creating if needed) and recovers a WAL directory. `start_lsn` is the lsn the
    /// first record gets if the directory holds none past it.
    pub fn open(
        dir: &Path,
        timeline: u32,
        start_lsn: u64,
        opts: WalOptions,
        clock: SharedClock,
    ) -> Result<Wal> {
        Wal::open_locked(lock_dir(dir)?, dir, timeline, start_lsn, opts, clock)
    }

    /// [`Wal::open`] with the directory's lock already held by the caller.
    pub fn open_locked(
        lock: File,
        dir: &Path,
        timeline: u32,
        start_lsn: u64,
        opts: WalOptions,
        clock: SharedClock,
    ) -> Result<Wal> {
        let (recovery, mut active) = recover(dir, timeline, start_lsn.max(1))?;
        if let Some(a) = active.as_mut() {
            // A segment recovered non-empty is sealed by age counting from now.
            a.opened_ms = Some(clock.now_ms());
        }
        if recovery.truncated.is_some() || active.is_some() {
            info!(dir = %dir.display(), next_lsn = recovery.next_lsn, "recovered WAL");
        }
        let (tx, rx) = mpsc::channel();
        let (sealed_tx, sealed) = watch::channel(0);
        let writer = Writer {
            dir: dir.to_path_buf(),
            timeline,
            opts,
            clock,
            active,
            sealed: sealed_tx,
            failed: None,
        };
        let thread = std::thread::Builder::new()
            .name("metapitr-wal".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::io(dir, e))?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            timeline,
            tx: Some(tx),
            thread: Some(thread),
            tail: Mutex::new(Tail {
                next_lsn: recovery.next_lsn,
                last_epoch: recovery.last_epoch,
            }),
            sealed,
            recovery,
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn timeline(&self) -> u32 {
        self.timeline
    }

    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    pub fn next_lsn(&self) -> u64 {
        self.tail.lock().map(|t| t.next_lsn).unwrap_or(0)
    }

    /// Counts the segments sealed since open; changes every time one is sealed.
    pub fn sealed_watch(&self) -> watch::Receiver<u64> {
        self.sealed.clone()
    }

    /// Queues a commit of `changes` at `epoch` and returns at once; the returned future
    /// resolves when the commit is durable. Commits are written in the order of these calls.
    pub fn append(
        &self,
        epoch: u64,
        changes: &[impl Message + Default],
    ) -> Result<impl std::future::Future<Output = Result<LsnRange>>> {
        if changes.is_empty() {
            return Err(Error::invalid_input("a commit needs at least one change"));
        }
        let mut tail = self
            .tail
            .lock()
            .map_err(|_| Error::internal("WAL tail lock poisoned"))?;
        if epoch < tail.last_epoch {
            return Err(Error::invalid_input(format!(
                "epoch {epoch} is below the last committed epoch {}",
                tail.last_epoch
            )));
        }
        let first = tail.next_lsn;
        let mut frames = Vec::new();
        for (i, c) in changes.iter().enumerate() {
            format::encode_record(
                &mut frames,
                first + i as u64,
                epoch,
                i + 1 == changes.len(),
                c,
            )?;
        }
        let last = first + changes.len() as u64 - 1;
        let (ack, rx) = oneshot::channel();
        self.send(Request::Append {
            first_lsn: first,
            last_lsn: last,
            epoch,
            frames,
            ack,
        })?;
        tail.next_lsn = last + 1;
        tail.last_epoch = epoch;
        drop(tail);
        Ok(async move {
            rx.await
                .map_err(|_| Error::internal("WAL writer thread exited"))??;
            Ok(LsnRange { first, last })
        })
    }

    /// Resolves once everything appended before the call is durable.
    pub async fn flush(&self) -> Result<()> {
        let (ack, rx) = oneshot::channel();
        self.send(Request::Flush(ack))?;
        rx.await
            .map_err(|_| Error::internal("WAL writer thread exited"))?
    }

    /// Seals the active segment if it holds anything.
    pub async fn seal(&self) -> Result<()> {
        let (ack, rx) = oneshot::channel();
        self.send(Request::Seal(ack))?;
        rx.await
            .map_err(|_| Error::internal("WAL writer thread exited"))?
    }

    fn send(&self, r: Request) -> Result<()> {
        self.tx
            .as_ref()
            .ok_or_else(|| Error::internal("WAL is closed"))?
            .send(r)
            .map_err(|_| Error::internal("WAL writer thread exited"))
    }

    /// Seals what is written and stops the writer thread.
    pub async fn close(mut self) -> Result<()> {
        let r = self.seal().await;
        self.stop();
        r
    }

    fn stop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Makes the WAL directory of a stopped (or crashed) writer ready to archive offline:
/// takes the directory's lock, so that a directory a live writer holds is refused with
/// [`Error::Locked`] (taking its timeline over would fence that writer's own archiver);
/// recovers the directory, truncating a torn tail; and seals the active segment, if any,
/// so that every record is in a sealed segment. Returns the lock, to be held while the
/// directory is archived (`metapitr archive --once`).
pub async fn seal_crashed_tail(dir: &Path, clock: SharedClock) -> Result<File> {
    let lock = lock_dir(dir)?;
    let segs = list_segments(dir)?;
    if let Some(open) = segs.iter().find(|s| !s.sealed) {
        let held = lock.try_clone().map_err(|e| Error::io(dir, e))?;
        Wal::open_locked(
            held,
            dir,
            open.timeline,
            open.first_lsn,
            WalOptions::default(),
            clock,
        )?
        .close()
        .await?;
    }
    Ok(lock)
}

/// The one fsync of a commit group; nothing of the group is acknowledged before it returns.
fn sync_group(a: &ActiveSegment) -> std::result::Result<(), String> {
    fail::fail_point!("wal::before_fsync", |_| Err(format!(
        "fsync {}: injected failure (fail point wal::before_fsync)",
        a.path.display()
    )));
    a.file
        .sync_data()
        .map_err(|e| format!("fsync {}: {e}", a.path.display()))
}

struct Writer {
    dir: PathBuf,
    timeline: u32,
    opts: WalOptions,
    clock: SharedClock,
    active: Option<ActiveSegment>,
    sealed: watch::Sender<u64>,
    /// Set after an I/O failure: nothing more is written.
    failed: Option<String>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Request>) {
        loop {
            let first = match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(r) => r,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.seal_if_due();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut group = vec![first];
            let mut bytes = 0;
            while bytes < self.opts.group_max_bytes {
                match rx.try_recv() {
                    Ok(r) => {
                        if let Request::Append { frames, .. } = &r {
                            bytes += frames.len();
                        }
                        group.push(r);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group);
            self.seal_if_due();
        }
    }

    fn commit_group(&mut self, group: Vec<Request>) {
        let mut acks = Vec::new();
        let mut seals = Vec::new();
        let mut acks_flush = Vec::new();
        let mut result = match &self.failed {
            Some(f) => Err(f.clone()),
            None => Ok(()),
        };
        for r in group {
            match r {
                Request::Append {
                    first_lsn,
                    last_lsn,
                    epoch,
                    frames,
                    ack,
                } => {
                    // A batch that would make the segment too old (by its records' epochs) or
                    // too big starts a new one. Judged by the batches themselves, so the
                    // segments a history makes do not depend on how commits were grouped.
                    if result.is_ok() && self.full_before(epoch) {
                        result = self.seal().map_err(|e| e.to_string());
                    }
                    if result.is_ok() {
                        result = self.write(first_lsn, last_lsn, epoch, &frames);
                    }
                    acks.push(ack);
                }
                Request::Seal(ack) => seals.push(ack),
                Request::Flush(ack) => acks_flush.push(ack),
            }
        }
        if result.is_ok() && !acks.is_empty() && self.opts.sync {
            if let Some(a) = &self.active {
                result = sync_group(a);
            }
        }
        if let Err(e) = &result {
            self.failed.get_or_insert_with(|| e.clone());
        }
        if !acks.is_empty() {
            fail::fail_point!("wal::after_fsync_before_ack");
        }
        for ack in acks {
            let _ = ack.send(
                result
                    .clone()
                    .map_err(|e| Error::poisoned(format!("WAL write failed: {e}"))),
            );
        }
        for ack in acks_flush {
            let _ = ack.send(
                result
                    .clone()
                    .map_err(|e| Error::poisoned(format!("WAL write failed: {e}"))),
            );
        }
        for ack in seals {
            let r = self.seal();
            let _ = ack.send(r);
        }
    }

    /// Whether the active segment must be sealed before a batch at `epoch` is written: it
    /// already spans the segment age in epoch time, or holds the segment size.
    fn full_before(&self, epoch: u64) -> bool {
        self.active.as_ref().is_some_and(|a| {
            a.bytes >= self.opts.segment_max_bytes
                || a.first_epoch_ms.is_some_and(|first| {
                    crate::epoch::to_unix_ms(epoch).saturating_sub(first)
                        >= self.opts.segment_max_age_ms
                })
        })
    }

    fn write(
        &mut self,
        first_lsn: u64,
        _last_lsn: u64,
        epoch: u64,
        frames: &[u8],
    ) -> std::result::Result<(), String> {
        if self.active.is_none() {
            let path = self
                .dir
                .join(segment_file_name(self.timeline, first_lsn, false));
            let mut file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(|e| format!("create {}: {e}", path.display()))?;
            let header = SegmentHeader {
                timeline: self.timeline,
                first_lsn,
            }
            .encode();
            file.write_all(&header)
                .map_err(|e| format!("write {}: {e}", path.display()))?;
            fsync_dir(&self.dir).map_err(|e| e.to_string())?;
            self.active = Some(ActiveSegment {
                file,
                path,
                first_lsn,
                bytes: HEADER_LEN as u64,
                opened_ms: None,
                first_epoch_ms: None,
            });
        }
        let now = self.clock.now_ms();
        let a = self
            .active
            .as_mut()
            .ok_or_else(|| "no active segment".to_string())?;
        a.file
            .write_all(frames)
            .map_err(|e| format!("write {}: {e}", a.path.display()))?;
        a.bytes += frames.len() as u64;
        a.opened_ms.get_or_insert(now);
        a.first_epoch_ms
            .get_or_insert(crate::epoch::to_unix_ms(epoch));
        Ok(())
    }

    fn seal_if_due(&mut self) {
        let due = match &self.active {
            Some(a) => {
                a.bytes >= self.opts.segment_max_bytes
                    || a.opened_ms.is_some_and(|t| {
                        self.clock.now_ms().saturating_sub(t) >= self.opts.segment_max_age_ms
                    })
            }
            None => false,
        };
        if due && self.failed.is_none() {
            if let Err(e) = self.seal() {
                warn!(error = %e, "sealing the WAL segment failed");
                self.failed = Some(e.to_string());
            }
        }
    }

    /// fsync, rename `.wal.open` → `.wal`, fsync the directory, announce.
    fn seal(&mut self) -> Result<()> {
        if let Some(f) = &self.failed {
            return Err(Error::poisoned(format!("WAL write failed: {f}")));
        }
        let Some(a) = self.active.take() else {
            return Ok(());
        };
        a.file.sync_all().map_err(|e| Error::io(&a.path, e))?;
        let sealed = self
            .dir
            .join(segment_file_name(self.timeline, a.first_lsn, true));
        fs::rename(&a.path, &sealed).map_err(|e| Error::io(&a.path, e))?;
        fsync_dir(&self.dir)?;
        // The last lsn of the sealed segment is one below the next append's first lsn;
        // the archiver reads exact bounds from the file, so announce "something sealed".
        self.sealed.send_modify(|v| *v += 1);
        Ok(())
    }
}
