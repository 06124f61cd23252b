//! `metapitr gc-check`: which candidate SST objects the garbage collector may delete.

use std::io::Write;

use roaring::RoaringTreemap;

use crate::cli::args::GcCheckArgs;
use crate::cli::common::{open_repo, Ctx};
use crate::epoch;
use crate::error::{Error, Result};
use crate::pin::{self, GcAnswer};

pub(crate) async fn run(a: GcCheckArgs, ctx: &Ctx) -> Result<()> {
    let repo = open_repo(&a.repo, ctx)?;
    let e = epoch::parse_epoch_or_time(&a.current_epoch)?;
    let text = match &a.ids {
        Some(p) => std::fs::read_to_string(p).map_err(|err| Error::io(p, err))?,
        None => {
            std::io::read_to_string(std::io::stdin()).map_err(|err| Error::io("<stdin>", err))?
        }
    };
    let candidates = parse_ids(&text)?;
    let pins = pin::load_all(&repo).await?;
    match pin::gc_check(&pins, e, &candidates) {
        GcAnswer::Safe(safe) => {
            let mut o = std::io::BufWriter::new(std::io::stdout().lock());
            for id in safe {
                writeln!(o, "{id}").map_err(|err| Error::io("<stdout>", err))?;
            }
            o.flush().map_err(|err| Error::io("<stdout>", err))
        }
        GcAnswer::NotCovered {
            covered_to,
            current_epoch,
        } => {
            eprintln!(
                "nothing is safe: the pin set covers epochs up to {covered_to} ({}) but the objects left the live version at {current_epoch} ({}); retry once the archive has caught up",
                epoch::format(covered_to),
                epoch::format(current_epoch)
            );
            Ok(())
        }
    }
}

/// Decimal SST object ids, one per line (blank lines skipped).
fn parse_ids(text: &str) -> Result<RoaringTreemap> {
    let mut ids = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        ids.push(t.parse::<u64>().map_err(|_| {
            Error::invalid_input(format!(
                "line {}: '{t}' is not a decimal SST object id",
                n + 1
            ))
        })?);
    }
    ids.sort_unstable();
    ids.dedup();
    RoaringTreemap::from_sorted_iter(ids).map_err(|e| Error::internal(format!("id set: {e}")))
}
