//! The etcd restore target against a real etcd server (started by `common::servers`).

mod common;

use std::collections::BTreeMap;

use common::rt;
use common::servers::{self, etcdctl, etcdctl_get_prefix, free_port};
use metapitr::error::ErrorKind;
use metapitr::jsonl;
use metapitr::sim::{SimConfig, Simulator};
use metapitr::store::etcd::{self, EtcdCredentials, EtcdTarget, MAX_TXN_OPS};
use metapitr::store::MetaStore;
use serde_json::Value;

/// The export of a simulated state after `epochs` busy epochs.
fn export(seed: u64, epochs: u64) -> Vec<Value> {
    let mut sim = Simulator::new(SimConfig {
        seed,
        ddl_rate: 0.3,
        user_rate: 0.2,
        ..Default::default()
    });
    for _ in 0..epochs {
        sim.next_epoch().unwrap();
    }
    jsonl::lines(sim.state())
}

fn target(e: &servers::Etcd, prefix: &str) -> EtcdTarget {
    let url = e.url(prefix);
    let mut t = EtcdTarget::parse(url.strip_prefix("etcd://").unwrap()).unwrap();
    if let (Some(u), Some(p)) = (&e.username, &e.password) {
        t.auth = Some(EtcdCredentials {
            username: u.clone(),
            password: p.clone(),
        });
    }
    t
}

/// Lines as compact JSON, sorted, the header aside.
fn sorted(lines: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = lines[1..].iter().map(Value::to_string).collect();
    v.sort();
    v
}

#[test]
fn what_is_written_reads_back_through_the_target_and_through_etcdctl() {
    let e = servers::etcd();
    let lines = export(11, 150);
    assert!(
        lines.len() > 3 * MAX_TXN_OPS,
        "the state must need several transactions, it has {} lines",
        lines.len()
    );
    let t = target(e, "roundtrip");
    assert_eq!(t.prefix, "/roundtrip/");
    rt().block_on(async {
        assert!(t.is_empty().await.unwrap());
        t.write_lines(&lines).await.unwrap();
        assert!(!t.is_empty().await.unwrap());

        let back = t.read_lines().await.unwrap();
        assert_eq!(back[0], lines[0], "the header comes first");
        assert_eq!(back.len(), lines.len());
        assert_eq!(sorted(&back), sorted(&lines));

        // The lines read back are a state, the same one.
        let state =
            jsonl::from_lines(back.into_iter().enumerate().map(|(i, v)| (i + 1, v))).unwrap();
        assert_eq!(jsonl::lines(&state), lines);
    });

    // etcd's own client sees one key per line, at the documented key, holding the line.
    let stored: BTreeMap<String, String> =
        etcdctl_get_prefix(e, "/roundtrip/").into_iter().collect();
    assert_eq!(stored.len(), lines.len());
    for l in &lines {
        let key = format!("/roundtrip/{}", etcd::line_key(l).unwrap());
        let v = stored
            .get(&key)
            .unwrap_or_else(|| panic!("no key {key} for line {l}"));
        assert_eq!(v, &serde_json::to_string(l).unwrap(), "{key}");
    }
    assert!(stored.contains_key("/roundtrip/header"));
    assert!(stored.contains_key("/roundtrip/cluster"));
    assert!(stored.contains_key("/roundtrip/hummock/version"));
    assert!(stored.keys().any(|k| k.starts_with("/roundtrip/catalog/")));
    assert!(stored
        .keys()
        .any(|k| k.starts_with("/roundtrip/hummock/sst/")));
    assert!(!stored.contains_key("/roundtrip/restore-in-progress"));
}

#[test]
fn clear_empties_the_prefix_and_nothing_else() {
    let e = servers::etcd();
    let lines = export(12, 40);
    let t = target(e, "clear/me");
    etcdctl(e, &["put", "/clear/mine-not", "x"]);
    etcdctl(e, &["put", "/clear/me-not/x", "y"]);
    rt().block_on(async {
        assert!(t.is_empty().await.unwrap());
        t.write_lines(&lines).await.unwrap();
        assert!(!t.is_empty().await.unwrap());
        t.clear().await.unwrap();
        assert!(t.is_empty().await.unwrap());
        // Clearing an empty prefix is fine.
        t.clear().await.unwrap();
    });
    assert!(etcdctl_get_prefix(e, "/clear/me/").is_empty());
    assert_eq!(etcdctl_get_prefix(e, "/clear/mine-not").len(), 1);
    assert_eq!(etcdctl_get_prefix(e, "/clear/me-not/").len(), 1);

    // Any key, even one the layout does not know, makes the prefix non-empty.
    etcdctl(e, &["put", "/clear/me/stray", "z"]);
    rt().block_on(async { assert!(!t.is_empty().await.unwrap()) });
}

#[test]
fn an_incomplete_restore_reads_as_corruption() {
    let e = servers::etcd();
    rt().block_on(async {
        // Nothing at all.
        let t = target(e, "incomplete/none");
        let err = t.read_lines().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

        // Only the marker, as a restore leaves it when it stops right after starting.
        let t = target(e, "incomplete/marker");
        etcdctl(e, &["put", "/incomplete/marker/restore-in-progress", "{}"]);
        assert!(!t.is_empty().await.unwrap());
        let err = t.read_lines().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corruption, "{err}");
        let m = err.to_string();
        assert!(m.contains("/incomplete/marker/"), "{m}");
        assert!(m.contains("incomplete restore"), "{m}");
        assert!(m.contains("marker present"), "{m}");
        assert!(m.contains("--force"), "{m}");

        // A complete restore whose header went missing.
        let t = target(e, "incomplete/header");
        t.write_lines(&export(13, 20)).await.unwrap();
        etcdctl(e, &["del", "/incomplete/header/header"]);
        let err = t.read_lines().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corruption, "{err}");
        assert!(err.to_string().contains("no header"), "{err}");

        // A complete restore with the marker put back.
        let t = target(e, "incomplete/both");
        t.write_lines(&export(14, 20)).await.unwrap();
        t.read_lines().await.unwrap();
        etcdctl(e, &["put", "/incomplete/both/restore-in-progress", "{}"]);
        let err = t.read_lines().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corruption, "{err}");

        // Writing again after a clear (what --force does) repairs it.
        t.clear().await.unwrap();
        t.write_lines(&export(14, 20)).await.unwrap();
        t.read_lines().await.unwrap();
    });
}

#[test]
fn a_value_that_is_not_an_export_line_reads_as_corruption() {
    let e = servers::etcd();
    rt().block_on(async {
        let t = target(e, "damaged/json");
        t.write_lines(&export(15, 20)).await.unwrap();
        etcdctl(e, &["put", "/damaged/json/cluster", "not json {"]);
        let err = t.read_lines().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corruption, "{err}");
        assert!(err.to_string().contains("/damaged/json/cluster"), "{err}");

        // A line at a key that is not its own.
        let t = target(e, "damaged/moved");
        t.write_lines(&export(15, 20)).await.unwrap();
        etcdctl(
            e,
            &[
                "put",
                "/damaged/moved/worker/0000009999",
                r#"{"kind":"cluster","cluster_id":"x"}"#,
            ],
        );
        let err = t.read_lines().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corruption, "{err}");
        assert!(
            err.to_string().contains("/damaged/moved/worker/0000009999"),
            "{err}"
        );
    });
}

#[test]
fn authentication_with_the_right_credentials_works() {
    let e = servers::etcd_auth();
    let lines = export(16, 30);
    let t = target(e, "auth/ok");
    assert!(t.auth.is_some());
    rt().block_on(async {
        assert!(t.is_empty().await.unwrap());
        t.write_lines(&lines).await.unwrap();
        let back = t.read_lines().await.unwrap();
        assert_eq!(sorted(&back), sorted(&lines));
        assert!(!t.is_empty().await.unwrap());
        t.clear().await.unwrap();
        assert!(t.is_empty().await.unwrap());
        t.write_lines(&lines).await.unwrap();
    });
    // etcdctl, as the same user, sees what was written.
    assert_eq!(etcdctl_get_prefix(e, "/auth/ok/").len(), lines.len());
}

#[test]
fn a_wrong_password_is_invalid_input_naming_the_user() {
    let e = servers::etcd_auth();
    let mut t = target(e, "auth/wrong");
    t.auth = Some(EtcdCredentials {
        username: "root".into(),
        password: "not-the-password".into(),
    });
    rt().block_on(async {
        let err = t.is_empty().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        let m = err.to_string();
        assert!(m.contains("authentication failed for user root"), "{m}");
        assert!(m.contains(&e.endpoint), "{m}");
        assert!(m.contains("--etcd-password"), "{m}");
        // No password leaks into the message.
        assert!(!m.contains("not-the-password"), "{m}");
        let err = t.write_lines(&export(17, 5)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    });
    t.auth.as_mut().unwrap().username = "nobody".into();
    rt().block_on(async {
        let err = t.read_lines().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains("user nobody"), "{err}");
    });
}

#[test]
fn missing_credentials_on_a_cluster_with_authentication_are_invalid_input() {
    let e = servers::etcd_auth();
    let mut t = target(e, "auth/none");
    t.auth = None;
    rt().block_on(async {
        for err in [
            t.is_empty().await.unwrap_err(),
            t.write_lines(&export(18, 5)).await.unwrap_err(),
            t.read_lines().await.unwrap_err(),
            t.clear().await.unwrap_err(),
        ] {
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
            let m = err.to_string();
            assert!(m.contains("authentication enabled"), "{m}");
            assert!(
                m.contains("--etcd-auth --etcd-username --etcd-password"),
                "{m}"
            );
        }
    });
}

#[test]
fn credentials_for_a_cluster_without_authentication_are_not_needed() {
    let e = servers::etcd();
    let mut t = target(e, "auth/unneeded");
    t.auth = Some(EtcdCredentials {
        username: "root".into(),
        password: "whatever".into(),
    });
    rt().block_on(async {
        t.write_lines(&export(19, 5)).await.unwrap();
        t.read_lines().await.unwrap();
    });
}

#[test]
fn an_endpoint_nobody_listens_on_is_unavailable() {
    let dead = format!("127.0.0.1:{}", free_port());
    let other = format!("127.0.0.1:{}", free_port());
    let t = EtcdTarget::parse(&format!("{dead},{other}/x")).unwrap();
    rt().block_on(async {
        let started = std::time::Instant::now();
        for err in [
            t.is_empty().await.unwrap_err(),
            t.read_lines().await.unwrap_err(),
            t.write_lines(&export(20, 5)).await.unwrap_err(),
            t.clear().await.unwrap_err(),
        ] {
            assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
            let m = err.to_string();
            assert!(m.contains(&dead) && m.contains(&other), "{m}");
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    });
}

#[test]
fn a_dead_first_endpoint_hands_over_to_the_next() {
    let e = servers::etcd();
    let dead = format!("127.0.0.1:{}", free_port());
    let t = EtcdTarget::parse(&format!("{dead},{}/failover", e.endpoint)).unwrap();
    let lines = export(21, 60);
    rt().block_on(async {
        assert!(t.is_empty().await.unwrap());
        t.write_lines(&lines).await.unwrap();
        let back = t.read_lines().await.unwrap();
        assert_eq!(sorted(&back), sorted(&lines));
    });
    assert_eq!(etcdctl_get_prefix(e, "/failover/").len(), lines.len());
}

#[test]
fn the_servers_run_as_children_of_this_process() {
    let e = servers::etcd();
    let ppid = std::fs::read_to_string(format!("/proc/{}/stat", e.pid())).unwrap();
    // Field 4 of /proc/PID/stat is the parent pid (after the parenthesised command name).
    let after = ppid.rsplit_once(')').unwrap().1;
    let parent: u32 = after.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(parent, std::process::id());
}
