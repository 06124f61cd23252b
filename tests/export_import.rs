//! Export and import as an operator runs them: special files and symlinks as outputs,
//! closed pipes, exports cut short or made inconsistent, offline exports from a WAL
//! directory at an epoch, forced restores into directories, the README's import example.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use common::bin::{fails, ok, run};

/// A simulated history in a file repo under `dir` (WAL in `dir/wal`, truth files every
/// 100 epochs in `dir/truth`), its export some 300 KiB; returns the repo URL.
fn simulated(dir: &Path) -> String {
    let repo = format!("file://{}", dir.join("repo").display());
    let truth = dir.join("truth");
    let truth = truth.to_str().unwrap();
    let extra = [
        "--snapshot-every",
        "300",
        "--truth-dir",
        truth,
        "--truth-every",
        "100",
    ];
    common::bin::simulate(&repo, dir, 1000, 5, &extra);
    repo
}

/// `export --repo REPO --include-secrets -o OUT`, which must succeed.
fn export_to(repo: &str, out: &Path) -> String {
    ok(&[
        "export",
        "--repo",
        repo,
        "--include-secrets",
        "-o",
        out.to_str().unwrap(),
    ])
}

/// A character device like /dev/null: a private one under `dir` where this user may make
/// one (root), so that a build that replaces devices cannot harm the system's; else
/// /dev/null itself, which such a user cannot replace anyway.
#[cfg(unix)]
fn null_device(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("null");
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    let dev = libc::makedev(1, 3);
    if unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, dev) } == 0 {
        p
    } else {
        "/dev/null".into()
    }
}

#[cfg(unix)]
fn file_type(p: &Path) -> std::fs::FileType {
    std::fs::symlink_metadata(p).unwrap().file_type()
}

/// `-o` names a device, a FIFO, a symlink, a directory or `-`: devices and FIFOs are
/// written through, a symlink's target is written and the link stays, a directory is
/// refused, `-` is stdout. None of them needs --force.
#[cfg(unix)]
#[test]
fn export_writes_through_special_files_and_symlinks() {
    use std::os::unix::fs::FileTypeExt;
    let d = tempfile::tempdir().unwrap();
    let repo = simulated(d.path());
    let whole = ok(&["export", "--repo", &repo, "--include-secrets"]);
    assert!(whole.lines().count() > 10);
    let export_to = |out: &Path| export_to(&repo, out);

    // A null device: written to, still the character device afterwards; restore into
    // jsonl: alike.
    let null = null_device(d.path());
    export_to(&null);
    assert!(file_type(&null).is_char_device(), "{null:?} was replaced");
    ok(&[
        "restore",
        "--repo",
        &repo,
        "--latest",
        "--target-store",
        &format!("jsonl:{}", null.display()),
    ]);
    assert!(file_type(&null).is_char_device(), "{null:?} was replaced");

    // A FIFO: its reader gets the whole export; it is still a FIFO.
    let fifo = d.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            std::fs::File::open(&fifo)
                .unwrap()
                .read_to_string(&mut s)
                .unwrap();
            s
        })
    };
    export_to(&fifo);
    assert_eq!(reader.join().unwrap(), whole);
    assert!(file_type(&fifo).is_fifo(), "the FIFO was replaced");

    // A symlink (relative, through a second link): the target holds the export, both
    // links stay links; again with --force over the now non-empty target.
    let real = d.path().join("real.jsonl");
    std::os::unix::fs::symlink("real.jsonl", d.path().join("link1")).unwrap();
    let link = d.path().join("link2");
    std::os::unix::fs::symlink(d.path().join("link1"), &link).unwrap();
    export_to(&link);
    assert_eq!(std::fs::read_to_string(&real).unwrap(), whole);
    assert!(file_type(&link).is_symlink() && file_type(&d.path().join("link1")).is_symlink());
    let err = fails(
        &["export", "--repo", &repo, "-o", link.to_str().unwrap()],
        2,
    );
    assert!(err.contains("--force"), "{err}");
    ok(&[
        "export",
        "--repo",
        &repo,
        "--include-secrets",
        "--force",
        "-o",
        link.to_str().unwrap(),
    ]);
    assert!(file_type(&link).is_symlink());
    assert_eq!(std::fs::read_to_string(&real).unwrap(), whole);
    // Nothing but the export and the links is left in the directory (no temporary files).
    let mut names = names_in(d.path());
    names.retain(|n| !["repo", "wal", "truth", "fifo", "null"].contains(&n.as_str()));
    assert_eq!(names, ["link1", "link2", "real.jsonl"]);

    // A dangling symlink: its target is created.
    let dangling = d.path().join("dangling");
    std::os::unix::fs::symlink(d.path().join("new.jsonl"), &dangling).unwrap();
    export_to(&dangling);
    assert!(file_type(&dangling).is_symlink());
    assert_eq!(
        std::fs::read_to_string(d.path().join("new.jsonl")).unwrap(),
        whole
    );

    // A directory: a clear refusal, exit 2, with or without --force.
    for force in [false, true] {
        let mut args = vec!["export", "--repo", &repo, "-o", d.path().to_str().unwrap()];
        if force {
            args.push("--force");
        }
        let err = fails(&args, 2);
        assert!(err.contains("is a directory"), "{err}");
    }

    // - is stdout.
    assert_eq!(
        ok(&["export", "--repo", &repo, "--include-secrets", "-o", "-"]),
        whole
    );
    assert!(!d.path().join("-").exists());
}

/// Runs the binary, reads the first bytes of its stdout and closes it; returns the exit
/// code and stderr.
fn run_reading_a_little(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_metapitr"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut head = [0u8; 16];
    stdout.read_exact(&mut head).unwrap();
    drop(stdout);
    let o = child.wait_with_output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A reader that goes away early ends export and restore to stdout quietly with exit 0,
/// as it ends `show`; a restore into a store whose messages nobody reads still completes.
#[test]
fn a_closed_pipe_ends_exports_and_restores_quietly() {
    let d = tempfile::tempdir().unwrap();
    let repo = simulated(d.path());
    let whole = ok(&["export", "--repo", &repo, "--include-secrets"]);
    // Far more than a pipe holds, so the writer sees the reader go.
    assert!(whole.len() > 4 * 65536, "{} bytes", whole.len());
    for args in [
        vec!["export", "--repo", &repo, "--include-secrets"],
        vec!["export", "--repo", &repo, "-o", "-"],
        vec![
            "restore",
            "--repo",
            &repo,
            "--latest",
            "--target-store",
            "jsonl:-",
            "-q",
        ],
    ] {
        let (code, err) = run_reading_a_little(&args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        // (A restore to stdout tells its plan on stderr.)
        assert!(!err.contains("error"), "{args:?}: {err}");
    }
    let (code, err) = run_reading_a_little(&["show", "--repo", &repo]);
    assert_eq!(code, Some(0), "{err}");

    // Into a dir: store, with stdout closed before the first message.
    let meta = d.path().join("meta");
    let mut child = Command::new(env!("CARGO_BIN_EXE_metapitr"))
        .args(["restore", "--repo", &repo, "--latest", "--target-store"])
        .arg(format!("dir:{}", meta.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{o:?}");
    let from_dir = ok(&[
        "export",
        "--from-store",
        &format!("dir:{}", meta.display()),
        "--include-secrets",
    ]);
    assert_eq!(from_dir, whole);
}

/// `export --wal-dir --at-epoch E` gives exactly the state at E, ids included, for every E
/// from the directory's checkpoint to its newest record, and refuses the rest: an epoch
/// after the newest record, one whose records were archived and deleted locally, and a
/// directory holding no WAL.
#[test]
fn export_from_a_wal_dir_at_an_epoch_is_exact_or_refused() {
    use metapitr::sim::{self, Simulator};
    let d = tempfile::tempdir().unwrap();
    let wal = d.path().join("wal");
    let wal_s = wal.to_str().unwrap();
    // The simulated service keeps its whole WAL (no archiver deletes it): 100 epochs, a
    // checkpoint, then 200 more epochs after it.
    let mut opts = common::run_opts(7, 100, None, 25, d.path());
    opts.recorder.archive = false;
    opts.recorder.snapshot_every_ms = None;
    // Small segments, so that some can go missing.
    opts.recorder.wal.segment_max_bytes = 4096;
    let mut sim = Simulator::new(opts.sim.clone());
    let repo = common::mem_repo(&sim);
    let rt = common::rt();
    let first = rt
        .block_on(sim::run_with_repo(
            repo.clone(),
            &wal,
            opts.clone(),
            &mut sim,
        ))
        .unwrap();
    let checkpoint = std::fs::read(wal.join("CHECKPOINT")).unwrap();
    opts.epochs = 200;
    let second = rt
        .block_on(sim::run_with_repo(repo, &wal, opts, &mut sim))
        .unwrap();
    std::fs::write(wal.join("CHECKPOINT"), &checkpoint).unwrap();
    let truth = |e: u64| {
        std::fs::read_to_string(d.path().join("truth").join(format!("{e}.jsonl"))).unwrap()
    };
    let export_at = |e: u64| {
        ok(&[
            "export",
            "--wal-dir",
            wal_s,
            "--at-epoch",
            &e.to_string(),
            "--include-secrets",
        ])
    };
    assert!(second.truth_files.len() >= 8);
    for (e, _) in &second.truth_files {
        assert_eq!(export_at(*e), truth(*e), "epoch {e}");
    }
    // The checkpoint's own epoch.
    assert_eq!(export_at(first.last_epoch), truth(first.last_epoch));

    // Past the newest record, or before the checkpoint: refused, naming the range.
    let newest = second.last_epoch;
    for e in [newest + 1, newest + (3_600_000 << 16), first.last_epoch - 1] {
        let err = fails(
            &["export", "--wal-dir", wal_s, "--at-epoch", &e.to_string()],
            2,
        );
        assert!(
            err.contains(&format!("{e} (")) && err.contains(&newest.to_string()),
            "{err}"
        );
    }

    // Without a checkpoint the WAL from its first record gives every epoch.
    std::fs::rename(wal.join("CHECKPOINT"), d.path().join("CHECKPOINT")).unwrap();
    for (e, _) in &first.truth_files {
        assert_eq!(export_at(*e), truth(*e), "epoch {e}");
    }
    std::fs::rename(d.path().join("CHECKPOINT"), wal.join("CHECKPOINT")).unwrap();

    // The first records after the checkpoint were archived and deleted locally (with
    // every segment before them): no epoch after the checkpoint can be told, with or
    // without --at-epoch.
    let cp_lsn = metapitr::snapshot::read_checkpoint(&wal)
        .unwrap()
        .unwrap()
        .lsn;
    let segments = metapitr::wal::list_segments(&wal).unwrap();
    let keep = segments
        .iter()
        .position(|s| s.first_lsn > cp_lsn + 1)
        .unwrap();
    for s in &segments[..keep] {
        std::fs::remove_file(&s.path).unwrap();
    }
    let kept_from = metapitr::wal::read_local_records(&wal, 0).unwrap()[0].epoch;
    assert!(kept_from > first.last_epoch);
    for args in [
        vec![
            "export",
            "--wal-dir",
            wal_s,
            "--at-epoch",
            &(kept_from - 1).to_string(),
        ],
        vec!["export", "--wal-dir", wal_s],
    ] {
        let err = fails(&args, 4);
        assert!(
            err.contains(&format!("records {}..", cp_lsn + 1)) && err.contains("--repo"),
            "{err}"
        );
    }

    // A directory with nothing but a LOCK: not a WAL, exit 4.
    let empty = d.path().join("empty");
    metapitr::wal::lock_dir(&empty).unwrap();
    let err = fails(&["export", "--wal-dir", empty.to_str().unwrap()], 4);
    assert!(err.contains("holds no metapitr WAL"), "{err}");
}

/// `lines` (each without its newline) followed by the end line that covers them.
fn with_end_line(lines: &[String]) -> String {
    use sha2::Digest;
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let sha = hex::encode(sha2::Sha256::digest(body.as_bytes()));
    format!(
        "{body}{{\"kind\":\"end\",\"lines\":{},\"sha256\":\"{sha}\"}}\n",
        lines.len()
    )
}

/// Imports `text` from stdin into a fresh jsonl: target under `dir`; returns the exit
/// code and stderr.
fn import_text(dir: &Path, text: &str, extra: &[&str]) -> (Option<i32>, String) {
    let target = dir.join(format!("imported-{}.jsonl", rand::random::<u64>()));
    let store = format!("jsonl:{}", target.display());
    let mut args = vec!["import", "--target-store", &store];
    args.extend_from_slice(extra);
    let o = run(&args, &[], Some(text.as_bytes()));
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// An export ends with a line covering every line before it; import refuses one cut
/// short, altered or with more after its end (exit 3), and one whose lines do not make a
/// consistent state (exit 2), naming the line. A version 1 export (no end line) needs
/// --allow-untrailed.
#[test]
fn imports_refuse_exports_cut_short_altered_or_inconsistent() {
    use sha2::Digest;
    let d = tempfile::tempdir().unwrap();
    let repo = simulated(d.path());
    let good = ok(&["export", "--repo", &repo, "--include-secrets"]);
    let lines: Vec<String> = good.lines().map(String::from).collect();
    assert!(lines.len() > 1000, "{} lines", lines.len());

    // The end line: how many lines come before it and the SHA-256 of their bytes.
    let end: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    let body_len = good.len() - lines.last().unwrap().len() - 1;
    assert_eq!(end["kind"], "end");
    assert_eq!(end["lines"].as_u64(), Some(lines.len() as u64 - 1));
    assert_eq!(
        end["sha256"].as_str().unwrap(),
        hex::encode(sha2::Sha256::digest(&good.as_bytes()[..body_len]))
    );
    assert_eq!(with_end_line(&lines[..lines.len() - 1]), good);
    assert!(lines[0].contains(r#""format_version":2"#), "{}", lines[0]);
    assert_eq!(import_text(d.path(), &good, &[]).0, Some(0));

    // Cut short: exit 3, naming the last line there is.
    for keep in [1000, lines.len() - 1] {
        let cut: String = lines[..keep].iter().map(|l| format!("{l}\n")).collect();
        let (code, err) = import_text(d.path(), &cut, &[]);
        assert_eq!(code, Some(3), "{keep} lines: {err}");
        assert!(
            err.contains(&format!("line {keep}:")) && err.contains("cut short"),
            "{err}"
        );
    }
    // A line lost, a byte changed, something after the end line: exit 3.
    let n = lines.len();
    let mut lost = lines.clone();
    lost.remove(n / 2);
    let altered = good.replacen(r#""file_size":"#, r#""file_size":1"#, 1);
    let cases = [
        (lost.join("\n") + "\n", format!("line {}:", n - 1), "lost"),
        (altered, format!("line {n}:"), "altered"),
        (
            good.clone() + &lines[3] + "\n",
            format!("line {}:", n + 1),
            "follows the end line",
        ),
    ];
    for (text, at, says) in cases {
        let (code, err) = import_text(d.path(), &text, &[]);
        assert_eq!(code, Some(3), "{says}: {err}");
        assert!(err.contains(&at) && err.contains(says), "{err}");
    }

    // Whole, but not one consistent state: exit 2, naming the line. Line numbers are
    // 1-based: a problem of the export as a whole names no line.
    let body = &lines[..n - 1];
    let find = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        body.iter()
            .position(|l| pred(&serde_json::from_str(l).unwrap()))
            .unwrap()
    };
    let user = find(&|v| v["kind"] == "user");
    let mut dup_user = body.to_vec();
    let mut twin: serde_json::Value = serde_json::from_str(&body[user]).unwrap();
    twin["name"] = "someone_else".into();
    dup_user.push(twin.to_string());
    let catalog_gen = find(&|v| v["kind"] == "id_generator" && v["name"] == "catalog");
    let mut low_gen = body.to_vec();
    low_gen[catalog_gen] = r#"{"kind":"id_generator","name":"catalog","value":1}"#.into();
    let sst_gen = find(&|v| v["kind"] == "id_generator" && v["name"] == "sstable_object");
    let mut low_sst_gen = body.to_vec();
    low_sst_gen[sst_gen] = r#"{"kind":"id_generator","name":"sstable_object","value":2}"#.into();
    let object = find(&|v| v["kind"] == "table");
    let mut orphan = body.to_vec();
    let mut o: serde_json::Value = serde_json::from_str(&body[object]).unwrap();
    o["owner"] = 999_999.into();
    orphan[object] = o.to_string();
    let mut dup_catalog = body.to_vec();
    dup_catalog.push(body[object].clone());
    let cluster = find(&|v| v["kind"] == "cluster");
    let mut no_cluster = body.to_vec();
    no_cluster.remove(cluster);
    let cases = [
        (
            dup_user,
            format!(
                "line {}: user {} appears twice (lines {} and {})",
                n,
                twin["id"],
                user + 1,
                n
            ),
        ),
        (
            low_gen,
            format!(
                "line {}: id generator catalog would next give 1",
                catalog_gen + 1
            ),
        ),
        (
            low_sst_gen,
            format!(
                "line {}: id generator sstable_object would next give 2",
                sst_gen + 1
            ),
        ),
        (
            orphan,
            format!("line {}: owner 999999 of catalog object", object + 1),
        ),
        (
            dup_catalog,
            format!("line {n}: catalog object {} appears twice", o["id"]),
        ),
        (no_cluster, "the export has no cluster line".to_string()),
    ];
    for (lines, says) in cases {
        let (code, err) = import_text(d.path(), &with_end_line(&lines), &[]);
        assert_eq!(code, Some(2), "{says}: {err}");
        assert!(err.contains(&says), "{says}: {err}");
        assert!(!err.contains("line 0"), "{err}");
    }

    // Version 1, which had no end line: refused unless --allow-untrailed.
    let mut v1 = body.to_vec();
    v1[0] = v1[0].replace(r#""format_version":2"#, r#""format_version":1"#);
    let v1: String = v1.iter().map(|l| format!("{l}\n")).collect();
    let (code, err) = import_text(d.path(), &v1, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--allow-untrailed"), "{err}");
    let (code, err) = import_text(d.path(), &v1, &["--allow-untrailed"]);
    assert_eq!(code, Some(0), "{err}");
}

/// The names in a directory, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// `--force` into a `dir:` store names on stderr each entry it removes, and refuses a
/// directory holding what a meta store does not unless `--force-clear` (restore and
/// import alike).
#[test]
fn forced_restores_into_a_dir_list_what_goes_and_spare_foreign_directories() {
    let d = tempfile::tempdir().unwrap();
    let repo = simulated(d.path());
    let meta = d.path().join("meta");
    let store = format!("dir:{}", meta.display());
    let restore = |extra: &[&str]| {
        let mut args = vec![
            "restore",
            "--repo",
            &repo,
            "--latest",
            "--target-store",
            &store,
        ];
        args.extend_from_slice(extra);
        run(&args, &[], None)
    };
    assert!(restore(&[]).status.success());
    assert_eq!(names_in(&meta), ["CHECKPOINT", "FORK", "LOCK"]);
    // A meta store: replaced, each file named as it goes.
    let o = restore(&["--force"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    for f in ["CHECKPOINT", "FORK"] {
        assert!(
            err.contains(&format!("removing {}", meta.join(f).display())),
            "{err}"
        );
    }
    assert!(!err.contains("LOCK"), "{err}");

    // Something a meta store does not hold: refused, nothing touched, with or without
    // the meta store's own files beside it.
    std::fs::write(meta.join("notes.txt"), b"mine").unwrap();
    std::fs::create_dir(meta.join("data")).unwrap();
    std::fs::write(meta.join("data").join("x"), b"mine too").unwrap();
    let before = names_in(&meta);
    let export = d.path().join("export.jsonl");
    export_to(&repo, &export);
    let import = |extra: &[&str]| {
        let mut args = vec![
            "import",
            "--from",
            export.to_str().unwrap(),
            "--target-store",
            &store,
        ];
        args.extend_from_slice(extra);
        run(&args, &[], None)
    };
    for o in [restore(&["--force"]), import(&["--force"])] {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains("does not look like a meta store")
                && err.contains("'data', 'notes.txt'")
                && err.contains("--force-clear"),
            "{err}"
        );
        assert!(!err.contains("removing"), "{err}");
        assert_eq!(names_in(&meta), before);
    }
    // --force-clear needs --force.
    assert_eq!(restore(&["--force-clear"]).status.code(), Some(2));
    assert_eq!(names_in(&meta), before);

    // With --force-clear: everything goes, each named.
    let o = restore(&["--force", "--force-clear"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!("removing {}", meta.join("notes.txt").display()))
            && err.contains(&format!(
                "removing {}/ and everything in it",
                meta.join("data").display()
            )),
        "{err}"
    );
    assert_eq!(names_in(&meta), ["CHECKPOINT", "FORK", "LOCK"]);
    std::fs::write(meta.join("notes.txt"), b"mine").unwrap();
    let o = import(&["--force", "--force-clear"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(names_in(&meta), ["CHECKPOINT", "FORK", "LOCK"]);
}

/// The README's `import --initial-cluster` example, run as written (its --id and
/// --initial-cluster nodes, into etcd) on an export of a simulated cluster: it works, and
/// the store then lists exactly those meta nodes and records --id.
#[test]
fn the_readme_import_example_works_on_a_simulator_export() {
    let readme = include_str!("../README.md");
    let at = readme
        .find("metapitr import --from meta.jsonl")
        .expect("the README shows an import");
    let mut example = String::new();
    for line in readme[at..].lines() {
        example.push_str(line.trim_end_matches('\\'));
        example.push(' ');
        if !line.ends_with('\\') {
            break;
        }
    }
    let d = tempfile::tempdir().unwrap();
    let repo = simulated(d.path());
    let export = d.path().join("meta.jsonl");
    export_to(&repo, &export);
    let etcd = common::servers::etcd().url("readme-example");
    let args: Vec<String> = example
        .split_whitespace()
        .skip(1)
        .filter(|t| *t != "[--force]")
        .map(|t| match t {
            "meta.jsonl" => export.display().to_string(),
            t if t.starts_with("etcd://") => etcd.clone(),
            t => t.to_string(),
        })
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let id = args[args.iter().position(|a| *a == "--id").unwrap() + 1];
    let nodes: Vec<&str> = args
        .windows(2)
        .filter(|w| w[0] == "--initial-cluster")
        .map(|w| w[1])
        .collect();
    assert!(nodes.len() >= 2, "{example}");
    ok(&args);

    let text = ok(&["export", "--from-store", &etcd, "--include-secrets"]);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let metas: Vec<String> = lines
        .iter()
        .filter(|v| v["kind"] == "worker" && v["worker_type"] == "WORKER_TYPE_META")
        .map(|v| format!("{}={}:{}", v["id"], v["host"].as_str().unwrap(), v["port"]))
        .collect();
    assert_eq!(metas, nodes);
    assert!(lines
        .iter()
        .any(|v| v["name"] == "meta_node_id" && v["value"] == id));
    // The simulated cluster's other workers are still there.
    assert!(lines
        .iter()
        .any(|v| v["kind"] == "worker" && v["worker_type"] == "WORKER_TYPE_COMPUTE_NODE"));
}
