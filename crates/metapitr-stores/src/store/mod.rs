//! Meta stores a restore writes into, and an export reads back from.
//!
//! Every store implements [`MetaStore`]; [`TargetStore`] parses a store URL into one:
//!
//! - `dir:PATH`: a native meta store directory ([`dir`]);
//! - `jsonl:PATH` / `jsonl:-`: the JSONL export ([`crate::jsonl`]) to a file or stdout
//!   ([`jsonl`]);
//! - `sqlite:PATH`: the SQL schema of [`sql`] in a SQLite file (feature `sqlite`);
//! - `postgres://USER:PASSWORD@HOST:PORT/DB`: the same schema in PostgreSQL (feature
//!   `postgres`);
//! - `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`: one key per export line (feature `etcd`).
//!
//! A store whose feature this build lacks is refused when its URL is parsed, with an
//! [`ErrorKind::InvalidInput`] error naming the feature.
//!
//! Every store writes a whole state or nothing a reader mistakes for one, refuses to
//! overwrite what it holds unless forced, and reads back the state it was given, so
//! export → import → export gives the same bytes through any of them.

pub mod dir;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod jsonl;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sql;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use async_trait::async_trait;

use crate::error::{Error, ErrorKind, Result};
use crate::model::State;
use crate::net::Timeouts;

pub use dir::{read_wal_dir, DirStore};
#[cfg(feature = "etcd")]
pub use etcd::EtcdTarget;
pub use jsonl::JsonlStore;
#[cfg(feature = "postgres")]
pub use postgres::PgTarget;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

/// A meta store: what a restore or an import writes a state into, and an export reads it
/// back from. One implementation per backend; [`TargetStore`] builds one from a URL.
///
/// Errors name the store (its [`Display`](std::fmt::Display), never a password) or the
/// path at fault, and say what to do: a store holding something is
/// [`Error::target_not_empty`]; a wrong URL, path, user, password or database is
/// [`ErrorKind::InvalidInput`]; an unreachable server is [`ErrorKind::Unavailable`]; a
/// store that holds no state is [`ErrorKind::NotFound`] when read; what does not read
/// back as a state is [`ErrorKind::Corruption`], but for a JSONL file, which is an
/// import's input: one that does not parse is [`ErrorKind::InvalidInput`].
#[async_trait]
pub trait MetaStore: std::fmt::Debug + std::fmt::Display + Send + Sync {
    /// Whether the store holds nothing a restore would overwrite.
    async fn is_empty(&self) -> Result<bool>;

    /// Refuses, unless `force_clear`, to clear a store that may hold more than a meta
    /// store's own data (a `dir:` holding files a meta store does not), so that `--force`
    /// never empties a directory given by mistake. Other stores pass.
    fn check_clearable(&self, force_clear: bool) -> Result<()> {
        let _ = force_clear;
        Ok(())
    }

    /// Removes what the store holds (and nothing else: a `dir:` keeps its `LOCK`, an etcd
    /// store only its prefix, an SQL store only its tables and sequences).
    async fn clear(&self) -> Result<()>;

    /// Writes a state into the store. A non-empty store is refused unless `force`, in
    /// which case what it holds is replaced; a store [`Self::check_clearable`] refuses is
    /// refused even then, unless `force_clear`.
    async fn write_with(&self, state: &State, force: bool, force_clear: bool) -> Result<()>;

    /// [`Self::write_with`] without `force_clear`.
    async fn write(&self, state: &State, force: bool) -> Result<()> {
        self.write_with(state, force, false).await
    }

    /// Writes an export (`metapitr export`, a JSONL file or stdout): as [`Self::write`],
    /// but with every password hash redacted unless `include_secrets`. Only a JSONL store
    /// takes a redacted export.
    async fn write_export(&self, state: &State, force: bool, include_secrets: bool) -> Result<()> {
        if include_secrets {
            return self.write(state, force).await;
        }
        Err(Error::invalid_input(format!(
            "an export goes to a JSONL file or stdout, not {self}"
        )))
    }

    /// Reads an export back from a JSONL file or stdin (import): its end line must cover
    /// it, unless `allow_untrailed` lets a format_version 1 export, which has none, in.
    /// Other stores refuse.
    fn read_export(&self, allow_untrailed: bool) -> Result<State> {
        let _ = allow_untrailed;
        Err(Error::invalid_input(format!(
            "an export is read from a JSONL file or stdin, not {self}"
        )))
    }

    /// Reads back the state the store holds.
    async fn read(&self) -> Result<State>;
}

/// Refuses a non-empty store unless `force`, in which case it is cleared (if
/// [`MetaStore::check_clearable`] lets it).
pub(crate) async fn make_room<S: MetaStore + ?Sized>(
    store: &S,
    force: bool,
    force_clear: bool,
) -> Result<()> {
    if !store.is_empty().await? {
        if !force {
            return Err(Error::target_not_empty(store.to_string()));
        }
        store.check_clearable(force_clear)?;
        store.clear().await?;
    }
    Ok(())
}

/// Username and password for an etcd cluster with authentication enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdCredentials {
    pub username: String,
    pub password: String,
}

/// A meta store URL, parsed: which store, and where. [`Self::into_store`] (or
/// [`Self::as_store`]) gives the store to call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetStore {
    Dir(DirStore),
    Jsonl(JsonlStore),
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteStore),
    /// A `postgres://` (or `postgresql://`) connection URL.
    #[cfg(feature = "postgres")]
    Postgres(PgTarget),
    #[cfg(feature = "etcd")]
    Etcd(EtcdTarget),
}

impl std::fmt::Display for TargetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self.as_store(), f)
    }
}

/// The error for a store URL whose backend this build was built without.
#[cfg_attr(
    all(feature = "sqlite", feature = "postgres", feature = "etcd"),
    allow(dead_code)
)]
fn not_built(scheme: &str, feature: &str) -> Error {
    Error::invalid_input(format!(
        "this build has no {scheme} support; build with --features {feature}"
    ))
}

impl std::str::FromStr for TargetStore {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid_input(format!(
                "target store '{s}' is not understood; use dir:PATH, jsonl:PATH, jsonl:-, \
                 sqlite:PATH, postgres://USER:PASSWORD@HOST:PORT/DB or \
                 etcd://HOST:PORT[,HOST:PORT...][/PREFIX]"
            ))
        };
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            #[cfg(feature = "postgres")]
            return Ok(TargetStore::Postgres(PgTarget::new(s)));
            #[cfg(not(feature = "postgres"))]
            return Err(not_built("postgres://", "postgres"));
        }
        if let Some(rest) = s.strip_prefix("etcd://") {
            #[cfg(feature = "etcd")]
            return Ok(TargetStore::Etcd(EtcdTarget::parse(rest)?));
            #[cfg(not(feature = "etcd"))]
            return {
                let _ = rest;
                Err(not_built("etcd://", "etcd"))
            };
        }
        let (scheme, rest) = s.split_once(':').ok_or_else(bad)?;
        if rest.is_empty() {
            return Err(bad());
        }
        match scheme {
            "dir" => Ok(TargetStore::Dir(DirStore::new(rest))),
            "jsonl" if rest == "-" => Ok(TargetStore::Jsonl(JsonlStore::Stdio)),
            "jsonl" => Ok(TargetStore::Jsonl(JsonlStore::File(rest.into()))),
            #[cfg(feature = "sqlite")]
            "sqlite" => Ok(TargetStore::Sqlite(SqliteStore::new(rest))),
            #[cfg(not(feature = "sqlite"))]
            "sqlite" => Err(not_built("sqlite:", "sqlite")),
            _ => Err(bad()),
        }
    }
}

/// Parses a meta store URL into its store (with default timeouts and no credentials; see
/// [`TargetStore`] to set those).
pub fn parse_url(url: &str) -> Result<Box<dyn MetaStore>> {
    Ok(url.parse::<TargetStore>()?.into_store())
}

impl TargetStore {
    /// The store, to call.
    pub fn as_store(&self) -> &dyn MetaStore {
        match self {
            TargetStore::Dir(s) => s,
            TargetStore::Jsonl(s) => s,
            #[cfg(feature = "sqlite")]
            TargetStore::Sqlite(s) => s,
            #[cfg(feature = "postgres")]
            TargetStore::Postgres(s) => s,
            #[cfg(feature = "etcd")]
            TargetStore::Etcd(s) => s,
        }
    }

    /// The store, owned.
    pub fn into_store(self) -> Box<dyn MetaStore> {
        match self {
            TargetStore::Dir(s) => Box::new(s),
            TargetStore::Jsonl(s) => Box::new(s),
            #[cfg(feature = "sqlite")]
            TargetStore::Sqlite(s) => Box::new(s),
            #[cfg(feature = "postgres")]
            TargetStore::Postgres(s) => Box::new(s),
            #[cfg(feature = "etcd")]
            TargetStore::Etcd(s) => Box::new(s),
        }
    }

    /// Whether the store is reached over the network (PostgreSQL, etcd), so that the
    /// network settings apply to it.
    pub fn is_remote(&self) -> bool {
        match self {
            #[cfg(feature = "postgres")]
            TargetStore::Postgres(_) => true,
            #[cfg(feature = "etcd")]
            TargetStore::Etcd(_) => true,
            _ => false,
        }
    }

    /// Whether the store is an etcd cluster, so that the etcd credentials apply to it.
    pub fn is_etcd(&self) -> bool {
        match self {
            #[cfg(feature = "etcd")]
            TargetStore::Etcd(_) => true,
            _ => false,
        }
    }

    /// Sets the credentials of an etcd store (other stores ignore them).
    #[cfg_attr(not(feature = "etcd"), allow(unused_variables))]
    pub fn with_etcd_auth(mut self, auth: Option<EtcdCredentials>) -> Self {
        match &mut self {
            #[cfg(feature = "etcd")]
            TargetStore::Etcd(e) => e.auth = auth,
            _ => {}
        }
        self
    }

    /// Sets the connect and request timeouts of a PostgreSQL or etcd store (others make
    /// no network calls).
    #[cfg_attr(
        not(any(feature = "postgres", feature = "etcd")),
        allow(unused_variables)
    )]
    pub fn with_network(mut self, timeouts: Timeouts) -> Self {
        match &mut self {
            #[cfg(feature = "postgres")]
            TargetStore::Postgres(t) => t.timeouts = timeouts,
            #[cfg(feature = "etcd")]
            TargetStore::Etcd(e) => e.timeouts = timeouts,
            _ => {}
        }
        self
    }
}

/// Builds a state from export lines read back out of `store`; what does not read back is
/// corruption of the store.
#[cfg_attr(
    not(any(feature = "sqlite", feature = "postgres", feature = "etcd")),
    allow(dead_code)
)]
pub(crate) fn state_from_lines(store: &str, lines: Vec<serde_json::Value>) -> Result<State> {
    crate::jsonl::from_lines(lines.into_iter().enumerate().map(|(i, v)| (i + 1, v))).map_err(|e| {
        Error::meta_store(
            store,
            ErrorKind::Corruption,
            format!("what it holds is not a state ({e}); restore into it again with --force"),
        )
    })
}

/// Re-initialises cluster membership for a new cluster, as `databend-metactl import
/// --id N --initial-cluster ...` does: the meta nodes the state lists are replaced by
/// `nodes`, and `id` (which must be one of them) is recorded as the `meta_node_id` system
/// parameter, the node this store belongs to.
pub fn reinitialize_cluster(
    state: &mut State,
    id: u32,
    nodes: Vec<crate::model::WorkerNode>,
) -> Result<()> {
    use crate::model::WorkerType;
    if !nodes.iter().any(|n| n.id == id) {
        return Err(Error::invalid_input(format!(
            "--id {id} is not one of the --initial-cluster nodes ({})",
            nodes
                .iter()
                .map(|n| n.id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    for n in &nodes {
        if let Some(w) = state.workers.get(&n.id) {
            if w.worker_type() != WorkerType::Meta {
                return Err(Error::invalid_input(format!(
                    "--initial-cluster node {} has the id of a {} worker ({}:{}); choose \
                     another id",
                    n.id,
                    w.worker_type().as_str_name(),
                    w.host,
                    w.port
                )));
            }
        }
    }
    state
        .workers
        .retain(|_, w| w.worker_type() != WorkerType::Meta);
    for n in nodes {
        state.workers.insert(n.id, n);
    }
    state.params.insert("meta_node_id".into(), id.to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<TargetStore> {
        s.parse()
    }

    #[test]
    fn parses_the_local_stores_and_names_them_as_given() {
        for url in ["dir:/a/b", "jsonl:/x.jsonl", "jsonl:-"] {
            assert_eq!(parse(url).unwrap().to_string(), url);
        }
        assert_eq!(
            parse("dir:/a/b").unwrap(),
            TargetStore::Dir(DirStore::new("/a/b"))
        );
        assert_eq!(
            parse("jsonl:-").unwrap(),
            TargetStore::Jsonl(JsonlStore::Stdio)
        );
        for bad in ["etcd", "dir:", "nope:x", "/just/a/path"] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}: {err}");
            assert!(err.to_string().contains("not understood"), "{err}");
        }
    }

    /// A backend this build lacks is refused by name, with the feature to build.
    #[test]
    fn a_store_without_its_feature_is_refused_naming_the_feature() {
        let cases: [(&str, &str, bool); 4] = [
            ("sqlite:/x.db", "sqlite", cfg!(feature = "sqlite")),
            (
                "postgres://u:p@h:5432/db",
                "postgres",
                cfg!(feature = "postgres"),
            ),
            (
                "postgresql://u:p@h/db",
                "postgres",
                cfg!(feature = "postgres"),
            ),
            ("etcd://127.0.0.1:2379/p", "etcd", cfg!(feature = "etcd")),
        ];
        for (url, feature, built) in cases {
            match parse(url) {
                Ok(t) => {
                    assert!(built, "{url} parsed without feature {feature}");
                    assert!(!t.to_string().contains(":p@"), "{t}");
                }
                Err(e) => {
                    assert!(!built, "{url}: {e}");
                    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
                    assert!(
                        e.to_string()
                            .contains(&format!("build with --features {feature}")),
                        "{e}"
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn local_stores_through_the_trait() {
        let d = tempfile::tempdir().unwrap();
        let state = State::new(1);
        let urls = [
            format!("dir:{}", d.path().join("dir").display()),
            format!("jsonl:{}", d.path().join("x.jsonl").display()),
        ];
        for url in urls {
            let store = parse(&url).unwrap().into_store();
            assert!(store.is_empty().await.unwrap(), "{store}");
            store.write(&state, false).await.unwrap();
            assert!(!store.is_empty().await.unwrap(), "{store}");
            assert_eq!(store.read().await.unwrap(), state, "{store}");
            let err = store.write(&state, false).await.unwrap_err();
            assert!(err.is_target_not_empty(), "{store}: {err}");
            store.write(&state, true).await.unwrap();
        }
    }
}
