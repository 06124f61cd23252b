//! A `HummockVersion` in protobuf's JSON mapping (as a format-2 meta snapshot stores it)
//! turned into protobuf bytes of `proto/rw_hummock.proto`, so that one decoder reads both.
//!
//! Field names are accepted in lowerCamelCase (what the mapping writes) and snake_case;
//! 64-bit integers as strings or numbers; enums by name or number; bytes as base64.
//! Table watermarks, table change logs and vector indexes are not carried over: their
//! names are returned so the caller can report them.
use std::collections::BTreeMap;

use bytes::Bytes;
use prost::Message;
use serde_json::{Map, Value};

use crate::pb;
use crate::wire::put_varint;

type R<T> = std::result::Result<T, String>;

fn field<'a>(o: &'a Map<String, Value>, camel: &str, snake: &str) -> Option<&'a Value> {
    o.get(camel)
        .or_else(|| o.get(snake))
        .filter(|v| !v.is_null())
}

fn obj<'a>(v: &'a Value, what: &str) -> R<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| format!("{what} is not a JSON object"))
}

fn uint(v: &Value, what: &str) -> R<u64> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("{what}: {n} is not a u64")),
        Value::String(s) => s.parse().map_err(|_| format!("{what}: {s:?} is not a u64")),
        _ => Err(format!("{what} is not a number")),
    }
}

fn u64_of(o: &Map<String, Value>, camel: &str, snake: &str) -> R<u64> {
    field(o, camel, snake).map_or(Ok(0), |v| uint(v, snake))
}

fn u32_of(o: &Map<String, Value>, camel: &str, snake: &str) -> R<u32> {
    let v = u64_of(o, camel, snake)?;
    u32::try_from(v).map_err(|_| format!("{snake}: {v} does not fit u32"))
}

fn bool_of(o: &Map<String, Value>, camel: &str, snake: &str) -> R<bool> {
    match field(o, camel, snake) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("{snake} is not a boolean")),
    }
}

fn enum_of(o: &Map<String, Value>, camel: &str, snake: &str, names: &[&str]) -> R<Option<i32>> {
    match field(o, camel, snake) {
        None => Ok(None),
        Some(Value::String(s)) => names
            .iter()
            .position(|n| n == s)
            .map(|i| Some(i as i32))
            .ok_or_else(|| format!("{snake}: unknown value {s:?}")),
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|x| i32::try_from(x).ok())
            .map(Some)
            .ok_or_else(|| format!("{snake}: {n} is not an enum number")),
        Some(_) => Err(format!("{snake} is not an enum value")),
    }
}

fn list<'a>(o: &'a Map<String, Value>, camel: &str, snake: &str) -> R<&'a [Value]> {
    match field(o, camel, snake) {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(format!("{snake} is not a list")),
    }
}

fn u32_list(o: &Map<String, Value>, camel: &str, snake: &str) -> R<Vec<u32>> {
    list(o, camel, snake)?
        .iter()
        .map(|v| {
            let x = uint(v, snake)?;
            u32::try_from(x).map_err(|_| format!("{snake}: {x} does not fit u32"))
        })
        .collect()
}

/// Standard or URL-safe base64, padded or not.
fn base64(s: &str, what: &str) -> R<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => return Err(format!("{what}: invalid base64")),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

fn bytes_of(o: &Map<String, Value>, camel: &str, snake: &str) -> R<Option<Bytes>> {
    match field(o, camel, snake) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(Bytes::from(base64(s, snake)?))),
        Some(_) => Err(format!("{snake} is not a base64 string")),
    }
}

const LEVEL_TYPES: &[&str] = &[
    "LEVEL_TYPE_UNSPECIFIED",
    "LEVEL_TYPE_NONOVERLAPPING",
    "LEVEL_TYPE_OVERLAPPING",
];
const BLOOM: &[&str] = &["BLOOM_FILTER_UNSPECIFIED", "SSTABLE", "BLOCKED"];
const FILTER_TYPES: &[&str] = &[
    "SSTABLE_FILTER_UNSPECIFIED",
    "SSTABLE_FILTER_NONE",
    "SSTABLE_FILTER_XOR8",
    "SSTABLE_FILTER_XOR16",
];
const FILTER_LAYOUTS: &[&str] = &[
    "SSTABLE_FILTER_LAYOUT_UNSPECIFIED",
    "SSTABLE_FILTER_LAYOUT_AUTO",
    "SSTABLE_FILTER_LAYOUT_PLAIN",
    "SSTABLE_FILTER_LAYOUT_BLOCKED",
];

/// VnodeStatistics { map<uint32, VnodeUserKeyRange{bytes min_key = 1; bytes max_key = 2}> = 1 }
fn vnode_statistics(v: &Value) -> R<Bytes> {
    let o = obj(v, "vnode_statistics")?;
    let mut out = Vec::new();
    if let Some(m) = field(o, "vnodeUserKeyRanges", "vnode_user_key_ranges") {
        let mut entries = BTreeMap::new();
        for (k, r) in obj(m, "vnode_user_key_ranges")? {
            let vnode: u32 = k
                .parse()
                .map_err(|_| format!("vnode key {k:?} is not a number"))?;
            let ro = obj(r, "vnode user key range")?;
            let mut range = Vec::new();
            for (num, camel, snake) in [(1u64, "minKey", "min_key"), (2, "maxKey", "max_key")] {
                if let Some(b) = bytes_of(ro, camel, snake)? {
                    if !b.is_empty() {
                        put_varint(&mut range, (num << 3) | 2);
                        put_varint(&mut range, b.len() as u64);
                        range.extend_from_slice(&b);
                    }
                }
            }
            entries.insert(vnode, range);
        }
        for (vnode, range) in entries {
            let mut entry = Vec::new();
            if vnode != 0 {
                put_varint(&mut entry, 1 << 3);
                put_varint(&mut entry, u64::from(vnode));
            }
            put_varint(&mut entry, (2 << 3) | 2);
            put_varint(&mut entry, range.len() as u64);
            entry.extend_from_slice(&range);
            put_varint(&mut out, (1 << 3) | 2);
            put_varint(&mut out, entry.len() as u64);
            out.extend_from_slice(&entry);
        }
    }
    Ok(Bytes::from(out))
}

fn sst(v: &Value) -> R<Bytes> {
    let o = obj(v, "SstableInfo")?;
    let key_range = match field(o, "keyRange", "key_range") {
        None => None,
        Some(k) => {
            let ko = obj(k, "key_range")?;
            Some(Bytes::from(
                pb::KeyRange {
                    left: bytes_of(ko, "left", "left")?.unwrap_or_default(),
                    right: bytes_of(ko, "right", "right")?.unwrap_or_default(),
                    right_exclusive: bool_of(ko, "rightExclusive", "right_exclusive")?,
                }
                .encode_to_vec(),
            ))
        }
    };
    let vnode_statistics = match field(o, "vnodeStatistics", "vnode_statistics") {
        None => None,
        Some(v) => Some(vnode_statistics(v)?),
    };
    let info = pb::SstableInfo {
        object_id: u64_of(o, "objectId", "object_id")?,
        sst_id: u64_of(o, "sstId", "sst_id")?,
        key_range,
        file_size: u64_of(o, "fileSize", "file_size")?,
        table_ids: u32_list(o, "tableIds", "table_ids")?,
        meta_offset: u64_of(o, "metaOffset", "meta_offset")?,
        stale_key_count: u64_of(o, "staleKeyCount", "stale_key_count")?,
        total_key_count: u64_of(o, "totalKeyCount", "total_key_count")?,
        min_epoch: u64_of(o, "minEpoch", "min_epoch")?,
        max_epoch: u64_of(o, "maxEpoch", "max_epoch")?,
        uncompressed_file_size: u64_of(o, "uncompressedFileSize", "uncompressed_file_size")?,
        range_tombstone_count: u64_of(o, "rangeTombstoneCount", "range_tombstone_count")?,
        bloom_filter_kind: enum_of(o, "bloomFilterKind", "bloom_filter_kind", BLOOM)?.unwrap_or(0),
        sst_size: u64_of(o, "sstSize", "sst_size")?,
        vnode_statistics,
        filter_type: enum_of(o, "filterType", "filter_type", FILTER_TYPES)?,
        filter_layout: enum_of(o, "filterLayout", "filter_layout", FILTER_LAYOUTS)?,
    };
    Ok(Bytes::from(info.encode_to_vec()))
}

fn level(v: &Value) -> R<Bytes> {
    let o = obj(v, "Level")?;
    let l = pb::Level {
        level_idx: u32_of(o, "levelIdx", "level_idx")?,
        level_type: enum_of(o, "levelType", "level_type", LEVEL_TYPES)?.unwrap_or(0),
        table_infos: list(o, "tableInfos", "table_infos")?
            .iter()
            .map(sst)
            .collect::<R<_>>()?,
        total_file_size: u64_of(o, "totalFileSize", "total_file_size")?,
        sub_level_id: u64_of(o, "subLevelId", "sub_level_id")?,
        uncompressed_file_size: u64_of(o, "uncompressedFileSize", "uncompressed_file_size")?,
        vnode_partition_count: u32_of(o, "vnodePartitionCount", "vnode_partition_count")?,
    };
    Ok(Bytes::from(l.encode_to_vec()))
}

fn levels(v: &Value) -> R<Bytes> {
    let o = obj(v, "Levels")?;
    let l0 = match field(o, "l0", "l0") {
        None => None,
        Some(l0) => {
            let lo = obj(l0, "l0")?;
            Some(Bytes::from(
                pb::OverlappingLevel {
                    sub_levels: list(lo, "subLevels", "sub_levels")?
                        .iter()
                        .map(level)
                        .collect::<R<_>>()?,
                    total_file_size: u64_of(lo, "totalFileSize", "total_file_size")?,
                    uncompressed_file_size: u64_of(
                        lo,
                        "uncompressedFileSize",
                        "uncompressed_file_size",
                    )?,
                }
                .encode_to_vec(),
            ))
        }
    };
    let l = pb::Levels {
        levels: list(o, "levels", "levels")?
            .iter()
            .map(level)
            .collect::<R<_>>()?,
        l0,
        group_id: u64_of(o, "groupId", "group_id")?,
        parent_group_id: u64_of(o, "parentGroupId", "parent_group_id")?,
        member_table_ids: u32_list(o, "memberTableIds", "member_table_ids")?,
        compaction_group_version_id: u64_of(
            o,
            "compactionGroupVersionId",
            "compaction_group_version_id",
        )?,
    };
    Ok(Bytes::from(l.encode_to_vec()))
}

fn key_u64(k: &str) -> R<u64> {
    k.parse()
        .map_err(|_| format!("map key {k:?} is not a number"))
}

/// Protobuf bytes of the version, and the names of the fields not carried over.
pub fn version_from_json(v: &Value) -> R<(Vec<u8>, Vec<String>)> {
    let o = obj(v, "HummockVersion")?;
    let mut groups = BTreeMap::new();
    if let Some(m) = field(o, "levels", "levels") {
        for (k, l) in obj(m, "levels")? {
            groups.insert(key_u64(k)?, levels(l)?);
        }
    }
    let mut state_table_info = BTreeMap::new();
    if let Some(m) = field(o, "stateTableInfo", "state_table_info") {
        for (k, i) in obj(m, "state_table_info")? {
            let io = obj(i, "StateTableInfo")?;
            let t =
                u32::try_from(key_u64(k)?).map_err(|_| format!("table id {k} does not fit u32"))?;
            state_table_info.insert(
                t,
                Bytes::from(
                    pb::StateTableInfo {
                        committed_epoch: u64_of(io, "committedEpoch", "committed_epoch")?,
                        compaction_group_id: u64_of(
                            io,
                            "compactionGroupId",
                            "compaction_group_id",
                        )?,
                    }
                    .encode_to_vec(),
                ),
            );
        }
    }
    let mut omitted = Vec::new();
    for (camel, snake) in [
        ("tableWatermarks", "table_watermarks"),
        ("tableChangeLogs", "table_change_logs"),
        ("vectorIndexes", "vector_indexes"),
    ] {
        if field(o, camel, snake).is_some_and(|x| x.as_object().is_none_or(|m| !m.is_empty())) {
            omitted.push(snake.to_owned());
        }
    }
    let version = pb::HummockVersion {
        id: u64_of(o, "id", "id")?,
        levels: groups,
        max_committed_epoch: u64_of(o, "maxCommittedEpoch", "max_committed_epoch")?,
        state_table_info,
        ..Default::default()
    };
    Ok((version.encode_to_vec(), omitted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_variants() {
        assert_eq!(base64("AQID", "x").unwrap(), vec![1, 2, 3]);
        assert_eq!(base64("AQIDBA==", "x").unwrap(), vec![1, 2, 3, 4]);
        assert_eq!(base64("AQIDBA", "x").unwrap(), vec![1, 2, 3, 4]);
        assert_eq!(base64("_-8", "x").unwrap(), vec![0xff, 0xef]);
        assert!(base64("A*", "x").is_err());
    }
}
