//! Why a change cannot be applied, and the bounds a state is checked against.

/// Why a change cannot be applied to the state. Each names the objects involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("change is empty (no kind set)")]
    EmptyChange,
    #[error("epoch {epoch} is below the state's epoch {current}; epochs never go back")]
    EpochRegressed { epoch: u64, current: u64 },
    #[error(
        "hummock delta {id} has prev_id {prev_id} but the version is {current}; deltas must chain"
    )]
    DeltaChain { id: u64, prev_id: u64, current: u64 },
    #[error("hummock delta id {id} is not above its prev_id {prev_id}")]
    DeltaIdNotIncreasing { id: u64, prev_id: u64 },
    #[error("hummock delta moves {what} back from {current} to {new}")]
    HummockEpochRegressed {
        what: &'static str,
        current: u64,
        new: u64,
    },
    #[error("group delta for group {group} is empty")]
    EmptyGroupDelta { group: u64 },
    #[error("compaction group {group} does not exist")]
    GroupNotFound { group: u64 },
    #[error("compaction group {group} already exists")]
    GroupExists { group: u64 },
    #[error("compaction group {group} would have {levels} levels, more than {max}")]
    TooManyLevels { group: u64, levels: u32, max: u32 },
    #[error("compaction group {group} still holds {ssts} SSTs; remove them before destroying it")]
    GroupNotEmpty { group: u64, ssts: usize },
    #[error("level {level} does not exist in compaction group {group} (max level {max_level})")]
    LevelOutOfRange {
        group: u64,
        level: u32,
        max_level: u32,
    },
    #[error("SST {sst_id} is not in level {level} of compaction group {group}")]
    SstNotFound { sst_id: u64, group: u64, level: u32 },
    #[error("SST {sst_id} is already in the version")]
    SstExists { sst_id: u64 },
    #[error("L0 sub-level {sub_level_id} of compaction group {group} already exists")]
    SubLevelExists { group: u64, sub_level_id: u64 },
    #[error("L0 sub-level {sub_level_id} of compaction group {group} would be empty")]
    EmptySubLevel { group: u64, sub_level_id: u64 },
    #[error("catalog object {id} has no kind")]
    CatalogKindMissing { id: u32 },
    #[error("catalog object {id} already exists")]
    CatalogExists { id: u32 },
    #[error("catalog object {id} does not exist")]
    CatalogNotFound { id: u32 },
    #[error("catalog object {id} is a {was}; an alter cannot make it a {now}")]
    CatalogKindChanged {
        id: u32,
        was: &'static str,
        now: &'static str,
    },
    #[error("{kind} {id} '{name}' names {parent_kind} {parent}, which does not exist")]
    ParentNotFound {
        kind: &'static str,
        id: u32,
        name: String,
        parent_kind: &'static str,
        parent: u32,
    },
    #[error(
        "{kind} {id} names schema {schema}, which belongs to database {schema_db}, not {database}"
    )]
    SchemaInOtherDatabase {
        kind: &'static str,
        id: u32,
        schema: u32,
        schema_db: u32,
        database: u32,
    },
    #[error("{kind} {id} depends on catalog object {dependency}, which does not exist")]
    DependencyNotFound {
        kind: &'static str,
        id: u32,
        dependency: u32,
    },
    #[error("the name '{name}' is taken by catalog object {existing}")]
    NameTaken { name: String, existing: u32 },
    #[error("catalog object {id} cannot be dropped: {referrers} objects still refer to it")]
    HasReferrers { id: u32, referrers: u32 },
    #[error("owner {owner} of catalog object {id} is not a user")]
    OwnerNotFound { id: u32, owner: u32 },
    #[error("user {id} already exists")]
    UserExists { id: u32 },
    #[error("user {id} does not exist")]
    UserNotFound { id: u32 },
    #[error("the user name '{name}' is taken by user {existing}")]
    UserNameTaken { name: String, existing: u32 },
    #[error("user {id} still owns catalog object {object}")]
    UserOwnsObjects { id: u32, object: u32 },
    #[error("grant for user {user_id} has no privilege")]
    GrantMissingPrivilege { user_id: u32 },
    #[error("user {user_id} holds no {action} grant on object {object_id}")]
    GrantNotFound {
        user_id: u32,
        object_id: u32,
        action: String,
    },
    #[error("id generator category {0} is unknown")]
    UnknownIdCategory(i32),
    #[error("id generator {name} would go back from {current} to {next}")]
    IdRegressed {
        name: &'static str,
        current: u64,
        next: u64,
    },
    #[error("worker {id} already exists")]
    WorkerExists { id: u32 },
    #[error("worker {id} does not exist")]
    WorkerNotFound { id: u32 },
}

/// The most levels a compaction group of a snapshot may have (Hummock uses a handful).
/// Loading a group allocates its levels, so the count is checked first.
pub const MAX_GROUP_LEVELS: u32 = 1024;
/// The levels of all compaction groups together may number at most this many per byte of
/// snapshot body, plus [`GROUP_LEVELS_FLOOR`]: a group costs at least four bytes to encode,
/// so no group of up to 32 levels ever hits this bound.
pub const GROUP_LEVELS_PER_BYTE: u64 = 8;
/// Levels allowed in any snapshot, however small its body.
pub const GROUP_LEVELS_FLOOR: u64 = 4096;
