//! Incremental SQL apply (`sql::batch_ops` through `sqlite::BatchApplier` and
//! `postgres::BatchApplier`): a database written once and then given every batch reads back
//! exactly the state the batches made, and an apply touches only what its batch touched.

mod common;

use std::path::Path;

use common::servers::postgres;
use common::{assert_matches, rt};
use metapitr::jsonl;
use metapitr::model::pb::{
    self, group_delta::Delta, GroupConstruct, GroupDelta, GroupDestroy, IntraLevelDelta,
    NewL0SubLevel, TableCommittedEpoch,
};
use metapitr::model::{
    change::Kind, Action, CatalogKind, CatalogObject, Change, GrantPrivilege, HummockVersionDelta,
    IdCategory, KeyRange, SstableInfo, State, User, WorkerNode,
};
use metapitr::sim::{SimConfig, Simulator};
use metapitr::store::sql::{batch_ops, RowOp};
use metapitr::store::{postgres as pg, sqlite};
use proptest::prelude::*;

fn busy_sim(seed: u64) -> Simulator {
    Simulator::new(SimConfig {
        seed,
        ddl_rate: 0.6,
        user_rate: 0.5,
        compaction_rate: 0.5,
        target_catalog: 40,
        max_groups: 6,
        ..Default::default()
    })
}

/// Rows a batch can touch in `table` at most: one per key it names there.
fn assert_proportional(ops: &[RowOp], changes: &[Change]) {
    let on = |name: &str| {
        ops.iter()
            .filter(|o| match o {
                RowOp::Upsert(t, _) => t.name == name,
                RowOp::Delete { table, .. } | RowOp::DeleteIds { table, .. } => table.name == name,
                RowOp::SetGenerator { .. } => false,
            })
            .count()
    };
    let (mut ssts, mut catalog) = (0, 0);
    for c in changes {
        match &c.kind {
            Some(Kind::CreateCatalog(_) | Kind::AlterCatalog(_) | Kind::DropCatalog(_)) => {
                catalog += 1
            }
            Some(Kind::HummockDelta(d)) => {
                for gd in &d.group_deltas {
                    ssts += match &gd.delta {
                        Some(Delta::NewL0SubLevel(n)) => n.ssts.len(),
                        Some(Delta::IntraLevel(il)) => {
                            il.removed_sst_ids.len() + il.inserted_ssts.len()
                        }
                        _ => 1,
                    };
                }
            }
            _ => {}
        }
    }
    assert!(
        on("ssts") <= ssts,
        "{} SST ops for {ssts} SST changes",
        on("ssts")
    );
    // Upserts, plus one statement deleting the dropped objects.
    assert!(
        on("catalog") <= catalog + 1,
        "{} catalog ops for {catalog} changes",
        on("catalog")
    );
}

fn sqlite_text(path: &Path) -> String {
    jsonl::to_string(&rt().block_on(sqlite::read(path)).unwrap())
}

/// Writes `start` into a new SQLite file and opens it for applying.
fn sqlite_at(dir: &Path, start: &State) -> (std::path::PathBuf, sqlite::BatchApplier) {
    let path = dir.join("meta.db");
    rt().block_on(sqlite::write(&path, start, false)).unwrap();
    let applier = sqlite::BatchApplier::open(&path).unwrap();
    (path, applier)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn sqlite_follows_the_simulator(seed in any::<u64>(), epochs in 150u64..350) {
        let dir = tempfile::tempdir().unwrap();
        let mut sim = busy_sim(seed);
        let (path, mut applier) = sqlite_at(dir.path(), sim.state());
        assert_matches(&sqlite_text(&path), &jsonl::to_string(sim.state()), "initial");
        for n in 1..=epochs {
            let (_, changes) = sim.next_epoch().unwrap();
            let ops = batch_ops(sim.state(), &changes, "test").unwrap();
            assert_proportional(&ops, &changes);
            applier.apply(&ops).unwrap();
            if n % 50 == 0 || n == epochs {
                let what = format!("seed {seed}, epoch {n}");
                assert_matches(&sqlite_text(&path), &jsonl::to_string(sim.state()), &what);
            }
        }
    }
}

#[test]
fn postgres_follows_the_simulator() {
    let rt = rt();
    let url = postgres().create_db();
    let mut sim = busy_sim(7);
    rt.block_on(pg::write(
        &pg::PgTarget::new(url.clone()),
        sim.state(),
        false,
    ))
    .unwrap();
    let mut applier = rt.block_on(pg::BatchApplier::connect(&url)).unwrap();
    for n in 1..=300 {
        let (_, changes) = sim.next_epoch().unwrap();
        let ops = batch_ops(sim.state(), &changes, applier.store()).unwrap();
        rt.block_on(applier.apply(&ops)).unwrap();
        if n % 100 == 0 {
            let back = rt
                .block_on(pg::read(&pg::PgTarget::new(url.clone())))
                .unwrap();
            let truth = jsonl::to_string(sim.state());
            assert_matches(&jsonl::to_string(&back), &truth, &format!("epoch {n}"));
        }
    }
}

// ---------------------------------------------------------------- hand-made batches

fn ch(k: Kind) -> Change {
    Change { kind: Some(k) }
}

fn obj(id: u32, kind: CatalogKind, db: u32, schema: u32, deps: &[u32]) -> CatalogObject {
    CatalogObject {
        id,
        kind: kind as i32,
        name: format!("o{id}"),
        database_id: db,
        schema_id: schema,
        owner: 1,
        definition: format!("def {id}"),
        dependencies: deps.to_vec(),
    }
}

fn user(id: u32, name: &str, grants: Vec<GrantPrivilege>) -> User {
    User {
        id,
        name: name.into(),
        can_login: true,
        grants,
        ..Default::default()
    }
}

fn sst(id: u64) -> SstableInfo {
    SstableInfo {
        object_id: id,
        sst_id: id,
        key_range: Some(KeyRange {
            left: vec![1],
            right: vec![2],
            right_exclusive: true,
        }),
        file_size: 100 + id,
        table_ids: vec![13],
        min_epoch: 1,
        max_epoch: 2,
    }
}

fn gd(group_id: u64, d: Delta) -> GroupDelta {
    GroupDelta {
        group_id,
        delta: Some(d),
    }
}

fn intra(level_idx: u32, removed: &[u64], inserted: &[u64]) -> Delta {
    Delta::IntraLevel(IntraLevelDelta {
        level_idx,
        l0_sub_level_id: 0,
        removed_sst_ids: removed.to_vec(),
        inserted_ssts: inserted.iter().map(|i| sst(*i)).collect(),
    })
}

fn l0(sub_level_id: u64, ssts: &[u64]) -> Delta {
    Delta::NewL0SubLevel(NewL0SubLevel {
        sub_level_id,
        ssts: ssts.iter().map(|i| sst(*i)).collect(),
    })
}

fn construct(max_level: u32, members: &[u32]) -> Delta {
    Delta::GroupConstruct(GroupConstruct {
        max_level,
        member_table_ids: members.to_vec(),
    })
}

fn id_advance(c: IdCategory, next: u64) -> Change {
    ch(Kind::IdAdvance(pb::IdGenerator {
        category: c as i32,
        next,
    }))
}

/// Batches that a row-by-row apply in the batch's own order, or an upsert of users in id
/// order, would get wrong: objects moved away from what the same batch drops, user names
/// passed between users, SSTs moving between levels and groups, a group destroyed and
/// its id constructed again, objects whose references run against their id order.
fn tricky_batches() -> Vec<(u64, Vec<Change>)> {
    use CatalogKind::*;
    let read = |object_id| GrantPrivilege {
        object_id,
        action: Action::Select as i32,
        with_grant_option: false,
        granted_by: 1,
    };
    let delta = |id, groups: Vec<GroupDelta>, epochs: &[(u32, u64)], removed: &[u32]| {
        ch(Kind::HummockDelta(HummockVersionDelta {
            id,
            prev_id: id - 1,
            group_deltas: groups,
            max_committed_epoch: id << 20,
            safe_epoch: (id - 1) << 20,
            table_committed_epochs: epochs
                .iter()
                .map(|(table_id, epoch)| TableCommittedEpoch {
                    table_id: *table_id,
                    epoch: *epoch,
                })
                .collect(),
            removed_table_ids: removed.to_vec(),
        }))
    };
    let worker = |id| WorkerNode {
        id,
        host: format!("h{id}"),
        port: 5000 + id,
        worker_type: 2,
    };
    let first = vec![
        ch(Kind::SetClusterId("c1".into())),
        ch(Kind::SetParam(pb::SystemParam {
            name: "x".into(),
            value: "1".into(),
        })),
        ch(Kind::AddWorker(worker(1))),
        ch(Kind::CreateUser(user(1, "root", vec![]))),
        ch(Kind::CreateUser(user(2, "a", vec![]))),
        ch(Kind::CreateUser(user(3, "b", vec![read(13)]))),
        ch(Kind::CreateCatalog(obj(10, Database, 0, 0, &[]))),
        ch(Kind::CreateCatalog(obj(11, Schema, 10, 0, &[]))),
        ch(Kind::CreateCatalog(obj(12, Schema, 10, 0, &[]))),
        ch(Kind::CreateCatalog(obj(13, Table, 10, 11, &[]))),
        ch(Kind::CreateCatalog(obj(
            14,
            MaterializedView,
            10,
            11,
            &[13],
        ))),
        id_advance(IdCategory::Catalog, 15),
        id_advance(IdCategory::User, 4),
        delta(
            1,
            vec![
                gd(2, construct(3, &[13])),
                gd(3, construct(3, &[14])),
                gd(2, l0(1, &[100, 101])),
                gd(3, l0(1, &[103])),
            ],
            &[(13, 1 << 20), (14, 1 << 20)],
            &[],
        ),
    ];
    let second = vec![
        ch(Kind::AlterUser(user(3, "c", vec![read(13)]))),
        ch(Kind::AlterUser(user(2, "b", vec![]))),
        ch(Kind::Grant(pb::Grant {
            user_id: 2,
            privilege: Some(read(12)),
        })),
        // 13 and 14 leave schema 11, which is dropped before them: their rows in the
        // database still name it until all three go.
        ch(Kind::AlterCatalog(obj(13, Table, 10, 12, &[]))),
        ch(Kind::AlterCatalog(obj(14, MaterializedView, 10, 12, &[13]))),
        ch(Kind::DropCatalog(11)),
        ch(Kind::DropCatalog(14)),
        ch(Kind::DropCatalog(13)),
        ch(Kind::RemoveWorker(1)),
        ch(Kind::AddWorker(worker(2))),
        ch(Kind::SetParam(pb::SystemParam {
            name: "x".into(),
            value: "2".into(),
        })),
        delta(
            2,
            vec![
                // 100 moves from L0 to L1, 103 from group 3 to group 2, 101 goes.
                gd(2, intra(0, &[100, 101], &[])),
                gd(2, intra(1, &[], &[100])),
                gd(3, intra(0, &[103], &[])),
                gd(2, intra(2, &[], &[103])),
                gd(3, Delta::GroupDestroy(GroupDestroy {})),
            ],
            &[(13, 2 << 20)],
            &[14],
        ),
    ];
    let third = vec![
        ch(Kind::DropUser(3)),
        ch(Kind::CreateUser(user(5, "c", vec![read(31)]))),
        ch(Kind::Revoke(pb::Revoke {
            user_id: 2,
            object_id: 12,
            action: Action::Select as i32,
        })),
        ch(Kind::DropCatalog(12)),
        ch(Kind::DropCatalog(10)),
        // References against id order: 29 → 30 → 31.
        ch(Kind::CreateCatalog(obj(31, Database, 0, 0, &[]))),
        ch(Kind::CreateCatalog(obj(30, Schema, 31, 0, &[]))),
        ch(Kind::CreateCatalog(obj(32, Table, 31, 30, &[]))),
        ch(Kind::CreateCatalog(obj(29, View, 31, 30, &[32]))),
        ch(Kind::SetClusterId("c2".into())),
        id_advance(IdCategory::Catalog, 33),
        id_advance(IdCategory::User, 6),
        delta(
            3,
            vec![
                gd(3, construct(5, &[32])),
                gd(3, l0(7, &[104])),
                gd(2, intra(1, &[100], &[105])),
                gd(2, intra(2, &[103], &[])),
                gd(2, l0(8, &[103])),
            ],
            &[(32, 3 << 20)],
            &[13],
        ),
    ];
    let fourth = vec![
        // Everything in group 2 leaves, the group goes, and a new group 4 takes an SST id
        // that was group 2's in the same batch.
        delta(
            4,
            vec![
                gd(2, intra(0, &[103], &[])),
                gd(2, intra(1, &[105], &[])),
                gd(2, Delta::GroupDestroy(GroupDestroy {})),
                gd(4, construct(2, &[])),
                gd(4, intra(2, &[], &[105])),
            ],
            &[],
            &[],
        ),
        ch(Kind::DropCatalog(29)),
        ch(Kind::AlterCatalog(obj(32, Table, 31, 30, &[]))),
    ];
    vec![
        (1 << 20, first),
        (2 << 20, second),
        (3 << 20, third),
        (4 << 20, fourth),
    ]
}

/// The states the tricky batches lead to, with each batch's ops.
fn tricky_states() -> Vec<(State, Vec<RowOp>)> {
    let mut state = State::new(1);
    let mut out = Vec::new();
    for (epoch, changes) in tricky_batches() {
        state
            .apply_batch(epoch, &changes)
            .unwrap_or_else(|(i, e)| panic!("batch at {epoch}, change {i}: {e}"));
        let ops = batch_ops(&state, &changes, "test").unwrap();
        assert_proportional(&ops, &changes);
        out.push((state.clone(), ops));
    }
    out
}

#[test]
fn sqlite_applies_tricky_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut applier) = sqlite_at(dir.path(), &State::new(1));
    for (i, (state, ops)) in tricky_states().into_iter().enumerate() {
        applier.apply(&ops).unwrap();
        let what = format!("sqlite, batch {}", i + 1);
        assert_matches(&sqlite_text(&path), &jsonl::to_string(&state), &what);
    }
}

#[test]
fn postgres_applies_tricky_batches() {
    let rt = rt();
    let url = postgres().create_db();
    rt.block_on(pg::write(
        &pg::PgTarget::new(url.clone()),
        &State::new(1),
        false,
    ))
    .unwrap();
    let mut applier = rt.block_on(pg::BatchApplier::connect(&url)).unwrap();
    for (i, (state, ops)) in tricky_states().into_iter().enumerate() {
        rt.block_on(applier.apply(&ops)).unwrap();
        let back = rt
            .block_on(pg::read(&pg::PgTarget::new(url.clone())))
            .unwrap();
        let what = format!("postgres, batch {}", i + 1);
        assert_matches(&jsonl::to_string(&back), &jsonl::to_string(&state), &what);
    }
}

/// A batch applied to a database that does not hold the state before it fails as a
/// whole, naming the store, and leaves the database as it was.
#[test]
fn a_batch_out_of_step_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let states = tricky_states();
    let (path, mut applier) = sqlite_at(dir.path(), &State::new(1));
    // Skip the first batch: the second names users and objects the file lacks.
    let err = applier.apply(&states[1].1).unwrap_err();
    assert_eq!(err.kind(), metapitr::ErrorKind::Corruption, "{err}");
    assert!(err.to_string().contains("write the whole state"), "{err}");
    assert_matches(
        &sqlite_text(&path),
        &jsonl::to_string(&State::new(1)),
        "after",
    );
}
