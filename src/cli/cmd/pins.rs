//! `metapitr pins`: the pin set's object count, covered epochs and size.

use serde_json::json;

use crate::cli::args::PinsArgs;
use crate::cli::common::{human_bytes, open_repo, out, Ctx};
use crate::epoch;
use crate::error::Result;

pub(crate) async fn run(a: PinsArgs, ctx: &Ctx) -> Result<()> {
    let repo = open_repo(&a.repo, ctx)?;
    let m = repo.manifest().await?;
    let pins = crate::pin::load_all(&repo).await?;
    let count: u64 = pins.iter().map(|p| p.count()).sum();
    let from = pins.iter().map(|p| p.from_epoch).min().unwrap_or(0);
    let to = pins.iter().map(|p| p.to_epoch).max().unwrap_or(0);
    let bytes: u64 = m.pins.iter().map(|p| p.stored_size).sum();
    if a.json {
        out(json!({"count": count, "from_epoch": from, "to_epoch": to, "bytes": bytes}).to_string())
    } else {
        out(format!(
            "{count} pinned SST objects, epochs {from} ({}) .. {to} ({}), {}",
            epoch::format(from),
            epoch::format(to),
            human_bytes(bytes)
        ))
    }
}
