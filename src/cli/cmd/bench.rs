//! `metapitr bench recovery|report`: recovery measured on a simulated history, and its
//! report rendered again.

use std::path::Path;

use crate::bench::{RecoveryConfig, RecoveryResult};
use crate::cli::args::{BenchCmd, RecoveryArgs, RepoArg};
use crate::cli::common::{out, Ctx};
use crate::error::{Error, Result};
use crate::progress::{Bars, Progress, Unit};

pub(crate) async fn run(cmd: BenchCmd, ctx: &Ctx) -> Result<()> {
    match cmd {
        BenchCmd::Recovery(a) => recovery(a, ctx).await,
        BenchCmd::Report { result, out: dir } => report(&result, &dir),
    }
}

/// The benchmark's configuration from the flags.
fn config(a: &RecoveryArgs, ctx: &Ctx) -> Result<RecoveryConfig> {
    Ok(RecoveryConfig {
        window_ms: crate::retention::Policy::parse_window(&a.window)?,
        epoch_interval_ms: a.epoch_interval_ms,
        ssts: a.ssts,
        catalog: a.catalog,
        snapshot_every: a.snapshot_every,
        restores: a.restores,
        seed: a.seed,
        progress: Progress::new(0, Unit::Items, "bench", ctx.quiet),
    })
}

/// `bench recovery`: builds the history under `--out`, measures, writes the report.
async fn recovery(a: RecoveryArgs, ctx: &Ctx) -> Result<()> {
    let cfg = config(&a, ctx)?;
    let out_dir = a.out.clone();
    let work = out_dir.join("work");
    if work.exists() {
        return Err(Error::target_not_empty(format!(
            "{} (a previous run's history; remove it or choose another --out)",
            work.display()
        )));
    }
    let repo_url = a
        .repo
        .clone()
        .unwrap_or_else(|| format!("file://{}", work.join("repo").display()));
    let loc = RepoArg {
        repo: Some(repo_url),
        ..Default::default()
    }
    .location(ctx)?;
    let r = crate::bench::recovery(&cfg, &loc, &work).await?;
    let (json, html) = crate::bench::write_report(&r, &out_dir)?;
    out(format!(
        "{} epochs, {} SSTs, {} catalog objects, built in {:.1} s; RTO p50 {:.1} ms, \
         p99 {:.1} ms (into a dir: store {:.1} / {:.1} ms); {:.1} archived bytes per \
         epoch, {:.3} of the history as JSON; archive lag p99 {} ms; peak RSS {} \
         MiB\nwrote {} and {}",
        r.epochs,
        r.final_ssts,
        r.final_catalog_objects,
        r.build_seconds,
        r.rto_ms_p50,
        r.rto_ms_p99,
        r.store_ms_p50,
        r.store_ms_p99,
        r.archived_bytes_per_epoch,
        r.archive_to_json_ratio,
        r.archive_lag_ms_p99,
        r.peak_rss_bytes >> 20,
        json.display(),
        html.display()
    ))
}

/// `bench report`: report.html and the plots again from a result.json.
fn report(result: &Path, dir: &Path) -> Result<()> {
    let text = std::fs::read_to_string(result).map_err(|e| Error::io(result, e))?;
    let r: RecoveryResult = serde_json::from_str(&text).map_err(|e| {
        Error::invalid_input(format!(
            "{} is not a benchmark result.json: {e}",
            result.display()
        ))
    })?;
    let (_, html) = crate::bench::write_report(&r, dir)?;
    out(format!("wrote {}", html.display()))
}
