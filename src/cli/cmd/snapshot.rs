//! `metapitr snapshot create|list|keep|unkeep|delete`, and RisingWave's names for two of
//! them: `backup-meta` and `delete-meta-snapshots`.

use std::path::Path;

use serde_json::json;

use crate::cli::args::{BackupMetaArgs, DeleteMetaSnapshotsArgs, RepoArg, SnapshotCmd};
use crate::cli::common::{human_bytes, open_repo, out, Ctx};
use crate::epoch;
use crate::error::{Error, Result};
use crate::restore::{self, Target};
use crate::snapshot;

pub(crate) async fn run(cmd: SnapshotCmd, ctx: &Ctx) -> Result<()> {
    match cmd {
        SnapshotCmd::Create {
            repo,
            at_epoch: _,
            timeline: _,
            wal_dir: Some(dir),
        } => create_from_checkpoint(&repo, &dir, ctx).await,
        SnapshotCmd::Create {
            repo,
            at_epoch,
            timeline,
            wal_dir: None,
        } => create(&repo, at_epoch.as_deref(), timeline, ctx).await,
        SnapshotCmd::List { repo, json } => list(&repo, json, ctx).await,
        SnapshotCmd::Keep { repo, ids } => set_keep(&repo, &ids, true, ctx).await,
        SnapshotCmd::Unkeep { repo, ids } => set_keep(&repo, &ids, false, ctx).await,
        SnapshotCmd::Delete { repo, ids, force } => delete(&repo, &ids, force, ctx).await,
    }
}

/// `backup-meta`: `snapshot create` under RisingWave's name.
pub(crate) async fn backup_meta(a: BackupMetaArgs, ctx: &Ctx) -> Result<()> {
    create(&a.repo, a.at_epoch.as_deref(), None, ctx).await
}

/// `delete-meta-snapshots`: `snapshot delete` under RisingWave's name.
pub(crate) async fn delete_meta_snapshots(a: DeleteMetaSnapshotsArgs, ctx: &Ctx) -> Result<()> {
    delete(&a.repo, &a.ids, a.force, ctx).await
}

/// `snapshot create --wal-dir`: a meta store directory's checkpoint as a snapshot.
async fn create_from_checkpoint(repo: &RepoArg, dir: &Path, ctx: &Ctx) -> Result<()> {
    crate::archive::require_wal_dir(dir)?;
    let repo = open_repo(repo, ctx)?;
    let e = snapshot::reseed_from_checkpoint(&repo, dir, false)
        .await?
        .ok_or_else(|| {
            Error::not_found(format!(
                "{} holds no CHECKPOINT to take a snapshot from",
                dir.display()
            ))
        })?;
    out(format!(
        "snapshot {} at epoch {} ({}) from {}'s checkpoint (lsn {}), {}",
        e.id,
        e.max_committed_epoch,
        epoch::format(e.max_committed_epoch),
        dir.display(),
        e.lsn,
        human_bytes(e.stored_size)
    ))
}

/// `snapshot create`: the state at an epoch, from the repo alone.
async fn create(
    repo: &RepoArg,
    at_epoch: Option<&str>,
    timeline: Option<u32>,
    ctx: &Ctx,
) -> Result<()> {
    let repo = open_repo(repo, ctx)?;
    let target = match at_epoch {
        Some(s) => Target::Epoch(epoch::parse_as_of(s)?),
        None => Target::Latest,
    };
    // Exactly as recorded: a snapshot is a base for replaying the records after it, so its
    // id generators must be the recorded ones, not raised.
    let (_, state) = restore::as_recorded(&repo, timeline, target).await?;
    let e = snapshot::upload(&repo, &state).await?;
    out(format!(
        "snapshot {} at epoch {} ({}), {}",
        e.id,
        e.max_committed_epoch,
        epoch::format(e.max_committed_epoch),
        human_bytes(e.stored_size)
    ))
}

/// `snapshot list`: the columns of rw_catalog.rw_meta_snapshot.
async fn list(repo: &RepoArg, json: bool, ctx: &Ctx) -> Result<()> {
    let repo = open_repo(repo, ctx)?;
    let list = snapshot::list(&repo).await?;
    if json {
        let v: Vec<serde_json::Value> = list
            .iter()
            .map(|s| {
                json!({
                    "id": s.id,
                    "safe_epoch": s.safe_epoch,
                    "safe_epoch_ts": epoch::format(s.safe_epoch),
                    "max_committed_epoch": s.max_committed_epoch,
                    "max_committed_epoch_ts": epoch::format(s.max_committed_epoch),
                    "size": s.stored_size,
                    "timeline": s.timeline,
                    "keep": s.keep,
                })
            })
            .collect();
        return out(serde_json::Value::Array(v).to_string());
    }
    out(format!(
        "{:>6} | {:>18} | {:<23} | {:>19} | {:<23} | {:>10} | {:>8} | keep",
        "id",
        "safe_epoch",
        "safe_epoch_ts",
        "max_committed_epoch",
        "max_committed_epoch_ts",
        "size",
        "timeline"
    ))?;
    for s in list {
        out(format!(
            "{:>6} | {:>18} | {:<23} | {:>19} | {:<23} | {:>10} | {:>8} | {}",
            s.id,
            s.safe_epoch,
            epoch::format(s.safe_epoch),
            s.max_committed_epoch,
            epoch::format(s.max_committed_epoch),
            human_bytes(s.stored_size),
            s.timeline,
            if s.keep { "yes" } else { "" }
        ))?;
    }
    Ok(())
}

/// `snapshot keep` and `snapshot unkeep`.
async fn set_keep(repo: &RepoArg, ids: &[u64], keep: bool, ctx: &Ctx) -> Result<()> {
    let repo = open_repo(repo, ctx)?;
    for id in ids {
        let s = crate::retention::set_keep(&repo, *id, keep).await?;
        out(format!("snapshot {} keep = {}", s.id, s.keep))?;
    }
    Ok(())
}

/// `snapshot delete`: refused when it would make some epoch unrestorable, unless `force`.
async fn delete(repo: &RepoArg, ids: &[u64], force: bool, ctx: &Ctx) -> Result<()> {
    let repo = open_repo(repo, ctx)?;
    let removed = snapshot::delete(&repo, ids, force).await?;
    out(format!("deleted {} snapshots", removed.len()))
}
