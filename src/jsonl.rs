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
use crate::model::{
    catalog_kind_name, id_category_name, CatalogObject, SstLoc, SstableInfo, State, ID_CATEGORIES,
};

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

/// What an export says in place of a password hash without `--include-secrets`.
pub const REDACTED: &str = "redacted";

/// Replaces every user's password hash (`auth_info.encrypted_value`) with [`REDACTED`] and
/// marks the header `"secrets":"redacted"`. Such an export shows the metadata without the
/// secrets; it cannot be imported (the hashes are gone).
pub fn redact(lines: &mut [Value]) {
    for (i, l) in lines.iter_mut().enumerate() {
        if i == 0 {
            if let Some(h) = l.as_object_mut() {
                h.insert("secrets".into(), Value::from(REDACTED));
            }
            continue;
        }
        if l.get("kind").and_then(Value::as_str) != Some("user") {
            continue;
        }
        if let Some(a) = l.get_mut("auth_info").and_then(Value::as_object_mut) {
            a.insert("encrypted_value".into(), Value::from(REDACTED));
        }
    }
}

/// Writes the export, one line each, to `w`.
/// Serializes a byte string as lowercase hex (the export's form of bytes).
pub fn hex_bytes<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(b))
}

/// Bytes of one WAL record as a line of JSON (`{"lsn":…,"epoch":…,"change":{…}}` and a
/// newline), without building it: the raw-JSON yardstick the benchmark measures the
/// archive against.
pub fn change_json_len(lsn: u64, epoch: u64, change: &crate::model::Change) -> u64 {
    #[derive(serde::Serialize)]
    struct Line<'a> {
        lsn: u64,
        epoch: u64,
        change: &'a crate::model::Change,
    }
    let mut n = Counter(0);
    // Writing to a counter cannot fail, and every type derives Serialize plainly.
    let _ = serde_json::to_writer(&mut n, &Line { lsn, epoch, change });
    n.0 + 1
}

/// Bytes of a state's JSONL export, without holding it.
pub fn export_len(state: &State) -> u64 {
    let mut n = Counter(0);
    // Writing to a counter cannot fail.
    let _ = write(state, &mut n);
    n.0
}

struct Counter(u64);

impl std::io::Write for Counter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn write(state: &State, w: &mut impl std::io::Write) -> std::io::Result<()> {
    write_lines(&lines(state), w)
}

/// Writes export lines, one each, to `w`.
pub fn write_lines(lines: &[Value], w: &mut impl std::io::Write) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(256);
    for l in lines {
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

/// Why an export line could not be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number (the header is line 1).
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// Reads an export (as [`write`] produces it) back into a state. Lines other than the
/// header may come in any order; every invariant [`State::from_proto`] checks is checked.
pub fn read(r: impl std::io::BufRead) -> Result<State, ParseError> {
    let mut values = Vec::new();
    for (i, line) in r.lines().enumerate() {
        let line = line.map_err(|e| ParseError {
            line: i + 1,
            reason: format!("cannot read: {e}"),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line).map_err(|e| ParseError {
            line: i + 1,
            reason: format!("not JSON: {e}"),
        })?;
        values.push((i + 1, v));
    }
    from_lines(values)
}

/// Builds a state from export lines, each with its line number; the header comes first.
pub fn from_lines(lines: impl IntoIterator<Item = (usize, Value)>) -> Result<State, ParseError> {
    use crate::model::pb;
    use std::collections::BTreeMap;

    let mut it = lines.into_iter();
    let (hline, header) = it.next().ok_or(ParseError {
        line: 1,
        reason: "empty export: no header line".into(),
    })?;
    let h = Line::new(hline, &header);
    if h.str("format")? != FORMAT {
        return Err(h.err(format!("format is not {FORMAT}")));
    }
    let fv = h.u64("format_version")?;
    if fv != FORMAT_VERSION {
        return Err(h.err(format!(
            "format_version {fv} is not supported (this build reads {FORMAT_VERSION})"
        )));
    }
    let mut m = pb::MetaState {
        epoch: h.u64("epoch")?,
        timeline: h.u32("timeline")?,
        ..Default::default()
    };
    let mut hv = pb::HummockVersion::default();
    let mut groups: BTreeMap<u64, pb::CompactionGroup> = BTreeMap::new();
    let mut ssts: Vec<(usize, u64, u32, u64, SstableInfo)> = Vec::new();
    let mut seen_cluster = false;
    let mut seen_version = false;
    for (n, v) in it {
        let l = Line::new(n, &v);
        let kind = l.str("kind")?;
        match kind {
            "cluster" => {
                m.cluster_id = l.str("cluster_id")?.to_string();
                seen_cluster = true;
            }
            "system_param" => m.system_params.push(pb::SystemParam {
                name: l.str("name")?.to_string(),
                value: l.str("value")?.to_string(),
            }),
            "worker" => {
                let t = l.str("worker_type")?;
                let wt = crate::model::WorkerType::from_str_name(t)
                    .ok_or_else(|| l.err(format!("unknown worker_type {t}")))?;
                m.workers.push(crate::model::WorkerNode {
                    id: l.u32("id")?,
                    host: l.str("host")?.to_string(),
                    port: l.u32("port")?,
                    worker_type: wt as i32,
                });
            }
            "user" => {
                let auth_info = match v.get("auth_info") {
                    None | Some(Value::Null) => None,
                    Some(a) => {
                        let a = Line::new(n, a);
                        if a.str("encrypted_value").ok() == Some(REDACTED) {
                            return Err(a.err(format!(
                                "user {}'s password hash is redacted: this export was made \
                                 without --include-secrets and cannot be imported; export again \
                                 with --include-secrets",
                                l.str("name").unwrap_or("?")
                            )));
                        }
                        Some(crate::model::AuthInfo {
                            encryption_type: a.u32("encryption_type")?,
                            encrypted_value: a.hex("encrypted_value")?,
                        })
                    }
                };
                let mut grants = Vec::new();
                for g in l.array("grants")? {
                    let g = Line::new(n, g);
                    let a = g.str("action")?;
                    let action = crate::model::Action::from_str_name(a)
                        .ok_or_else(|| g.err(format!("unknown action {a}")))?;
                    grants.push(crate::model::GrantPrivilege {
                        object_id: g.u32("object_id")?,
                        action: action as i32,
                        with_grant_option: g.bool("with_grant_option")?,
                        granted_by: g.u32("granted_by")?,
                    });
                }
                m.users.push(crate::model::User {
                    id: l.u32("id")?,
                    name: l.str("name")?.to_string(),
                    is_super: l.bool("is_super")?,
                    can_create_db: l.bool("can_create_db")?,
                    can_create_user: l.bool("can_create_user")?,
                    can_login: l.bool("can_login")?,
                    auth_info,
                    grants,
                });
            }
            "id_generator" => {
                let name = l.str("name")?;
                let c = crate::model::id_category_from_name(name)
                    .ok_or_else(|| l.err(format!("unknown id generator {name}")))?;
                m.id_generators.push(pb::IdGenerator {
                    category: c as i32,
                    next: l.u64("value")?,
                });
            }
            "hummock_version" => {
                hv.id = l.u64("id")?;
                hv.max_committed_epoch = l.u64("max_committed_epoch")?;
                hv.safe_epoch = l.u64("safe_epoch")?;
                seen_version = true;
            }
            "compaction_group" => {
                let id = l.u64("id")?;
                let g = pb::CompactionGroup {
                    id,
                    max_level: l.u32("max_level")?,
                    member_table_ids: l.u32s("member_table_ids")?,
                    ..Default::default()
                };
                if groups.insert(id, g).is_some() {
                    return Err(l.err(format!("compaction group {id} appears twice")));
                }
            }
            "table_committed_epoch" => hv.table_committed_epochs.push(pb::TableCommittedEpoch {
                table_id: l.u32("table_id")?,
                epoch: l.u64("epoch")?,
            }),
            "sst" => {
                let s = SstableInfo {
                    object_id: l.u64("object_id")?,
                    sst_id: l.u64("sst_id")?,
                    key_range: Some(crate::model::KeyRange {
                        left: l.hex("key_left")?,
                        right: l.hex("key_right")?,
                        right_exclusive: l.bool("right_exclusive")?,
                    }),
                    file_size: l.u64("file_size")?,
                    table_ids: l.u32s("table_ids")?,
                    min_epoch: l.u64("min_epoch")?,
                    max_epoch: l.u64("max_epoch")?,
                };
                ssts.push((
                    n,
                    l.u64("group_id")?,
                    l.u32("level")?,
                    l.u64("sub_level_id")?,
                    s,
                ));
            }
            k => match crate::model::catalog_kind_from_name(k) {
                Some(ck) => m.catalog.push(CatalogObject {
                    id: l.u32("id")?,
                    kind: ck as i32,
                    name: l.str("name")?.to_string(),
                    database_id: l.u32("database_id")?,
                    schema_id: l.u32("schema_id")?,
                    owner: l.u32("owner")?,
                    definition: l.str("definition")?.to_string(),
                    dependencies: l.u32s("dependencies")?,
                }),
                None => return Err(l.err(format!("unknown kind {k}"))),
            },
        }
    }
    if !seen_cluster || !seen_version {
        return Err(ParseError {
            line: 0,
            reason: "incomplete export: the cluster or hummock_version line is missing".into(),
        });
    }
    for (n, gid, level, sub, s) in ssts {
        let g = groups.get_mut(&gid).ok_or(ParseError {
            line: n,
            reason: format!(
                "sst {} names compaction group {gid}, which has no line",
                s.sst_id
            ),
        })?;
        if level == 0 {
            match g.l0_sub_levels.iter_mut().find(|l| l.sub_level_id == sub) {
                Some(l) => l.ssts.push(s),
                None => g.l0_sub_levels.push(pb::SubLevel {
                    sub_level_id: sub,
                    ssts: vec![s],
                }),
            }
        } else {
            match g.levels.iter_mut().find(|l| l.level_idx == level) {
                Some(l) => l.ssts.push(s),
                None => g.levels.push(pb::Level {
                    level_idx: level,
                    ssts: vec![s],
                }),
            }
        }
    }
    hv.groups = groups.into_values().collect();
    m.hummock = Some(hv);
    State::from_proto(m).map_err(|e| ParseError {
        line: 0,
        reason: format!("the export is not a consistent state: {e}"),
    })
}

/// Typed field access on one export line, with errors naming the line and field.
struct Line<'a> {
    n: usize,
    v: &'a Value,
}

impl<'a> Line<'a> {
    fn new(n: usize, v: &'a Value) -> Self {
        Line { n, v }
    }
    fn err(&self, reason: String) -> ParseError {
        ParseError {
            line: self.n,
            reason,
        }
    }
    fn field(&self, k: &str) -> Result<&'a Value, ParseError> {
        self.v
            .get(k)
            .ok_or_else(|| self.err(format!("field {k} is missing")))
    }
    fn str(&self, k: &str) -> Result<&'a str, ParseError> {
        self.field(k)?
            .as_str()
            .ok_or_else(|| self.err(format!("field {k} is not a string")))
    }
    fn u64(&self, k: &str) -> Result<u64, ParseError> {
        self.field(k)?
            .as_u64()
            .ok_or_else(|| self.err(format!("field {k} is not an unsigned integer")))
    }
    fn u32(&self, k: &str) -> Result<u32, ParseError> {
        u32::try_from(self.u64(k)?).map_err(|_| self.err(format!("field {k} exceeds 32 bits")))
    }
    fn bool(&self, k: &str) -> Result<bool, ParseError> {
        self.field(k)?
            .as_bool()
            .ok_or_else(|| self.err(format!("field {k} is not a boolean")))
    }
    fn hex(&self, k: &str) -> Result<Vec<u8>, ParseError> {
        hex::decode(self.str(k)?).map_err(|e| self.err(format!("field {k} is not hex: {e}")))
    }
    fn array(&self, k: &str) -> Result<&'a Vec<Value>, ParseError> {
        self.field(k)?
            .as_array()
            .ok_or_else(|| self.err(format!("field {k} is not an array")))
    }
    fn u32s(&self, k: &str) -> Result<Vec<u32>, ParseError> {
        self.array(k)?
            .iter()
            .map(|x| {
                x.as_u64()
                    .and_then(|x| u32::try_from(x).ok())
                    .ok_or_else(|| self.err(format!("field {k} holds a non-u32 value")))
            })
            .collect()
    }
}
