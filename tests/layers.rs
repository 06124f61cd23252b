//! The modules form layers with no import cycle: a module uses only modules of its own
//! layer or below, and no two modules use each other, directly or around a loop. The
//! layers are docs/design.md §2's; a module missing from [`LAYERS`] fails the test, so a
//! new module is placed on purpose.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom up. A module of layer N may use modules of layers 0..=N.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundations",
        &[
            "core::error",
            "core::clock",
            "core::epoch",
            "core::codec",
            "core::crypt",
            "core::net",
            "core::progress",
            "core::model_api",
            "core::pb",
        ],
    ),
    (
        "model",
        &["model", "model::apply", "model::error", "model::hummock"],
    ),
    (
        "log and repo",
        &[
            "core::keys",
            "core::wal",
            "core::wal::format",
            "core::instrumented_object_store",
            "core::retrying_object_store",
            "core::encrypting_object_store",
            "core::repo",
            "core::repo::s3",
            "core::manifest",
        ],
    ),
    (
        "reading the archive",
        &["core::segments", "core::snapshot", "jsonl", "hummock"],
    ),
    (
        "engine",
        &[
            "core::restore",
            "core::pin",
            "core::archive",
            "core::retention",
            "core::timeline",
            "core::recorder",
            "core::verify",
            "diff",
            "core::repair",
        ],
    ),
    (
        "stores, metrics, settings",
        &[
            "store",
            "store::dir",
            "store::jsonl",
            "store::sql",
            "store::sqlite",
            "store::postgres",
            "store::etcd",
            "metrics",
            "config",
            "progress",
        ],
    ),
    (
        "tools",
        &[
            "cli",
            "cli::args",
            "cli::common",
            "cli::cmd",
            "cli::cmd::archive",
            "cli::cmd::bench",
            "cli::cmd::config",
            "cli::cmd::demo",
            "cli::cmd::diff",
            "cli::cmd::epoch",
            "cli::cmd::export",
            "cli::cmd::gc_check",
            "cli::cmd::hummock_version",
            "cli::cmd::import",
            "cli::cmd::info",
            "cli::cmd::pins",
            "cli::cmd::repair",
            "cli::cmd::restore",
            "cli::cmd::retention",
            "cli::cmd::rw",
            "cli::cmd::show",
            "cli::cmd::simulate",
            "cli::cmd::snapshot",
            "cli::cmd::verify",
            "sim",
            "bench",
            "demo",
            "fuzz",
            "faulty_store",
            "servers",
            "servers::proc",
            "servers::s3",
        ],
    ),
];

/// The engine crate's modules are named `core::…`.
const CORE: &str = "crates/metapitr-core/src";
/// The other crates' modules are named as this crate re-exports them.
const OTHERS: &[&str] = &[
    "crates/metapitr-model/src",
    "crates/metapitr-stores/src",
    "crates/metapitr-testkit/src",
];

/// Module path → source file, for every module under `src` (not lib.rs or main.rs), each
/// name prefixed with `prefix`.
fn modules(src: &Path, prefix: &str) -> BTreeMap<String, std::path::PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|l| l == "mod") {
                parts.pop();
            }
            let name = parts.join("::");
            if name != "lib" && name != "main" {
                out.insert(format!("{prefix}{name}"), p);
            }
        }
    }
    out
}

/// The code of a file without its comments and its `mod tests`.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    // The unit tests at the end of a file may use anything.
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules `name` uses: every `crate::a[::b]` and `super::b` path it names.
fn uses(name: &str, code: &str, all: &BTreeMap<String, std::path::PathBuf>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    // In the engine crate, `crate::x` is `core::x`; in this one, `crate::x` is its own
    // module `x` or the engine's re-exported one, and `metapitr_core::x` is the engine's.
    let in_core = name.starts_with("core::");
    let mut resolve = |first: String, second: String| {
        let (first, second) = match first.strip_prefix("metapitr_core::") {
            Some(f) => (format!("core::{f}"), second),
            None => (first, second),
        };
        let local = |f: &str| {
            if in_core && !f.starts_with("core::") {
                format!("core::{f}")
            } else {
                f.to_string()
            }
        };
        let mut first = local(&first);
        let known = |f: &str| all.contains_key(f) || all.contains_key(&format!("{f}::{second}"));
        if !in_core && !first.starts_with("core::") && !known(&first) {
            first = format!("core::{first}");
        }
        let two = format!("{first}::{second}");
        let target = if all.contains_key(&two) { two } else { first };
        if all.contains_key(&target) && target != name && !name.starts_with(&format!("{target}::"))
        {
            out.insert(target);
        }
    };
    for (i, pat) in code
        .match_indices("crate::")
        .chain(code.match_indices("metapitr_core::"))
    {
        if pat == "crate::" && code[..i].ends_with("metapitr_core::") {
            continue;
        }
        let rest = &code[i + pat.len()..];
        let first = ident(rest);
        let first = if pat == "metapitr_core::" {
            format!("metapitr_core::{first}")
        } else {
            first
        };
        let second = rest[first.len()..]
            .strip_prefix("::")
            .map(ident)
            .unwrap_or_default();
        resolve(first, second);
    }
    let parent = name.rsplit_once("::").map(|(p, _)| p.to_string());
    for (i, _) in code.match_indices("super::") {
        if i > 0 && code[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            continue;
        }
        let first = ident(&code[i + "super::".len()..]);
        match &parent {
            Some(p) => resolve(p.clone(), first),
            None => resolve(first, String::new()),
        }
    }
    out
}

#[test]
fn modules_form_layers_without_cycles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut all = modules(&root.join("src"), "");
    for c in OTHERS {
        all.extend(modules(&root.join(c), ""));
    }
    all.extend(modules(&root.join(CORE), "core::"));
    let layer: BTreeMap<&str, usize> = LAYERS
        .iter()
        .enumerate()
        .flat_map(|(i, (_, ms))| ms.iter().map(move |m| (*m, i)))
        .collect();
    let unplaced: Vec<&String> = all
        .keys()
        .filter(|m| !layer.contains_key(m.as_str()))
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules in no layer (add them to LAYERS and docs/design.md §2): {unplaced:?}"
    );
    let gone: Vec<&&str> = layer.keys().filter(|m| !all.contains_key(**m)).collect();
    assert!(
        gone.is_empty(),
        "LAYERS names modules that do not exist: {gone:?}"
    );

    let edges: BTreeMap<String, BTreeSet<String>> = all
        .iter()
        .map(|(m, p)| (m.clone(), uses(m, &code(p), &all)))
        .collect();
    let mut upward = Vec::new();
    for (a, bs) in &edges {
        for b in bs {
            if layer[b.as_str()] > layer[a.as_str()] {
                upward.push(format!(
                    "{a} ({}) uses {b} ({})",
                    LAYERS[layer[a.as_str()]].0,
                    LAYERS[layer[b.as_str()]].0
                ));
            }
        }
    }
    assert!(upward.is_empty(), "imports that go up a layer: {upward:#?}");

    // No cycle: repeatedly remove modules that use nothing left; what remains is cyclic.
    let mut left: BTreeMap<String, BTreeSet<String>> = edges.clone();
    loop {
        let leaves: Vec<String> = left
            .iter()
            .filter(|(_, bs)| bs.iter().all(|b| !left.contains_key(b)))
            .map(|(a, _)| a.clone())
            .collect();
        if leaves.is_empty() {
            break;
        }
        for l in leaves {
            left.remove(&l);
        }
    }
    let cyclic: Vec<String> = left
        .iter()
        .map(|(a, bs)| {
            let inside: Vec<&String> = bs.iter().filter(|b| left.contains_key(*b)).collect();
            format!("{a} -> {inside:?}")
        })
        .collect();
    assert!(cyclic.is_empty(), "modules in an import cycle: {cyclic:#?}");
}

#[test]
fn the_checker_sees_an_upward_import_and_a_cycle() {
    let all: BTreeMap<String, std::path::PathBuf> = ["a", "b", "c::d"]
        .iter()
        .map(|m| (m.to_string(), std::path::PathBuf::new()))
        .collect();
    let found = uses("a", "use crate::b::X; fn f() { crate::c::d::g(); }", &all);
    assert_eq!(found, ["b", "c::d"].iter().map(|s| s.to_string()).collect());
    // Comments do not count.
    let stripped = "// crate::b\nfn f() {}";
    let only_code: String = stripped
        .lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .collect();
    assert!(uses("a", &only_code, &all).is_empty());
}
