//! Golden vectors written by scripts/gen-rw-vectors (Python protobuf over RisingWave's own
//! .proto files): decode and re-encode, apply, checkpoints, meta backups, errors.
use std::path::PathBuf;

use bytes::Bytes;
use metapitr_rw::apply::apply;
use metapitr_rw::model::{Level, Sst, Tree};
use metapitr_rw::{inspect_named, Checkpoint, Delta, Error, Inspected, Version};
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/rw")
}

fn read(name: &str) -> Bytes {
    Bytes::from(std::fs::read(dir().join(name)).unwrap())
}

fn json(name: &str) -> Value {
    serde_json::from_slice(&read(name)).unwrap()
}

fn version(name: &str) -> Version {
    Version::from_bytes(name, &read(name)).unwrap()
}

fn deltas() -> Vec<Delta> {
    (11..=18)
        .map(|i| {
            let n = format!("delta_{i}.bin");
            Delta::from_bytes(&n, &read(&n)).unwrap()
        })
        .collect()
}

const PROTOBUF_FILES: &[&str] = &[
    "version_10.bin",
    "version_10_unknown.bin",
    "delta_11.bin",
    "delta_12.bin",
    "delta_13.bin",
    "delta_14.bin",
    "delta_15.bin",
    "delta_16.bin",
    "delta_17.bin",
    "delta_18.bin",
];

#[test]
fn every_vector_is_recognised_as_its_kind() {
    let expect = [
        ("version_10.bin", "version"),
        ("version_10_unknown.bin", "version"),
        ("checkpoint_zstd.bin", "checkpoint"),
        ("checkpoint_lz4.bin", "checkpoint"),
        ("checkpoint_none.bin", "checkpoint"),
        ("checkpoint_legacy.bin", "checkpoint"),
        ("snapshot_7.snapshot", "meta_snapshot"),
        ("snapshot_3_v1.snapshot", "meta_snapshot"),
        ("manifest.json", "manifest"),
    ];
    for (f, kind) in expect {
        let i = inspect_named(f, &read(f)).unwrap();
        assert_eq!(i.kind(), kind, "{f}");
    }
    for i in 11..=18 {
        let f = format!("delta_{i}.bin");
        let got = inspect_named(&f, &read(&f)).unwrap();
        assert_eq!(got.kind(), "version_delta", "{f}");
        assert_eq!(got.to_json()["version_id"], i);
    }
}

#[test]
fn decode_then_encode_is_byte_identical() {
    for f in PROTOBUF_FILES {
        let bytes = read(f);
        if f.starts_with("version") {
            let v = Version::from_bytes(f, &bytes).unwrap();
            assert_eq!(v.to_bytes(false), bytes, "{f}: original bytes");
            // A fresh encoding (prost for the modelled fields, unknown ones merged back in)
            // of a canonically serialised message gives the same bytes, except for the
            // order of map entries (the vectors' encoder writes keys descending; a fresh
            // encoding writes them ascending). So: every group byte for byte, and the
            // whole version the same once decoded.
            for (id, g) in &v.groups {
                assert_eq!(
                    Some(&g.to_bytes(true)),
                    v.node.msg().levels.get(id),
                    "{f}: group {id}"
                );
            }
            let fresh = v.to_bytes(true);
            assert_eq!(fresh.len(), bytes.len(), "{f}");
            let again = Version::from_bytes(f, &fresh).unwrap();
            assert_eq!(summary(&again), summary(&v), "{f}");
            assert_eq!(again.node.unknown(), v.node.unknown(), "{f}");
            assert_eq!(again.to_bytes(true), fresh, "{f}: fresh encoding is stable");
        } else {
            let d = Delta::from_bytes(f, &bytes).unwrap();
            assert_eq!(d.to_bytes(false), bytes, "{f}: original bytes");
            for (id, g) in &d.group_deltas {
                assert_eq!(
                    Some(&g.to_bytes(true)),
                    d.node.msg().group_deltas.get(id),
                    "{f}: group {id}"
                );
            }
            let fresh = d.to_bytes(true);
            assert_eq!(fresh.len(), bytes.len(), "{f}");
            assert_eq!(
                Delta::from_bytes(f, &fresh).unwrap().to_bytes(true),
                fresh,
                "{f}"
            );
        }
    }
    for f in [
        "checkpoint_zstd.bin",
        "checkpoint_lz4.bin",
        "checkpoint_none.bin",
        "checkpoint_legacy.bin",
    ] {
        let bytes = read(f);
        let c = Checkpoint::from_bytes(f, &bytes).unwrap();
        assert_eq!(c.encode().unwrap(), bytes, "{f}");
        assert_eq!(
            c.inner_bytes(false),
            read("checkpoint_legacy.bin"),
            "{f}: inner"
        );
        assert_eq!(c.version.encode(), read("version_10.bin"), "{f}: version");
    }
}

#[test]
fn checkpoint_envelopes_carry_compression_and_stale_objects() {
    for (f, algo) in [
        ("checkpoint_zstd.bin", "zstd"),
        ("checkpoint_lz4.bin", "lz4"),
        ("checkpoint_none.bin", "none"),
    ] {
        let i = inspect_named(f, &read(f)).unwrap();
        let j = i.to_json();
        assert_eq!(j["envelope"]["compression"], algo);
        assert_eq!(
            j["stale_objects"]["9"]["id"],
            serde_json::json!([31, 32, 33])
        );
        assert_eq!(j["stale_objects"]["9"]["total_file_size"], 12345);
    }
    let j = inspect_named("legacy", &read("checkpoint_legacy.bin"))
        .unwrap()
        .to_json();
    assert_eq!(j["envelope"], Value::Null);
}

#[test]
fn a_changed_checkpoint_is_compressed_and_checksummed_again() {
    let bytes = read("checkpoint_zstd.bin");
    let mut c = Checkpoint::from_bytes("ck", &bytes).unwrap();
    c.version.node.msg_mut().id = 99;
    let out = c.encode().unwrap();
    assert_ne!(out, bytes);
    let back = Checkpoint::from_bytes("ck2", &out).unwrap();
    assert_eq!(back.version.id(), 99);
    assert_eq!(back.version.object_ids(), c.version.object_ids());
}

fn sst_row(s: &Sst) -> Value {
    serde_json::json!([s.sst_id(), s.object_id(), s.table_ids()])
}

fn level_summary(l: &Level, l0: bool) -> Value {
    let m = l.msg();
    let mut o = serde_json::json!({
        "level_type": m.level_type,
        "total_file_size": m.total_file_size,
        "vnode_partition_count": m.vnode_partition_count,
        "ssts": l.ssts.iter().map(sst_row).collect::<Vec<_>>(),
    });
    let map = o.as_object_mut().unwrap();
    if l0 {
        map.insert("sub_level_id".into(), m.sub_level_id.into());
    } else {
        map.insert("level_idx".into(), m.level_idx.into());
        map.insert(
            "uncompressed_file_size".into(),
            m.uncompressed_file_size.into(),
        );
    }
    o
}

fn summary(v: &Version) -> Value {
    let groups: serde_json::Map<String, Value> = v
        .groups
        .iter()
        .map(|(id, g)| {
            let l0 = g.l0.as_ref().unwrap();
            (
                id.to_string(),
                serde_json::json!({
                    "compaction_group_version_id": g.msg().compaction_group_version_id,
                    "l0_total_file_size": l0.node.msg().total_file_size,
                    "l0_uncompressed_file_size": l0.node.msg().uncompressed_file_size,
                    "l0": l0.sub_levels.iter().map(|l| level_summary(l, true)).collect::<Vec<_>>(),
                    "levels": g.levels.iter().map(|l| level_summary(l, false)).collect::<Vec<_>>(),
                }),
            )
        })
        .collect();
    serde_json::json!({
        "version_id": v.id(),
        "object_ids": v.object_ids(),
        "groups": groups,
        "state_table_info": v.state_table_info.iter().map(|(t, i)| {
            (t.to_string(), serde_json::json!([i.msg().committed_epoch, i.msg().compaction_group_id]))
        }).collect::<serde_json::Map<_, _>>(),
    })
}

#[test]
fn apply_gives_the_expected_levels_and_objects() {
    let expected = json("expected_apply.json");
    let base = version("version_10.bin");
    assert_eq!(summary(&base), expected["base"]);
    let deltas = deltas();
    let mut v = base;
    for (d, want) in deltas.iter().zip(expected["steps"].as_array().unwrap()) {
        v = apply(&v, [d]).unwrap();
        assert_eq!(summary(&v), *want, "after delta {}", d.id());
        // The applied version encodes and decodes to the same thing.
        let again = Version::from_bytes("applied", &v.encode()).unwrap();
        assert_eq!(summary(&again), *want);
        assert_eq!(again.to_bytes(true), v.encode());
    }
    // All at once gives the same.
    let all = apply(&version("version_10.bin"), deltas.iter()).unwrap();
    assert_eq!(all.encode(), v.encode());
}

#[test]
fn apply_refuses_a_delta_out_of_order() {
    let v = version("version_10.bin");
    let d = deltas();
    match apply(&v, [&d[1]]) {
        Err(Error::PrevIdMismatch {
            delta_id: 12,
            prev_id: 11,
            version_id: 10,
        }) => {}
        other => panic!("expected PrevIdMismatch, got {other:?}"),
    }
    let e = apply(&v, [&d[0], &d[2], &d[1]]).unwrap_err();
    assert!(
        e.to_string()
            .contains("delta 13 follows version 12, but the version is 11"),
        "{e}"
    );
}

#[test]
fn unknown_fields_survive_decode_change_and_apply() {
    let bytes = read("version_10_unknown.bin");
    let v = Version::from_bytes("u", &bytes).unwrap();
    assert_eq!(v.encode(), bytes);
    assert_eq!(v.node.unknown().len(), 1);
    let l2 = &v.groups[&2].levels[1];
    assert_eq!(l2.node.unknown().len(), 1);
    let sst = &v.groups[&2].levels[0].ssts[1];
    assert_eq!(sst.node.unknown().len(), 1);
    assert_eq!(&sst.node.unknown()[0][..], &[0x98, 0x06, 0x2a]);

    // Change the SST: it is encoded anew, with field 99 merged back in.
    let mut changed = v.clone();
    changed.groups.get_mut(&2).unwrap().levels[0].ssts[1]
        .node
        .msg_mut()
        .sst_size = 77;
    let out = changed.encode();
    assert_ne!(out, bytes);
    let back = Version::from_bytes("u2", &out).unwrap();
    let s = &back.groups[&2].levels[0].ssts[1];
    assert_eq!(s.info().sst_size, 77);
    assert_eq!(&s.node.unknown()[0][..], &[0x98, 0x06, 0x2a]);

    // Through the whole delta chain: the root's field 20 and L2's field 50 (that level is
    // split and re-encoded on the way) are still there.
    let applied = apply(&v, deltas().iter()).unwrap();
    assert!(
        applied.groups[&2].levels[1].node.original().is_none(),
        "L2 was changed"
    );
    let back = Version::from_bytes("u3", &applied.encode()).unwrap();
    assert_eq!(&back.node.unknown()[0][..], &[0xa0, 0x01, 0x07]);
    let l2 = &back.groups[&2].levels[1];
    assert_eq!(&l2.node.unknown()[0][..], b"\x92\x03\x03abc");
    // After two deltas the SST with field 99 is untouched: its bytes are the original ones.
    let early = apply(&v, deltas()[..2].iter()).unwrap();
    let s = &early.groups[&2].levels[0].ssts[1];
    assert_eq!(s.to_bytes(false), sst.to_bytes(false));
}

#[test]
fn meta_snapshots_yield_the_version() {
    let facts = json("facts.json");
    let base = version("version_10.bin");
    let Inspected::MetaSnapshot(s) =
        inspect_named("7.snapshot", &read("snapshot_7.snapshot")).unwrap()
    else {
        panic!("not a snapshot")
    };
    assert_eq!((s.format_version, s.id, s.sections), (2, 7, 5));
    assert_eq!(s.checksum, facts["snapshot_7_checksum"].as_u64().unwrap());
    assert_eq!(s.omitted_from_json, vec!["table_watermarks".to_string()]);
    // The version read from JSON matches the protobuf one in everything but watermarks.
    assert_eq!(summary(&s.version), summary(&base));
    let j = inspect_named("7.snapshot", &read("snapshot_7.snapshot"))
        .unwrap()
        .to_json();
    let b = inspect_named("v", &read("version_10.bin"))
        .unwrap()
        .to_json();
    assert_eq!(j["groups"], b["groups"]);

    let Inspected::MetaSnapshot(s1) =
        inspect_named("3.snapshot", &read("snapshot_3_v1.snapshot")).unwrap()
    else {
        panic!("not a snapshot")
    };
    assert_eq!((s1.format_version, s1.id), (1, 3));
    assert_eq!(s1.version.encode(), read("version_10.bin"));
}

#[test]
fn manifest_lists_snapshots_and_objects() {
    let facts = json("facts.json");
    let j = inspect_named("manifest.json", &read("manifest.json"))
        .unwrap()
        .to_json();
    assert_eq!(j["kind"], "manifest");
    assert_eq!(j["manifest_id"], 2);
    assert_eq!(j["version_id"], 10);
    assert_eq!(j["object_ids"], facts["version_10_object_ids"]);
    assert_eq!(j["snapshots"][1]["remarks"], "nightly");
    assert_eq!(
        j["max_committed_epoch"],
        facts["version_10_max_committed_epoch"]
    );
}

#[test]
fn version_json_has_every_sst_field_and_sorted_object_ids() {
    let facts = json("facts.json");
    let j = inspect_named("v", &read("version_10.bin"))
        .unwrap()
        .to_json();
    assert_eq!(j["kind"], "version");
    assert_eq!(j["version_id"], 10);
    assert_eq!(
        j["max_committed_epoch"],
        facts["version_10_max_committed_epoch"]
    );
    assert_eq!(j["object_ids"], facts["version_10_object_ids"]);
    let g2 = &j["groups"][0];
    assert_eq!(g2["group_id"], 2);
    let sst = &g2["l0"]["sub_levels"][0]["table_infos"][0];
    for k in [
        "object_id",
        "sst_id",
        "key_range",
        "file_size",
        "table_ids",
        "meta_offset",
        "stale_key_count",
        "total_key_count",
        "min_epoch",
        "max_epoch",
        "uncompressed_file_size",
        "range_tombstone_count",
        "bloom_filter_kind",
        "sst_size",
        "vnode_statistics",
        "filter_type",
        "filter_layout",
    ] {
        assert!(sst.get(k).is_some(), "missing {k}");
    }
    assert_eq!(sst["filter_type"], "SSTABLE_FILTER_XOR16");
    assert_eq!(sst["table_ids"], serde_json::json!([100, 101, 102]));
    assert!(sst["vnode_statistics"].is_string());
    let legacy = &g2["l0"]["sub_levels"][1]["table_infos"][0];
    assert_eq!(legacy["bloom_filter_kind"], "SSTABLE");
    assert_eq!(legacy["filter_type"], Value::Null);
    assert_eq!(j["opaque"]["table_watermarks"], serde_json::json!([100]));
}

#[test]
fn a_bad_checksum_names_the_file_and_offset() {
    let mut b = read("checkpoint_zstd.bin").to_vec();
    let n = b.len();
    b[n / 2] ^= 0x55; // inside the payload
    match inspect_named("hummock_001/checkpoint/0", &b) {
        Err(e @ Error::Checksum { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with("hummock_001/checkpoint/0: checksum at byte "),
                "{msg}"
            );
            let Error::Checksum {
                offset, covered, ..
            } = e
            else {
                unreachable!()
            };
            // The checksum is the last field: 8 bytes of value... a varint, at the tail.
            assert!(offset > covered.end && offset < n, "{offset} {covered:?}");
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }

    let mut s = read("snapshot_7.snapshot").to_vec();
    s[40] ^= 1;
    match inspect_named("backup/7.snapshot", &s) {
        Err(Error::Checksum {
            file,
            offset,
            covered,
            ..
        }) => {
            assert_eq!(file, "backup/7.snapshot");
            assert_eq!(offset, s.len() - 8);
            assert_eq!(covered, 0..s.len() - 8);
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
}

#[test]
fn truncated_objects_are_clear_errors() {
    let s = read("snapshot_7.snapshot");
    let e = inspect_named("7.snapshot", &s[..s.len() - 3]).unwrap_err();
    assert!(!e.to_string().is_empty());
    let v = read("version_10.bin");
    let e = inspect_named("v", &v[..v.len() / 2]).unwrap_err();
    assert!(matches!(e, Error::Truncated { .. }), "{e}");
    assert!(e.to_string().contains("cut short"), "{e}");
    let e = inspect_named("empty", b"").unwrap_err();
    assert!(matches!(e, Error::Unrecognized { .. }));
}

#[test]
fn sst_paths_match_the_independent_ones() {
    let facts = json("facts.json");
    for (id, path) in facts["hashed_paths"].as_object().unwrap() {
        let id: u64 = id.parse().unwrap();
        assert_eq!(
            metapitr_rw::paths::s3_sst_path("hummock_001", id),
            format!("hummock_001/{}", path.as_str().unwrap())
        );
    }
}
