//! Restore into SQLite (`sqlite:PATH`): the schema of [`super::sql`] in one file, the
//! embedded SQL option of a meta service. Runs on a blocking thread; [`BatchApplier`]
//! (synchronous) keeps such a file in step with a log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags};

use super::sql::{self, Col, Dialect, RowOp, SqlValue};
use super::MetaStore;
use crate::error::{Error, ErrorKind, Result};
use crate::model::State;

/// A SQLite file (`sqlite:PATH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteStore(pub PathBuf);

impl SqliteStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteStore(path.into())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl std::fmt::Display for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&name(&self.0))
    }
}

#[async_trait]
impl MetaStore for SqliteStore {
    async fn is_empty(&self) -> Result<bool> {
        is_empty(&self.0).await
    }

    async fn clear(&self) -> Result<()> {
        clear(&self.0).await
    }

    /// [`write`]: one transaction, which checks the tables are empty itself.
    async fn write_with(&self, state: &State, force: bool, _force_clear: bool) -> Result<()> {
        write(&self.0, state, force).await
    }

    async fn read(&self) -> Result<State> {
        read(&self.0).await
    }
}

fn name(p: &Path) -> String {
    format!("sqlite:{}", p.display())
}

fn err(p: &Path, e: rusqlite::Error) -> Error {
    let kind = match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            rusqlite::ErrorCode::NotADatabase => ErrorKind::Corruption,
            rusqlite::ErrorCode::DatabaseCorrupt => ErrorKind::Corruption,
            rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::PermissionDenied => {
                ErrorKind::InvalidInput
            }
            _ => ErrorKind::Unavailable,
        },
        _ => ErrorKind::Internal,
    };
    Error::meta_store(name(p), kind, e.to_string())
}

fn open(p: &Path, create: bool) -> Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let c = Connection::open_with_flags(p, flags).map_err(|e| err(p, e))?;
    c.execute_batch("PRAGMA foreign_keys = ON;")
        .map_err(|e| err(p, e))?;
    Ok(c)
}

fn non_empty_tables(c: &Connection, p: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for t in sql::tables(Dialect::Sqlite) {
        let exists: bool = c
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [t.name],
                |r| r.get(0),
            )
            .map_err(|e| err(p, e))?;
        if !exists {
            continue;
        }
        let any: bool = c
            .query_row(
                &format!("SELECT EXISTS (SELECT 1 FROM {})", t.name),
                [],
                |r| r.get(0),
            )
            .map_err(|e| err(p, e))?;
        if any {
            out.push(t.name.to_string());
        }
    }
    Ok(out)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("SQLite task: {e}")))?
}

pub async fn is_empty(p: &Path) -> Result<bool> {
    let p = p.to_path_buf();
    blocking(move || {
        if !p.exists() {
            return Ok(true);
        }
        let c = open(&p, false)?;
        Ok(non_empty_tables(&c, &p)?.is_empty())
    })
    .await
}

fn drop_all(c: &Connection, p: &Path) -> Result<()> {
    for t in sql::tables(Dialect::Sqlite)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        c.execute_batch(&format!("DROP TABLE IF EXISTS {}", t.name))
            .map_err(|e| err(p, e))?;
    }
    Ok(())
}

pub async fn clear(p: &Path) -> Result<()> {
    let p = p.to_path_buf();
    blocking(move || {
        if !p.exists() {
            return Ok(());
        }
        let mut c = open(&p, false)?;
        let tx = c.transaction().map_err(|e| err(&p, e))?;
        drop_all(&tx, &p)?;
        tx.commit().map_err(|e| err(&p, e))
    })
    .await
}

/// Creates the schema and inserts the state in one transaction; see
/// [`super::postgres::write`] for `force`.
pub async fn write(p: &Path, state: &State, force: bool) -> Result<()> {
    let p: PathBuf = p.to_path_buf();
    let rows = sql::rows(state, Dialect::Sqlite, &name(&p))?;
    blocking(move || {
        if let Some(parent) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let mut c = open(&p, true)?;
        let tx = c
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| err(&p, e))?;
        let used = non_empty_tables(&tx, &p)?;
        if !force && !used.is_empty() {
            return Err(Error::target_not_empty(format!(
                "{} (tables {})",
                name(&p),
                used.join(", ")
            )));
        }
        drop_all(&tx, &p)?;
        for t in sql::tables(Dialect::Sqlite) {
            tx.execute_batch(&t.create_sql(Dialect::Sqlite))
                .map_err(|e| err(&p, e))?;
        }
        for (t, rs) in &rows {
            let mut stmt = tx
                .prepare_cached(&t.insert_sql(Dialect::Sqlite))
                .map_err(|e| err(&p, e))?;
            for r in rs {
                stmt.execute(rusqlite::params_from_iter(r.iter()))
                    .map_err(|e| err(&p, e))?;
            }
        }
        tx.commit().map_err(|e| err(&p, e))
    })
    .await
}

pub async fn read(p: &Path) -> Result<State> {
    let p = p.to_path_buf();
    let n = name(&p);
    let (tables, generators) = blocking(move || {
        if !p.exists() {
            return Err(Error::meta_store(
                name(&p),
                ErrorKind::NotFound,
                "the file does not exist",
            ));
        }
        let c = open(&p, false)?;
        let mut tables = BTreeMap::new();
        for t in sql::tables(Dialect::Sqlite) {
            let mut stmt = c.prepare(&t.select_sql()).map_err(|e| {
                if e.to_string().contains("no such table") {
                    Error::meta_store(
                        name(&p),
                        ErrorKind::NotFound,
                        format!(
                            "table {} does not exist: this file holds no restore",
                            t.name
                        ),
                    )
                } else {
                    err(&p, e)
                }
            })?;
            let mut rows = stmt.query([]).map_err(|e| err(&p, e))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(|e| err(&p, e))? {
                let mut vals = Vec::with_capacity(t.columns.len());
                for (i, (col, ty)) in t.columns.iter().enumerate() {
                    let v = row.get_ref(i).map_err(|e| err(&p, e))?;
                    vals.push(value(v, *ty).ok_or_else(|| {
                        Error::meta_store(
                            name(&p),
                            ErrorKind::Corruption,
                            format!("{}.{col} does not hold a {ty:?}", t.name),
                        )
                    })?);
                }
                out.push(vals);
            }
            tables.insert(t.name, out);
        }
        let mut generators = BTreeMap::new();
        for r in tables
            .get("id_generators")
            .map(|v| v.as_slice())
            .unwrap_or(&[])
        {
            if let (SqlValue::Text(n), SqlValue::Int(v)) = (&r[0], &r[1]) {
                generators.insert(n.clone(), u64::try_from(*v).unwrap_or(0));
            }
        }
        Ok((tables, generators))
    })
    .await?;
    super::state_from_lines(&n, sql::lines_from_rows(&n, &tables, &generators)?)
}

/// Applies committed batches ([`sql::batch_ops`]) to a file that [`write`] created, one
/// transaction each. Blocking: call it from a blocking thread in async code.
pub struct BatchApplier {
    conn: Connection,
    path: PathBuf,
}

impl BatchApplier {
    pub fn open(p: &Path) -> Result<Self> {
        if !p.exists() {
            return Err(Error::meta_store(
                name(p),
                ErrorKind::NotFound,
                "the file does not exist; write a state into it first",
            ));
        }
        let conn = open(p, false)?;
        // Room for every statement an apply renders (two or three per table).
        conn.set_prepared_statement_cache_capacity(64);
        Ok(BatchApplier {
            conn,
            path: p.to_path_buf(),
        })
    }

    /// Runs `ops` in one transaction: all of them or, on error, none.
    pub fn apply(&mut self, ops: &[RowOp]) -> Result<()> {
        let p = &self.path;
        let fail = |e: rusqlite::Error| {
            let msg = e.to_string();
            match &e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    Error::meta_store(
                        name(p),
                        ErrorKind::Corruption,
                        format!(
                            "{msg}: the file does not hold the state the batch follows; \
                             write the whole state into it again"
                        ),
                    )
                }
                _ if msg.contains("no such table") => Error::meta_store(
                    name(p),
                    ErrorKind::NotFound,
                    format!("{msg}: this file holds no restore; write a state into it first"),
                ),
                _ => err(p, e),
            }
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(fail)?;
        for op in ops {
            let (text, params) = op.statement(Dialect::Sqlite);
            tx.prepare_cached(&text)
                .and_then(|mut s| s.execute(rusqlite::params_from_iter(params.iter())))
                .map_err(fail)?;
        }
        tx.commit().map_err(fail)
    }
}

fn value(v: ValueRef<'_>, ty: Col) -> Option<SqlValue> {
    match (ty, v) {
        (Col::Int | Col::NullInt, ValueRef::Integer(i)) => Some(SqlValue::Int(i)),
        (Col::Bool, ValueRef::Integer(i)) => Some(SqlValue::Bool(i != 0)),
        (Col::Text, ValueRef::Text(t)) => std::str::from_utf8(t)
            .ok()
            .map(|s| SqlValue::Text(s.into())),
        (Col::Bytes | Col::NullBytes, ValueRef::Blob(b)) => Some(SqlValue::Bytes(b.to_vec())),
        (Col::NullInt | Col::NullBytes, ValueRef::Null) => Some(SqlValue::Null(ty)),
        _ => None,
    }
}

impl rusqlite::ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            SqlValue::Int(v) => ToSqlOutput::from(*v),
            SqlValue::Text(v) => ToSqlOutput::from(v.as_str()),
            SqlValue::Bool(v) => ToSqlOutput::from(*v),
            SqlValue::Bytes(v) => ToSqlOutput::from(v.as_slice()),
            SqlValue::Null(_) => ToSqlOutput::from(rusqlite::types::Null),
        })
    }
}
