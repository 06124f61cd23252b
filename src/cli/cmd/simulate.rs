//! `metapitr simulate`: the meta-service simulator, archiving continuously; with
//! `--resume-from`, going on from a restored store on a new timeline.

use std::path::Path;
use std::time::Instant;

use crate::cli::args::SimulateArgs;
use crate::cli::common::{human_bytes, human_duration, out, Ctx};
use crate::clock;
use crate::epoch;
use crate::error::{Error, Result};
use crate::progress::{Bars, Progress, Unit};
use crate::repo::Repo;
use crate::sim::{self, RunOptions, SimConfig, TruthOptions};
use crate::store::{DirStore, TargetStore};

pub(crate) async fn run(a: SimulateArgs, ctx: &Ctx) -> Result<()> {
    let opts = options(&a)?;
    if let Some(from) = &a.resume_from {
        prepare_resume(from, &a.wal_dir)?;
    }
    let progress = Progress::new(a.epochs, Unit::Items, "simulate", ctx.quiet);
    let opts = RunOptions {
        ack_log: a.ack_log.clone(),
        progress: progress.clone(),
        ..opts
    };
    let t = Instant::now();
    let r = sim::run(a.repo.location(ctx)?, &a.wal_dir, opts).await;
    progress.finish();
    let r = r?;
    if r.objects_written > 0 {
        out(format!(
            "hummock storage: {} SST objects written, {} vacuumed; retention moved the window {} times, now from {}",
            r.objects_written,
            r.objects_vacuumed,
            r.retention_moves,
            epoch::format(r.window_start)
        ))?;
    }
    out(format!(
        "simulated {} epochs ({} .. {}), {} records in {}; archived {} segments ({}); {} snapshots; {} truth files",
        r.epochs,
        epoch::format(r.first_epoch),
        epoch::format(r.last_epoch),
        r.records,
        human_duration(t.elapsed()),
        r.archive.segments,
        human_bytes(r.archive.stored_bytes),
        r.snapshots.len(),
        r.truth_files.len()
    ))
}

/// The simulator's options from the flags (without progress and ack log).
fn options(a: &SimulateArgs) -> Result<RunOptions> {
    Ok(RunOptions {
        sim: SimConfig {
            seed: a.seed,
            epoch_interval_ms: a.epoch_interval_ms,
            ..Default::default()
        },
        epochs: a.epochs,
        snapshot_every: a.snapshot_every,
        truth: a.truth_dir.clone().map(|dir| TruthOptions {
            dir,
            every: a.truth_every,
        }),
        hummock_storage: a
            .hummock_storage
            .as_deref()
            .map(|u| Repo::open(u, clock::system()))
            .transpose()?,
        retention: a
            .retention_window
            .as_deref()
            .map(|w| {
                crate::retention::Policy::parse_window(w).map(|ms| crate::retention::Policy {
                    window_ms: Some(ms),
                    keep_last: None,
                })
            })
            .transpose()?,
        vacuum_every: a.vacuum.then_some(a.vacuum_every),
        recorder: crate::recorder::RecorderOptions {
            wal: crate::wal::WalOptions {
                sync: !a.no_sync,
                ..Default::default()
            },
            snapshot_every_ms: None,
            ..Default::default()
        },
        ..Default::default()
    })
}

/// Makes `wal_dir` the native store `from` names (copying it unless it is the same
/// directory), for `--resume-from`; errors name the flags.
fn prepare_resume(from: &str, wal_dir: &Path) -> Result<()> {
    let TargetStore::Dir(DirStore(src)) = from.parse::<TargetStore>()? else {
        return Err(Error::invalid_input(format!(
            "--resume-from {from}: only a native store (dir:PATH) can be resumed"
        )));
    };
    crate::timeline::prepare_resume::<crate::model::State>(&src, wal_dir).map_err(|e| {
        if e.is_target_not_empty() {
            e.prefixed("--wal-dir ")
        } else if e.kind() == crate::ErrorKind::NotFound {
            e.prefixed(&format!("--resume-from {from}: "))
        } else {
            e
        }
    })
}
