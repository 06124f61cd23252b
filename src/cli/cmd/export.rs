//! `metapitr export`: the metadata as JSONL, from the repo at an epoch, from a WAL
//! directory offline, or read back from a meta store.

use crate::cli::args::ExportArgs;
use crate::cli::common::{open_repo, Ctx};
use crate::epoch;
use crate::error::Result;
use crate::model::State;
use crate::progress::{Bars, Progress, Unit};
use crate::restore::{self, Target};
use crate::store::{JsonlStore, MetaStore};

pub(crate) async fn run(a: ExportArgs, ctx: &Ctx) -> Result<()> {
    let state = read(&a, ctx).await?;
    let target = match a.output {
        Some(p) if p.as_os_str() != "-" => JsonlStore::File(p),
        _ => JsonlStore::Stdio,
    };
    let spin = Progress::spinner(&format!("writing {target}"), ctx.quiet);
    let r = target
        .write_export(&state, a.force, a.include_secrets)
        .await;
    spin.finish();
    r
}

/// The state to export, from the source the flags name.
async fn read(a: &ExportArgs, ctx: &Ctx) -> Result<State> {
    let at = a.at_epoch.as_deref().map(epoch::parse_as_of).transpose()?;
    if let Some(dir) = &a.wal_dir {
        return crate::store::read_wal_dir(dir, at);
    }
    if let Some(s) = &a.from_store {
        return a.etcd.store(s, ctx)?.as_store().read().await;
    }
    let repo = open_repo(&a.repo, ctx)?;
    let target = at.map_or(Target::Latest, Target::Epoch);
    let m = repo.manifest().await?;
    let plan = restore::plan(&repo, &m, a.timeline, target).await?;
    let progress = Progress::new(0, Unit::Items, "export", ctx.quiet);
    restore::execute_with(&repo, &plan, &progress).await
}
