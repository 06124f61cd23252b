//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod bin;
#[allow(unused_imports)]
pub use metapitr_testkit::servers;
#[allow(unused_imports)]
pub use metapitr_testkit::servers::s3;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use metapitr::model::pb::IdGenerator;
use metapitr::model::{change::Kind, Change};
use metapitr::repo::Repo;
use metapitr::sim::{self, RunOptions, RunReport, SimConfig, Simulator, TruthOptions};
use metapitr::wal::WalOptions;

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A process-local in-memory repo on the simulator's clock.
pub fn mem_repo(sim: &Simulator) -> Repo {
    Repo::from_store(
        Arc::new(object_store::memory::InMemory::new()),
        object_store::path::Path::default(),
        "memory://test",
        sim.clock(),
    )
}

/// Where a test's repo lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    File,
    S3,
}

pub const BACKENDS: [Backend; 3] = [Backend::Memory, Backend::File, Backend::S3];

/// A fresh repo on `backend` (file repos under `dir`, S3 repos in a new bucket of the
/// in-process server, both inside a `backup` directory), on `clock`.
pub fn repo_on(backend: Backend, dir: &Path, clock: metapitr::clock::SharedClock) -> Repo {
    let loc = match backend {
        Backend::Memory => return Repo::open("memory://", clock).unwrap(),
        Backend::File => metapitr::repo::RepoLocation {
            url: format!("file://{}", dir.join("repo").display()),
            directory: Some("backup".into()),
            ..Default::default()
        },
        Backend::S3 => s3::s3().location(Some("backup")),
    };
    Repo::open_location(&loc, clock).unwrap()
}

/// A repo URL for a test that runs the binary: a file repo under `dir`, or a directory in
/// a fresh bucket of the in-process S3 server, whose settings every later run of the
/// binary from this thread then gets.
pub fn cli_repo(backend: Backend, dir: &Path) -> String {
    match backend {
        Backend::File => format!("file://{}", dir.join("repo").display()),
        Backend::S3 => {
            let server = s3::s3();
            bin::set_thread_env(server.env());
            format!("s3://{}/backup", server.bucket())
        }
        Backend::Memory => panic!("a memory:// repo does not outlive one run of the binary"),
    }
}

/// Runs `metapitr simulate` into a file repo under `dir`, its WAL directory `dir/wal`,
/// with `args` added (`--epochs N` and the like); returns the repo URL.
pub fn simulated_file_repo(dir: &Path, args: &[&str]) -> String {
    let repo = format!("file://{}", dir.join("repo").display());
    let wal = dir.join("wal");
    let mut all = vec![
        "simulate",
        "--repo",
        &repo,
        "--wal-dir",
        wal.to_str().unwrap(),
        "--no-sync",
    ];
    all.extend_from_slice(args);
    bin::ok(&all);
    repo
}

pub struct Sim {
    pub repo: Repo,
    pub report: RunReport,
    pub sim: Simulator,
    pub dir: tempfile::TempDir,
}

impl Sim {
    pub fn wal_dir(&self) -> PathBuf {
        self.dir.path().join("wal")
    }
    pub fn truth(&self, epoch: u64) -> String {
        std::fs::read_to_string(self.dir.path().join("truth").join(format!("{epoch}.jsonl")))
            .unwrap()
    }
}

pub fn run_opts(
    seed: u64,
    epochs: u64,
    snapshot_every: Option<u64>,
    truth_every: u64,
    dir: &Path,
) -> RunOptions {
    let mut o = RunOptions {
        sim: SimConfig {
            seed,
            ddl_rate: 0.2,
            user_rate: 0.1,
            ..Default::default()
        },
        epochs,
        snapshot_every,
        truth: Some(TruthOptions {
            dir: dir.join("truth"),
            every: truth_every,
        }),
        in_flight: 4,
        ..Default::default()
    };
    o.recorder.wal = WalOptions {
        sync: false,
        ..Default::default()
    };
    o
}

/// Simulates into an in-memory repo with busy DDL, writing truth every `truth_every`.
pub async fn simulate(
    seed: u64,
    epochs: u64,
    snapshot_every: Option<u64>,
    truth_every: u64,
) -> Sim {
    simulate_on(Backend::Memory, seed, epochs, snapshot_every, truth_every).await
}

/// [`simulate`] into a repo on `backend`.
pub async fn simulate_on(
    backend: Backend,
    seed: u64,
    epochs: u64,
    snapshot_every: Option<u64>,
    truth_every: u64,
) -> Sim {
    let dir = tempfile::tempdir().unwrap();
    let opts = run_opts(seed, epochs, snapshot_every, truth_every, dir.path());
    let mut sim = Simulator::new(opts.sim.clone());
    let repo = repo_on(backend, dir.path(), sim.clock());
    let report = sim::run_with_repo(repo.clone(), &dir.path().join("wal"), opts, &mut sim)
        .await
        .unwrap();
    Sim {
        repo,
        report,
        sim,
        dir,
    }
}

pub fn id_advance(category: metapitr::model::IdCategory, next: u64) -> Change {
    Change {
        kind: Some(Kind::IdAdvance(IdGenerator {
            category: category as i32,
            next,
        })),
    }
}

/// Flips bits `mask` of the middle byte of a stored object, behind metapitr's back.
pub async fn damage_object(repo: &Repo, key: &str, mask: u8) {
    use object_store::ObjectStoreExt;
    let store = repo.object_store();
    let path = object_store::path::Path::from(key);
    let mut bytes = store
        .get(&path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= mask;
    store.put(&path, bytes.into()).await.unwrap();
}

/// Asserts that a restored export equals a truth export (see `jsonl::compare`), showing a
/// few differing lines when it does not.
pub fn assert_matches(restored: &str, truth: &str, what: &str) {
    let c = metapitr::jsonl::compare(restored, truth).unwrap();
    assert!(
        c.matches(),
        "{what}: {} missing, {} unexpected, ids below truth {:?}\nmissing: {:?}\nunexpected: {:?}",
        c.missing.len(),
        c.unexpected.len(),
        c.ids_below_truth,
        c.missing.iter().take(3).collect::<Vec<_>>(),
        c.unexpected.iter().take(3).collect::<Vec<_>>()
    );
}

/// The truth files a `simulate --truth-dir DIR` run wrote, as (epoch, path), in epoch order.
pub fn truth_files(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .map(|p| (p.file_stem().unwrap().to_str().unwrap().parse().unwrap(), p))
        .collect();
    files.sort();
    files
}

/// The epochs of the truth files the simulator wrote under `dir/truth`, in order.
pub fn truth_epochs(dir: &Path) -> Vec<u64> {
    truth_files(&dir.join("truth"))
        .into_iter()
        .map(|(e, _)| e)
        .collect()
}

/// The newest epoch a `simulate --ack-log FILE` run acknowledged (0: none yet).
pub fn last_acked(ack_log: &Path) -> u64 {
    std::fs::read_to_string(ack_log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .max()
        .unwrap_or(0)
}

/// Restores `epoch` from `repo` and asserts that it equals the truth file `truth`.
pub async fn assert_restores_truth(repo: &Repo, epoch: u64, truth: &Path, what: &str) {
    let (_, state) =
        metapitr::restore::materialize(repo, None, metapitr::restore::Target::Epoch(epoch))
            .await
            .unwrap();
    assert_matches(
        &metapitr::jsonl::to_string(&state),
        &std::fs::read_to_string(truth).unwrap(),
        &format!("epoch {epoch} ({what})"),
    );
}

/// The archived segment entries of `timeline`, checked to chain: no gap, no overlap, no
/// epoch going back.
pub async fn archive_chain(
    repo: &Repo,
    m: &metapitr::pb::Manifest,
    timeline: u32,
) -> Vec<metapitr::pb::SegmentEntry> {
    let segs = metapitr::archive::segment_entries(repo, m, timeline, 0, u64::MAX)
        .await
        .unwrap();
    for w in segs.windows(2) {
        assert_eq!(
            w[1].first_lsn,
            w[0].last_lsn + 1,
            "gap or overlap between {} and {}",
            w[0].key(),
            w[1].key()
        );
        assert!(w[1].first_epoch >= w[0].last_epoch);
    }
    segs
}
