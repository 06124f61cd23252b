//! One conformance suite for the repo, run against every backend: memory://, file:// and
//! s3:// (a real S3 server, s3s over s3s-fs, with SigV4 signature checking).
//!
//! Every case takes a fresh repo; a backend passes when every case passes on it.

mod common;

use bytes::Bytes;
use common::{repo_on, rt, Backend, BACKENDS};
use metapitr::clock::{self, SharedClock};
use metapitr::codec::Kind;
use metapitr::error::ErrorKind;
use metapitr::jsonl;
use metapitr::pb::{Manifest, SnapshotEntry};
use metapitr::repo::{Created, Repo, RepoLocation};
use metapitr::restore::{self, Target};

fn fresh(backend: Backend, dir: &std::path::Path) -> Repo {
    repo_on(backend, dir, clock::system())
}

/// Immutable objects: create, identical re-create, conflicting create, read, delete.
async fn immutable_objects(repo: &Repo) {
    let data = Bytes::from_static(b"first version of the object");
    assert_eq!(
        repo.put_new("a/one", data.clone()).await.unwrap(),
        Created::New
    );
    assert_eq!(repo.get("a/one").await.unwrap(), data);
    assert_eq!(
        repo.put_new("a/one", data.clone()).await.unwrap(),
        Created::AlreadyThere,
        "re-creating identical bytes is an earlier attempt that landed"
    );
    let err = repo
        .put_new("a/one", Bytes::from_static(b"someone else's bytes"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fenced, "{err}");
    assert!(err.to_string().contains("a/one"), "{err}");
    assert_eq!(
        repo.get("a/one").await.unwrap(),
        data,
        "the loser wrote nothing"
    );

    repo.delete("a/one").await.unwrap();
    let err = repo.get("a/one").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("a/one"), "{err}");
    // Deleting what is gone is not an error.
    repo.delete("a/one").await.unwrap();
}

/// put_overwrite replaces; objects of every size round-trip byte for byte.
async fn overwrite_and_sizes(repo: &Repo) {
    repo.put_overwrite("cp/0", Bytes::from_static(b"old"))
        .await
        .unwrap();
    repo.put_overwrite("cp/0", Bytes::from_static(b"new!"))
        .await
        .unwrap();
    assert_eq!(&repo.get("cp/0").await.unwrap()[..], b"new!");
    for size in [0usize, 1, 4096, 3 << 20] {
        let body: Vec<u8> = (0..size).map(|i| (i * 31 + size) as u8).collect();
        let key = format!("sizes/{size}");
        repo.put_new(&key, Bytes::from(body.clone())).await.unwrap();
        assert_eq!(repo.get(&key).await.unwrap().to_vec(), body, "size {size}");
    }
}

/// LIST: sorted, relative to the repo root, with sizes, only under the prefix.
async fn listing(repo: &Repo) {
    for k in ["l/b/2", "l/a/1", "l/b/1", "m/x", "l2/z"] {
        repo.put_new(k, Bytes::from(k.as_bytes().to_vec()))
            .await
            .unwrap();
    }
    let got = repo.list("l/").await.unwrap();
    assert_eq!(
        got,
        vec![
            ("l/a/1".to_string(), 5),
            ("l/b/1".to_string(), 5),
            ("l/b/2".to_string(), 5)
        ]
    );
    assert!(repo.list("nothing/").await.unwrap().is_empty());
}

/// Enveloped messages: written, read back, and a flipped bit is reported as corruption
/// naming the object.
async fn messages_and_corruption(repo: &Repo) {
    let m = Manifest {
        version: 7,
        repo_id: "conformance".into(),
        ..Default::default()
    };
    repo.put_message("msg/m", Kind::Manifest, &m).await.unwrap();
    let back: Manifest = repo.get_message("msg/m", Kind::Manifest).await.unwrap();
    assert_eq!(back, m);
    common::damage_object(repo, &full_key(repo, "msg/m"), 0x10).await;
    let err = repo
        .get_message::<Manifest>("msg/m", Kind::Manifest)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corruption, "{err}");
    assert!(err.to_string().contains("msg/m"), "{err}");
}

/// The key of `key` in the underlying object store (the repo may sit in a directory).
fn full_key(repo: &Repo, key: &str) -> String {
    let url = repo.url();
    let prefix = url
        .strip_prefix("s3://")
        .and_then(|b| b.split_once('/'))
        .map(|(_, p)| p.trim_matches('/').to_string())
        .unwrap_or_default();
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}/{key}")
    }
}

/// The manifest's compare-and-swap: two writers racing never lose an update, across the
/// pruning of old versions.
async fn manifest_cas(repo: &Repo, twin: Repo) {
    const EACH: u64 = 40;
    let twin = twin.with_writer_id(0xfeed);
    let a = repo.clone().with_writer_id(0xbeef);
    let run = |r: Repo, base: u64| async move {
        for i in 0..EACH {
            let id = base + i;
            r.update_manifest(|m| {
                m.snapshots.push(SnapshotEntry {
                    id,
                    ..Default::default()
                });
                Ok(true)
            })
            .await
            .unwrap();
        }
    };
    tokio::join!(run(a, 0), run(twin, 1000));
    let m = repo.manifest().await.unwrap();
    assert_eq!(m.version, 2 * EACH);
    let mut ids: Vec<u64> = m.snapshots.iter().map(|s| s.id).collect();
    ids.sort_unstable();
    let want: Vec<u64> = (0..EACH).chain(1000..1000 + EACH).collect();
    assert_eq!(
        ids, want,
        "every update of both writers is in the newest manifest"
    );
    let versions = repo
        .list("manifest/")
        .await
        .unwrap()
        .iter()
        .filter(|(k, _)| k.ends_with(".mpm.zst"))
        .count() as u64;
    assert!(
        versions <= 2 * metapitr::repo::MANIFEST_KEEP,
        "{versions} manifest versions kept"
    );
}

/// Archive a simulated history and restore random epochs: equal to the truth.
async fn archive_and_restore(backend: Backend) {
    let s = common::simulate_on(backend, 11, 150, Some(40), 25).await;
    for (e, _) in s.report.truth_files.iter().step_by(2) {
        let (_, state) = restore::materialize(&s.repo, None, Target::Epoch(*e))
            .await
            .unwrap();
        let c = jsonl::compare(&jsonl::to_string(&state), &s.truth(*e)).unwrap();
        assert!(c.matches(), "{backend:?} epoch {e}: {c:?}");
    }
}

fn run_suite(backend: Backend) {
    let rt = rt();
    rt.block_on(async {
        let d = tempfile::tempdir().unwrap();
        immutable_objects(&fresh(backend, &d.path().join("1"))).await;
        overwrite_and_sizes(&fresh(backend, &d.path().join("2"))).await;
        listing(&fresh(backend, &d.path().join("3"))).await;
        messages_and_corruption(&fresh(backend, &d.path().join("4"))).await;
        // Two handles on one repo: memory:// repos are process-local per handle, so the
        // twin shares the store.
        let r = fresh(backend, &d.path().join("5"));
        let twin = match backend {
            Backend::Memory => Repo::from_store(
                r.object_store().clone(),
                object_store::path::Path::default(),
                r.url(),
                clock::system(),
            ),
            _ => Repo::open_location(
                &RepoLocation::new(r.url()).with_s3(&backend),
                clock::system(),
            )
            .unwrap(),
        };
        manifest_cas(&r, twin).await;
        archive_and_restore(backend).await;
    });
}

/// The S3 settings a second handle on the same bucket needs.
trait WithS3 {
    fn with_s3(self, backend: &Backend) -> Self;
}

impl WithS3 for RepoLocation {
    fn with_s3(mut self, backend: &Backend) -> Self {
        if *backend == Backend::S3 {
            self.s3 = common::s3::s3().options();
        }
        self
    }
}

#[test]
fn conformance_memory() {
    run_suite(BACKENDS[0]);
}

#[test]
fn conformance_file() {
    run_suite(BACKENDS[1]);
}

#[test]
fn conformance_s3() {
    run_suite(BACKENDS[2]);
}

/// Wrong credentials fail fast with an error that says what to fix; they are not retried
/// as if the server were down.
#[test]
fn s3_wrong_credentials_are_a_clear_error() {
    let rt = rt();
    rt.block_on(async {
        let server = common::s3::s3();
        let mut loc = server.location(None);
        loc.s3.secret_access_key = Some("not-the-secret".into());
        let repo = Repo::open_location(&loc, clock::system() as SharedClock).unwrap();
        let t = std::time::Instant::now();
        let err = repo.load_manifest().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        let msg = err.to_string();
        assert!(msg.contains("credentials"), "{msg}");
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "retried: {:?}",
            t.elapsed()
        );
    });
}

/// A bucket that does not exist is named in the error.
#[test]
fn s3_missing_bucket_is_named() {
    let rt = rt();
    rt.block_on(async {
        let server = common::s3::s3();
        let loc = RepoLocation {
            url: "s3://no-such-bucket-here".into(),
            directory: None,
            s3: server.options(),
            ..Default::default()
        };
        let repo = Repo::open_location(&loc, clock::system()).unwrap();
        let err = repo
            .put_new("x", Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::NotFound | ErrorKind::InvalidInput),
            "{err}"
        );
        assert!(err.to_string().contains("no-such-bucket-here"), "{err}");
    });
}

/// An unreachable endpoint is Unavailable (worth retrying), not a wrong input.
#[test]
fn s3_unreachable_endpoint_is_unavailable() {
    let rt = rt();
    rt.block_on(async {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut loc = common::s3::s3().location(None);
        loc.s3.endpoint = Some(format!("http://127.0.0.1:{port}"));
        let repo = Repo::open_location(&loc, clock::system())
            .unwrap()
            .with_retry(metapitr::repo::RetryPolicy {
                attempts: 2,
                initial_backoff: std::time::Duration::from_millis(10),
                max_backoff: std::time::Duration::from_millis(10),
                ..Default::default()
            });
        let err = repo.load_manifest().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    });
}
