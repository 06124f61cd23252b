//! `metapitr rw inspect` and `rw apply` on RisingWave's own bytes: the golden vectors in
//! testdata/rw (written by an independent encoder from RisingWave's .proto; see its
//! README), and damaged copies of them.

mod common;

use std::path::{Path, PathBuf};

use common::bin::{fails, ok};
use serde_json::Value;

fn vector(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/rw")
        .join(name)
        .display()
        .to_string()
}

fn json_of(args: &[&str]) -> Value {
    serde_json::from_str(&ok(args)).unwrap()
}

fn facts() -> Value {
    serde_json::from_str(&std::fs::read_to_string(vector("facts.json")).unwrap()).unwrap()
}

#[test]
fn inspect_detects_every_kind_and_names_the_objects() {
    let facts = facts();
    for (file, kind) in [
        ("version_10.bin", "version"),
        ("checkpoint_zstd.bin", "checkpoint"),
        ("checkpoint_lz4.bin", "checkpoint"),
        ("checkpoint_none.bin", "checkpoint"),
        ("checkpoint_legacy.bin", "checkpoint"),
        ("snapshot_7.snapshot", "meta_snapshot"),
    ] {
        let v = json_of(&["rw", "inspect", &vector(file), "--json"]);
        assert_eq!(v["kind"], kind, "{file}");
        assert_eq!(v["version_id"], 10, "{file}");
        assert_eq!(v["object_ids"], facts["version_10_object_ids"], "{file}");
        if kind != "meta_snapshot" {
            assert_eq!(
                v["max_committed_epoch"], facts["version_10_max_committed_epoch"],
                "{file}"
            );
        }
        let groups = v["groups"].as_array().unwrap();
        assert!(!groups.is_empty(), "{file}: {v}");
    }
    let d = json_of(&["rw", "inspect", &vector("delta_15.bin"), "--json"]);
    assert_eq!(d["kind"], "version_delta");
    let m = json_of(&["rw", "inspect", &vector("manifest.json"), "--json"]);
    assert_eq!(m["kind"], "manifest");
    // The text form says the same in brief.
    let text = ok(&["rw", "inspect", &vector("version_10.bin")]);
    assert!(
        text.contains("kind: version") && text.contains("object_ids: 9"),
        "{text}"
    );
}

#[test]
fn apply_matches_the_independent_model_after_every_delta() {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(vector("expected_apply.json")).unwrap())
            .unwrap();
    let steps = expected["steps"].as_array().unwrap();
    let deltas: Vec<String> = (11..=18)
        .map(|i| vector(&format!("delta_{i}.bin")))
        .collect();
    for (n, step) in steps.iter().enumerate() {
        let base = vector("version_10.bin");
        let mut args = vec!["rw", "apply", base.as_str()];
        args.extend(deltas[..=n].iter().map(String::as_str));
        args.push("--json");
        let v = json_of(&args);
        assert_eq!(
            v["version_id"],
            step["version_id"],
            "after {} deltas",
            n + 1
        );
        assert_eq!(
            v["object_ids"],
            step["object_ids"],
            "after {} deltas",
            n + 1
        );
        let groups: Vec<u64> = v["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["group_id"].as_u64().or_else(|| g["id"].as_u64()).unwrap())
            .collect();
        let mut want: Vec<u64> = step["groups"]
            .as_object()
            .map(|o| o.keys().map(|k| k.parse().unwrap()).collect())
            .unwrap_or_default();
        want.sort_unstable();
        let mut got = groups.clone();
        got.sort_unstable();
        assert_eq!(got, want, "groups after {} deltas", n + 1);
    }
}

fn damaged(name: &str, f: impl FnOnce(&mut Vec<u8>)) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let mut b = std::fs::read(vector(name)).unwrap();
    f(&mut b);
    let p = d.path().join(name);
    std::fs::write(&p, b).unwrap();
    (d, p)
}

#[test]
fn damaged_bytes_exit_3_naming_the_file_and_offset() {
    // A flipped byte inside the checkpoint's payload: the checksum names where it is.
    let (_d, p) = damaged("checkpoint_zstd.bin", |b| b[100] ^= 0xff);
    let err = fails(&["rw", "inspect", p.to_str().unwrap()], 3);
    assert!(err.contains(p.to_str().unwrap()), "{err}");
    assert!(err.contains("checksum at byte"), "{err}");
    // Cut short anywhere: a clear error, never a panic.
    for len in [0usize, 1, 5, 40, 300] {
        let (_d, p) = damaged("version_10.bin", |b| b.truncate(len.min(b.len())));
        let o = common::bin::metapitr(&["rw", "inspect", p.to_str().unwrap()]);
        let code = o.status.code();
        assert!(matches!(code, Some(2) | Some(3)), "cut at {len}: {o:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(p.to_str().unwrap()), "cut at {len}: {err}");
    }
}

#[test]
fn apply_refuses_deltas_out_of_order_and_objects_of_the_wrong_kind() {
    let err = fails(
        &[
            "rw",
            "apply",
            &vector("version_10.bin"),
            &vector("delta_12.bin"),
        ],
        2,
    );
    assert!(err.contains("delta 12 follows version 11"), "{err}");
    let err = fails(
        &[
            "rw",
            "apply",
            &vector("delta_11.bin"),
            &vector("delta_12.bin"),
        ],
        2,
    );
    assert!(err.contains("not a Hummock version"), "{err}");
    let err = fails(
        &[
            "rw",
            "apply",
            &vector("version_10.bin"),
            &vector("manifest.json"),
        ],
        2,
    );
    assert!(err.contains("not a HummockVersionDelta"), "{err}");
}

#[test]
fn missing_paths_directories_and_special_files_are_refused_without_blocking() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("nothing-here");
    fails(&["rw", "inspect", missing.to_str().unwrap()], 4);
    let err = fails(&["rw", "inspect", d.path().to_str().unwrap()], 2);
    assert!(err.contains("not a regular file"), "{err}");
    // A FIFO no one writes to: reading it would wait forever.
    let fifo = d.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let err = fails(&["rw", "inspect", fifo.to_str().unwrap()], 2);
    assert!(err.contains("not a regular file"), "{err}");
    let err = fails(
        &[
            "rw",
            "apply",
            &vector("version_10.bin"),
            fifo.to_str().unwrap(),
        ],
        2,
    );
    assert!(err.contains("not a regular file"), "{err}");
}
