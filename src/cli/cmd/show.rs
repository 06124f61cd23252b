//! `metapitr show`: time travel, the metadata as of an epoch or a time, printed without
//! restoring it anywhere (password hashes redacted).

use crate::cli::args::{ShowArgs, ShowWhat};
use crate::cli::common::{open_repo, out, Ctx};
use crate::epoch;
use crate::error::Result;
use crate::restore;

impl ShowWhat {
    /// Whether an export line of this `kind` belongs to the part.
    pub fn holds(self, kind: &str) -> bool {
        match self {
            ShowWhat::Users => kind == "user",
            ShowWhat::Hummock => matches!(
                kind,
                "hummock_version" | "compaction_group" | "table_committed_epoch" | "sst"
            ),
            ShowWhat::Ids => kind == "id_generator",
            ShowWhat::Params => matches!(kind, "cluster" | "system_param" | "worker"),
            ShowWhat::Catalog => crate::model::catalog_kind_from_name(kind).is_some(),
        }
    }
}

pub(crate) async fn run(a: ShowArgs, ctx: &Ctx) -> Result<()> {
    let what = a.what;
    let repo = open_repo(&a.repo, ctx)?;
    let (plan, mut state) = restore::as_recorded(&repo, a.timeline, a.at.target()?).await?;
    if what.is_some_and(|w| w != ShowWhat::Hummock) {
        // Not asked for: no export lines for the (largest) part, the SSTs.
        state.hummock = Default::default();
    }
    let mut lines = crate::jsonl::lines(&state);
    crate::jsonl::redact(&mut lines);
    let shown: Vec<serde_json::Value> = lines
        .into_iter()
        .skip(1)
        .filter(|l| {
            let kind = l["kind"].as_str().unwrap_or("");
            what.is_none_or(|w| w.holds(kind))
        })
        .collect();
    if a.json {
        return out(serde_json::Value::Array(shown).to_string());
    }
    let mut text = format!(
        "as of epoch {} ({})\n",
        plan.target_epoch,
        epoch::format(plan.target_epoch)
    );
    for l in &shown {
        let kind = l["kind"].as_str().unwrap_or("");
        let fields: Vec<String> = l
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| *k != "kind")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        text.push_str(&format!("{kind} {}\n", fields.join(" ")));
    }
    out(text.trim_end())
}
