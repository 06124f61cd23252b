//! `metapitr repair`: go on after the newest manifest version was lost.

use crate::cli::args::RepairArgs;
use crate::cli::common::{open_repo, out, Ctx};
use crate::error::Result;

pub(crate) async fn run(a: RepairArgs, ctx: &Ctx) -> Result<()> {
    let dry_run = a.dry_run;
    let repo = open_repo(&a.repo, ctx)?;
    let r = crate::repair::run(&repo, dry_run).await?;
    if r.lost_version == 0 {
        return out(format!(
            "nothing to repair: the newest manifest version {} of {} is intact",
            r.from_version,
            repo.url()
        ));
    }
    if dry_run {
        return out(format!(
            "dry run: manifest version {} is lost; going on from version {} would list \
             again {}",
            r.lost_version,
            r.from_version,
            r.unlisted.describe()
        ));
    }
    out(format!(
        "manifest version {} was lost; wrote version {} from version {}, listing again \
         {} WAL segments and {} snapshots, {} pin sets computed again{}",
        r.lost_version,
        r.new_version,
        r.from_version,
        r.segments_listed,
        r.snapshots_listed,
        r.pin_sets_rebuilt,
        if r.segments_skipped > 0 {
            format!(
                "; {} segments do not chain onto the archive and stay unlisted",
                r.segments_skipped
            )
        } else {
            String::new()
        }
    ))
}
