//! The metadata model: the state a meta service holds and the changes that move it.
//!
//! [`State`] is applied to by [`State::apply_batch`] (validating, all-or-nothing, used
//! when committing) and [`State::replay`] (used when recovering or restoring a log that
//! was valid when written). Both are deterministic: the same changes on the same state
//! give the same state.

mod apply;
mod error;
mod hummock;

pub use apply::Subject;
pub use error::{ApplyError, GROUP_LEVELS_FLOOR, GROUP_LEVELS_PER_BYTE, MAX_GROUP_LEVELS};
pub use hummock::{Group, Level0, SstLoc, Version};

use std::collections::{BTreeMap, HashMap};

/// Types generated from `proto/model.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/metapitr.model.rs"));
}

pub use pb::{
    change, group_delta, Action, AuthInfo, CatalogKind, CatalogObject, Change, GrantPrivilege,
    HummockVersionDelta, IdCategory, KeyRange, SstableInfo, User, WorkerNode, WorkerType,
};

/// Every id generator, in category order.
pub const ID_CATEGORIES: [IdCategory; 8] = [
    IdCategory::Catalog,
    IdCategory::SstableObject,
    IdCategory::CompactionTask,
    IdCategory::CompactionGroup,
    IdCategory::MetaBackup,
    IdCategory::Actor,
    IdCategory::Fragment,
    IdCategory::User,
];

/// The name an id generator has in exports and on the command line.
pub fn id_category_name(c: IdCategory) -> &'static str {
    match c {
        IdCategory::Unspecified => "unspecified",
        IdCategory::Catalog => "catalog",
        IdCategory::SstableObject => "sstable_object",
        IdCategory::CompactionTask => "compaction_task",
        IdCategory::CompactionGroup => "compaction_group",
        IdCategory::MetaBackup => "meta_backup",
        IdCategory::Actor => "actor",
        IdCategory::Fragment => "fragment",
        IdCategory::User => "user",
    }
}

pub fn id_category_from_name(s: &str) -> Option<IdCategory> {
    ID_CATEGORIES
        .iter()
        .copied()
        .find(|c| id_category_name(*c) == s)
}

/// The export name of a catalog kind (`materialized_view`, ...).
pub fn catalog_kind_name(k: CatalogKind) -> &'static str {
    match k {
        CatalogKind::Unspecified => "unspecified",
        CatalogKind::Database => "database",
        CatalogKind::Schema => "schema",
        CatalogKind::Table => "table",
        CatalogKind::MaterializedView => "materialized_view",
        CatalogKind::Index => "index",
        CatalogKind::InternalTable => "internal_table",
        CatalogKind::Source => "source",
        CatalogKind::Sink => "sink",
        CatalogKind::View => "view",
        CatalogKind::Function => "function",
        CatalogKind::Connection => "connection",
        CatalogKind::Secret => "secret",
    }
}

pub const CATALOG_KINDS: [CatalogKind; 12] = [
    CatalogKind::Database,
    CatalogKind::Schema,
    CatalogKind::Table,
    CatalogKind::MaterializedView,
    CatalogKind::Index,
    CatalogKind::InternalTable,
    CatalogKind::Source,
    CatalogKind::Sink,
    CatalogKind::View,
    CatalogKind::Function,
    CatalogKind::Connection,
    CatalogKind::Secret,
];

pub fn catalog_kind_from_name(s: &str) -> Option<CatalogKind> {
    CATALOG_KINDS
        .iter()
        .copied()
        .find(|k| catalog_kind_name(*k) == s)
}

/// Whether a catalog kind owns state in Hummock (its id appears in SSTs' table_ids).
pub fn is_relation_with_state(k: CatalogKind) -> bool {
    matches!(
        k,
        CatalogKind::Table
            | CatalogKind::MaterializedView
            | CatalogKind::Index
            | CatalogKind::InternalTable
    )
}

/// The metadata of a cluster as of one epoch.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// Every record with an epoch at or below this one is applied.
    pub epoch: u64,
    /// The last applied WAL record (0: none).
    pub lsn: u64,
    pub timeline: u32,
    pub cluster_id: String,
    pub catalog: BTreeMap<u32, CatalogObject>,
    pub users: BTreeMap<u32, User>,
    pub hummock: Version,
    /// The next value of each generator, indexed by `IdCategory as usize`.
    pub ids: [u64; 9],
    pub params: BTreeMap<String, String>,
    pub workers: BTreeMap<u32, WorkerNode>,
    // Derived indexes, rebuilt from the above on load.
    /// (name class, database id, schema id, name) → id.
    names: HashMap<(u8, u32, u32, String), u32>,
    /// id → how many objects name it as their database, schema or dependency.
    referrers: HashMap<u32, u32>,
}

impl PartialEq for State {
    fn eq(&self, o: &Self) -> bool {
        self.epoch == o.epoch
            && self.lsn == o.lsn
            && self.timeline == o.timeline
            && self.cluster_id == o.cluster_id
            && self.catalog == o.catalog
            && self.users == o.users
            && self.hummock == o.hummock
            && self.ids == o.ids
            && self.params == o.params
            && self.workers == o.workers
    }
}

impl State {
    pub fn new(timeline: u32) -> Self {
        State {
            timeline,
            ..Default::default()
        }
    }

    pub fn id(&self, c: IdCategory) -> u64 {
        self.ids[c as usize]
    }

    /// The state as the snapshot body message.
    pub fn to_proto(&self) -> pb::MetaState {
        pb::MetaState {
            epoch: self.epoch,
            lsn: self.lsn,
            timeline: self.timeline,
            cluster_id: self.cluster_id.clone(),
            catalog: self.catalog.values().cloned().collect(),
            users: self.users.values().cloned().collect(),
            hummock: Some(self.hummock.to_proto()),
            id_generators: ID_CATEGORIES
                .iter()
                .map(|c| pb::IdGenerator {
                    category: *c as i32,
                    next: self.id(*c),
                })
                .collect(),
            system_params: self
                .params
                .iter()
                .map(|(k, v)| pb::SystemParam {
                    name: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            workers: self.workers.values().cloned().collect(),
        }
    }

    /// Loads a snapshot body, checking the invariants that apply would have kept.
    pub fn from_proto(m: pb::MetaState) -> Result<Self, ApplyError> {
        let mut s = State::new(m.timeline);
        s.epoch = m.epoch;
        s.lsn = m.lsn;
        s.cluster_id = m.cluster_id;
        for u in m.users {
            s.put_user(u);
        }
        for o in m.catalog {
            if s.catalog.contains_key(&o.id) {
                return Err(ApplyError::CatalogExists { id: o.id });
            }
            s.put_catalog(o);
        }
        s.hummock = Version::from_proto(m.hummock.unwrap_or_default())?;
        for g in m.id_generators {
            let c = IdCategory::try_from(g.category)
                .map_err(|_| ApplyError::UnknownIdCategory(g.category))?;
            s.ids[c as usize] = g.next;
        }
        s.params = m
            .system_params
            .into_iter()
            .map(|p| (p.name, p.value))
            .collect();
        s.workers = m.workers.into_iter().map(|w| (w.id, w)).collect();
        Ok(s)
    }

    /// Catalog objects of one kind, in id order.
    pub fn catalog_of(&self, kind: CatalogKind) -> impl Iterator<Item = &CatalogObject> {
        self.catalog.values().filter(move |o| o.kind() == kind)
    }
}

/// The SST object ids a change inserts into the version (O(SSTs in the change)).
pub fn inserted_objects(c: &Change) -> impl Iterator<Item = u64> + '_ {
    let deltas = match &c.kind {
        Some(change::Kind::HummockDelta(d)) => d.group_deltas.as_slice(),
        _ => &[],
    };
    deltas.iter().flat_map(|g| {
        let ssts = match &g.delta {
            Some(pb::group_delta::Delta::NewL0SubLevel(n)) => n.ssts.as_slice(),
            Some(pb::group_delta::Delta::IntraLevel(i)) => i.inserted_ssts.as_slice(),
            _ => &[],
        };
        ssts.iter().map(|s| s.object_id)
    })
}

/// Refuses level counts that would allocate more than the body can justify, before
/// [`State::from_proto`] allocates them.
fn check_level_claims(m: &pb::MetaState, body_len: usize) -> std::result::Result<(), String> {
    let Some(h) = &m.hummock else {
        return Ok(());
    };
    let budget = (body_len as u64)
        .saturating_mul(GROUP_LEVELS_PER_BYTE)
        .saturating_add(GROUP_LEVELS_FLOOR);
    let mut total = 0u64;
    for g in &h.groups {
        if g.max_level > MAX_GROUP_LEVELS {
            return Err(format!(
                "compaction group {} has {} levels, more than {MAX_GROUP_LEVELS}",
                g.id, g.max_level
            ));
        }
        total += u64::from(g.max_level);
        if total > budget {
            return Err(format!(
                "compaction groups claim more than {budget} levels in a {body_len}-byte body"
            ));
        }
    }
    Ok(())
}

impl metapitr_core::Model for State {
    type Change = Change;
    const NAME: &'static str = "metapitr";

    fn empty(timeline: u32) -> Self {
        State::new(timeline)
    }

    fn epoch(&self) -> u64 {
        self.epoch
    }

    fn lsn(&self) -> u64 {
        self.lsn
    }

    fn timeline(&self) -> u32 {
        self.timeline
    }

    fn set_timeline(&mut self, timeline: u32) {
        self.timeline = timeline;
    }

    fn advance_lsn(&mut self, n: u64) {
        self.lsn += n;
    }

    fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    fn apply_batch(
        &mut self,
        epoch: u64,
        changes: &[Change],
    ) -> Result<(), (usize, metapitr_core::error::BoxError)> {
        State::apply_batch(self, epoch, changes).map_err(|(i, e)| (i, Box::new(e) as _))
    }

    fn replay(
        &mut self,
        lsn: u64,
        epoch: u64,
        change: &Change,
    ) -> Result<(), metapitr_core::error::BoxError> {
        State::replay(self, lsn, epoch, change).map_err(|e| Box::new(e) as _)
    }

    fn encode_state(&self) -> Vec<u8> {
        use prost::Message;
        self.to_proto().encode_to_vec()
    }

    fn decode_state(body: &[u8]) -> Result<Self, String> {
        use prost::Message;
        let m = pb::MetaState::decode(body).map_err(|e| format!("does not decode: {e}"))?;
        check_level_claims(&m, body.len()).map_err(|e| format!("inconsistent state: {e}"))?;
        State::from_proto(m).map_err(|e| format!("inconsistent state: {e}"))
    }

    fn inserted_objects(change: &Change) -> impl Iterator<Item = u64> + '_ {
        inserted_objects(change)
    }

    fn referenced_objects(&self) -> roaring::RoaringTreemap {
        self.hummock.object_ids().collect()
    }

    fn id_marks(&self) -> metapitr_core::IdMarks {
        ID_CATEGORIES
            .iter()
            .map(|c| (*c as u32, self.id(*c)))
            .collect()
    }

    fn raise_ids(&mut self, floor: &metapitr_core::IdMarks) {
        for (c, v) in floor {
            if let Some(slot) = self.ids.get_mut(*c as usize) {
                *slot = (*slot).max(*v);
            }
        }
    }

    fn id_mark_of(change: &Change) -> Option<(u32, u64)> {
        match &change.kind {
            Some(change::Kind::IdAdvance(g)) => Some((g.category as u32, g.next)),
            _ => None,
        }
    }

    fn safe_epoch(&self) -> u64 {
        self.hummock.safe_epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metapitr_core::codec::{self, Kind};
    use metapitr_core::snapshot::{decode, decode_payload, encode};
    use prost::Message;

    fn with_groups(max_levels: &[u32]) -> Vec<u8> {
        let m = pb::MetaState {
            timeline: 1,
            hummock: Some(pb::HummockVersion {
                groups: max_levels
                    .iter()
                    .enumerate()
                    .map(|(i, l)| pb::CompactionGroup {
                        id: i as u64 + 2,
                        max_level: *l,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        };
        codec::seal(Kind::Snapshot, &m.encode_to_vec())
    }

    #[test]
    fn round_trip() {
        let payload = with_groups(&[6, 6, 32]);
        let s: State = decode_payload(&payload, "s").unwrap();
        assert_eq!(s.hummock.groups.len(), 3);
        let z = encode(&s).unwrap();
        assert_eq!(decode::<State>(&z, "s").unwrap(), s);
    }

    #[test]
    fn level_counts_are_bounded_before_they_are_allocated() {
        // A group claiming u32::MAX levels: loading it used to allocate 4 billion levels
        // (about 100 GB).
        let e = decode_payload::<State>(&with_groups(&[6, u32::MAX]), "s")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("corrupt s at byte offset 16") && e.contains("levels"),
            "{e}"
        );
        assert!(decode_payload::<State>(&with_groups(&[MAX_GROUP_LEVELS]), "s").is_ok());
        assert!(decode_payload::<State>(&with_groups(&[MAX_GROUP_LEVELS + 1]), "s").is_err());
        // Many groups each at the limit: more levels than the body can justify.
        let e = decode_payload::<State>(&with_groups(&[MAX_GROUP_LEVELS; 64]), "s")
            .unwrap_err()
            .to_string();
        assert!(e.contains("claim more than"), "{e}");
        // Groups of up to 32 levels never hit the total bound.
        assert!(decode_payload::<State>(&with_groups(&[32; 2000]), "s").is_ok());
    }
}
