//! Applying changes: validation, the undo log that makes a batch all-or-nothing, and the
//! catalog indexes kept beside the state.

use std::collections::BTreeMap;

use super::error::ApplyError;
use super::hummock::{Group, SstLoc};
use super::pb::{self, change::Kind, group_delta::Delta};
use super::{
    catalog_kind_name, id_category_name, CatalogKind, CatalogObject, Change, IdCategory, State,
    User,
};

/// What [`State::check_loaded`] found at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Catalog(u32),
    User(u32),
}

/// One primitive mutation's inverse.
enum Undo {
    Catalog(u32, Option<CatalogObject>),
    User(u32, Option<User>),
    Id(usize, u64),
    Param(String, Option<String>),
    ClusterId(String),
    Worker(u32, Option<pb::WorkerNode>),
    HummockScalars {
        id: u64,
        max_committed_epoch: u64,
        safe_epoch: u64,
    },
    TableEpoch(u32, Option<u64>),
    SstInserted(u64),
    SstRemoved(u64, SstLoc, pb::SstableInfo),
    GroupCreated(u64),
    GroupDestroyed(u64, Group),
}

/// Where undo records go: nowhere when replaying a log that was valid when written.
type UndoLog<'a> = Option<&'a mut Vec<Undo>>;

fn push(log: &mut UndoLog<'_>, u: impl FnOnce() -> Undo) {
    if let Some(l) = log.as_deref_mut() {
        l.push(u());
    }
}

fn name_class(k: CatalogKind) -> u8 {
    match k {
        CatalogKind::Database => 0,
        CatalogKind::Schema => 1,
        _ => 2,
    }
}

impl State {
    /// Applies a batch committed at `epoch`, all or nothing: on error the state is as it
    /// was and the error names the change's index.
    pub fn apply_batch(
        &mut self,
        epoch: u64,
        changes: &[Change],
    ) -> Result<(), (usize, ApplyError)> {
        if epoch < self.epoch {
            return Err((
                0,
                ApplyError::EpochRegressed {
                    epoch,
                    current: self.epoch,
                },
            ));
        }
        let mut undo = Vec::new();
        for (i, c) in changes.iter().enumerate() {
            if let Err(e) = self.apply_change(c, Some(&mut undo)) {
                self.rollback(undo);
                return Err((i, e));
            }
        }
        self.epoch = epoch;
        Ok(())
    }

    /// Applies one logged record. Used for recovery and restore, where the log was valid
    /// when it was written; an error here means the log or the base state is wrong.
    pub fn replay(&mut self, lsn: u64, epoch: u64, change: &Change) -> Result<(), ApplyError> {
        if epoch < self.epoch {
            return Err(ApplyError::EpochRegressed {
                epoch,
                current: self.epoch,
            });
        }
        self.apply_change(change, None)?;
        self.epoch = epoch;
        self.lsn = lsn;
        Ok(())
    }

    fn rollback(&mut self, undo: Vec<Undo>) {
        for u in undo.into_iter().rev() {
            match u {
                Undo::Catalog(id, old) => {
                    self.remove_catalog(id);
                    if let Some(o) = old {
                        self.put_catalog(o);
                    }
                }
                Undo::User(id, old) => {
                    self.users.remove(&id);
                    if let Some(u) = old {
                        self.put_user(u);
                    }
                }
                Undo::Id(i, v) => self.ids[i] = v,
                Undo::Param(k, old) => match old {
                    Some(v) => {
                        self.params.insert(k, v);
                    }
                    None => {
                        self.params.remove(&k);
                    }
                },
                Undo::ClusterId(c) => self.cluster_id = c,
                Undo::Worker(id, old) => match old {
                    Some(w) => {
                        self.workers.insert(id, w);
                    }
                    None => {
                        self.workers.remove(&id);
                    }
                },
                Undo::HummockScalars {
                    id,
                    max_committed_epoch,
                    safe_epoch,
                } => {
                    self.hummock.id = id;
                    self.hummock.max_committed_epoch = max_committed_epoch;
                    self.hummock.safe_epoch = safe_epoch;
                }
                Undo::TableEpoch(t, old) => match old {
                    Some(e) => {
                        self.hummock.table_committed_epochs.insert(t, e);
                    }
                    None => {
                        self.hummock.table_committed_epochs.remove(&t);
                    }
                },
                Undo::SstInserted(sst_id) => {
                    self.hummock.remove_sst(sst_id);
                }
                Undo::SstRemoved(group, loc, info) => {
                    // Re-inserting what was just removed from an existing place cannot fail.
                    let _ = self.hummock.insert_sst(group, loc, info);
                }
                Undo::GroupCreated(g) => {
                    self.hummock.remove_group(g);
                }
                Undo::GroupDestroyed(id, g) => self.hummock.insert_group(id, g),
            }
        }
    }

    fn apply_change(&mut self, c: &Change, mut undo: UndoLog<'_>) -> Result<(), ApplyError> {
        let kind = c.kind.as_ref().ok_or(ApplyError::EmptyChange)?;
        match kind {
            Kind::CreateCatalog(o) => {
                if self.catalog.contains_key(&o.id) {
                    return Err(ApplyError::CatalogExists { id: o.id });
                }
                self.check_catalog(o)?;
                push(&mut undo, || Undo::Catalog(o.id, None));
                self.put_catalog(o.clone());
            }
            Kind::AlterCatalog(o) => {
                let old = self
                    .catalog
                    .get(&o.id)
                    .ok_or(ApplyError::CatalogNotFound { id: o.id })?;
                if old.kind != o.kind {
                    return Err(ApplyError::CatalogKindChanged {
                        id: o.id,
                        was: catalog_kind_name(old.kind()),
                        now: catalog_kind_name(o.kind()),
                    });
                }
                self.check_catalog(o)?;
                let old = self.remove_catalog(o.id);
                push(&mut undo, || Undo::Catalog(o.id, old));
                self.put_catalog(o.clone());
            }
            Kind::DropCatalog(id) => {
                if !self.catalog.contains_key(id) {
                    return Err(ApplyError::CatalogNotFound { id: *id });
                }
                if let Some(n) = self.referrers.get(id).filter(|n| **n > 0) {
                    return Err(ApplyError::HasReferrers {
                        id: *id,
                        referrers: *n,
                    });
                }
                let old = self.remove_catalog(*id);
                push(&mut undo, || Undo::Catalog(*id, old));
            }
            Kind::HummockDelta(d) => self.apply_delta(d, undo)?,
            Kind::IdAdvance(g) => {
                let c = IdCategory::try_from(g.category)
                    .ok()
                    .filter(|c| *c != IdCategory::Unspecified)
                    .ok_or(ApplyError::UnknownIdCategory(g.category))?;
                let current = self.ids[c as usize];
                if g.next < current {
                    return Err(ApplyError::IdRegressed {
                        name: id_category_name(c),
                        current,
                        next: g.next,
                    });
                }
                push(&mut undo, || Undo::Id(c as usize, current));
                self.ids[c as usize] = g.next;
            }
            Kind::CreateUser(u) => {
                if self.users.contains_key(&u.id) {
                    return Err(ApplyError::UserExists { id: u.id });
                }
                self.check_user_name(u)?;
                push(&mut undo, || Undo::User(u.id, None));
                self.put_user(u.clone());
            }
            Kind::AlterUser(u) => {
                if !self.users.contains_key(&u.id) {
                    return Err(ApplyError::UserNotFound { id: u.id });
                }
                self.check_user_name(u)?;
                let old = self.users.remove(&u.id);
                push(&mut undo, || Undo::User(u.id, old));
                self.put_user(u.clone());
            }
            Kind::DropUser(id) => {
                if !self.users.contains_key(id) {
                    return Err(ApplyError::UserNotFound { id: *id });
                }
                if let Some(o) = self.catalog.values().find(|o| o.owner == *id) {
                    return Err(ApplyError::UserOwnsObjects {
                        id: *id,
                        object: o.id,
                    });
                }
                let old = self.users.remove(id);
                push(&mut undo, || Undo::User(*id, old));
            }
            Kind::Grant(g) => {
                let p = g
                    .privilege
                    .ok_or(ApplyError::GrantMissingPrivilege { user_id: g.user_id })?;
                let old = self
                    .users
                    .get(&g.user_id)
                    .cloned()
                    .ok_or(ApplyError::UserNotFound { id: g.user_id })?;
                let mut u = old.clone();
                u.grants
                    .retain(|x| (x.object_id, x.action) != (p.object_id, p.action));
                u.grants.push(p);
                push(&mut undo, || Undo::User(g.user_id, Some(old)));
                self.put_user(u);
            }
            Kind::Revoke(r) => {
                let old = self
                    .users
                    .get(&r.user_id)
                    .cloned()
                    .ok_or(ApplyError::UserNotFound { id: r.user_id })?;
                let mut u = old.clone();
                let before = u.grants.len();
                u.grants
                    .retain(|x| (x.object_id, x.action) != (r.object_id, r.action));
                if u.grants.len() == before {
                    return Err(ApplyError::GrantNotFound {
                        user_id: r.user_id,
                        object_id: r.object_id,
                        action: r.action().as_str_name().to_string(),
                    });
                }
                push(&mut undo, || Undo::User(r.user_id, Some(old)));
                self.put_user(u);
            }
            Kind::SetParam(p) => {
                let old = self.params.insert(p.name.clone(), p.value.clone());
                push(&mut undo, || Undo::Param(p.name.clone(), old));
            }
            Kind::SetClusterId(id) => {
                let old = std::mem::replace(&mut self.cluster_id, id.clone());
                push(&mut undo, || Undo::ClusterId(old));
            }
            Kind::AddWorker(w) => {
                if self.workers.contains_key(&w.id) {
                    return Err(ApplyError::WorkerExists { id: w.id });
                }
                push(&mut undo, || Undo::Worker(w.id, None));
                self.workers.insert(w.id, w.clone());
            }
            Kind::RemoveWorker(id) => {
                let old = self
                    .workers
                    .remove(id)
                    .ok_or(ApplyError::WorkerNotFound { id: *id })?;
                push(&mut undo, || Undo::Worker(*id, Some(old)));
            }
        }
        Ok(())
    }

    fn apply_delta(
        &mut self,
        d: &pb::HummockVersionDelta,
        mut undo: UndoLog<'_>,
    ) -> Result<(), ApplyError> {
        let v = &self.hummock;
        if d.prev_id != v.id {
            return Err(ApplyError::DeltaChain {
                id: d.id,
                prev_id: d.prev_id,
                current: v.id,
            });
        }
        if d.id <= d.prev_id {
            return Err(ApplyError::DeltaIdNotIncreasing {
                id: d.id,
                prev_id: d.prev_id,
            });
        }
        for (what, current, new) in [
            (
                "max_committed_epoch",
                v.max_committed_epoch,
                d.max_committed_epoch,
            ),
            ("safe_epoch", v.safe_epoch, d.safe_epoch),
        ] {
            if new != 0 && new < current {
                return Err(ApplyError::HummockEpochRegressed { what, current, new });
            }
        }
        push(&mut undo, || Undo::HummockScalars {
            id: v.id,
            max_committed_epoch: v.max_committed_epoch,
            safe_epoch: v.safe_epoch,
        });
        let v = &mut self.hummock;
        v.id = d.id;
        if d.max_committed_epoch != 0 {
            v.max_committed_epoch = d.max_committed_epoch;
        }
        if d.safe_epoch != 0 {
            v.safe_epoch = d.safe_epoch;
        }
        for gd in &d.group_deltas {
            let group = gd.group_id;
            match gd
                .delta
                .as_ref()
                .ok_or(ApplyError::EmptyGroupDelta { group })?
            {
                Delta::GroupConstruct(c) => {
                    if v.groups.contains_key(&group) {
                        return Err(ApplyError::GroupExists { group });
                    }
                    // The same bound a snapshot load applies (a group allocates a level
                    // map per level).
                    if c.max_level > crate::model::MAX_GROUP_LEVELS {
                        return Err(ApplyError::TooManyLevels {
                            group,
                            levels: c.max_level,
                            max: crate::model::MAX_GROUP_LEVELS,
                        });
                    }
                    v.insert_group(
                        group,
                        Group {
                            max_level: c.max_level,
                            member_table_ids: c.member_table_ids.clone(),
                            l0: BTreeMap::new(),
                            levels: vec![BTreeMap::new(); c.max_level as usize],
                        },
                    );
                    push(&mut undo, || Undo::GroupCreated(group));
                }
                Delta::GroupDestroy(_) => {
                    let g = v
                        .groups
                        .get(&group)
                        .ok_or(ApplyError::GroupNotFound { group })?;
                    if !g.is_empty() {
                        return Err(ApplyError::GroupNotEmpty {
                            group,
                            ssts: g.sst_count(),
                        });
                    }
                    if let Some(g) = v.remove_group(group) {
                        push(&mut undo, || Undo::GroupDestroyed(group, g));
                    }
                }
                Delta::NewL0SubLevel(n) => {
                    let g = v
                        .groups
                        .get(&group)
                        .ok_or(ApplyError::GroupNotFound { group })?;
                    if n.ssts.is_empty() {
                        return Err(ApplyError::EmptySubLevel {
                            group,
                            sub_level_id: n.sub_level_id,
                        });
                    }
                    if g.l0.contains_key(&n.sub_level_id) {
                        return Err(ApplyError::SubLevelExists {
                            group,
                            sub_level_id: n.sub_level_id,
                        });
                    }
                    for s in &n.ssts {
                        v.insert_sst(group, SstLoc::L0(n.sub_level_id), s.clone())?;
                        push(&mut undo, || Undo::SstInserted(s.sst_id));
                    }
                }
                Delta::IntraLevel(il) => {
                    let g = v
                        .groups
                        .get(&group)
                        .ok_or(ApplyError::GroupNotFound { group })?;
                    if il.level_idx > g.max_level {
                        return Err(ApplyError::LevelOutOfRange {
                            group,
                            level: il.level_idx,
                            max_level: g.max_level,
                        });
                    }
                    for sst_id in &il.removed_sst_ids {
                        let here = match v.locate(*sst_id) {
                            Some((g, SstLoc::L0(_))) => g == group && il.level_idx == 0,
                            Some((g, SstLoc::Level(l))) => g == group && l == il.level_idx,
                            None => false,
                        };
                        if !here {
                            return Err(ApplyError::SstNotFound {
                                sst_id: *sst_id,
                                group,
                                level: il.level_idx,
                            });
                        }
                        if let Some((g, loc, info)) = v.remove_sst(*sst_id) {
                            push(&mut undo, || Undo::SstRemoved(g, loc, info));
                        }
                    }
                    let loc = if il.level_idx == 0 {
                        SstLoc::L0(il.l0_sub_level_id)
                    } else {
                        SstLoc::Level(il.level_idx)
                    };
                    for s in &il.inserted_ssts {
                        v.insert_sst(group, loc, s.clone())?;
                        push(&mut undo, || Undo::SstInserted(s.sst_id));
                    }
                }
            }
        }
        for t in &d.table_committed_epochs {
            let old = v.table_committed_epochs.insert(t.table_id, t.epoch);
            push(&mut undo, || Undo::TableEpoch(t.table_id, old));
        }
        for t in &d.removed_table_ids {
            let old = v.table_committed_epochs.remove(t);
            push(&mut undo, || Undo::TableEpoch(*t, old));
        }
        Ok(())
    }

    fn check_catalog(&self, o: &CatalogObject) -> Result<(), ApplyError> {
        let kind = o.kind();
        if kind == CatalogKind::Unspecified {
            return Err(ApplyError::CatalogKindMissing { id: o.id });
        }
        let kname = catalog_kind_name(kind);
        if !self.users.contains_key(&o.owner) {
            return Err(ApplyError::OwnerNotFound {
                id: o.id,
                owner: o.owner,
            });
        }
        let parent = |pid: u32, pkind: CatalogKind| -> Result<&CatalogObject, ApplyError> {
            self.catalog
                .get(&pid)
                .filter(|p| p.kind() == pkind)
                .ok_or_else(|| ApplyError::ParentNotFound {
                    kind: kname,
                    id: o.id,
                    name: o.name.clone(),
                    parent_kind: catalog_kind_name(pkind),
                    parent: pid,
                })
        };
        match kind {
            CatalogKind::Database => {}
            CatalogKind::Schema => {
                parent(o.database_id, CatalogKind::Database)?;
            }
            _ => {
                parent(o.database_id, CatalogKind::Database)?;
                let s = parent(o.schema_id, CatalogKind::Schema)?;
                if s.database_id != o.database_id {
                    return Err(ApplyError::SchemaInOtherDatabase {
                        kind: kname,
                        id: o.id,
                        schema: o.schema_id,
                        schema_db: s.database_id,
                        database: o.database_id,
                    });
                }
            }
        }
        for d in &o.dependencies {
            if !self.catalog.contains_key(d) || *d == o.id {
                return Err(ApplyError::DependencyNotFound {
                    kind: kname,
                    id: o.id,
                    dependency: *d,
                });
            }
        }
        if let Some(existing) = self.names.get(&name_key(o)).filter(|e| **e != o.id) {
            return Err(ApplyError::NameTaken {
                name: o.name.clone(),
                existing: *existing,
            });
        }
        Ok(())
    }

    fn check_user_name(&self, u: &User) -> Result<(), ApplyError> {
        match self
            .users
            .values()
            .find(|x| x.name == u.name && x.id != u.id)
        {
            Some(x) => Err(ApplyError::UserNameTaken {
                name: u.name.clone(),
                existing: x.id,
            }),
            None => Ok(()),
        }
    }

    /// Checks a state loaded whole (an import, a store read back) for what applying its
    /// history keeps true and [`State::from_proto`] does not check: every catalog object's
    /// kind, owner, database, schema, dependencies and name, and every user's name. The
    /// error names the object at fault.
    pub fn check_loaded(&self) -> Result<(), (Subject, ApplyError)> {
        for o in self.catalog.values() {
            self.check_catalog(o)
                .map_err(|e| (Subject::Catalog(o.id), e))?;
        }
        let mut names = std::collections::HashMap::new();
        for u in self.users.values() {
            if let Some(existing) = names.insert(u.name.as_str(), u.id) {
                let e = ApplyError::UserNameTaken {
                    name: u.name.clone(),
                    existing,
                };
                return Err((Subject::User(u.id), e));
            }
        }
        Ok(())
    }

    /// Inserts a catalog object, maintaining the indexes. The caller has validated it.
    pub(super) fn put_catalog(&mut self, o: CatalogObject) {
        self.names.insert(name_key(&o), o.id);
        for r in referenced(&o) {
            *self.referrers.entry(r).or_default() += 1;
        }
        self.catalog.insert(o.id, o);
    }

    pub(super) fn remove_catalog(&mut self, id: u32) -> Option<CatalogObject> {
        let o = self.catalog.remove(&id)?;
        self.names.remove(&name_key(&o));
        for r in referenced(&o) {
            if let Some(n) = self.referrers.get_mut(&r) {
                *n -= 1;
                if *n == 0 {
                    self.referrers.remove(&r);
                }
            }
        }
        Some(o)
    }

    pub(super) fn put_user(&mut self, mut u: User) {
        u.grants.sort_by_key(|g| (g.object_id, g.action));
        self.users.insert(u.id, u);
    }
}

fn name_key(o: &CatalogObject) -> (u8, u32, u32, String) {
    let class = name_class(o.kind());
    let (db, schema) = match class {
        0 => (0, 0),
        1 => (o.database_id, 0),
        _ => (o.database_id, o.schema_id),
    };
    (class, db, schema, o.name.clone())
}

/// The ids an object refers to (database, schema, dependencies), each once per mention.
fn referenced(o: &CatalogObject) -> impl Iterator<Item = u32> + '_ {
    let parents = match o.kind() {
        CatalogKind::Database => [None, None],
        CatalogKind::Schema => [Some(o.database_id), None],
        _ => [Some(o.database_id), Some(o.schema_id)],
    };
    parents
        .into_iter()
        .flatten()
        .chain(o.dependencies.iter().copied())
}
