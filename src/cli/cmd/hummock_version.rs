//! `metapitr hummock-version`: the SST set a time-travel read at an epoch uses, by
//! compaction group and level.

use serde_json::json;

use crate::cli::args::HummockVersionArgs;
use crate::cli::common::{human_bytes, open_repo, out, Ctx};
use crate::epoch;
use crate::error::Result;
use crate::model::{SstLoc, SstableInfo, Version};
use crate::restore;

pub(crate) async fn run(a: HummockVersionArgs, ctx: &Ctx) -> Result<()> {
    let repo = open_repo(&a.repo, ctx)?;
    let (plan, state) = restore::as_recorded(&repo, a.timeline, a.at.target()?).await?;
    let v = &state.hummock;
    let at = plan.target_epoch;
    if a.object_ids {
        let ids: std::collections::BTreeSet<u64> = v.object_ids().collect();
        if ids.is_empty() {
            return Ok(());
        }
        let text: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        return out(text.join("\n"));
    }
    if a.json {
        return print_json(v, at);
    }
    print_text(v, at)
}

/// A level as (level, L0 sub-level).
fn level(loc: &SstLoc) -> (u32, Option<u64>) {
    match loc {
        SstLoc::L0(sub) => (0, Some(*sub)),
        SstLoc::Level(l) => (*l, None),
    }
}

/// `--json`: one object, the version's epochs and its SSTs.
fn print_json(v: &Version, at: u64) -> Result<()> {
    let sst = |g: u64, loc: &SstLoc, s: &SstableInfo| {
        let (level, sub_level) = level(loc);
        json!({
            "group": g,
            "level": level,
            "sub_level": sub_level,
            "sst_id": s.sst_id,
            "object_id": s.object_id,
            "file_size": s.file_size,
            "table_ids": s.table_ids,
            "min_epoch": s.min_epoch,
            "max_epoch": s.max_epoch,
        })
    };
    let ssts: Vec<serde_json::Value> = v.ssts().map(|(g, loc, s)| sst(g, &loc, s)).collect();
    out(json!({
        "epoch": at,
        "timestamp": epoch::format(at),
        "version_id": v.id,
        "max_committed_epoch": v.max_committed_epoch,
        "safe_epoch": v.safe_epoch,
        "sst_count": v.sst_count(),
        "object_count": v.object_count(),
        "total_file_size": v.total_file_size(),
        "ssts": ssts,
    })
    .to_string())
}

/// A summary line, then one line per SST.
fn print_text(v: &Version, at: u64) -> Result<()> {
    out(format!(
        "hummock version {} as of epoch {} ({}): max_committed_epoch {}, safe_epoch {}, {} SSTs in {} objects, {}",
        v.id,
        at,
        epoch::format(at),
        v.max_committed_epoch,
        v.safe_epoch,
        v.sst_count(),
        v.object_count(),
        human_bytes(v.total_file_size())
    ))?;
    let mut text = String::new();
    for (g, loc, s) in v.ssts() {
        let level = match level(&loc) {
            (0, Some(sub)) => format!("L0.{sub}"),
            (l, _) => format!("L{l}"),
        };
        text.push_str(&format!(
            "group {g} {level} sst {} object {} {} tables {:?} epochs {}..{}\n",
            s.sst_id,
            s.object_id,
            human_bytes(s.file_size),
            s.table_ids,
            s.min_epoch,
            s.max_epoch
        ));
    }
    out(text.trim_end())
}
