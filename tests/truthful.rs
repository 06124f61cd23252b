//! Never "ok" while the backup is not: each test here is a way an operator could be told a
//! command succeeded, or could remove the last way to restore, and what metapitr does
//! instead.

mod common;

use std::path::Path;

use common::bin::{fails, ok};
use common::{cli_repo, Backend};

/// Simulates `epochs` epochs (snapshots every 100 unless `extra` says otherwise) into a
/// file repo under `dir`, with truth files every 25 epochs.
fn simulate(dir: &Path, epochs: u64, seed: u64, extra: &[&str]) -> String {
    let repo = cli_repo(Backend::File, dir);
    let truth = dir.join("truth");
    let mut args = vec![
        "--truth-dir",
        truth.to_str().unwrap(),
        "--truth-every",
        "25",
    ];
    if !extra.contains(&"--snapshot-every") {
        args.extend(["--snapshot-every", "100"]);
    }
    args.extend_from_slice(extra);
    let out = common::bin::simulate(&repo, dir, epochs, seed, &args);
    assert!(out.contains(&format!("simulated {epochs} epochs")), "{out}");
    repo
}

/// `metapitr archive --once`, which must succeed; its stdout.
fn archive_once(repo: &str, wal: &Path) -> String {
    ok(&[
        "archive",
        "--repo",
        repo,
        "--wal-dir",
        wal.to_str().unwrap(),
        "--once",
    ])
}

fn info(repo: &str) -> serde_json::Value {
    serde_json::from_str(&ok(&["info", "--repo", repo, "--json"])).unwrap()
}

fn restorable(repo: &str) -> Vec<(u64, u64)> {
    info(repo)["restorable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["from"].as_u64().unwrap(), r["to"].as_u64().unwrap()))
        .collect()
}

fn snapshot_ids(repo: &str) -> Vec<u64> {
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["snapshot", "list", "--repo", repo, "--json"])).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .collect()
}

/// Restores `epoch` (or the newest) to JSONL and compares it with the truth file.
fn restore_equals_truth(dir: &Path, repo: &str, epoch: u64) {
    let out = dir.join(format!("restored-{epoch}.jsonl"));
    ok(&[
        "restore",
        "--repo",
        repo,
        "--target-epoch",
        &epoch.to_string(),
        "--target-store",
        &format!("jsonl:{}", out.display()),
        "--force",
    ]);
    let got = std::fs::read_to_string(&out).unwrap();
    let truth = std::fs::read_to_string(dir.join("truth").join(format!("{epoch}.jsonl"))).unwrap();
    let c = metapitr::jsonl::compare(&got, &truth).unwrap();
    assert!(c.matches(), "epoch {epoch}: {c:?}");
}

#[test]
fn deleting_snapshots_never_shrinks_what_can_be_restored_without_force() {
    let d = tempfile::tempdir().unwrap();
    let repo = simulate(d.path(), 400, 5, &[]);
    let wal = d.path().join("wal");
    ok(&["retention", "apply", "--repo", &repo, "--window", "2min"]);
    let ids = snapshot_ids(&repo);
    assert!(ids.len() >= 2, "{ids:?}");
    let before = restorable(&repo);
    assert!(!before.is_empty());

    // The runbook's fix for a corrupt base: delete it with --force.
    ok(&[
        "snapshot",
        "delete",
        "--repo",
        &repo,
        &ids[0].to_string(),
        "--force",
    ]);
    let after_base = restorable(&repo);
    assert!(!after_base.is_empty(), "{after_base:?}");
    // Without --force, no other snapshot that is some epoch's only base may go.
    // The oldest remaining snapshot is now the only base of the window's start.
    let err = fails(
        &["snapshot", "delete", "--repo", &repo, &ids[1].to_string()],
        2,
    );
    assert!(err.contains("would become unrestorable"), "{err}");
    assert!(err.contains("--force"), "{err}");
    let rest: Vec<String> = ids[1..].iter().map(|i| i.to_string()).collect();
    let mut args = vec!["snapshot", "delete", "--repo", &repo];
    args.extend(rest.iter().map(String::as_str));
    fails(&args, 2);
    assert_eq!(
        restorable(&repo),
        after_base,
        "a refused delete changed the repo"
    );

    // A snapshot that another base makes redundant may go without --force: the newest
    // snapshot's epochs are also reachable from the one before it through the WAL.
    let last = *ids.last().unwrap();
    ok(&["snapshot", "delete", "--repo", &repo, &last.to_string()]);
    assert_eq!(restorable(&repo), after_base);

    // With --force everything goes, and the repo says so...
    let rest: Vec<String> = snapshot_ids(&repo).iter().map(|i| i.to_string()).collect();
    let mut args = vec!["snapshot", "delete", "--repo", &repo, "--force"];
    args.extend(rest.iter().map(String::as_str));
    ok(&args);
    assert!(restorable(&repo).is_empty());
    let err = fails(
        &[
            "restore",
            "--repo",
            &repo,
            "--latest",
            "--target-store",
            "jsonl:-",
        ],
        2,
    );
    assert!(err.contains("snapshot create --wal-dir"), "{err}");

    // ... but the meta node's directory gives it a base again: the archiver uploads its
    // checkpoint, and the newest epoch restores equal to the truth.
    let out = archive_once(&repo, &wal);
    assert!(out.contains("uploaded the local checkpoint"), "{out}");
    let newest = *common::truth_epochs(d.path()).last().unwrap();
    let r = restorable(&repo);
    assert!(r.iter().any(|(a, b)| *a <= newest && newest <= *b), "{r:?}");
    restore_equals_truth(d.path(), &repo, newest);
    // Once a base exists, the archiver uploads no other.
    let again = archive_once(&repo, &wal);
    assert!(!again.contains("uploaded the local checkpoint"), "{again}");

    // snapshot create --wal-dir does the same by hand.
    let made = ok(&[
        "snapshot",
        "create",
        "--repo",
        &repo,
        "--wal-dir",
        wal.to_str().unwrap(),
    ]);
    assert!(made.contains("checkpoint"), "{made}");
}

#[test]
fn archive_refuses_a_wal_dir_that_does_not_exist_or_holds_no_wal() {
    let d = tempfile::tempdir().unwrap();
    let repo = simulate(d.path(), 50, 1, &[]);
    let missing = d.path().join("no-such-dir");
    for once in [true, false] {
        let mut args = vec![
            "archive",
            "--repo",
            &repo,
            "--wal-dir",
            missing.to_str().unwrap(),
        ];
        if once {
            args.push("--once");
        }
        let err = fails(&args, 4);
        assert!(err.contains("does not exist"), "{err}");
        assert!(err.contains("--wal-dir"), "{err}");
        assert!(!missing.exists(), "the missing directory was created");
    }
    // A directory holding only a LOCK file is no WAL directory either.
    let only_lock = d.path().join("only-lock");
    std::fs::create_dir(&only_lock).unwrap();
    std::fs::write(only_lock.join("LOCK"), b"").unwrap();
    let err = fails(
        &[
            "archive",
            "--repo",
            &repo,
            "--wal-dir",
            only_lock.to_str().unwrap(),
            "--once",
        ],
        4,
    );
    assert!(err.contains("holds no metapitr WAL"), "{err}");
    // A file is not a directory.
    let file = d.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    fails(
        &[
            "archive",
            "--repo",
            &repo,
            "--wal-dir",
            file.to_str().unwrap(),
            "--once",
        ],
        2,
    );
}

#[test]
fn a_refused_stray_archiver_does_not_take_the_timeline_over() {
    let live = tempfile::tempdir().unwrap();
    let repo = simulate(live.path(), 300, 3, &[]);
    // Another service's directory, on the same timeline number with other content, whose
    // sealed segments were never archived.
    let stray = tempfile::tempdir().unwrap();
    common::rt().block_on(async {
        let mut opts = common::run_opts(4, 200, None, 1000, stray.path());
        opts.recorder.archive = false;
        let mut sim = metapitr::sim::Simulator::new(opts.sim.clone());
        let scratch = metapitr::repo::Repo::open("memory://", sim.clock()).unwrap();
        metapitr::sim::run_with_repo(scratch, &stray.path().join("wal"), opts, &mut sim)
            .await
            .unwrap();
    });
    let before = info(&repo);
    let o = common::bin::metapitr(&[
        "archive",
        "--repo",
        &repo,
        "--wal-dir",
        stray.path().join("wal").to_str().unwrap(),
        "--once",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a stray directory was archived");
    assert!(matches!(o.status.code(), Some(2 | 5)), "{err}");
    assert!(err.contains("timeline was not taken over"), "{err}");
    let after = info(&repo);
    assert_eq!(
        after["timelines"][0]["writer_epoch"], before["timelines"][0]["writer_epoch"],
        "the refused archiver fenced the live writer"
    );
    assert_eq!(after["manifest_version"], before["manifest_version"]);
    // The live directory still archives.
    archive_once(&repo, &live.path().join("wal"));
}

#[test]
fn retention_with_a_zero_window_leaves_nothing_unarchivable() {
    let d = tempfile::tempdir().unwrap();
    let repo = simulate(
        d.path(),
        50,
        2,
        &["--snapshot-every", "1", "--retention-window", "0s"],
    );
    let wal = d.path().join("wal");
    // Everything the simulator sealed was archived: nothing is left to ship, and what is
    // there chains on.
    let out = archive_once(&repo, &wal);
    assert!(!out.contains("starts at lsn"), "{out}");
    let sealed = std::fs::read_dir(&wal)
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            let n = n.to_str().unwrap();
            n.ends_with(".wal")
        })
        .count();
    assert_eq!(sealed, 0, "sealed segments left in {}", wal.display());
    let newest = *common::truth_epochs(d.path()).last().unwrap();
    restore_equals_truth(d.path(), &repo, newest);
    assert!(ok(&["verify", "--repo", &repo]).contains("no problems"));
}

fn newest_manifest_file(repo_dir: &Path) -> (u64, std::path::PathBuf) {
    let mut v: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(repo_dir.join("manifest"))
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            let n = p
                .file_name()?
                .to_str()?
                .strip_suffix(".mpm.zst")?
                .parse()
                .ok()?;
            Some((n, p))
        })
        .collect();
    v.sort();
    v.pop().unwrap()
}

#[test]
fn a_lost_newest_manifest_is_detected_never_written_over_and_repaired() {
    let d = tempfile::tempdir().unwrap();
    let repo = simulate(d.path(), 300, 6, &[]);
    let newest = *common::truth_epochs(d.path()).last().unwrap();
    let (version, file) = newest_manifest_file(&d.path().join("repo"));
    let before = restorable(&repo);
    std::fs::remove_file(&file).unwrap();

    // verify says what was lost and what to do.
    let o = common::bin::metapitr(&["verify", "--repo", &repo]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(4), "{text}");
    assert!(
        text.contains(&format!("version {version} is lost")),
        "{text}"
    );
    assert!(text.contains("metapitr repair"), "{text}");

    // Writers refuse to go on over it: the lost version is never written again.
    for args in [
        vec!["snapshot", "create", "--repo", &repo],
        vec!["retention", "apply", "--repo", &repo, "--window", "1min"],
    ] {
        let err = fails(&args, 3);
        assert!(err.contains("is missing"), "{args:?}: {err}");
        assert!(!file.exists(), "{args:?} wrote over the lost version");
    }

    // repair lists again what the lost version named; the end is restorable again.
    let dry = ok(&["repair", "--repo", &repo, "--dry-run"]);
    assert!(dry.contains("dry run"), "{dry}");
    assert!(!file.exists());
    let done = ok(&["repair", "--repo", &repo]);
    assert!(
        done.contains(&format!("version {version} was lost; wrote version")),
        "{done}"
    );
    assert_eq!(restorable(&repo), before);
    restore_equals_truth(d.path(), &repo, newest);
    let o = common::bin::metapitr(&["verify", "--repo", &repo]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && text.contains("no problems"), "{text}");
    assert!(ok(&["repair", "--repo", &repo]).contains("nothing to repair"));
    // And writers go on.
    ok(&["snapshot", "create", "--repo", &repo]);
}

#[test]
fn a_truncated_newest_manifest_says_what_to_do() {
    let d = tempfile::tempdir().unwrap();
    let repo = simulate(d.path(), 200, 7, &[]);
    let newest = *common::truth_epochs(d.path()).last().unwrap();
    let before = restorable(&repo);
    let (version, file) = newest_manifest_file(&d.path().join("repo"));
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let err = fails(&["info", "--repo", &repo], 3);
    assert!(
        err.contains(&format!("version before it ({}", version - 1))
            || err.contains("is in the repo"),
        "{err}"
    );
    assert!(err.contains("metapitr repair"), "{err}");
    let done = ok(&["repair", "--repo", &repo]);
    assert!(done.contains("was lost"), "{done}");
    assert_eq!(restorable(&repo), before);
    restore_equals_truth(d.path(), &repo, newest);
}
