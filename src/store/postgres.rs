//! Restore into PostgreSQL: the schema of [`super::sql`], one transaction per restore,
//! id generators as sequences; [`BatchApplier`] keeps such a database in step with a log.

use std::collections::{BTreeMap, HashMap};

use bytes::BytesMut;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::{Client, GenericClient, NoTls, Statement};

use super::sql::{self, Col, Dialect, RowOp, SqlValue};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{id_category_name, State, ID_CATEGORIES};

/// Rows sent to the server before waiting for their results.
const PIPELINE: usize = 512;

/// `postgres://USER:PASSWORD@HOST:PORT/DB`: the URL with its password hidden, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

pub async fn connect(url: &str) -> Result<Client> {
    let name = redact(url);
    let cfg: tokio_postgres::Config = url.parse().map_err(|e| {
        Error::meta_store(
            &name,
            ErrorKind::InvalidInput,
            format!(
                "not a PostgreSQL connection URL ({e}); use postgres://USER:PASSWORD@HOST:PORT/DB"
            ),
        )
    })?;
    let mut cfg = cfg;
    // As libpq: a password not in the URL comes from PGPASSWORD, so that it need not
    // appear on a command line.
    if cfg.get_password().is_none() {
        if let Some(p) = crate::config::process_env("PGPASSWORD") {
            cfg.password(p);
        }
    }
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(std::time::Duration::from_secs(10));
    }
    let (client, conn) = cfg.connect(NoTls).await.map_err(|e| classify(&name, e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!("PostgreSQL connection closed: {e}");
        }
    });
    Ok(client)
}

/// Maps a driver error to what the operator should do.
fn classify(store: &str, e: tokio_postgres::Error) -> Error {
    use tokio_postgres::error::SqlState;
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let (kind, hint) = if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            (
                ErrorKind::InvalidInput,
                "check the user and password in the URL",
            )
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            (
                ErrorKind::InvalidInput,
                "create the database first (CREATE DATABASE) or name an existing one",
            )
        } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            (
                ErrorKind::InvalidInput,
                "grant the user CREATE on the database, or use its owner",
            )
        } else {
            (ErrorKind::Unavailable, "see the server's log")
        };
        return Error::meta_store(store, kind, format!("{}: {hint}", db.message()));
    }
    let msg = {
        use std::error::Error as _;
        let mut s = e.to_string();
        let mut src = e.source();
        while let Some(x) = src {
            s.push_str(": ");
            s.push_str(&x.to_string());
            src = x.source();
        }
        s
    };
    let kind = if msg.contains("password") || msg.contains("authentication") {
        ErrorKind::InvalidInput
    } else {
        ErrorKind::Unavailable
    };
    Error::meta_store(
        store,
        kind,
        format!("{msg}; check that the server runs and the URL is right"),
    )
}

/// Which of our tables exist and hold rows.
async fn non_empty_tables(c: &impl GenericClient, store: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for t in sql::tables(Dialect::Postgres) {
        let exists: bool = c
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&t.name.to_string()])
            .await
            .map_err(|e| classify(store, e))?
            .get(0);
        if !exists {
            continue;
        }
        let row = c
            .query_opt(&format!("SELECT 1 FROM {} LIMIT 1", t.name), &[])
            .await
            .map_err(|e| classify(store, e))?;
        if row.is_some() {
            out.push(t.name.to_string());
        }
    }
    Ok(out)
}

pub async fn is_empty(url: &str) -> Result<bool> {
    let c = connect(url).await?;
    Ok(non_empty_tables(&c, &redact(url)).await?.is_empty())
}

fn drop_all_sql() -> Vec<String> {
    let mut v: Vec<String> = sql::tables(Dialect::Postgres)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .map(|t| format!("DROP TABLE IF EXISTS {}", t.name))
        .collect();
    for c in ID_CATEGORIES {
        v.push(format!(
            "DROP SEQUENCE IF EXISTS {}",
            sql::sequence_name(id_category_name(c))
        ));
    }
    v
}

/// Drops every table and sequence of the schema.
pub async fn clear(url: &str) -> Result<()> {
    let name = redact(url);
    let mut c = connect(url).await?;
    let tx = c.transaction().await.map_err(|e| classify(&name, e))?;
    for s in drop_all_sql() {
        tx.batch_execute(&s).await.map_err(|e| classify(&name, e))?;
    }
    tx.commit().await.map_err(|e| classify(&name, e))
}

/// Creates the schema and inserts the state in one transaction. Unless `force`, our
/// tables must be absent or empty (checked inside the transaction); existing ones are
/// dropped and created again.
pub async fn write(url: &str, state: &State, force: bool) -> Result<()> {
    let name = redact(url);
    let rows = sql::rows(state, Dialect::Postgres, &name)?;
    let mut c = connect(url).await?;
    let tx = c.transaction().await.map_err(|e| classify(&name, e))?;
    let used = non_empty_tables(&tx, &name).await?;
    if !force && !used.is_empty() {
        return Err(Error::TargetNotEmpty(format!(
            "{name} (tables {})",
            used.join(", ")
        )));
    }
    for s in drop_all_sql() {
        tx.batch_execute(&s).await.map_err(|e| classify(&name, e))?;
    }
    for t in sql::tables(Dialect::Postgres) {
        tx.batch_execute(&t.create_sql(Dialect::Postgres))
            .await
            .map_err(|e| classify(&name, e))?;
    }
    for c in ID_CATEGORIES {
        let next = i64::try_from(state.id(c)).map_err(|_| {
            Error::InvalidInput(format!(
                "id generator {} = {} does not fit a PostgreSQL sequence",
                id_category_name(c),
                state.id(c)
            ))
        })?;
        let seq = sql::sequence_name(id_category_name(c));
        tx.batch_execute(&format!(
            "CREATE SEQUENCE {seq} AS BIGINT MINVALUE 0 START WITH 0"
        ))
        .await
        .map_err(|e| classify(&name, e))?;
        tx.execute(
            "SELECT setval($1::text::regclass, $2, false)",
            &[&seq, &next],
        )
        .await
        .map_err(|e| classify(&name, e))?;
    }
    for (t, rs) in &rows {
        if rs.is_empty() {
            continue;
        }
        let stmt = tx
            .prepare(&t.insert_sql(Dialect::Postgres))
            .await
            .map_err(|e| classify(&name, e))?;
        for chunk in rs.chunks(PIPELINE) {
            let futs = chunk.iter().map(|r| {
                let params: Vec<&(dyn ToSql + Sync)> =
                    r.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
                let stmt = &stmt;
                let tx = &tx;
                async move { tx.execute(stmt, &params).await }
            });
            futures::future::try_join_all(futs)
                .await
                .map_err(|e| classify(&name, e))?;
        }
    }
    tx.commit().await.map_err(|e| classify(&name, e))
}

/// Reads the state back.
pub async fn read(url: &str) -> Result<State> {
    let name = redact(url);
    let c = connect(url).await?;
    let mut tables = BTreeMap::new();
    for t in sql::tables(Dialect::Postgres) {
        let rows = c.query(&t.select_sql(), &[]).await.map_err(|e| {
            let missing = e
                .as_db_error()
                .is_some_and(|d| *d.code() == tokio_postgres::error::SqlState::UNDEFINED_TABLE);
            if missing {
                Error::meta_store(
                    &name,
                    ErrorKind::NotFound,
                    format!(
                        "table {} does not exist: this database holds no restore",
                        t.name
                    ),
                )
            } else {
                classify(&name, e)
            }
        })?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut vals = Vec::with_capacity(t.columns.len());
            for (i, (col, ty)) in t.columns.iter().enumerate() {
                let v = match ty {
                    Col::Int => row.try_get::<_, i64>(i).map(SqlValue::Int),
                    Col::NullInt => row
                        .try_get::<_, Option<i64>>(i)
                        .map(|v| v.map_or(SqlValue::Null(Col::NullInt), SqlValue::Int)),
                    Col::Text => row.try_get::<_, String>(i).map(SqlValue::Text),
                    Col::Bool => row.try_get::<_, bool>(i).map(SqlValue::Bool),
                    Col::Bytes => row.try_get::<_, Vec<u8>>(i).map(SqlValue::Bytes),
                    Col::NullBytes => row
                        .try_get::<_, Option<Vec<u8>>>(i)
                        .map(|v| v.map_or(SqlValue::Null(Col::NullBytes), SqlValue::Bytes)),
                }
                .map_err(|e| {
                    Error::meta_store(
                        &name,
                        ErrorKind::Corruption,
                        format!("{}.{col} does not read as {ty:?}: {e}", t.name),
                    )
                })?;
                vals.push(v);
            }
            out.push(vals);
        }
        tables.insert(t.name, out);
    }
    let mut generators = BTreeMap::new();
    for cat in ID_CATEGORIES {
        let g = id_category_name(cat);
        let seq = sql::sequence_name(g);
        let row = c
            .query_one(&format!("SELECT last_value, is_called FROM {seq}"), &[])
            .await
            .map_err(|e| classify(&name, e))?;
        let last: i64 = row.get(0);
        let called: bool = row.get(1);
        let next = if called { last + 1 } else { last };
        generators.insert(g.to_string(), u64::try_from(next).unwrap_or(0));
    }
    super::state_from_lines(&name, sql::lines_from_rows(&name, &tables, &generators)?)
}

/// Applies committed batches ([`sql::batch_ops`]) to a database that [`write`] created,
/// one transaction each, with every statement prepared once per connection and the
/// statements of a batch pipelined.
pub struct BatchApplier {
    client: Client,
    store: String,
    prepared: HashMap<String, Statement>,
}

impl BatchApplier {
    pub async fn connect(url: &str) -> Result<Self> {
        Ok(BatchApplier {
            client: connect(url).await?,
            store: redact(url),
            prepared: HashMap::new(),
        })
    }

    /// The name of the store in errors (the URL without its password).
    pub fn store(&self) -> &str {
        &self.store
    }

    /// Runs `ops` in one transaction: all of them or, on error, none.
    pub async fn apply(&mut self, ops: &[RowOp]) -> Result<()> {
        let store = &self.store;
        let mut calls = Vec::with_capacity(ops.len());
        for op in ops {
            let (text, params) = op.statement(Dialect::Postgres);
            let stmt = match self.prepared.get(&text) {
                Some(s) => s.clone(),
                None => {
                    let s = self
                        .client
                        .prepare(&text)
                        .await
                        .map_err(|e| apply_error(store, e))?;
                    self.prepared.insert(text, s.clone());
                    s
                }
            };
            calls.push((stmt, params));
        }
        let tx = self
            .client
            .transaction()
            .await
            .map_err(|e| classify(store, e))?;
        for chunk in calls.chunks(PIPELINE) {
            // Requests go out in the order the futures are first polled, which is theirs.
            let futs = chunk.iter().map(|(stmt, params)| {
                let params: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
                let tx = &tx;
                async move { tx.execute(stmt, &params).await }
            });
            futures::future::try_join_all(futs)
                .await
                .map_err(|e| apply_error(store, e))?;
        }
        tx.commit().await.map_err(|e| classify(store, e))
    }
}

/// An error applying a batch: a missing table or a violated constraint means the
/// database does not hold the state the batch follows.
fn apply_error(store: &str, e: tokio_postgres::Error) -> Error {
    use tokio_postgres::error::SqlState;
    match e.as_db_error() {
        Some(db) if *db.code() == SqlState::UNDEFINED_TABLE => Error::meta_store(
            store,
            ErrorKind::NotFound,
            format!(
                "{}: this database holds no restore; write a state into it first",
                db.message()
            ),
        ),
        Some(db) if db.code().code().starts_with("23") => Error::meta_store(
            store,
            ErrorKind::Corruption,
            format!(
                "{}: the database does not hold the state the batch follows; \
                 write the whole state into it again",
                db.message()
            ),
        ),
        _ => classify(store, e),
    }
}

impl ToSql for SqlValue {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            SqlValue::Int(v) => v.to_sql(ty, out),
            SqlValue::Text(v) => v.to_sql(ty, out),
            SqlValue::Bool(v) => v.to_sql(ty, out),
            SqlValue::Bytes(v) => v.to_sql(ty, out),
            SqlValue::Null(_) => Ok(IsNull::Yes),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as ToSql>::accepts(ty)
            || <String as ToSql>::accepts(ty)
            || <bool as ToSql>::accepts(ty)
            || <Vec<u8> as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}
