//! Applies version deltas to a version, following RisingWave's
//! `HummockVersion::apply_version_delta` (hummock_sdk, `compaction_group/hummock_version_ext.rs`
//! and `compaction_group/mod.rs` at the pinned commit), group delta by group delta.
//!
//! Where RisingWave asserts (and its meta node would panic), this returns
//! [`Error::Apply`]. A delta whose `prev_id` is not the version's id is refused with
//! [`Error::PrevIdMismatch`]. What is not applied: table watermarks, table change logs and
//! vector indexes are carried over from the base version unchanged (docs/format.md §18.4).
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::model::{Delta, Group, GroupDeltaKind, Level, Sst, Version, L0};
use crate::pb;
use crate::wire::Node;

const OVERLAPPING: i32 = pb::LevelType::Overlapping as i32;
const NONOVERLAPPING: i32 = pb::LevelType::Nonoverlapping as i32;

/// Applies `deltas` in order to `base`, returning the resulting version.
pub fn apply<'a>(base: &Version, deltas: impl IntoIterator<Item = &'a Delta>) -> Result<Version> {
    let mut v = base.clone();
    for d in deltas {
        apply_one(&mut v, d)?;
    }
    Ok(v)
}

/// Compares two encoded full keys (user key, then epoch descending), as RisingWave's
/// `KeyComparator::compare_encoded_full_key`. A key shorter than 8 bytes is taken as a user
/// key with an empty epoch (RisingWave would panic on it).
pub fn compare_full_key(l: &[u8], r: &[u8]) -> Ordering {
    let (lp, ls) = l.split_at(l.len().saturating_sub(8));
    let (rp, rs) = r.split_at(r.len().saturating_sub(8));
    lp.cmp(rp).then_with(|| rs.cmp(ls))
}

/// Orders SSTs by key range as RisingWave's `KeyRange::cmp`: left bound (empty = -inf),
/// then right bound (empty = +inf); `right_exclusive` is not compared.
pub fn compare_key_range(a: &Sst, b: &Sst) -> Ordering {
    let (al, bl) = (a.left(), b.left());
    let left = match (al.is_empty(), bl.is_empty()) {
        (true, true) => Ordering::Equal,
        (false, false) => compare_full_key(al, bl),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
    };
    if left != Ordering::Equal {
        return left;
    }
    let (ar, br) = (a.right(), b.right());
    match (ar.is_empty(), br.is_empty()) {
        (true, true) => Ordering::Equal,
        (false, false) => compare_full_key(ar, br),
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
    }
}

struct Ctx {
    delta_id: u64,
    group_id: u64,
}

impl Ctx {
    fn err(&self, detail: impl Into<String>) -> Error {
        Error::Apply {
            delta_id: self.delta_id,
            group_id: self.group_id,
            detail: detail.into(),
        }
    }
}

fn apply_one(v: &mut Version, d: &Delta) -> Result<()> {
    let dm = d.node.msg();
    if v.id() != dm.prev_id {
        return Err(Error::PrevIdMismatch {
            delta_id: dm.id,
            prev_id: dm.prev_id,
            version_id: v.id(),
        });
    }
    let mut cx = Ctx {
        delta_id: dm.id,
        group_id: 0,
    };

    // State tables first: the member tables of a group are read after this.
    let removed: BTreeSet<u32> = dm.removed_table_ids.iter().copied().collect();
    let mut is_commit_epoch = false;
    for t in &removed {
        v.state_table_info.remove(t);
    }
    for (t, delta) in &d.state_table_info_delta {
        if removed.contains(t) {
            continue;
        }
        let new = delta.msg();
        match v.state_table_info.get_mut(t) {
            Some(prev) => {
                let p = prev.msg();
                if new.committed_epoch < p.committed_epoch {
                    return Err(cx.err(format!(
                        "state table {t}: committed epoch goes back from {} to {}",
                        p.committed_epoch, new.committed_epoch
                    )));
                }
                if new.committed_epoch > p.committed_epoch {
                    is_commit_epoch = true;
                }
                if p.committed_epoch != new.committed_epoch
                    || p.compaction_group_id != new.compaction_group_id
                {
                    let m = prev.msg_mut();
                    m.committed_epoch = new.committed_epoch;
                    m.compaction_group_id = new.compaction_group_id;
                }
            }
            None => {
                is_commit_epoch = true;
                v.state_table_info.insert(
                    *t,
                    Node::new(pb::StateTableInfo {
                        committed_epoch: new.committed_epoch,
                        compaction_group_id: new.compaction_group_id,
                    }),
                );
            }
        }
    }
    if !is_commit_epoch && v.node.msg().max_committed_epoch < dm.max_committed_epoch {
        is_commit_epoch = true;
    }

    for (gid, gds) in &d.group_deltas {
        cx.group_id = *gid;
        let mut applied_l0_compact = false;
        for gd in &gds.deltas {
            match &gd.kind {
                GroupDeltaKind::GroupConstruct { node, config } => {
                    group_construct(v, &cx, *gid, node.msg(), config.as_ref())?
                }
                GroupDeltaKind::GroupMerge(n) => {
                    let m = n.msg();
                    group_merge(v, &cx, m.left_group_id, m.right_group_id)?
                }
                GroupDeltaKind::IntraLevel { node, inserted } => {
                    let members: BTreeSet<u32> = v.member_table_ids(*gid).into_iter().collect();
                    let g = group_mut(v, &cx, *gid)?;
                    let m = node.msg();
                    if is_commit_epoch {
                        if !m.removed_table_ids.is_empty() {
                            return Err(cx.err("a delta that commits an epoch removes SSTs"));
                        }
                        if m.level_idx != 0 {
                            return Err(cx.err(format!(
                                "a delta that commits an epoch inserts into level {}, not L0",
                                m.level_idx
                            )));
                        }
                        if !inserted.is_empty() {
                            insert_new_sub_level(
                                &cx,
                                l0_mut(g),
                                m.l0_sub_level_id,
                                OVERLAPPING,
                                inserted.clone(),
                                None,
                            )?;
                        }
                    } else {
                        apply_compact_ssts(&cx, g, m, inserted, &members)?;
                        if m.level_idx == 0 {
                            applied_l0_compact = true;
                        }
                    }
                }
                GroupDeltaKind::NewL0SubLevel { inserted, .. } => {
                    let g = group_mut(v, &cx, *gid)?;
                    if !is_commit_epoch {
                        return Err(cx.err("new_l0_sub_level in a delta that commits no epoch"));
                    }
                    if !inserted.is_empty() {
                        let l0 = l0_mut(g);
                        let next = l0
                            .sub_levels
                            .last()
                            .map_or(1, |l| l.msg().sub_level_id.wrapping_add(1));
                        insert_new_sub_level(&cx, l0, next, OVERLAPPING, inserted.clone(), None)?;
                    }
                }
                GroupDeltaKind::GroupDestroy(_) => {
                    v.groups.remove(gid);
                }
                GroupDeltaKind::TruncateTables(n) => {
                    let tables: BTreeSet<u32> = n.msg().table_ids.iter().copied().collect();
                    let g = group_mut(v, &cx, *gid)?;
                    prune_table_ids(g, &tables);
                }
                GroupDeltaKind::Unset => {
                    return Err(cx.err("a group delta with no variant set"));
                }
            }
        }
        if applied_l0_compact {
            if let Some(g) = v.groups.get_mut(gid) {
                normalize_l0(l0_mut(g));
            }
        }
    }

    let vm = v.node.msg_mut();
    vm.id = dm.id;
    vm.max_committed_epoch = dm.max_committed_epoch;
    Ok(())
}

fn group_mut<'v>(v: &'v mut Version, cx: &Ctx, gid: u64) -> Result<&'v mut Group> {
    v.groups
        .get_mut(&gid)
        .ok_or_else(|| cx.err(format!("compaction group {gid} does not exist")))
}

fn l0_mut(g: &mut Group) -> &mut L0 {
    g.l0.get_or_insert_with(L0::empty)
}

// ---------------------------------------------------------------------------------------
// Size bookkeeping

fn sizes(ssts: &[Sst]) -> (u64, u64) {
    ssts.iter().fold((0, 0), |(t, u), s| {
        (
            t.wrapping_add(s.effective_sst_size()),
            u.wrapping_add(s.info().uncompressed_file_size),
        )
    })
}

fn set_level_sizes(l: &mut Level, total: u64, uncompressed: u64) {
    let m = l.node.msg();
    if m.total_file_size != total || m.uncompressed_file_size != uncompressed {
        let m = l.node.msg_mut();
        m.total_file_size = total;
        m.uncompressed_file_size = uncompressed;
    }
}

fn add_level_sizes(l: &mut Level, ssts: &[Sst]) {
    let (t, u) = sizes(ssts);
    let m = l.node.msg();
    let (nt, nu) = (
        m.total_file_size.wrapping_add(t),
        m.uncompressed_file_size.wrapping_add(u),
    );
    set_level_sizes(l, nt, nu);
}

fn recompute_level(l: &mut Level) {
    let (t, u) = sizes(&l.ssts);
    set_level_sizes(l, t, u);
}

fn set_l0_sizes(l0: &mut L0, total: u64, uncompressed: u64) {
    let m = l0.node.msg();
    if m.total_file_size != total || m.uncompressed_file_size != uncompressed {
        let m = l0.node.msg_mut();
        m.total_file_size = total;
        m.uncompressed_file_size = uncompressed;
    }
}

/// `Level::normalize`: drop SSTs with no table ids, recompute sizes.
fn normalize_level(l: &mut Level) {
    l.ssts.retain(|s| !s.table_ids().is_empty());
    recompute_level(l);
}

/// `OverlappingLevel::normalize`: drop empty sub-levels, sum sub-level sizes.
fn normalize_l0(l0: &mut L0) {
    l0.sub_levels.retain(|l| !l.ssts.is_empty());
    let (t, u) = l0.sub_levels.iter().fold((0u64, 0u64), |(t, u), l| {
        (
            t.wrapping_add(l.msg().total_file_size),
            u.wrapping_add(l.msg().uncompressed_file_size),
        )
    });
    set_l0_sizes(l0, t, u);
}

fn sort_by_key_range(ssts: &mut [Sst]) {
    ssts.sort_by(compare_key_range);
}

fn new_sub_level(sub_level_id: u64, level_type: i32, ssts: Vec<Sst>) -> Level {
    let (t, u) = sizes(&ssts);
    Level::new(
        pb::Level {
            level_idx: 0,
            level_type,
            table_infos: Vec::new(),
            total_file_size: t,
            sub_level_id,
            uncompressed_file_size: u,
            vnode_partition_count: 0,
        },
        ssts,
    )
}

/// `insert_new_sub_level`: `hint` is the position, or `None` to append (the new id must
/// then be larger than the newest sub-level's).
fn insert_new_sub_level(
    cx: &Ctx,
    l0: &mut L0,
    sub_level_id: u64,
    level_type: i32,
    ssts: Vec<Sst>,
    hint: Option<usize>,
) -> Result<()> {
    if sub_level_id == u64::MAX {
        return Ok(());
    }
    let pos = match hint {
        Some(p) => p.min(l0.sub_levels.len()),
        None => {
            if let Some(newest) = l0.sub_levels.last() {
                if newest.msg().sub_level_id >= sub_level_id {
                    return Err(cx.err(format!(
                        "new L0 sub-level {sub_level_id} is not newer than sub-level {}",
                        newest.msg().sub_level_id
                    )));
                }
            }
            l0.sub_levels.len()
        }
    };
    let level = new_sub_level(sub_level_id, level_type, ssts);
    let m = l0.node.msg();
    let (t, u) = (
        m.total_file_size.wrapping_add(level.msg().total_file_size),
        m.uncompressed_file_size
            .wrapping_add(level.msg().uncompressed_file_size),
    );
    set_l0_sizes(l0, t, u);
    l0.sub_levels.insert(pos, level);
    Ok(())
}

/// `add_ssts_to_sub_level`.
fn add_ssts_to_sub_level(l0: &mut L0, idx: usize, ssts: Vec<Sst>) {
    let (t, u) = sizes(&ssts);
    let m = l0.node.msg();
    let (lt, lu) = (
        m.total_file_size.wrapping_add(t),
        m.uncompressed_file_size.wrapping_add(u),
    );
    set_l0_sizes(l0, lt, lu);
    let sub = &mut l0.sub_levels[idx];
    add_level_sizes(sub, &ssts);
    sub.ssts.extend(ssts);
    if sub.msg().level_type == NONOVERLAPPING {
        sort_by_key_range(&mut sub.ssts);
    }
}

/// `level_insert_ssts`.
fn level_insert_ssts(l: &mut Level, inserted: &[Sst]) {
    add_level_sizes(l, inserted);
    if l.msg().level_type == OVERLAPPING {
        l.node.msg_mut().level_type = NONOVERLAPPING;
        l.ssts.extend(inserted.iter().cloned());
        sort_by_key_range(&mut l.ssts);
    } else if !inserted.is_empty() {
        let mut sorted = inserted.to_vec();
        sort_by_key_range(&mut sorted);
        let first = &sorted[0];
        let last = &sorted[sorted.len() - 1];
        let pos = l
            .ssts
            .partition_point(|b| compare_key_range(b, first) == Ordering::Less);
        if pos >= l.ssts.len() || compare_key_range(last, &l.ssts[pos]) == Ordering::Less {
            l.ssts.splice(pos..pos, sorted);
        } else {
            for s in inserted {
                let p = l
                    .ssts
                    .partition_point(|b| compare_key_range(b, s) == Ordering::Less);
                l.ssts.insert(p, s.clone());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Compaction deltas

fn apply_compact_ssts(
    cx: &Ctx,
    g: &mut Group,
    m: &pb::IntraLevelDelta,
    inserted: &[Sst],
    members: &BTreeSet<u32>,
) -> Result<()> {
    // A task planned against an older layout of the group is ignored.
    if g.msg().compaction_group_version_id != m.compaction_group_version_id {
        return Ok(());
    }
    let level_count = g.levels.len();
    let level_index = |idx: u32| -> Result<usize> {
        let i = idx as usize - 1;
        if i < level_count {
            Ok(i)
        } else {
            Err(cx.err(format!(
                "level {idx} does not exist (the group has {level_count} levels)"
            )))
        }
    };
    if !m.removed_table_ids.is_empty() {
        let ids: BTreeSet<u64> = m.removed_table_ids.iter().copied().collect();
        let delete = |l: &mut Level| {
            l.ssts.retain(|s| !ids.contains(&s.sst_id()));
            recompute_level(l);
        };
        if m.level_idx == 0 {
            for l in &mut l0_mut(g).sub_levels {
                delete(l);
            }
        } else {
            let i = level_index(m.level_idx)?;
            delete(&mut g.levels[i]);
        }
    }
    if inserted.is_empty() {
        return Ok(());
    }
    let new_vpc = m.vnode_partition_count;
    if m.level_idx == 0 {
        let l0 = l0_mut(g);
        let idx = l0
            .sub_levels
            .partition_point(|l| l.msg().sub_level_id < m.l0_sub_level_id);
        if idx >= l0.sub_levels.len() || l0.sub_levels[idx].msg().sub_level_id != m.l0_sub_level_id
        {
            return Err(cx.err(format!(
                "L0 sub-level {} to insert into does not exist",
                m.l0_sub_level_id
            )));
        }
        let sub = &mut l0.sub_levels[idx];
        if sub.ssts.is_empty()
            && members.len() == 1
            && inserted.iter().all(|s| {
                s.table_ids().len() == 1 && members.iter().next() == Some(&s.table_ids()[0])
            })
            && sub.msg().vnode_partition_count != new_vpc
        {
            sub.node.msg_mut().vnode_partition_count = new_vpc;
        }
        level_insert_ssts(sub, inserted);
    } else {
        let i = level_index(m.level_idx)?;
        let l = &mut g.levels[i];
        let vpc = l.msg().vnode_partition_count;
        if l.ssts.is_empty() && inserted.iter().all(|s| s.table_ids().len() == 1) {
            if vpc != new_vpc {
                l.node.msg_mut().vnode_partition_count = new_vpc;
            }
        } else if vpc != 0 && new_vpc == 0 && members.len() > 1 {
            l.node.msg_mut().vnode_partition_count = 0;
        }
        level_insert_ssts(l, inserted);
    }
    Ok(())
}

fn prune_table_ids(g: &mut Group, tables: &BTreeSet<u32>) {
    let prune_level = |l: &mut Level| {
        for s in &mut l.ssts {
            if s.table_ids().iter().any(|t| tables.contains(t)) {
                s.node.msg_mut().table_ids.retain(|t| !tables.contains(t));
            }
        }
        normalize_level(l);
    };
    for l in &mut l0_mut(g).sub_levels {
        prune_level(l);
    }
    for l in &mut g.levels {
        prune_level(l);
    }
    normalize_l0(l0_mut(g));
    bump_group_version(g);
}

fn bump_group_version(g: &mut Group) {
    let m = g.node.msg_mut();
    m.compaction_group_version_id = m.compaction_group_version_id.wrapping_add(1);
}

// ---------------------------------------------------------------------------------------
// Group construct (incl. split) and merge

fn initial_group(group_id: u64, max_level: u64) -> Group {
    let levels = (0..max_level)
        .map(|l| {
            Level::new(
                pb::Level {
                    level_idx: (l + 1) as u32,
                    level_type: NONOVERLAPPING,
                    ..Default::default()
                },
                Vec::new(),
            )
        })
        .collect();
    Group {
        node: Node::new(pb::Levels {
            group_id,
            ..Default::default()
        }),
        l0: Some(L0::empty()),
        levels,
    }
}

fn group_construct(
    v: &mut Version,
    cx: &Ctx,
    gid: u64,
    gc: &pb::GroupConstruct,
    config: Option<&Node<pb::CompactionConfig>>,
) -> Result<()> {
    let config = config.ok_or_else(|| cx.err("group_construct without group_config"))?;
    let max_level = config.msg().max_level;
    if max_level > 64 {
        return Err(cx.err(format!(
            "group_config.max_level {max_level} is not plausible"
        )));
    }
    let mut g = initial_group(gid, max_level);
    {
        let m = g.node.msg_mut();
        m.parent_group_id = gc.parent_group_id;
        m.member_table_ids = gc.table_ids.clone();
    }
    v.groups.insert(gid, g);
    let version = gc.version;
    if version >= pb::CompatibilityVersion::SplitGroupByTableId as i32 {
        let key = gc.split_key.clone();
        init_with_parent(
            v,
            cx,
            gc.parent_group_id,
            gid,
            gc.new_sst_start_id,
            |level, next| match &key {
                Some(k) => split_level_by_key(cx, level, next, k),
                None => Ok(Vec::new()),
            },
            true,
        )
    } else {
        let members: BTreeSet<u32> = if version >= pb::CompatibilityVersion::NoMemberTableIds as i32
        {
            v.member_table_ids(gid).into_iter().collect()
        } else {
            gc.table_ids.iter().copied().collect()
        };
        init_with_parent(
            v,
            cx,
            gc.parent_group_id,
            gid,
            gc.new_sst_start_id,
            |level, next| Ok(split_level_by_tables(level, next, &members)),
            false,
        )
    }
}

/// `init_with_parent_group` (`v2` = `init_with_parent_group_v2`): moves the SSTs that
/// `split` takes out of each level of the parent into the same level of the new group.
fn init_with_parent(
    v: &mut Version,
    cx: &Ctx,
    parent_id: u64,
    gid: u64,
    new_sst_start_id: u64,
    mut split: impl FnMut(&mut Level, &mut u64) -> Result<Vec<Sst>>,
    v2: bool,
) -> Result<()> {
    if parent_id == 0 {
        return Ok(());
    }
    if parent_id == gid {
        return Err(cx.err(format!("group {gid} is constructed from itself")));
    }
    let mut parent = v
        .groups
        .remove(&parent_id)
        .ok_or_else(|| cx.err(format!("parent group {parent_id} does not exist")))?;
    let result = (|| {
        let cur = v
            .groups
            .get_mut(&gid)
            .ok_or_else(|| cx.err(format!("group {gid} does not exist")))?;
        bump_group_version(&mut parent);
        bump_group_version(cur);
        let mut next = new_sst_start_id;
        let parent_l0 = l0_mut(&mut parent);
        for sub in &mut parent_l0.sub_levels {
            let moved = split(sub, &mut next)?;
            if !v2 {
                normalize_level(sub);
            }
            if moved.is_empty() {
                continue;
            }
            if v2 {
                normalize_level(sub);
            }
            let target = l0_mut(cur);
            let id = sub.msg().sub_level_id;
            match target
                .sub_levels
                .iter()
                .position(|l| l.msg().sub_level_id >= id)
            {
                Some(i) if target.sub_levels[i].msg().sub_level_id == id => {
                    add_ssts_to_sub_level(target, i, moved)
                }
                Some(i) => {
                    insert_new_sub_level(cx, target, id, sub.msg().level_type, moved, Some(i))?
                }
                None => {
                    let n = target.sub_levels.len();
                    insert_new_sub_level(cx, target, id, sub.msg().level_type, moved, Some(n))?
                }
            }
        }
        normalize_l0(parent_l0);
        for (idx, level) in parent.levels.iter_mut().enumerate() {
            let moved = split(level, &mut next)?;
            if v2 && moved.is_empty() {
                continue;
            }
            let cur_levels = cur.levels.len();
            let target = cur.levels.get_mut(idx).ok_or_else(|| {
                cx.err(format!(
                    "new group {gid} has {cur_levels} levels, parent {parent_id} has level {}",
                    idx + 1
                ))
            })?;
            add_level_sizes(target, &moved);
            target.ssts.extend(moved);
            sort_by_key_range(&mut target.ssts);
            normalize_level(level);
        }
        Ok(())
    })();
    v.groups.insert(parent_id, parent);
    result
}

/// The table id a split key starts (its first 4 bytes, big-endian).
fn split_key_table_id(key: &[u8]) -> Option<u32> {
    key.get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

enum SplitType {
    Left,
    Right,
    Both,
}

fn need_to_split(s: &Sst, key: &[u8]) -> SplitType {
    if compare_full_key(key, s.left()).is_le() {
        return SplitType::Right;
    }
    let c = compare_full_key(key, s.right());
    if s.right_exclusive() {
        if c.is_ge() {
            return SplitType::Left;
        }
    } else if c.is_gt() {
        return SplitType::Left;
    }
    SplitType::Both
}

/// `split_sst`: the left part keeps the SST (with a new sst id), the right part is a copy
/// with the next new id. Either may vanish when it has no table ids left.
fn split_sst(
    cx: &Ctx,
    origin: &Sst,
    next: &mut u64,
    key: &Bytes,
) -> Result<(Option<Sst>, Option<Sst>)> {
    let table_id = split_key_table_id(key)
        .ok_or_else(|| cx.err(format!("split key of {} bytes has no table id", key.len())))?;
    let size = origin.effective_sst_size() / 2;
    let mut left = origin.clone();
    let mut right = origin.clone();
    let (l_left, l_right) = (
        Bytes::copy_from_slice(origin.left()),
        Bytes::copy_from_slice(origin.right()),
    );
    let right_excl = origin.right_exclusive();
    let pos = origin.table_ids().partition_point(|t| *t < table_id);
    {
        let m = right.node.msg_mut();
        m.sst_id = *next;
        m.sst_size = size.max(1);
        m.table_ids = origin.table_ids()[pos..].to_vec();
    }
    right.set_key_range(key.clone(), l_right, right_excl);
    *next = next.wrapping_add(1);
    {
        let m = left.node.msg_mut();
        m.sst_id = *next;
        m.sst_size = size.max(1);
        m.table_ids = origin.table_ids()[..pos].to_vec();
    }
    left.set_key_range(l_left, key.clone(), true);
    *next = next.wrapping_add(1);
    Ok(if left.table_ids().is_empty() {
        (None, Some(right))
    } else if right.table_ids().is_empty() {
        (Some(left), None)
    } else if compare_full_key(left.left(), left.right()).is_eq() {
        (None, Some(right))
    } else {
        (Some(left), Some(right))
    })
}

/// `split_sst_info_for_level_v2`: takes out of `level` what lies right of `key`.
fn split_level_by_key(
    cx: &Ctx,
    level: &mut Level,
    next: &mut u64,
    key: &Bytes,
) -> Result<Vec<Sst>> {
    if level.ssts.is_empty() {
        return Ok(Vec::new());
    }
    let mut moved = Vec::new();
    if level.msg().level_type == OVERLAPPING {
        let mut kept = Vec::with_capacity(level.ssts.len());
        for s in std::mem::take(&mut level.ssts) {
            match need_to_split(&s, key) {
                SplitType::Left => kept.push(s),
                SplitType::Right => moved.push(s),
                SplitType::Both => {
                    let (l, r) = split_sst(cx, &s, next, key)?;
                    moved.extend(r);
                    kept.extend(l);
                }
            }
        }
        level.ssts = kept;
    } else {
        let pos = level
            .ssts
            .partition_point(|s| compare_full_key(s.left(), key).is_lt())
            .saturating_sub(1);
        match need_to_split(&level.ssts[pos], key) {
            SplitType::Left => {
                moved.extend(level.ssts.drain(pos + 1..));
            }
            SplitType::Right => {
                if pos != 0 {
                    return Err(cx.err(format!(
                        "split key lies left of SST {} at position {pos} of level {}",
                        level.ssts[pos].sst_id(),
                        level.msg().level_idx
                    )));
                }
                moved.append(&mut level.ssts);
            }
            SplitType::Both => {
                let (l, r) = split_sst(cx, &level.ssts[pos], next, key)?;
                moved.extend(r);
                moved.extend(level.ssts.drain(pos + 1..));
                match l {
                    Some(l) => level.ssts[pos] = l,
                    None => {
                        level.ssts.pop();
                    }
                }
            }
        }
    }
    Ok(moved)
}

/// `split_sst_info_for_level` (groups constructed before split keys): every SST holding
/// one of `members` is split in two by table id.
fn split_level_by_tables(level: &mut Level, next: &mut u64, members: &BTreeSet<u32>) -> Vec<Sst> {
    let mut moved = Vec::new();
    for s in &mut level.ssts {
        if !s.table_ids().iter().any(|t| members.contains(t)) {
            continue;
        }
        let size = (s.effective_sst_size() / 2).max(1);
        let mut branch = s.clone();
        let (in_members, rest): (Vec<u32>, Vec<u32>) =
            s.table_ids().iter().partition(|t| members.contains(t));
        {
            let m = branch.node.msg_mut();
            m.sst_id = *next;
            m.sst_size = size;
            m.table_ids = in_members;
        }
        *next = next.wrapping_add(1);
        {
            let m = s.node.msg_mut();
            m.sst_id = *next;
            m.sst_size = size;
            m.table_ids = rest;
        }
        *next = next.wrapping_add(1);
        moved.push(branch);
    }
    moved
}

fn group_merge(v: &mut Version, cx: &Ctx, left_id: u64, right_id: u64) -> Result<()> {
    if !v.groups.contains_key(&left_id) {
        return Err(cx.err(format!("merge: left group {left_id} does not exist")));
    }
    if left_id == right_id {
        return Err(cx.err(format!("merge: group {left_id} with itself")));
    }
    let right = v
        .groups
        .remove(&right_id)
        .ok_or_else(|| cx.err(format!("merge: right group {right_id} does not exist")))?;
    let left = group_mut(v, cx, left_id)?;
    let l0 = l0_mut(left);
    let mut next_id = l0
        .sub_levels
        .iter()
        .map(|l| l.msg().sub_level_id.wrapping_add(1))
        .max()
        .unwrap_or(0);
    let rewrite = next_id != 0;
    for sub in right.l0.map(|l| l.sub_levels).unwrap_or_default() {
        let id = if rewrite {
            let id = next_id;
            next_id = next_id.wrapping_add(1);
            id
        } else {
            sub.msg().sub_level_id
        };
        let level_type = sub.msg().level_type;
        insert_new_sub_level(cx, l0, id, level_type, sub.ssts, None)?;
    }
    for sub in &mut l0.sub_levels {
        if sub.msg().vnode_partition_count != 0 {
            sub.node.msg_mut().vnode_partition_count = 0;
        }
    }
    let left_levels = left.levels.len();
    for (idx, level) in right.levels.into_iter().enumerate() {
        if level.ssts.is_empty() {
            continue;
        }
        let target = left.levels.get_mut(idx).ok_or_else(|| {
            cx.err(format!(
                "merge: right group {right_id} has level {}, left group {left_id} has {left_levels} levels",
                idx + 1
            ))
        })?;
        add_level_sizes(target, &level.ssts);
        target.ssts.extend(level.ssts);
        sort_by_key_range(&mut target.ssts);
    }
    Ok(())
}

/// Object ids added and removed by going from `before` to `after`.
pub fn object_id_changes(before: &Version, after: &Version) -> (Vec<u64>, Vec<u64>) {
    let b: BTreeSet<u64> = before.object_ids().into_iter().collect();
    let a: BTreeSet<u64> = after.object_ids().into_iter().collect();
    (
        a.difference(&b).copied().collect(),
        b.difference(&a).copied().collect(),
    )
}

/// Object ids per group (for tests and reports).
pub fn group_object_ids(v: &Version) -> BTreeMap<u64, Vec<u64>> {
    v.groups
        .iter()
        .map(|(g, grp)| {
            let mut ids: Vec<u64> = grp.ssts().map(Sst::object_id).collect();
            ids.sort_unstable();
            ids.dedup();
            (*g, ids)
        })
        .collect()
}
