//! Export and import as an operator runs them: special files and symlinks as outputs,
//! closed pipes, exports cut short or made inconsistent, offline exports from a WAL
//! directory at an epoch, forced restores into directories, the README's import example.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use common::bin::{fails, ok};

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
    let export_to = |out: &Path| {
        ok(&[
            "export",
            "--repo",
            &repo,
            "--include-secrets",
            "-o",
            out.to_str().unwrap(),
        ])
    };

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
    let mut names: Vec<String> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !["repo", "wal", "truth", "fifo", "null"].contains(&n.as_str()))
        .collect();
    names.sort();
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
