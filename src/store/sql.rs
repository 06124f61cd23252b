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

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::model::{catalog_kind_name, id_category_name, SstLoc, State, ID_CATEGORIES};

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

pub struct Table {
    pub name: &'static str,
    pub columns: &'static [(&'static str, Col)],
    /// Table constraints after the columns (primary and foreign keys).
    pub constraints: &'static str,
    /// Whether the table exists in this dialect.
    pub sqlite_only: bool,
}

use Col::*;

/// Every table, in foreign-key order (a table comes after every table it references).
pub const TABLES: &[Table] = &[
    Table {
        name: "metapitr_header",
        columns: &[
            ("format", Text),
            ("schema_version", Int),
            ("epoch", Int),
            ("timeline", Int),
        ],
        constraints: "",
        sqlite_only: false,
    },
    Table {
        name: "cluster",
        columns: &[("cluster_id", Text)],
        constraints: "",
        sqlite_only: false,
    },
    Table {
        name: "system_params",
        columns: &[("name", Text), ("value", Text)],
        constraints: "PRIMARY KEY (name)",
        sqlite_only: false,
    },
    Table {
        name: "workers",
        columns: &[
            ("id", Int),
            ("host", Text),
            ("port", Int),
            ("worker_type", Text),
        ],
        constraints: "PRIMARY KEY (id)",
        sqlite_only: false,
    },
    Table {
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
        constraints: "PRIMARY KEY (id), UNIQUE (name)",
        sqlite_only: false,
    },
    Table {
        name: "user_grants",
        columns: &[
            ("user_id", Int),
            ("ordinal", Int),
            ("object_id", Int),
            ("action", Text),
            ("with_grant_option", Bool),
            ("granted_by", Int),
        ],
        constraints: "PRIMARY KEY (user_id, ordinal), FOREIGN KEY (user_id) REFERENCES users (id)",
        sqlite_only: false,
    },
    Table {
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
        constraints: "PRIMARY KEY (id), FOREIGN KEY (database_id) REFERENCES catalog (id), \
                      FOREIGN KEY (schema_id) REFERENCES catalog (id)",
        sqlite_only: false,
    },
    Table {
        name: "catalog_dependencies",
        columns: &[("object_id", Int), ("ordinal", Int), ("depends_on", Int)],
        constraints: "PRIMARY KEY (object_id, ordinal), \
                      FOREIGN KEY (object_id) REFERENCES catalog (id), \
                      FOREIGN KEY (depends_on) REFERENCES catalog (id)",
        sqlite_only: false,
    },
    Table {
        name: "id_generators",
        columns: &[("name", Text), ("next_id", Int)],
        constraints: "PRIMARY KEY (name)",
        sqlite_only: true,
    },
    Table {
        name: "hummock_version",
        columns: &[
            ("id", Int),
            ("max_committed_epoch", Int),
            ("safe_epoch", Int),
        ],
        constraints: "",
        sqlite_only: false,
    },
    Table {
        name: "compaction_groups",
        columns: &[("id", Int), ("max_level", Int), ("member_table_ids", Text)],
        constraints: "PRIMARY KEY (id)",
        sqlite_only: false,
    },
    Table {
        name: "table_committed_epochs",
        columns: &[("table_id", Int), ("epoch", Int)],
        constraints: "PRIMARY KEY (table_id)",
        sqlite_only: false,
    },
    Table {
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
        constraints: "PRIMARY KEY (group_id, sst_id), \
                      FOREIGN KEY (group_id) REFERENCES compaction_groups (id)",
        sqlite_only: false,
    },
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
        if !self.constraints.is_empty() {
            cols.push(self.constraints.to_string());
        }
        format!("CREATE TABLE {} ({})", self.name, cols.join(", "))
    }

    pub fn insert_sql(&self, d: Dialect) -> String {
        let params: Vec<String> = (1..=self.columns.len())
            .map(|i| match d {
                Dialect::Postgres => format!("${i}"),
                Dialect::Sqlite => format!("?{i}"),
            })
            .collect();
        format!(
            "INSERT INTO {} ({}) VALUES ({})",
            self.name,
            self.column_list(),
            params.join(", ")
        )
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

fn int(store: &str, what: &str, v: u64) -> Result<SqlValue> {
    i64::try_from(v).map(SqlValue::Int).map_err(|_| {
        Error::InvalidInput(format!(
            "{what} = {v} does not fit the 64-bit signed integers of {store}"
        ))
    })
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
    let mut out = Vec::new();
    for t in tables(d) {
        let mut rs: Vec<Vec<SqlValue>> = Vec::new();
        match t.name {
            "metapitr_header" => rs.push(vec![
                SqlValue::Text(FORMAT.into()),
                SqlValue::Int(SCHEMA_VERSION),
                int(store, "epoch", state.epoch)?,
                SqlValue::Int(state.timeline.into()),
            ]),
            "cluster" => rs.push(vec![SqlValue::Text(state.cluster_id.clone())]),
            "system_params" => {
                for (k, v) in &state.params {
                    rs.push(vec![SqlValue::Text(k.clone()), SqlValue::Text(v.clone())]);
                }
            }
            "workers" => {
                for w in state.workers.values() {
                    rs.push(vec![
                        SqlValue::Int(w.id.into()),
                        SqlValue::Text(w.host.clone()),
                        SqlValue::Int(w.port.into()),
                        SqlValue::Text(w.worker_type().as_str_name().into()),
                    ]);
                }
            }
            "users" => {
                for u in state.users.values() {
                    let (et, ev) = match &u.auth_info {
                        Some(a) => (
                            SqlValue::Int(a.encryption_type.into()),
                            SqlValue::Bytes(a.encrypted_value.clone()),
                        ),
                        None => (SqlValue::Null(NullInt), SqlValue::Null(NullBytes)),
                    };
                    rs.push(vec![
                        SqlValue::Int(u.id.into()),
                        SqlValue::Text(u.name.clone()),
                        SqlValue::Bool(u.is_super),
                        SqlValue::Bool(u.can_create_db),
                        SqlValue::Bool(u.can_create_user),
                        SqlValue::Bool(u.can_login),
                        et,
                        ev,
                    ]);
                }
            }
            "user_grants" => {
                for u in state.users.values() {
                    for (i, g) in u.grants.iter().enumerate() {
                        rs.push(vec![
                            SqlValue::Int(u.id.into()),
                            SqlValue::Int(i as i64),
                            SqlValue::Int(g.object_id.into()),
                            SqlValue::Text(g.action().as_str_name().into()),
                            SqlValue::Bool(g.with_grant_option),
                            SqlValue::Int(g.granted_by.into()),
                        ]);
                    }
                }
            }
            "catalog" => {
                for o in catalog_in_reference_order(state)? {
                    rs.push(vec![
                        SqlValue::Int(o.id.into()),
                        SqlValue::Text(catalog_kind_name(o.kind()).into()),
                        SqlValue::Text(o.name.clone()),
                        opt_id(store, "database_id", o.database_id)?,
                        opt_id(store, "schema_id", o.schema_id)?,
                        SqlValue::Int(o.owner.into()),
                        SqlValue::Text(o.definition.clone()),
                    ]);
                }
            }
            "catalog_dependencies" => {
                for o in state.catalog.values() {
                    for (i, dep) in o.dependencies.iter().enumerate() {
                        rs.push(vec![
                            SqlValue::Int(o.id.into()),
                            SqlValue::Int(i as i64),
                            SqlValue::Int((*dep).into()),
                        ]);
                    }
                }
            }
            "id_generators" => {
                for c in ID_CATEGORIES {
                    rs.push(vec![
                        SqlValue::Text(id_category_name(c).into()),
                        int(store, id_category_name(c), state.id(c))?,
                    ]);
                }
            }
            "hummock_version" => {
                let v = &state.hummock;
                rs.push(vec![
                    int(store, "hummock version id", v.id)?,
                    int(store, "max_committed_epoch", v.max_committed_epoch)?,
                    int(store, "safe_epoch", v.safe_epoch)?,
                ]);
            }
            "compaction_groups" => {
                for (id, g) in &state.hummock.groups {
                    rs.push(vec![
                        int(store, "compaction group id", *id)?,
                        SqlValue::Int(g.max_level.into()),
                        ids_json(&g.member_table_ids),
                    ]);
                }
            }
            "table_committed_epochs" => {
                for (t, e) in &state.hummock.table_committed_epochs {
                    rs.push(vec![SqlValue::Int((*t).into()), int(store, "epoch", *e)?]);
                }
            }
            "ssts" => {
                for (gid, loc, s) in state.hummock.ssts() {
                    let (level, sub) = match loc {
                        SstLoc::L0(sub) => (0, sub),
                        SstLoc::Level(l) => (l, 0),
                    };
                    let kr = s.key_range.clone().unwrap_or_default();
                    rs.push(vec![
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
                    ]);
                }
            }
            other => return Err(Error::Internal(format!("no rows for table {other}"))),
        }
        out.push((t, rs));
    }
    Ok(out)
}

/// Catalog objects ordered so that each comes after its database, schema and
/// dependencies (ids ascending where the references allow).
fn catalog_in_reference_order(state: &State) -> Result<Vec<&crate::model::CatalogObject>> {
    let mut done: HashMap<u32, bool> = HashMap::with_capacity(state.catalog.len());
    let mut order = Vec::with_capacity(state.catalog.len());
    for root in state.catalog.keys() {
        // Iterative depth-first search; `false` marks an object on the current path.
        let mut stack: Vec<(u32, bool)> = vec![(*root, false)];
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
                    return Err(Error::Internal(format!(
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
                .filter(|r| *r != 0 && *r != id);
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
