//! The SQL schema shared by the PostgreSQL and SQLite targets: a table per category of
//! metadata, with the foreign keys a meta store keeps.
//!
//! | table | primary key | columns (in order) |
//! |---|---|---|
//! | `metapitr_header` | — | `format` ('metapitr-sql'), `schema_version` (1), `epoch`, `timeline` |
//! | `cluster` | — | `cluster_id` |
//! | `system_params` | `name` | `name`, `value` |
//! | `workers` | `id` | `id`, `host`, `port`, `worker_type` |
//! | `users` | `id` | `id`, `name`, `is_super`, `can_create_db`, `can_create_user`, `can_login`, `auth_encryption_type` (NULL: no auth info), `auth_encrypted_value` |
//! | `user_grants` | (`user_id`, `ordinal`) | `user_id` → users, `ordinal`, `object_id`, `action`, `with_grant_option`, `granted_by` |
//! | `catalog` | `id` | `id`, `kind`, `name`, `database_id` → catalog (NULL for 0), `schema_id` → catalog (NULL for 0), `owner`, `definition` |
//! | `catalog_dependencies` | (`object_id`, `ordinal`) | `object_id` → catalog, `ordinal`, `depends_on` → catalog |
//! | `id_generators` (SQLite) | `name` | `name`, `next_id` |
//! | `hummock_version` | — | `id`, `max_committed_epoch`, `safe_epoch` |
//! | `compaction_groups` | `id` | `id`, `max_level`, `member_table_ids` (JSON array) |
//! | `table_committed_epochs` | `table_id` | `table_id`, `epoch` |
//! | `ssts` | (`group_id`, `sst_id`) | `group_id` → compaction_groups, `sst_id`, `object_id`, `level`, `sub_level_id`, `file_size`, `table_ids` (JSON array), `min_epoch`, `max_epoch`, `key_left`, `key_right`, `right_exclusive` |
//!
//! Integers are 64-bit signed (`BIGINT`; a value above 2^63-1 is refused); byte strings
//! are `BYTEA` (PostgreSQL) or `BLOB` (SQLite); kinds, actions and worker types are the
//! export's names. On PostgreSQL the id generators are sequences `id_<name>` (e.g.
//! `id_catalog`) set with `setval(seq, next, false)`, so that `nextval` hands out exactly
//! the generator's next id; SQLite has no sequences and keeps them in `id_generators`.
//!
//! Rows are inserted in foreign-key order (catalog objects after what they name) inside one
//! transaction that also creates the tables, so a failed restore leaves nothing behind.
//! Reading back turns the rows into export lines and through [`crate::jsonl::from_lines`],
//! so a target reads back exactly what was restored, checked like any import.
//!
//! A database written once can then follow a log batch by batch: [`batch_ops`] turns one
//! committed batch and the state after it into [`RowOp`]s touching only the keys the batch
//! names (upserted if the state still holds them, deleted if not; child rows rewritten per
//! parent; the one-row tables and the header, whose epoch becomes the batch's, replaced),
//! ordered so that every foreign key holds after every statement. Both rows and ops come
//! from the same per-entity row builders. `postgres::BatchApplier` and
//! `sqlite::BatchApplier` run one batch's ops per transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::model::{
    catalog_kind_name, change::Kind, group_delta::Delta, id_category_name, CatalogObject, Change,
    Group, IdCategory, SstLoc, SstableInfo, State, User, Version, WorkerNode, ID_CATEGORIES,
};

pub const FORMAT: &str = "metapitr-sql";
pub const SCHEMA_VERSION: i64 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

/// The type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    Int,
    NullInt,
    Text,
    Bool,
    Bytes,
    NullBytes,
}

impl Col {
    fn sql(self, d: Dialect) -> &'static str {
        match (self, d) {
            (Col::Int, _) => "BIGINT NOT NULL",
            (Col::NullInt, _) => "BIGINT",
            (Col::Text, _) => "TEXT NOT NULL",
            (Col::Bool, _) => "BOOLEAN NOT NULL",
            (Col::Bytes, Dialect::Postgres) => "BYTEA NOT NULL",
            (Col::Bytes, Dialect::Sqlite) => "BLOB NOT NULL",
            (Col::NullBytes, Dialect::Postgres) => "BYTEA",
            (Col::NullBytes, Dialect::Sqlite) => "BLOB",
        }
    }
}

/// One value of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Int(i64),
    Text(String),
    Bool(bool),
    Bytes(Vec<u8>),
    /// NULL in a column of the given type.
    Null(Col),
}

/// A table and the rows to insert into it.
pub type TableRows = (&'static Table, Vec<Vec<SqlValue>>);

#[derive(Debug, PartialEq)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [(&'static str, Col)],
    /// The primary key's columns (none: the table holds one row).
    pub key: &'static [&'static str],
    /// Table constraints after the primary key (unique and foreign keys).
    pub constraints: &'static str,
    /// Whether the table exists in this dialect.
    pub sqlite_only: bool,
}

use Col::*;

const HEADER: Table = Table {
    name: "metapitr_header",
    columns: &[
        ("format", Text),
        ("schema_version", Int),
        ("epoch", Int),
        ("timeline", Int),
    ],
    key: &[],
    constraints: "",
    sqlite_only: false,
};
const CLUSTER: Table = Table {
    name: "cluster",
    columns: &[("cluster_id", Text)],
    key: &[],
    constraints: "",
    sqlite_only: false,
};
const SYSTEM_PARAMS: Table = Table {
    name: "system_params",
    columns: &[("name", Text), ("value", Text)],
    key: &["name"],
    constraints: "",
    sqlite_only: false,
};
const WORKERS: Table = Table {
    name: "workers",
    columns: &[
        ("id", Int),
        ("host", Text),
        ("port", Int),
        ("worker_type", Text),
    ],
    key: &["id"],
    constraints: "",
    sqlite_only: false,
};
const USERS: Table = Table {
    name: "users",
    columns: &[
        ("id", Int),
        ("name", Text),
        ("is_super", Bool),
        ("can_create_db", Bool),
        ("can_create_user", Bool),
        ("can_login", Bool),
        ("auth_encryption_type", NullInt),
        ("auth_encrypted_value", NullBytes),
    ],
    key: &["id"],
    constraints: "UNIQUE (name)",
    sqlite_only: false,
};
const USER_GRANTS: Table = Table {
    name: "user_grants",
    columns: &[
        ("user_id", Int),
        ("ordinal", Int),
        ("object_id", Int),
        ("action", Text),
        ("with_grant_option", Bool),
        ("granted_by", Int),
    ],
    key: &["user_id", "ordinal"],
    constraints: "FOREIGN KEY (user_id) REFERENCES users (id)",
    sqlite_only: false,
};
const CATALOG: Table = Table {
    name: "catalog",
    columns: &[
        ("id", Int),
        ("kind", Text),
        ("name", Text),
        ("database_id", NullInt),
        ("schema_id", NullInt),
        ("owner", Int),
        ("definition", Text),
    ],
    key: &["id"],
    constraints: "FOREIGN KEY (database_id) REFERENCES catalog (id), \
                  FOREIGN KEY (schema_id) REFERENCES catalog (id)",
    sqlite_only: false,
};
const CATALOG_DEPENDENCIES: Table = Table {
    name: "catalog_dependencies",
    columns: &[("object_id", Int), ("ordinal", Int), ("depends_on", Int)],
    key: &["object_id", "ordinal"],
    constraints: "FOREIGN KEY (object_id) REFERENCES catalog (id), \
                  FOREIGN KEY (depends_on) REFERENCES catalog (id)",
    sqlite_only: false,
};
const ID_GENERATORS: Table = Table {
    name: "id_generators",
    columns: &[("name", Text), ("next_id", Int)],
    key: &["name"],
    constraints: "",
    sqlite_only: true,
};
const HUMMOCK_VERSION: Table = Table {
    name: "hummock_version",
    columns: &[
        ("id", Int),
        ("max_committed_epoch", Int),
        ("safe_epoch", Int),
    ],
    key: &[],
    constraints: "",
    sqlite_only: false,
};
const COMPACTION_GROUPS: Table = Table {
    name: "compaction_groups",
    columns: &[("id", Int), ("max_level", Int), ("member_table_ids", Text)],
    key: &["id"],
    constraints: "",
    sqlite_only: false,
};
const TABLE_COMMITTED_EPOCHS: Table = Table {
    name: "table_committed_epochs",
    columns: &[("table_id", Int), ("epoch", Int)],
    key: &["table_id"],
    constraints: "",
    sqlite_only: false,
};
const SSTS: Table = Table {
    name: "ssts",
    columns: &[
        ("group_id", Int),
        ("sst_id", Int),
        ("object_id", Int),
        ("level", Int),
        ("sub_level_id", Int),
        ("file_size", Int),
        ("table_ids", Text),
        ("min_epoch", Int),
        ("max_epoch", Int),
        ("key_left", Bytes),
        ("key_right", Bytes),
        ("right_exclusive", Bool),
    ],
    key: &["group_id", "sst_id"],
    constraints: "FOREIGN KEY (group_id) REFERENCES compaction_groups (id)",
    sqlite_only: false,
};

/// Every table, in foreign-key order (a table comes after every table it references).
pub const TABLES: &[Table] = &[
    HEADER,
    CLUSTER,
    SYSTEM_PARAMS,
    WORKERS,
    USERS,
    USER_GRANTS,
    CATALOG,
    CATALOG_DEPENDENCIES,
    ID_GENERATORS,
    HUMMOCK_VERSION,
    COMPACTION_GROUPS,
    TABLE_COMMITTED_EPOCHS,
    SSTS,
];

impl Table {
    pub fn exists_in(&self, d: Dialect) -> bool {
        !self.sqlite_only || d == Dialect::Sqlite
    }

    pub fn create_sql(&self, d: Dialect) -> String {
        let mut cols: Vec<String> = self
            .columns
            .iter()
            .map(|(n, c)| format!("{n} {}", c.sql(d)))
            .collect();
        if !self.key.is_empty() {
            cols.push(format!("PRIMARY KEY ({})", self.key.join(", ")));
        }
        if !self.constraints.is_empty() {
            cols.push(self.constraints.to_string());
        }
        format!("CREATE TABLE {} ({})", self.name, cols.join(", "))
    }

    pub fn insert_sql(&self, d: Dialect) -> String {
        let params: Vec<String> = (1..=self.columns.len()).map(|i| param(d, i)).collect();
        format!(
            "INSERT INTO {} ({}) VALUES ({})",
            self.name,
            self.column_list(),
            params.join(", ")
        )
    }

    /// [`Table::insert_sql`] that overwrites the row with the same primary key, if any.
    pub fn upsert_sql(&self, d: Dialect) -> String {
        let insert = self.insert_sql(d);
        if self.key.is_empty() {
            return insert;
        }
        let set: Vec<String> = self
            .columns
            .iter()
            .filter(|(n, _)| !self.key.contains(n))
            .map(|(n, _)| format!("{n} = excluded.{n}"))
            .collect();
        let action = if set.is_empty() {
            "NOTHING".to_string()
        } else {
            format!("UPDATE SET {}", set.join(", "))
        };
        format!("{insert} ON CONFLICT ({}) DO {action}", self.key.join(", "))
    }

    /// Every row in a stable order.
    pub fn select_sql(&self) -> String {
        format!(
            "SELECT {} FROM {} ORDER BY {}",
            self.column_list(),
            self.name,
            self.column_list()
        )
    }

    fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The tables of a dialect, in foreign-key order.
pub fn tables(d: Dialect) -> impl Iterator<Item = &'static Table> {
    TABLES.iter().filter(move |t| t.exists_in(d))
}

/// Name of the sequence holding an id generator on PostgreSQL.
pub fn sequence_name(generator: &str) -> String {
    format!("id_{generator}")
}

fn id64(store: &str, what: &str, v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| {
        Error::invalid_input(format!(
            "{what} = {v} does not fit the 64-bit signed integers of {store}"
        ))
    })
}

fn int(store: &str, what: &str, v: u64) -> Result<SqlValue> {
    id64(store, what, v).map(SqlValue::Int)
}

fn param(d: Dialect, i: usize) -> String {
    match d {
        Dialect::Postgres => format!("${i}"),
        Dialect::Sqlite => format!("?{i}"),
    }
}

fn ids_json(ids: &[u32]) -> SqlValue {
    SqlValue::Text(Value::from(ids.to_vec()).to_string())
}

fn opt_id(store: &str, what: &str, id: u32) -> Result<SqlValue> {
    if id == 0 {
        Ok(SqlValue::Null(NullInt))
    } else {
        int(store, what, id.into())
    }
}

/// The rows of a state, table by table in [`TABLES`] order (catalog rows in an order
/// where every object comes after the objects it references). `store` names the target
/// in errors.
pub fn rows(state: &State, d: Dialect, store: &str) -> Result<Vec<TableRows>> {
    let (s, h) = (state, &state.hummock);
    let all = |_| true;
    let out: Vec<TableRows> = vec![
        (&HEADER, vec![header_row(s, store)?]),
        (&CLUSTER, vec![cluster_row(s)]),
        (
            &SYSTEM_PARAMS,
            s.params.iter().map(|(k, v)| param_row(k, v)).collect(),
        ),
        (&WORKERS, s.workers.values().map(worker_row).collect()),
        (&USERS, s.users.values().map(user_row).collect()),
        (
            &USER_GRANTS,
            s.users.values().flat_map(grant_rows).collect(),
        ),
        (
            &CATALOG,
            catalog_in_reference_order(s, s.catalog.keys().copied(), all)?
                .into_iter()
                .map(|o| catalog_row(o, store))
                .collect::<Result<_>>()?,
        ),
        (
            &CATALOG_DEPENDENCIES,
            s.catalog.values().flat_map(dependency_rows).collect(),
        ),
        (
            &ID_GENERATORS,
            ID_CATEGORIES
                .iter()
                .map(|c| generator_row(*c, s, store))
                .collect::<Result<_>>()?,
        ),
        (&HUMMOCK_VERSION, vec![version_row(h, store)?]),
        (
            &COMPACTION_GROUPS,
            h.groups
                .iter()
                .map(|(id, g)| group_row(*id, g, store))
                .collect::<Result<_>>()?,
        ),
        (
            &TABLE_COMMITTED_EPOCHS,
            h.table_committed_epochs
                .iter()
                .map(|(t, e)| table_epoch_row(*t, *e, store))
                .collect::<Result<_>>()?,
        ),
        (
            &SSTS,
            h.ssts()
                .map(|(gid, loc, sst)| sst_row(gid, loc, sst, store))
                .collect::<Result<_>>()?,
        ),
    ];
    Ok(out.into_iter().filter(|(t, _)| t.exists_in(d)).collect())
}

fn header_row(s: &State, store: &str) -> Result<Vec<SqlValue>> {
    Ok(vec![
        SqlValue::Text(FORMAT.into()),
        SqlValue::Int(SCHEMA_VERSION),
        int(store, "epoch", s.epoch)?,
        SqlValue::Int(s.timeline.into()),
    ])
}

fn cluster_row(s: &State) -> Vec<SqlValue> {
    vec![SqlValue::Text(s.cluster_id.clone())]
}

fn param_row(name: &str, value: &str) -> Vec<SqlValue> {
    vec![SqlValue::Text(name.into()), SqlValue::Text(value.into())]
}

fn worker_row(w: &WorkerNode) -> Vec<SqlValue> {
    vec![
        SqlValue::Int(w.id.into()),
        SqlValue::Text(w.host.clone()),
        SqlValue::Int(w.port.into()),
        SqlValue::Text(w.worker_type().as_str_name().into()),
    ]
}

fn user_row(u: &User) -> Vec<SqlValue> {
    let (et, ev) = match &u.auth_info {
        Some(a) => (
            SqlValue::Int(a.encryption_type.into()),
            SqlValue::Bytes(a.encrypted_value.clone()),
        ),
        None => (SqlValue::Null(NullInt), SqlValue::Null(NullBytes)),
    };
    vec![
        SqlValue::Int(u.id.into()),
        SqlValue::Text(u.name.clone()),
        SqlValue::Bool(u.is_super),
        SqlValue::Bool(u.can_create_db),
        SqlValue::Bool(u.can_create_user),
        SqlValue::Bool(u.can_login),
        et,
        ev,
    ]
}

/// A user's grants, `ordinal` being the position in the user's (sorted) list.
fn grant_rows(u: &User) -> impl Iterator<Item = Vec<SqlValue>> + '_ {
    u.grants.iter().enumerate().map(|(i, g)| {
        vec![
            SqlValue::Int(u.id.into()),
            SqlValue::Int(i as i64),
            SqlValue::Int(g.object_id.into()),
            SqlValue::Text(g.action().as_str_name().into()),
            SqlValue::Bool(g.with_grant_option),
            SqlValue::Int(g.granted_by.into()),
        ]
    })
}

fn catalog_row(o: &CatalogObject, store: &str) -> Result<Vec<SqlValue>> {
    Ok(vec![
        SqlValue::Int(o.id.into()),
        SqlValue::Text(catalog_kind_name(o.kind()).into()),
        SqlValue::Text(o.name.clone()),
        opt_id(store, "database_id", o.database_id)?,
        opt_id(store, "schema_id", o.schema_id)?,
        SqlValue::Int(o.owner.into()),
        SqlValue::Text(o.definition.clone()),
    ])
}

fn dependency_rows(o: &CatalogObject) -> impl Iterator<Item = Vec<SqlValue>> + '_ {
    o.dependencies.iter().enumerate().map(|(i, dep)| {
        vec![
            SqlValue::Int(o.id.into()),
            SqlValue::Int(i as i64),
            SqlValue::Int((*dep).into()),
        ]
    })
}

fn generator_row(c: IdCategory, s: &State, store: &str) -> Result<Vec<SqlValue>> {
    let name = id_category_name(c);
    Ok(vec![
        SqlValue::Text(name.into()),
        int(store, name, s.id(c))?,
    ])
}

fn version_row(v: &Version, store: &str) -> Result<Vec<SqlValue>> {
    Ok(vec![
        int(store, "hummock version id", v.id)?,
        int(store, "max_committed_epoch", v.max_committed_epoch)?,
        int(store, "safe_epoch", v.safe_epoch)?,
    ])
}

fn group_row(id: u64, g: &Group, store: &str) -> Result<Vec<SqlValue>> {
    Ok(vec![
        int(store, "compaction group id", id)?,
        SqlValue::Int(g.max_level.into()),
        ids_json(&g.member_table_ids),
    ])
}

fn table_epoch_row(table_id: u32, epoch: u64, store: &str) -> Result<Vec<SqlValue>> {
    Ok(vec![
        SqlValue::Int(table_id.into()),
        int(store, "epoch", epoch)?,
    ])
}

fn sst_row(gid: u64, loc: SstLoc, s: &SstableInfo, store: &str) -> Result<Vec<SqlValue>> {
    let (level, sub) = match loc {
        SstLoc::L0(sub) => (0, sub),
        SstLoc::Level(l) => (l, 0),
    };
    let kr = s.key_range.clone().unwrap_or_default();
    Ok(vec![
        int(store, "group_id", gid)?,
        int(store, "sst_id", s.sst_id)?,
        int(store, "object_id", s.object_id)?,
        SqlValue::Int(level.into()),
        int(store, "sub_level_id", sub)?,
        int(store, "file_size", s.file_size)?,
        ids_json(&s.table_ids),
        int(store, "min_epoch", s.min_epoch)?,
        int(store, "max_epoch", s.max_epoch)?,
        SqlValue::Bytes(kr.left),
        SqlValue::Bytes(kr.right),
        SqlValue::Bool(kr.right_exclusive),
    ])
}

/// One statement of an incremental apply ([`batch_ops`]); [`RowOp::statement`] renders it
/// in a dialect.
#[derive(Debug, Clone, PartialEq)]
pub enum RowOp {
    /// Inserts the row, or overwrites the row with its primary key (in a table without
    /// one, only inserts: such a table is cleared first).
    Upsert(&'static Table, Vec<SqlValue>),
    /// Deletes the rows whose columns hold these values: every row when `key` is empty,
    /// else one row by its primary key or a parent's rows in a child table.
    Delete {
        table: &'static Table,
        key: Vec<(&'static str, SqlValue)>,
    },
    /// Deletes the rows whose `column` holds one of `ids`, in one statement: foreign keys
    /// are checked at its end, so the rows may refer to each other.
    DeleteIds {
        table: &'static Table,
        column: &'static str,
        ids: Vec<i64>,
    },
    /// Sets an id generator ([`id_category_name`]): its sequence on PostgreSQL, its
    /// `id_generators` row on SQLite.
    SetGenerator { name: &'static str, next: i64 },
}

impl RowOp {
    /// The SQL text of the operation in a dialect, and its parameters.
    pub fn statement(&self, d: Dialect) -> (String, Vec<SqlValue>) {
        match self {
            RowOp::Upsert(t, row) => (t.upsert_sql(d), row.clone()),
            RowOp::Delete { table, key } => {
                let conds: Vec<String> = key
                    .iter()
                    .enumerate()
                    .map(|(i, (c, _))| format!("{c} = {}", param(d, i + 1)))
                    .collect();
                let filter = if conds.is_empty() {
                    String::new()
                } else {
                    format!(" WHERE {}", conds.join(" AND "))
                };
                let params = key.iter().map(|(_, v)| v.clone()).collect();
                (format!("DELETE FROM {}{filter}", table.name), params)
            }
            RowOp::DeleteIds { table, column, ids } => {
                let list: Vec<String> = ids.iter().map(i64::to_string).collect();
                let (set, list) = match d {
                    // An array literal cast in the statement: one prepared statement for
                    // any number of ids, and an index scan.
                    Dialect::Postgres => (
                        "= ANY($1::text::bigint[])",
                        format!("{{{}}}", list.join(",")),
                    ),
                    Dialect::Sqlite => (
                        "IN (SELECT value FROM json_each(?1))",
                        format!("[{}]", list.join(",")),
                    ),
                };
                let sql = format!("DELETE FROM {} WHERE {column} {set}", table.name);
                (sql, vec![SqlValue::Text(list)])
            }
            RowOp::SetGenerator { name, next } => match d {
                Dialect::Postgres => (
                    "SELECT setval($1::text::regclass, $2, false)".into(),
                    vec![SqlValue::Text(sequence_name(name)), SqlValue::Int(*next)],
                ),
                Dialect::Sqlite => (
                    ID_GENERATORS.upsert_sql(d),
                    vec![SqlValue::Text((*name).into()), SqlValue::Int(*next)],
                ),
            },
        }
    }
}

/// The keys one batch touched, each once.
#[derive(Default)]
struct Touched {
    cluster: bool,
    params: BTreeSet<String>,
    workers: BTreeSet<u32>,
    users: BTreeSet<u32>,
    catalog: BTreeSet<u32>,
    generators: BTreeSet<IdCategory>,
    version: bool,
    groups: BTreeSet<u64>,
    /// (group, sst_id): inserted into or removed from the group.
    ssts: BTreeSet<(u64, u64)>,
    table_epochs: BTreeSet<u32>,
}

impl Touched {
    fn of(changes: &[Change], store: &str) -> Result<Self> {
        let mut t = Touched::default();
        for c in changes {
            let Some(kind) = &c.kind else { continue };
            match kind {
                Kind::CreateCatalog(o) | Kind::AlterCatalog(o) => {
                    t.catalog.insert(o.id);
                }
                Kind::DropCatalog(id) => {
                    t.catalog.insert(*id);
                }
                Kind::IdAdvance(g) => {
                    let c = IdCategory::try_from(g.category).map_err(|_| {
                        Error::invalid_input(format!(
                            "a batch for {store} advances the unknown id generator {}; \
                             apply only batches the state accepted",
                            g.category
                        ))
                    })?;
                    t.generators.insert(c);
                }
                Kind::CreateUser(u) | Kind::AlterUser(u) => {
                    t.users.insert(u.id);
                }
                Kind::DropUser(id) => {
                    t.users.insert(*id);
                }
                Kind::Grant(g) => {
                    t.users.insert(g.user_id);
                }
                Kind::Revoke(r) => {
                    t.users.insert(r.user_id);
                }
                Kind::SetParam(p) => {
                    t.params.insert(p.name.clone());
                }
                Kind::SetClusterId(_) => t.cluster = true,
                Kind::AddWorker(w) => {
                    t.workers.insert(w.id);
                }
                Kind::RemoveWorker(id) => {
                    t.workers.insert(*id);
                }
                Kind::HummockDelta(d) => {
                    t.version = true;
                    for gd in &d.group_deltas {
                        let g = gd.group_id;
                        match &gd.delta {
                            None => {}
                            Some(Delta::GroupConstruct(_) | Delta::GroupDestroy(_)) => {
                                t.groups.insert(g);
                            }
                            Some(Delta::NewL0SubLevel(n)) => {
                                t.ssts.extend(n.ssts.iter().map(|s| (g, s.sst_id)));
                            }
                            Some(Delta::IntraLevel(il)) => {
                                t.ssts.extend(il.removed_sst_ids.iter().map(|s| (g, *s)));
                                t.ssts
                                    .extend(il.inserted_ssts.iter().map(|s| (g, s.sst_id)));
                            }
                        }
                    }
                    let epochs = d.table_committed_epochs.iter().map(|e| e.table_id);
                    t.table_epochs
                        .extend(epochs.chain(d.removed_table_ids.iter().copied()));
                }
            }
        }
        Ok(t)
    }
}

/// The row operations that take a database holding the state before `changes` (one
/// committed batch) to `after`, the state [`State::apply_batch`] made of it: every key the
/// batch touched is upserted if `after` holds it and deleted if not. The order keeps every
/// foreign key after every statement. Costs time in proportion to the batch, not to the
/// state. `store` names the target in errors.
pub fn batch_ops(after: &State, changes: &[Change], store: &str) -> Result<Vec<RowOp>> {
    let t = Touched::of(changes, store)?;
    let h = &after.hummock;
    let clear = |table| RowOp::Delete { table, key: vec![] };
    let mut ops = vec![
        clear(&HEADER),
        RowOp::Upsert(&HEADER, header_row(after, store)?),
    ];
    if t.cluster {
        ops.extend([clear(&CLUSTER), RowOp::Upsert(&CLUSTER, cluster_row(after))]);
    }
    for name in &t.params {
        ops.push(match after.params.get(name) {
            Some(v) => RowOp::Upsert(&SYSTEM_PARAMS, param_row(name, v)),
            None => RowOp::Delete {
                table: &SYSTEM_PARAMS,
                key: vec![("name", SqlValue::Text(name.clone()))],
            },
        });
    }

    ops.extend(delete_ids(
        &WORKERS,
        "id",
        gone(&t.workers, |k| after.workers.contains_key(k)),
    ));
    ops.extend(
        t.workers
            .iter()
            .filter_map(|id| after.workers.get(id))
            .map(|w| RowOp::Upsert(&WORKERS, worker_row(w))),
    );

    // Users are deleted and inserted again rather than upserted: a batch may pass a name
    // from one user to another, and `users.name` is unique row by row.
    let users: Vec<i64> = t.users.iter().map(|id| i64::from(*id)).collect();
    ops.extend(delete_ids(&USER_GRANTS, "user_id", users.clone()));
    ops.extend(delete_ids(&USERS, "id", users));
    let users: Vec<&User> = t
        .users
        .iter()
        .filter_map(|id| after.users.get(id))
        .collect();
    ops.extend(users.iter().map(|u| RowOp::Upsert(&USERS, user_row(u))));
    let grants = users.iter().flat_map(|u| grant_rows(u));
    ops.extend(grants.map(|r| RowOp::Upsert(&USER_GRANTS, r)));

    // Catalog: dependencies of every touched object go first, then objects that remain
    // are upserted in reference order with their dependencies, then dropped ones deleted
    // together (a batch may alter an object away from what it drops later, so the rows
    // being deleted need not come in an order the batch shows).
    let touched: Vec<i64> = t.catalog.iter().map(|id| i64::from(*id)).collect();
    ops.extend(delete_ids(&CATALOG_DEPENDENCIES, "object_id", touched));
    let kept = catalog_in_reference_order(after, t.catalog.iter().copied(), |id| {
        t.catalog.contains(&id)
    })?;
    for o in &kept {
        ops.push(RowOp::Upsert(&CATALOG, catalog_row(o, store)?));
    }
    let deps = kept.iter().flat_map(|o| dependency_rows(o));
    ops.extend(deps.map(|r| RowOp::Upsert(&CATALOG_DEPENDENCIES, r)));
    ops.extend(delete_ids(
        &CATALOG,
        "id",
        gone(&t.catalog, |k| after.catalog.contains_key(k)),
    ));

    for c in &t.generators {
        let name = id_category_name(*c);
        let next = id64(store, name, after.id(*c))?;
        ops.push(RowOp::SetGenerator { name, next });
    }

    if t.version {
        ops.extend([
            clear(&HUMMOCK_VERSION),
            RowOp::Upsert(&HUMMOCK_VERSION, version_row(h, store)?),
        ]);
    }
    // Groups exist before their SSTs arrive and go after their SSTs left.
    for (id, g) in t
        .groups
        .iter()
        .filter_map(|id| Some((*id, h.groups.get(id)?)))
    {
        ops.push(RowOp::Upsert(&COMPACTION_GROUPS, group_row(id, g, store)?));
    }
    let mut inserts = Vec::new();
    for &(g, id) in &t.ssts {
        // An SST the batch removed may sit elsewhere in the same group now (a move
        // between levels), or in another group (touched there too).
        let now = h.locate(id).filter(|(at, _)| *at == g);
        match now.and_then(|(_, loc)| Some((loc, h.sst(id)?))) {
            Some((loc, s)) => inserts.push(RowOp::Upsert(&SSTS, sst_row(g, loc, s, store)?)),
            None => ops.push(RowOp::Delete {
                table: &SSTS,
                key: vec![
                    ("group_id", int(store, "group_id", g)?),
                    ("sst_id", int(store, "sst_id", id)?),
                ],
            }),
        }
    }
    let destroyed = t
        .groups
        .iter()
        .filter(|id| !h.groups.contains_key(id))
        .map(|id| id64(store, "compaction group id", *id))
        .collect::<Result<Vec<_>>>()?;
    ops.extend(destroyed.iter().map(|id| RowOp::Delete {
        table: &SSTS,
        key: vec![("group_id", SqlValue::Int(*id))],
    }));
    ops.extend(inserts);
    ops.extend(delete_ids(&COMPACTION_GROUPS, "id", destroyed));

    let epochs = &h.table_committed_epochs;
    ops.extend(delete_ids(
        &TABLE_COMMITTED_EPOCHS,
        "table_id",
        gone(&t.table_epochs, |k| epochs.contains_key(k)),
    ));
    for (tid, e) in t
        .table_epochs
        .iter()
        .filter_map(|k| Some((*k, *epochs.get(k)?)))
    {
        ops.push(RowOp::Upsert(
            &TABLE_COMMITTED_EPOCHS,
            table_epoch_row(tid, e, store)?,
        ));
    }
    Ok(ops)
}

/// Deletes the rows whose `column` is one of `ids`; none when there are none.
fn delete_ids(table: &'static Table, column: &'static str, ids: Vec<i64>) -> Option<RowOp> {
    (!ids.is_empty()).then_some(RowOp::DeleteIds { table, column, ids })
}

/// The keys that are not `present` (any more).
fn gone(keys: &BTreeSet<u32>, present: impl Fn(&u32) -> bool) -> Vec<i64> {
    keys.iter()
        .filter(|k| !present(k))
        .map(|k| i64::from(*k))
        .collect()
}

/// Catalog objects reachable from `roots` through references to objects `within` allows,
/// ordered so that each comes after its database, schema and dependencies among them (ids
/// ascending where the references allow).
fn catalog_in_reference_order(
    state: &State,
    roots: impl IntoIterator<Item = u32>,
    within: impl Fn(u32) -> bool,
) -> Result<Vec<&CatalogObject>> {
    let mut done: HashMap<u32, bool> = HashMap::new();
    let mut order = Vec::new();
    for root in roots {
        // Iterative depth-first search; `false` marks an object on the current path.
        let mut stack: Vec<(u32, bool)> = vec![(root, false)];
        while let Some((id, expanded)) = stack.pop() {
            if expanded {
                done.insert(id, true);
                if let Some(o) = state.catalog.get(&id) {
                    order.push(o);
                }
                continue;
            }
            match done.get(&id) {
                Some(true) => continue,
                Some(false) => {
                    return Err(Error::internal(format!(
                        "catalog object {id} is part of a reference cycle"
                    )))
                }
                None => {}
            }
            let Some(o) = state.catalog.get(&id) else {
                continue;
            };
            done.insert(id, false);
            stack.push((id, true));
            let refs = [o.database_id, o.schema_id]
                .into_iter()
                .chain(o.dependencies.iter().copied())
                .filter(|r| *r != 0 && *r != id && within(*r));
            for r in refs.collect::<Vec<_>>().into_iter().rev() {
                if !done.contains_key(&r) {
                    stack.push((r, false));
                }
            }
        }
    }
    Ok(order)
}

/// Turns rows read back (table name → rows, each in [`Table::columns`] order) and the id
/// generators' next values into export lines, header first.
pub fn lines_from_rows(
    store: &str,
    tables_rows: &BTreeMap<&'static str, Vec<Vec<SqlValue>>>,
    generators: &BTreeMap<String, u64>,
) -> Result<Vec<Value>> {
    let bad = |what: String| {
        Error::meta_store(
            store,
            crate::error::ErrorKind::Corruption,
            format!("{what}; restore into it again with --force"),
        )
    };
    let get = |t: &str| tables_rows.get(t).map(|v| v.as_slice()).unwrap_or(&[]);
    let header = match get("metapitr_header") {
        [h] => h,
        hs => {
            return Err(bad(format!(
                "metapitr_header holds {} rows where one is expected",
                hs.len()
            )))
        }
    };
    let r = Reader { bad: &bad };
    if r.text(&header[0], "metapitr_header.format")? != FORMAT {
        return Err(bad(format!("metapitr_header.format is not {FORMAT}")));
    }
    let sv = r.int(&header[1], "metapitr_header.schema_version")?;
    if sv != SCHEMA_VERSION as u64 {
        return Err(bad(format!(
            "schema_version {sv} is not supported (this build reads {SCHEMA_VERSION})"
        )));
    }
    let epoch = r.int(&header[2], "metapitr_header.epoch")?;
    let mut out = vec![json!({
        "format": crate::jsonl::FORMAT,
        "format_version": crate::jsonl::FORMAT_VERSION,
        "epoch": epoch,
        "epoch_ts": crate::epoch::format(epoch),
        "timeline": r.int(&header[3], "metapitr_header.timeline")?,
    })];
    for c in get("cluster") {
        out.push(json!({"kind": "cluster", "cluster_id": r.text(&c[0], "cluster.cluster_id")?}));
    }
    for p in get("system_params") {
        out.push(json!({"kind": "system_param", "name": r.text(&p[0], "name")?, "value": r.text(&p[1], "value")?}));
    }
    for w in get("workers") {
        out.push(json!({
            "kind": "worker", "id": r.int(&w[0], "workers.id")?, "host": r.text(&w[1], "workers.host")?,
            "port": r.int(&w[2], "workers.port")?, "worker_type": r.text(&w[3], "workers.worker_type")?,
        }));
    }
    let mut grants: BTreeMap<u64, Vec<(u64, Value)>> = BTreeMap::new();
    for g in get("user_grants") {
        grants
            .entry(r.int(&g[0], "user_grants.user_id")?)
            .or_default()
            .push((
                r.int(&g[1], "user_grants.ordinal")?,
                json!({
                    "object_id": r.int(&g[2], "user_grants.object_id")?,
                    "action": r.text(&g[3], "user_grants.action")?,
                    "with_grant_option": r.bool(&g[4], "user_grants.with_grant_option")?,
                    "granted_by": r.int(&g[5], "user_grants.granted_by")?,
                }),
            ));
    }
    for u in get("users") {
        let id = r.int(&u[0], "users.id")?;
        let auth = match (&u[6], &u[7]) {
            (SqlValue::Null(_), SqlValue::Null(_)) => Value::Null,
            (t, v) => json!({
                "encryption_type": r.int(t, "users.auth_encryption_type")?,
                "encrypted_value": hex::encode(r.bytes(v, "users.auth_encrypted_value")?),
            }),
        };
        let mut gs = grants.remove(&id).unwrap_or_default();
        gs.sort_by_key(|(o, _)| *o);
        out.push(json!({
            "kind": "user", "id": id, "name": r.text(&u[1], "users.name")?,
            "is_super": r.bool(&u[2], "users.is_super")?,
            "can_create_db": r.bool(&u[3], "users.can_create_db")?,
            "can_create_user": r.bool(&u[4], "users.can_create_user")?,
            "can_login": r.bool(&u[5], "users.can_login")?,
            "auth_info": auth,
            "grants": gs.into_iter().map(|(_, g)| g).collect::<Vec<_>>(),
        }));
    }
    if let Some(uid) = grants.keys().next() {
        return Err(bad(format!(
            "user_grants names user {uid}, which has no row"
        )));
    }
    let mut deps: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    for d in get("catalog_dependencies") {
        deps.entry(r.int(&d[0], "catalog_dependencies.object_id")?)
            .or_default()
            .push((
                r.int(&d[1], "catalog_dependencies.ordinal")?,
                r.int(&d[2], "catalog_dependencies.depends_on")?,
            ));
    }
    for o in get("catalog") {
        let id = r.int(&o[0], "catalog.id")?;
        let mut ds = deps.remove(&id).unwrap_or_default();
        ds.sort_unstable();
        out.push(json!({
            "kind": r.text(&o[1], "catalog.kind")?, "id": id, "name": r.text(&o[2], "catalog.name")?,
            "database_id": r.opt_int(&o[3], "catalog.database_id")?,
            "schema_id": r.opt_int(&o[4], "catalog.schema_id")?,
            "owner": r.int(&o[5], "catalog.owner")?,
            "definition": r.text(&o[6], "catalog.definition")?,
            "dependencies": ds.into_iter().map(|(_, d)| d).collect::<Vec<_>>(),
        }));
    }
    if let Some(oid) = deps.keys().next() {
        return Err(bad(format!(
            "catalog_dependencies names object {oid}, which has no row"
        )));
    }
    for c in ID_CATEGORIES {
        let name = id_category_name(c);
        let v = generators
            .get(name)
            .ok_or_else(|| bad(format!("id generator {name} is missing")))?;
        out.push(json!({"kind": "id_generator", "name": name, "value": v}));
    }
    for v in get("hummock_version") {
        out.push(json!({
            "kind": "hummock_version", "id": r.int(&v[0], "hummock_version.id")?,
            "max_committed_epoch": r.int(&v[1], "hummock_version.max_committed_epoch")?,
            "safe_epoch": r.int(&v[2], "hummock_version.safe_epoch")?,
        }));
    }
    for g in get("compaction_groups") {
        out.push(json!({
            "kind": "compaction_group", "id": r.int(&g[0], "compaction_groups.id")?,
            "max_level": r.int(&g[1], "compaction_groups.max_level")?,
            "member_table_ids": r.json(&g[2], "compaction_groups.member_table_ids")?,
        }));
    }
    for t in get("table_committed_epochs") {
        out.push(json!({
            "kind": "table_committed_epoch", "table_id": r.int(&t[0], "table_committed_epochs.table_id")?,
            "epoch": r.int(&t[1], "table_committed_epochs.epoch")?,
        }));
    }
    for s in get("ssts") {
        out.push(json!({
            "kind": "sst", "group_id": r.int(&s[0], "ssts.group_id")?, "sst_id": r.int(&s[1], "ssts.sst_id")?,
            "object_id": r.int(&s[2], "ssts.object_id")?, "level": r.int(&s[3], "ssts.level")?,
            "sub_level_id": r.int(&s[4], "ssts.sub_level_id")?, "file_size": r.int(&s[5], "ssts.file_size")?,
            "table_ids": r.json(&s[6], "ssts.table_ids")?, "min_epoch": r.int(&s[7], "ssts.min_epoch")?,
            "max_epoch": r.int(&s[8], "ssts.max_epoch")?,
            "key_left": hex::encode(r.bytes(&s[9], "ssts.key_left")?),
            "key_right": hex::encode(r.bytes(&s[10], "ssts.key_right")?),
            "right_exclusive": r.bool(&s[11], "ssts.right_exclusive")?,
        }));
    }
    Ok(out)
}

/// Typed access to values read back, with errors naming the column.
struct Reader<'a, F: Fn(String) -> Error> {
    bad: &'a F,
}

impl<F: Fn(String) -> Error> Reader<'_, F> {
    fn int(&self, v: &SqlValue, col: &str) -> Result<u64> {
        match v {
            SqlValue::Int(i) => u64::try_from(*i)
                .map_err(|_| (self.bad)(format!("{col} holds the negative value {i}"))),
            other => Err((self.bad)(format!(
                "{col} holds {other:?} where an integer is expected"
            ))),
        }
    }
    fn opt_int(&self, v: &SqlValue, col: &str) -> Result<u64> {
        match v {
            SqlValue::Null(_) => Ok(0),
            v => self.int(v, col),
        }
    }
    fn text<'v>(&self, v: &'v SqlValue, col: &str) -> Result<&'v str> {
        match v {
            SqlValue::Text(s) => Ok(s),
            other => Err((self.bad)(format!(
                "{col} holds {other:?} where text is expected"
            ))),
        }
    }
    fn bool(&self, v: &SqlValue, col: &str) -> Result<bool> {
        match v {
            SqlValue::Bool(b) => Ok(*b),
            SqlValue::Int(0) => Ok(false),
            SqlValue::Int(1) => Ok(true),
            other => Err((self.bad)(format!(
                "{col} holds {other:?} where a boolean is expected"
            ))),
        }
    }
    fn bytes<'v>(&self, v: &'v SqlValue, col: &str) -> Result<&'v [u8]> {
        match v {
            SqlValue::Bytes(b) => Ok(b),
            other => Err((self.bad)(format!(
                "{col} holds {other:?} where bytes are expected"
            ))),
        }
    }
    fn json(&self, v: &SqlValue, col: &str) -> Result<Value> {
        let s = self.text(v, col)?;
        serde_json::from_str(s).map_err(|e| (self.bad)(format!("{col} is not a JSON array: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_come_table_by_table_in_table_order() {
        for d in [Dialect::Postgres, Dialect::Sqlite] {
            let rows = rows(&State::new(1), d, "test").unwrap();
            let names: Vec<&str> = rows.iter().map(|(t, _)| t.name).collect();
            assert_eq!(names, tables(d).map(|t| t.name).collect::<Vec<_>>());
        }
    }
}
