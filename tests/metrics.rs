//! `metapitr archive --metrics-addr`: the real binary serves Prometheus metrics and a
//! health check while it archives, and what it reports agrees with `metapitr info`.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::bin::{fails, ok};
use common::{cli_repo, Backend};

/// The archiver process; killed when the test ends, however it ends.
struct Archiver(Child);

impl Drop for Archiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One scrape: every sample by name, exactly as printed.
#[derive(Debug)]
struct Exposition(BTreeMap<String, String>);

impl Exposition {
    /// Parses the text format strictly enough for metapitr's output: comment lines are
    /// `# HELP name text` or `# TYPE name gauge|counter`, every other line is `name value`,
    /// and every sample's family has HELP and TYPE before it.
    fn parse(text: &str) -> Exposition {
        let (mut help, mut ty) = (BTreeMap::new(), BTreeMap::new());
        let mut samples = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, text) = rest.split_once(' ').expect(line);
                assert!(!text.trim().is_empty(), "empty HELP: {line}");
                assert!(
                    help.insert(name.to_string(), text.to_string()).is_none(),
                    "{line}"
                );
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, t) = rest.split_once(' ').expect(line);
                assert!(help.contains_key(name), "TYPE before HELP: {line}");
                assert!(["gauge", "counter"].contains(&t), "{line}");
                assert_eq!(t == "counter", name.ends_with("_total"), "{line}");
                assert!(
                    ty.insert(name.to_string(), t.to_string()).is_none(),
                    "{line}"
                );
            } else {
                assert!(!line.starts_with('#'), "unexpected comment: {line}");
                let (name, value) = line.split_once(' ').expect(line);
                assert!(!value.contains(' '), "{line}");
                value
                    .parse::<f64>()
                    .unwrap_or_else(|e| panic!("{line}: {e}"));
                assert!(ty.contains_key(name), "sample without HELP/TYPE: {line}");
                assert!(name.starts_with("metapitr_"), "{line}");
                assert!(
                    samples
                        .insert(name.to_string(), value.to_string())
                        .is_none(),
                    "{line}"
                );
            }
        }
        assert_eq!(help.len(), ty.len(), "{text}");
        Exposition(samples)
    }

    fn raw(&self, name: &str) -> &str {
        self.0
            .get(&format!("metapitr_{name}"))
            .unwrap_or_else(|| panic!("no metapitr_{name} in {:?}", self.0))
    }

    /// An integer sample, read exactly (epochs need all 64 bits).
    fn int(&self, name: &str) -> u64 {
        let v = self.raw(name);
        v.parse()
            .unwrap_or_else(|e| panic!("metapitr_{name} {v}: {e}"))
    }

    fn float(&self, name: &str) -> f64 {
        let v = self.raw(name);
        v.parse()
            .unwrap_or_else(|e| panic!("metapitr_{name} {v}: {e}"))
    }

    /// Every metric an alert of the runbook uses has a sample.
    fn has_every_alert_metric(&self) {
        for name in alert_metrics() {
            assert!(
                self.0.contains_key(&name),
                "the runbook alerts on {name}, which this scrape lacks: {:?}",
                self.0
            );
        }
    }
}

/// The `metapitr_*` metrics the alert table of docs/operations.md (§1.3) uses.
fn alert_metrics() -> std::collections::BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let table = doc
        .split("| Alert | Meaning |")
        .nth(1)
        .expect("docs/operations.md has an alert table");
    let mut names = std::collections::BTreeSet::new();
    for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let expr = row.split('|').nth(1).unwrap();
        let mut rest = expr;
        while let Some(i) = rest.find("metapitr_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_string());
            rest = &tail[end..];
        }
    }
    assert!(names.len() >= 5, "too few alert metrics found: {names:?}");
    names
}

/// Writes `n` single-record commits after the simulated store's checkpoint, on its
/// timeline, and seals them: sealed segments no repo holds yet. Returns the last epoch.
fn append_unarchived(wal_dir: &Path, n: u64) -> u64 {
    let cp = metapitr::snapshot::read_checkpoint(wal_dir)
        .unwrap()
        .expect("simulate leaves a CHECKPOINT");
    let rt = common::rt();
    rt.block_on(async {
        let w = metapitr::wal::Wal::open(
            wal_dir,
            cp.timeline,
            cp.lsn + 1,
            Default::default(),
            metapitr::clock::system(),
        )
        .unwrap();
        assert_eq!(w.next_lsn(), cp.lsn + 1);
        for i in 1..=n {
            let c = metapitr::model::Change {
                kind: Some(metapitr::model::change::Kind::SetParam(
                    metapitr::model::pb::SystemParam {
                        name: format!("metrics_test_{i}"),
                        value: "v".into(),
                    },
                )),
            };
            // One millisecond apart, past the checkpoint.
            w.append(cp.epoch + (i << 16), &[c]).unwrap().await.unwrap();
            if i == n / 2 {
                w.seal().await.unwrap();
            }
        }
        w.seal().await.unwrap();
        w.close().await.unwrap();
    });
    let sealed: Vec<_> = metapitr::wal::list_segments(wal_dir)
        .unwrap()
        .into_iter()
        .filter(|s| s.sealed)
        .collect();
    assert_eq!(sealed.len(), 2, "{sealed:?}");
    cp.epoch + (n << 16)
}

/// Starts `metapitr archive` with `--metrics-addr 127.0.0.1:0` and `env`, and returns it
/// with the address it printed on stderr.
fn start_archiver(repo: &str, wal_dir: &Path, env: &[(&str, &str)]) -> (Archiver, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_metapitr"))
        .envs(env.iter().copied())
        .args([
            "archive",
            "--repo",
            repo,
            "--wal-dir",
            wal_dir.to_str().unwrap(),
            "--poll-ms",
            "50",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let archiver = Archiver(child);
    let (tx, rx) = mpsc::channel();
    // Reads stderr to its end, so the process never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(rest) = line.strip_prefix("serving metrics on http://") {
                    let addr = rest.strip_suffix("/metrics").expect(&line);
                    let addr: SocketAddr = addr.parse().expect(&line);
                    assert!(addr.ip().is_loopback() && addr.port() != 0, "{line}");
                    return (archiver, addr);
                }
                seen.push(line);
            }
            Err(e) => panic!("no metrics address on stderr ({e}); stderr so far: {seen:?}"),
        }
    }
}

/// Scrapes `/health` until no longer `starting` (a pass has finished) and `done` accepts
/// the answer; returns it with the scrape of `/metrics` that followed it.
fn wait_health(addr: SocketAddr, done: impl Fn(u16, &str) -> bool) -> (u16, String, Exposition) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    common::rt().block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, ct, body) = get(&client, addr, "/health").await;
            assert_eq!(ct, "text/plain");
            if !body.starts_with("starting") && done(status, &body) {
                let (_, _, text) = get(&client, addr, "/metrics").await;
                return (status, body, Exposition::parse(&text));
            }
            assert!(Instant::now() < deadline, "/health stayed {status} {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

async fn get(client: &reqwest::Client, addr: SocketAddr, path: &str) -> (u16, String, String) {
    let r = client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, r.text().await.unwrap())
}

#[test]
fn archive_serves_metrics_that_agree_with_info() {
    let d = tempfile::tempdir().unwrap();
    let repo = cli_repo(Backend::File, d.path());
    let wal_dir = d.path().join("wal");
    let out = ok(&[
        "simulate",
        "--repo",
        &repo,
        "--wal-dir",
        wal_dir.to_str().unwrap(),
        "--epochs",
        "120",
        "--seed",
        "5",
        "--snapshot-every",
        "50",
        "--no-sync",
    ]);
    assert!(out.contains("simulated 120 epochs"), "{out}");
    let last_sealed = append_unarchived(&wal_dir, 20);

    // The simulated history is dated 2026-01-01: far older than the default lag limit.
    let (_archiver, addr) = start_archiver(
        &repo,
        &wal_dir,
        &[("METAPITR_ARCHIVE_HEALTH_MAX_LAG", "100000d")],
    );
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let rt = common::rt();
    let m = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, ct, body) = get(&client, addr, "/metrics").await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(ct, "text/plain; version=0.0.4");
            let m = Exposition::parse(&body);
            let archived = m.int("archived_epoch");
            assert!(archived <= last_sealed, "{archived} > {last_sealed}");
            if archived == last_sealed {
                break m;
            }
            assert!(
                Instant::now() < deadline,
                "archived epoch {archived} never reached {last_sealed}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });

    let info: serde_json::Value =
        serde_json::from_str(&ok(&["info", "--repo", &repo, "--json"])).unwrap();
    let newest = info["newest_timeline"].as_u64().unwrap();
    let tl = info["timelines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"].as_u64() == Some(newest))
        .unwrap();
    assert_eq!(tl["last_archived_epoch"].as_u64(), Some(last_sealed));
    assert_eq!(
        m.int("archived_lsn"),
        tl["last_archived_lsn"].as_u64().unwrap()
    );
    let ranges = tl["restorable"].as_array().unwrap();
    let start = ranges.first().unwrap()[0].as_u64().unwrap();
    let end = ranges.last().unwrap()[1].as_u64().unwrap();
    assert_eq!(m.int("restorable_window_start_epoch"), start);
    assert_eq!(m.int("restorable_window_end_epoch"), end);
    assert_eq!(end, last_sealed);
    let unix_s = |e: u64| metapitr::epoch::to_unix_ms(e) as f64 / 1000.0;
    assert!((m.float("restorable_window_start_seconds") - unix_s(start)).abs() < 1e-3);
    assert!((m.float("restorable_window_end_seconds") - unix_s(end)).abs() < 1e-3);
    let snapshots = info["snapshots"]["count"].as_u64().unwrap();
    assert!(snapshots >= 2, "{info}");
    assert_eq!(m.int("snapshots"), snapshots);
    assert!(m.float("newest_snapshot_age_seconds") >= m.float("archive_lag_seconds"));

    // Everything sealed is archived (and deleted locally): no lag in epochs; the time lag
    // is the age of the archived epoch, never negative.
    assert_eq!(m.int("archive_lag_epochs"), 0);
    let lag = m.float("archive_lag_seconds");
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        lag >= 0.0 && lag <= now_s - unix_s(last_sealed) + 1.0,
        "{lag}"
    );
    assert_eq!(m.int("uploaded_objects_total"), 2);
    assert!(m.int("uploaded_bytes_total") > 0);
    assert!(m.int("archive_passes_total") >= 1);
    assert_eq!(m.int("archive_errors_total"), 0);
    assert_eq!(m.int("archiver_fenced"), 0);
    assert_eq!(m.int("healthy"), 1);
    let window = m.float("restorable_window_seconds");
    assert!(
        (window - (unix_s(end) - unix_s(start))).abs() < 1e-3,
        "{window}"
    );
    m.has_every_alert_metric();

    rt.block_on(async {
        for path in ["/health", "/healthz"] {
            let (status, _, body) = get(&client, addr, path).await;
            assert_eq!(status, 200, "{body}");
            assert!(
                body.starts_with(&format!(
                    "ok: timeline {newest} archived up to epoch {last_sealed} ("
                )) && body.contains(&format!("; {snapshots} snapshots")),
                "{body}"
            );
        }
        let (status, _, _) = get(&client, addr, "/nope").await;
        assert_eq!(status, 404);
    });
}

#[test]
fn a_busy_metrics_address_is_refused_before_anything_happens() {
    let d = tempfile::tempdir().unwrap();
    let repo = cli_repo(Backend::File, d.path());
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    // A meta store directory holding only its checkpoint.
    let wal = d.path().join("wal");
    let sim = tempfile::tempdir().unwrap();
    common::simulated_file_repo(sim.path(), &["--epochs", "5"]);
    std::fs::create_dir(&wal).unwrap();
    std::fs::copy(
        sim.path().join("wal").join("CHECKPOINT"),
        wal.join("CHECKPOINT"),
    )
    .unwrap();
    let wal = wal.to_str().unwrap();
    let err = fails(
        &[
            "archive",
            "--repo",
            &repo,
            "--wal-dir",
            wal,
            "--metrics-addr",
            &addr,
        ],
        2,
    );
    assert!(
        err.contains(&addr) && err.contains("--metrics-addr"),
        "{err}"
    );
    // Nothing was claimed or written.
    assert!(!d.path().join("repo").join("manifest").exists());
    let err = fails(
        &[
            "archive",
            "--repo",
            &repo,
            "--wal-dir",
            wal,
            "--once",
            "--metrics-addr",
            &addr,
        ],
        2,
    );
    assert!(err.contains("--once"), "{err}");
}

/// /health is 503 while nothing this archiver recorded can be restored: nothing archived
/// (a WAL directory with only a checkpoint), or archived WAL with no base to replay it
/// from. The gauges the alerts use have samples all along.
#[test]
fn health_is_503_while_the_repo_cannot_restore_what_was_recorded() {
    let d = tempfile::tempdir().unwrap();
    let wal_dir = d.path().join("wal");
    common::simulated_file_repo(d.path(), &["--epochs", "40", "--seed", "7"]);
    // A second, empty repo: the directory's history (its checkpoint) is not in it.
    let fresh = format!("file://{}", d.path().join("fresh").display());
    let (_archiver, addr) = start_archiver(&fresh, &wal_dir, &[]);
    let (status, body, m) = wait_health(addr, |_, _| true);
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("nothing archived: the repo holds no WAL of timeline 1"),
        "{body}"
    );
    m.has_every_alert_metric();
    assert_eq!(m.raw("archive_lag_seconds"), "+Inf");
    assert_eq!(m.raw("newest_snapshot_age_seconds"), "+Inf");
    assert_eq!(m.float("restorable_window_seconds"), 0.0);
    assert_eq!((m.int("archived_epoch"), m.int("healthy")), (0, 0));

    // Archived WAL that nothing can replay: retention expired the WAL from lsn 1, and the
    // snapshots it kept are deleted.
    let d = tempfile::tempdir().unwrap();
    let repo = common::simulated_file_repo(
        d.path(),
        &["--epochs", "60", "--seed", "7", "--snapshot-every", "20"],
    );
    ok(&[
        "retention",
        "apply",
        "--repo",
        &repo,
        "--window",
        "1s",
        "--force",
    ]);
    for id in ["2", "3"] {
        ok(&["snapshot", "delete", "--repo", &repo, id, "--force"]);
    }
    let (_archiver, addr) = start_archiver(&repo, &d.path().join("wal"), &[]);
    let (status, body, m) = wait_health(addr, |_, _| true);
    assert_eq!(status, 503, "{body}");
    let last = m.int("archived_epoch");
    assert!(
        body.starts_with(&format!(
            "nothing restorable: timeline 1 is archived up to epoch {last} ("
        )),
        "{body}"
    );
    assert_eq!(m.float("restorable_window_seconds"), 0.0);
    assert_eq!(m.raw("newest_snapshot_age_seconds"), "+Inf");
    assert_eq!(m.int("healthy"), 0);
    m.has_every_alert_metric();
}

/// /health is 503 with the error while passes fail, and, once they succeed, while the
/// archived epoch is older than archive.health_max_lag (default 10 min).
#[test]
fn health_is_503_while_passes_fail_or_the_archive_lags() {
    let d = tempfile::tempdir().unwrap();
    let wal_dir = d.path().join("wal");
    let repo = common::simulated_file_repo(
        d.path(),
        &["--epochs", "60", "--seed", "8", "--snapshot-every", "20"],
    );
    let last = append_unarchived(&wal_dir, 6);
    // Segments cannot be written: a file stands where their directory goes.
    let segs = d.path().join("repo").join("wal");
    let away = d.path().join("wal-away");
    std::fs::rename(&segs, &away).unwrap();
    std::fs::write(&segs, b"in the way").unwrap();
    let (_archiver, addr) = start_archiver(&repo, &wal_dir, &[]);
    let (status, body, m) = wait_health(addr, |_, _| true);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("object store, put"), "{body}");
    assert!(m.int("archive_errors_total") >= 1);
    assert_eq!(m.int("healthy"), 0);

    std::fs::remove_file(&segs).unwrap();
    std::fs::rename(&away, &segs).unwrap();
    let (status, body, m) = wait_health(addr, |_, b| !b.contains("object store"));
    assert_eq!(status, 503, "{body}");
    assert_eq!(m.int("archived_epoch"), last);
    assert!(
        body.starts_with("archive lag ")
            && body.contains("is above archive.health_max_lag (600.000 s)")
            && body.contains(&format!("the newest archived epoch is {last} (")),
        "{body}"
    );
    assert!(m.float("archive_lag_seconds") > 600.0);
    assert_eq!(m.int("healthy"), 0);
}
