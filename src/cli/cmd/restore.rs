//! `metapitr restore` (`restore-meta`): the metadata as of an epoch into a fresh meta
//! store, and optionally the restored Hummock version into Hummock storage.

use std::time::Instant;

use crate::cli::args::RestoreArgs;
use crate::cli::common::{human_duration, open_repo, out, Ctx};
use crate::clock;
use crate::epoch;
use crate::error::{Error, Result};
use crate::progress::{Bars, Progress, Unit};
use crate::repo::{Repo, RepoLocation};
use crate::restore::{self, Target};
use crate::store::{JsonlStore, TargetStore};

pub(crate) async fn run(a: RestoreArgs, ctx: &Ctx) -> Result<()> {
    let quiet = ctx.quiet;
    let repo = open_repo(&a.repo, ctx)?;
    let target = target(&a)?;
    let store = a.etcd.store(&a.target_store, ctx)?;
    let to_stdout = store == TargetStore::Jsonl(JsonlStore::Stdio);
    let store = store.into_store();
    if !a.force && !store.is_empty().await? {
        return Err(Error::target_not_empty(store.to_string()));
    }
    store.check_clearable(a.force_clear)?;
    let t = Instant::now();
    let m = repo.manifest().await?;
    let plan = restore::plan(&repo, &m, a.timeline, target).await?;
    // Messages only: a reader of them that went away does not stop the restore.
    let say = |s: String| {
        if to_stdout {
            eprintln!("{s}");
        } else {
            let _ = out(s);
        }
    };
    say(plan.describe());
    if !a.force {
        restore::check_window(&m, &plan)?;
    }
    let hummock_location = a
        .hummock_storage_url
        .as_deref()
        .map(|u| crate::repo::join_location(u, a.hummock_storage_directory.as_deref()));
    if a.dry_run {
        say("dry run: nothing written".into());
        return Ok(());
    }
    let progress = Progress::new(0, Unit::Items, "restore", quiet || to_stdout);
    let mut state = restore::execute_with(&repo, &plan, &progress).await?;
    if let Some(loc) = &hummock_location {
        crate::hummock::guard_storage(&mut state, loc, a.overwrite_hummock_storage_endpoint)?;
    }
    // Opened (a file storage created) only once the restore is known to go ahead.
    let hummock = match hummock_location.as_deref() {
        Some(u) => Some(open_hummock(u, &a, ctx)?),
        None => None,
    };
    if let (Some(h), true) = (&hummock, a.validate_integrity) {
        let n = crate::hummock::validate_integrity(h, &state).await?;
        say(format!(
            "integrity: all {n} SST objects of the restored version exist in {}",
            h.url()
        ));
    }
    let spin = Progress::spinner(&format!("writing into {store}"), quiet || to_stdout);
    let r = store.write_with(&state, a.force, a.force_clear).await;
    spin.finish();
    r?;
    if let Some(h) = &hummock {
        crate::hummock::write_checkpoint(h, &state).await?;
        say(format!(
            "wrote the restored Hummock version to {}/{}",
            h.url(),
            crate::hummock::CHECKPOINT_KEY
        ));
    }
    say(format!(
        "restored epoch {} ({} UTC) into {store} in {}: {} catalog objects, {} users, {} SSTs",
        state.epoch,
        epoch::format(state.epoch),
        human_duration(t.elapsed()),
        state.catalog.len(),
        state.users.len(),
        state.hummock.sst_count()
    ));
    Ok(())
}

/// What the target flags name (clap requires exactly one of them).
fn target(a: &RestoreArgs) -> Result<Target> {
    Ok(if let Some(e) = &a.target_epoch {
        Target::Epoch(epoch::parse_as_of(e)?)
    } else if let Some(t) = &a.target_time {
        Target::Time(epoch::parse_time_ms(t)?)
    } else if let Some(id) = a.snapshot_id {
        Target::Snapshot(id)
    } else {
        Target::Latest
    })
}

/// The Hummock storage at `url`, with the repo's network timeouts.
fn open_hummock(url: &str, a: &RestoreArgs, ctx: &Ctx) -> Result<Repo> {
    let network = ctx.settings(&a.repo.flags())?.network.timeouts();
    Repo::open_location(
        &RepoLocation {
            network,
            ..RepoLocation::new(url)
        },
        clock::system(),
    )
}
