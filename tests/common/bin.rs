//! The `metapitr` binary, run as an operator runs it.

use std::cell::RefCell;
use std::io::Write;
use std::process::{Command, Output, Stdio};

thread_local! {
    /// Environment every run from this test's thread gets (e.g. S3 credentials).
    static THREAD_ENV: RefCell<Vec<(&'static str, String)>> = const { RefCell::new(Vec::new()) };
}

/// Adds environment for every later run from the calling test's thread.
pub fn set_thread_env(env: Vec<(&'static str, String)>) {
    THREAD_ENV.with(|e| e.borrow_mut().extend(env));
}

/// Runs the binary with extra environment and, optionally, bytes on stdin.
pub fn run(args: &[&str], env: &[(&str, String)], stdin: Option<&[u8]>) -> Output {
    let thread_env = THREAD_ENV.with(|e| e.borrow().clone());
    let mut child = Command::new(env!("CARGO_BIN_EXE_metapitr"))
        .args(args)
        .envs(thread_env.iter().map(|(k, v)| (*k, v.as_str())))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(b) = stdin {
        input.write_all(b).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

pub fn metapitr(args: &[&str]) -> Output {
    run(args, &[], None)
}

/// Stdout of a run that must succeed.
pub fn ok_env(args: &[&str], env: &[(&str, String)]) -> String {
    let o = run(args, env, None);
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

pub fn ok(args: &[&str]) -> String {
    ok_env(args, &[])
}

/// Stderr of a run that must fail with exit code `code`.
pub fn fails(args: &[&str], code: i32) -> String {
    let o = metapitr(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
    err
}

/// Runs `metapitr simulate --repo REPO --wal-dir DIR/wal --epochs N --seed S --no-sync`
/// with `extra` flags (snapshots, truth files), which must succeed; returns its stdout.
pub fn simulate(
    repo: &str,
    dir: &std::path::Path,
    epochs: u64,
    seed: u64,
    extra: &[&str],
) -> String {
    let wal = dir.join("wal");
    let (epochs, seed) = (epochs.to_string(), seed.to_string());
    let mut args = vec![
        "simulate",
        "--repo",
        repo,
        "--wal-dir",
        wal.to_str().unwrap(),
        "--epochs",
        &epochs,
        "--seed",
        &seed,
        "--no-sync",
    ];
    args.extend_from_slice(extra);
    ok(&args)
}
