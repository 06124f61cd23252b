//! The JSONL export: one JSON object per line, as `databend-metactl export` writes.
//!
//! The first line is a header `{"format":"metapitr-jsonl","format_version":2,"epoch":E,
//! "epoch_ts":"…","timeline":T}`; the last is the end line `{"kind":"end","lines":N,
//! "sha256":"…"}`: how many lines come before it and the SHA-256 of their bytes, so that
//! an export cut short or altered is told from a whole one (`head -n -1 F | sha256sum`
//! checks it by hand). Format version 1 had no end line. Every other line has a `kind`:
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
use crate::error::ErrorKind;
use crate::model::{
    catalog_kind_name, id_category_name, CatalogObject, SstLoc, SstableInfo, State, ID_CATEGORIES,
};

pub const FORMAT: &str = "metapitr-jsonl";
/// Version 2 added the end line.
pub const FORMAT_VERSION: u64 = 2;
/// The `kind` of the last line, which covers every line before it.
pub const END_KIND: &str = "end";

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

/// Writes export lines, one each, to `w`, then the end line covering them.
pub fn write_lines(lines: &[Value], w: &mut impl std::io::Write) -> std::io::Result<()> {
    use sha2::Digest;
    let mut sha = sha2::Sha256::new();
    let mut buf = Vec::with_capacity(256);
    for l in lines {
        buf.clear();
        serde_json::to_writer(&mut buf, &l)?;
        buf.push(b'\n');
        sha.update(&buf);
        w.write_all(&buf)?;
    }
    let end = end_line(lines.len(), &hex::encode(sha.finalize()));
    buf.clear();
    serde_json::to_writer(&mut buf, &end)?;
    buf.push(b'\n');
    w.write_all(&buf)?;
    w.flush()
}

fn end_line(lines: usize, sha256: &str) -> Value {
    json!({"kind": END_KIND, "lines": lines, "sha256": sha256})
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
/// the restore must be at least the truth (it holds the repo's maximum), and the end
/// lines, which are not compared.
pub fn compare(restored: &str, truth: &str) -> Result<Comparison, serde_json::Error> {
    fn split(
        s: &str,
    ) -> Result<(Vec<String>, std::collections::BTreeMap<String, u64>), serde_json::Error> {
        let mut rest = Vec::new();
        let mut ids = std::collections::BTreeMap::new();
        for line in s.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line)?;
            let kind = v.get("kind").and_then(Value::as_str);
            if kind == Some(END_KIND) {
                // It covers the bytes, and the id generators may differ.
                continue;
            }
            if kind == Some("id_generator") {
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

/// Why an export could not be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number (the header is line 1); `None` when no one line is at fault
    /// (a line the export lacks).
    pub line: Option<usize>,
    pub reason: String,
    /// `Corruption` when the end line disagrees with the lines before it (cut short or
    /// altered), else `InvalidInput`.
    pub kind: ErrorKind,
}

impl ParseError {
    fn at(line: usize, reason: impl Into<String>) -> Self {
        ParseError {
            line: Some(line),
            reason: reason.into(),
            kind: ErrorKind::InvalidInput,
        }
    }
    fn whole(reason: impl Into<String>) -> Self {
        ParseError {
            line: None,
            reason: reason.into(),
            kind: ErrorKind::InvalidInput,
        }
    }
    fn corrupt(mut self) -> Self {
        self.kind = ErrorKind::Corruption;
        self
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(n) => write!(f, "line {n}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for ParseError {}

/// What to do about an export that is not whole.
const EXPORT_AGAIN: &str = "export it again from its source (or copy it whole)";

/// Reads an export (as [`write`] produces it) back into a state: an import. The end line
/// must cover every line before it (count and SHA-256 of their bytes), and nothing but
/// blank lines may follow it. A version 1 export, which has no end line, is read only with
/// `allow_untrailed` (nothing tells a copy cut short from a whole one). Lines other than
/// the header may come in any order. Everything [`from_lines`] checks is checked, and
/// that the state is consistent: every id generator above the ids of its category in
/// use, the catalog and users holding together.
pub fn read(mut r: impl std::io::BufRead, allow_untrailed: bool) -> Result<State, ParseError> {
    use sha2::Digest;
    let mut sha = sha2::Sha256::new();
    // Every non-blank line before the end line, parsed; a line that is not JSON is
    // reported after the end line is checked, which tells damage from bad input.
    let mut values: Vec<(usize, Result<Value, String>)> = Vec::new();
    let mut end: Option<(usize, Value)> = None;
    let mut n = 0;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let got = r
            .read_until(b'\n', &mut buf)
            .map_err(|e| ParseError::at(n + 1, format!("cannot read: {e}")))?;
        if got == 0 {
            break;
        }
        n += 1;
        let blank = buf.trim_ascii().is_empty();
        if let Some((at, _)) = &end {
            if !blank {
                return Err(ParseError::at(
                    n,
                    format!("more follows the end line (line {at}); {EXPORT_AGAIN}"),
                )
                .corrupt());
            }
            continue;
        }
        let v = std::str::from_utf8(&buf)
            .map_err(|e| format!("not UTF-8: {e}"))
            .and_then(|t| serde_json::from_str::<Value>(t).map_err(|e| format!("not JSON: {e}")));
        if v.as_ref()
            .is_ok_and(|v| v.get("kind").and_then(Value::as_str) == Some(END_KIND))
        {
            end = v.ok().map(|v| (n, v));
            continue;
        }
        sha.update(&buf);
        if !blank {
            values.push((n, v));
        }
    }
    let version = match values.first() {
        Some((_, Ok(h))) => h.get("format_version").and_then(Value::as_u64),
        _ => None,
    };
    match end {
        Some((at, e)) => {
            let l = Line::new(at, &e);
            let (lines, want) = (l.u64("lines")?, l.str("sha256")?);
            let got = hex::encode(sha.finalize());
            if lines != at as u64 - 1 {
                return Err(l
                    .err(format!(
                        "the end line covers {lines} lines but {} come before it: lines were \
                         lost or added; {EXPORT_AGAIN}",
                        at - 1
                    ))
                    .corrupt());
            }
            if want != got {
                return Err(l
                    .err(format!(
                        "the {lines} lines before the end line have SHA-256 {got}, not the \
                         {want} it records: the export was altered or damaged; {EXPORT_AGAIN}"
                    ))
                    .corrupt());
            }
        }
        None if version.is_some_and(|v| v >= 2) => {
            return Err(ParseError::at(
                n,
                format!(
                    "the export ends here without its end line ({{\"kind\":\"end\",...}}): \
                     it was cut short; {EXPORT_AGAIN}"
                ),
            )
            .corrupt());
        }
        None if version == Some(1) && !allow_untrailed => {
            return Err(ParseError::at(
                n,
                "the export ends here and, being format_version 1, has no end line: nothing \
                 tells a copy cut short from a whole one; export it again with this version, \
                 or import it with --allow-untrailed if you know it is whole",
            ));
        }
        // Version 1 allowed, or a header that is no header (from_lines says why).
        None => {}
    }
    let values = values
        .into_iter()
        .map(|(n, v)| v.map(|v| (n, v)).map_err(|e| ParseError::at(n, e)))
        .collect::<Result<Vec<_>, _>>()?;
    let parsed = parse_lines(values)?;
    parsed.check_consistent()?;
    Ok(parsed.state)
}

/// What to do about an export whose lines do not hold together.
const INCONSISTENT: &str =
    "the export is not one consistent state: correct that line or export it again from its source";

/// Builds a state from export lines, each with its line number; the header comes first.
/// Beyond every field's type it checks that the lines make one state: the cluster and
/// hummock_version lines appear exactly once; no id (or parameter or generator name)
/// appears twice within its kind; every SST names a compaction group and a level it has.
/// Errors name the line. An import checks more ([`read`]).
pub fn from_lines(lines: impl IntoIterator<Item = (usize, Value)>) -> Result<State, ParseError> {
    parse_lines(lines).map(|p| p.state)
}

/// A state with where its lines were.
struct Parsed {
    state: State,
    /// (what, id) → the line that has it.
    ids: std::collections::HashMap<(&'static str, u64), usize>,
    /// By id category: the generator's value and line.
    generators: [Option<(u64, usize)>; 9],
    /// By id category: the largest id in use, what it is and its line.
    in_use: [Option<(u64, &'static str, usize)>; 9],
}

impl Parsed {
    /// What an import checks beyond [`from_lines`]: every id generator has its line and is
    /// above each id of its category in use (catalog objects, users, SST object and sst
    /// ids, compaction groups), and the catalog and users hold together
    /// ([`State::check_loaded`]).
    fn check_consistent(&self) -> Result<(), ParseError> {
        for c in ID_CATEGORIES {
            let name = id_category_name(c);
            let Some((next, gline)) = self.generators[c as usize] else {
                return Err(ParseError::whole(format!(
                    "the export has no id_generator {name} line: it is incomplete; {EXPORT_AGAIN}"
                )));
            };
            let above = |(id, _, _): &(u64, &str, usize)| next <= *id;
            if let Some((id, what, n)) = self.in_use[c as usize].filter(above) {
                return Err(ParseError::at(
                    gline,
                    format!(
                        "id generator {name} would next give {next}, but {what} {id} (line {n}) \
                         is already in use, so ids would be given twice; {INCONSISTENT}"
                    ),
                ));
            }
        }
        self.state.check_loaded().map_err(|(subject, e)| {
            let at = match subject {
                crate::model::Subject::Catalog(id) => self.ids.get(&("catalog object", id.into())),
                crate::model::Subject::User(id) => self.ids.get(&("user", id.into())),
            };
            let reason = format!("{e}; {INCONSISTENT}");
            match at {
                Some(n) => ParseError::at(*n, reason),
                None => ParseError::whole(reason),
            }
        })
    }
}

fn parse_lines(lines: impl IntoIterator<Item = (usize, Value)>) -> Result<Parsed, ParseError> {
    use crate::model::{pb, IdCategory};
    use std::collections::{BTreeMap, HashMap};

    let mut it = lines.into_iter();
    let (hline, header) = it
        .next()
        .ok_or_else(|| ParseError::at(1, "empty export: no header line"))?;
    let h = Line::new(hline, &header);
    if h.str("format")? != FORMAT {
        return Err(h.err(format!("format is not {FORMAT}")));
    }
    let fv = h.u64("format_version")?;
    if !(1..=FORMAT_VERSION).contains(&fv) {
        return Err(h.err(format!(
            "format_version {fv} is not supported (this build reads 1 to {FORMAT_VERSION})"
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
    // (what, id) and (what, name) → the line that has it.
    let mut ids: HashMap<(&'static str, u64), usize> = HashMap::new();
    let mut names: HashMap<(&'static str, String), usize> = HashMap::new();
    // `id` None: a line there is one of.
    let mut once = |l: &Line, what: &'static str, id: Option<u64>| match ids
        .insert((what, id.unwrap_or(0)), l.n)
    {
        Some(first) => Err(l.err(format!(
            "{what}{} appears twice (lines {first} and {}); {INCONSISTENT}",
            id.map(|i| format!(" {i}")).unwrap_or_default(),
            l.n
        ))),
        None => Ok(()),
    };
    let mut once_named = |l: &Line, what: &'static str, name: &str| match names
        .insert((what, name.to_string()), l.n)
    {
        Some(first) => Err(l.err(format!(
            "{what} {name} appears twice (lines {first} and {}); {INCONSISTENT}",
            l.n
        ))),
        None => Ok(()),
    };
    // By id category: the generator's value and line, and the largest id in use with
    // what it is and its line.
    let mut generators: [Option<(u64, usize)>; 9] = [None; 9];
    let mut in_use: [Option<(u64, &'static str, usize)>; 9] = [None; 9];
    let mut uses = |c: IdCategory, id: u64, what: &'static str, n: usize| {
        let slot = &mut in_use[c as usize];
        if slot.is_none_or(|(max, _, _)| id > max) {
            *slot = Some((id, what, n));
        }
    };
    let mut lines_seen = 1usize;
    for (n, v) in it {
        lines_seen += 1;
        let l = Line::new(n, &v);
        let kind = l.str("kind")?;
        match kind {
            "cluster" => {
                once(&l, "the cluster line", None)?;
                m.cluster_id = l.str("cluster_id")?.to_string();
            }
            "system_param" => {
                let name = l.str("name")?;
                once_named(&l, "system parameter", name)?;
                m.system_params.push(pb::SystemParam {
                    name: name.to_string(),
                    value: l.str("value")?.to_string(),
                })
            }
            "worker" => {
                let t = l.str("worker_type")?;
                let wt = crate::model::WorkerType::from_str_name(t)
                    .ok_or_else(|| l.err(format!("unknown worker_type {t}")))?;
                let id = l.u32("id")?;
                once(&l, "worker", Some(id.into()))?;
                m.workers.push(crate::model::WorkerNode {
                    id,
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
                let id = l.u32("id")?;
                once(&l, "user", Some(id.into()))?;
                uses(IdCategory::User, id.into(), "user", n);
                m.users.push(crate::model::User {
                    id,
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
                once_named(&l, "id generator", name)?;
                let next = l.u64("value")?;
                generators[c as usize] = Some((next, n));
                m.id_generators.push(pb::IdGenerator {
                    category: c as i32,
                    next,
                });
            }
            "hummock_version" => {
                once(&l, "the hummock_version line", None)?;
                hv.id = l.u64("id")?;
                hv.max_committed_epoch = l.u64("max_committed_epoch")?;
                hv.safe_epoch = l.u64("safe_epoch")?;
            }
            "compaction_group" => {
                let id = l.u64("id")?;
                once(&l, "compaction group", Some(id))?;
                uses(IdCategory::CompactionGroup, id, "compaction group", n);
                let max_level = l.u32("max_level")?;
                if max_level > crate::model::MAX_GROUP_LEVELS {
                    return Err(l.err(format!(
                        "compaction group {id} has {max_level} levels, more than {}",
                        crate::model::MAX_GROUP_LEVELS
                    )));
                }
                let g = pb::CompactionGroup {
                    id,
                    max_level,
                    member_table_ids: l.u32s("member_table_ids")?,
                    ..Default::default()
                };
                groups.insert(id, g);
            }
            "table_committed_epoch" => {
                let table_id = l.u32("table_id")?;
                once(&l, "table_committed_epoch of table", Some(table_id.into()))?;
                hv.table_committed_epochs.push(pb::TableCommittedEpoch {
                    table_id,
                    epoch: l.u64("epoch")?,
                })
            }
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
                once(&l, "sst", Some(s.sst_id))?;
                uses(IdCategory::SstableObject, s.sst_id, "sst", n);
                uses(IdCategory::SstableObject, s.object_id, "SST object", n);
                ssts.push((
                    n,
                    l.u64("group_id")?,
                    l.u32("level")?,
                    l.u64("sub_level_id")?,
                    s,
                ));
            }
            END_KIND => {
                return Err(l.err(format!("an end line may only come last; {INCONSISTENT}")))
            }
            k => match crate::model::catalog_kind_from_name(k) {
                Some(ck) => {
                    let id = l.u32("id")?;
                    once(&l, "catalog object", Some(id.into()))?;
                    uses(IdCategory::Catalog, id.into(), "catalog object", n);
                    m.catalog.push(CatalogObject {
                        id,
                        kind: ck as i32,
                        name: l.str("name")?.to_string(),
                        database_id: l.u32("database_id")?,
                        schema_id: l.u32("schema_id")?,
                        owner: l.u32("owner")?,
                        definition: l.str("definition")?.to_string(),
                        dependencies: l.u32s("dependencies")?,
                    })
                }
                None => return Err(l.err(format!("unknown kind {k}"))),
            },
        }
    }
    let missing = |what: &str| {
        ParseError::whole(format!(
            "the export has no {what} line: it is incomplete; {EXPORT_AGAIN}"
        ))
    };
    if !ids.contains_key(&("the cluster line", 0)) {
        return Err(missing("cluster"));
    }
    if !ids.contains_key(&("the hummock_version line", 0)) {
        return Err(missing("hummock_version"));
    }
    // Empty levels are allocated per group: bound them by what the export holds.
    let levels: u64 = groups.values().map(|g| u64::from(g.max_level)).sum();
    let allowed =
        crate::model::GROUP_LEVELS_FLOOR + crate::model::GROUP_LEVELS_PER_BYTE * lines_seen as u64;
    if levels > allowed {
        return Err(ParseError::whole(format!(
            "the compaction groups have {levels} levels together, more than {allowed} for an \
             export of {lines_seen} lines"
        )));
    }
    for (n, gid, level, sub, s) in ssts {
        let g = groups.get_mut(&gid).ok_or_else(|| {
            ParseError::at(
                n,
                format!(
                    "sst {} names compaction group {gid}, which has no line",
                    s.sst_id
                ),
            )
        })?;
        if level > g.max_level {
            return Err(ParseError::at(
                n,
                format!(
                    "sst {} is in level {level} of compaction group {gid}, which has {} levels; \
                     {INCONSISTENT}",
                    s.sst_id, g.max_level
                ),
            ));
        }
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
    let state = State::from_proto(m)
        .map_err(|e| ParseError::whole(format!("the export is not a consistent state: {e}")))?;
    Ok(Parsed {
        state,
        ids,
        generators,
        in_use,
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
        ParseError::at(self.n, reason)
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
