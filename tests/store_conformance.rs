//! One conformance suite for every meta store, through the `MetaStore` trait only: each
//! function below checks one operation, and one `#[test]` per store (dir, jsonl, sqlite,
//! postgres, etcd) runs all of them against fresh stores of its kind.
//!
//! PostgreSQL and etcd are real servers the harness starts (tests/common/servers.rs).

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use common::rt;
#[cfg(any(feature = "postgres", feature = "etcd"))]
use common::servers;
use metapitr::error::{Error, ErrorKind, Result};
use metapitr::jsonl;
use metapitr::model::State;
use metapitr::sim::{SimConfig, Simulator};
use metapitr::store::{EtcdCredentials, MetaStore, TargetStore};

/// A store kind under test: fresh, empty stores of it on demand.
struct Backend {
    name: &'static str,
    /// The URL of a store no other check uses, empty.
    fresh: Box<dyn Fn() -> String>,
    /// Whether `clear` empties the store. A JSONL file is never removed by a clear: the
    /// write that follows replaces it whole, so that a failed write loses nothing.
    clear_empties: bool,
}

impl Backend {
    fn store(&self) -> (String, Box<dyn MetaStore>) {
        let url = (self.fresh)();
        let store = open(&url, None);
        (url, store)
    }
}

fn open(url: &str, auth: Option<EtcdCredentials>) -> Box<dyn MetaStore> {
    url.parse::<TargetStore>()
        .unwrap_or_else(|e| panic!("{url}: {e}"))
        .with_etcd_auth(auth)
        .into_store()
}

/// A busy simulated state: catalog objects, users with password hashes, SSTs.
fn state(seed: u64, epochs: u64) -> State {
    let mut sim = Simulator::new(SimConfig {
        seed,
        ddl_rate: 0.3,
        user_rate: 0.2,
        ..Default::default()
    });
    for _ in 0..epochs {
        sim.next_epoch().unwrap();
    }
    sim.state().clone()
}

/// The two states every check writes: different, and both non-trivial.
fn states() -> (State, State) {
    let (a, b) = (state(31, 60), state(32, 90));
    assert_ne!(jsonl::to_string(&a), jsonl::to_string(&b));
    assert!(jsonl::lines(&a).len() > 50, "too small a state to tell");
    (a, b)
}

/// A store URL as messages show it: without its password.
fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            u.set_password(Some("***")).unwrap();
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// `err` is of `kind` and its message names `names`.
fn assert_fails(what: &str, err: &Error, kind: ErrorKind, names: &str) {
    assert_eq!(err.kind(), kind, "{what}: {err}");
    assert!(
        err.to_string().contains(names),
        "{what}: the error does not name {names}: {err}"
    );
}

/// The state read back, as JSONL, equals `want`'s.
async fn assert_holds(store: &dyn MetaStore, want: &State, what: &str) {
    let back = store
        .read()
        .await
        .unwrap_or_else(|e| panic!("{store}: {what}: {e}"));
    assert!(
        jsonl::to_string(&back) == jsonl::to_string(want),
        "{store}: {what}: what reads back differs from what was written"
    );
}

// The checks, one per operation.

/// A fresh store is empty; reading it finds nothing (NotFound, naming the store).
async fn fresh_store_is_empty(b: &Backend) {
    let (url, store) = b.store();
    assert_eq!(
        store.to_string(),
        shown(&url),
        "a store is named by its URL"
    );
    assert!(store.is_empty().await.unwrap(), "{store}");
    let err = store.read().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{store}: {err}");
    // Asking did not create anything.
    assert!(store.is_empty().await.unwrap(), "{store}");
}

/// What is written reads back: the same state, as JSONL lines.
async fn write_then_read_back(b: &Backend, s: &State) {
    let (url, store) = b.store();
    store.write(s, false).await.unwrap();
    assert!(!store.is_empty().await.unwrap(), "{store}");
    assert_holds(&*store, s, "after a write").await;
    // Another handle on the same URL reads the same.
    let again = open(&url, None);
    assert_holds(&*again, s, "through a second handle").await;
}

/// A non-empty store is refused without `force`, naming it; what it holds is unchanged.
async fn non_empty_store_is_refused_without_force(b: &Backend, s: &State, other: &State) {
    let (_, store) = b.store();
    store.write(s, false).await.unwrap();
    let err = store.write(other, false).await.unwrap_err();
    assert!(err.is_target_not_empty(), "{store}: {err}");
    assert_fails("a second write", &err, ErrorKind::InvalidInput, "--force");
    assert!(
        err.to_string().contains(&store.to_string()),
        "{store}: the error does not name the store: {err}"
    );
    assert_holds(&*store, s, "after a refused write").await;
    let err = store.write_with(other, false, true).await.unwrap_err();
    assert!(
        err.is_target_not_empty(),
        "{store}: force_clear alone is not force: {err}"
    );
    assert_holds(&*store, s, "after a refused write").await;
}

/// Writing twice: with `force` the second state replaces the first entirely, and writing
/// the same state again changes nothing.
async fn writing_twice_with_force_replaces(b: &Backend, s: &State, other: &State) {
    let (_, store) = b.store();
    store.write(s, false).await.unwrap();
    store.write(other, true).await.unwrap();
    assert_holds(&*store, other, "after a forced write").await;
    store.write(other, true).await.unwrap();
    assert_holds(&*store, other, "after the same write again").await;
    store.write_with(s, true, false).await.unwrap();
    assert_holds(&*store, s, "after a forced write back").await;
}

/// A store holding only its own data may be cleared; a clear removes it (but from a JSONL
/// file, which the next write replaces whole) and may be repeated.
async fn clear_and_check_clearable(b: &Backend, s: &State) {
    let (_, store) = b.store();
    store.check_clearable(false).unwrap();
    store.clear().await.unwrap();
    assert!(
        store.is_empty().await.unwrap(),
        "{store}: cleared while empty"
    );

    store.write(s, false).await.unwrap();
    store.check_clearable(false).unwrap();
    store.clear().await.unwrap();
    if b.clear_empties {
        assert!(
            store.is_empty().await.unwrap(),
            "{store}: not empty after clear"
        );
        let err = store.read().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{store}: {err}");
        store.clear().await.unwrap();
        store.write(s, false).await.unwrap();
    } else {
        assert!(
            !store.is_empty().await.unwrap(),
            "{store}: a clear removed it"
        );
    }
    assert_holds(&*store, s, "after clear and write").await;
}

/// Only a JSONL store takes a redacted export and reads an export back; every store takes
/// an export with its secrets, as a write.
async fn exports_go_to_jsonl_only(b: &Backend, s: &State) {
    let (_, store) = b.store();
    if b.name == "jsonl" {
        store.write_export(s, false, false).await.unwrap();
        let err = store.write_export(s, false, false).await.unwrap_err();
        assert!(err.is_target_not_empty(), "{store}: {err}");
        // The redacted export cannot be imported: its password hashes are gone.
        assert!(store.read_export(false).is_err(), "{store}");
        store.write_export(s, true, true).await.unwrap();
        assert_holds(&*store, s, "after an export with secrets").await;
        let back = store.read_export(false).unwrap();
        assert_eq!(jsonl::to_string(&back), jsonl::to_string(s));
        return;
    }
    let err = store.write_export(s, false, false).await.unwrap_err();
    assert_fails(
        "a redacted export",
        &err,
        ErrorKind::InvalidInput,
        &store.to_string(),
    );
    assert!(store.is_empty().await.unwrap(), "{store}");
    let err = store.read_export(false).unwrap_err();
    assert_fails(
        "reading an export",
        &err,
        ErrorKind::InvalidInput,
        &store.to_string(),
    );
    store.write_export(s, false, true).await.unwrap();
    assert_holds(&*store, s, "after an export with secrets").await;
}

/// One way a store can be wrong, and how it must fail.
struct Bad {
    what: &'static str,
    url: String,
    auth: Option<EtcdCredentials>,
    op: Op,
    kind: ErrorKind,
    /// What the message must contain (the store, or the part of it that is wrong).
    names: String,
    /// What the message must not contain (a password).
    hides: Option<&'static str>,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    /// The URL itself is refused.
    Parse,
    IsEmpty,
    Read,
    Write,
}

impl Bad {
    fn new(what: &'static str, url: impl Into<String>, op: Op, kind: ErrorKind) -> Self {
        let url = url.into();
        Bad {
            what,
            names: url.clone(),
            url,
            auth: None,
            op,
            kind,
            hides: None,
        }
    }

    fn names(mut self, s: impl Into<String>) -> Self {
        self.names = s.into();
        self
    }
}

/// A wrong URL, an unreachable server, wrong credentials, a store that is not one: each
/// fails with its documented kind, naming the store.
async fn bad_stores_fail_as_documented(cases: Vec<Bad>, s: &State) {
    assert!(!cases.is_empty());
    for c in cases {
        let what = format!("{} ({:?} {})", c.what, c.op, c.url);
        let parsed = c.url.parse::<TargetStore>();
        let err = match (c.op, parsed) {
            (Op::Parse, Ok(t)) => panic!("{what}: parsed as {t}"),
            (Op::Parse, Err(e)) => e,
            (_, Err(e)) => panic!("{what}: {e}"),
            (op, Ok(t)) => {
                let store = t.with_etcd_auth(c.auth.clone()).into_store();
                let r: Result<()> = match op {
                    Op::IsEmpty => store.is_empty().await.map(drop),
                    Op::Read => store.read().await.map(drop),
                    Op::Write => store.write(s, false).await,
                    Op::Parse => unreachable!(),
                };
                r.err().unwrap_or_else(|| panic!("{what}: succeeded"))
            }
        };
        assert_fails(&what, &err, c.kind, &c.names);
        if let Some(h) = c.hides {
            assert!(!err.to_string().contains(h), "{what}: {h} leaks: {err}");
        }
    }
}

/// Runs every check against `b`; `bad` are its wrong stores.
fn conformance(b: Backend, bad: Vec<Bad>) {
    let (s, other) = states();
    rt().block_on(async {
        fresh_store_is_empty(&b).await;
        write_then_read_back(&b, &s).await;
        non_empty_store_is_refused_without_force(&b, &s, &other).await;
        writing_twice_with_force_replaces(&b, &s, &other).await;
        clear_and_check_clearable(&b, &s).await;
        exports_go_to_jsonl_only(&b, &s).await;
        bad_stores_fail_as_documented(bad, &s).await;
    });
}

/// Fresh paths `NAME-N` under `dir`.
fn fresh_paths(dir: &Path, scheme: &'static str, name: &'static str) -> Box<dyn Fn() -> String> {
    let dir = dir.to_path_buf();
    let n = AtomicU64::new(0);
    Box::new(move || {
        let p: PathBuf = dir.join(format!("{name}-{}", n.fetch_add(1, Ordering::Relaxed)));
        format!("{scheme}:{}", p.display())
    })
}

/// A file of `bytes` under `dir`.
fn garbage(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn dir() {
    let d = tempfile::tempdir().unwrap();
    let file = garbage(d.path(), "a-file", b"x");
    let bad_checkpoint = d.path().join("bad-checkpoint");
    std::fs::create_dir(&bad_checkpoint).unwrap();
    garbage(&bad_checkpoint, "CHECKPOINT", b"not a checkpoint");
    let bad = vec![
        Bad::new("no path", "dir:", Op::Parse, ErrorKind::InvalidInput),
        Bad::new(
            "a store that was never written",
            format!("dir:{}", d.path().join("nothing").display()),
            Op::Read,
            ErrorKind::NotFound,
        )
        .names(d.path().join("nothing").display().to_string()),
        Bad::new(
            "a regular file",
            format!("dir:{}", file.display()),
            Op::IsEmpty,
            ErrorKind::InvalidInput,
        )
        .names(file.display().to_string()),
        Bad::new(
            "a checkpoint that is not one",
            format!("dir:{}", bad_checkpoint.display()),
            Op::Read,
            ErrorKind::Corruption,
        )
        .names("CHECKPOINT"),
    ];
    conformance(
        Backend {
            name: "dir",
            fresh: fresh_paths(d.path(), "dir", "store"),
            clear_empties: true,
        },
        bad,
    );

    // What is not a meta store's own makes a directory unclearable unless force_clear.
    rt().block_on(async {
        let (s, other) = states();
        let p = d.path().join("foreign");
        let store = open(&format!("dir:{}", p.display()), None);
        store.write(&s, false).await.unwrap();
        std::fs::write(p.join("notes.txt"), b"mine").unwrap();
        let err = store.check_clearable(false).unwrap_err();
        assert_fails("a foreign file", &err, ErrorKind::InvalidInput, "notes.txt");
        assert!(err.to_string().contains("--force-clear"), "{err}");
        let err = store.write(&other, true).await.unwrap_err();
        assert_fails("--force", &err, ErrorKind::InvalidInput, "notes.txt");
        assert!(p.join("notes.txt").exists());
        assert_holds(&*store, &s, "after a refused clear").await;
        store.check_clearable(true).unwrap();
        store.write_with(&other, true, true).await.unwrap();
        assert!(!p.join("notes.txt").exists());
        assert_holds(&*store, &other, "after force_clear").await;
    });
}

#[test]
fn jsonl() {
    let d = tempfile::tempdir().unwrap();
    let not_json = garbage(d.path(), "not-json.jsonl", b"this is not json\n");
    let bad = vec![
        Bad::new("no path", "jsonl:", Op::Parse, ErrorKind::InvalidInput),
        Bad::new(
            "a file that does not exist",
            format!("jsonl:{}", d.path().join("nothing.jsonl").display()),
            Op::Read,
            ErrorKind::NotFound,
        )
        .names(d.path().join("nothing.jsonl").display().to_string()),
        Bad::new(
            "a directory",
            format!("jsonl:{}", d.path().display()),
            Op::Write,
            ErrorKind::InvalidInput,
        )
        .names(d.path().display().to_string()),
        // An export is an input: one that does not parse is fixed, not restored again.
        Bad::new(
            "a file that is not an export",
            format!("jsonl:{}", not_json.display()),
            Op::Read,
            ErrorKind::InvalidInput,
        )
        .names(not_json.display().to_string()),
    ];
    conformance(
        Backend {
            name: "jsonl",
            fresh: fresh_paths(d.path(), "jsonl", "export.jsonl"),
            clear_empties: false,
        },
        bad,
    );
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite() {
    let d = tempfile::tempdir().unwrap();
    let not_db = garbage(d.path(), "not-a.db", &[0x5a; 4096]);
    let bad = vec![
        Bad::new("no path", "sqlite:", Op::Parse, ErrorKind::InvalidInput),
        Bad::new(
            "a file that is not a database",
            format!("sqlite:{}", not_db.display()),
            Op::IsEmpty,
            ErrorKind::Corruption,
        ),
        Bad::new(
            "a directory",
            format!("sqlite:{}", d.path().display()),
            Op::Write,
            ErrorKind::InvalidInput,
        ),
    ];
    conformance(
        Backend {
            name: "sqlite",
            fresh: fresh_paths(d.path(), "sqlite", "meta.db"),
            clear_empties: true,
        },
        bad,
    );
}

#[cfg(feature = "postgres")]
#[test]
fn postgres() {
    let pg = servers::postgres();
    let wrong_password = format!(
        "postgres://{}:wrong@127.0.0.1:{}/postgres",
        pg.user, pg.port
    );
    let down = format!("postgres://u:p@127.0.0.1:{}/db", servers::free_port());
    let no_db = pg.url("no_such_database");
    let bad = vec![
        Bad {
            hides: Some(":wrong@"),
            ..Bad::new(
                "a wrong password",
                wrong_password,
                Op::Write,
                ErrorKind::InvalidInput,
            )
            .names("password")
        },
        Bad::new(
            "no server listening",
            down.clone(),
            Op::IsEmpty,
            ErrorKind::Unavailable,
        )
        .names(shown(&down)),
        Bad {
            hides: Some(pg.password.as_str()),
            ..Bad::new(
                "a database that does not exist",
                no_db,
                Op::Read,
                ErrorKind::InvalidInput,
            )
            .names("no_such_database")
        },
        Bad::new(
            "not a connection URL",
            "postgres://u:p@127.0.0.1:notaport/db",
            Op::IsEmpty,
            ErrorKind::InvalidInput,
        )
        .names("postgres://u:***@"),
    ];
    conformance(
        Backend {
            name: "postgres",
            fresh: Box::new(|| servers::postgres().create_db()),
            clear_empties: true,
        },
        bad,
    );
}

#[cfg(feature = "etcd")]
#[test]
fn etcd() {
    let n = AtomicU64::new(0);
    let auth = servers::etcd_auth();
    let down = format!("etcd://127.0.0.1:{}/x/", servers::free_port());
    let root = |password: &str| {
        Some(EtcdCredentials {
            username: auth.username.clone().unwrap(),
            password: password.into(),
        })
    };
    let bad = vec![
        Bad::new("no endpoint", "etcd://", Op::Parse, ErrorKind::InvalidInput),
        Bad::new(
            "an endpoint without a port",
            "etcd://127.0.0.1/x",
            Op::Parse,
            ErrorKind::InvalidInput,
        ),
        Bad::new(
            "no server listening",
            down,
            Op::Write,
            ErrorKind::Unavailable,
        ),
        Bad::new(
            "no credentials for a cluster that wants them",
            auth.url("conformance-noauth"),
            Op::Read,
            ErrorKind::InvalidInput,
        )
        .names("--etcd-auth"),
        Bad {
            auth: root("wrong"),
            ..Bad::new(
                "a wrong password",
                auth.url("conformance-wrong"),
                Op::IsEmpty,
                ErrorKind::InvalidInput,
            )
            .names(auth.username.clone().unwrap())
        },
    ];
    conformance(
        Backend {
            name: "etcd",
            fresh: Box::new(move || {
                servers::etcd().url(&format!(
                    "conformance-{}-{}",
                    std::process::id(),
                    n.fetch_add(1, Ordering::Relaxed)
                ))
            }),
            clear_empties: true,
        },
        bad,
    );
    // The right credentials pass the same checks on the cluster that wants them.
    let ok = open(
        &auth.url("conformance-auth"),
        root(auth.password.as_deref().unwrap()),
    );
    rt().block_on(async {
        let (s, _) = states();
        assert!(ok.is_empty().await.unwrap());
        ok.write(&s, false).await.unwrap();
        assert_holds(&*ok, &s, "with credentials").await;
    });
    assert!(!servers::etcdctl_get_prefix(auth, "/conformance-auth/").is_empty());
}
