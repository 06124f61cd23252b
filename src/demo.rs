//! `metapitr demo`: simulate into a fresh local repo, restore to an epoch between two
//! snapshots, check the result against the simulator's truth, and say what happened.

use std::path::PathBuf;
use std::time::Instant;

use crate::cli::human_bytes;
use crate::clock;
use crate::epoch;
use crate::error::{Error, Result};
use crate::jsonl;
use crate::repo::Repo;
use crate::restore::{self, Target};
use crate::sim::{self, RunOptions, SimConfig, TruthOptions};

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
                return Err(Error::TargetNotEmpty(format!(
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
    let snapshot_every = (epochs / 6).max(1);
    let truth_every = (epochs / 60).max(1);
    println!("metapitr demo in {}", dir.display());
    println!("1. simulating {epochs} epochs (1 s apart) into {repo_url}, a snapshot every {snapshot_every} epochs");
    let t = Instant::now();
    let r = sim::run(
        &repo_url,
        &dir.join("wal"),
        RunOptions {
            sim: SimConfig {
                seed,
                ..Default::default()
            },
            epochs,
            snapshot_every: Some(snapshot_every),
            truth: Some(TruthOptions {
                dir: dir.join("truth"),
                every: truth_every,
            }),
            ..Default::default()
        },
    )
    .await?;
    println!(
        "   {} epochs, {} .. {} UTC, {} records in {:.2?}",
        r.epochs,
        epoch::format(r.first_epoch),
        epoch::format(r.last_epoch),
        r.records,
        t.elapsed()
    );
    println!(
        "   archived {} WAL segments ({}); {} snapshots ({}); final state: {} catalog objects, {} SSTs",
        r.archive.segments,
        human_bytes(r.archive.stored_bytes),
        r.snapshots.len(),
        human_bytes(r.snapshots.iter().map(|s| s.stored_size).sum()),
        r.final_catalog_objects,
        r.final_state_ssts
    );
    // An epoch with a truth file strictly between the two middle snapshots.
    let snaps = &r.snapshots;
    if snaps.len() < 2 {
        return Err(Error::InvalidInput(
            "the demo needs at least two snapshots; run more epochs".into(),
        ));
    }
    let i = snaps.len() / 2 - 1;
    let (a, b) = (
        snaps[i].max_committed_epoch,
        snaps[i + 1].max_committed_epoch,
    );
    let mid = a / 2 + b / 2;
    let (target, truth_path) = r
        .truth_files
        .iter()
        .filter(|(e, _)| *e > a && *e < b)
        .min_by_key(|(e, _)| e.abs_diff(mid))
        .cloned()
        .ok_or_else(|| Error::Internal("no truth file between the two snapshots".into()))?;
    println!(
        "2. restoring to epoch {target} ({} UTC), between snapshot {} and snapshot {}",
        epoch::format(target),
        snaps[i].id,
        snaps[i + 1].id
    );
    let repo = Repo::open(&repo_url, clock::system())?;
    let t = Instant::now();
    let m = repo.manifest().await?;
    let plan = restore::plan(&repo, &m, None, Target::Epoch(target)).await?;
    let state = restore::execute(&repo, &plan).await?;
    let restore_time = t.elapsed();
    println!("   {}", plan.describe().replace('\n', "\n   "));
    println!("   restored in {restore_time:.2?}");
    let restored = jsonl::to_string(&state);
    let truth = std::fs::read_to_string(&truth_path).map_err(|e| Error::io(&truth_path, e))?;
    let c = jsonl::compare(&restored, &truth)
        .map_err(|e| Error::Internal(format!("export does not parse: {e}")))?;
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
        return Err(Error::Internal(format!(
            "the restore at epoch {target} differs from the truth ({} missing, {} unexpected lines)",
            c.missing.len(),
            c.unexpected.len()
        )));
    }
    println!(
        "   match: {} lines equal (order aside); id generators at or above the truth (repo maximum)",
        c.lines
    );
    println!(
        "done: restored epoch {target} ({} UTC) in {restore_time:.2?}, fetching {}",
        epoch::format(target),
        human_bytes(plan.fetch_bytes)
    );
    Ok(())
}
