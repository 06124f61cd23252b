//! `metapitr retention apply`: expire the snapshots and WAL segments no epoch in the
//! window needs.

use crate::cli::args::RetentionCmd;
use crate::cli::common::{human_bytes, open_settings_repo, out, Ctx};
use crate::epoch;
use crate::error::Result;

pub(crate) async fn run(cmd: RetentionCmd, ctx: &Ctx) -> Result<()> {
    let RetentionCmd::Apply {
        repo,
        window,
        keep_last,
        dry_run,
        force,
    } = cmd;
    let mut flags = repo.flags();
    flags.push(("retention.window", window));
    flags.push(("retention.keep_last", keep_last.map(|k| k.to_string())));
    let settings = ctx.settings(&flags)?;
    let policy = settings.retention.policy();
    let repo = open_settings_repo(&settings, false)?;
    let r = crate::retention::apply(&repo, policy, dry_run, force).await?;
    out(format!(
        "{}window now starts at epoch {} ({}), newest {} ({}); {} snapshots ({:?}) and {} WAL segments expired ({}); {} SST objects pinned",
        if r.dry_run { "dry run: " } else { "" },
        r.window_start,
        epoch::format(r.window_start),
        r.newest_epoch,
        epoch::format(r.newest_epoch),
        r.deleted_snapshots.len(),
        r.deleted_snapshots,
        r.deleted_segments,
        human_bytes(r.deleted_bytes),
        r.pinned
    ))
}
