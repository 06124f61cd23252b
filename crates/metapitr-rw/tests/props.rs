//! Property tests: no input makes `inspect` panic, and applying random delta chains keeps
//! the object-id set that an incremental model of the same chain predicts.
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use bytes::Bytes;
use metapitr_rw::apply::apply;
use metapitr_rw::pb;
use metapitr_rw::{inspect, Delta, Tree, Version};
use proptest::prelude::*;
use prost::Message;

fn vectors() -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/rw");
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x == "bin" || x == "snapshot" || x == "json")
        })
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    out.sort();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn inspect_survives_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..3000)) {
        let _ = inspect(&data);
    }

    #[test]
    fn inspect_survives_cut_and_damaged_vectors(pick in any::<prop::sample::Index>(),
                                                cut in any::<prop::sample::Index>(),
                                                flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..4)) {
        let all = vectors();
        let v = &all[pick.index(all.len())];
        let n = cut.index(v.len() + 1);
        let _ = inspect(&v[..n]);
        let mut d = v.clone();
        for (at, x) in flips {
            let i = at.index(d.len());
            d[i] ^= x;
        }
        let _ = inspect(&d);
    }
}

#[test]
fn cut_snapshots_and_envelopes_are_errors() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/rw");
    for f in [
        "snapshot_7.snapshot",
        "snapshot_3_v1.snapshot",
        "checkpoint_zstd.bin",
        "checkpoint_lz4.bin",
    ] {
        let data = std::fs::read(dir.join(f)).unwrap();
        for n in (0..data.len()).step_by(7) {
            assert!(inspect(&data[..n]).is_err(), "{f} cut at {n} was accepted");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Random delta chains over one compaction group.

const GROUP: u64 = 2;
const TABLES: [u32; 4] = [1, 2, 3, 4];

fn key(n: u64) -> Bytes {
    let mut k = Vec::new();
    k.extend_from_slice(&1u32.to_be_bytes());
    k.extend_from_slice(&0u16.to_be_bytes());
    k.extend_from_slice(&n.to_be_bytes());
    k.extend_from_slice(&0u64.to_be_bytes());
    Bytes::from(k)
}

fn sst_bytes(id: u64, lo: u64, hi: u64, tables: &[u32]) -> Bytes {
    let kr = pb::KeyRange {
        left: key(lo),
        right: key(hi),
        right_exclusive: false,
    };
    let s = pb::SstableInfo {
        object_id: id,
        sst_id: id,
        key_range: Some(Bytes::from(kr.encode_to_vec())),
        file_size: 100 + id,
        table_ids: tables.to_vec(),
        uncompressed_file_size: 300,
        sst_size: 100 + id,
        ..Default::default()
    };
    Bytes::from(s.encode_to_vec())
}

fn base() -> Version {
    let level = |i: u32| {
        Bytes::from(
            pb::Level {
                level_idx: i,
                level_type: 1,
                ..Default::default()
            }
            .encode_to_vec(),
        )
    };
    let levels = pb::Levels {
        levels: vec![level(1), level(2)],
        l0: Some(Bytes::from(pb::OverlappingLevel::default().encode_to_vec())),
        group_id: GROUP,
        ..Default::default()
    };
    let mut v = pb::HummockVersion {
        id: 1,
        ..Default::default()
    };
    v.levels.insert(GROUP, Bytes::from(levels.encode_to_vec()));
    for t in TABLES {
        let i = pb::StateTableInfo {
            committed_epoch: 1,
            compaction_group_id: GROUP,
        };
        v.state_table_info.insert(t, Bytes::from(i.encode_to_vec()));
    }
    Version::from_bytes("base", &Bytes::from(v.encode_to_vec())).unwrap()
}

#[derive(Debug, Clone)]
enum Op {
    /// Commit an epoch with SSTs over these table-id masks, as new_l0_sub_level or intra_level.
    Commit(Vec<u8>, bool),
    /// Compact: remove a sample of L0 SSTs and all of L1, write `n` SSTs to L1.
    Compact(Vec<prop::sample::Index>, u8),
    /// A compaction planned against an older group layout: must change nothing.
    Expired(u8),
    Truncate(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (proptest::collection::vec(1u8..16, 1..4), any::<bool>())
            .prop_map(|(m, b)| Op::Commit(m, b)),
        (
            proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
            1u8..4
        )
            .prop_map(|(s, n)| Op::Compact(s, n)),
        (1u8..4).prop_map(Op::Expired),
        (0u8..4).prop_map(Op::Truncate),
    ]
}

fn tables_of(mask: u8) -> Vec<u32> {
    TABLES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, t)| *t)
        .collect()
}

/// What the chain leaves, tracked SST by SST: sst id -> (level, object id, tables).
#[derive(Default)]
struct Model {
    ssts: BTreeMap<u64, (u32, u64, Vec<u32>)>,
    l0_order: Vec<(u64, Vec<u64>)>,
    next_id: u64,
    epoch: u64,
    cgv: u64,
    next_key: u64,
}

impl Model {
    fn objects(&self) -> Vec<u64> {
        let s: BTreeSet<u64> = self.ssts.values().map(|(_, o, _)| *o).collect();
        s.into_iter().collect()
    }
}

fn delta(id: u64, groups: Vec<pb::GroupDelta>, bump: Option<u64>) -> pb::HummockVersionDelta {
    let gds = pb::GroupDeltas {
        group_deltas: groups
            .iter()
            .map(|g| Bytes::from(g.encode_to_vec()))
            .collect(),
    };
    let mut d = pb::HummockVersionDelta {
        id,
        prev_id: id - 1,
        ..Default::default()
    };
    d.group_deltas
        .insert(GROUP, Bytes::from(gds.encode_to_vec()));
    if let Some(e) = bump {
        for t in TABLES {
            let i = pb::StateTableInfoDelta {
                committed_epoch: e,
                compaction_group_id: GROUP,
            };
            d.state_table_info_delta
                .insert(t, Bytes::from(i.encode_to_vec()));
        }
    }
    d
}

fn step(m: &mut Model, id: u64, op: &Op) -> pb::HummockVersionDelta {
    use pb::group_delta::DeltaType as D;
    match op {
        Op::Commit(masks, via_new_sub_level) => {
            let mut ssts = Vec::new();
            let mut ids = Vec::new();
            for mask in masks {
                m.next_id += 1;
                let tables = tables_of(*mask);
                ssts.push(sst_bytes(m.next_id, 0, 1000, &tables));
                m.ssts.insert(m.next_id, (0, m.next_id, tables));
                ids.push(m.next_id);
            }
            let sub_id = m.l0_order.last().map_or(1, |(s, _)| s + 1);
            m.l0_order.push((sub_id, ids));
            m.epoch += 1;
            let gd = if *via_new_sub_level {
                D::NewL0SubLevel(Bytes::from(
                    pb::NewL0SubLevel {
                        inserted_table_infos: ssts,
                    }
                    .encode_to_vec(),
                ))
            } else {
                D::IntraLevel(Bytes::from(
                    pb::IntraLevelDelta {
                        level_idx: 0,
                        l0_sub_level_id: sub_id,
                        inserted_table_infos: ssts,
                        ..Default::default()
                    }
                    .encode_to_vec(),
                ))
            };
            delta(
                id,
                vec![pb::GroupDelta {
                    delta_type: Some(gd),
                }],
                Some(m.epoch),
            )
        }
        Op::Compact(picks, n) => compact(m, id, picks, *n, false),
        Op::Expired(n) => compact(m, id, &[], *n, true),
        Op::Truncate(t) => {
            let t = TABLES[*t as usize];
            m.ssts.retain(|_, (_, _, tables)| {
                tables.retain(|x| *x != t);
                !tables.is_empty()
            });
            let live: BTreeSet<u64> = m.ssts.keys().copied().collect();
            for (_, ids) in &mut m.l0_order {
                ids.retain(|s| live.contains(s));
            }
            m.l0_order.retain(|(_, ids)| !ids.is_empty());
            m.cgv += 1;
            let gd = D::TruncateTables(Bytes::from(
                pb::TruncateTables { table_ids: vec![t] }.encode_to_vec(),
            ));
            delta(
                id,
                vec![pb::GroupDelta {
                    delta_type: Some(gd),
                }],
                None,
            )
        }
    }
}

fn compact(
    m: &mut Model,
    id: u64,
    picks: &[prop::sample::Index],
    n: u8,
    expired: bool,
) -> pb::HummockVersionDelta {
    use pb::group_delta::DeltaType as D;
    let l0: Vec<u64> = m
        .ssts
        .iter()
        .filter(|(_, (l, _, _))| *l == 0)
        .map(|(s, _)| *s)
        .collect();
    let mut removed_l0 = BTreeSet::new();
    if !l0.is_empty() {
        for p in picks {
            removed_l0.insert(l0[p.index(l0.len())]);
        }
    }
    let removed_l1: Vec<u64> = m
        .ssts
        .iter()
        .filter(|(_, (l, _, _))| *l == 1)
        .map(|(s, _)| *s)
        .collect();
    let mut out = Vec::new();
    let mut new = Vec::new();
    let mut next_key = m.next_key;
    for _ in 0..n {
        m.next_id += 1;
        next_key += 10;
        out.push(sst_bytes(m.next_id, next_key, next_key + 5, &[1]));
        new.push(m.next_id);
    }
    let cgv = if expired { m.cgv + 7 } else { m.cgv };
    let l0_delta = pb::IntraLevelDelta {
        level_idx: 0,
        removed_table_ids: removed_l0.iter().copied().collect(),
        compaction_group_version_id: cgv,
        ..Default::default()
    };
    let l1_delta = pb::IntraLevelDelta {
        level_idx: 1,
        removed_table_ids: removed_l1.clone(),
        inserted_table_infos: out,
        compaction_group_version_id: cgv,
        ..Default::default()
    };
    if !expired {
        m.next_key = next_key;
        for s in removed_l0.iter().chain(&removed_l1) {
            m.ssts.remove(s);
        }
        for s in new {
            m.ssts.insert(s, (1, s, vec![1]));
        }
        for (_, ids) in &mut m.l0_order {
            ids.retain(|s| !removed_l0.contains(s));
        }
        m.l0_order.retain(|(_, ids)| !ids.is_empty());
    }
    delta(
        id,
        vec![
            pb::GroupDelta {
                delta_type: Some(D::IntraLevel(Bytes::from(l0_delta.encode_to_vec()))),
            },
            pb::GroupDelta {
                delta_type: Some(D::IntraLevel(Bytes::from(l1_delta.encode_to_vec()))),
            },
        ],
        None,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn apply_agrees_with_an_incremental_model(ops in proptest::collection::vec(op(), 1..25)) {
        let mut m = Model { epoch: 1, ..Default::default() };
        let mut v = base();
        let mut chain = Vec::new();
        // The base is version 1; delta k leads to version k + 1.
        for (id, op) in (2u64..).zip(ops.iter()) {
            let d = step(&mut m, id, op);
            let d = Delta::from_bytes("delta", &Bytes::from(d.encode_to_vec())).unwrap();
            v = apply(&v, [&d]).unwrap();
            chain.push(d);
            prop_assert_eq!(v.id(), id);
            prop_assert_eq!(v.object_ids(), m.objects());
            let g = &v.groups[&GROUP];
            prop_assert_eq!(g.msg().compaction_group_version_id, m.cgv);
            let l0: Vec<(u64, Vec<u64>)> = g.l0.as_ref().unwrap().sub_levels.iter()
                .map(|l| (l.msg().sub_level_id, l.ssts.iter().map(|s| s.sst_id()).collect()))
                .collect();
            // Emptied sub-levels are dropped (L0 compactions and truncation normalise L0).
            prop_assert_eq!(l0, m.l0_order.clone());
            // Sizes follow the SSTs.
            for l in g.levels.iter() {
                let sum: u64 = l.ssts.iter().map(|s| s.effective_sst_size()).sum();
                prop_assert_eq!(l.msg().total_file_size, sum);
            }
        }
        // The whole chain at once gives the same version, and it survives encoding.
        let all = apply(&base(), chain.iter()).unwrap();
        prop_assert_eq!(all.encode(), v.encode());
        let back = Version::from_bytes("applied", &v.encode()).unwrap();
        prop_assert_eq!(back.object_ids(), m.objects());
        prop_assert_eq!(back.to_bytes(true), v.to_bytes(true));
    }
}

fn rw_file(name: &str) -> Bytes {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/rw");
    Bytes::from(std::fs::read(dir.join(name)).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Damaged deltas that still decode are applied or refused with an error, never a panic.
    #[test]
    fn apply_survives_damaged_deltas(which in 11u64..=18,
                                     flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4)) {
        let base = Version::from_bytes("v", &rw_file("version_10.bin")).unwrap();
        let mut d = rw_file(&format!("delta_{which}.bin")).to_vec();
        for (at, x) in flips {
            let i = at.index(d.len());
            d[i] ^= x;
        }
        if let Ok(mut delta) = Delta::from_bytes("d", &Bytes::from(d)) {
            delta.node.msg_mut().prev_id = base.id();
            let _ = apply(&base, [&delta]);
        }
    }
}
