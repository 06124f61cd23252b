//! `metapitr archive`: ship a meta store directory's sealed WAL segments to the repo,
//! once (`--once`, offline, after sealing a crashed writer's tail) or continuously.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use crate::archive;
use crate::cli::args::ArchiveArgs;
use crate::cli::common::{human_bytes, open_settings_repo, out, Ctx};
use crate::clock;
use crate::config::Settings;
use crate::epoch;
use crate::error::{ErrorKind, Result};
use crate::metrics::{ArchiverMetrics, MetricsServer};
use crate::repo::Repo;
use crate::snapshot;
use crate::wal;

pub(crate) async fn run(a: ArchiveArgs, ctx: &Ctx) -> Result<()> {
    let ArchiveArgs {
        wal_dir,
        repo,
        once,
        poll_ms,
        metrics_addr,
    } = a;
    archive::require_wal_dir(&wal_dir)?;
    let mut flags = repo.flags();
    flags.push(("archive.poll_ms", poll_ms.map(|p| p.to_string())));
    flags.push(("archive.metrics_addr", metrics_addr.map(|a| a.to_string())));
    let settings = ctx.settings(&flags)?;
    // From the environment or the file, a metrics address does not apply to --once.
    let metrics_addr = settings.archive.metrics_addr.filter(|_| !once);
    let repo = open_settings_repo(&settings, true)?;
    // Bound before the timeline is claimed, so a bad address changes nothing.
    let metrics = match metrics_addr {
        Some(addr) => Some(serve_metrics(addr, &repo, &wal_dir, &settings).await?),
        None => None,
    };
    let _lock = if once {
        Some(wal::seal_crashed_tail(&wal_dir, clock::system()).await?)
    } else {
        None
    };
    // Decided before claiming: a directory the repo would refuse must not fence the
    // writer that owns the timeline.
    let todo = archive::preflight_dir(&repo, &wal_dir).await?;
    // One writer per timeline: this archiver takes the directory's timeline over
    // (archiving once with nothing to ship takes nothing over).
    let repo = match archive::dir_timeline::<crate::model::State>(&wal_dir)? {
        Some(tl) if todo > 0 || !once => repo.claim_timeline(tl).await?,
        _ => repo,
    };
    if once {
        return archive_once(&repo, &wal_dir).await;
    }
    // The server stays up while `metrics` lives, until the loop ends.
    let metrics = metrics.as_ref().map(|(m, _)| m);
    archive_continuously(&repo, &wal_dir, settings.archive.poll_ms, metrics).await
}

/// Starts the metrics and health server on `addr`.
async fn serve_metrics(
    addr: SocketAddr,
    repo: &Repo,
    wal_dir: &Path,
    settings: &Settings,
) -> Result<(ArchiverMetrics, MetricsServer)> {
    let tl = archive::dir_timeline::<crate::model::State>(wal_dir)?;
    let clock = repo.clock().clone();
    let m = ArchiverMetrics::new(clock, wal_dir, tl)
        .with_max_lag(Some(settings.archive.health_max_lag));
    let server = crate::metrics::serve(addr, m.clone()).await?;
    let at = server.local_addr();
    let _ = writeln!(std::io::stderr(), "serving metrics on http://{at}/metrics");
    Ok((m, server))
}

/// `--once`: one pass over the directory, then a new base if the repo needs one.
async fn archive_once(repo: &Repo, wal_dir: &Path) -> Result<()> {
    let r = archive::archive_dir(repo, wal_dir).await?;
    reseed(repo, wal_dir).await?;
    if r.segments == 0 {
        return out(format!(
            "nothing to archive: every sealed segment of {} is in the repo",
            wal_dir.display()
        ));
    }
    out(format!(
        "archived {} segments ({}), archive ends at lsn {} epoch {}",
        r.segments,
        human_bytes(r.stored_bytes),
        r.archived_lsn,
        r.archived_epoch
    ))
}

/// Archives every `poll_ms` until fenced or facing damage; other failures are retried
/// with backoff (up to 5 s), reported on /health and in the log.
async fn archive_continuously(
    repo: &Repo,
    wal_dir: &Path,
    poll_ms: u64,
    metrics: Option<&ArchiverMetrics>,
) -> Result<()> {
    if let Some(m) = metrics {
        m.refresh(repo).await;
    }
    let mut first_pass = true;
    let mut failures: u32 = 0;
    loop {
        let pass = archive::archive_dir(repo, wal_dir).await;
        let pass_ok = pass.is_ok();
        if let Some(m) = metrics {
            m.after_pass(repo, &pass).await;
        }
        match pass {
            Ok(r) if r.segments > 0 || first_pass => {
                if r.segments > 0 {
                    out(format!(
                        "archived {} segments, archive ends at epoch {} ({})",
                        r.segments,
                        r.archived_epoch,
                        epoch::format(r.archived_epoch)
                    ))?;
                }
                match reseed(repo, wal_dir).await {
                    Ok(()) => first_pass = false,
                    Err(e) if e.kind() == ErrorKind::Unavailable => {
                        tracing::warn!(error = %e, "re-seeding a base failed; retrying")
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(_) => {}
            // Another writer, or damage: this archiver must stop.
            Err(e) if matches!(e.kind(), ErrorKind::Fenced | ErrorKind::Corruption) => {
                return Err(e)
            }
            // Anything else may be fixed while it runs (storage back, a permission
            // granted, a segment put back): keep trying, less often, with the error on
            // /health and in the log.
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, failures, "archiving failed; retrying")
            }
        }
        if pass_ok {
            failures = 0;
        }
        let backoff = poll_ms.saturating_mul(1 << failures.min(6)).min(5_000);
        tokio::time::sleep(std::time::Duration::from_millis(backoff.max(poll_ms))).await;
    }
}

/// After an archiving pass: when the repo holds no base from which the archive's end can
/// be restored (the snapshots were deleted), the directory's checkpoint becomes one.
async fn reseed(repo: &Repo, wal_dir: &Path) -> Result<()> {
    if let Some(e) = snapshot::reseed_from_checkpoint(repo, wal_dir, true).await? {
        out(format!(
            "the repo could not restore the archived WAL of timeline {}: uploaded the local \
             checkpoint (lsn {}, epoch {} ({})) as snapshot {}",
            e.timeline,
            e.lsn,
            e.max_committed_epoch,
            epoch::format(e.max_committed_epoch),
            e.id
        ))?;
    }
    Ok(())
}
