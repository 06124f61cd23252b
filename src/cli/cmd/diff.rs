//! `metapitr diff`: what changed between two epochs.

use crate::cli::args::DiffArgs;
use crate::cli::common::{open_repo, out, to_json, Ctx};
use crate::epoch;
use crate::error::{Error, Result};
use crate::restore::{self, Target};

pub(crate) async fn run(a: DiffArgs, ctx: &Ctx) -> Result<()> {
    let DiffArgs {
        repo,
        from,
        to,
        timeline,
        json,
    } = a;
    let (from_t, to_t) = (
        Target::Epoch(epoch::parse_as_of(&from)?),
        Target::Epoch(epoch::parse_as_of(&to)?),
    );
    let repo = open_repo(&repo, ctx)?;
    let (a, b) = tokio::try_join!(
        restore::as_recorded(&repo, timeline, from_t),
        restore::as_recorded(&repo, timeline, to_t),
    )?;
    if a.0.target_epoch > b.0.target_epoch {
        return Err(Error::invalid_input(format!(
            "--from {from} (epoch {}) is after --to {to} (epoch {}); give the earlier one first",
            a.0.target_epoch, b.0.target_epoch
        )));
    }
    let d = crate::diff::Diff::between(&a.1, &b.1);
    if json {
        return out(to_json(&d)?);
    }
    out(format!(
        "from epoch {} ({}) to epoch {} ({})",
        d.from_epoch,
        epoch::format(d.from_epoch),
        d.to_epoch,
        epoch::format(d.to_epoch)
    ))?;
    out(d.to_text())
}
