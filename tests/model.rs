//! Applying changes: validation names the record, and a batch is all or nothing.

mod common;

use metapitr::model::pb::{
    self, change::Kind, group_delta::Delta, GroupConstruct, GroupDelta, IntraLevelDelta,
    NewL0SubLevel,
};
use metapitr::model::{
    ApplyError, CatalogKind, CatalogObject, Change, HummockVersionDelta, IdCategory, SstableInfo,
    State, User,
};
use metapitr::sim::{SimConfig, Simulator};
use proptest::prelude::*;

fn c(k: Kind) -> Change {
    Change { kind: Some(k) }
}

fn obj(id: u32, kind: CatalogKind, name: &str, db: u32, schema: u32) -> CatalogObject {
    CatalogObject {
        id,
        kind: kind as i32,
        name: name.into(),
        database_id: db,
        schema_id: schema,
        owner: 1,
        definition: String::new(),
        dependencies: vec![],
    }
}

fn base() -> State {
    let mut s = State::new(1);
    s.apply_batch(
        1,
        &[
            c(Kind::CreateUser(User {
                id: 1,
                name: "root".into(),
                is_super: true,
                ..Default::default()
            })),
            c(Kind::CreateCatalog(obj(
                1,
                CatalogKind::Database,
                "dev",
                0,
                0,
            ))),
            c(Kind::CreateCatalog(obj(
                2,
                CatalogKind::Schema,
                "public",
                1,
                0,
            ))),
            c(Kind::HummockDelta(HummockVersionDelta {
                id: 1,
                prev_id: 0,
                group_deltas: vec![GroupDelta {
                    group_id: 2,
                    delta: Some(Delta::GroupConstruct(GroupConstruct {
                        max_level: 3,
                        member_table_ids: vec![],
                    })),
                }],
                ..Default::default()
            })),
        ],
    )
    .unwrap();
    s
}

fn sst(object_id: u64, sst_id: u64) -> SstableInfo {
    SstableInfo {
        object_id,
        sst_id,
        file_size: 10,
        ..Default::default()
    }
}

#[test]
fn a_table_in_a_missing_schema_is_refused() {
    let mut s = base();
    let err = s
        .apply_batch(
            2,
            &[c(Kind::CreateCatalog(obj(
                3,
                CatalogKind::Table,
                "t",
                1,
                99,
            )))],
        )
        .unwrap_err();
    assert_eq!(err.0, 0);
    assert!(
        matches!(err.1, ApplyError::ParentNotFound { parent: 99, .. }),
        "{}",
        err.1
    );
    assert!(err.1.to_string().contains("schema 99"));
}

#[test]
fn a_delta_that_does_not_chain_is_refused() {
    let mut s = base();
    let d = HummockVersionDelta {
        id: 3,
        prev_id: 2,
        ..Default::default()
    };
    let err = s.apply_batch(2, &[c(Kind::HummockDelta(d))]).unwrap_err();
    assert_eq!(
        err.1,
        ApplyError::DeltaChain {
            id: 3,
            prev_id: 2,
            current: 1
        }
    );
}

#[test]
fn removing_an_sst_that_is_not_there_is_refused() {
    let mut s = base();
    let add = HummockVersionDelta {
        id: 2,
        prev_id: 1,
        group_deltas: vec![GroupDelta {
            group_id: 2,
            delta: Some(Delta::NewL0SubLevel(NewL0SubLevel {
                sub_level_id: 7,
                ssts: vec![sst(10, 10), sst(10, 11)],
            })),
        }],
        ..Default::default()
    };
    s.apply_batch(2, &[c(Kind::HummockDelta(add))]).unwrap();
    // Two sst_ids share object 10.
    assert_eq!(s.hummock.sst_count(), 2);
    assert_eq!(s.hummock.object_count(), 1);
    let bad = HummockVersionDelta {
        id: 3,
        prev_id: 2,
        group_deltas: vec![GroupDelta {
            group_id: 2,
            delta: Some(Delta::IntraLevel(IntraLevelDelta {
                level_idx: 0,
                l0_sub_level_id: 0,
                removed_sst_ids: vec![10, 12],
                inserted_ssts: vec![],
            })),
        }],
        ..Default::default()
    };
    let before = s.clone();
    let err = s.apply_batch(3, &[c(Kind::HummockDelta(bad))]).unwrap_err();
    assert_eq!(
        err.1,
        ApplyError::SstNotFound {
            sst_id: 12,
            group: 2,
            level: 0
        }
    );
    // sst 10 was removed before 12 failed: the rollback put it back.
    assert_eq!(s, before);
    assert!(s.hummock.references_object(10));
}

/// Whether an error is the expected one.
type Expect = fn(&ApplyError) -> bool;

#[test]
fn other_invalid_changes_get_typed_errors() {
    let s = base();
    let cases: Vec<(Change, Expect)> = vec![
        (c(Kind::DropCatalog(1)), |e| {
            matches!(e, ApplyError::HasReferrers { id: 1, .. })
        }),
        (c(Kind::DropCatalog(77)), |e| {
            matches!(e, ApplyError::CatalogNotFound { id: 77 })
        }),
        (
            c(Kind::CreateCatalog(obj(2, CatalogKind::Schema, "x", 1, 0))),
            |e| matches!(e, ApplyError::CatalogExists { id: 2 }),
        ),
        (
            c(Kind::CreateCatalog(obj(
                5,
                CatalogKind::Schema,
                "public",
                1,
                0,
            ))),
            |e| matches!(e, ApplyError::NameTaken { existing: 2, .. }),
        ),
        (c(Kind::DropUser(9)), |e| {
            matches!(e, ApplyError::UserNotFound { id: 9 })
        }),
        (c(Kind::DropUser(1)), |e| {
            matches!(e, ApplyError::UserOwnsObjects { id: 1, .. })
        }),
        (
            c(Kind::Revoke(pb::Revoke {
                user_id: 1,
                object_id: 2,
                action: 1,
            })),
            |e| matches!(e, ApplyError::GrantNotFound { .. }),
        ),
        (common::id_advance(IdCategory::Catalog, 0), |_| false),
        (c(Kind::RemoveWorker(3)), |e| {
            matches!(e, ApplyError::WorkerNotFound { id: 3 })
        }),
        (Change { kind: None }, |e| {
            matches!(e, ApplyError::EmptyChange)
        }),
    ];
    for (i, (change, ok)) in cases.into_iter().enumerate() {
        let mut st = s.clone();
        match st.apply_batch(2, &[change]) {
            Err((_, e)) => assert!(ok(&e), "case {i}: unexpected {e}"),
            // Advancing a generator from 0 to 0 is allowed.
            Ok(()) => assert_eq!(i, 7, "case {i} was accepted"),
        }
    }
    let mut st = s.clone();
    st.apply_batch(2, &[common::id_advance(IdCategory::Catalog, 10)])
        .unwrap();
    let e = st
        .apply_batch(3, &[common::id_advance(IdCategory::Catalog, 9)])
        .unwrap_err()
        .1;
    assert!(matches!(
        e,
        ApplyError::IdRegressed {
            current: 10,
            next: 9,
            ..
        }
    ));
    let e = st
        .apply_batch(1, &[common::id_advance(IdCategory::Catalog, 11)])
        .unwrap_err()
        .1;
    assert!(matches!(e, ApplyError::EpochRegressed { .. }));
}

#[test]
fn snapshot_encoding_round_trips() {
    let mut sim = Simulator::new(SimConfig {
        seed: 4,
        ddl_rate: 0.3,
        ..Default::default()
    });
    for _ in 0..300 {
        sim.next_epoch().unwrap();
    }
    let st = sim.state().clone();
    let bytes = metapitr::snapshot::encode(&st).unwrap();
    let back = metapitr::snapshot::decode(&bytes, "t").unwrap();
    assert_eq!(back, st);
    assert_eq!(
        metapitr::jsonl::to_string(&back),
        metapitr::jsonl::to_string(&st)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    /// A valid simulated batch with one invalid change spliced in anywhere leaves the state
    /// exactly as it was.
    #[test]
    fn an_invalid_batch_changes_nothing(seed in 0u64..10_000, warm in 5usize..80, at in any::<prop::sample::Index>()) {
        let mut sim = Simulator::new(SimConfig { seed, ddl_rate: 0.5, user_rate: 0.3, compaction_rate: 0.8, ..Default::default() });
        for _ in 0..warm {
            sim.next_epoch().unwrap();
        }
        let mut st = sim.state().clone();
        let before = st.clone();
        let (epoch, mut batch) = sim.next_epoch().unwrap();
        let i = at.index(batch.len() + 1);
        batch.insert(i, c(Kind::DropCatalog(u32::MAX)));
        let err = st.apply_batch(epoch, &batch).unwrap_err();
        prop_assert_eq!(err.0, i);
        prop_assert_eq!(&st, &before);
        prop_assert_eq!(metapitr::jsonl::to_string(&st), metapitr::jsonl::to_string(&before));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, failure_persistence: None, ..ProptestConfig::default() })]

    /// Busy simulated histories only ever generate valid batches, and a state rebuilt by
    /// replaying them record by record equals the simulator's.
    #[test]
    fn simulated_histories_are_valid_and_replay_exactly(seed in 0u64..1_000_000) {
        let mut sim = Simulator::new(SimConfig { seed, ddl_rate: 0.6, user_rate: 0.4, compaction_rate: 0.9, target_ssts: 300, target_catalog: 60, ..Default::default() });
        let mut replayed = State::new(1);
        let mut lsn = 0;
        for _ in 0..600 {
            let (epoch, batch) = sim.next_epoch().unwrap();
            for ch in &batch {
                lsn += 1;
                replayed.replay(lsn, epoch, ch).unwrap();
            }
        }
        prop_assert_eq!(&replayed.catalog, &sim.state().catalog);
        prop_assert_eq!(&replayed.hummock, &sim.state().hummock);
        prop_assert_eq!(replayed.ids, sim.state().ids);
        prop_assert!(sim.state().catalog.len() > 5);
    }
}

#[test]
fn the_simulator_is_deterministic_for_a_seed() {
    let run = |seed| {
        let mut sim = Simulator::new(SimConfig {
            seed,
            ddl_rate: 0.3,
            ..Default::default()
        });
        let mut batches = Vec::new();
        for _ in 0..300 {
            batches.push(sim.next_epoch().unwrap());
        }
        (batches, metapitr::jsonl::to_string(sim.state()))
    };
    let (a, ja) = run(42);
    let (b, jb) = run(42);
    assert_eq!(a, b);
    assert_eq!(ja, jb);
    let (c, _) = run(43);
    assert_ne!(a, c);
}

/// A compaction group with more levels than a snapshot may load is refused when it is
/// created, so that every recorded state can be snapshotted and loaded again.
#[test]
fn a_group_with_too_many_levels_is_refused() {
    let mut s = base();
    let d = HummockVersionDelta {
        id: 2,
        prev_id: 1,
        group_deltas: vec![GroupDelta {
            group_id: 9,
            delta: Some(Delta::GroupConstruct(GroupConstruct {
                max_level: metapitr::model::MAX_GROUP_LEVELS + 1,
                member_table_ids: vec![],
            })),
        }],
        ..Default::default()
    };
    let err = s.apply_batch(2, &[c(Kind::HummockDelta(d))]).unwrap_err();
    assert_eq!(
        err.1,
        ApplyError::TooManyLevels {
            group: 9,
            levels: metapitr::model::MAX_GROUP_LEVELS + 1,
            max: metapitr::model::MAX_GROUP_LEVELS
        }
    );
}

/// The benchmark's sizes are reached and held: with catalog growth the catalog reaches its
/// target, and above its SST target the version is pulled back to it (compaction then runs
/// in as many groups as it takes) rather than growing with the flush rate.
#[test]
fn the_simulator_holds_its_sst_and_catalog_targets() {
    let mut sim = Simulator::new(SimConfig {
        seed: 3,
        target_ssts: 3000,
        target_catalog: 400,
        catalog_growth_per_epoch: 4,
        ..Default::default()
    });
    let mut counts = Vec::new();
    for _ in 0..6000 {
        sim.next_epoch().unwrap();
        counts.push(sim.state().hummock.sst_count());
    }
    let catalog = sim.state().catalog.len();
    assert!((400..=480).contains(&catalog), "catalog {catalog}");
    let first_over = counts
        .iter()
        .position(|c| *c > 3000)
        .expect("reaches the target");
    let after = &counts[first_over + 500..];
    let (lo, hi) = (*after.iter().min().unwrap(), *after.iter().max().unwrap());
    assert!(
        lo >= 2400 && hi <= 3600,
        "after reaching 3000 SSTs the version ranged {lo}..{hi}"
    );
    let groups = sim.state().hummock.groups.len();
    assert!(groups <= SimConfig::default().max_groups, "{groups} groups");
}
