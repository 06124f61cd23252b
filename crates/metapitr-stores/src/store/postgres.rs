//! Restore into PostgreSQL: the schema of [`super::sql`], one transaction per restore,
//! id generators as sequences; [`BatchApplier`] keeps such a database in step with a log.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::{Client, GenericClient, NoTls, Statement};

use super::sql::{self, Col, Dialect, RowOp, SqlValue};
use super::MetaStore;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{id_category_name, State, ID_CATEGORIES};
use crate::net::Timeouts;

type PgResult<T> = std::result::Result<T, tokio_postgres::Error>;

/// Rows sent to the server before waiting for their results.
const PIPELINE: usize = 512;

/// `postgres://USER:PASSWORD@HOST:PORT/DB`: the URL with its password hidden, for messages,
/// also when the URL does not parse (a bad port, say).
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => redact_unparsed(url),
    }
}

/// `SCHEME://USER:PASSWORD@REST` as `SCHEME://USER:***@REST`; anything else as it is.
fn redact_unparsed(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_string();
    };
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let Some(at) = authority.rfind('@') else {
        return s.to_string();
    };
    match authority[..at].split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{}", &rest[at + 1..]),
        None => s.to_string(),
    }
}

/// A PostgreSQL target: its connection URL and the timeouts of its calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTarget {
    /// `postgres://USER:PASSWORD@HOST:PORT/DB` (or `postgresql://`, or libpq's key=value
    /// form).
    pub url: String,
    pub timeouts: Timeouts,
}

impl PgTarget {
    /// The URL with the default timeouts.
    pub fn new(url: impl Into<String>) -> Self {
        PgTarget {
            url: url.into(),
            timeouts: Timeouts::default(),
        }
    }
}

impl std::fmt::Display for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact(&self.url))
    }
}

#[async_trait]
impl MetaStore for PgTarget {
    async fn is_empty(&self) -> Result<bool> {
        is_empty(self).await
    }

    async fn clear(&self) -> Result<()> {
        clear(self).await
    }

    /// [`write`]: one transaction, which checks the tables are empty itself.
    async fn write_with(&self, state: &State, force: bool, _force_clear: bool) -> Result<()> {
        write(self, state, force).await
    }

    async fn read(&self) -> Result<State> {
        read(self).await
    }
}

/// One connection's server, for messages, and the bound on each of its requests.
struct Conn {
    /// The URL without its password.
    name: String,
    /// `HOST:PORT` of each server the URL names.
    servers: String,
    request: Duration,
}

impl Conn {
    /// Runs one request (a statement, or a pipelined batch of them), bounded by the
    /// request timeout; a driver error is classified.
    async fn run<T>(&self, req: impl Future<Output = PgResult<T>>) -> Result<T> {
        self.run_with(req, |e| classify(&self.name, e)).await
    }

    /// As [`Self::run`], with another mapping of driver errors.
    async fn run_with<T>(
        &self,
        req: impl Future<Output = PgResult<T>>,
        map: impl FnOnce(tokio_postgres::Error) -> Error,
    ) -> Result<T> {
        match tokio::time::timeout(self.request, req).await {
            Ok(r) => r.map_err(map),
            Err(_) => {
                Err(self.timed_out("answer a request", self.request, "network.request_timeout"))
            }
        }
    }

    fn timed_out(&self, what: &str, after: Duration, setting: &str) -> Error {
        Error::meta_store(
            &self.name,
            ErrorKind::Unavailable,
            format!(
                "the server at {} did not {what} within {} ({setting}); check that PostgreSQL \
                 listens there (not another service) and is not overloaded, then retry",
                self.servers,
                crate::net::show(after)
            ),
        )
    }
}

/// `HOST:PORT` of each server a configuration names (5432 unless given).
fn servers(cfg: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let ports = cfg.get_ports();
    let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    let hosts: Vec<String> = cfg
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| match h {
            Host::Tcp(h) if h.contains(':') => format!("[{h}]:{}", port(i)),
            Host::Tcp(h) => format!("{h}:{}", port(i)),
            Host::Unix(dir) => format!("{}/.s.PGSQL.{}", dir.display(), port(i)),
        })
        .collect();
    if hosts.is_empty() {
        format!("localhost:{}", port(0))
    } else {
        hosts.join(", ")
    }
}

/// Connects, logs in and starts the connection's task. Establishing it (TCP, startup and
/// login) is bounded by the connect timeout per server the URL names: the URL's own
/// `connect_timeout` if it has one, else the target's.
async fn connect(t: &PgTarget) -> Result<(Client, Conn)> {
    let name = redact(&t.url);
    let mut cfg: tokio_postgres::Config = t.url.parse().map_err(|e| {
        Error::meta_store(
            &name,
            ErrorKind::InvalidInput,
            format!(
                "not a PostgreSQL connection URL ({e}); use postgres://USER:PASSWORD@HOST:PORT/DB"
            ),
        )
    })?;
    // As libpq: a password not in the URL comes from PGPASSWORD, so that it need not
    // appear on a command line.
    if cfg.get_password().is_none() {
        if let Some(p) = std::env::var("PGPASSWORD").ok().filter(|v| !v.is_empty()) {
            cfg.password(p);
        }
    }
    let per_server = cfg
        .get_connect_timeout()
        .copied()
        .unwrap_or(t.timeouts.connect);
    cfg.connect_timeout(per_server);
    let conn = Conn {
        name,
        servers: servers(&cfg),
        request: t.timeouts.request,
    };
    let n = u32::try_from(cfg.get_hosts().len().max(1)).unwrap_or(u32::MAX);
    let limit = per_server.saturating_mul(n);
    let (client, connection) = match tokio::time::timeout(limit, cfg.connect(NoTls)).await {
        Ok(r) => r.map_err(|e| handshake_error(&conn, e))?,
        Err(_) => {
            return Err(conn.timed_out(
                "finish the connection handshake",
                limit,
                "network.connect_timeout",
            ))
        }
    };
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!("PostgreSQL connection closed: {e}");
        }
    });
    Ok((client, conn))
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
    let msg = chain(&e);
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

/// A driver error and its sources, one after the other.
fn chain(e: &tokio_postgres::Error) -> String {
    use std::error::Error as _;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

/// A failed connection handshake. An answer that is not PostgreSQL's protocol (an HTTP
/// server's, say etcd's client port) will not change on retry: the URL names the wrong
/// port.
fn handshake_error(c: &Conn, e: tokio_postgres::Error) -> Error {
    if e.as_db_error().is_none() {
        let msg = chain(&e);
        let garbled = [
            "bytes remaining on stream",
            "unexpected message from server",
            "error parsing response from server",
        ];
        if garbled.iter().any(|g| msg.contains(g)) {
            return Error::meta_store(
                &c.name,
                ErrorKind::InvalidInput,
                format!(
                    "the server at {} does not answer in PostgreSQL's protocol ({msg}); check \
                     that the URL names a PostgreSQL server's port, not etcd's or another \
                     service's",
                    c.servers
                ),
            );
        }
    }
    classify(&c.name, e)
}

/// Which of our tables exist and hold rows.
async fn non_empty_tables(c: &impl GenericClient, s: &Conn) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for t in sql::tables(Dialect::Postgres) {
        let name = t.name.to_string();
        let exists: bool = s
            .run(c.query_one("SELECT to_regclass($1) IS NOT NULL", &[&name]))
            .await?
            .get(0);
        if !exists {
            continue;
        }
        let row = s
            .run(c.query_opt(&format!("SELECT 1 FROM {} LIMIT 1", t.name), &[]))
            .await?;
        if row.is_some() {
            out.push(t.name.to_string());
        }
    }
    Ok(out)
}

pub async fn is_empty(t: &PgTarget) -> Result<bool> {
    let (c, s) = connect(t).await?;
    Ok(non_empty_tables(&c, &s).await?.is_empty())
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
pub async fn clear(t: &PgTarget) -> Result<()> {
    let (mut c, s) = connect(t).await?;
    let tx = s.run(c.transaction()).await?;
    for q in drop_all_sql() {
        s.run(tx.batch_execute(&q)).await?;
    }
    s.run(tx.commit()).await
}

/// Creates the schema and inserts the state in one transaction. Unless `force`, our
/// tables must be absent or empty (checked inside the transaction); existing ones are
/// dropped and created again.
pub async fn write(t: &PgTarget, state: &State, force: bool) -> Result<()> {
    let rows = sql::rows(state, Dialect::Postgres, &redact(&t.url))?;
    let (mut c, s) = connect(t).await?;
    let tx = s.run(c.transaction()).await?;
    let used = non_empty_tables(&tx, &s).await?;
    if !force && !used.is_empty() {
        return Err(Error::target_not_empty(format!(
            "{} (tables {})",
            s.name,
            used.join(", ")
        )));
    }
    for q in drop_all_sql() {
        s.run(tx.batch_execute(&q)).await?;
    }
    for table in sql::tables(Dialect::Postgres) {
        s.run(tx.batch_execute(&table.create_sql(Dialect::Postgres)))
            .await?;
    }
    for c in ID_CATEGORIES {
        let next = i64::try_from(state.id(c)).map_err(|_| {
            Error::invalid_input(format!(
                "id generator {} = {} does not fit a PostgreSQL sequence",
                id_category_name(c),
                state.id(c)
            ))
        })?;
        let seq = sql::sequence_name(id_category_name(c));
        s.run(tx.batch_execute(&format!(
            "CREATE SEQUENCE {seq} AS BIGINT MINVALUE 0 START WITH 0"
        )))
        .await?;
        s.run(tx.execute(
            "SELECT setval($1::text::regclass, $2, false)",
            &[&seq, &next],
        ))
        .await?;
    }
    for (table, rs) in &rows {
        if rs.is_empty() {
            continue;
        }
        let stmt = s
            .run(tx.prepare(&table.insert_sql(Dialect::Postgres)))
            .await?;
        for chunk in rs.chunks(PIPELINE) {
            let futs = chunk.iter().map(|r| {
                let params: Vec<&(dyn ToSql + Sync)> =
                    r.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
                let stmt = &stmt;
                let tx = &tx;
                async move { tx.execute(stmt, &params).await }
            });
            s.run(futures::future::try_join_all(futs)).await?;
        }
    }
    s.run(tx.commit()).await
}

/// Reads the state back.
pub async fn read(t: &PgTarget) -> Result<State> {
    let (c, s) = connect(t).await?;
    let name = &s.name;
    let mut tables = BTreeMap::new();
    for t in sql::tables(Dialect::Postgres) {
        let rows = s
            .run_with(c.query(&t.select_sql(), &[]), |e| {
                let missing = e
                    .as_db_error()
                    .is_some_and(|d| *d.code() == tokio_postgres::error::SqlState::UNDEFINED_TABLE);
                if missing {
                    Error::meta_store(
                        name,
                        ErrorKind::NotFound,
                        format!(
                            "table {} does not exist: this database holds no restore",
                            t.name
                        ),
                    )
                } else {
                    classify(name, e)
                }
            })
            .await?;
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
                        name,
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
        let row = s
            .run(c.query_one(&format!("SELECT last_value, is_called FROM {seq}"), &[]))
            .await?;
        let last: i64 = row.get(0);
        let called: bool = row.get(1);
        let next = if called { last + 1 } else { last };
        generators.insert(g.to_string(), u64::try_from(next).unwrap_or(0));
    }
    super::state_from_lines(name, sql::lines_from_rows(name, &tables, &generators)?)
}

/// Applies committed batches ([`sql::batch_ops`]) to a database that [`write`] created,
/// one transaction each, with every statement prepared once per connection and the
/// statements of a batch pipelined.
pub struct BatchApplier {
    client: Client,
    conn: Conn,
    prepared: HashMap<String, Statement>,
}

impl BatchApplier {
    /// Connects with the default timeouts.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_to(&PgTarget::new(url)).await
    }

    pub async fn connect_to(t: &PgTarget) -> Result<Self> {
        let (client, conn) = connect(t).await?;
        Ok(BatchApplier {
            client,
            conn,
            prepared: HashMap::new(),
        })
    }

    /// The name of the store in errors (the URL without its password).
    pub fn store(&self) -> &str {
        &self.conn.name
    }

    /// Runs `ops` in one transaction: all of them or, on error, none.
    pub async fn apply(&mut self, ops: &[RowOp]) -> Result<()> {
        let s = &self.conn;
        let store = s.name.as_str();
        let mut calls = Vec::with_capacity(ops.len());
        for op in ops {
            let (text, params) = op.statement(Dialect::Postgres);
            let stmt = match self.prepared.get(&text) {
                Some(st) => st.clone(),
                None => {
                    let st = s
                        .run_with(self.client.prepare(&text), |e| apply_error(store, e))
                        .await?;
                    self.prepared.insert(text, st.clone());
                    st
                }
            };
            calls.push((stmt, params));
        }
        let tx = s.run(self.client.transaction()).await?;
        for chunk in calls.chunks(PIPELINE) {
            // Requests go out in the order the futures are first polled, which is theirs.
            let futs = chunk.iter().map(|(stmt, params)| {
                let params: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
                let tx = &tx;
                async move { tx.execute(stmt, &params).await }
            });
            s.run_with(futures::future::try_join_all(futs), |e| {
                apply_error(store, e)
            })
            .await?;
        }
        s.run(tx.commit()).await
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

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn the_password_never_shows() {
        for (url, shown) in [
            (
                "postgres://u:secret@h:5432/db",
                "postgres://u:***@h:5432/db",
            ),
            (
                "postgres://u:secret@h:notaport/db",
                "postgres://u:***@h:notaport/db",
            ),
            (
                "postgresql://u:s@cret@h:x/db?sslmode=disable",
                "postgresql://u:***@h:x/db?sslmode=disable",
            ),
            ("postgres://u@h:5432/db", "postgres://u@h:5432/db"),
            ("postgres://h:x/db", "postgres://h:x/db"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
    }
}
