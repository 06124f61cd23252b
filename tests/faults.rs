//! Archive, snapshot and restore while object storage fails: calls that fail before they
//! happen, after they happened (the ambiguous write), part way through a GET body or a
//! LIST, and slow calls. A run either completes or stops with a retryable or fencing error,
//! never panics, and afterwards the repo holds a consistent archive whose restorable
//! epochs restore exactly the truth.
//!
//! Every case prints nothing unless it fails; a failure names its seed. `PROPTEST_CASES`
//! sets how many seeds each property tries; `FAULTS_VERBOSE=1` prints each run's outcome
//! and the faults injected into it.
//!
//! Fault decisions replay from the seed per object path (see `metapitr::faulty_store`),
//! but a run's archiver races its commits and snapshots, so the same seed may take a
//! slightly different path through the repo on another run. The regression tests pin
//! down, deterministically, the bugs these properties found (each fixed).

mod common;

use common::assert_matches;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::TryStreamExt;
use metapitr::archive;
use metapitr::clock::SharedClock;
use metapitr::codec;
use metapitr::error::{Error, ErrorKind};
use metapitr::faulty_store::{FaultConfig, FaultyObjectStore, Op, OpFaults};
use metapitr::jsonl;
use metapitr::pin;
use metapitr::repo::{Repo, RetryPolicy};
use metapitr::restore::{self, restorable_ranges, Target};
use metapitr::sim::{self, RunReport, Simulator};
use metapitr::snapshot;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Enough attempts that 20% faults practically never exhaust them, and backoffs of a few
/// milliseconds so that the tests stay fast.
fn patient() -> RetryPolicy {
    RetryPolicy {
        attempts: 14,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(4),
        ..Default::default()
    }
}

/// Few attempts, so that runs under heavy faults do give up.
fn impatient() -> RetryPolicy {
    RetryPolicy {
        attempts: 2,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(1),
        ..Default::default()
    }
}

/// Every kind of operation fails `p` of the time, before, after or part way, and is slowed
/// `p` of the time by up to 2 ms.
fn flaky(p: f64) -> FaultConfig {
    FaultConfig::flaky(p, Duration::from_millis(2))
}

// ---------------------------------------------------------------------------------------
// Panics anywhere in a run, spawned tasks included (tokio would swallow those), are caught
// by a hook that records them per runtime, recognized by its threads' names.

fn panics() -> &'static Mutex<HashMap<String, Vec<String>>> {
    static P: OnceLock<Mutex<HashMap<String, Vec<String>>>> = OnceLock::new();
    P.get_or_init(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let name = std::thread::current().name().unwrap_or("").to_string();
            if let Some(tag) = name.strip_prefix("faults-rt-") {
                let mut m = panics().lock().unwrap_or_else(|e| e.into_inner());
                m.entry(tag.to_string()).or_default().push(info.to_string());
            }
            prev(info);
        }));
        Mutex::new(HashMap::new())
    })
}

/// A runtime whose threads are named after `tag`, so that the panic hook can attribute
/// panics to it.
fn tagged_rt(tag: &str) -> tokio::runtime::Runtime {
    let _ = panics();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(format!("faults-rt-{tag}"))
        .enable_all()
        .build()
        .unwrap()
}

fn panics_of(tag: &str) -> Vec<String> {
    panics()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(tag)
        .unwrap_or_default()
}

fn unique_tag(what: &str, seed: u64) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{what}-{seed}-{n}")
}

// ---------------------------------------------------------------------------------------

/// A simulated run against a repo behind a [`FaultyObjectStore`].
struct FaultyRun {
    seed: u64,
    mem: Arc<InMemory>,
    faulty: Arc<FaultyObjectStore>,
    clock: SharedClock,
    dir: tempfile::TempDir,
    /// Whether the run continued where an earlier one stopped.
    resumed: bool,
    result: Result<RunReport, Error>,
}

impl FaultyRun {
    /// A repo on the same objects, without faults.
    fn clean_repo(&self) -> Repo {
        Repo::from_store(
            self.mem.clone(),
            Path::default(),
            "memory://after",
            self.clock.clone(),
        )
    }

    /// Truth files the run wrote, by epoch.
    fn truths(&self) -> BTreeMap<u64, PathBuf> {
        let mut out = BTreeMap::new();
        let Ok(rd) = std::fs::read_dir(self.dir.path().join("truth")) else {
            return out;
        };
        for e in rd.flatten() {
            let p = e.path();
            let epoch = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".jsonl"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(epoch) = epoch {
                out.insert(epoch, p);
            }
        }
        out
    }
}

/// Simulates `epochs` epochs with a snapshot every `snap` into a repo whose store injects
/// `config`, with `retry`. The runtime is dropped before this returns, which also stops an
/// archiver that a failed run left behind.
fn run_under_faults(
    seed: u64,
    epochs: u64,
    snap: u64,
    truth_every: u64,
    config: FaultConfig,
    retry: RetryPolicy,
) -> FaultyRun {
    let dir = tempfile::tempdir().unwrap();
    let mem = Arc::new(InMemory::new());
    run_on(
        seed,
        dir,
        mem,
        false,
        epochs,
        snap,
        truth_every,
        config,
        retry,
    )
}

/// Runs again where `prior` stopped: the same WAL directory, truth directory and objects.
fn resume_under_faults(
    prior: FaultyRun,
    epochs: u64,
    snap: u64,
    truth_every: u64,
    config: FaultConfig,
    retry: RetryPolicy,
) -> FaultyRun {
    let FaultyRun { seed, dir, mem, .. } = prior;
    run_on(
        seed,
        dir,
        mem,
        true,
        epochs,
        snap,
        truth_every,
        config,
        retry,
    )
}

#[allow(clippy::too_many_arguments)]
fn run_on(
    seed: u64,
    dir: tempfile::TempDir,
    mem: Arc<InMemory>,
    resumed: bool,
    epochs: u64,
    snap: u64,
    truth_every: u64,
    config: FaultConfig,
    retry: RetryPolicy,
) -> FaultyRun {
    let mut opts = common::run_opts(seed, epochs, Some(snap), truth_every, dir.path());
    opts.recorder.archive_poll = Duration::from_millis(5);
    let mut sim = Simulator::new(opts.sim.clone());
    let faulty = Arc::new(FaultyObjectStore::new(mem.clone(), config, seed).with_write_log());
    let clock: SharedClock = sim.clock();
    let repo = Repo::from_store(faulty.clone(), Path::default(), "faulty://", clock.clone())
        .with_retry(retry)
        .with_writer_id(seed);
    let tag = unique_tag("run", seed);
    let rt = tagged_rt(&tag);
    let result = rt.block_on(sim::run_with_repo(
        repo,
        &dir.path().join("wal"),
        opts,
        &mut sim,
    ));
    drop(rt);
    let p = panics_of(&tag);
    assert!(p.is_empty(), "seed {seed}: the run panicked: {p:#?}");
    if std::env::var_os("FAULTS_VERBOSE").is_some() {
        let outcome = match &result {
            Ok(r) => format!("completed, {} records", r.records),
            Err(e) => format!("stopped ({:?}): {e}", e.kind()),
        };
        eprintln!(
            "seed {seed} (resumed: {resumed}): {outcome}\n  {}",
            faulty.stats()
        );
    }
    FaultyRun {
        seed,
        mem,
        faulty,
        clock,
        dir,
        resumed,
        result,
    }
}

/// The keys of every object under `prefix`, with their bytes.
async fn objects(store: &dyn ObjectStore, prefix: &str) -> BTreeMap<String, bytes::Bytes> {
    let metas: Vec<_> = store
        .list(Some(&Path::from(prefix)))
        .try_collect()
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for m in metas {
        let b = store.get(&m.location).await.unwrap().bytes().await.unwrap();
        out.insert(m.location.to_string(), b);
    }
    out
}

/// What [`check_repo`] found, for properties to say more about.
struct Checked {
    /// (last lsn, last epoch) of timeline 1's archive; None for an empty repo.
    archived: Option<(u64, u64)>,
    restored: usize,
}

/// With faults off: the archive of every timeline has no gap and no duplicate and every
/// segment of it reads back; a segment object the manifest does not list holds the same
/// records as the archive where they overlap (and, unless the run resumed an earlier
/// one, lies beyond the archived end); the pin sets cover the archive and the snapshots
/// read back; every sampled truth epoch the manifest says is restorable restores equal
/// to the truth. A completed run must have archived everything and left nothing behind.
///
/// `leftover_pins`: tolerate pin set objects the manifest no longer names (see
/// `a_replaced_pin_set_is_deleted_even_if_the_first_delete_fails`).
fn check_repo(run: &FaultyRun, samples: usize, leftover_pins: bool) -> Checked {
    let seed = run.seed;
    let rt = common::rt();
    rt.block_on(async {
        let repo = run.clean_repo();
        let m = match repo.load_manifest().await.unwrap() {
            Some(m) => m,
            None => {
                assert!(
                    run.result.is_err(),
                    "seed {seed}: a completed run left no manifest"
                );
                return Checked {
                    archived: None,
                    restored: 0,
                };
            }
        };
        // The archive: consecutive segments per timeline, each object present and whole.
        let mut listed = BTreeSet::new();
        let mut history = BTreeMap::new();
        for tl in &m.timelines {
            let segs = archive::segment_entries(&repo, &m, tl.id, 0, u64::MAX)
                .await
                .unwrap();
            // A timeline forked from a parent may start anywhere; the first one at its start.
            let mut expect = match segs.first() {
                Some(first) if tl.parent != 0 => first.first_lsn,
                _ => tl.fork_lsn + 1,
            };
            for s in &segs {
                assert_eq!(
                    s.first_lsn,
                    expect,
                    "seed {seed}: timeline {} has a gap or an overlap at {}",
                    tl.id,
                    s.key()
                );
                assert!(s.last_lsn >= s.first_lsn);
                expect = s.last_lsn + 1;
                assert!(
                    listed.insert(s.key()),
                    "seed {seed}: {} listed twice",
                    s.key()
                );
                let records = archive::fetch_segment(&repo, s).await.unwrap();
                assert_eq!(records.first().map(|r| r.lsn), Some(s.first_lsn));
                for r in records {
                    history.insert((tl.id, r.lsn), r);
                }
            }
            assert_eq!(
                (
                    expect - 1,
                    segs.last().map_or(tl.fork_epoch, |s| s.last_epoch)
                ),
                tl.last(),
                "seed {seed}: the timeline's end is not its last segment's"
            );
        }
        // Segment objects the manifest does not list: uploads a failed run never published
        // (nothing deletes them). A completed first run leaves none. Each is a whole
        // segment that agrees with the archive record for record: one history, never two.
        let stored = objects(run.mem.as_ref(), "wal").await;
        for (key, bytes) in &stored {
            if listed.contains(key) {
                continue;
            }
            assert!(
                run.result.is_err() || run.resumed,
                "seed {seed}: {key} is in the repo but not in the manifest of a completed run"
            );
            let data = codec::decompress(bytes, key).unwrap();
            let (h, records) = metapitr::wal::format::read_sealed(&data, key).unwrap();
            let end = m.timeline(h.timeline).map_or(0, |t| t.last().0);
            if !run.resumed {
                assert!(
                    h.first_lsn > end,
                    "seed {seed}: unlisted {key} starts at lsn {} inside the archive (ends at {end})",
                    h.first_lsn
                );
            }
            for r in &records {
                if let Some(a) = history.get(&(h.timeline, r.lsn)) {
                    assert_eq!(
                        a, r,
                        "seed {seed}: unlisted {key} holds another record at lsn {}",
                        r.lsn
                    );
                }
            }
        }
        // Pin sets and snapshots read back.
        let pins = pin::load_all(&repo).await.unwrap();
        for p in &pins {
            let end = m.timeline(p.timeline).map_or(0, |t| t.last().0);
            assert_eq!(p.to_lsn, end, "seed {seed}: the pin set lags the archive");
        }
        for s in &m.snapshots {
            snapshot::fetch(&repo, s).await.unwrap();
        }
        let archived = m.timeline(1).map(|t| t.last());
        if let Ok(report) = &run.result {
            // Nothing left behind: every pin set and snapshot object is one the manifest
            // names.
            let named: BTreeSet<String> = m
                .pins
                .iter()
                .map(pin::pin_key)
                .chain(m.snapshots.iter().map(metapitr::repo::snapshot_entry_key))
                .collect();
            let prefixes: &[&str] = match (leftover_pins, run.resumed) {
                // A failed earlier run may have left a snapshot it never listed.
                (_, true) => &[],
                (true, false) => &["snapshots"],
                (false, false) => &["pins", "snapshots"],
            };
            for prefix in prefixes {
                for k in objects(run.mem.as_ref(), prefix).await.keys() {
                    assert!(
                        named.contains(k),
                        "seed {seed}: {k} is left over after a completed run"
                    );
                }
            }
            let (lsn, epoch) = archived.unwrap_or_default();
            assert_eq!(
                epoch, report.last_epoch,
                "seed {seed}: a completed run did not archive everything"
            );
            if run.resumed {
                assert!(lsn >= report.records);
                assert!(m.snapshots.len() >= report.snapshots.len());
            } else {
                assert_eq!(lsn, report.records);
                assert_eq!(m.snapshots.len(), report.snapshots.len());
            }
            assert_eq!(pins.len(), 1);
        }
        // Restorable truth epochs restore to the truth.
        let ranges = restorable_ranges(&m, 1);
        let truths = run.truths();
        let mut restorable: Vec<u64> = truths
            .keys()
            .copied()
            .filter(|e| ranges.iter().any(|(a, b)| (a..=b).contains(&e)))
            .collect();
        if run.result.is_ok() {
            assert_eq!(
                restorable.len(),
                truths.len(),
                "seed {seed}: a completed run leaves every epoch restorable: {ranges:?}"
            );
        }
        let last = restorable.last().copied();
        restorable.shuffle(&mut StdRng::seed_from_u64(seed));
        restorable.truncate(samples);
        restorable.extend(last);
        for e in &restorable {
            let (_, state) = restore::materialize(&repo, None, Target::Epoch(*e))
                .await
                .unwrap_or_else(|err| panic!("seed {seed}: restorable epoch {e}: {err}"));
            let truth = std::fs::read_to_string(&truths[e]).unwrap();
            assert_matches(
                &jsonl::to_string(&state),
                &truth,
                &format!("seed {seed} epoch {e}"),
            );
        }
        Checked {
            archived,
            restored: restorable.len(),
        }
    })
}

/// A run under faults either completes or stops with an error a caller can act on.
///
/// Known exception: `Recorder::close` reports a failed last archive pass as Internal
/// whatever its cause (see `closing_after_a_failed_archive_pass_keeps_the_error_kind`),
/// tolerated here only when the wrapped cause is an injected fault.
fn assert_acceptable(run: &FaultyRun) {
    if let Err(e) = &run.result {
        let msg = e.to_string();
        let close_wrapper = e.kind() == ErrorKind::Internal
            && msg.contains("the last archive pass failed")
            && msg.contains("injected fault");
        assert!(
            matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Fenced) || close_wrapper,
            "seed {}: the run stopped with a {:?} error: {e}",
            run.seed,
            e.kind()
        );
    }
}

/// A recorder on a repo whose `wal/` puts always fail, with one sealed segment waiting to
/// be archived, on a clock the caller moves.
async fn recorder_that_cannot_archive(
    dir: &std::path::Path,
) -> (metapitr::recorder::Recorder, Arc<FaultyObjectStore>) {
    let cfg = FaultConfig::none()
        .with(Op::Put, OpFaults::NONE.with_fail_before(1.0))
        .only_under("wal");
    let mut sim = Simulator::new(metapitr::sim::SimConfig::default());
    let faulty = Arc::new(FaultyObjectStore::new(Arc::new(InMemory::new()), cfg, 1));
    let repo = Repo::from_store(faulty.clone(), Path::default(), "faulty://", sim.clock())
        .with_retry(RetryPolicy {
            attempts: 1,
            ..impatient()
        });
    let opts = metapitr::recorder::RecorderOptions {
        wal: metapitr::wal::WalOptions {
            sync: false,
            ..Default::default()
        },
        snapshot_every_ms: None,
        ..Default::default()
    };
    let rec = metapitr::recorder::Recorder::open(dir, repo, opts)
        .await
        .unwrap();
    // Two simulated seconds apart: the second commit seals the first segment.
    for _ in 0..3 {
        let (epoch, changes) = sim.next_epoch().unwrap();
        rec.commit(epoch, changes).await.unwrap();
        sim.clock().advance(1000);
    }
    (rec, faulty)
}

/// Regression (src/recorder.rs, `Recorder::close`): when the last archive pass fails because the
/// store is unavailable, `close` returns `Error::internal("the last archive pass failed:
/// ...")`, kind Internal ("a bug"), so a caller cannot tell a retryable outage (or a
/// fenced archiver, kind Fenced) from a bug: `ArchiveStatus` keeps only the message. Seen
/// in `a_run_that_gives_up_leaves_a_consistent_repo` (e.g. seeds 626114, 616331 with 2
/// attempts; not exactly replayable since archiving races the commits), made
/// deterministic here.
#[test]
fn closing_after_a_failed_archive_pass_keeps_the_error_kind() {
    let rt = common::rt();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (rec, faulty) = recorder_that_cannot_archive(dir.path()).await;
        let err = rec.close().await.unwrap_err();
        assert!(faulty.stats().op(Op::Put).failed_before > 0);
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    });
}

/// Regression (src/recorder.rs, `register_start`): a recorder whose WAL was never archived (the
/// repo was unreachable for its whole first run) is taken on reopening for a store that
/// "begins mid-history": `register_start` sees no archived segment and no fork point,
/// uploads a snapshot of the current state and records the timeline as starting there
/// (`fork_lsn`). The archiver then deletes the local segments before that lsn as already
/// covered, without uploading them, so every epoch committed before the reopening stops
/// being restorable although the WAL held it. Found by
/// `a_run_that_gave_up_resumes_and_everything_restores` (seed 929138: restorable ranges
/// were only the first run's snapshot epochs and the second run's span; 21 of 40 truth
/// epochs restorable), made deterministic here.
#[test]
fn reopening_before_anything_was_archived_keeps_the_whole_history() {
    let rt = common::rt();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut sim = Simulator::new(metapitr::sim::SimConfig::default());
        let mem = Arc::new(InMemory::new());
        let opts = metapitr::recorder::RecorderOptions {
            wal: metapitr::wal::WalOptions {
                sync: false,
                ..Default::default()
            },
            snapshot_every_ms: None,
            archive_poll: Duration::from_millis(5),
            ..Default::default()
        };
        // First run: every wal/ put fails, so nothing is archived.
        let cfg = FaultConfig::none()
            .with(Op::Put, OpFaults::NONE.with_fail_before(1.0))
            .only_under("wal");
        let faulty = Arc::new(FaultyObjectStore::new(mem.clone(), cfg, 1));
        let repo = Repo::from_store(faulty, Path::default(), "faulty://", sim.clock()).with_retry(
            RetryPolicy {
                attempts: 1,
                ..impatient()
            },
        );
        let rec = metapitr::recorder::Recorder::open(dir.path(), repo, opts.clone())
            .await
            .unwrap();
        let mut truths = Vec::new();
        for _ in 0..6 {
            let (epoch, changes) = sim.next_epoch().unwrap();
            rec.commit(epoch, changes).await.unwrap();
            truths.push((epoch, jsonl::to_string(sim.state())));
            sim.clock().advance(2000);
        }
        let closed = rec.close().await;
        assert!(closed.is_err(), "the first run could not archive");
        // Second run: the repo is reachable again.
        let repo = Repo::from_store(mem.clone(), Path::default(), "memory://", sim.clock());
        let rec = metapitr::recorder::Recorder::open(dir.path(), repo.clone(), opts)
            .await
            .unwrap();
        rec.close().await.unwrap();
        let m = repo.manifest().await.unwrap();
        let ranges = restorable_ranges(&m, 1);
        for (e, truth) in &truths {
            assert!(
                ranges.iter().any(|(a, b)| (a..=b).contains(&e)),
                "epoch {e}, committed and in the WAL, is not restorable: {ranges:?}"
            );
            let (_, state) = restore::materialize(&repo, None, Target::Epoch(*e))
                .await
                .unwrap();
            assert_matches(&jsonl::to_string(&state), truth, &format!("epoch {e}"));
        }
    });
}

/// Regression (src/archive.rs, `publish`): a publish that replaces a timeline's pin set deletes
/// the old one only after the manifest names the new one. If that delete fails, the pass
/// fails, and the next pass finds the manifest already up to date, publishes nothing and
/// never deletes the old pin set: it stays in `pins/` for good, named by nothing. Seen
/// in `a_run_that_gives_up_leaves_a_consistent_repo` after runs that completed
/// (e.g. seeds 358988, 314115, 302897 with 2 attempts), made deterministic here. It loses
/// nothing (the manifest names the right pin set) but leaks an object per failure.
#[test]
fn a_replaced_pin_set_is_deleted_even_if_the_first_delete_fails() {
    let rt = common::rt();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut sim = Simulator::new(metapitr::sim::SimConfig::default());
        let faulty = Arc::new(FaultyObjectStore::new(
            Arc::new(InMemory::new()),
            FaultConfig::none(),
            1,
        ));
        let repo = Repo::from_store(faulty.clone(), Path::default(), "faulty://", sim.clock())
            .with_retry(RetryPolicy {
                attempts: 1,
                ..impatient()
            });
        let opts = metapitr::recorder::RecorderOptions {
            wal: metapitr::wal::WalOptions {
                sync: false,
                ..Default::default()
            },
            snapshot_every_ms: None,
            archive: false,
            ..Default::default()
        };
        let rec = metapitr::recorder::Recorder::open(dir.path(), repo.clone(), opts)
            .await
            .unwrap();
        // Commits two simulated seconds apart: each seals the segment before it.
        let clock = sim.clock();
        let mut round = move || {
            let mut out = Vec::new();
            for _ in 0..3 {
                out.push(sim.next_epoch().unwrap());
            }
            out
        };
        for (epoch, changes) in round() {
            rec.commit(epoch, changes).await.unwrap();
            clock.advance(2000);
        }
        // The WAL seals right after acknowledging a commit: wait for it.
        let sealed = || async {
            for _ in 0..400 {
                let segs = metapitr::wal::list_segments(dir.path()).unwrap();
                if segs.iter().any(|s| s.sealed) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!(
                "no segment was sealed: {:?}",
                metapitr::wal::list_segments(dir.path())
            );
        };
        sealed().await;
        let first = archive::archive_dir(&repo, dir.path()).await.unwrap();
        assert!(first.segments > 0);
        for (epoch, changes) in round() {
            rec.commit(epoch, changes).await.unwrap();
            clock.advance(2000);
        }
        sealed().await;
        faulty.set_config(
            FaultConfig::none()
                .with(Op::Delete, OpFaults::NONE.with_fail_before(1.0))
                .only_under("pins"),
        );
        // The clean-up of the replaced pin set fails; the segments are published anyway.
        archive::archive_dir(&repo, dir.path()).await.unwrap();
        assert!(faulty.stats().op(Op::Delete).failed_before > 0);
        faulty.set_config(FaultConfig::none());
        for (epoch, changes) in round() {
            rec.commit(epoch, changes).await.unwrap();
            clock.advance(2000);
        }
        sealed().await;
        archive::archive_dir(&repo, dir.path()).await.unwrap();
        let m = repo.manifest().await.unwrap();
        let named: Vec<String> = m.pins.iter().map(pin::pin_key).collect();
        let stored: Vec<String> = objects(faulty.inner().as_ref(), "pins")
            .await
            .into_keys()
            .collect();
        rec.close().await.unwrap();
        assert_eq!(stored, named, "pin sets named by nothing stay in the repo");
    });
}

/// Regression (src/archive.rs, `Archiver::spawn`): a recorder dropped without `close` (as
/// `sim::run_with_repo` does when a commit or snapshot fails) leaves its archiver task
/// running, and in a busy loop: its stop and seal channels are closed, so both
/// `changed()` arms of the `select!` return at once and the backoff sleep never runs. Each
/// turn is a full archive pass (a LIST of `manifest/` and an upload attempt), hundreds per
/// second, until the runtime shuts down.
#[test]
fn a_dropped_recorder_stops_archiving() {
    let rt = common::rt();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (rec, faulty) = recorder_that_cannot_archive(dir.path()).await;
        drop(rec);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = faulty.stats().op(Op::List).calls;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = faulty.stats().op(Op::List).calls;
        // A stopped archiver makes no call; one still backing off (500 ms poll, doubling)
        // makes at most one pass in 300 ms.
        assert!(
            after - before <= 2,
            "{} LISTs in 300 ms after the recorder was dropped",
            after - before
        );
    });
}

/// Runs under heavy faults with few retries, then again where that run stopped; see
/// `a_run_that_gave_up_resumes_and_everything_restores`. `skip_unarchived`: reject cases
/// whose first run archived no segment.
fn resume_and_restore(seed: u64, skip_unarchived: bool) -> Result<(), TestCaseError> {
    let first = run_under_faults(seed, 60, 20, 3, flaky(0.3), impatient());
    assert_acceptable(&first);
    if skip_unarchived {
        let rt = common::rt();
        let archived = rt.block_on(async {
            let m = first.clean_repo().load_manifest().await.unwrap();
            m.and_then(|m| m.timeline(1).and_then(|t| t.first_archived()))
                .is_some()
        });
        prop_assume!(archived || first.result.is_ok());
    }
    let second = resume_under_faults(first, 60, 20, 3, flaky(0.1), patient());
    assert!(
        second.result.is_ok(),
        "seed {seed}: the resumed run failed: {:?}",
        second.result.as_ref().err()
    );
    let c = check_repo(&second, 6, true);
    assert!(c.restored >= 2);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(6),
        failure_persistence: None,
        .. ProptestConfig::default()
    })]

    /// Under 10–20% faults of every kind and enough retries, a run completes; afterwards
    /// the archive is whole and restores equal the truth.
    #[test]
    fn a_run_under_faults_archives_everything(seed in 0u64..1_000_000, p in 0.10f64..0.20) {
        let run = run_under_faults(seed, 150, 40, 3, flaky(p), patient());
        let st = run.faulty.stats();
        assert!(st.total().faults() >= 10, "seed {seed}: too few faults: {st}");
        assert!(st.op(Op::Put).faults() > 0, "seed {seed}: {st}");
        assert!(
            run.result.is_ok(),
            "seed {seed}: {:?} (faults: {st})",
            run.result.as_ref().err()
        );
        let c = check_repo(&run, 4, false);
        assert!(c.archived.is_some() && c.restored >= 2);
    }

    /// With so few retries that runs do give up, a run stops with an Unavailable or Fenced
    /// error, never a panic or another kind, and whatever it archived is consistent and
    /// restores equal the truth.
    #[test]
    fn a_run_that_gives_up_leaves_a_consistent_repo(seed in 0u64..1_000_000) {
        let run = run_under_faults(seed, 80, 20, 3, flaky(0.2), impatient());
        assert_acceptable(&run);
        check_repo(&run, 3, true);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(6),
        failure_persistence: None,
        .. ProptestConfig::default()
    })]

    /// A run that gave up under faults is started again on the same WAL directory and
    /// repo (faults lighter, retries enough) and completes: the history of both runs is
    /// archived without a gap, and every truth epoch of either restores equal to the truth.
    ///
    /// Cases where the first run archived no segment at all are skipped here: they hit
    /// the bug `reopening_before_anything_was_archived_keeps_the_whole_history` shows
    /// (`resumed_runs_keep_the_whole_history_even_if_nothing_was_archived` tries them).
    #[test]
    fn a_run_that_gave_up_resumes_and_everything_restores(seed in 0u64..1_000_000) {
        resume_and_restore(seed, true)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(8),
        failure_persistence: None,
        .. ProptestConfig::default()
    })]

    /// [`a_run_that_gave_up_resumes_and_everything_restores`] including first runs that
    /// archived nothing.
    #[test]
    fn resumed_runs_keep_the_whole_history_even_if_nothing_was_archived(seed in 0u64..1_000_000) {
        resume_and_restore(seed, false)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(3),
        failure_persistence: None,
        .. ProptestConfig::default()
    })]

    /// The first attempt of every put writes the object and then fails. Retries find the
    /// object there and read it back: the run completes, and no object is ever written
    /// with two different contents.
    #[test]
    fn puts_whose_answer_is_lost_are_resolved_by_reading_back(seed in 0u64..1_000_000) {
        let cfg = FaultConfig::none()
            .with(Op::Put, OpFaults::NONE.with_fail_after(1.0).with_first_calls(1));
        let run = run_under_faults(seed, 100, 25, 5, cfg, patient());
        let st = run.faulty.stats().op(Op::Put);
        assert!(run.result.is_ok(), "seed {seed}: {:?}", run.result.as_ref().err());
        let writes = run.faulty.writes();
        let paths: BTreeSet<String> = writes.iter().map(|w| w.path.to_string()).collect();
        // Every path's first put wrote and then failed; only manifest versions, which the
        // archiver and a snapshot race for, may see another task's put land first.
        let lost: BTreeSet<String> = writes
            .iter()
            .filter(|w| w.answer_lost)
            .map(|w| w.path.to_string())
            .collect();
        for p in &paths {
            assert!(
                lost.contains(p) || p.starts_with("manifest/"),
                "seed {seed}: the first put of {p} did not land before failing"
            );
        }
        assert_eq!(st.failed_after, lost.len() as u64);
        // Each lost answer is resolved by a retry that finds the object (more refusals come
        // from the archiver and a snapshot racing for the same manifest version).
        assert!(
            st.already_exists >= st.failed_after,
            "seed {seed}: {} lost answers, {} retries found the object",
            st.failed_after,
            st.already_exists
        );
        let mut by_path: HashMap<String, BTreeSet<Option<u32>>> = HashMap::new();
        for w in &writes {
            assert!(w.create, "seed {seed}: {} was written without a conditional create", w.path);
            by_path.entry(w.path.to_string()).or_default().insert(w.crc32);
        }
        for (p, crcs) in &by_path {
            assert_eq!(crcs.len(), 1, "seed {seed}: {p} was written with different contents");
        }
        // What the repo holds is what was written.
        let rt = common::rt();
        rt.block_on(async {
            for prefix in ["manifest", "wal", "snapshots", "pins"] {
                for (k, b) in objects(run.mem.as_ref(), prefix).await {
                    let crcs = &by_path[&k];
                    assert!(crcs.contains(&Some(crc32fast::hash(&b))), "seed {seed}: {k}");
                }
            }
        });
        drop(rt);
        check_repo(&run, 3, false);
    }
}

/// Restores through a faulty store from a repo a clean run wrote.
fn restores_under_read_faults(seed: u64, p: f64) {
    let tag = unique_tag("restore", seed);
    let rt = tagged_rt(&tag);
    rt.block_on(async {
        let s = common::simulate(seed, 80, Some(20), 4).await;
        let truths = &s.report.truth_files;
        let config = FaultConfig::none()
            .with(
                Op::Get,
                OpFaults::flaky(p).with_delay(p, Duration::from_millis(1)),
            )
            .with(Op::Head, OpFaults::flaky(p))
            .with(Op::List, OpFaults::flaky(p));
        let faulty = Arc::new(FaultyObjectStore::new(
            s.repo.object_store().clone(),
            config,
            seed,
        ));
        let mut picks: Vec<usize> = (0..truths.len()).collect();
        picks.shuffle(&mut StdRng::seed_from_u64(seed));
        picks.truncate(6);
        let (mut ok, mut failed) = (0, 0);
        for (retry, name) in [(impatient(), "impatient"), (patient(), "patient")] {
            let repo = Repo::from_store(
                faulty.clone(),
                Path::default(),
                "faulty://restore",
                s.sim.clock(),
            )
            .with_retry(retry);
            for i in &picks {
                let (e, path) = &truths[*i];
                match restore::materialize(&repo, None, Target::Epoch(*e)).await {
                    Ok((_, state)) => {
                        ok += 1;
                        let truth = std::fs::read_to_string(path).unwrap();
                        assert_matches(
                            &jsonl::to_string(&state),
                            &truth,
                            &format!("seed {seed} epoch {e} ({name})"),
                        );
                    }
                    Err(err) => {
                        failed += 1;
                        assert_eq!(
                            err.kind(),
                            ErrorKind::Unavailable,
                            "seed {seed} epoch {e} ({name}): {err}"
                        );
                        assert!(
                            err.to_string().contains("injected fault"),
                            "seed {seed} epoch {e}: the error does not say what failed: {err}"
                        );
                        assert_eq!(
                            name, "impatient",
                            "seed {seed} epoch {e}: failed with enough retries: {err}"
                        );
                    }
                }
            }
            // Snapshots, read alone.
            for snap in &s.report.snapshots {
                match restore::materialize(&repo, None, Target::Snapshot(snap.id)).await {
                    Ok((_, state)) => {
                        assert_eq!(state.epoch, snap.max_committed_epoch);
                        assert_eq!(state.lsn, snap.lsn);
                        let e = snap.max_committed_epoch;
                        if let Some((_, path)) = truths.iter().find(|(t, _)| *t == e) {
                            let truth = std::fs::read_to_string(path).unwrap();
                            assert_matches(
                                &jsonl::to_string(&state),
                                &truth,
                                &format!("seed {seed} snapshot {} ({name})", snap.id),
                            );
                        }
                    }
                    Err(err) => {
                        assert_eq!(err.kind(), ErrorKind::Unavailable, "seed {seed}: {err}");
                        assert_eq!(name, "impatient", "seed {seed}: {err}");
                    }
                }
            }
        }
        let st = faulty.stats();
        assert!(
            st.total().faults() > 0,
            "seed {seed}: no faults injected: {st}"
        );
        assert!(ok > 0, "seed {seed}: nothing restored");
        if std::env::var_os("FAULTS_VERBOSE").is_some() {
            eprintln!(
                "seed {seed}: {ok} restores equal the truth, {failed} failed clearly\n  {st}"
            );
        }
    });
    drop(rt);
    let p = panics_of(&tag);
    assert!(p.is_empty(), "seed {seed}: restore panicked: {p:#?}");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(4),
        failure_persistence: None,
        .. ProptestConfig::default()
    })]

    /// GET and LIST failures during a restore give either exactly the truth or an
    /// Unavailable error naming the failure, never a wrong state.
    #[test]
    fn restore_under_read_faults_is_exact_or_fails_clearly(seed in 0u64..1_000_000, p in 0.1f64..0.3) {
        restores_under_read_faults(seed, p);
    }
}
