//! The decoded tree of a version, a version delta and a checkpoint. Each level of the tree
//! is a [`Node`] (modelled fields, unknown records, original bytes) plus its decoded
//! children; encoding gives back the original bytes of every unchanged subtree.
use std::collections::BTreeMap;

use bytes::Bytes;

use crate::error::{Ctx, Result};
use crate::pb;
use crate::wire::{KnownFields, Node};

/// A decoded message subtree that can give back its bytes.
pub trait Tree {
    /// The original bytes, when neither this node nor any descendant has changed.
    fn pristine_bytes(&self) -> Option<&Bytes>;
    /// The bytes of this subtree encoded anew from its parts (each part's own bytes as
    /// [`Tree::to_bytes`] gives them, with the same `fresh`).
    fn encode_parts(&self, fresh: bool) -> Bytes;
    /// The bytes of this subtree: the original ones where unchanged unless `fresh`, in
    /// which case everything is encoded anew (unknown records merged back in).
    fn to_bytes(&self, fresh: bool) -> Bytes {
        match self.pristine_bytes() {
            Some(b) if !fresh => b.clone(),
            _ => self.encode_parts(fresh),
        }
    }
}

impl<M: prost::Message + Default + Clone + KnownFields> Tree for Node<M> {
    fn pristine_bytes(&self) -> Option<&Bytes> {
        self.original()
    }
    fn encode_parts(&self, fresh: bool) -> Bytes {
        if fresh {
            self.encode_fresh()
        } else {
            self.encode()
        }
    }
}

fn list_same<'a, T: Tree + 'a>(
    stored: &[Bytes],
    kids: impl ExactSizeIterator<Item = &'a T>,
) -> bool {
    stored.len() == kids.len()
        && stored
            .iter()
            .zip(kids)
            .all(|(b, k)| k.pristine_bytes() == Some(b))
}

fn map_same<K: Ord, T: Tree>(stored: &BTreeMap<K, Bytes>, kids: &BTreeMap<K, T>) -> bool {
    stored.len() == kids.len()
        && stored
            .iter()
            .zip(kids)
            .all(|((k1, b), (k2, t))| k1 == k2 && t.pristine_bytes() == Some(b))
}

fn opt_same<T: Tree>(stored: &Option<Bytes>, kid: &Option<T>) -> bool {
    match (stored, kid) {
        (None, None) => true,
        (Some(b), Some(k)) => k.pristine_bytes() == Some(b),
        _ => false,
    }
}

pub(crate) fn node<M: prost::Message + Default + Clone + KnownFields>(
    ctx: &Ctx<'_>,
    b: &Bytes,
) -> Result<Node<M>> {
    Node::decode(b).map_err(|e| ctx.node_error(b, e))
}

fn map_nodes<K: Ord + Copy, M: prost::Message + Default + Clone + KnownFields>(
    ctx: &Ctx<'_>,
    m: &BTreeMap<K, Bytes>,
) -> Result<BTreeMap<K, Node<M>>> {
    m.iter().map(|(k, b)| Ok((*k, node(ctx, b)?))).collect()
}

fn map_bytes<K: Ord + Copy, T: Tree>(m: &BTreeMap<K, T>, fresh: bool) -> BTreeMap<K, Bytes> {
    m.iter().map(|(k, t)| (*k, t.to_bytes(fresh))).collect()
}

// ---------------------------------------------------------------------------------------
// SstableInfo

/// One SST of a level, with its key range decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Sst {
    pub node: Node<pb::SstableInfo>,
    pub key_range: Option<Node<pb::KeyRange>>,
}

impl Sst {
    pub(crate) fn decode(ctx: &Ctx<'_>, b: &Bytes) -> Result<Sst> {
        let node: Node<pb::SstableInfo> = node(ctx, b)?;
        let key_range = match &node.msg().key_range {
            Some(k) => Some(self::node(ctx, k)?),
            None => None,
        };
        Ok(Sst { node, key_range })
    }

    /// A new SST (tests and builders); `key_range` is encoded as given.
    pub fn new(mut info: pb::SstableInfo, key_range: Option<pb::KeyRange>) -> Sst {
        info.key_range = None;
        Sst {
            node: Node::new(info),
            key_range: key_range.map(Node::new),
        }
    }

    pub fn info(&self) -> &pb::SstableInfo {
        self.node.msg()
    }
    pub fn sst_id(&self) -> u64 {
        self.info().sst_id
    }
    pub fn object_id(&self) -> u64 {
        self.info().object_id
    }
    pub fn table_ids(&self) -> &[u32] {
        &self.info().table_ids
    }
    /// The size RisingWave accounts for this SST: `sst_size`, or `file_size` when unset.
    pub fn effective_sst_size(&self) -> u64 {
        let i = self.info();
        if i.sst_size == 0 {
            i.file_size
        } else {
            i.sst_size
        }
    }
    /// Left key of the range; empty means unbounded (also when the range is absent).
    pub fn left(&self) -> &[u8] {
        self.key_range
            .as_ref()
            .map_or(&[][..], |k| &k.msg().left[..])
    }
    pub fn right(&self) -> &[u8] {
        self.key_range
            .as_ref()
            .map_or(&[][..], |k| &k.msg().right[..])
    }
    pub fn right_exclusive(&self) -> bool {
        self.key_range
            .as_ref()
            .is_some_and(|k| k.msg().right_exclusive)
    }
    pub(crate) fn set_key_range(&mut self, left: Bytes, right: Bytes, right_exclusive: bool) {
        match &mut self.key_range {
            Some(k) => {
                let m = k.msg_mut();
                m.left = left;
                m.right = right;
                m.right_exclusive = right_exclusive;
            }
            None => {
                self.key_range = Some(Node::new(pb::KeyRange {
                    left,
                    right,
                    right_exclusive,
                }))
            }
        }
    }
}

impl Tree for Sst {
    fn pristine_bytes(&self) -> Option<&Bytes> {
        let o = self.node.original()?;
        opt_same(&self.node.msg().key_range, &self.key_range).then_some(o)
    }
    fn encode_parts(&self, fresh: bool) -> Bytes {
        let mut m = self.node.msg().clone();
        m.key_range = self.key_range.as_ref().map(|k| k.to_bytes(fresh));
        self.node.encode_msg(&m)
    }
}

// ---------------------------------------------------------------------------------------
// Level, OverlappingLevel, Levels

/// A level (L1+) or an L0 sub-level, with its SSTs.
#[derive(Debug, Clone, PartialEq)]
pub struct Level {
    pub node: Node<pb::Level>,
    pub ssts: Vec<Sst>,
}

impl Level {
    pub(crate) fn decode(ctx: &Ctx<'_>, b: &Bytes) -> Result<Level> {
        let node: Node<pb::Level> = node(ctx, b)?;
        let ssts = node
            .msg()
            .table_infos
            .iter()
            .map(|s| Sst::decode(ctx, s))
            .collect::<Result<_>>()?;
        Ok(Level { node, ssts })
    }
    pub fn new(mut msg: pb::Level, ssts: Vec<Sst>) -> Level {
        msg.table_infos.clear();
        Level {
            node: Node::new(msg),
            ssts,
        }
    }
    pub fn msg(&self) -> &pb::Level {
        self.node.msg()
    }
}

impl Tree for Level {
    fn pristine_bytes(&self) -> Option<&Bytes> {
        let o = self.node.original()?;
        list_same(&self.node.msg().table_infos, self.ssts.iter()).then_some(o)
    }
    fn encode_parts(&self, fresh: bool) -> Bytes {
        let mut m = self.node.msg().clone();
        m.table_infos = self.ssts.iter().map(|s| s.to_bytes(fresh)).collect();
        self.node.encode_msg(&m)
    }
}

/// L0 of a group: sub-levels, oldest (smallest `sub_level_id`) first.
#[derive(Debug, Clone, PartialEq)]
pub struct L0 {
    pub node: Node<pb::OverlappingLevel>,
    pub sub_levels: Vec<Level>,
}

impl L0 {
    fn decode(ctx: &Ctx<'_>, b: &Bytes) -> Result<L0> {
        let node: Node<pb::OverlappingLevel> = node(ctx, b)?;
        let sub_levels = node
            .msg()
            .sub_levels
            .iter()
            .map(|s| Level::decode(ctx, s))
            .collect::<Result<_>>()?;
        Ok(L0 { node, sub_levels })
    }
    pub fn empty() -> L0 {
        L0 {
            node: Node::new(pb::OverlappingLevel::default()),
            sub_levels: Vec::new(),
        }
    }
}

impl Tree for L0 {
    fn pristine_bytes(&self) -> Option<&Bytes> {
        let o = self.node.original()?;
        list_same(&self.node.msg().sub_levels, self.sub_levels.iter()).then_some(o)
    }
    fn encode_parts(&self, fresh: bool) -> Bytes {
        let mut m = self.node.msg().clone();
        m.sub_levels = self.sub_levels.iter().map(|s| s.to_bytes(fresh)).collect();
        self.node.encode_msg(&m)
    }
}

/// The LSM of one compaction group (`HummockVersion.Levels`).
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub node: Node<pb::Levels>,
    pub l0: Option<L0>,
    pub levels: Vec<Level>,
}

impl Group {
    fn decode(ctx: &Ctx<'_>, b: &Bytes) -> Result<Group> {
        let node: Node<pb::Levels> = node(ctx, b)?;
        let l0 = match &node.msg().l0 {
            Some(b) => Some(L0::decode(ctx, b)?),
            None => None,
        };
        let levels = node
            .msg()
            .levels
            .iter()
            .map(|s| Level::decode(ctx, s))
            .collect::<Result<_>>()?;
        Ok(Group { node, l0, levels })
    }
    pub fn msg(&self) -> &pb::Levels {
        self.node.msg()
    }
    /// Every SST of the group: L0 sub-levels newest first, then L1, L2, ...
    pub fn ssts(&self) -> impl Iterator<Item = &Sst> {
        self.l0
            .iter()
            .flat_map(|l0| l0.sub_levels.iter().rev())
            .chain(self.levels.iter())
            .flat_map(|l| l.ssts.iter())
    }
}

impl Tree for Group {
    fn pristine_bytes(&self) -> Option<&Bytes> {
        let o = self.node.original()?;
        let m = self.node.msg();
        (opt_same(&m.l0, &self.l0) && list_same(&m.levels, self.levels.iter())).then_some(o)
    }
    fn encode_parts(&self, fresh: bool) -> Bytes {
        let mut m = self.node.msg().clone();
        m.l0 = self.l0.as_ref().map(|l| l.to_bytes(fresh));
        m.levels = self.levels.iter().map(|s| s.to_bytes(fresh)).collect();
        self.node.encode_msg(&m)
    }
}

// ---------------------------------------------------------------------------------------
// HummockVersion

/// A decoded `HummockVersion`. Table watermarks, change logs and vector indexes stay as
/// bytes in `node`.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    pub node: Node<pb::HummockVersion>,
    pub groups: BTreeMap<u64, Group>,
    pub state_table_info: BTreeMap<u32, Node<pb::StateTableInfo>>,
}

impl Version {
    pub(crate) fn decode(ctx: &Ctx<'_>, b: &Bytes) -> Result<Version> {
        let node: Node<pb::HummockVersion> = node(ctx, b)?;
        let groups = node
            .msg()
            .levels
            .iter()
            .map(|(k, b)| Ok((*k, Group::decode(ctx, b)?)))
            .collect::<Result<_>>()?;
        let state_table_info = map_nodes(ctx, &node.msg().state_table_info)?;
        Ok(Version {
            node,
            groups,
            state_table_info,
        })
    }

    /// Decodes a bare `HummockVersion` message; `file` names it in errors.
    pub fn from_bytes(file: &str, b: &Bytes) -> Result<Version> {
        Version::decode(&Ctx::new(file, b), b)
    }

    pub fn id(&self) -> u64 {
        self.node.msg().id
    }

    /// The version's committed epoch: the deprecated `max_committed_epoch` field when set,
    /// else the largest committed epoch among its state tables (0 when it has none).
    pub fn max_committed_epoch(&self) -> u64 {
        let field = self.node.msg().max_committed_epoch;
        if field != 0 {
            return field;
        }
        self.state_table_info
            .values()
            .map(|i| i.msg().committed_epoch)
            .max()
            .unwrap_or(0)
    }

    /// Every SST in the version, group by group.
    pub fn ssts(&self) -> impl Iterator<Item = &Sst> {
        self.groups.values().flat_map(|g| g.ssts())
    }

    /// Object ids of all SSTs, sorted and without repeats.
    pub fn object_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.ssts().map(Sst::object_id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The state tables of a compaction group, ascending.
    pub fn member_table_ids(&self, group_id: u64) -> Vec<u32> {
        self.state_table_info
            .iter()
            .filter(|(_, i)| i.msg().compaction_group_id == group_id)
            .map(|(t, _)| *t)
            .collect()
    }

    /// The encoded version: original bytes for every unchanged part.
    pub fn encode(&self) -> Bytes {
        self.to_bytes(false)
    }
}

impl Tree for Version {
    fn pristine_bytes(&self) -> Option<&Bytes> {
        let o = self.node.original()?;
        let m = self.node.msg();
        (map_same(&m.levels, &self.groups) && map_same(&m.state_table_info, &self.state_table_info))
            .then_some(o)
    }
    fn encode_parts(&self, fresh: bool) -> Bytes {
        let mut m = self.node.msg().clone();
        m.levels = map_bytes(&self.groups, fresh);
        m.state_table_info = map_bytes(&self.state_table_info, fresh);
        self.node.encode_msg(&m)
    }
}

// ---------------------------------------------------------------------------------------
// HummockVersionDelta

/// One group delta, decoded by variant.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupDeltaKind {
    IntraLevel {
        node: Node<pb::IntraLevelDelta>,
        inserted: Vec<Sst>,
    },
    GroupConstruct {
        node: Node<pb::GroupConstruct>,
        config: Option<Node<pb::CompactionConfig>>,
    },
    GroupDestroy(Node<pb::GroupDestroy>),
    GroupMerge(Node<pb::GroupMerge>),
    NewL0SubLevel {
        node: Node<pb::NewL0SubLevel>,
        inserted: Vec<Sst>,
    },
    TruncateTables(Node<pb::TruncateTables>),
    /// No variant set (RisingWave refuses such a delta when it applies it).
    Unset,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupDelta {
    pub node: Node<pb::GroupDelta>,
    pub kind: GroupDeltaKind,
}

impl GroupDelta {
    fn decode(ctx: &Ctx<'_>, b: &Bytes) -> Result<GroupDelta> {
        use pb::group_delta::DeltaType as D;
        let node: Node<pb::GroupDelta> = node(ctx, b)?;
        let kind = match &node.msg().delta_type {
            Some(D::IntraLevel(b)) => {
                let n: Node<pb::IntraLevelDelta> = self::node(ctx, b)?;
                let inserted = n
                    .msg()
                    .inserted_table_infos
                    .iter()
                    .map(|s| Sst::decode(ctx, s))
                    .collect::<Result<_>>()?;
                GroupDeltaKind::IntraLevel { node: n, inserted }
            }
            Some(D::GroupConstruct(b)) => {
                let n: Node<pb::GroupConstruct> = self::node(ctx, b)?;
                let config = match &n.msg().group_config {
                    Some(c) => Some(self::node(ctx, c)?),
                    None => None,
                };
                GroupDeltaKind::GroupConstruct { node: n, config }
            }
            Some(D::GroupDestroy(b)) => GroupDeltaKind::GroupDestroy(self::node(ctx, b)?),
            Some(D::GroupMerge(b)) => GroupDeltaKind::GroupMerge(self::node(ctx, b)?),
            Some(D::NewL0SubLevel(b)) => {
                let n: Node<pb::NewL0SubLevel> = self::node(ctx, b)?;
                let inserted = n
                    .msg()
                    .inserted_table_infos
                    .iter()
                    .map(|s| Sst::decode(ctx, s))
                    .collect::<Result<_>>()?;
                GroupDeltaKind::NewL0SubLevel { node: n, inserted }
            }
            Some(D::TruncateTables(b)) => GroupDeltaKind::TruncateTables(self::node(ctx, b)?),
            None => GroupDeltaKind::Unset,
        };
        Ok(GroupDelta { node, kind })
    }

    /// The variant name, as RisingWave's proto spells the oneof field.
    pub fn variant(&self) -> &'static str {
        match &self.kind {
            GroupDeltaKind::IntraLevel { .. } => "intra_level",
            GroupDeltaKind::GroupConstruct { .. } => "group_construct",
            GroupDeltaKind::GroupDestroy(_) => "group_destroy",
            GroupDeltaKind::GroupMerge(_) => "group_merge",
            GroupDeltaKind::NewL0SubLevel { .. } => "new_l0_sub_level",
            GroupDeltaKind::TruncateTables(_) => "truncate_tables",
            GroupDeltaKind::Unset => "unset",
        }
    }

    /// SSTs this delta inserts.
    pub fn inserted(&self) -> &[Sst] {
        match &self.kind {
            GroupDeltaKind::IntraLevel { inserted, .. }
            | GroupDeltaKind::NewL0SubLevel { inserted, .. } => inserted,
            _ => &[],
        }
    }

    fn child(&self, fresh: bool) -> Option<(Bytes, bool)> {
        fn list(stored: &[Bytes], ssts: &[Sst]) -> bool {
            list_same(stored, ssts.iter())
        }
        match &self.kind {
            GroupDeltaKind::IntraLevel { node, inserted } => {
                let same =
                    node.original().is_some() && list(&node.msg().inserted_table_infos, inserted);
                let b = if same && !fresh {
                    node.encode()
                } else {
                    let mut m = node.msg().clone();
                    m.inserted_table_infos = inserted.iter().map(|s| s.to_bytes(fresh)).collect();
                    node.encode_msg(&m)
                };
                Some((b, same))
            }
            GroupDeltaKind::NewL0SubLevel { node, inserted } => {
                let same =
                    node.original().is_some() && list(&node.msg().inserted_table_infos, inserted);
                let b = if same && !fresh {
                    node.encode()
                } else {
                    let mut m = node.msg().clone();
                    m.inserted_table_infos = inserted.iter().map(|s| s.to_bytes(fresh)).collect();
                    node.encode_msg(&m)
                };
                Some((b, same))
            }
            GroupDeltaKind::GroupConstruct { node, config } => {
                let same = node.original().is_some() && opt_same(&node.msg().group_config, config);
                let b = if same && !fresh {
                    node.encode()
                } else {
                    let mut m = node.msg().clone();
                    m.group_config = config.as_ref().map(|c| c.to_bytes(fresh));
                    node.encode_msg(&m)
                };
                Some((b, same))
            }
            GroupDeltaKind::GroupDestroy(n) => Some((n.to_bytes(fresh), n.original().is_some())),
            GroupDeltaKind::GroupMerge(n) => Some((n.to_bytes(fresh), n.original().is_some())),
            GroupDeltaKind::TruncateTables(n) => Some((n.to_bytes(fresh), n.original().is_some())),
            GroupDeltaKind::Unset => None,
        }
    }
}

impl Tree for GroupDelta {
    fn pristine_bytes(&self) -> Option<&Bytes> {
        use pb::group_delta::DeltaType as D;
        let o = self.node.original()?;
        let stored = match &self.node.msg().delta_type {
            Some(
                D::IntraLevel(b)
                | D::GroupConstruct(b)
                | D::GroupDestroy(b)
                | D::GroupMerge(b)
                | D::NewL0SubLevel(b)
                | D::TruncateTables(b),
            ) => Some(b),
            None => None,
        };
        match (stored, self.child(false)) {
            (None, None) => Some(o),
            (Some(s), Some((b, true))) if *s == b => Some(o),
            _ => None,
        }
    }
    fn encode_parts(&self, fresh: bool) -> Bytes {
        use pb::group_delta::DeltaType as D;
        let mut m = self.node.msg().clone();
        m.delta_type = self.child(fresh).map(|(b, _)| match &self.kind {
            GroupDeltaKind::IntraLevel { .. } => D::IntraLevel(b),
            GroupDeltaKind::GroupConstruct { .. } => D::GroupConstruct(b),
            GroupDeltaKind::GroupDestroy(_) => D::GroupDestroy(b),
            GroupDeltaKind::GroupMerge(_) => D::GroupMerge(b),
            GroupDeltaKind::NewL0SubLevel { .. } => D::NewL0SubLevel(b),
            GroupDeltaKind::TruncateTables(_) | GroupDeltaKind::Unset => D::TruncateTables(b),
        });
        self.node.encode_msg(&m)
    }
}

/// `HummockVersionDelta.GroupDeltas`: the deltas of one group, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupDeltas {
    pub node: Node<pb::GroupDeltas>,
    pub deltas: Vec<GroupDelta>,
}

impl Tree for GroupDeltas {
    fn pristine_bytes(&self) -> Option<&Bytes> {
        let o = self.node.original()?;
        list_same(&self.node.msg().group_deltas, self.deltas.iter()).then_some(o)
    }
    fn encode_parts(&self, fresh: bool) -> Bytes {
        let mut m = self.node.msg().clone();
        m.group_deltas = self.deltas.iter().map(|d| d.to_bytes(fresh)).collect();
        self.node.encode_msg(&m)
    }
}

/// A decoded `HummockVersionDelta`.
#[derive(Debug, Clone, PartialEq)]
pub struct Delta {
    pub node: Node<pb::HummockVersionDelta>,
    pub group_deltas: BTreeMap<u64, GroupDeltas>,
    pub state_table_info_delta: BTreeMap<u32, Node<pb::StateTableInfoDelta>>,
}

impl Delta {
    pub(crate) fn decode(ctx: &Ctx<'_>, b: &Bytes) -> Result<Delta> {
        let node: Node<pb::HummockVersionDelta> = node(ctx, b)?;
        let mut group_deltas = BTreeMap::new();
        for (gid, b) in &node.msg().group_deltas {
            let n: Node<pb::GroupDeltas> = self::node(ctx, b)?;
            let deltas = n
                .msg()
                .group_deltas
                .iter()
                .map(|d| GroupDelta::decode(ctx, d))
                .collect::<Result<_>>()?;
            group_deltas.insert(*gid, GroupDeltas { node: n, deltas });
        }
        let state_table_info_delta = map_nodes(ctx, &node.msg().state_table_info_delta)?;
        Ok(Delta {
            node,
            group_deltas,
            state_table_info_delta,
        })
    }

    /// Decodes a bare `HummockVersionDelta` message; `file` names it in errors.
    pub fn from_bytes(file: &str, b: &Bytes) -> Result<Delta> {
        Delta::decode(&Ctx::new(file, b), b)
    }

    pub fn id(&self) -> u64 {
        self.node.msg().id
    }
    pub fn prev_id(&self) -> u64 {
        self.node.msg().prev_id
    }

    /// SSTs the delta inserts, in every group.
    pub fn inserted_ssts(&self) -> impl Iterator<Item = &Sst> {
        self.group_deltas
            .values()
            .flat_map(|g| g.deltas.iter())
            .flat_map(|d| d.inserted().iter())
    }

    pub fn encode(&self) -> Bytes {
        self.to_bytes(false)
    }
}

impl Tree for Delta {
    fn pristine_bytes(&self) -> Option<&Bytes> {
        let o = self.node.original()?;
        let m = self.node.msg();
        (map_same(&m.group_deltas, &self.group_deltas)
            && map_same(&m.state_table_info_delta, &self.state_table_info_delta))
        .then_some(o)
    }
    fn encode_parts(&self, fresh: bool) -> Bytes {
        let mut m = self.node.msg().clone();
        m.group_deltas = map_bytes(&self.group_deltas, fresh);
        m.state_table_info_delta = map_bytes(&self.state_table_info_delta, fresh);
        self.node.encode_msg(&m)
    }
}
