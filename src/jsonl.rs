//! The JSONL export: one JSON object per line, as `databend-metactl export` writes.
//!
//! The first line is a header `{"format":"metapitr-jsonl","format_version":1,"epoch":E,
//! "epoch_ts":"…","timeline":T}`. Every other line has a `kind`:
//!
//! | kind | fields |
//! |---|---|
//! | `cluster` | `cluster_id` |
//! | `system_param` | `name`, `value` |
//! | `worker` | `id`, `host`, `port`, `worker_type` |
//! | `database`, `schema`, `table`, `materialized_view`, `index`, `internal_table`, `source`, `sink`, `view`, `function`, `connection`, `secret` | `id`, `name`, `database_id`, `schema_id`, `owner`, `definition`, `dependencies` |
//! | `user` | `id`, `name`, `is_super`, `can_create_db`, `can_create_user`, `can_login`, `auth_info` {`encryption_type`, `encrypted_value` (hex)}, `grants` [{`object_id`, `action`, `with_grant_option`, `granted_by`}] |
//! | `id_generator` | `name`, `value` (the generator's next id) |
//! | `hummock_version` | `id`, `max_committed_epoch`, `safe_epoch` |
//! | `compaction_group` | `id`, `max_level`, `member_table_ids` |
//! | `table_committed_epoch` | `table_id`, `epoch` |
//! | `sst` | `object_id`, `sst_id`, `group_id`, `level`, `sub_level_id`, `file_size`, `table_ids`, `min_epoch`, `max_epoch`, `key_left`, `key_right` (hex), `right_exclusive` |
//!
//! Lines come in that order: catalog objects of every kind together by id, system
//! parameters by name, id generators by category, SSTs by group, then L0 sub-level, then
//! level, then sst_id; keys within a line are sorted. The same state always gives the same
//! bytes.

use serde_json::{json, Value};

use crate::epoch;
use crate::model::{catalog_kind_name, id_category_name, SstLoc, State, ID_CATEGORIES};

pub const FORMAT: &str = "metapitr-jsonl";
pub const FORMAT_VERSION: u64 = 1;

/// The export of a state as JSON values, header first.
pub fn lines(state: &State) -> Vec<Value> {
    let mut out = Vec::with_capacity(16 + state.catalog.len() + state.hummock.sst_count());
    out.push(json!({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "epoch": state.epoch,
        "epoch_ts": epoch::format(state.epoch),
        "timeline": state.timeline,
    }));
    out.push(json!({"kind": "cluster", "cluster_id": state.cluster_id}));
    for (name, value) in &state.params {
        out.push(json!({"kind": "system_param", "name": name, "value": value}));
    }
    for w in state.workers.values() {
        out.push(json!({
            "kind": "worker", "id": w.id, "host": w.host, "port": w.port,
            "worker_type": w.worker_type().as_str_name(),
        }));
    }
    for o in state.catalog.values() {
        out.push(json!({
            "kind": catalog_kind_name(o.kind()), "id": o.id, "name": o.name,
            "database_id": o.database_id, "schema_id": o.schema_id, "owner": o.owner,
            "definition": o.definition, "dependencies": o.dependencies,
        }));
    }
    for u in state.users.values() {
        let auth = u.auth_info.as_ref().map(|a| {
            json!({"encryption_type": a.encryption_type, "encrypted_value": hex::encode(&a.encrypted_value)})
        });
        let grants: Vec<Value> = u
            .grants
            .iter()
            .map(|g| {
                json!({
                    "object_id": g.object_id, "action": g.action().as_str_name(),
                    "with_grant_option": g.with_grant_option, "granted_by": g.granted_by,
                })
            })
            .collect();
        out.push(json!({
            "kind": "user", "id": u.id, "name": u.name, "is_super": u.is_super,
            "can_create_db": u.can_create_db, "can_create_user": u.can_create_user,
            "can_login": u.can_login, "auth_info": auth, "grants": grants,
        }));
    }
    for c in ID_CATEGORIES {
        out.push(
            json!({"kind": "id_generator", "name": id_category_name(c), "value": state.id(c)}),
        );
    }
    let v = &state.hummock;
    out.push(json!({
        "kind": "hummock_version", "id": v.id, "max_committed_epoch": v.max_committed_epoch,
        "safe_epoch": v.safe_epoch,
    }));
    for (id, g) in &v.groups {
        out.push(json!({
            "kind": "compaction_group", "id": id, "max_level": g.max_level,
            "member_table_ids": g.member_table_ids,
        }));
    }
    for (t, e) in &v.table_committed_epochs {
        out.push(json!({"kind": "table_committed_epoch", "table_id": t, "epoch": e}));
    }
    for (gid, loc, s) in v.ssts() {
        let (level, sub) = match loc {
            SstLoc::L0(sub) => (0, sub),
            SstLoc::Level(l) => (l, 0),
        };
        let kr = s.key_range.clone().unwrap_or_default();
        out.push(json!({
            "kind": "sst", "object_id": s.object_id, "sst_id": s.sst_id, "group_id": gid,
            "level": level, "sub_level_id": sub, "file_size": s.file_size,
            "table_ids": s.table_ids, "min_epoch": s.min_epoch, "max_epoch": s.max_epoch,
            "key_left": hex::encode(&kr.left), "key_right": hex::encode(&kr.right),
            "right_exclusive": kr.right_exclusive,
        }));
    }
    out
}

/// Writes the export, one line each, to `w`.
pub fn write(state: &State, w: &mut impl std::io::Write) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(256);
    for l in lines(state) {
        buf.clear();
        serde_json::to_writer(&mut buf, &l)?;
        buf.push(b'\n');
        w.write_all(&buf)?;
    }
    w.flush()
}

pub fn to_string(state: &State) -> String {
    let mut v = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = write(state, &mut v);
    String::from_utf8_lossy(&v).into_owned()
}

/// How a restored export compares with a truth export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Lines (id_generator lines aside) compared.
    pub lines: usize,
    /// Lines in the truth but not in the restore, and the other way round.
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
    /// id generators whose restored value is below the truth's.
    pub ids_below_truth: Vec<String>,
}

impl Comparison {
    pub fn matches(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.ids_below_truth.is_empty()
    }
}

/// Compares two exports line for line, order aside, except the id_generator lines, where
/// the restore must be at least the truth (it holds the repo's maximum).
pub fn compare(restored: &str, truth: &str) -> Result<Comparison, serde_json::Error> {
    fn split(
        s: &str,
    ) -> Result<(Vec<String>, std::collections::BTreeMap<String, u64>), serde_json::Error> {
        let mut rest = Vec::new();
        let mut ids = std::collections::BTreeMap::new();
        for line in s.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line)?;
            if v.get("kind").and_then(Value::as_str) == Some("id_generator") {
                let name = v
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                ids.insert(name, v.get("value").and_then(Value::as_u64).unwrap_or(0));
            } else {
                // Re-serialized so that formatting differences do not count.
                rest.push(v.to_string());
            }
        }
        rest.sort();
        Ok((rest, ids))
    }
    let (r, rids) = split(restored)?;
    let (t, tids) = split(truth)?;
    let rs: std::collections::BTreeSet<&String> = r.iter().collect();
    let ts: std::collections::BTreeSet<&String> = t.iter().collect();
    let mut c = Comparison {
        lines: t.len(),
        missing: ts.difference(&rs).map(|s| (*s).clone()).collect(),
        unexpected: rs.difference(&ts).map(|s| (*s).clone()).collect(),
        ids_below_truth: Vec::new(),
    };
    if r.len() != t.len() && c.missing.is_empty() && c.unexpected.is_empty() {
        c.unexpected
            .push(format!("{} lines where the truth has {}", r.len(), t.len()));
    }
    for (name, tv) in &tids {
        let rv = rids.get(name).copied().unwrap_or(0);
        if rv < *tv {
            c.ids_below_truth
                .push(format!("{name}: restored {rv} < truth {tv}"));
        }
    }
    Ok(c)
}
