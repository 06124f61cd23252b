//! A simulator of a RisingWave-like meta service: one commit per barrier (epoch) with
//! Hummock deltas (L0 flushes; compactions that remove and insert SSTs; group construct and
//! destroy), occasional DDL, user and grant changes, system parameter and worker changes.
//!
//! The simulator keeps its own truth: it applies every batch it generates to its own
//! [`State`], never reading the WAL, so a restore can be compared with it. Time is a
//! [`ManualClock`] advanced one epoch interval per barrier, so a week of history takes
//! seconds, and the same seed gives the same history.

use std::path::PathBuf;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use crate::archive::ArchiveStatus;
use crate::clock::{Clock, ManualClock};
use crate::epoch;
use crate::error::{Error, Result};
use crate::model::pb::{
    self, change::Kind, group_delta::Delta, GroupConstruct, GroupDelta, GroupDestroy, IdGenerator,
    IntraLevelDelta, NewL0SubLevel, TableCommittedEpoch,
};
use crate::model::{
    is_relation_with_state, Action, AuthInfo, CatalogKind, CatalogObject, Change, GrantPrivilege,
    HummockVersionDelta, IdCategory, KeyRange, SstLoc, SstableInfo, State, User, WorkerNode,
    WorkerType,
};
use crate::recorder::{Recorder, RecorderOptions};
use crate::repo::Repo;
use crate::retention::Policy;
use roaring::RoaringTreemap;

/// 2026-01-01T00:00:00Z, where simulated time starts by default.
pub const DEFAULT_START_MS: u64 = 1_767_225_600_000;
/// The compaction groups every cluster starts with (state tables, materialized views).
pub const STATIC_GROUPS: [u64; 2] = [2, 3];
pub const ROOT_USER: u32 = 1;
/// Worker ids the simulator gives stay at or below this, so that ids above it are free for
/// the new meta nodes of an import (`import --initial-cluster 1001=...`, as the README
/// shows).
pub const MAX_WORKER_ID: u32 = 999;
const MAX_LEVEL: u32 = 6;

/// Simulation knobs. Every field states its default.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seeds every random choice. Default 1.
    pub seed: u64,
    /// Simulated milliseconds between barriers. Default 1000.
    pub epoch_interval_ms: u64,
    /// Simulated unix time of the first barrier. Default 2026-01-01T00:00:00Z.
    pub start_unix_ms: u64,
    /// Probability of a DDL statement per epoch. Default 0.02.
    pub ddl_rate: f64,
    /// Probability of a user or grant change per epoch. Default 0.01.
    pub user_rate: f64,
    /// Probability of a compaction task per epoch. Default 0.3.
    pub compaction_rate: f64,
    /// Compactions shrink their output once the version holds more SSTs than this.
    /// Default 2000.
    pub target_ssts: usize,
    /// DDL drops more than it creates above this many catalog objects. Default 2000.
    pub target_catalog: usize,
    /// While the catalog holds fewer than `target_catalog` objects, this many extra
    /// CREATE statements per epoch, so that a benchmark reaches its catalog size early.
    /// Default 0.
    pub catalog_growth_per_epoch: usize,
    /// Materialized views get a dedicated compaction group (with probability 1/4) only
    /// while fewer than this many groups exist. Default 32.
    pub max_groups: usize,
    /// The Hummock storage the simulated cluster uses: its `state_store` system
    /// parameter is `hummock+` this URL's base and `data_directory` its last path segment.
    /// Default `s3://state-bucket/hummock_001`.
    pub hummock_location: String,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            epoch_interval_ms: 1000,
            start_unix_ms: DEFAULT_START_MS,
            ddl_rate: 0.02,
            user_rate: 0.01,
            compaction_rate: 0.3,
            target_ssts: 2000,
            target_catalog: 2000,
            catalog_growth_per_epoch: 0,
            max_groups: 32,
            hummock_location: "s3://state-bucket/hummock_001".into(),
        }
    }
}

pub struct Simulator {
    cfg: SimConfig,
    rng: StdRng,
    clock: Arc<ManualClock>,
    /// The truth: every generated batch applied, without the WAL.
    state: State,
    /// SST objects that left the version in the last generated epoch.
    departed: Vec<u64>,
    /// [`Simulator::stateful_tables`] of each group, valid until the catalog or the set
    /// of groups changes (a scan of the whole catalog per group per epoch otherwise).
    tables_of_group: std::collections::HashMap<u64, Vec<u32>>,
}

/// Ids handed out while building one batch; turned into IdAdvance changes.
struct Ids {
    base: [u64; 9],
    next: [u64; 9],
}

impl Ids {
    fn new(state: &State) -> Self {
        Ids {
            base: state.ids,
            next: state.ids,
        }
    }
    fn take(&mut self, c: IdCategory) -> u64 {
        let slot = &mut self.next[c as usize];
        if *slot == 0 {
            *slot = 1;
        }
        let id = *slot;
        *slot += 1;
        id
    }
    fn take_n(&mut self, c: IdCategory, n: u64) {
        self.next[c as usize] = self.next[c as usize].max(1) + n;
    }
    fn advances(&self) -> Vec<Change> {
        crate::model::ID_CATEGORIES
            .iter()
            .filter(|c| self.next[**c as usize] != self.base[**c as usize])
            .map(|c| {
                change(Kind::IdAdvance(IdGenerator {
                    category: *c as i32,
                    next: self.next[*c as usize],
                }))
            })
            .collect()
    }
}

fn change(k: Kind) -> Change {
    Change { kind: Some(k) }
}

impl Simulator {
    /// A simulator starting from nothing.
    pub fn new(cfg: SimConfig) -> Self {
        let clock = ManualClock::new(cfg.start_unix_ms - cfg.epoch_interval_ms);
        Simulator {
            rng: StdRng::seed_from_u64(cfg.seed),
            clock,
            state: State::new(1),
            departed: Vec::new(),
            tables_of_group: Default::default(),
            cfg,
        }
    }

    /// A simulator that continues from an existing state (its clock set just past it).
    pub fn resume(cfg: SimConfig, state: State) -> Self {
        let clock = Simulator::new(cfg.clone()).clock();
        Simulator::resume_on(cfg, state, clock)
    }

    /// [`Simulator::resume`] on an existing clock (the one a repo and recorder already
    /// read), so that time keeps moving for them too.
    pub fn resume_on(cfg: SimConfig, state: State, clock: Arc<ManualClock>) -> Self {
        let mut s = Simulator::new(cfg);
        s.clock = clock;
        let last_ms = if state.epoch == 0 {
            s.cfg.start_unix_ms - s.cfg.epoch_interval_ms
        } else {
            epoch::to_unix_ms(state.epoch)
        };
        s.clock.set(last_ms.max(s.clock.now_ms()));
        s.rng = StdRng::seed_from_u64(s.cfg.seed ^ state.lsn.rotate_left(17));
        s.state = state;
        s
    }

    pub fn clock(&self) -> Arc<ManualClock> {
        self.clock.clone()
    }

    /// The truth as of the last generated epoch.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// SST objects that left the version in the last generated epoch (no SST references
    /// them any more). Object ids are never reused, so they never return.
    pub fn departed(&self) -> &[u64] {
        &self.departed
    }

    /// Generates the next barrier: advances the clock one interval, builds the batch and
    /// applies it to the truth. Returns the epoch and the batch to commit.
    pub fn next_epoch(&mut self) -> Result<(u64, Vec<Change>)> {
        self.clock.advance(self.cfg.epoch_interval_ms);
        let epoch = epoch::from_unix_ms(self.clock.now_ms());
        if epoch <= self.state.epoch {
            return Err(Error::invalid_input(format!(
                "simulated time {} does not move past the state's epoch {}",
                epoch::format(epoch),
                self.state.epoch
            )));
        }
        let changes = self.build(epoch);
        // Objects whose SSTs the batch removes; those no longer referenced after it departed.
        let mut removed: Vec<u64> = changes
            .iter()
            .filter_map(|c| match &c.kind {
                Some(Kind::HummockDelta(d)) => Some(d),
                _ => None,
            })
            .flat_map(|d| d.group_deltas.iter())
            .filter_map(|g| match &g.delta {
                Some(Delta::IntraLevel(il)) => Some(il.removed_sst_ids.iter()),
                _ => None,
            })
            .flatten()
            .filter_map(|sst| self.state.hummock.sst(*sst).map(|s| s.object_id))
            .collect();
        self.state.apply_batch(epoch, &changes).map_err(|(i, e)| {
            Error::internal(format!(
                "simulator generated an invalid change {i} at epoch {epoch}: {e}"
            ))
        })?;
        if changes.iter().any(changes_table_sets) {
            self.tables_of_group.clear();
        }
        removed.sort_unstable();
        removed.dedup();
        removed.retain(|o| !self.state.hummock.references_object(*o));
        self.departed = removed;
        Ok((epoch, changes))
    }

    fn build(&mut self, epoch: u64) -> Vec<Change> {
        let mut ids = Ids::new(&self.state);
        let mut out = Vec::new();
        let mut delta = HummockVersionDelta {
            id: self.state.hummock.id + 1,
            prev_id: self.state.hummock.id,
            max_committed_epoch: epoch,
            ..Default::default()
        };
        if self.state.cluster_id.is_empty() {
            self.bootstrap(&mut ids, &mut out, &mut delta);
        } else {
            let r: f64 = self.rng.random();
            if r < self.cfg.ddl_rate {
                self.ddl(&mut ids, &mut out, &mut delta, epoch, false);
            }
            if self.state.catalog.len() < self.cfg.target_catalog {
                for _ in 0..self.cfg.catalog_growth_per_epoch {
                    self.ddl(&mut ids, &mut out, &mut delta, epoch, true);
                }
            }
            if self.rng.random::<f64>() < self.cfg.user_rate {
                self.user_change(&mut ids, &mut out);
            }
            if self.rng.random::<f64>() < 0.001 {
                self.cluster_change(&mut out);
            }
            self.backfill_progress(&mut delta);
            self.flush(&mut ids, &mut delta, epoch);
            let count = self.state.hummock.sst_count();
            if count > self.cfg.target_ssts {
                // Above the target size, compactions (which then shrink, see `compact`)
                // run in as many groups as it takes to remove what this epoch flushed
                // plus 1/64 of the excess, so that the version levels off at the target.
                let flushed: usize = delta
                    .group_deltas
                    .iter()
                    .filter_map(|g| match &g.delta {
                        Some(Delta::NewL0SubLevel(l)) => Some(l.ssts.len()),
                        _ => None,
                    })
                    .sum();
                let goal = flushed + (count - self.cfg.target_ssts) / 64 + 1;
                let mut net = 0;
                // A group with nothing to compact yields 0 and may be drawn again, so
                // the attempts are bounded by the number of groups.
                for _ in 0..self.state.hummock.groups.len() {
                    match self.compact(&mut ids, &mut delta, epoch) {
                        Some(n) => net += n,
                        None => break,
                    }
                    if net >= goal {
                        break;
                    }
                }
            } else if self.rng.random::<f64>() < self.cfg.compaction_rate {
                self.compact(&mut ids, &mut delta, epoch);
            }
        }
        let mut batch = ids.advances();
        batch.extend(out);
        batch.push(change(Kind::HummockDelta(delta)));
        batch
    }

    fn bootstrap(&mut self, ids: &mut Ids, out: &mut Vec<Change>, delta: &mut HummockVersionDelta) {
        let cluster_id = format!(
            "{:08x}-{:04x}-{:04x}",
            self.rng.random::<u32>(),
            self.rng.random::<u16>(),
            self.rng.random::<u16>()
        );
        out.push(change(Kind::SetClusterId(cluster_id)));
        let (base, dir) = crate::hummock::split_location(&self.cfg.hummock_location);
        let state_store = format!("hummock+{base}");
        for (k, v) in [
            ("barrier_interval_ms", "1000"),
            ("checkpoint_frequency", "1"),
            ("state_store", state_store.as_str()),
            ("data_directory", dir),
            ("backup_storage_url", "s3://backup-bucket"),
            ("backup_storage_directory", "backup"),
        ] {
            out.push(change(Kind::SetParam(pb::SystemParam {
                name: k.into(),
                value: v.into(),
            })));
        }
        let workers = [
            (1, WorkerType::Meta, 5690),
            (2, WorkerType::Frontend, 4566),
            (3, WorkerType::ComputeNode, 5688),
            (4, WorkerType::ComputeNode, 5688),
            (5, WorkerType::ComputeNode, 5688),
            (6, WorkerType::Compactor, 6660),
        ];
        for (id, t, port) in workers {
            out.push(change(Kind::AddWorker(WorkerNode {
                id,
                host: format!("10.0.0.{id}"),
                port,
                worker_type: t as i32,
            })));
        }
        // Ids 1.. of each generator are used from here on.
        let root = ids.take(IdCategory::User) as u32;
        out.push(change(Kind::CreateUser(User {
            id: root,
            name: "root".into(),
            is_super: true,
            can_create_db: true,
            can_create_user: true,
            can_login: true,
            auth_info: None,
            grants: vec![],
        })));
        let db = ids.take(IdCategory::Catalog) as u32;
        out.push(change(Kind::CreateCatalog(obj(
            db,
            CatalogKind::Database,
            "dev",
            0,
            0,
            root,
            "",
            vec![],
        ))));
        let schema = ids.take(IdCategory::Catalog) as u32;
        out.push(change(Kind::CreateCatalog(obj(
            schema,
            CatalogKind::Schema,
            "public",
            db,
            0,
            root,
            "",
            vec![],
        ))));
        // Group ids 1 is reserved; 2 and 3 are the static groups.
        ids.take(IdCategory::CompactionGroup);
        for g in STATIC_GROUPS {
            ids.take(IdCategory::CompactionGroup);
            delta.group_deltas.push(GroupDelta {
                group_id: g,
                delta: Some(Delta::GroupConstruct(GroupConstruct {
                    max_level: MAX_LEVEL,
                    member_table_ids: vec![],
                })),
            });
        }
    }

    fn owner(&mut self) -> u32 {
        let users: Vec<u32> = self.state.users.keys().copied().collect();
        *users.choose(&mut self.rng).unwrap_or(&ROOT_USER)
    }

    fn pick(&mut self, kinds: &[CatalogKind]) -> Option<CatalogObject> {
        let v: Vec<&CatalogObject> = self
            .state
            .catalog
            .values()
            .filter(|o| kinds.contains(&o.kind()))
            .collect();
        v.choose(&mut self.rng).map(|o| (*o).clone())
    }

    fn ddl(
        &mut self,
        ids: &mut Ids,
        out: &mut Vec<Change>,
        delta: &mut HummockVersionDelta,
        epoch: u64,
        create_only: bool,
    ) {
        let too_big = self.state.catalog.len() > self.cfg.target_catalog;
        let r: f64 = self.rng.random();
        let drop_p = if too_big { 0.6 } else { 0.12 };
        if r < drop_p && !create_only {
            return self.drop_object(out, delta);
        }
        if r < drop_p + 0.08 && !create_only {
            return self.alter_object(out);
        }
        let owner = self.owner();
        let Some(schema) = self.pick(&[CatalogKind::Schema]) else {
            return;
        };
        let db = schema.database_id;
        let kinds = [
            (CatalogKind::Database, 0.03),
            (CatalogKind::Schema, 0.07),
            (CatalogKind::Table, 0.25),
            (CatalogKind::MaterializedView, 0.22),
            (CatalogKind::Index, 0.08),
            (CatalogKind::Source, 0.08),
            (CatalogKind::Sink, 0.07),
            (CatalogKind::View, 0.07),
            (CatalogKind::Function, 0.06),
            (CatalogKind::Connection, 0.04),
            (CatalogKind::Secret, 0.03),
        ];
        let mut x: f64 = self.rng.random::<f64>() * kinds.iter().map(|k| k.1).sum::<f64>();
        let mut kind = CatalogKind::Table;
        for (k, w) in kinds {
            if x < w {
                kind = k;
                break;
            }
            x -= w;
        }
        let id = ids.take(IdCategory::Catalog) as u32;
        let name = format!("{}_{id}", crate::model::catalog_kind_name(kind));
        let upstream = |s: &mut Self, kinds: &[CatalogKind]| -> Vec<u32> {
            let v: Vec<u32> = s
                .state
                .catalog
                .values()
                .filter(|o| kinds.contains(&o.kind()) && o.database_id == db)
                .map(|o| o.id)
                .collect();
            let n = s.rng.random_range(1..=2usize).min(v.len());
            let mut picked: Vec<u32> = v.choose_multiple(&mut s.rng, n).copied().collect();
            picked.sort_unstable();
            picked
        };
        let o = match kind {
            CatalogKind::Database => {
                let o = obj(id, kind, &name, 0, 0, owner, "", vec![]);
                out.push(change(Kind::CreateCatalog(o)));
                let sid = ids.take(IdCategory::Catalog) as u32;
                obj(sid, CatalogKind::Schema, "public", id, 0, owner, "", vec![])
            }
            CatalogKind::Schema => obj(id, kind, &name, db, 0, owner, "", vec![]),
            CatalogKind::Table => obj(
                id,
                kind,
                &name,
                db,
                schema.id,
                owner,
                &format!("CREATE TABLE {name} (k INT PRIMARY KEY, v VARCHAR)"),
                vec![],
            ),
            CatalogKind::MaterializedView
            | CatalogKind::Sink
            | CatalogKind::View
            | CatalogKind::Index => {
                let from = if kind == CatalogKind::Index {
                    upstream(self, &[CatalogKind::Table])
                        .into_iter()
                        .take(1)
                        .collect()
                } else {
                    upstream(
                        self,
                        &[
                            CatalogKind::Table,
                            CatalogKind::MaterializedView,
                            CatalogKind::Source,
                        ],
                    )
                };
                if from.is_empty() {
                    obj(
                        id,
                        CatalogKind::Table,
                        &format!("table_{id}"),
                        db,
                        schema.id,
                        owner,
                        "CREATE TABLE t (k INT)",
                        vec![],
                    )
                } else {
                    let def = format!(
                        "CREATE {} {name} AS SELECT * FROM {from:?}",
                        crate::model::catalog_kind_name(kind).to_uppercase()
                    );
                    obj(id, kind, &name, db, schema.id, owner, &def, from)
                }
            }
            CatalogKind::Source => obj(
                id,
                kind,
                &name,
                db,
                schema.id,
                owner,
                "CREATE SOURCE s WITH (connector = 'kafka')",
                vec![],
            ),
            CatalogKind::Function => obj(
                id,
                kind,
                &name,
                db,
                schema.id,
                owner,
                "CREATE FUNCTION f(INT) RETURNS INT LANGUAGE sql AS 'SELECT $1 + 1'",
                vec![],
            ),
            CatalogKind::Connection => obj(
                id,
                kind,
                &name,
                db,
                schema.id,
                owner,
                "CREATE CONNECTION c WITH (type = 'privatelink')",
                vec![],
            ),
            CatalogKind::Secret => {
                let v: u64 = self.rng.random();
                obj(
                    id,
                    kind,
                    &name,
                    db,
                    schema.id,
                    owner,
                    &format!("enc:{v:016x}"),
                    vec![],
                )
            }
            _ => return,
        };
        let oid = o.id;
        let okind = o.kind();
        out.push(change(Kind::CreateCatalog(o)));
        if okind == CatalogKind::MaterializedView || okind == CatalogKind::Sink {
            ids.take_n(IdCategory::Fragment, self.rng.random_range(1..4));
            ids.take_n(IdCategory::Actor, self.rng.random_range(3..12));
        }
        if okind == CatalogKind::MaterializedView {
            for _ in 0..self.rng.random_range(1..=2) {
                let iid = ids.take(IdCategory::Catalog) as u32;
                let it = obj(
                    iid,
                    CatalogKind::InternalTable,
                    &format!("__internal_{oid}_{iid}"),
                    db,
                    schema.id,
                    owner,
                    "",
                    vec![oid],
                );
                out.push(change(Kind::CreateCatalog(it)));
            }
            // Backfilling: the MV's committed epoch trails until it catches up.
            delta.table_committed_epochs.push(TableCommittedEpoch {
                table_id: oid,
                epoch,
            });
            let groups = self.state.hummock.groups.len()
                + delta
                    .group_deltas
                    .iter()
                    .filter(|g| matches!(g.delta, Some(Delta::GroupConstruct(_))))
                    .count();
            if self.rng.random::<f64>() < 0.25 && groups < self.cfg.max_groups {
                let g = ids.take(IdCategory::CompactionGroup);
                delta.group_deltas.push(GroupDelta {
                    group_id: g,
                    delta: Some(Delta::GroupConstruct(GroupConstruct {
                        max_level: MAX_LEVEL,
                        member_table_ids: vec![oid],
                    })),
                });
            }
        }
    }

    fn alter_object(&mut self, out: &mut Vec<Change>) {
        let Some(mut o) = self.pick(&[
            CatalogKind::Table,
            CatalogKind::MaterializedView,
            CatalogKind::View,
            CatalogKind::Sink,
            CatalogKind::Source,
            CatalogKind::Function,
        ]) else {
            return;
        };
        if self.rng.random::<bool>() {
            o.name = format!(
                "{}_r{}",
                o.name.split("_r").next().unwrap_or(&o.name),
                self.rng.random_range(0..1000)
            );
        } else {
            o.definition = format!(
                "{} -- altered {}",
                o.definition.split(" -- ").next().unwrap_or(""),
                self.rng.random::<u16>()
            );
            o.owner = self.owner();
        }
        out.push(change(Kind::AlterCatalog(o)));
    }

    /// Drops an object nothing but its own internal tables refers to, with those internal
    /// tables, and its dedicated compaction group if it has one.
    fn drop_object(&mut self, out: &mut Vec<Change>, delta: &mut HummockVersionDelta) {
        let st = &self.state;
        let mut referrers: std::collections::HashMap<u32, Vec<&CatalogObject>> = Default::default();
        for o in st.catalog.values() {
            let parents = [o.database_id, o.schema_id];
            for p in parents
                .iter()
                .chain(o.dependencies.iter())
                .filter(|p| **p != 0)
            {
                referrers.entry(*p).or_default().push(o);
            }
        }
        let candidates: Vec<(u32, Vec<u32>)> = st
            .catalog
            .values()
            .filter(|o| {
                o.kind() != CatalogKind::InternalTable
                    && !(o.kind() == CatalogKind::Schema && o.name == "public")
            })
            .filter(|o| o.kind() != CatalogKind::Database)
            .filter_map(|o| {
                let refs = referrers.get(&o.id).map(|v| v.as_slice()).unwrap_or(&[]);
                let internal: Vec<u32> = refs
                    .iter()
                    .filter(|r| r.kind() == CatalogKind::InternalTable && r.dependencies == [o.id])
                    .map(|r| r.id)
                    .collect();
                // Internal tables must themselves be unreferenced.
                let internal_free = internal.iter().all(|i| !referrers.contains_key(i));
                (internal.len() == refs.len() && internal_free).then_some((o.id, internal))
            })
            .collect();
        let Some((victim, internal)) = candidates.choose(&mut self.rng).cloned() else {
            return;
        };
        for i in &internal {
            out.push(change(Kind::DropCatalog(*i)));
        }
        out.push(change(Kind::DropCatalog(victim)));
        for t in internal.iter().chain([&victim]) {
            if self.state.hummock.table_committed_epochs.contains_key(t)
                || delta
                    .table_committed_epochs
                    .iter()
                    .any(|x| x.table_id == *t)
            {
                delta.table_committed_epochs.retain(|x| x.table_id != *t);
                delta.removed_table_ids.push(*t);
            }
        }
        let dedicated: Vec<u64> = self
            .state
            .hummock
            .groups
            .iter()
            .filter(|(_, g)| g.member_table_ids == [victim])
            .map(|(id, _)| *id)
            .collect();
        for gid in dedicated {
            let g = &self.state.hummock.groups[&gid];
            let mut l0 = Vec::new();
            let mut by_level: std::collections::BTreeMap<u32, Vec<u64>> = Default::default();
            for (loc, s) in g.ssts() {
                match loc {
                    SstLoc::L0(_) => l0.push(s.sst_id),
                    SstLoc::Level(l) => by_level.entry(l).or_default().push(s.sst_id),
                }
            }
            if !l0.is_empty() {
                by_level.insert(0, l0);
            }
            for (level, removed) in by_level {
                delta.group_deltas.push(GroupDelta {
                    group_id: gid,
                    delta: Some(Delta::IntraLevel(IntraLevelDelta {
                        level_idx: level,
                        l0_sub_level_id: 0,
                        removed_sst_ids: removed,
                        inserted_ssts: vec![],
                    })),
                });
            }
            delta.group_deltas.push(GroupDelta {
                group_id: gid,
                delta: Some(Delta::GroupDestroy(GroupDestroy {})),
            });
        }
    }

    fn user_change(&mut self, ids: &mut Ids, out: &mut Vec<Change>) {
        let r: f64 = self.rng.random();
        let others: Vec<User> = self
            .state
            .users
            .values()
            .filter(|u| u.id != ROOT_USER)
            .cloned()
            .collect();
        if r < 0.3 || others.is_empty() {
            let id = ids.take(IdCategory::User) as u32;
            let mut hash = [0u8; 16];
            self.rng.fill(&mut hash);
            out.push(change(Kind::CreateUser(User {
                id,
                name: format!("user_{id}"),
                is_super: false,
                can_create_db: self.rng.random(),
                can_create_user: false,
                can_login: true,
                auth_info: Some(AuthInfo {
                    encryption_type: 2,
                    encrypted_value: hash.to_vec(),
                }),
                grants: vec![],
            })));
            return;
        }
        let Some(mut u) = others.choose(&mut self.rng).cloned() else {
            return;
        };
        if r < 0.65 {
            let Some(o) = self.pick(&[
                CatalogKind::Table,
                CatalogKind::MaterializedView,
                CatalogKind::View,
                CatalogKind::Schema,
            ]) else {
                return;
            };
            let actions = [
                Action::Select,
                Action::Insert,
                Action::Update,
                Action::Delete,
                Action::Usage,
            ];
            let action = *actions.choose(&mut self.rng).unwrap_or(&Action::Select);
            out.push(change(Kind::Grant(pb::Grant {
                user_id: u.id,
                privilege: Some(GrantPrivilege {
                    object_id: o.id,
                    action: action as i32,
                    with_grant_option: self.rng.random(),
                    granted_by: ROOT_USER,
                }),
            })));
        } else if r < 0.8 {
            if let Some(g) = u.grants.choose(&mut self.rng) {
                out.push(change(Kind::Revoke(pb::Revoke {
                    user_id: u.id,
                    object_id: g.object_id,
                    action: g.action,
                })));
            }
        } else if r < 0.93 {
            let mut hash = [0u8; 16];
            self.rng.fill(&mut hash);
            u.auth_info = Some(AuthInfo {
                encryption_type: 2,
                encrypted_value: hash.to_vec(),
            });
            u.can_create_db = !u.can_create_db;
            out.push(change(Kind::AlterUser(u)));
        } else if !self.state.catalog.values().any(|o| o.owner == u.id) && !owns_in_batch(out, u.id)
        {
            out.push(change(Kind::DropUser(u.id)));
        }
    }

    fn cluster_change(&mut self, out: &mut Vec<Change>) {
        if self.rng.random::<bool>() {
            let v = [500u32, 1000, 2000][self.rng.random_range(0..3)];
            out.push(change(Kind::SetParam(pb::SystemParam {
                name: "barrier_interval_ms".into(),
                value: v.to_string(),
            })));
            return;
        }
        let computes: Vec<u32> = self
            .state
            .workers
            .values()
            .filter(|w| w.worker_type() == WorkerType::ComputeNode)
            .map(|w| w.id)
            .collect();
        if computes.len() > 2 && self.rng.random::<bool>() {
            if let Some(id) = computes.choose(&mut self.rng) {
                out.push(change(Kind::RemoveWorker(*id)));
            }
        } else {
            // One above the largest, else the lowest free id below the bound.
            let next = self.state.workers.keys().max().copied().unwrap_or(0) + 1;
            let free = Some(next)
                .filter(|n| *n <= MAX_WORKER_ID)
                .or_else(|| (1..=MAX_WORKER_ID).find(|i| !self.state.workers.contains_key(i)));
            if let Some(id) = free {
                out.push(change(Kind::AddWorker(WorkerNode {
                    id,
                    host: format!("10.0.{}.{}", id / 250, id % 250),
                    port: 5688,
                    worker_type: WorkerType::ComputeNode as i32,
                })));
            }
        }
    }

    fn backfill_progress(&mut self, delta: &mut HummockVersionDelta) {
        let lagging: Vec<u32> = self
            .state
            .hummock
            .table_committed_epochs
            .keys()
            .copied()
            .collect();
        for t in lagging {
            if self.rng.random::<f64>() < 0.1 && !delta.removed_table_ids.contains(&t) {
                delta.removed_table_ids.push(t);
            }
        }
    }

    fn stateful_tables(&mut self, group: u64) -> Vec<u32> {
        if let Some(t) = self.tables_of_group.get(&group) {
            return t.clone();
        }
        let t = self.scan_stateful_tables(group);
        self.tables_of_group.insert(group, t.clone());
        t
    }

    fn scan_stateful_tables(&self, group: u64) -> Vec<u32> {
        let g = &self.state.hummock.groups[&group];
        if !g.member_table_ids.is_empty() {
            return g.member_table_ids.clone();
        }
        let dedicated: std::collections::HashSet<u32> = self
            .state
            .hummock
            .groups
            .values()
            .flat_map(|g| g.member_table_ids.iter().copied())
            .collect();
        let want_mv = group == STATIC_GROUPS[1];
        self.state
            .catalog
            .values()
            .filter(|o| is_relation_with_state(o.kind()) && !dedicated.contains(&o.id))
            .filter(|o| {
                (o.kind() == CatalogKind::MaterializedView
                    || o.kind() == CatalogKind::InternalTable)
                    == want_mv
            })
            .map(|o| o.id)
            .collect()
    }

    fn new_sst(&mut self, ids: &mut Ids, tables: &[u32], epoch: u64, out: &mut Vec<SstableInfo>) {
        let object_id = ids.take(IdCategory::SstableObject);
        let n = self.rng.random_range(1..=3usize).min(tables.len());
        let mut t: Vec<u32> = tables.choose_multiple(&mut self.rng, n).copied().collect();
        t.sort_unstable();
        let lo = t.first().copied().unwrap_or(0);
        let hi = t.last().copied().unwrap_or(0);
        let size = self.rng.random_range(64 << 10..32 << 20);
        let mk = |sst_id: u64, left: Vec<u8>, right: Vec<u8>, file_size: u64| SstableInfo {
            object_id,
            sst_id,
            key_range: Some(KeyRange {
                left,
                right,
                right_exclusive: false,
            }),
            file_size,
            table_ids: t.clone(),
            min_epoch: epoch.saturating_sub(self.cfg.epoch_interval_ms << 16),
            max_epoch: epoch,
        };
        let left = [
            lo.to_be_bytes().as_slice(),
            &self.rng.random::<u32>().to_be_bytes(),
        ]
        .concat();
        let right = [hi.to_be_bytes().as_slice(), &[0xff; 4]].concat();
        if self.rng.random::<f64>() < 0.1 {
            // An object split in two SSTs (as a group split does): one object, two sst_ids.
            let mid = [lo.to_be_bytes().as_slice(), &[0x80, 0, 0, 0]].concat();
            out.push(mk(object_id, left, mid.clone(), size / 2));
            let second = ids.take(IdCategory::SstableObject);
            out.push(mk(second, mid, right, size - size / 2));
        } else {
            out.push(mk(object_id, left, right, size));
        }
    }

    fn flush(&mut self, ids: &mut Ids, delta: &mut HummockVersionDelta, epoch: u64) {
        let destroyed: Vec<u64> = delta
            .group_deltas
            .iter()
            .filter(|g| matches!(g.delta, Some(Delta::GroupDestroy(_))))
            .map(|g| g.group_id)
            .collect();
        let groups: Vec<u64> = self
            .state
            .hummock
            .groups
            .keys()
            .copied()
            .filter(|g| !destroyed.contains(g))
            .collect();
        for g in groups {
            let tables = self.stateful_tables(g);
            if tables.is_empty() || self.rng.random::<f64>() < 0.3 {
                continue;
            }
            let mut ssts = Vec::new();
            for _ in 0..self.rng.random_range(1..=2) {
                self.new_sst(ids, &tables, epoch, &mut ssts);
            }
            delta.group_deltas.push(GroupDelta {
                group_id: g,
                delta: Some(Delta::NewL0SubLevel(NewL0SubLevel {
                    sub_level_id: delta.id,
                    ssts,
                })),
            });
        }
    }

    /// One compaction task in a group no other delta of this epoch touches. Returns how
    /// many more SSTs it removes than it inserts, or `None` when no group is left.
    fn compact(
        &mut self,
        ids: &mut Ids,
        delta: &mut HummockVersionDelta,
        epoch: u64,
    ) -> Option<usize> {
        let touched: std::collections::HashSet<u64> = delta
            .group_deltas
            .iter()
            .filter(|g| !matches!(g.delta, Some(Delta::NewL0SubLevel(_))))
            .map(|g| g.group_id)
            .collect();
        let groups: Vec<u64> = self
            .state
            .hummock
            .groups
            .iter()
            .filter(|(id, g)| !touched.contains(id) && !g.is_empty())
            .map(|(id, _)| *id)
            .collect();
        let &gid = groups.choose(&mut self.rng)?;
        let tables = self.stateful_tables(gid);
        let g = self.state.hummock.groups[&gid].clone();
        let shrink = self.state.hummock.sst_count() > self.cfg.target_ssts;
        ids.take(IdCategory::CompactionTask);
        // L0 → L1 once enough sub-levels pile up, else Ln → Ln+1 for the fullest level.
        let (from, to, removed_from): (u32, u32, Vec<u64>) = if g.l0.len() >= 3 {
            (
                0,
                1,
                g.l0.values().flat_map(|s| s.keys().copied()).collect(),
            )
        } else {
            let caps = |l: u32| 4usize * 4usize.pow(l);
            let Some(l) = (1..MAX_LEVEL)
                .find(|l| g.levels[*l as usize - 1].len() > caps(*l))
                .or_else(|| (1..MAX_LEVEL).find(|l| !g.levels[*l as usize - 1].is_empty()))
            else {
                return Some(0);
            };
            let level: Vec<u64> = g.levels[l as usize - 1].keys().copied().collect();
            let n = if shrink {
                self.rng.random_range(8..=32usize)
            } else {
                self.rng.random_range(1..=4usize)
            }
            .min(level.len());
            (
                l,
                l + 1,
                level.choose_multiple(&mut self.rng, n).copied().collect(),
            )
        };
        let next: Vec<u64> = g.levels[to as usize - 1].keys().copied().collect();
        let overlap_n = self.rng.random_range(0..=3usize).min(next.len());
        let removed_to: Vec<u64> = next
            .choose_multiple(&mut self.rng, overlap_n)
            .copied()
            .collect();
        let n_in = removed_from.len() + removed_to.len();
        let n_out = if shrink {
            (n_in / 4).max(1)
        } else {
            n_in.max(1)
        };
        let mut inserted = Vec::new();
        let tables = if tables.is_empty() { vec![0] } else { tables };
        while inserted.len() < n_out {
            self.new_sst(ids, &tables, epoch, &mut inserted);
        }
        let net = n_in.saturating_sub(inserted.len());
        delta.group_deltas.push(GroupDelta {
            group_id: gid,
            delta: Some(Delta::IntraLevel(IntraLevelDelta {
                level_idx: from,
                l0_sub_level_id: 0,
                removed_sst_ids: removed_from,
                inserted_ssts: vec![],
            })),
        });
        delta.group_deltas.push(GroupDelta {
            group_id: gid,
            delta: Some(Delta::IntraLevel(IntraLevelDelta {
                level_idx: to,
                l0_sub_level_id: 0,
                removed_sst_ids: removed_to,
                inserted_ssts: inserted,
            })),
        });
        // Time travel reaches back ten minutes; compaction may drop older versions of keys.
        let safe = epoch.saturating_sub((600_000u64) << 16);
        if safe > self.state.hummock.safe_epoch {
            delta.safe_epoch = safe;
        }
        Some(net)
    }
}

/// Whether a change can alter which tables a compaction group's SSTs hold (the catalog or
/// the set of groups).
fn changes_table_sets(c: &Change) -> bool {
    match &c.kind {
        Some(Kind::CreateCatalog(_)) | Some(Kind::AlterCatalog(_)) | Some(Kind::DropCatalog(_)) => {
            true
        }
        Some(Kind::HummockDelta(d)) => d.group_deltas.iter().any(|g| {
            matches!(
                g.delta,
                Some(Delta::GroupConstruct(_)) | Some(Delta::GroupDestroy(_))
            )
        }),
        _ => false,
    }
}

/// Whether a create or alter earlier in the batch makes `user` an owner.
fn owns_in_batch(batch: &[Change], user: u32) -> bool {
    batch.iter().any(|c| matches!(&c.kind, Some(Kind::CreateCatalog(o)) | Some(Kind::AlterCatalog(o)) if o.owner == user))
}

#[allow(clippy::too_many_arguments)]
fn obj(
    id: u32,
    kind: CatalogKind,
    name: &str,
    database_id: u32,
    schema_id: u32,
    owner: u32,
    def: &str,
    deps: Vec<u32>,
) -> CatalogObject {
    CatalogObject {
        id,
        kind: kind as i32,
        name: name.into(),
        database_id,
        schema_id,
        owner,
        definition: def.into(),
        dependencies: deps,
    }
}

/// Where `metapitr simulate` writes its truth files: at every `every`-th epoch, the
/// JSONL export of the simulator's own state as `dir/<epoch>.jsonl`.
#[derive(Debug, Clone)]
pub struct TruthOptions {
    pub dir: PathBuf,
    pub every: u64,
}

/// A simulation run against a recorder.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub sim: SimConfig,
    pub epochs: u64,
    /// Take a snapshot every N epochs. Default `None`.
    pub snapshot_every: Option<u64>,
    pub truth: Option<TruthOptions>,
    /// Commits in flight at once (they share fsyncs). Default 32.
    pub in_flight: usize,
    pub recorder: RecorderOptions,
    /// Write every SST object the simulator creates here. Default `None`.
    pub hummock_storage: Option<Repo>,
    /// Append each epoch to this file once its commit is acknowledged (durable).
    pub ack_log: Option<std::path::PathBuf>,
    /// Apply this retention policy after every snapshot. Default `None`.
    pub retention: Option<Policy>,
    /// Every N epochs, delete from the Hummock storage the objects that left the live
    /// version and that gc-check reports safe. Default `None`.
    pub vacuum_every: Option<u64>,
    /// Every N epochs, record the archive's lag behind the commits
    /// ([`RunReport::archive_lag_ms`]). Default `None`.
    pub lag_every: Option<u64>,
    /// Measure the history as plain JSON ([`RunReport::history_json_bytes`]). Default false.
    pub measure_json: bool,
    /// Advanced by one per epoch. Default hidden.
    pub progress: crate::progress::Progress,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            sim: SimConfig::default(),
            epochs: 1000,
            snapshot_every: None,
            truth: None,
            in_flight: 32,
            recorder: RecorderOptions {
                snapshot_every_ms: None,
                ..Default::default()
            },
            hummock_storage: None,
            ack_log: None,
            lag_every: None,
            measure_json: false,
            retention: None,
            vacuum_every: None,
            progress: crate::progress::Progress::hidden(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub epochs: u64,
    pub first_epoch: u64,
    pub last_epoch: u64,
    pub records: u64,
    pub snapshots: Vec<crate::pb::SnapshotEntry>,
    pub truth_files: Vec<(u64, PathBuf)>,
    pub archive: ArchiveStatus,
    pub final_state_ssts: usize,
    pub final_catalog_objects: usize,
    /// SST objects written to the Hummock storage, and deleted from it by the vacuum.
    pub objects_written: u64,
    pub objects_vacuumed: u64,
    /// Retention passes that moved the window, and the window's start at the end.
    pub retention_moves: u64,
    pub window_start: u64,
    /// Archive lag samples (see [`RunOptions::lag_every`]): the wall-clock age of the
    /// oldest acknowledged commit not yet archived (0 when everything is archived), the
    /// data a crash of the machine at that moment could lose.
    pub archive_lag_ms: Vec<u64>,
    /// With [`RunOptions::measure_json`]: the history this run archived, as plain JSON:
    /// every record as a line (`jsonl::change_json_len`) plus, for every snapshot, the
    /// state's JSONL export.
    pub history_json_bytes: u64,
}

/// The simulated vacuum: objects that left the live version wait here until a pin set
/// covers the epoch they left at, then go if gc-check says they are safe.
#[derive(Default)]
struct Vacuum {
    /// (epoch the object left at, object id), in epoch order.
    departed: std::collections::VecDeque<(u64, u64)>,
    /// Left at an epoch the pin set covers, but pinned when last asked.
    waiting: RoaringTreemap,
}

impl Vacuum {
    async fn run(&mut self, repo: &Repo, storage: &Repo) -> Result<u64> {
        let pins = crate::pin::load_all(repo).await?;
        let covered_to = pins.iter().map(|p| p.to_epoch).max().unwrap_or(0);
        while self.departed.front().is_some_and(|(e, _)| *e <= covered_to) {
            if let Some((_, o)) = self.departed.pop_front() {
                self.waiting.insert(o);
            }
        }
        let safe = match crate::pin::gc_check(&pins, covered_to, &self.waiting) {
            crate::pin::GcAnswer::Safe(ids) => ids,
            crate::pin::GcAnswer::NotCovered { .. } => return Ok(0),
        };
        for id in &safe {
            storage.delete(&crate::hummock::object_key(*id)).await?;
            self.waiting.remove(*id);
        }
        Ok(safe.len() as u64)
    }
}

/// Runs the simulator into a recorder on `wal_dir` archiving to the repo at `repo_url`.
/// Continues from what `wal_dir` already holds. The repo uses the simulator's clock.
pub async fn run(
    repo: impl Into<crate::repo::RepoLocation>,
    wal_dir: &std::path::Path,
    opts: RunOptions,
) -> Result<RunReport> {
    let mut cfg = opts.sim.clone();
    if let Some(h) = &opts.hummock_storage {
        cfg.hummock_location = h.url().to_string();
    }
    let mut sim = Simulator::new(cfg);
    let repo = Repo::open_location(&repo.into(), sim.clock())?.with_writer_id(opts.sim.seed);
    run_with_repo(repo, wal_dir, opts, &mut sim).await
}

/// Where acknowledged epochs are appended, one per line, each with one write(2) so that a
/// killed process leaves only whole lines.
struct AckLog(Option<(std::fs::File, std::path::PathBuf)>);

impl AckLog {
    fn open(path: Option<&std::path::Path>) -> Result<AckLog> {
        let Some(p) = path else {
            return Ok(AckLog(None));
        };
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .map_err(|e| Error::io(p, e))?;
        Ok(AckLog(Some((f, p.to_path_buf()))))
    }

    fn ack(&mut self, epoch: u64) -> Result<()> {
        use std::io::Write;
        if let Some((f, p)) = &mut self.0 {
            f.write_all(format!("{epoch}\n").as_bytes())
                .map_err(|e| Error::io(&*p, e))?;
        }
        Ok(())
    }
}

/// [`run`] with a repo (whose clock should be `sim.clock()`) and simulator of the caller's.
pub async fn run_with_repo(
    repo: Repo,
    wal_dir: &std::path::Path,
    opts: RunOptions,
    sim: &mut Simulator,
) -> Result<RunReport> {
    let rec = Recorder::open(wal_dir, repo, opts.recorder.clone()).await?;
    let existing = rec.with_state(|s| s.clone())?;
    let base_lsn = existing.lsn;
    if existing.lsn > 0 || existing.epoch > 0 {
        // The repo and the recorder read the caller's clock: keep it.
        *sim = Simulator::resume_on(opts.sim.clone(), existing, sim.clock());
    }
    if let Some(t) = &opts.truth {
        std::fs::create_dir_all(&t.dir).map_err(|e| Error::io(&t.dir, e))?;
    }
    let mut report = RunReport::default();
    let mut pending = std::collections::VecDeque::new();
    let mut acks = AckLog::open(opts.ack_log.as_deref())?;
    let mut unarchived = std::collections::VecDeque::new();
    let mut vacuum = Vacuum::default();
    for i in 0..opts.epochs {
        let (epoch, changes) = sim.next_epoch()?;
        if let Some(storage) = &opts.hummock_storage {
            // Compute nodes upload SSTs before the meta service commits the delta naming them.
            let mut objects: Vec<u64> = changes
                .iter()
                .flat_map(crate::model::inserted_objects)
                .collect();
            objects.sort_unstable();
            objects.dedup();
            for o in &objects {
                storage
                    .put_new(
                        &crate::hummock::object_key(*o),
                        crate::hummock::sst_body(*o),
                    )
                    .await?;
            }
            report.objects_written += objects.len() as u64;
            vacuum
                .departed
                .extend(sim.departed().iter().map(|o| (epoch, *o)));
        }
        if opts.measure_json {
            // The simulator's truth does not count lsns; the recorder numbers records
            // consecutively after what the WAL held.
            let lsn = base_lsn + report.records;
            report.history_json_bytes += changes
                .iter()
                .enumerate()
                .map(|(i, c)| crate::jsonl::change_json_len(lsn + i as u64 + 1, epoch, c))
                .sum::<u64>();
        }
        report.records += changes.len() as u64;
        if report.first_epoch == 0 {
            report.first_epoch = epoch;
        }
        report.last_epoch = epoch;
        pending.push_back((epoch, rec.commit_nowait(epoch, changes)?));
        if opts.lag_every.is_some() {
            // Wall-clock measurement of the archive lag (a benchmark, not simulated time).
            unarchived.push_back((epoch, std::time::Instant::now()));
        }
        while pending.len() >= opts.in_flight.max(1) {
            if let Some((e, f)) = pending.pop_front() {
                f.await?;
                acks.ack(e)?;
            }
        }
        let n = i + 1;
        opts.progress.inc(1);
        let truth_due = opts
            .truth
            .as_ref()
            .is_some_and(|t| t.every > 0 && n % t.every == 0);
        if truth_due || opts.snapshot_every.is_some_and(|k| k > 0 && n % k == 0) {
            // Truth is written only for acknowledged epochs, so that a crash never leaves
            // a truth file for an epoch the WAL lost.
            for (e, f) in pending.drain(..) {
                f.await?;
                acks.ack(e)?;
            }
        }
        if opts.snapshot_every.is_some_and(|k| k > 0 && n % k == 0) {
            report.snapshots.push(rec.snapshot().await?);
            if opts.measure_json {
                report.history_json_bytes += crate::jsonl::export_len(sim.state());
            }
            if let Some(policy) = opts.retention {
                let r = crate::retention::apply(rec.repo(), policy, false, false).await?;
                if r.base_snapshot.is_some() {
                    report.retention_moves += 1;
                }
            }
        }
        if opts.lag_every.is_some_and(|k| k > 0 && n % k == 0) {
            let archived = rec.archive_status().map_or(0, |s| s.archived_epoch);
            while unarchived.front().is_some_and(|(e, _)| *e <= archived) {
                unarchived.pop_front();
            }
            let age = unarchived
                .front()
                .map_or(0, |(_, t): &(u64, std::time::Instant)| {
                    t.elapsed().as_millis() as u64
                });
            report.archive_lag_ms.push(age);
        }
        if let (Some(k), Some(storage)) = (opts.vacuum_every, &opts.hummock_storage) {
            if k > 0 && n % k == 0 {
                report.objects_vacuumed += vacuum.run(rec.repo(), storage).await?;
            }
        }
        if let Some(t) = opts
            .truth
            .as_ref()
            .filter(|t| t.every > 0 && n % t.every == 0)
        {
            let path = t.dir.join(format!("{epoch}.jsonl"));
            let tmp = t.dir.join(format!("{epoch}.jsonl.tmp"));
            let f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
            let mut w = std::io::BufWriter::new(f);
            crate::jsonl::write(sim.state(), &mut w).map_err(|e| Error::io(&tmp, e))?;
            drop(w);
            std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
            report.truth_files.push((epoch, path));
        }
    }
    for (e, f) in pending.drain(..) {
        f.await?;
        acks.ack(e)?;
    }
    report.epochs = opts.epochs;
    report.final_state_ssts = sim.state().hummock.sst_count();
    report.final_catalog_objects = sim.state().catalog.len();
    let repo = rec.repo().clone();
    report.archive = rec.close().await?;
    if let (Some(_), Some(storage)) = (opts.vacuum_every, &opts.hummock_storage) {
        report.objects_vacuumed += vacuum.run(&repo, storage).await?;
    }
    if let Some(m) = repo.load_manifest().await? {
        report.window_start = crate::retention::window_start(&m, m.newest_timeline()).unwrap_or(0);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Added compute nodes take ids at or below MAX_WORKER_ID, the lowest free one once
    /// the largest is taken, and none when all are.
    #[test]
    fn worker_ids_stay_at_or_below_the_bound() {
        let worker = |id| WorkerNode {
            id,
            host: "h".into(),
            port: 1,
            worker_type: WorkerType::ComputeNode as i32,
        };
        for free in [Some(500), None] {
            let mut state = State::new(1);
            for id in (1..=MAX_WORKER_ID).filter(|i| Some(*i) != free) {
                state.workers.insert(id, worker(id));
            }
            let mut sim = Simulator::resume(SimConfig::default(), state);
            let mut added = Vec::new();
            for _ in 0..200 {
                let mut out = Vec::new();
                sim.cluster_change(&mut out);
                for c in out {
                    if let Some(Kind::AddWorker(w)) = &c.kind {
                        added.push(w.id);
                    }
                }
            }
            assert!(added.iter().all(|id| *id <= MAX_WORKER_ID), "{added:?}");
            match free {
                Some(f) => assert!(added.contains(&f), "{added:?}"),
                None => assert!(added.is_empty(), "{added:?}"),
            }
        }
    }
}
