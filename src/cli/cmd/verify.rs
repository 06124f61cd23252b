//! `metapitr verify`: every archived object's checksums and the WAL's continuity.

use std::time::Instant;

use crate::cli::args::VerifyArgs;
use crate::cli::common::{human_bytes, human_duration, open_repo, out, to_json, Ctx};
use crate::error::Result;
use crate::progress::{Bars, Progress, Unit};

pub(crate) async fn run(a: VerifyArgs, ctx: &Ctx) -> Result<()> {
    let repo = open_repo(&a.repo, ctx)?;
    let progress = Progress::new(0, Unit::Items, "verify", ctx.quiet);
    let t = Instant::now();
    let r = crate::verify::run(&repo, a.full, &progress).await?;
    if a.json {
        out(to_json(&r)?)?;
    } else {
        if let Some(n) = &r.note {
            out(format!("note: {n}"))?;
        }
        for p in &r.problems {
            out(format!("{}: {}: {}", p.kind, p.object, p.message))?;
        }
        out(format!(
            "verified manifest version {}{} in {}: read {} objects ({}): {} segments, {} index chunks, {} snapshots, {} pin sets; {} verified earlier and skipped; {}",
            r.manifest_version,
            if r.full { " (full)" } else { "" },
            human_duration(t.elapsed()),
            r.objects_read,
            human_bytes(r.bytes_read),
            r.segments,
            r.index_chunks,
            r.snapshots,
            r.pin_sets,
            r.objects_skipped,
            if r.ok() {
                "no problems".to_string()
            } else {
                format!("{} problems", r.problems.len())
            }
        ))?;
    }
    match r.error() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
