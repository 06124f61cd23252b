//! Restore into every meta store, read back through each store's own client; export →
//! import → export through every store is byte-identical; bad targets are refused clearly.
//!
//! PostgreSQL and etcd are real servers the harness starts (tests/common/servers.rs).

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::bin::{fails, ok, run};
use common::servers::{self, etcd, etcd_auth, postgres};
use common::{rt, simulate};
use metapitr::error::ErrorKind;
use metapitr::jsonl;
use metapitr::model::{catalog_kind_name, CATALOG_KINDS};
use metapitr::restore::{self, Target};
use metapitr::store::{parse_url, EtcdCredentials, MetaStore, PgTarget, SqliteStore, TargetStore};
use proptest::prelude::*;
use serde_json::Value;

/// The facts a meta store must hold, one string each, from an export. Each store's own
/// client yields the same strings from its native layout (see the readers below).
fn facts_of_export(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines().skip(1) {
        let v: Value = serde_json::from_str(line).unwrap();
        let s = |k: &str| {
            v[k].as_str()
                .map(String::from)
                .unwrap_or_else(|| v[k].to_string())
        };
        let kind = s("kind");
        let fact = match kind.as_str() {
            "system_param" => format!("param {}={}", s("name"), s("value")),
            "worker" => format!(
                "worker {} {}:{} {}",
                s("id"),
                s("host"),
                s("port"),
                s("worker_type")
            ),
            "user" => format!(
                "user {} {} {} {} {} {} grants={}",
                s("id"),
                s("name"),
                s("is_super"),
                s("can_create_db"),
                s("can_create_user"),
                s("can_login"),
                v["grants"].as_array().unwrap().len()
            ),
            "id_generator" | "cluster" | "end" => continue,
            "hummock_version" => format!(
                "version {} {} {}",
                s("id"),
                s("max_committed_epoch"),
                s("safe_epoch")
            ),
            "compaction_group" => format!("group {} {}", s("id"), s("max_level")),
            "table_committed_epoch" => format!("tce {} {}", s("table_id"), s("epoch")),
            "sst" => format!(
                "sst {} {} {} {} {} {}",
                s("group_id"),
                s("sst_id"),
                s("object_id"),
                s("level"),
                s("sub_level_id"),
                s("file_size")
            ),
            k => {
                assert!(
                    CATALOG_KINDS.iter().any(|c| catalog_kind_name(*c) == k),
                    "{k}"
                );
                let deps: Vec<String> = v["dependencies"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.to_string())
                    .collect();
                format!(
                    "catalog {} {k} {} {} {} {} deps=[{}] def={}",
                    s("id"),
                    s("name"),
                    s("database_id"),
                    s("schema_id"),
                    s("owner"),
                    deps.join(","),
                    s("definition")
                )
            }
        };
        out.insert(fact);
    }
    out
}

/// The truth's id generators, by name.
fn generators_of_export(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .skip(1)
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["kind"] == "id_generator")
        .map(|v| {
            (
                v["name"].as_str().unwrap().to_string(),
                v["value"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The same facts, as SQL over the schema (PostgreSQL and SQLite both run it).
const FACTS_SQL: &str = "
SELECT 'param ' || name || '=' || value FROM system_params
UNION ALL SELECT 'worker ' || id || ' ' || host || ':' || port || ' ' || worker_type FROM workers
UNION ALL SELECT 'user ' || id || ' ' || name || ' ' || CASE WHEN is_super THEN 'true' ELSE 'false' END
  || ' ' || CASE WHEN can_create_db THEN 'true' ELSE 'false' END
  || ' ' || CASE WHEN can_create_user THEN 'true' ELSE 'false' END
  || ' ' || CASE WHEN can_login THEN 'true' ELSE 'false' END
  || ' grants=' || (SELECT count(*) FROM user_grants g WHERE g.user_id = users.id) FROM users
UNION ALL SELECT 'version ' || id || ' ' || max_committed_epoch || ' ' || safe_epoch FROM hummock_version
UNION ALL SELECT 'group ' || id || ' ' || max_level FROM compaction_groups
UNION ALL SELECT 'tce ' || table_id || ' ' || epoch FROM table_committed_epochs
UNION ALL SELECT 'sst ' || group_id || ' ' || sst_id || ' ' || object_id || ' ' || level || ' '
  || sub_level_id || ' ' || file_size FROM ssts
UNION ALL SELECT 'catalog ' || id || ' ' || kind || ' ' || name || ' ' || COALESCE(database_id, 0)
  || ' ' || COALESCE(schema_id, 0) || ' ' || owner || ' deps=[' || COALESCE((SELECT AGG FROM
  (SELECT depends_on FROM catalog_dependencies d WHERE d.object_id = catalog.id ORDER BY ordinal) x), '')
  || '] def=' || definition FROM catalog";

fn pg_facts(url: &str) -> (BTreeSet<String>, Vec<(String, u64)>) {
    let pg = postgres();
    let db = url.rsplit('/').next().unwrap();
    let sql = FACTS_SQL.replace("AGG", "string_agg(depends_on::text, ',')");
    let facts = pg.psql(db, &sql).lines().map(String::from).collect();
    let mut gens = Vec::new();
    for name in metapitr::model::ID_CATEGORIES.map(metapitr::model::id_category_name) {
        let row = pg.psql(db, &format!("SELECT last_value, is_called FROM id_{name}"));
        let (last, called) = row.trim().split_once('|').unwrap();
        let last: u64 = last.parse().unwrap();
        gens.push((
            name.to_string(),
            if called == "t" { last + 1 } else { last },
        ));
    }
    (facts, gens)
}

fn sqlite_facts(path: &Path) -> (BTreeSet<String>, Vec<(String, u64)>) {
    let c = rusqlite::Connection::open(path).unwrap();
    let sql = FACTS_SQL.replace("AGG", "group_concat(depends_on, ',')");
    let mut stmt = c.prepare(&sql).unwrap();
    let facts = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let mut stmt = c
        .prepare("SELECT name, next_id FROM id_generators")
        .unwrap();
    let gens = stmt
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    (facts, gens)
}

/// etcd's own client: every value under the prefix is an export line.
fn etcd_export(e: &servers::Etcd, prefix: &str) -> String {
    let kvs = servers::etcdctl_get_prefix(e, prefix);
    let (header, rest): (Vec<_>, Vec<_>) =
        kvs.into_iter().partition(|(k, _)| k.ends_with("/header"));
    assert_eq!(header.len(), 1, "one header under {prefix}");
    let mut text = header[0].1.clone();
    for (_, v) in rest {
        text.push('\n');
        text.push_str(&v);
    }
    text
}

fn assert_generators(restored: &[(String, u64)], truth: &[(String, u64)], what: &str) {
    for (name, t) in truth {
        let r = restored
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{what}: generator {name} missing"));
        assert!(
            r.1 >= *t,
            "{what}: generator {name} restored {} < truth {t}",
            r.1
        );
    }
}

fn assert_same_facts(got: &BTreeSet<String>, want: &BTreeSet<String>, what: &str) {
    let missing: Vec<_> = want.difference(got).take(3).collect();
    let extra: Vec<_> = got.difference(want).take(3).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: missing {missing:?}, unexpected {extra:?}"
    );
    assert!(want.len() > 10, "{what}: too small a state to tell");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(4),
        failure_persistence: None,
        .. ProptestConfig::default()
    })]

    /// Restore at random epochs into PostgreSQL, SQLite and etcd; what each store's own
    /// client reads equals the simulator's truth.
    #[test]
    fn restore_into_every_store_equals_truth(seed in 0u64..1_000_000, pick in any::<prop::sample::Index>()) {
        let rt = rt();
        rt.block_on(async {
            let s = simulate(seed, 160, Some(50), 10).await;
            let (e, _) = s.report.truth_files[pick.index(s.report.truth_files.len())];
            let truth = s.truth(e);
            let want = facts_of_export(&truth);
            let want_gens = generators_of_export(&truth);
            let (_, state) = restore::materialize(&s.repo, None, Target::Epoch(e)).await.unwrap();
            let what = format!("seed {seed} epoch {e}");

            let pg_url = postgres().create_db();
            PgTarget::new(pg_url.clone()).write(&state, false).await.unwrap();
            let (facts, gens) = pg_facts(&pg_url);
            assert_same_facts(&facts, &want, &format!("postgres, {what}"));
            assert_generators(&gens, &want_gens, &format!("postgres, {what}"));

            let d = tempfile::tempdir().unwrap();
            let db = d.path().join("meta.db");
            SqliteStore::new(&db).write(&state, false).await.unwrap();
            let (facts, gens) = sqlite_facts(&db);
            assert_same_facts(&facts, &want, &format!("sqlite, {what}"));
            assert_generators(&gens, &want_gens, &format!("sqlite, {what}"));

            let prefix = format!("restore-{seed}-{e}");
            let target = parse_url(&etcd().url(&prefix)).unwrap();
            target.write(&state, false).await.unwrap();
            let text = etcd_export(etcd(), &format!("/{prefix}/"));
            let c = jsonl::compare(&text, &truth).unwrap();
            assert!(c.matches(), "etcd, {what}: {c:?}");
        });
    }
}

/// A simulated history in a file repo; returns the repo URL.
fn simulated_repo(dir: &Path) -> String {
    common::simulated_file_repo(
        dir,
        &["--epochs", "200", "--seed", "5", "--snapshot-every", "60"],
    )
}

/// Every store: export → import → export --from-store gives the same bytes; importing
/// into a non-empty store is refused, and --force replaces what it holds.
#[test]
fn export_import_export_is_byte_identical_through_every_store() {
    let d = tempfile::tempdir().unwrap();
    let repo = simulated_repo(d.path());
    let export = d.path().join("export.jsonl");
    ok(&[
        "export",
        "--repo",
        &repo,
        "-o",
        export.to_str().unwrap(),
        "--include-secrets",
    ]);
    let original = std::fs::read_to_string(&export).unwrap();
    assert!(original.len() > 1000);

    let auth = etcd_auth();
    let auth_args = [
        "--etcd-auth",
        "--etcd-username",
        auth.username.as_deref().unwrap(),
        "--etcd-password",
        auth.password.as_deref().unwrap(),
    ];
    let stores: Vec<(String, Vec<&str>)> = vec![
        (
            format!("dir:{}", d.path().join("dirstore").display()),
            vec![],
        ),
        (
            format!("jsonl:{}", d.path().join("copy.jsonl").display()),
            vec![],
        ),
        (
            format!("sqlite:{}", d.path().join("meta.db").display()),
            vec![],
        ),
        (postgres().create_db(), vec![]),
        (etcd().url("roundtrip"), vec![]),
        (auth.url("roundtrip-auth"), auth_args.to_vec()),
    ];
    for (store, extra) in &stores {
        let mut import = vec![
            "import",
            "--from",
            export.to_str().unwrap(),
            "--target-store",
            store,
        ];
        import.extend(extra.iter().copied());
        ok(&import);
        let mut exp = vec!["export", "--from-store", store, "--include-secrets"];
        exp.extend(extra.iter().copied());
        let again = ok(&exp);
        assert!(again == original, "{store}: export after import differs");

        // A second import is refused without --force, and names the store.
        let o = run(&import, &[], None);
        assert_eq!(o.status.code(), Some(2), "{store}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("not empty") && err.contains("--force"),
            "{store}: {err}"
        );
        // From stdin, with --force.
        let mut forced = vec!["import", "--target-store", store, "--force"];
        forced.extend(extra.iter().copied());
        let o = run(&forced, &[], Some(original.as_bytes()));
        assert!(
            o.status.success(),
            "{store}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            ok(&exp) == original,
            "{store}: export after forced import differs"
        );
    }
}

/// `export --wal-dir` reads a native store directory offline and equals the repo's export
/// at the same epoch.
#[test]
fn export_from_a_wal_dir_equals_the_repo() {
    let d = tempfile::tempdir().unwrap();
    let repo = simulated_repo(d.path());
    // Restore into a dir store, then read it two ways.
    let store = d.path().join("restored");
    ok(&[
        "restore",
        "--repo",
        &repo,
        "--latest",
        "--target-store",
        &format!("dir:{}", store.display()),
    ]);
    let from_dir = ok(&["export", "--wal-dir", store.to_str().unwrap()]);
    let from_repo = ok(&["export", "--repo", &repo]);
    assert!(
        from_dir == from_repo,
        "--wal-dir export differs from the repo's"
    );
    // An epoch before the directory's checkpoint cannot come from it.
    let err = fails(
        &[
            "export",
            "--wal-dir",
            store.to_str().unwrap(),
            "--at-epoch",
            "1",
        ],
        2,
    );
    assert!(err.contains("checkpoint") && err.contains("repo"), "{err}");
}

/// --initial-cluster replaces the meta nodes and records this node's id.
#[test]
fn import_with_initial_cluster_reinitializes_membership() {
    let d = tempfile::tempdir().unwrap();
    let repo = simulated_repo(d.path());
    let export = d.path().join("export.jsonl");
    ok(&[
        "export",
        "--repo",
        &repo,
        "-o",
        export.to_str().unwrap(),
        "--include-secrets",
    ]);
    let out = d.path().join("new.jsonl");
    let store = format!("jsonl:{}", out.display());
    ok(&[
        "import",
        "--from",
        export.to_str().unwrap(),
        "--target-store",
        &store,
        "--id",
        "102",
        "--initial-cluster",
        "101=10.0.0.1:5690",
        "--initial-cluster",
        "102=10.0.0.2:5690",
        "--initial-cluster",
        "103=10.0.0.3:5690",
    ]);
    let text = std::fs::read_to_string(&out).unwrap();
    let metas: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["kind"] == "worker" && v["worker_type"] == "WORKER_TYPE_META")
        .map(|v| format!("{}={}:{}", v["id"], v["host"].as_str().unwrap(), v["port"]))
        .collect();
    assert_eq!(
        metas,
        [
            "101=10.0.0.1:5690",
            "102=10.0.0.2:5690",
            "103=10.0.0.3:5690"
        ]
    );
    assert!(
        text.contains(r#""name":"meta_node_id","value":"102""#),
        "{text}"
    );
    // Everything else is unchanged (but the end line, which covers the changes).
    let kept = |l: &&str| !l.contains(r#""kind":"worker""#) && !l.contains(r#""kind":"end""#);
    let before: Vec<&str> = std::fs::read_to_string(&export)
        .unwrap()
        .leak()
        .lines()
        .filter(kept)
        .collect();
    let after: Vec<&str> = text
        .lines()
        .filter(|l| kept(l) && !l.contains("meta_node_id"))
        .collect();
    assert_eq!(before, after);

    // A wrong --id, a malformed node, and a meta node taking another worker's id.
    let x = format!("jsonl:{}", d.path().join("x.jsonl").display());
    for (id, node, says) in [
        ("9", "1=10.0.0.1:5690", "--id 9"),
        ("1", "1=nohost", "ID=HOST:PORT"),
        ("2", "2=10.0.0.2:5690", "choose another id"),
    ] {
        let err = fails(
            &[
                "import",
                "--from",
                export.to_str().unwrap(),
                "--target-store",
                &x,
                "--id",
                id,
                "--initial-cluster",
                node,
            ],
            2,
        );
        assert!(err.contains(says), "{err}");
    }
}

/// Non-empty targets are refused, naming what they hold; nothing is overwritten.
#[test]
fn non_empty_stores_are_refused() {
    let rt = rt();
    rt.block_on(async {
        let s = simulate(8, 80, Some(40), 40).await;
        let (_, state) = restore::materialize(&s.repo, None, Target::Latest)
            .await
            .unwrap();

        let pg = postgres().create_db();
        let db = pg.rsplit('/').next().unwrap().to_string();
        postgres().psql(
            &db,
            "CREATE TABLE catalog (id BIGINT); INSERT INTO catalog VALUES (42)",
        );
        let err = PgTarget::new(pg.clone())
            .write(&state, false)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(
            err.to_string().contains("catalog") && !err.to_string().contains("pgpw"),
            "{err}"
        );
        assert_eq!(postgres().psql(&db, "SELECT id FROM catalog").trim(), "42");
        PgTarget::new(pg.clone()).write(&state, true).await.unwrap();
        let back = PgTarget::new(pg).read().await.unwrap();
        assert_eq!(jsonl::to_string(&back), jsonl::to_string(&state));

        let prefix = "nonempty";
        servers::etcdctl(etcd(), &["put", "/nonempty/something", "x"]);
        let target = parse_url(&etcd().url(prefix)).unwrap();
        let err = target.write(&state, false).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert_eq!(servers::etcdctl_get_prefix(etcd(), "/nonempty/").len(), 1);

        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("meta.db");
        SqliteStore::new(&file).write(&state, false).await.unwrap();
        let err = SqliteStore::new(file)
            .write(&state, false)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    });
}

/// Wrong credentials and unreachable servers are clear errors with the right kind.
#[test]
fn bad_credentials_and_unreachable_servers() {
    let rt = rt();
    rt.block_on(async {
        let s = simulate(9, 40, None, 40).await;
        let (_, state) = restore::materialize(&s.repo, None, Target::Latest)
            .await
            .unwrap();
        let pg = postgres();
        let wrong = format!(
            "postgres://{}:wrong@127.0.0.1:{}/postgres",
            pg.user, pg.port
        );
        let err = PgTarget::new(wrong).write(&state, false).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains("password"), "{err}");
        assert!(
            !err.to_string().contains(":wrong@"),
            "the password leaks: {err}"
        );

        let port = servers::free_port();
        let down = format!("postgres://u:p@127.0.0.1:{port}/db");
        let err = PgTarget::new(down).is_empty().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");

        let auth = etcd_auth();
        let target: TargetStore = auth.url("creds").parse().unwrap();
        let bad = target.clone().with_etcd_auth(Some(EtcdCredentials {
            username: "root".into(),
            password: "nope".into(),
        }));
        let err = bad.as_store().write(&state, false).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains("root"), "{err}");
        let err = target.as_store().write(&state, false).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains("--etcd-auth"), "{err}");

        let down = parse_url(&format!("etcd://127.0.0.1:{port}")).unwrap();
        let err = down.write(&state, false).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    });
}

/// The CLI maps those to exit codes: 2 for a wrong input, 6 for an unreachable store.
#[test]
fn restore_cli_into_postgres_and_etcd() {
    let d = tempfile::tempdir().unwrap();
    let repo = simulated_repo(d.path());
    let pg = postgres().create_db();
    let out = ok(&[
        "restore",
        "--repo",
        &repo,
        "--latest",
        "--target-store",
        &pg,
    ]);
    assert!(
        out.contains("restored epoch") && !out.contains("pgpw"),
        "{out}"
    );
    let err = fails(
        &[
            "restore",
            "--repo",
            &repo,
            "--latest",
            "--target-store",
            &pg,
        ],
        2,
    );
    assert!(err.contains("not empty"), "{err}");
    let auth = etcd_auth();
    ok(&[
        "restore",
        "--repo",
        &repo,
        "--latest",
        "--target-store",
        &auth.url("cli"),
        "--etcd-auth",
        "--etcd-username",
        "root",
        "--etcd-password",
        auth.password.as_deref().unwrap(),
    ]);
    let err = fails(
        &[
            "restore",
            "--repo",
            &repo,
            "--latest",
            "--target-store",
            &auth.url("cli2"),
            "--etcd-auth",
            "--etcd-username",
            "root",
            "--etcd-password",
            "bad",
        ],
        2,
    );
    assert!(err.contains("root"), "{err}");
    let port = servers::free_port();
    fails(
        &[
            "restore",
            "--repo",
            &repo,
            "--latest",
            "--target-store",
            &format!("etcd://127.0.0.1:{port}"),
        ],
        6,
    );
}

/// Credentials never reach logs or error messages, even at the most verbose log level.
#[test]
fn credentials_never_appear_in_logs_or_errors() {
    let d = tempfile::tempdir().unwrap();
    let repo = simulated_repo(d.path());
    let trace = [("RUST_LOG", "trace".to_string())];
    let pg = postgres();
    let secret_pw = "pg-Secret-4711";
    let url = format!(
        "postgres://{}:{secret_pw}@127.0.0.1:{}/postgres",
        pg.user, pg.port
    );
    let etcd_pw = "etcd-Secret-4712";
    let auth = etcd_auth();
    for args in [
        vec![
            "restore",
            "--repo",
            &repo,
            "--latest",
            "--target-store",
            &url,
        ],
        vec![
            "restore",
            "--repo",
            &repo,
            "--latest",
            "--target-store",
            &auth.url("leak"),
            "--etcd-auth",
            "--etcd-username",
            "root",
            "--etcd-password",
            etcd_pw,
        ],
        vec!["export", "--from-store", &url],
    ] {
        let o = run(&args, &trace, None);
        assert!(!o.status.success(), "{args:?}");
        for out in [&o.stdout, &o.stderr] {
            let text = String::from_utf8_lossy(out);
            assert!(
                !text.contains(secret_pw) && !text.contains(etcd_pw),
                "{args:?}: {text}"
            );
        }
    }
    // The S3 secret key, wrong or right, at trace level.
    let server = common::s3::s3();
    let mut env = server.env();
    env.push(("RUST_LOG", "trace".into()));
    let s3_repo = format!("s3://{}/backup", server.bucket());
    let o = run(&["snapshot", "list", "--repo", &s3_repo], &env, None);
    assert!(o.status.success());
    let mut wrong = env.clone();
    wrong.retain(|(k, _)| *k != "AWS_SECRET_ACCESS_KEY");
    wrong.push(("AWS_SECRET_ACCESS_KEY", "s3-Secret-4713".into()));
    let o2 = run(&["snapshot", "list", "--repo", &s3_repo], &wrong, None);
    assert!(!o2.status.success());
    for out in [&o.stdout, &o.stderr, &o2.stdout, &o2.stderr] {
        let text = String::from_utf8_lossy(out);
        assert!(
            !text.contains(common::s3::SECRET_KEY) && !text.contains("s3-Secret-4713"),
            "{text}"
        );
    }
}

/// As libpq: a PostgreSQL password not in the URL comes from PGPASSWORD, so that it need
/// not appear on a command line; a wrong one is an authentication error that names no
/// secret.
#[test]
fn a_postgres_password_can_come_from_pgpassword() {
    let d = tempfile::tempdir().unwrap();
    let repo = simulated_repo(d.path());
    let pg = postgres();
    let with_pw = pg.create_db();
    let db = with_pw.rsplit('/').next().unwrap().to_string();
    let url = format!("postgres://{}@127.0.0.1:{}/{db}", pg.user, pg.port);
    let args = [
        "restore",
        "--repo",
        &repo,
        "--latest",
        "--target-store",
        &url,
    ];
    let wrong = run(&args, &[("PGPASSWORD", "not-it-4713".to_string())], None);
    assert_eq!(wrong.status.code(), Some(2), "{wrong:?}");
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(!err.contains("not-it-4713"), "{err}");
    let o = run(&args, &[("PGPASSWORD", pg.password.clone())], None);
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("restored epoch"));
}
