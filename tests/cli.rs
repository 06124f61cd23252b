//! The `metapitr` binary, as an operator runs it.

mod common;

use std::path::Path;

use common::bin::{fails, metapitr, ok, ok_env, run};
use common::{cli_repo, Backend};

fn metapitr_env(args: &[&str], env: &[(&str, String)]) -> std::process::Output {
    run(args, env, None)
}

#[test]
fn epoch_converts_the_guide_table_both_ways() {
    for (e, ts) in [
        ("3603859827458048", "2022-12-28 11:08:56.918"),
        ("3603862776381440", "2022-12-28 11:09:41.915"),
        ("3603898821640192", "2022-12-28 11:18:51.922"),
        ("3603900263432192", "2022-12-28 11:19:13.922"),
    ] {
        assert_eq!(ok(&["epoch", e]).trim(), ts);
        assert_eq!(ok(&["epoch", ts]).trim(), e);
        assert_eq!(
            ok(&["epoch", &format!("{}Z", ts.replace(' ', "T"))]).trim(),
            e
        );
    }
    let err = fails(&["epoch", "last tuesday"], 2);
    assert!(err.contains("last tuesday"));
}

fn simulate(backend: Backend, dir: &Path) -> String {
    let repo = cli_repo(backend, dir);
    let truth = dir.join("truth");
    let out = common::bin::simulate(
        &repo,
        dir,
        300,
        3,
        &[
            "--snapshot-every",
            "100",
            "--truth-dir",
            truth.to_str().unwrap(),
            "--truth-every",
            "25",
        ],
    );
    assert!(out.contains("simulated 300 epochs"), "{out}");
    repo
}

#[test]
fn snapshot_restore_and_export_round_trip_file() {
    snapshot_restore_and_export_round_trip(Backend::File);
}

#[test]
fn snapshot_restore_and_export_round_trip_s3() {
    snapshot_restore_and_export_round_trip(Backend::S3);
}

fn snapshot_restore_and_export_round_trip(backend: Backend) {
    let d = tempfile::tempdir().unwrap();
    let repo = simulate(backend, d.path());

    let list: serde_json::Value =
        serde_json::from_str(&ok(&["snapshot", "list", "--repo", &repo, "--json"])).unwrap();
    let snaps = list.as_array().unwrap();
    assert_eq!(snaps.len(), 3);
    for s in snaps {
        for f in [
            "id",
            "safe_epoch",
            "safe_epoch_ts",
            "max_committed_epoch",
            "max_committed_epoch_ts",
            "size",
        ] {
            assert!(s.get(f).is_some(), "missing {f} in {s}");
        }
    }
    let table = ok(&["snapshot", "list", "--repo", &repo]);
    assert!(table.contains("max_committed_epoch_ts"));

    // A truth epoch between the first and second snapshot.
    let first = snaps[0]["max_committed_epoch"].as_u64().unwrap();
    let second = snaps[1]["max_committed_epoch"].as_u64().unwrap();
    let mut truths: Vec<u64> = std::fs::read_dir(d.path().join("truth"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .trim_end_matches(".jsonl")
                .parse()
                .unwrap()
        })
        .filter(|e| *e > first && *e < second)
        .collect();
    truths.sort();
    let target = truths[truths.len() / 2];
    let truth =
        std::fs::read_to_string(d.path().join("truth").join(format!("{target}.jsonl"))).unwrap();

    // Dry run: a plan, nothing written.
    let out_file = d.path().join("restored.jsonl");
    let store = format!("jsonl:{}", out_file.display());
    let plan = ok(&[
        "restore",
        "--repo",
        &repo,
        "--target-epoch",
        &target.to_string(),
        "--target-store",
        &store,
        "--dry-run",
    ]);
    assert!(
        plan.contains("snapshot 1") && plan.contains("WAL segments"),
        "{plan}"
    );
    assert!(!out_file.exists());

    ok(&[
        "restore",
        "--repo",
        &repo,
        "--target-epoch",
        &target.to_string(),
        "--target-store",
        &store,
    ]);
    let restored = std::fs::read_to_string(&out_file).unwrap();
    let c = metapitr::jsonl::compare(&restored, &truth).unwrap();
    assert!(c.matches(), "{c:?}");

    // Again into the same file: refused, file untouched.
    let err = fails(
        &[
            "restore",
            "--repo",
            &repo,
            "--target-epoch",
            &target.to_string(),
            "--target-store",
            &store,
        ],
        2,
    );
    assert!(
        err.contains("not empty") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), restored);

    // Export with --include-secrets writes the same bytes as a restore to jsonl; without
    // it, every password hash is redacted and nothing else changes.
    let exported = ok(&[
        "export",
        "--repo",
        &repo,
        "--at-epoch",
        &target.to_string(),
        "--include-secrets",
    ]);
    assert_eq!(exported, restored);
    let redacted = ok(&["export", "--repo", &repo, "--at-epoch", &target.to_string()]);
    let hashes: Vec<String> = restored
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["auth_info"]["encrypted_value"].as_str().map(String::from))
        .collect();
    assert!(!hashes.is_empty());
    for h in &hashes {
        assert!(!redacted.contains(h.as_str()), "a password hash leaks");
    }
    assert_eq!(redacted.lines().count(), restored.lines().count());
    assert!(redacted
        .lines()
        .next()
        .unwrap()
        .contains(r#""secrets":"redacted""#));
    let imported = format!("jsonl:{}", d.path().join("imported.jsonl").display());
    let o = run(
        &["import", "--target-store", &imported],
        &[],
        Some(redacted.as_bytes()),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--include-secrets"));
    // Export to a file refuses to overwrite one unless forced.
    let exported_file = d.path().join("exported.jsonl");
    std::fs::write(&exported_file, b"keep me\n").unwrap();
    let target_s = target.to_string();
    let file_s = exported_file.to_str().unwrap();
    let err = fails(
        &[
            "export",
            "--repo",
            &repo,
            "--at-epoch",
            &target_s,
            "-o",
            file_s,
        ],
        2,
    );
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&exported_file).unwrap(), b"keep me\n");
    ok(&[
        "export",
        "--repo",
        &repo,
        "--at-epoch",
        &target_s,
        "-o",
        file_s,
        "--force",
        "--include-secrets",
    ]);
    assert_eq!(std::fs::read_to_string(&exported_file).unwrap(), restored);

    // Outside the window: the error names the range.
    let err = fails(
        &[
            "restore",
            "--repo",
            &repo,
            "--target-epoch",
            "1",
            "--target-store",
            "jsonl:-",
        ],
        2,
    );
    assert!(
        err.contains("restorable") && err.contains(&first.to_string()[..6]),
        "{err}"
    );

    // An offline snapshot from the repo alone, then delete it.
    let out = ok(&[
        "snapshot",
        "create",
        "--repo",
        &repo,
        "--at-epoch",
        &target.to_string(),
    ]);
    assert!(out.starts_with("snapshot 4 "), "{out}");
    let plan = ok(&[
        "restore",
        "--repo",
        &repo,
        "--target-epoch",
        &target.to_string(),
        "--target-store",
        "jsonl:/nonexistent/x",
        "--dry-run",
    ]);
    // The new snapshot is the base (a segment that spans it may still be read, since later
    // commits can share the snapshot's epoch).
    assert!(plan.contains("base: snapshot 4"), "{plan}");
    ok(&["snapshot", "delete", "--repo", &repo, "4"]);
    let err = fails(&["snapshot", "delete", "--repo", &repo, "4"], 4);
    assert!(err.contains("snapshot 4"), "{err}");

    // A native store restore, by time.
    let ts = ok(&["epoch", &target.to_string()]);
    let meta = d.path().join("meta");
    ok(&[
        "restore",
        "--repo",
        &repo,
        "--target-time",
        ts.trim(),
        "--target-store",
        &format!("dir:{}", meta.display()),
    ]);
    assert!(meta.join("CHECKPOINT").exists());
}

#[test]
fn archive_once_ships_a_crashed_wal_file() {
    archive_once_ships_a_crashed_wal(Backend::File);
}

#[test]
fn archive_once_ships_a_crashed_wal_s3() {
    archive_once_ships_a_crashed_wal(Backend::S3);
}

fn archive_once_ships_a_crashed_wal(backend: Backend) {
    let d = tempfile::tempdir().unwrap();
    let wal_dir = d.path().join("wal");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let w = metapitr::wal::Wal::open(
            &wal_dir,
            1,
            1,
            Default::default(),
            metapitr::clock::system(),
        )
        .unwrap();
        for i in 1..=20u64 {
            let c = metapitr::model::Change {
                kind: Some(metapitr::model::change::Kind::SetParam(
                    metapitr::model::pb::SystemParam {
                        name: format!("p{i}"),
                        value: "v".into(),
                    },
                )),
            };
            w.append((1_000_000 + i) << 16, &[c])
                .unwrap()
                .await
                .unwrap();
        }
        // Dropped without sealing, as a killed process leaves it.
    });
    assert!(metapitr::wal::list_segments(&wal_dir)
        .unwrap()
        .iter()
        .any(|s| !s.sealed));
    let repo = cli_repo(backend, d.path());
    let out = ok(&[
        "archive",
        "--once",
        "--wal-dir",
        wal_dir.to_str().unwrap(),
        "--repo",
        &repo,
    ]);
    assert!(out.contains("lsn 20"), "{out}");
    assert!(metapitr::wal::list_segments(&wal_dir).unwrap().is_empty());
    let latest = ok(&[
        "export",
        "--repo",
        &repo,
        "--at-epoch",
        &((1_000_020u64) << 16).to_string(),
    ]);
    assert_eq!(
        latest
            .lines()
            .filter(|l| l.contains("\"system_param\""))
            .count(),
        20
    );
}

#[test]
fn bad_input_gets_clear_errors() {
    let err = fails(&["snapshot", "list", "--repo", "ftp://x"], 2);
    assert!(err.contains("ftp://x"), "{err}");
    let d = tempfile::tempdir().unwrap();
    let empty = format!("file://{}", d.path().display());
    let err = fails(
        &[
            "restore",
            "--repo",
            &empty,
            "--latest",
            "--target-store",
            "jsonl:-",
        ],
        4,
    );
    assert!(err.contains("no metapitr manifest"), "{err}");
    let err = fails(
        &[
            "restore",
            "--repo",
            &empty,
            "--latest",
            "--target-store",
            "etcd:x",
        ],
        2,
    );
    assert!(err.contains("etcd:x"), "{err}");
}

#[test]
fn pins_gc_check_retention_and_integrity_from_the_command_line_file() {
    pins_gc_check_retention_and_integrity_from_the_command_line(Backend::File);
}

#[test]
fn pins_gc_check_retention_and_integrity_from_the_command_line_s3() {
    pins_gc_check_retention_and_integrity_from_the_command_line(Backend::S3);
}

fn pins_gc_check_retention_and_integrity_from_the_command_line(backend: Backend) {
    let d = tempfile::tempdir().unwrap();
    let repo = cli_repo(backend, d.path());
    let hummock = format!("file://{}", d.path().join("hummock").display());
    ok(&[
        "simulate",
        "--repo",
        &repo,
        "--wal-dir",
        d.path().join("wal").to_str().unwrap(),
        "--epochs",
        "400",
        "--epoch-interval-ms",
        "60000",
        "--snapshot-every",
        "40",
        "--hummock-storage",
        &hummock,
        "--no-sync",
    ]);
    let pins: serde_json::Value =
        serde_json::from_str(&ok(&["pins", "--repo", &repo, "--json"])).unwrap();
    for f in ["count", "from_epoch", "to_epoch", "bytes"] {
        assert!(pins.get(f).is_some(), "{pins}");
    }
    let to = pins["to_epoch"].as_u64().unwrap();
    assert!(pins["count"].as_u64().unwrap() > 100);

    // gc-check: pinned ids are never printed; unknown ids are; a later epoch answers nothing.
    let ids = d.path().join("ids");
    std::fs::write(&ids, "1\n2\n3\n999999999\n").unwrap();
    let safe = ok(&[
        "gc-check",
        "--repo",
        &repo,
        "--current-epoch",
        &to.to_string(),
        "--ids",
        ids.to_str().unwrap(),
    ]);
    assert_eq!(safe.trim(), "999999999");
    let o = metapitr(&[
        "gc-check",
        "--repo",
        &repo,
        "--current-epoch",
        &(to + (1 << 16)).to_string(),
        "--ids",
        ids.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    assert!(o.stdout.is_empty());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing is safe"));
    std::fs::write(&ids, "12x\n").unwrap();
    fails(
        &[
            "gc-check",
            "--repo",
            &repo,
            "--current-epoch",
            &to.to_string(),
            "--ids",
            ids.to_str().unwrap(),
        ],
        2,
    );

    // Retention: a dry run changes nothing; keep one snapshot; apply; shrinking is refused.
    let before = ok(&["snapshot", "list", "--repo", &repo, "--json"]);
    let out = ok(&[
        "retention",
        "apply",
        "--repo",
        &repo,
        "--window",
        "2h",
        "--dry-run",
    ]);
    assert!(out.starts_with("dry run"), "{out}");
    assert_eq!(ok(&["snapshot", "list", "--repo", &repo, "--json"]), before);
    ok(&["snapshot", "keep", "--repo", &repo, "2"]);
    let out = ok(&["retention", "apply", "--repo", &repo, "--window", "2h"]);
    assert!(out.contains("window now starts"), "{out}");
    let after: serde_json::Value =
        serde_json::from_str(&ok(&["snapshot", "list", "--repo", &repo, "--json"])).unwrap();
    let ids_left: Vec<u64> = after
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .collect();
    assert!(
        ids_left.contains(&2) && !ids_left.contains(&1) && !ids_left.contains(&3),
        "{ids_left:?}"
    );
    let err = fails(
        &["retention", "apply", "--repo", &repo, "--window", "1h"],
        2,
    );
    assert!(err.contains("--force"), "{err}");
    let err = fails(&["snapshot", "delete", "--repo", &repo, "2"], 2);
    assert!(err.contains("keep"), "{err}");

    // Restore: older than the window refused; the keep snapshot allowed; integrity checked.
    let out = ok(&[
        "restore",
        "--repo",
        &repo,
        "--snapshot-id",
        "2",
        "--target-store",
        "jsonl:-",
        "--hummock-storage",
        &hummock,
        "--validate-integrity",
    ]);
    assert!(out.contains("\"kind\":\"sst\""));
    let kept_epoch = after
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == 2)
        .unwrap()["max_committed_epoch"]
        .as_u64()
        .unwrap();
    let err = fails(
        &[
            "restore",
            "--repo",
            &repo,
            "--target-epoch",
            &(kept_epoch + (1 << 16)).to_string(),
            "--target-store",
            "jsonl:-",
        ],
        2,
    );
    assert!(
        err.contains("restorable") || err.contains("retention window"),
        "{err}"
    );
    let out = ok(&[
        "restore",
        "--repo",
        &repo,
        "--latest",
        "--target-store",
        &format!("dir:{}", d.path().join("m").display()),
        "--hummock-storage",
        &hummock,
        "--validate-integrity",
    ]);
    assert!(out.contains("integrity: all"), "{out}");
    assert!(d.path().join("hummock/checkpoint/0").exists());

    // The storage guard: the same storage given as URL plus directory passes; another
    // storage is refused unless told to overwrite the endpoint, which the restored
    // parameters then name.
    let (base, dir) = hummock.rsplit_once('/').unwrap();
    ok(&[
        "restore",
        "--repo",
        &repo,
        "--latest",
        "--target-store",
        "jsonl:-",
        "--hummock-storage-url",
        base,
        "--hummock-storage-directory",
        dir,
    ]);
    let other = format!("file://{}", d.path().join("elsewhere").display());
    let err = fails(
        &[
            "restore",
            "--repo",
            &repo,
            "--latest",
            "--target-store",
            "jsonl:-",
            "--hummock-storage-url",
            &other,
        ],
        2,
    );
    assert!(
        err.contains(&hummock)
            && err.contains(&other)
            && err.contains("--overwrite-hummock-storage-endpoint"),
        "{err}"
    );
    let out = ok(&[
        "restore",
        "--repo",
        &repo,
        "--latest",
        "--target-store",
        "jsonl:-",
        "--hummock-storage-url",
        &other,
        "--overwrite-hummock-storage-endpoint",
    ]);
    let (obase, odir) = other.rsplit_once('/').unwrap();
    assert!(
        out.contains(&format!(
            r#""name":"state_store","value":"hummock+{obase}""#
        )) && out.contains(&format!(r#""name":"data_directory","value":"{odir}""#)),
        "{out}"
    );

    // A config file supplies the policy.
    let cfg = d.path().join("metapitr.toml");
    std::fs::write(&cfg, "[retention]\nwindow = \"2h\"\n").unwrap();
    ok(&[
        "retention",
        "apply",
        "--repo",
        &repo,
        "--config",
        cfg.to_str().unwrap(),
    ]);
    std::fs::write(&cfg, "[retention]\nwindow = \"soon\"\n").unwrap();
    let err = fails(
        &[
            "retention",
            "apply",
            "--repo",
            &repo,
            "--config",
            cfg.to_str().unwrap(),
        ],
        2,
    );
    assert!(err.contains("soon"), "{err}");
}

/// The repo on a real S3 server, configured three ways as an operator would: flags with the
/// AWS environment, METAPITR_* environment variables, and a config file's [backup]
/// section. All three see the same repo; a restore from it equals the truth.
#[test]
fn s3_repo_from_flags_environment_and_config_file() {
    let server = common::s3::s3();
    let bucket = server.bucket();
    let d = tempfile::tempdir().unwrap();
    let url = format!("s3://{bucket}");
    let env = server.env();
    let out = ok_env(
        &[
            "simulate",
            "--backup-storage-url",
            &url,
            "--backup-storage-directory",
            "backup",
            "--wal-dir",
            d.path().join("wal").to_str().unwrap(),
            "--epochs",
            "120",
            "--seed",
            "4",
            "--snapshot-every",
            "50",
            "--truth-dir",
            d.path().join("truth").to_str().unwrap(),
            "--truth-every",
            "40",
            "--no-sync",
        ],
        &env,
    );
    assert!(out.contains("simulated 120 epochs"), "{out}");

    let by_flags = ok_env(
        &[
            "snapshot",
            "list",
            "--repo",
            &url,
            "--backup-storage-directory",
            "backup",
            "--json",
        ],
        &env,
    );
    let mut by_env = env.clone();
    by_env.push(("METAPITR_REPO", url.clone()));
    by_env.push(("METAPITR_BACKUP_STORAGE_DIRECTORY", "backup".into()));
    assert_eq!(ok_env(&["snapshot", "list", "--json"], &by_env), by_flags);
    let cfg = d.path().join("metapitr.toml");
    std::fs::write(
        &cfg,
        format!(
            "[backup]\nstorage_url = \"{url}\"\nstorage_directory = \"backup\"\n\n\
             [backup.s3]\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\
             access_key_id = \"{}\"\nsecret_access_key = \"{}\"\nallow_http = true\n",
            server.endpoint,
            common::s3::ACCESS_KEY,
            common::s3::SECRET_KEY
        ),
    )
    .unwrap();
    let cfg_arg = ["--config", cfg.to_str().unwrap()];
    let mut args = vec!["snapshot", "list", "--json"];
    args.extend(cfg_arg);
    assert_eq!(
        ok(&args),
        by_flags,
        "the config file alone reaches the repo"
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&by_flags)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Restore every truth epoch from S3: equal to the truth.
    for f in std::fs::read_dir(d.path().join("truth")).unwrap() {
        let f = f.unwrap().path();
        let e = f.file_stem().unwrap().to_str().unwrap().to_string();
        let mut args = vec!["restore", "--target-epoch", &e, "--target-store", "jsonl:-"];
        args.extend(cfg_arg);
        let restored = ok(&args);
        let c = metapitr::jsonl::compare(&restored, &std::fs::read_to_string(&f).unwrap()).unwrap();
        assert!(c.matches(), "epoch {e}: {c:?}");
    }

    // A different directory in the same bucket is an empty repo; wrong keys are refused.
    let o = metapitr_env(
        &[
            "snapshot",
            "list",
            "--repo",
            &url,
            "--backup-storage-directory",
            "other",
        ],
        &env,
    );
    assert!(o.status.success());
    let mut bad = env.clone();
    bad.retain(|(k, _)| *k != "AWS_SECRET_ACCESS_KEY");
    bad.push(("AWS_SECRET_ACCESS_KEY", "wrong".into()));
    let o = metapitr_env(
        &[
            "restore",
            "--repo",
            &url,
            "--backup-storage-directory",
            "backup",
            "--latest",
            "--target-store",
            "jsonl:-",
        ],
        &bad,
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("credentials"));
    // No repo at all: say how to give one.
    let o = metapitr_env(&["snapshot", "list"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--repo"));
}

/// A restored store goes on recording on a new timeline (`simulate --resume-from`);
/// `info` shows the tree; both branches restore.
#[test]
fn resume_from_a_restored_store_forks_a_timeline() {
    let d = tempfile::tempdir().unwrap();
    let repo = simulate(Backend::File, d.path());
    let truths: Vec<u64> = {
        let mut v: Vec<u64> = std::fs::read_dir(d.path().join("truth"))
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                p.file_stem().unwrap().to_str().unwrap().parse().unwrap()
            })
            .collect();
        v.sort();
        v
    };
    let fork_at = truths[truths.len() / 2];
    let store = d.path().join("restored");
    ok(&[
        "restore",
        "--repo",
        &repo,
        "--target-epoch",
        &fork_at.to_string(),
        "--target-store",
        &format!("dir:{}", store.display()),
    ]);
    let wal2 = d.path().join("wal2");
    let out = ok(&[
        "simulate",
        "--repo",
        &repo,
        "--resume-from",
        &format!("dir:{}", store.display()),
        "--wal-dir",
        wal2.to_str().unwrap(),
        "--epochs",
        "50",
        "--no-sync",
    ]);
    assert!(out.contains("simulated 50 epochs"), "{out}");
    // A non-empty --wal-dir other than the store is refused.
    let err = fails(
        &[
            "simulate",
            "--repo",
            &repo,
            "--resume-from",
            &format!("dir:{}", store.display()),
            "--wal-dir",
            wal2.to_str().unwrap(),
            "--epochs",
            "5",
        ],
        2,
    );
    assert!(err.contains("not empty"), "{err}");

    let info: serde_json::Value =
        serde_json::from_str(&ok(&["info", "--repo", &repo, "--json"])).unwrap();
    let tls = info["timelines"].as_array().unwrap();
    assert_eq!(tls.len(), 2, "{info}");
    assert_eq!(
        (tls[0]["id"].as_u64(), tls[0]["parent"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(
        (
            tls[1]["id"].as_u64(),
            tls[1]["parent"].as_u64(),
            tls[1]["fork_epoch"].as_u64()
        ),
        (Some(2), Some(1), Some(fork_at))
    );
    assert_eq!(info["newest_timeline"].as_u64(), Some(2));
    let text = ok(&["info", "--repo", &repo]);
    assert!(text.contains("forked from 1 at epoch"), "{text}");

    // The abandoned branch after the fork, by --timeline; the new one by default.
    let later = *truths.last().unwrap();
    let old = ok(&[
        "restore",
        "--repo",
        &repo,
        "--timeline",
        "1",
        "--target-epoch",
        &later.to_string(),
        "--target-store",
        "jsonl:-",
    ]);
    let truth =
        std::fs::read_to_string(d.path().join("truth").join(format!("{later}.jsonl"))).unwrap();
    assert!(metapitr::jsonl::compare(&old, &truth).unwrap().matches());
    let new = ok(&[
        "restore",
        "--repo",
        &repo,
        "--latest",
        "--target-store",
        "jsonl:-",
    ]);
    assert!(new.contains(r#""timeline":2"#), "{}", &new[..200]);
    // A later epoch of timeline 1 is not on timeline 2.
    let err = fails(
        &[
            "restore",
            "--repo",
            &repo,
            "--timeline",
            "2",
            "--target-epoch",
            &later.to_string(),
            "--target-store",
            "jsonl:-",
        ],
        2,
    );
    assert!(err.contains("restorable"), "{err}");
}

/// An encrypted repo: nothing readable at rest, restores equal the truth with the key,
/// and a missing key, a wrong key and a damaged object are each a clear error.
#[test]
fn encrypted_repo_round_trips_and_wrong_keys_are_clear() {
    let d = tempfile::tempdir().unwrap();
    let key = "6d65746170697472".repeat(4);
    let with_key = [("METAPITR_ENCRYPTION_KEY", key.clone())];
    let repo = format!("file://{}", d.path().join("repo").display());
    ok_env(
        &[
            "simulate",
            "--repo",
            &repo,
            "--wal-dir",
            d.path().join("wal").to_str().unwrap(),
            "--epochs",
            "120",
            "--seed",
            "9",
            "--snapshot-every",
            "50",
            "--truth-dir",
            d.path().join("truth").to_str().unwrap(),
            "--truth-every",
            "40",
            "--no-sync",
        ],
        &with_key,
    );
    // At rest: every object sealed, no catalog text visible.
    let mut objects = 0;
    let mut stack = vec![d.path().join("repo")];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let b = std::fs::read(&p).unwrap();
            assert_eq!(&b[..4], b"MPTE", "{} is not sealed", p.display());
            assert!(!b.windows(6).any(|w| w == b"CREATE"), "{}", p.display());
            objects += 1;
        }
    }
    assert!(objects > 5);
    for f in std::fs::read_dir(d.path().join("truth")).unwrap() {
        let f = f.unwrap().path();
        let e = f.file_stem().unwrap().to_str().unwrap().to_string();
        let restored = ok_env(
            &[
                "restore",
                "--repo",
                &repo,
                "--target-epoch",
                &e,
                "--target-store",
                "jsonl:-",
            ],
            &with_key,
        );
        let c = metapitr::jsonl::compare(&restored, &std::fs::read_to_string(&f).unwrap()).unwrap();
        assert!(c.matches(), "epoch {e}: {c:?}");
    }
    // A key file works as the variable does.
    let key_file = d.path().join("key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    ok(&[
        "snapshot",
        "list",
        "--repo",
        &repo,
        "--encryption-key-file",
        key_file.to_str().unwrap(),
    ]);
    let restore = [
        "restore",
        "--repo",
        &repo,
        "--latest",
        "--target-store",
        "jsonl:-",
    ];
    let err = fails(&restore, 2);
    assert!(
        err.contains("encrypted") && err.contains("METAPITR_ENCRYPTION_KEY"),
        "{err}"
    );
    let wrong = [("METAPITR_ENCRYPTION_KEY", "00".repeat(32))];
    let o = run(&restore, &wrong, None);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("different key"), "{err}");
    assert!(!err.contains(&key), "the key leaks: {err}");
    let bad = [("METAPITR_ENCRYPTION_KEY", "not-hex".to_string())];
    let o = run(&restore, &bad, None);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("64 hex digits"));
    // A flipped byte in an archived segment: corruption, naming the object.
    let seg = std::fs::read_dir(d.path().join("repo/wal/00000001"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let mut b = std::fs::read(&seg).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 1;
    std::fs::write(&seg, b).unwrap();
    let first_truth = std::fs::read_dir(d.path().join("truth"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        })
        .min()
        .unwrap();
    let o = run(
        &[
            "restore",
            "--repo",
            &repo,
            "--target-epoch",
            &first_truth,
            "--target-store",
            "jsonl:-",
        ],
        &with_key,
        None,
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("wal/00000001/"));
}

/// `bench recovery` builds a history, restores across it, and writes result.json (with the
/// fields an operator compares) and an HTML report with SVG plots.
#[test]
fn bench_recovery_writes_a_result_and_a_report() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("bench");
    let text = ok(&[
        "bench",
        "recovery",
        "--window",
        "20m",
        "--ssts",
        "300",
        "--catalog",
        "50",
        "--snapshot-every",
        "300",
        "--restores",
        "6",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(text.contains("RTO p50"), "{text}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("result.json")).unwrap()).unwrap();
    for f in [
        "rto_ms_p50",
        "rto_ms_p99",
        "archived_bytes_per_epoch",
        "archive_lag_ms_p99",
    ] {
        assert!(r[f].is_number(), "{f} in {r}");
    }
    assert_eq!(r["epochs"].as_u64(), Some(1200));
    let samples = r["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 6);
    assert!(samples.iter().all(|s| s["ms"].as_f64().unwrap() > 0.0));
    assert!(r["rto_ms_p99"].as_f64() >= r["rto_ms_p50"].as_f64());
    // Writing into a store comes on top of the restore itself.
    assert!(samples
        .iter()
        .all(|s| s["store_ms"].as_f64().unwrap() >= s["ms"].as_f64().unwrap()));
    // The archive is measured against the same history as plain JSON.
    let (archived, json) = (
        r["archived_bytes"].as_u64().unwrap(),
        r["history_json_bytes"].as_u64().unwrap(),
    );
    assert!(
        archived > 0 && json > archived,
        "{archived} archived, {json} as JSON"
    );
    let ratio = r["archive_to_json_ratio"].as_f64().unwrap();
    assert!(
        (ratio - archived as f64 / json as f64).abs() < 1e-9,
        "{ratio}"
    );
    assert!(
        r.get("peers").is_none(),
        "peers are only run by crates/metapitr-bench/benches/peers.sh"
    );
    // verify read everything once, then nothing; the diff saw the history grow.
    let i = &r["inspect"];
    assert!(i["verify_full_objects"].as_u64().unwrap() > 2, "{i}");
    assert_eq!(i["verify_again_objects"].as_u64(), Some(0), "{i}");
    assert!(i["diff_ssts_added"].as_u64().unwrap() > 0, "{i}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 2);
    // Two series of 6 restores with their legend marks, then 6 against the snapshot.
    assert_eq!(html.matches("<circle").count(), 6 * 2 + 2 + 6);
    // The plots are also files, and a report renders again from result.json alone.
    assert!(html.contains(&std::fs::read_to_string(out.join("restore-by-position.svg")).unwrap()));
    let again = d.path().join("again");
    ok(&[
        "bench",
        "report",
        "--result",
        out.join("result.json").to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(again.join("report.html")).unwrap(),
        html
    );
    // A second run into the same --out is refused rather than mixing histories.
    let err = fails(
        &[
            "bench",
            "recovery",
            "--window",
            "1m",
            "--out",
            out.to_str().unwrap(),
        ],
        2,
    );
    assert!(err.contains("not empty"), "{err}");
}

/// `show` prints the metadata as of an epoch: each part, id generators included (time
/// travel shows them as recorded, not raised as a restore does), equals the simulator's
/// truth at that epoch, a time resolves to the same state, and an epoch outside the
/// history names the restorable ranges.
#[test]
fn show_prints_the_truth_at_an_epoch() {
    let d = tempfile::tempdir().unwrap();
    let repo = simulate(Backend::File, d.path());
    let truths = common::truth_epochs(d.path());
    // The newest epoch and three drawn at random (seeded, so a failure replays).
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3);
    let mut targets = vec![truths[truths.len() - 1]];
    for _ in 0..3 {
        targets.push(truths[rand::Rng::random_range(&mut rng, 1..truths.len())]);
    }
    for target in targets {
        let truth = truth_lines(d.path(), target);
        for what in ["catalog", "users", "hummock", "ids", "params"] {
            let shown: Vec<serde_json::Value> = serde_json::from_str(&ok(&[
                "show",
                "--repo",
                &repo,
                "--at-epoch",
                &target.to_string(),
                what,
                "--json",
            ]))
            .unwrap();
            let holds = |l: &serde_json::Value| {
                metapitr::cli::ShowWhat::holds(
                    match what {
                        "catalog" => metapitr::cli::ShowWhat::Catalog,
                        "users" => metapitr::cli::ShowWhat::Users,
                        "hummock" => metapitr::cli::ShowWhat::Hummock,
                        "ids" => metapitr::cli::ShowWhat::Ids,
                        _ => metapitr::cli::ShowWhat::Params,
                    },
                    l["kind"].as_str().unwrap_or(""),
                )
            };
            let expected: Vec<&serde_json::Value> =
                truth.iter().skip(1).filter(|l| holds(l)).collect();
            assert_eq!(
                shown.iter().collect::<Vec<_>>(),
                expected,
                "{what} at {target}"
            );
            if what != "hummock" {
                assert!(!shown.is_empty(), "nothing in {what} at {target}");
            }
        }
    }
    // A time: the epoch's millisecond gives the same catalog; the text form names it.
    let target = truths[truths.len() / 2];
    let ms = metapitr::epoch::to_unix_ms(target);
    let at_time = metapitr::epoch::format_unix_ms(ms);
    let by_time = ok(&["show", "--repo", &repo, "--at-time", &at_time, "catalog"]);
    assert!(by_time.starts_with("as of epoch"), "{by_time}");
    assert!(by_time.lines().count() > 3, "{by_time}");
    let err = fails(&["show", "--repo", &repo, "--at-epoch", "5", "catalog"], 2);
    assert!(err.contains("restorable") || err.contains("range"), "{err}");
}

/// The truth at `epoch` as export lines (header first), password hashes redacted.
fn truth_lines(dir: &Path, epoch: u64) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("truth").join(format!("{epoch}.jsonl"))).unwrap();
    let mut lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    metapitr::jsonl::redact(&mut lines);
    lines
}

/// `diff` between random pairs of truth epochs equals the difference of the two truth
/// files, computed here from the export lines; `hummock-version` lists exactly the
/// truth's SSTs.
#[test]
fn diff_and_hummock_version_equal_the_truth_at_random_epochs() {
    use rand::{Rng, SeedableRng};
    use serde_json::Value;
    use std::collections::{BTreeMap, BTreeSet};

    let d = tempfile::tempdir().unwrap();
    let repo = simulate(Backend::File, d.path());
    let truths = common::truth_epochs(d.path());
    let catalog = |l: &Value| {
        metapitr::cli::ShowWhat::Catalog.holds(l["kind"].as_str().unwrap()) && l["kind"] != "header"
    };
    // kind:id -> line, for the lines `keep` selects.
    let by_id = |lines: &[Value], keep: &dyn Fn(&Value) -> bool| -> BTreeMap<String, Value> {
        lines
            .iter()
            .skip(1)
            .filter(|l| keep(l))
            .map(|l| (format!("{}:{}", l["kind"], l["id"]), l.clone()))
            .collect()
    };
    let named = |v: &Value| -> BTreeSet<(String, u64, String)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["kind"].as_str().unwrap().to_string(),
                    x["id"].as_u64().unwrap(),
                    x["name"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let named_lines = |ls: Vec<&Value>| -> BTreeSet<(String, u64, String)> {
        ls.into_iter()
            .map(|l| {
                (
                    l["kind"].as_str().unwrap().to_string(),
                    l["id"].as_u64().unwrap(),
                    l["name"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    // (user_id, object_id, action) -> the whole grant.
    let grants = |lines: &[Value]| -> BTreeMap<(u64, u64, String), Value> {
        let mut g = BTreeMap::new();
        for u in lines.iter().filter(|l| l["kind"] == "user") {
            for x in u["grants"].as_array().unwrap() {
                let k = (
                    u["id"].as_u64().unwrap(),
                    x["object_id"].as_u64().unwrap(),
                    x["action"].as_str().unwrap().to_string(),
                );
                g.insert(k, x.clone());
            }
        }
        g
    };
    let ssts = |lines: &[Value]| -> BTreeMap<u64, u64> {
        lines
            .iter()
            .filter(|l| l["kind"] == "sst")
            .map(|l| {
                (
                    l["sst_id"].as_u64().unwrap(),
                    l["file_size"].as_u64().unwrap(),
                )
            })
            .collect()
    };

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut changed_somewhere = [false; 4];
    for round in 0..4 {
        let i = rng.random_range(0..truths.len() - 1);
        let j = if round == 0 {
            truths.len() - 1
        } else {
            rng.random_range(i + 1..truths.len())
        };
        let (ea, eb) = (truths[i], truths[j]);
        let (a, b) = (truth_lines(d.path(), ea), truth_lines(d.path(), eb));
        let diff: Value = serde_json::from_str(&ok(&[
            "diff",
            "--repo",
            &repo,
            "--from",
            &ea.to_string(),
            "--to",
            &eb.to_string(),
            "--json",
        ]))
        .unwrap();
        let ctx = format!("diff {ea}..{eb}");
        assert_eq!(
            (diff["from_epoch"].as_u64(), diff["to_epoch"].as_u64()),
            (Some(ea), Some(eb))
        );

        let (ca, cb) = (by_id(&a, &catalog), by_id(&b, &catalog));
        let created = named_lines(
            cb.iter()
                .filter(|(k, _)| !ca.contains_key(*k))
                .map(|x| x.1)
                .collect(),
        );
        let dropped = named_lines(
            ca.iter()
                .filter(|(k, _)| !cb.contains_key(*k))
                .map(|x| x.1)
                .collect(),
        );
        let altered = named_lines(
            cb.iter()
                .filter(|(k, l)| ca.get(*k).is_some_and(|o| o != *l))
                .map(|x| x.1)
                .collect(),
        );
        assert_eq!(named(&diff["created"]), created, "{ctx}");
        assert_eq!(named(&diff["dropped"]), dropped, "{ctx}");
        assert_eq!(named(&diff["altered"]), altered, "{ctx}");
        changed_somewhere[0] |= !created.is_empty() || !dropped.is_empty();

        let is_user = |l: &Value| l["kind"] == "user";
        let (ua, ub) = (by_id(&a, &is_user), by_id(&b, &is_user));
        let u = &diff["users"];
        assert_eq!(
            named(&u["created"]),
            named_lines(
                ub.iter()
                    .filter(|(k, _)| !ua.contains_key(*k))
                    .map(|x| x.1)
                    .collect()
            ),
            "{ctx}"
        );
        assert_eq!(
            named(&u["dropped"]),
            named_lines(
                ua.iter()
                    .filter(|(k, _)| !ub.contains_key(*k))
                    .map(|x| x.1)
                    .collect()
            ),
            "{ctx}"
        );
        let (ga, gb) = (grants(&a), grants(&b));
        let grant_set = |v: &Value| -> BTreeSet<(u64, u64, String, bool)> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|g| {
                    (
                        g["user_id"].as_u64().unwrap(),
                        g["object_id"].as_u64().unwrap(),
                        g["action"].as_str().unwrap().to_string(),
                        g["with_grant_option"].as_bool().unwrap(),
                    )
                })
                .collect()
        };
        let moved = |from: &BTreeMap<(u64, u64, String), Value>,
                     to: &BTreeMap<(u64, u64, String), Value>| {
            to.iter()
                .filter(|(k, g)| from.get(*k) != Some(*g))
                .map(|(k, g)| {
                    (
                        k.0,
                        k.1,
                        k.2.clone(),
                        g["with_grant_option"].as_bool().unwrap(),
                    )
                })
                .collect::<BTreeSet<_>>()
        };
        assert_eq!(grant_set(&u["grants_added"]), moved(&ga, &gb), "{ctx}");
        assert_eq!(grant_set(&u["grants_revoked"]), moved(&gb, &ga), "{ctx}");
        changed_somewhere[1] |= !moved(&ga, &gb).is_empty();

        let gens = |ls: &[Value]| -> BTreeMap<String, u64> {
            ls.iter()
                .filter(|l| l["kind"] == "id_generator")
                .map(|l| {
                    (
                        l["name"].as_str().unwrap().to_string(),
                        l["value"].as_u64().unwrap(),
                    )
                })
                .collect()
        };
        let (ia, ib) = (gens(&a), gens(&b));
        let expected: BTreeSet<(String, u64, u64)> = ib
            .iter()
            .filter(|(n, v)| ia.get(*n) != Some(*v))
            .map(|(n, v)| (n.clone(), ia[n], *v))
            .collect();
        let got: BTreeSet<(String, u64, u64)> = diff["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["generator"].as_str().unwrap().to_string(),
                    m["from"].as_u64().unwrap(),
                    m["to"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, expected, "{ctx}");
        changed_somewhere[2] |= !expected.is_empty();

        let (sa, sb) = (ssts(&a), ssts(&b));
        let added: Vec<u64> = sb
            .iter()
            .filter(|(k, _)| !sa.contains_key(*k))
            .map(|x| *x.1)
            .collect();
        let removed: Vec<u64> = sa
            .iter()
            .filter(|(k, _)| !sb.contains_key(*k))
            .map(|x| *x.1)
            .collect();
        let s = &diff["ssts"];
        assert_eq!(s["added"].as_u64(), Some(added.len() as u64), "{ctx}");
        assert_eq!(s["added_bytes"].as_u64(), Some(added.iter().sum()), "{ctx}");
        assert_eq!(s["removed"].as_u64(), Some(removed.len() as u64), "{ctx}");
        assert_eq!(
            s["removed_bytes"].as_u64(),
            Some(removed.iter().sum()),
            "{ctx}"
        );
        assert_eq!(s["to_count"].as_u64(), Some(sb.len() as u64), "{ctx}");
        changed_somewhere[3] |= !added.is_empty() && !removed.is_empty();

        // The text form says the same: one line per created object.
        let text = ok(&[
            "diff",
            "--repo",
            &repo,
            "--from",
            &ea.to_string(),
            "--to",
            &eb.to_string(),
        ]);
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("+ created ") && !l.contains(" user "))
                .count(),
            created.len(),
            "{text}"
        );

        // hummock-version at the later end: exactly the truth's SSTs and objects.
        let hv: Value = serde_json::from_str(&ok(&[
            "hummock-version",
            "--repo",
            &repo,
            "--at-epoch",
            &eb.to_string(),
            "--json",
        ]))
        .unwrap();
        let listed: BTreeMap<u64, u64> = hv["ssts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["sst_id"].as_u64().unwrap(),
                    x["file_size"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(listed, sb, "hummock-version at {eb}");
        let objects: BTreeSet<u64> = ok(&[
            "hummock-version",
            "--repo",
            &repo,
            "--at-epoch",
            &eb.to_string(),
            "--object-ids",
        ])
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
        let truth_objects: BTreeSet<u64> = b
            .iter()
            .filter(|l| l["kind"] == "sst")
            .map(|l| l["object_id"].as_u64().unwrap())
            .collect();
        assert_eq!(
            objects, truth_objects,
            "hummock-version --object-ids at {eb}"
        );
    }
    // The history is busy enough that every kind of change was compared at least once.
    assert_eq!(changed_somewhere, [true; 4], "catalog, grants, ids, ssts");

    // Bad input: the ends reversed, and an epoch before the history.
    let (first, last) = (truths[0].to_string(), truths[truths.len() - 1].to_string());
    let err = fails(
        &["diff", "--repo", &repo, "--from", &last, "--to", &first],
        2,
    );
    assert!(err.contains("give the earlier one first"), "{err}");
    let err = fails(&["diff", "--repo", &repo, "--from", "5", "--to", &last], 2);
    assert!(err.contains("restorable"), "{err}");
}

/// `info` reports the window with timestamps, snapshots, the WAL, pin sets and the last
/// verify; `verify` from the command line names a missing segment and exits 4.
#[test]
fn info_and_verify_from_the_command_line() {
    let d = tempfile::tempdir().unwrap();
    let repo = simulate(Backend::File, d.path());
    let info = |repo: &str| -> serde_json::Value {
        serde_json::from_str(&ok(&["info", "--repo", repo, "--json"])).unwrap()
    };
    let i = info(&repo);
    assert!(i["last_verify"].is_null(), "{i}");
    assert!(ok(&["info", "--repo", &repo]).contains("last verify: never"));

    let snaps: serde_json::Value =
        serde_json::from_str(&ok(&["snapshot", "list", "--repo", &repo, "--json"])).unwrap();
    let snaps = snaps.as_array().unwrap();
    assert_eq!(i["snapshots"]["count"].as_u64(), Some(snaps.len() as u64));
    let bytes: u64 = snaps.iter().map(|s| s["size"].as_u64().unwrap()).sum();
    assert_eq!(i["snapshots"]["stored_bytes"].as_u64(), Some(bytes));
    let newest = snaps
        .iter()
        .max_by_key(|s| s["max_committed_epoch"].as_u64())
        .unwrap();
    assert_eq!(i["snapshots"]["newest"]["id"], newest["id"]);
    let tls = i["timelines"].as_array().unwrap();
    let segs: u64 = tls.iter().map(|t| t["segments"].as_u64().unwrap()).sum();
    assert_eq!(i["wal"]["segments"].as_u64(), Some(segs));
    assert!(segs > 0);
    let w = &i["restorable"][0];
    assert_eq!(
        w["from_ts"].as_str().unwrap(),
        metapitr::epoch::format(w["from"].as_u64().unwrap())
    );
    assert_eq!(
        i["restorable"].as_array().unwrap().last().unwrap()["to"],
        tls[0]["last_archived_epoch"]
    );
    assert!(i["pin_sets"]["pinned_objects"].as_u64().unwrap() > 0);
    assert!(i["archive_lag_ms"].as_u64().is_some());

    let text = ok(&["verify", "--repo", &repo]);
    assert!(text.contains("no problems"), "{text}");
    let v = &info(&repo)["last_verify"];
    assert_eq!(v["problems"].as_u64(), Some(0), "{v}");
    assert_eq!(v["manifest_version"], i["manifest_version"]);
    assert!(v["objects_verified"].as_u64().unwrap() > segs);
    let again: serde_json::Value =
        serde_json::from_str(&ok(&["verify", "--repo", &repo, "--json"])).unwrap();
    assert_eq!(again["objects_read"].as_u64(), Some(0), "{again}");

    // A segment deleted behind metapitr's back: named, exit 4, and info remembers it.
    let wal = d.path().join("repo").join("wal").join("00000001");
    let mut files: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let victim = &files[files.len() / 2];
    std::fs::remove_file(victim).unwrap();
    let name = victim.file_name().unwrap().to_str().unwrap().to_string();
    let out = run(&["verify", "--repo", &repo], &[], None);
    assert_eq!(out.status.code(), Some(4));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("missing: wal/00000001/{name}")),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 problem(s)"));
    assert_eq!(info(&repo)["last_verify"]["problems"].as_u64(), Some(1));
}

/// Progress bars are drawn only on a terminal, and never with --quiet: a piped run's
/// stderr holds no terminal codes; under a pseudo-terminal (`script`, from util-linux)
/// the restore bar shows unless -q is given.
#[test]
fn progress_bars_only_on_a_terminal_and_never_with_quiet() {
    let d = tempfile::tempdir().unwrap();
    let repo = simulate(Backend::File, d.path());
    let target = |n: &str| format!("jsonl:{}", d.path().join(n).display());
    let piped = run(
        &[
            "restore",
            "--repo",
            &repo,
            "--latest",
            "--target-store",
            &target("a.jsonl"),
        ],
        &[],
        None,
    );
    assert!(piped.status.success());
    let err = String::from_utf8_lossy(&piped.stderr);
    assert!(!err.contains('\u{1b}') && !err.contains(" eta "), "{err}");

    let has_script = std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_script {
        eprintln!("`script` is not installed: the terminal half of this test is skipped");
        return;
    }
    let bin = env!("CARGO_BIN_EXE_metapitr");
    let on_tty = |quiet: bool, n: &str| -> String {
        let cmd = format!(
            "{bin} {}restore --repo {repo} --latest --target-store {}",
            if quiet { "-q " } else { "" },
            target(n)
        );
        let o = std::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let shown = on_tty(false, "b.jsonl");
    assert!(shown.contains("restore ["), "{shown}");
    assert!(shown.contains("restored epoch"), "{shown}");
    let quiet = on_tty(true, "c.jsonl");
    assert!(!quiet.contains("restore ["), "{quiet}");
    assert!(quiet.contains("restored epoch"), "{quiet}");
}

/// `config show`: every setting with its effective value and source, secrets masked;
/// a flag beats METAPITR_* beats the file beats AWS_* beats the default; a misspelt key
/// in the file is refused by every command that reads settings.
#[test]
fn config_show_states_every_setting_its_source_and_masks_secrets() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("m.toml");
    std::fs::write(
        &cfg,
        "[backup]\nstorage_url = \"file:///from-file\"\nstorage_directory = \"dir-file\"\n\
         [backup.s3]\nregion = \"eu-west-1\"\nsecret_access_key = \"file-secret\"\n\
         [archive]\npoll_ms = 250\n[etcd]\nusername = \"root\"\npassword = \"file-pw\"\n",
    )
    .unwrap();
    let env = [
        ("METAPITR_BACKUP_STORAGE_DIRECTORY", "dir-env".to_string()),
        ("AWS_REGION", "ap-south-1".to_string()),
        ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE".to_string()),
        ("METAPITR_ETCD_PASSWORD", "env-pw".to_string()),
    ];
    let out = metapitr_env(
        &[
            "config",
            "show",
            "--config",
            cfg.to_str().unwrap(),
            "--repo",
            "file:///from-flag",
            "--json",
        ],
        &env,
    );
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["file"].as_str(), cfg.to_str());
    let get = |k: &str| {
        v["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == k)
            .unwrap_or_else(|| panic!("{k} missing"))
            .clone()
    };
    let expect = [
        (
            "backup.storage_url",
            "file:///from-flag",
            "flag --repo (--backup-storage-url)",
        ),
        (
            "backup.storage_directory",
            "dir-env",
            "environment METAPITR_BACKUP_STORAGE_DIRECTORY",
        ),
        ("backup.s3.region", "eu-west-1", "file"),
        (
            "backup.s3.access_key_id",
            "AKIAEXAMPLE",
            "environment AWS_ACCESS_KEY_ID",
        ),
        ("archive.poll_ms", "250", "file"),
        ("backup.s3.allow_http", "false", "default"),
        ("etcd.username", "root", "file"),
    ];
    for (k, value, source) in expect {
        let s = get(k);
        assert_eq!(s["value"].as_str(), Some(value), "{s}");
        assert!(s["source"].as_str().unwrap().starts_with(source), "{s}");
    }
    for k in ["backup.s3.secret_access_key", "etcd.password"] {
        assert_eq!(get(k)["value"].as_str(), Some("********"), "{k}");
    }
    assert!(get("etcd.password")["source"]
        .as_str()
        .unwrap()
        .contains("METAPITR_ETCD_PASSWORD"));
    assert!(get("retention.window")["value"].is_null());
    let all =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    for secret in ["file-secret", "file-pw", "env-pw"] {
        assert!(!all.contains(secret), "{secret} printed");
    }
    // The text form says the same.
    let text = ok(&["config", "show", "--config", cfg.to_str().unwrap()]);
    assert!(
        text.contains("archive.poll_ms") && text.contains("[file "),
        "{text}"
    );
    assert!(!text.contains("file-secret"), "{text}");

    // A misspelt key is refused, naming it, before anything happens.
    std::fs::write(&cfg, "[backup]\nstorage_ur = \"file:///x\"\n").unwrap();
    let err = fails(&["snapshot", "list", "--config", cfg.to_str().unwrap()], 2);
    assert!(err.contains("unknown setting backup.storage_ur"), "{err}");
    // So is a value of the wrong type (a number for the repo URL), naming it and the file.
    std::fs::write(&cfg, "[backup]\nstorage_url = 5\n").unwrap();
    let err = fails(&["snapshot", "list", "--config", cfg.to_str().unwrap()], 2);
    assert!(
        err.contains("setting backup.storage_url = '5' (from file "),
        "{err}"
    );
}

/// Regressions found by walking through the runbook:
/// - a snapshot created at a past epoch holds the recorded id generators, so later epochs
///   restore from it and equal the truth (it used to hold raised ones, and replaying the
///   records after it failed);
/// - `archive --once` refuses a directory a live writer holds (it used to take the
///   timeline over, fencing that writer's archiver), and says when there is nothing to
///   ship;
/// - a missing encryption key file is invalid input (exit 2), not a storage outage;
/// - `show` and `hummock-version` default to the newest epoch;
/// - `diff` takes times as of then, like `--target-time`;
/// - a reader that goes away ends a command quietly (exit 0).
#[test]
fn runbook_regressions() {
    let d = tempfile::tempdir().unwrap();
    let repo = simulate(Backend::File, d.path());
    let truths = common::truth_epochs(d.path());

    // A snapshot at a past epoch, then an epoch after it restores from it, equal to the
    // truth.
    let (base, later) = (truths[1], truths[2]);
    let made = ok(&[
        "snapshot",
        "create",
        "--repo",
        &repo,
        "--at-epoch",
        &base.to_string(),
    ]);
    assert!(made.contains(&format!("at epoch {base}")), "{made}");
    let out_file = d.path().join("later.jsonl");
    let restored = ok(&[
        "restore",
        "--repo",
        &repo,
        "--target-epoch",
        &later.to_string(),
        "--target-store",
        &format!("jsonl:{}", out_file.display()),
    ]);
    assert!(restored.contains(&format!("(epoch {base}")), "{restored}");
    let got = std::fs::read_to_string(&out_file).unwrap();
    let truth =
        std::fs::read_to_string(d.path().join("truth").join(format!("{later}.jsonl"))).unwrap();
    assert!(metapitr::jsonl::compare(&got, &truth).unwrap().matches());
    assert!(ok(&["verify", "--repo", &repo]).contains("no problems"));

    // A live writer holds the WAL directory: archive --once refuses, exit 5.
    let wal = d.path().join("wal");
    let before = ok(&["info", "--repo", &repo, "--json"]);
    {
        let _live = metapitr::wal::lock_dir(&wal).unwrap();
        let err = fails(
            &[
                "archive",
                "--repo",
                &repo,
                "--wal-dir",
                wal.to_str().unwrap(),
                "--once",
            ],
            5,
        );
        assert!(err.contains("locked by another writer"), "{err}");
        let after: serde_json::Value =
            serde_json::from_str(&ok(&["info", "--repo", &repo, "--json"])).unwrap();
        let before: serde_json::Value = serde_json::from_str(&before).unwrap();
        assert_eq!(
            after["timelines"][0]["writer_epoch"], before["timelines"][0]["writer_epoch"],
            "the timeline was taken over"
        );
    }
    let once = ok(&[
        "archive",
        "--repo",
        &repo,
        "--wal-dir",
        wal.to_str().unwrap(),
        "--once",
    ]);
    let again = ok(&[
        "archive",
        "--repo",
        &repo,
        "--wal-dir",
        wal.to_str().unwrap(),
        "--once",
    ]);
    assert!(
        !once.contains("lsn 0 epoch 0") && again.contains("nothing to archive"),
        "{once}\n{again}"
    );

    // A missing key file: exit 2, naming it and where it was set.
    let err = fails(
        &[
            "info",
            "--repo",
            &repo,
            "--encryption-key-file",
            "/nonexistent/key",
        ],
        2,
    );
    assert!(
        err.contains("/nonexistent/key") && err.contains("--encryption-key-file"),
        "{err}"
    );

    // show and hummock-version default to the newest epoch.
    let newest = ok(&["show", "--repo", &repo, "ids", "--json"]);
    let at_last = ok(&[
        "show",
        "--repo",
        &repo,
        "ids",
        "--json",
        "--at-epoch",
        &truths[truths.len() - 1].to_string(),
    ]);
    assert_eq!(newest, at_last);
    let hv: serde_json::Value =
        serde_json::from_str(&ok(&["hummock-version", "--repo", &repo, "--json"])).unwrap();
    assert_eq!(hv["epoch"].as_u64(), Some(truths[truths.len() - 1]));

    // diff with times = diff with the epochs those times hold.
    let t = |e: u64| metapitr::epoch::format_unix_ms(metapitr::epoch::to_unix_ms(e));
    let (a, b) = (truths[1], truths[truths.len() - 2]);
    let by_epoch = ok(&[
        "diff",
        "--repo",
        &repo,
        "--from",
        &a.to_string(),
        "--to",
        &b.to_string(),
        "--json",
    ]);
    let by_time = ok(&[
        "diff",
        "--repo",
        &repo,
        "--from",
        &t(a),
        "--to",
        &t(b),
        "--json",
    ]);
    // Everything but the ends, which a time names as its millisecond's last epoch.
    let strip = |t: &str| {
        let mut v: serde_json::Value = serde_json::from_str(t).unwrap();
        let ends = (v["from_epoch"].take(), v["to_epoch"].take());
        (
            v,
            ends.0.as_u64().unwrap() >> 16,
            ends.1.as_u64().unwrap() >> 16,
        )
    };
    let (e, t) = (strip(&by_epoch), strip(&by_time));
    assert_eq!(e, t);
    assert_eq!((t.1, t.2), (a >> 16, b >> 16));

    // The reader goes away before anything is written: exit 0, nothing on stderr.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_metapitr"))
        .args(["show", "--repo", &repo])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{o:?}");
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
