//! Recognises and decodes any of the objects this crate reads, and renders it as JSON.
use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::checkpoint::{decode_bare, probe_envelope, Checkpoint, EnvelopeProbe};
use crate::error::{Error, Result};
use crate::model::{Delta, Group, GroupDelta, GroupDeltaKind, Level, Sst, Version};
use crate::pb;
use crate::snapshot::{looks_like_snapshot, Manifest, MetaSnapshot};
use crate::wire::scan;

/// A decoded object.
#[derive(Debug, Clone, PartialEq)]
pub enum Inspected {
    Checkpoint(Box<Checkpoint>),
    Version(Box<Version>),
    Delta(Box<Delta>),
    MetaSnapshot(Box<MetaSnapshot>),
    Manifest(Manifest),
}

/// Which object kind bytes hold, when the caller knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Checkpoint,
    Version,
    Delta,
    MetaSnapshot,
    Manifest,
}

/// Recognises and decodes `data`, naming it `<input>` in errors.
pub fn inspect(data: &[u8]) -> Result<Inspected> {
    inspect_named("<input>", data)
}

/// Recognises and decodes `data`; `file` names it in errors.
///
/// Order: JSON is a manifest; bytes with the structure of a meta snapshot are one (and
/// must then match their checksum); a protobuf message with an envelope checksum that
/// matches its payload is a checkpoint; one whose field 1 is a message is a bare
/// checkpoint; otherwise the wire types of fields 2, 3, 4 and 6 tell a version from a
/// delta. An envelope whose checksum does not match is reported as such when nothing else
/// decodes.
pub fn inspect_named(file: &str, data: &[u8]) -> Result<Inspected> {
    let data = Bytes::copy_from_slice(data);
    if data.is_empty() {
        return Err(Error::Unrecognized {
            file: file.to_owned(),
            detail: "it is empty".into(),
        });
    }
    if data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        return Ok(Inspected::Manifest(Manifest::from_bytes(file, &data)?));
    }
    if looks_like_snapshot(&data) {
        return Ok(Inspected::MetaSnapshot(Box::new(MetaSnapshot::from_bytes(
            file, &data,
        )?)));
    }
    let bad_envelope = match probe_envelope(file, &data)? {
        EnvelopeProbe::Envelope(c) => return Ok(Inspected::Checkpoint(c)),
        EnvelopeProbe::BadChecksum(e) => Some(e),
        EnvelopeProbe::NotEnvelope => None,
    };
    let guess = match scan(&data) {
        Ok(fields) => classify(&fields),
        Err(e) => {
            if let Some(e) = bad_envelope {
                return Err(e);
            }
            let (message, detail) = ("protobuf message", e.detail);
            return Err(if e.truncated {
                Error::Truncated {
                    file: file.to_owned(),
                    message,
                    offset: e.offset,
                    detail,
                }
            } else {
                Error::Unrecognized {
                    file: file.to_owned(),
                    detail: format!("{detail} at byte {}", e.offset),
                }
            });
        }
    };
    let decoded = inspect_as(file, &data, guess);
    match (decoded, bad_envelope) {
        (Ok(i), _) => Ok(i),
        (Err(_), Some(e)) => Err(e),
        (Err(e), None) => Err(e),
    }
}

fn classify(fields: &[crate::wire::RawField]) -> Kind {
    let mut version = 0;
    let mut delta = 0;
    for f in fields {
        match (f.number, f.wire_type) {
            (1, 2) => return Kind::Checkpoint,
            (2, 2) | (3, 0) | (5, _) | (7, _) | (6, 2) => version += 1,
            (2, 0) | (3, 2) | (4, _) | (6, 0) | (9..=12, _) => delta += 1,
            _ => {}
        }
    }
    if delta > version {
        Kind::Delta
    } else {
        Kind::Version
    }
}

/// Decodes `data` as the given kind.
pub fn inspect_as(file: &str, data: &Bytes, kind: Kind) -> Result<Inspected> {
    Ok(match kind {
        Kind::Checkpoint => match probe_envelope(file, data)? {
            EnvelopeProbe::Envelope(c) => Inspected::Checkpoint(c),
            EnvelopeProbe::BadChecksum(e) => return Err(e),
            EnvelopeProbe::NotEnvelope => Inspected::Checkpoint(Box::new(decode_bare(file, data)?)),
        },
        Kind::Version => Inspected::Version(Box::new(Version::from_bytes(file, data)?)),
        Kind::Delta => Inspected::Delta(Box::new(Delta::from_bytes(file, data)?)),
        Kind::MetaSnapshot => {
            Inspected::MetaSnapshot(Box::new(MetaSnapshot::from_bytes(file, data)?))
        }
        Kind::Manifest => Inspected::Manifest(Manifest::from_bytes(file, data)?),
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn enum_name(v: i32, name: Option<&str>) -> Value {
    match name {
        Some(n) => Value::String(n.to_owned()),
        None => json!(v),
    }
}

/// JSON of one SST, every field under RisingWave's name.
pub fn sst_json(s: &Sst) -> Value {
    let i = s.info();
    let key_range = s.key_range.as_ref().map(|k| {
        let k = k.msg();
        json!({"left": hex(&k.left), "right": hex(&k.right), "right_exclusive": k.right_exclusive})
    });
    let mut o = json!({
        "object_id": i.object_id,
        "sst_id": i.sst_id,
        "key_range": key_range,
        "file_size": i.file_size,
        "table_ids": i.table_ids,
        "meta_offset": i.meta_offset,
        "stale_key_count": i.stale_key_count,
        "total_key_count": i.total_key_count,
        "min_epoch": i.min_epoch,
        "max_epoch": i.max_epoch,
        "uncompressed_file_size": i.uncompressed_file_size,
        "range_tombstone_count": i.range_tombstone_count,
        "bloom_filter_kind": enum_name(i.bloom_filter_kind, pb::BloomFilterType::try_from(i.bloom_filter_kind).ok().map(|e| e.as_str_name())),
        "sst_size": i.sst_size,
        "vnode_statistics": i.vnode_statistics.as_ref().map(|b| hex(b)),
        "filter_type": i.filter_type.map(|v| enum_name(v, pb::SstableFilterType::try_from(v).ok().map(|e| e.as_str_name()))),
        "filter_layout": i.filter_layout.map(|v| enum_name(v, pb::SstableFilterLayout::try_from(v).ok().map(|e| e.as_str_name()))),
    });
    add_unknown(&mut o, s.node.unknown().len());
    o
}

fn add_unknown(o: &mut Value, n: usize) {
    if n > 0 {
        if let Some(m) = o.as_object_mut() {
            m.insert("unknown_fields".into(), json!(n));
        }
    }
}

fn level_json(l: &Level) -> Value {
    let m = l.msg();
    let mut o = json!({
        "level_idx": m.level_idx,
        "level_type": enum_name(m.level_type, pb::LevelType::try_from(m.level_type).ok().map(|e| e.as_str_name())),
        "sub_level_id": m.sub_level_id,
        "total_file_size": m.total_file_size,
        "uncompressed_file_size": m.uncompressed_file_size,
        "vnode_partition_count": m.vnode_partition_count,
        "table_infos": l.ssts.iter().map(sst_json).collect::<Vec<_>>(),
    });
    add_unknown(&mut o, l.node.unknown().len());
    o
}

fn group_json(id: u64, g: &Group) -> Value {
    let m = g.msg();
    let l0 = g.l0.as_ref().map(|l0| {
        let lm = l0.node.msg();
        json!({
            "total_file_size": lm.total_file_size,
            "uncompressed_file_size": lm.uncompressed_file_size,
            "sub_levels": l0.sub_levels.iter().map(level_json).collect::<Vec<_>>(),
        })
    });
    let mut o = json!({
        "group_id": id,
        "levels_group_id": m.group_id,
        "parent_group_id": m.parent_group_id,
        "member_table_ids": m.member_table_ids,
        "compaction_group_version_id": m.compaction_group_version_id,
        "l0": l0,
        "levels": g.levels.iter().map(level_json).collect::<Vec<_>>(),
    });
    add_unknown(&mut o, g.node.unknown().len());
    o
}

fn version_fields(v: &Version, out: &mut Map<String, Value>) {
    let m = v.node.msg();
    out.insert("version_id".into(), json!(v.id()));
    out.insert("max_committed_epoch".into(), json!(v.max_committed_epoch()));
    out.insert(
        "groups".into(),
        Value::Array(v.groups.iter().map(|(k, g)| group_json(*k, g)).collect()),
    );
    out.insert("object_ids".into(), json!(v.object_ids()));
    out.insert(
        "state_table_info".into(),
        Value::Object(
            v.state_table_info
                .iter()
                .map(|(t, i)| {
                    (
                        t.to_string(),
                        json!({"committed_epoch": i.msg().committed_epoch,
                               "compaction_group_id": i.msg().compaction_group_id}),
                    )
                })
                .collect(),
        ),
    );
    out.insert(
        "opaque".into(),
        json!({
            "table_watermarks": m.table_watermarks.keys().collect::<Vec<_>>(),
            "table_change_logs": m.table_change_logs.keys().collect::<Vec<_>>(),
            "vector_indexes": m.vector_indexes.keys().collect::<Vec<_>>(),
        }),
    );
    if !v.node.unknown().is_empty() {
        out.insert("unknown_fields".into(), json!(v.node.unknown().len()));
    }
}

fn group_delta_json(d: &GroupDelta) -> Value {
    let mut o = match &d.kind {
        GroupDeltaKind::IntraLevel { node, inserted } => {
            let m = node.msg();
            json!({"level_idx": m.level_idx, "l0_sub_level_id": m.l0_sub_level_id,
                   "removed_table_ids": m.removed_table_ids,
                   "inserted_table_infos": inserted.iter().map(sst_json).collect::<Vec<_>>(),
                   "vnode_partition_count": m.vnode_partition_count,
                   "compaction_group_version_id": m.compaction_group_version_id})
        }
        GroupDeltaKind::GroupConstruct { node, config } => {
            let m = node.msg();
            json!({"parent_group_id": m.parent_group_id, "table_ids": m.table_ids,
                   "group_id": m.group_id, "new_sst_start_id": m.new_sst_start_id,
                   "version": enum_name(m.version, pb::CompatibilityVersion::try_from(m.version).ok().map(|e| e.as_str_name())),
                   "split_key": m.split_key.as_ref().map(|k| hex(k)),
                   "max_level": config.as_ref().map(|c| c.msg().max_level)})
        }
        GroupDeltaKind::GroupDestroy(_) | GroupDeltaKind::Unset => json!({}),
        GroupDeltaKind::GroupMerge(n) => {
            json!({"left_group_id": n.msg().left_group_id, "right_group_id": n.msg().right_group_id})
        }
        GroupDeltaKind::NewL0SubLevel { inserted, .. } => {
            json!({"inserted_table_infos": inserted.iter().map(sst_json).collect::<Vec<_>>()})
        }
        GroupDeltaKind::TruncateTables(n) => json!({"table_ids": n.msg().table_ids}),
    };
    if let Some(m) = o.as_object_mut() {
        m.insert("type".into(), json!(d.variant()));
    }
    o
}

impl Inspected {
    pub fn kind(&self) -> &'static str {
        match self {
            Inspected::Checkpoint(_) => "checkpoint",
            Inspected::Version(_) => "version",
            Inspected::Delta(_) => "version_delta",
            Inspected::MetaSnapshot(_) => "meta_snapshot",
            Inspected::Manifest(_) => "manifest",
        }
    }

    /// The Hummock version the object holds, if it holds one.
    pub fn version(&self) -> Option<&Version> {
        match self {
            Inspected::Checkpoint(c) => Some(&c.version),
            Inspected::Version(v) => Some(v),
            Inspected::MetaSnapshot(s) => Some(&s.version),
            Inspected::Delta(_) | Inspected::Manifest(_) => None,
        }
    }

    /// JSON rendering: `kind`, `version_id`, `max_committed_epoch`, `groups` (levels and
    /// SSTs), `object_ids` (sorted), plus what is particular to the kind.
    pub fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert("kind".into(), json!(self.kind()));
        match self {
            Inspected::Version(v) => version_fields(v, &mut o),
            Inspected::Checkpoint(c) => {
                version_fields(&c.version, &mut o);
                o.insert(
                    "envelope".into(),
                    match &c.envelope {
                        Some(e) => json!({"compression": e.compression.name(),
                                          "checksum": format!("{:#018x}", e.checksum),
                                          "payload_offset": e.payload_offset}),
                        None => Value::Null,
                    },
                );
                o.insert(
                    "stale_objects".into(),
                    Value::Object(
                        c.stale_objects
                            .iter()
                            .map(|(k, n)| {
                                (k.to_string(), json!({"id": n.msg().id, "total_file_size": n.msg().total_file_size}))
                            })
                            .collect(),
                    ),
                );
            }
            Inspected::MetaSnapshot(s) => {
                version_fields(&s.version, &mut o);
                o.insert("snapshot_id".into(), json!(s.id));
                o.insert("format_version".into(), json!(s.format_version));
                o.insert("sections".into(), json!(s.sections));
                o.insert("checksum".into(), json!(format!("{:#018x}", s.checksum)));
                o.insert("omitted_from_json".into(), json!(s.omitted_from_json));
            }
            Inspected::Delta(d) => {
                let m = d.node.msg();
                o.insert("version_id".into(), json!(m.id));
                o.insert("prev_id".into(), json!(m.prev_id));
                o.insert("max_committed_epoch".into(), json!(m.max_committed_epoch));
                o.insert("trivial_move".into(), json!(m.trivial_move));
                o.insert("removed_table_ids".into(), json!(m.removed_table_ids));
                o.insert("groups".into(), json!([]));
                o.insert(
                    "group_deltas".into(),
                    Value::Object(
                        d.group_deltas
                            .iter()
                            .map(|(g, ds)| {
                                (
                                    g.to_string(),
                                    Value::Array(ds.deltas.iter().map(group_delta_json).collect()),
                                )
                            })
                            .collect(),
                    ),
                );
                o.insert(
                    "state_table_info_delta".into(),
                    Value::Object(
                        d.state_table_info_delta
                            .iter()
                            .map(|(t, i)| {
                                (t.to_string(), json!({"committed_epoch": i.msg().committed_epoch,
                                                       "compaction_group_id": i.msg().compaction_group_id}))
                            })
                            .collect(),
                    ),
                );
                let mut ids: Vec<u64> = d.inserted_ssts().map(Sst::object_id).collect();
                ids.sort_unstable();
                ids.dedup();
                o.insert("object_ids".into(), json!(ids));
            }
            Inspected::Manifest(m) => {
                let latest = m.snapshot_metadata.iter().max_by_key(|s| s.id);
                o.insert(
                    "version_id".into(),
                    json!(latest.map(|s| s.hummock_version_id)),
                );
                o.insert(
                    "max_committed_epoch".into(),
                    json!(latest.and_then(|s| s
                        .state_table_info
                        .values()
                        .map(|i| i.committed_epoch)
                        .max())),
                );
                o.insert("groups".into(), json!([]));
                o.insert("manifest_id".into(), json!(m.manifest_id));
                o.insert(
                    "snapshots".into(),
                    Value::Array(
                        m.snapshot_metadata
                            .iter()
                            .map(|s| {
                                json!({"id": s.id, "hummock_version_id": s.hummock_version_id,
                                       "format_version": s.format_version, "remarks": s.remarks,
                                       "rw_version": s.rw_version, "object_count": s.objects.len()})
                            })
                            .collect(),
                    ),
                );
                let mut ids: Vec<u64> = m
                    .snapshot_metadata
                    .iter()
                    .flat_map(|s| s.objects.iter().copied())
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                o.insert("object_ids".into(), json!(ids));
            }
        }
        Value::Object(o)
    }
}
