//! The Hummock version held in memory, indexed so that a delta costs time in proportion
//! to the SSTs it touches, not to the size of the version.

use std::collections::{BTreeMap, HashMap};

use super::error::ApplyError;
use super::pb;
use super::SstableInfo;

/// Where an SST sits inside its compaction group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SstLoc {
    /// An L0 sub-level, by sub_level_id.
    L0(u64),
    /// Level 1..=max_level.
    Level(u32),
}

/// L0: sub-levels by id, each its SSTs by sst_id. No sub-level is ever empty.
pub type Level0 = BTreeMap<u64, BTreeMap<u64, SstableInfo>>;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Group {
    pub max_level: u32,
    pub member_table_ids: Vec<u32>,
    pub l0: Level0,
    /// `levels[i]` is level i+1.
    pub levels: Vec<BTreeMap<u64, SstableInfo>>,
}

impl Group {
    pub fn is_empty(&self) -> bool {
        self.l0.is_empty() && self.levels.iter().all(|l| l.is_empty())
    }

    pub fn sst_count(&self) -> usize {
        self.l0.values().map(|s| s.len()).sum::<usize>()
            + self.levels.iter().map(|l| l.len()).sum::<usize>()
    }

    /// Every SST of the group with its location.
    pub fn ssts(&self) -> impl Iterator<Item = (SstLoc, &SstableInfo)> {
        let l0 = self
            .l0
            .iter()
            .flat_map(|(sub, ssts)| ssts.values().map(move |s| (SstLoc::L0(*sub), s)));
        let ln = self
            .levels
            .iter()
            .enumerate()
            .flat_map(|(i, l)| l.values().map(move |s| (SstLoc::Level(i as u32 + 1), s)));
        l0.chain(ln)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Version {
    pub id: u64,
    pub max_committed_epoch: u64,
    pub safe_epoch: u64,
    pub groups: BTreeMap<u64, Group>,
    pub table_committed_epochs: BTreeMap<u32, u64>,
    /// sst_id → (group, location).
    sst_index: HashMap<u64, (u64, SstLoc)>,
    /// object_id → number of sst_ids that reference it.
    object_refs: HashMap<u64, u32>,
}

impl PartialEq for Version {
    fn eq(&self, o: &Self) -> bool {
        self.id == o.id
            && self.max_committed_epoch == o.max_committed_epoch
            && self.safe_epoch == o.safe_epoch
            && self.groups == o.groups
            && self.table_committed_epochs == o.table_committed_epochs
    }
}

impl Version {
    pub fn sst_count(&self) -> usize {
        self.sst_index.len()
    }

    /// Distinct SST object ids referenced by the version.
    pub fn object_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.object_refs.keys().copied()
    }

    pub fn object_count(&self) -> usize {
        self.object_refs.len()
    }

    pub fn references_object(&self, object_id: u64) -> bool {
        self.object_refs.contains_key(&object_id)
    }

    /// The SST with this id, if the version holds it.
    pub fn sst(&self, sst_id: u64) -> Option<&SstableInfo> {
        let (group, loc) = self.locate(sst_id)?;
        let g = self.groups.get(&group)?;
        match loc {
            SstLoc::L0(sub) => g.l0.get(&sub)?.get(&sst_id),
            SstLoc::Level(l) => g.levels.get(l as usize - 1)?.get(&sst_id),
        }
    }

    pub fn locate(&self, sst_id: u64) -> Option<(u64, SstLoc)> {
        self.sst_index.get(&sst_id).copied()
    }

    /// Every SST with its group and location, in (group, location, sst_id) order.
    pub fn ssts(&self) -> impl Iterator<Item = (u64, SstLoc, &SstableInfo)> {
        self.groups
            .iter()
            .flat_map(|(gid, g)| g.ssts().map(move |(loc, s)| (*gid, loc, s)))
    }

    pub fn total_file_size(&self) -> u64 {
        self.ssts().map(|(_, _, s)| s.file_size).sum()
    }

    pub(crate) fn insert_group(&mut self, id: u64, g: Group) {
        for (loc, s) in g.ssts() {
            self.sst_index.insert(s.sst_id, (id, loc));
            *self.object_refs.entry(s.object_id).or_default() += 1;
        }
        self.groups.insert(id, g);
    }

    pub(crate) fn remove_group(&mut self, id: u64) -> Option<Group> {
        let g = self.groups.remove(&id)?;
        for (_, s) in g.ssts() {
            self.sst_index.remove(&s.sst_id);
            self.unref_object(s.object_id);
        }
        Some(g)
    }

    fn unref_object(&mut self, object_id: u64) {
        if let Some(n) = self.object_refs.get_mut(&object_id) {
            *n -= 1;
            if *n == 0 {
                self.object_refs.remove(&object_id);
            }
        }
    }

    /// Inserts an SST; the caller has checked that the group and level exist and the
    /// sst_id is new.
    pub(crate) fn insert_sst(
        &mut self,
        group: u64,
        loc: SstLoc,
        sst: SstableInfo,
    ) -> Result<(), ApplyError> {
        if self.sst_index.contains_key(&sst.sst_id) {
            return Err(ApplyError::SstExists { sst_id: sst.sst_id });
        }
        let g = self
            .groups
            .get_mut(&group)
            .ok_or(ApplyError::GroupNotFound { group })?;
        let slot = match loc {
            SstLoc::L0(sub) => g.l0.entry(sub).or_default(),
            SstLoc::Level(l) => {
                if l == 0 || l > g.max_level {
                    return Err(ApplyError::LevelOutOfRange {
                        group,
                        level: l,
                        max_level: g.max_level,
                    });
                }
                &mut g.levels[l as usize - 1]
            }
        };
        self.sst_index.insert(sst.sst_id, (group, loc));
        *self.object_refs.entry(sst.object_id).or_default() += 1;
        slot.insert(sst.sst_id, sst);
        Ok(())
    }

    /// Removes an SST by id, dropping its L0 sub-level if that becomes empty.
    pub(crate) fn remove_sst(&mut self, sst_id: u64) -> Option<(u64, SstLoc, SstableInfo)> {
        let (group, loc) = self.sst_index.remove(&sst_id)?;
        let g = self.groups.get_mut(&group)?;
        let info = match loc {
            SstLoc::L0(sub) => {
                let level = g.l0.get_mut(&sub)?;
                let info = level.remove(&sst_id);
                if level.is_empty() {
                    g.l0.remove(&sub);
                }
                info
            }
            SstLoc::Level(l) => g.levels.get_mut(l as usize - 1)?.remove(&sst_id),
        }?;
        self.unref_object(info.object_id);
        Some((group, loc, info))
    }

    pub fn to_proto(&self) -> pb::HummockVersion {
        pb::HummockVersion {
            id: self.id,
            max_committed_epoch: self.max_committed_epoch,
            safe_epoch: self.safe_epoch,
            groups: self
                .groups
                .iter()
                .map(|(id, g)| pb::CompactionGroup {
                    id: *id,
                    max_level: g.max_level,
                    member_table_ids: g.member_table_ids.clone(),
                    l0_sub_levels: g
                        .l0
                        .iter()
                        .map(|(sub, ssts)| pb::SubLevel {
                            sub_level_id: *sub,
                            ssts: ssts.values().cloned().collect(),
                        })
                        .collect(),
                    levels: g
                        .levels
                        .iter()
                        .enumerate()
                        .map(|(i, l)| pb::Level {
                            level_idx: i as u32 + 1,
                            ssts: l.values().cloned().collect(),
                        })
                        .collect(),
                })
                .collect(),
            table_committed_epochs: self
                .table_committed_epochs
                .iter()
                .map(|(t, e)| pb::TableCommittedEpoch {
                    table_id: *t,
                    epoch: *e,
                })
                .collect(),
        }
    }

    pub fn from_proto(p: pb::HummockVersion) -> Result<Self, ApplyError> {
        let mut v = Version {
            id: p.id,
            max_committed_epoch: p.max_committed_epoch,
            safe_epoch: p.safe_epoch,
            table_committed_epochs: p
                .table_committed_epochs
                .iter()
                .map(|t| (t.table_id, t.epoch))
                .collect(),
            ..Default::default()
        };
        for g in p.groups {
            if v.groups.contains_key(&g.id) {
                return Err(ApplyError::GroupExists { group: g.id });
            }
            v.insert_group(
                g.id,
                Group {
                    max_level: g.max_level,
                    member_table_ids: g.member_table_ids,
                    levels: vec![BTreeMap::new(); g.max_level as usize],
                    l0: BTreeMap::new(),
                },
            );
            for sub in g.l0_sub_levels {
                if sub.ssts.is_empty() {
                    return Err(ApplyError::EmptySubLevel {
                        group: g.id,
                        sub_level_id: sub.sub_level_id,
                    });
                }
                for s in sub.ssts {
                    v.insert_sst(g.id, SstLoc::L0(sub.sub_level_id), s)?;
                }
            }
            for l in g.levels {
                for s in l.ssts {
                    v.insert_sst(g.id, SstLoc::Level(l.level_idx), s)?;
                }
            }
        }
        Ok(v)
    }
}
