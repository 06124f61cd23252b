//! `metapitr demo`: simulate into a fresh local repo, restore to an epoch between two
//! snapshots, check the result against the simulator's truth, and say what happened.

use std::path::PathBuf;
use std::time::Instant;

use crate::clock;
use crate::epoch;
use crate::error::{Error, Result};
use crate::jsonl;
use crate::progress::human_bytes;
use crate::repo::Repo;
use crate::restore::{self, Target};
use crate::retention::Policy;
use crate::sim::{self, RunOptions, SimConfig, TruthOptions};

/// Simulated time between barriers in the demo: 5 minutes, so that 8 days fit in a few
/// thousand epochs.
const INTERVAL_MS: u64 = 300_000;
const DAY_MS: u64 = 86_400_000;

pub async fn run(dir: Option<PathBuf>, epochs: u64, seed: u64) -> Result<()> {
    let tmp;
    let dir = match dir {
        Some(d) => {
            if d.exists()
                && std::fs::read_dir(&d)
                    .map_err(|e| Error::io(&d, e))?
                    .next()
                    .is_some()
            {
                return Err(Error::target_not_empty(format!(
                    "demo directory {}",
                    d.display()
                )));
            }
            d
        }
        None => {
            tmp = tempfile::Builder::new()
                .prefix("metapitr-demo-")
                .tempdir()
                .map_err(|e| Error::io(std::env::temp_dir(), e))?;
            tmp.path().to_path_buf()
        }
    };
    let repo_url = format!("file://{}", dir.join("repo").display());
    let hummock_url = format!("file://{}", dir.join("hummock").display());
    let snapshot_every = (DAY_MS / 2 / INTERVAL_MS).min((epochs / 6).max(1));
    let truth_every = (3_600_000 / INTERVAL_MS).min((epochs / 60).max(1));
    let policy = Policy {
        window_ms: Some(7 * DAY_MS),
        keep_last: None,
    };
    println!("metapitr demo in {}", dir.display());
    println!(
        "1. simulating {epochs} epochs, 5 min apart ({:.1} days), into {repo_url}: a snapshot every {snapshot_every} epochs, a 7-day retention window, SSTs written to {hummock_url} and vacuumed with gc-check",
        (epochs * INTERVAL_MS) as f64 / DAY_MS as f64
    );
    let t = Instant::now();
    let mut opts = RunOptions {
        sim: SimConfig {
            seed,
            epoch_interval_ms: INTERVAL_MS,
            ..Default::default()
        },
        epochs,
        snapshot_every: Some(snapshot_every),
        truth: Some(TruthOptions {
            dir: dir.join("truth"),
            every: truth_every,
        }),
        hummock_storage: Some(Repo::open(&hummock_url, clock::system())?),
        retention: Some(policy),
        vacuum_every: Some(truth_every),
        ..Default::default()
    };
    opts.recorder.snapshot_every_ms = None;
    let r = sim::run(&repo_url, &dir.join("wal"), opts).await?;
    println!(
        "   {} epochs, {} .. {} UTC, {} records in {}",
        r.epochs,
        epoch::format(r.first_epoch),
        epoch::format(r.last_epoch),
        r.records,
        crate::progress::human_duration(t.elapsed())
    );
    println!(
        "   archived {} WAL segments ({}); {} snapshots taken; final state: {} catalog objects, {} SSTs",
        r.archive.segments,
        human_bytes(r.archive.stored_bytes),
        r.snapshots.len(),
        r.final_catalog_objects,
        r.final_state_ssts
    );
    let repo = Repo::open(&repo_url, clock::system())?;
    let hummock = Repo::open(&hummock_url, clock::system())?;
    let m = repo.manifest().await?;
    let pins = crate::pin::load_all(&repo).await?;
    let pinned: u64 = pins.iter().map(|p| p.count()).sum();
    println!(
        "   retention moved the window {} times; it starts at {} UTC; {} snapshots remain; {} SST objects written, {} vacuumed, {pinned} pinned",
        r.retention_moves,
        epoch::format(r.window_start),
        m.snapshots.len(),
        r.objects_written,
        r.objects_vacuumed
    );
    // An epoch about six days back with a truth file, strictly between two snapshots.
    let six_days_back =
        epoch::from_unix_ms(epoch::to_unix_ms(r.last_epoch).saturating_sub(6 * DAY_MS));
    let mut snaps: Vec<u64> = m.snapshots.iter().map(|s| s.max_committed_epoch).collect();
    snaps.sort_unstable();
    let between = |e: u64| {
        snaps.iter().any(|s| *s < e) && snaps.iter().any(|s| *s > e) && !snaps.contains(&e)
    };
    let (target, truth_path) = r
        .truth_files
        .iter()
        .filter(|(e, _)| *e >= r.window_start && between(*e))
        .min_by_key(|(e, _)| e.abs_diff(six_days_back))
        .cloned()
        .ok_or_else(|| Error::internal("no truth file inside the window between two snapshots"))?;
    let before = snaps
        .iter()
        .filter(|s| **s < target)
        .max()
        .copied()
        .unwrap_or(0);
    let after = snaps
        .iter()
        .filter(|s| **s > target)
        .min()
        .copied()
        .unwrap_or(0);
    println!(
        "2. restoring to epoch {target} ({} UTC, {:.1} days back), between the snapshots of {} and {}",
        epoch::format(target),
        (epoch::to_unix_ms(r.last_epoch) - epoch::to_unix_ms(target)) as f64 / DAY_MS as f64,
        epoch::format(before),
        epoch::format(after)
    );
    let t = Instant::now();
    let plan = restore::plan(&repo, &m, None, Target::Epoch(target)).await?;
    restore::check_window(&m, &plan)?;
    let state = restore::execute(&repo, &plan).await?;
    let restore_time = t.elapsed();
    println!("   {}", plan.describe().replace('\n', "\n   "));
    println!("   restored in {restore_time:.2?}");
    let n = crate::hummock::validate_integrity(&hummock, &state).await?;
    println!("   --validate-integrity: all {n} SST objects the restored version references exist in the Hummock storage");
    let restored = jsonl::to_string(&state);
    let truth = std::fs::read_to_string(&truth_path).map_err(|e| Error::io(&truth_path, e))?;
    let c = jsonl::compare(&restored, &truth)
        .map_err(|e| Error::internal(format!("export does not parse: {e}")))?;
    println!(
        "3. checking against the simulator's truth {}",
        truth_path.display()
    );
    if !c.matches() {
        for l in c.missing.iter().take(5) {
            println!("   missing:    {l}");
        }
        for l in c.unexpected.iter().take(5) {
            println!("   unexpected: {l}");
        }
        for l in &c.ids_below_truth {
            println!("   id below truth: {l}");
        }
        return Err(Error::internal(format!(
            "the restore at epoch {target} differs from the truth ({} missing, {} unexpected lines)",
            c.missing.len(),
            c.unexpected.len()
        )));
    }
    println!("   match: {} lines equal (order aside); id generators at or above the truth (repo maximum)", c.lines);
    // An epoch older than the window is refused: its SSTs may be gone.
    if let Some((old, _)) = r.truth_files.iter().find(|(e, _)| *e < r.window_start) {
        match restore::plan(&repo, &m, None, Target::Epoch(*old)).await {
            Ok(p) => match restore::check_window(&m, &p) {
                Err(e) => println!("4. an epoch outside the window is refused: {e}"),
                Ok(()) => {
                    return Err(Error::internal(format!(
                        "epoch {old} before the window was not refused"
                    )))
                }
            },
            Err(e) => println!("4. an epoch outside the window is refused: {e}"),
        }
    }
    println!(
        "done: restored epoch {target} ({} UTC) in {restore_time:.2?}, fetching {}",
        epoch::format(target),
        human_bytes(plan.fetch_bytes)
    );
    Ok(())
}
