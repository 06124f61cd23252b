//! Servers that accept a connection and never answer, or answer in another protocol: the
//! real binary gives up after the configured timeouts with a message that names the server
//! and says what to do, instead of hanging.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::bin::ok;

/// How long a run may take before it counts as hung (the timeouts below are 1 s).
const HUNG: Duration = Duration::from_secs(60);

/// The timeouts every run here is given, through the environment.
fn short_timeouts() -> Vec<(&'static str, String)> {
    vec![
        ("METAPITR_CONNECT_TIMEOUT", "1s".into()),
        ("METAPITR_REQUEST_TIMEOUT", "1s".into()),
    ]
}

/// A port on 127.0.0.1 that accepts every connection and then neither reads nor writes;
/// the connections stay open as long as the test process runs.
fn silent_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for s in l.incoming().map_while(Result::ok) {
            held.push(s);
        }
    });
    port
}

/// A port on 127.0.0.1 that answers anything as an HTTP server answers a request it cannot
/// parse (as etcd's client port does), then closes the connection.
fn http_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().map_while(Result::ok) {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
                  Connection: close\r\n\r\n400 Bad Request",
            );
        }
    });
    port
}

/// Runs the binary with `env`, killing it (and failing the test) if it has not exited
/// after [`HUNG`]. Returns the exit code and stderr.
fn run_bounded(args: &[&str], env: &[(&str, String)]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_metapitr"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > HUNG {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} still ran after {HUNG:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.code(), reader.join().unwrap())
}

/// A restore into `url` and an export from it, both needing the server.
fn restore_and_export<'a>(repo: &'a str, url: &'a str) -> [Vec<&'a str>; 2] {
    [
        vec!["restore", "--repo", repo, "--latest", "--target-store", url],
        vec!["export", "--from-store", url],
    ]
}

/// Exit 6 (retry), the server named, the setting that bounded the wait named, and no
/// password.
fn assert_timed_out(args: &[&str], env: &[(&str, String)], server: &str, setting: &str) {
    let (code, err) = run_bounded(args, env);
    assert_eq!(code, Some(6), "{args:?}: {err}");
    assert!(err.contains(server), "{args:?}: {err}");
    assert!(
        err.contains(&format!("within 1s ({setting})")),
        "{args:?}: {err}"
    );
    assert!(!err.contains("secret"), "the password leaks: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one error line: {err}");
}

#[test]
fn a_postgresql_server_that_never_answers_times_out() {
    let d = tempfile::tempdir().unwrap();
    let repo = common::simulated_file_repo(d.path(), &["--epochs", "20"]);
    let port = silent_server();
    let server = format!("127.0.0.1:{port}");
    let url = format!("postgres://u:secret@{server}/db");
    let env = short_timeouts();
    for args in restore_and_export(&repo, &url) {
        assert_timed_out(&args, &env, &server, "network.connect_timeout");
    }
    // The URL's own connect_timeout (libpq's, in seconds) wins over the setting.
    let (code, err) = run_bounded(
        &[
            "export",
            "--from-store",
            &format!("{url}?connect_timeout=2"),
        ],
        &env,
    );
    assert_eq!(code, Some(6), "{err}");
    assert!(err.contains("within 2s (network.connect_timeout)"), "{err}");
}

#[test]
fn an_etcd_server_that_never_answers_times_out() {
    let d = tempfile::tempdir().unwrap();
    let repo = common::simulated_file_repo(d.path(), &["--epochs", "20"]);
    let server = format!("127.0.0.1:{}", silent_server());
    let url = format!("etcd://{server}/meta");
    let mut env = short_timeouts();
    env.push(("METAPITR_ETCD_USERNAME", "root".into()));
    env.push(("METAPITR_ETCD_PASSWORD", "secret".into()));
    for args in restore_and_export(&repo, &url) {
        assert_timed_out(&args, &env, &server, "network.request_timeout");
    }
}

#[test]
fn an_s3_repo_that_never_answers_times_out() {
    let server = format!("127.0.0.1:{}", silent_server());
    let mut env = short_timeouts();
    env.extend([
        ("METAPITR_S3_ENDPOINT", format!("http://{server}")),
        ("METAPITR_S3_ALLOW_HTTP", "true".into()),
        ("METAPITR_S3_ACCESS_KEY_ID", "AKIATEST".into()),
        ("METAPITR_S3_SECRET_ACCESS_KEY", "secret".into()),
        ("METAPITR_S3_REGION", "us-east-1".into()),
    ]);
    let args = [
        "restore",
        "--repo",
        "s3://bucket/backup",
        "--latest",
        "--target-store",
        "jsonl:-",
    ];
    let (code, err) = run_bounded(&args, &env);
    assert_eq!(code, Some(6), "{err}");
    assert!(err.contains(&server), "{err}");
    assert!(err.contains("network.request_timeout"), "{err}");
    assert!(!err.contains("secret"), "{err}");
}

#[test]
fn an_http_server_given_as_postgresql_is_an_error_not_a_hang() {
    let server = format!("127.0.0.1:{}", http_server());
    let url = format!("postgres://u:secret@{server}/db");
    let (code, err) = run_bounded(&["export", "--from-store", &url], &short_timeouts());
    // Not retryable: the URL names the wrong port.
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&server), "{err}");
    assert!(err.contains("PostgreSQL's protocol"), "{err}");
    assert!(!err.contains("secret"), "{err}");
}

#[test]
fn timeouts_are_settings_with_defaults_and_checked_values() {
    let text = ok(&["config", "show"]);
    for (key, default) in [
        ("network.connect_timeout", "10s"),
        ("network.request_timeout", "30s"),
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("{key} not listed: {text}"));
        assert!(line.contains(default) && line.contains("default"), "{line}");
    }
    let url = "postgres://u@127.0.0.1:1/db";
    for (value, want) in [("0s", "would fail every call"), ("soon", "soon")] {
        let (code, err) = run_bounded(
            &["export", "--from-store", url],
            &[("METAPITR_REQUEST_TIMEOUT", value.into())],
        );
        assert_eq!(code, Some(2), "{value}: {err}");
        assert!(
            err.contains("network.request_timeout") && err.contains(want),
            "{err}"
        );
    }
}
