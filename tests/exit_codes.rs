//! Exit codes and messages a script can trust: a permanent error is never "retry" (6),
//! a mistyped path is never created, every flag says what it is for.

mod common;

use std::path::Path;

use clap::CommandFactory;
use common::bin::{fails, metapitr, ok, run};
use common::{cli_repo, Backend};

fn simulate(dir: &Path) -> String {
    let repo = cli_repo(Backend::File, dir);
    common::bin::simulate(&repo, dir, 120, 9, &["--snapshot-every", "40"]);
    repo
}

/// Restores `target` (restore flags) into `dir/restored` and simulates `epochs` more
/// epochs from it: a new timeline forked from timeline 1.
fn fork(dir: &Path, repo: &str, target: &[&str], epochs: u64) {
    let store = dir.join("restored");
    let to = format!("dir:{}", store.display());
    let mut restore = vec!["restore", "--repo", repo, "--target-store", &to];
    restore.extend_from_slice(target);
    ok(&restore);
    let epochs = epochs.to_string();
    ok(&[
        "simulate",
        "--repo",
        repo,
        "--resume-from",
        &to,
        "--wal-dir",
        store.to_str().unwrap(),
        "--epochs",
        &epochs,
        "--no-sync",
    ]);
}

#[test]
fn permanent_errors_are_not_retry() {
    let d = tempfile::tempdir().unwrap();
    let repo = simulate(d.path());
    // A repo path that is a file.
    let file = d.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let err = fails(&["info", "--repo", file.to_str().unwrap()], 2);
    assert!(err.contains("not a directory"), "{err}");
    // An empty repo path.
    let err = fails(&["info", "--repo", ""], 2);
    assert!(err.contains("empty"), "{err}");
    // A dir: target that is a file.
    fails(
        &[
            "restore",
            "--repo",
            &repo,
            "--latest",
            "--target-store",
            &format!("dir:{}", file.display()),
        ],
        2,
    );
    // A missing --ids file.
    let missing = d.path().join("no-ids.txt");
    let err = fails(
        &[
            "gc-check",
            "--repo",
            &repo,
            "--current-epoch",
            "1",
            "--ids",
            missing.to_str().unwrap(),
        ],
        4,
    );
    assert!(err.contains("no-ids.txt"), "{err}");
}

#[test]
fn reading_commands_create_nothing() {
    let d = tempfile::tempdir().unwrap();
    let repo = simulate(d.path());
    let nowhere = d.path().join("no-such-repo");
    let err = fails(&["info", "--repo", nowhere.to_str().unwrap()], 4);
    assert!(err.contains("does not exist"), "{err}");
    assert!(!nowhere.exists(), "info created the repo directory");
    for args in [
        vec!["verify", "--repo", nowhere.to_str().unwrap()],
        vec!["snapshot", "list", "--repo", nowhere.to_str().unwrap()],
    ] {
        fails(&args, 4);
        assert!(!nowhere.exists(), "{args:?} created the repo directory");
    }

    // A settings file whose storage_url is a number, run from an empty directory.
    let cwd = d.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    std::fs::write(cwd.join("metapitr.toml"), "[backup]\nstorage_url = 5\n").unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_metapitr"))
        .args(["info"])
        .current_dir(&cwd)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert_ne!(o.status.code(), Some(6));
    let left: Vec<_> = std::fs::read_dir(&cwd)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("metapitr.toml")]);

    // A refused restore (an epoch outside the repo) creates neither its target nor the
    // Hummock storage directory.
    let target = d.path().join("restored");
    let hummock = d.path().join("hummock");
    fails(
        &[
            "restore",
            "--repo",
            &repo,
            "--target-epoch",
            "1",
            "--target-store",
            &format!("dir:{}", target.display()),
            "--hummock-storage-url",
            &format!("file://{}", hummock.display()),
        ],
        2,
    );
    assert!(!target.exists() && !hummock.exists());
}

#[test]
fn values_out_of_range_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let repo = cli_repo(Backend::File, d.path());
    let wal = d.path().join("wal");
    let base = [
        "simulate",
        "--repo",
        &repo,
        "--wal-dir",
        wal.to_str().unwrap(),
        "--epochs",
        "10",
    ];
    for extra in [
        &["--truth-dir", "t", "--truth-every", "0"][..],
        &["--epoch-interval-ms", "18446744073709551615"][..],
        &["--epoch-interval-ms", "0"][..],
        &["--snapshot-every", "0"][..],
    ] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        fails(&args, 2);
    }
    assert!(
        !wal.exists(),
        "a refused simulate created its WAL directory"
    );
    let o = run(
        &["epoch", "1"],
        &[("METAPITR_QUIET", "maybe".to_string())],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    for yes in ["1", "true", "yes", "0", "false"] {
        let o = run(
            &["epoch", "1"],
            &[("METAPITR_QUIET", yes.to_string())],
            None,
        );
        assert!(o.status.success(), "METAPITR_QUIET={yes}");
    }
}

#[test]
fn log_lines_carry_no_colour_codes_off_a_terminal() {
    let d = tempfile::tempdir().unwrap();
    let repo = simulate(d.path());
    let o = run(
        &["snapshot", "create", "--repo", &repo],
        &[("RUST_LOG", "info".to_string())],
        None,
    );
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("snapshot uploaded"), "{err}");
    assert!(!err.contains('\u{1b}'), "{err:?}");
}

#[test]
fn every_flag_and_argument_has_help() {
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            if a.get_help().is_none() && a.get_long_help().is_none() {
                missing.push(format!("{path} {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_about().is_none() {
                missing.push(format!("{path} {} (no about)", sub.get_name()));
            }
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut missing = Vec::new();
    walk(&metapitr::cli::Cli::command(), "metapitr", &mut missing);
    assert!(missing.is_empty(), "without help: {missing:#?}");
}

#[test]
fn an_epoch_may_be_given_as_a_time_everywhere_and_risingwave_names_work() {
    let d = tempfile::tempdir().unwrap();
    let repo = simulate(d.path());
    let info: serde_json::Value =
        serde_json::from_str(&ok(&["info", "--repo", &repo, "--json"])).unwrap();
    let (from, to) = (
        info["restorable"][0]["from"].as_u64().unwrap(),
        info["restorable"][0]["to"].as_u64().unwrap(),
    );
    // A time names the state as of then: every epoch of its millisecond.
    let time = ok(&["epoch", &((from + to) / 2).to_string()])
        .trim()
        .to_string();
    let as_of = metapitr::epoch::parse_as_of(&time).unwrap();
    let by_epoch = ok(&[
        "show",
        "--repo",
        &repo,
        "--at-epoch",
        &as_of.to_string(),
        "ids",
    ]);
    let by_time = ok(&["show", "--repo", &repo, "--at-epoch", &time, "ids"]);
    assert_eq!(by_epoch, by_time);
    ok(&["hummock-version", "--repo", &repo, "--at-epoch", &time]);
    let exported = d.path().join("e.jsonl");
    ok(&[
        "export",
        "--repo",
        &repo,
        "--at-epoch",
        &time,
        "-o",
        exported.to_str().unwrap(),
    ]);
    let out = d.path().join("r.jsonl");
    ok(&[
        "restore-meta",
        "--repo",
        &repo,
        "--target-epoch",
        &time,
        "--target-store",
        &format!("jsonl:{}", out.display()),
    ]);
    // RisingWave's names: backup-meta, delete-meta-snapshots, --meta-snapshot-id.
    let made = ok(&["backup-meta", "--repo", &repo]);
    let id: u64 = made
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{made}"));
    let out2 = d.path().join("s.jsonl");
    ok(&[
        "restore",
        "--repo",
        &repo,
        "--meta-snapshot-id",
        &id.to_string(),
        "--target-store",
        &format!("jsonl:{}", out2.display()),
    ]);
    ok(&["delete-meta-snapshots", "--repo", &repo, &id.to_string()]);
    let o = metapitr(&["snapshot", "list", "--repo", &repo, "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["id"].as_u64() != Some(id)));
}

#[test]
fn an_epoch_on_another_timeline_names_it() {
    let d = tempfile::tempdir().unwrap();
    let repo = simulate(d.path());
    let info: serde_json::Value =
        serde_json::from_str(&ok(&["info", "--repo", &repo, "--json"])).unwrap();
    let (from, to) = (
        info["restorable"][0]["from"].as_u64().unwrap(),
        info["restorable"][0]["to"].as_u64().unwrap(),
    );
    // Restore the middle of the history into a store and go on from it: timeline 2.
    let mid = from + (to - from) / 2;
    fork(d.path(), &repo, &["--target-epoch", &mid.to_string()], 20);
    // An epoch after the fork exists only on timeline 1.
    let err = fails(
        &[
            "restore",
            "--repo",
            &repo,
            "--target-epoch",
            &to.to_string(),
            "--target-store",
            "jsonl:-",
            "--dry-run",
        ],
        2,
    );
    assert!(err.contains("--timeline 1"), "{err}");
}

#[test]
fn retention_reports_only_the_parts_of_a_policy_that_were_set() {
    let d = tempfile::tempdir().unwrap();
    let repo = simulate(d.path());
    ok(&["retention", "apply", "--repo", &repo, "--window", "1min"]);
    let info = ok(&["info", "--repo", &repo]);
    assert!(info.contains("retention: window 1m"), "{info}");
    assert!(
        !info.contains("keep last") && !info.contains("keep-last"),
        "{info}"
    );
    let err = fails(
        &["retention", "apply", "--repo", &repo, "--window", "30s"],
        2,
    );
    assert!(err.contains("last applied (window 1m)"), "{err}");
    assert!(!err.contains("keep-last 0"), "{err}");
}

/// Makes directories immutable (`chattr +i`: even root may not create or delete files in
/// them) for as long as it lives.
struct Immutable(Vec<std::path::PathBuf>);

impl Immutable {
    fn set(dirs: &[std::path::PathBuf]) -> Option<Immutable> {
        for d in dirs {
            let ok = std::process::Command::new("chattr")
                .arg("+i")
                .arg(d)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                Immutable(dirs.to_vec()).release();
                return None;
            }
        }
        Some(Immutable(dirs.to_vec()))
    }

    fn release(&self) {
        for d in &self.0 {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(d)
                .status();
        }
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        self.release();
    }
}

#[test]
fn a_repo_that_may_not_be_written_is_exit_2_and_verify_still_gives_its_verdict() {
    let d = tempfile::tempdir().unwrap();
    let repo = simulate(d.path());
    let root = d.path().join("repo");
    let dirs: Vec<std::path::PathBuf> = ["manifest", "snapshots", "verify"]
        .iter()
        .map(|n| root.join(n))
        .collect();
    std::fs::create_dir_all(root.join("verify")).unwrap();
    let Some(guard) = Immutable::set(&dirs) else {
        eprintln!("skipped: chattr +i is not available on this filesystem");
        return;
    };
    // Writing is refused at once as a permission problem, not retried as unavailable.
    let err = fails(&["snapshot", "create", "--repo", &repo], 2);
    assert!(
        err.contains("not permitted") || err.contains("ermission"),
        "{err}"
    );
    // verify reads everything, prints its verdict, and says the state was not saved.
    let o = metapitr(&["verify", "--repo", &repo]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(text.contains("no problems"), "{text}");
    assert!(text.contains("could not be saved"), "{text}");
    drop(guard);
}

#[test]
fn a_resumed_simulation_keeps_time_moving_for_its_archiver() {
    let d = tempfile::tempdir().unwrap();
    let repo = simulate(d.path());
    fork(d.path(), &repo, &["--latest"], 120);
    // Segments seal one simulated second after their first record: 120 epochs a second
    // apart make several segments (the first run's 120 made 8), not one sealed only when
    // the run closes.
    let info: serde_json::Value =
        serde_json::from_str(&ok(&["info", "--repo", &repo, "--json"])).unwrap();
    let resumed = info["timelines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["parent"].as_u64() == Some(1))
        .unwrap_or_else(|| panic!("no forked timeline: {info}"));
    assert!(
        resumed["segments"].as_u64().unwrap() >= 4,
        "the resumed run's clock stood still: {resumed}"
    );
}
