//! Damaged objects are detected, named and contained.
//!
//! For every archived segment, snapshot, manifest version, segment index chunk and pin set
//! of a simulated repo, each byte is flipped (all its bits, and for some objects also one
//! seeded bit) and the object is cut short at several lengths, 0 included, behind
//! metapitr's back. After each damage
//! the API that reads that object must fail with `ErrorKind::Corruption`, naming the
//! object's key and a byte offset; then the original bytes are put back.
//!
//! Damaged bytes are Corruption, never NotFound: the object is still there under its key
//! (even cut to 0 bytes), it is its content that is wrong. NotFound is for an object that
//! is gone, checked once per kind at the end.
//!
//! The one exception allowed: a change the format itself ignores, so that the object
//! still reads back as exactly the same value (bits of a zstd frame that no decoder
//! interprets, such as the header's unused bit or slack in an entropy table description;
//! the frame's content checksum and the envelope's crc32 then pass because the content is
//! unchanged). Such flips can never give a different state; they must stay rare.
//!
//! Restores of epochs that do not need the damaged object still work and equal the truth;
//! one that needs it fails the same way.
//!
//! By default objects of up to 4 KiB get every byte flipped and larger ones a seeded
//! sample of positions (their first and last 32 bytes and 64 more); the single-bit flips
//! are made in every snapshot and pin set, the newest manifest and a few other objects.
//! `METAPITR_CORRUPTION_EXHAUSTIVE=1` flips every byte of every object both ways (minutes);
//! `CORRUPTION_VERBOSE=1` prints how many flips were made and which went unnoticed.

mod common;

use common::assert_matches;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use common::rt;
use metapitr::archive;
use metapitr::codec::Kind;
use metapitr::error::{Error, ErrorKind};
use metapitr::jsonl;
use metapitr::pb::{Manifest, SegmentEntry, SnapshotEntry};
use metapitr::pin;
use metapitr::repo::{index_key, snapshot_entry_key, Repo};
use metapitr::restore::{self, Target};
use metapitr::sim::{self, Simulator};
use metapitr::snapshot;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Objects up to this size get every byte flipped.
const SMALL: usize = 4 << 10;
/// Random positions sampled in a larger object, besides its first and last bytes.
const SAMPLES: usize = 64;
const EDGE: usize = 32;
/// At most one flip in this many may go unnoticed (reading back the same value).
const BENIGN_AT_MOST_ONE_IN: usize = 100;

fn exhaustive() -> bool {
    std::env::var("METAPITR_CORRUPTION_EXHAUSTIVE").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// What an object is and which API reads it.
#[derive(Debug, Clone)]
enum Object {
    Segment(SegmentEntry),
    Snapshot(SnapshotEntry),
    /// A manifest version; `newest` is the one `Repo::manifest` reads.
    Manifest {
        newest: bool,
    },
    IndexChunk {
        timeline: u32,
    },
    PinSet,
}

impl Object {
    fn kind(&self) -> &'static str {
        match self {
            Object::Segment(_) => "segment",
            Object::Snapshot(_) => "snapshot",
            Object::Manifest { .. } => "manifest",
            Object::IndexChunk { .. } => "index chunk",
            Object::PinSet => "pin set",
        }
    }
}

/// What a reader read, to compare with what it read before the damage.
#[derive(Debug, PartialEq)]
enum Value {
    Records(Vec<metapitr::wal::Record>),
    State(Box<metapitr::model::State>),
    Manifest(Box<Manifest>),
    Entries(Vec<SegmentEntry>),
    Pins(Vec<pin::PinSet>),
}

/// Reads `key` through the metapitr API that reads objects of its kind.
async fn read(repo: &Repo, m: &Manifest, key: &str, o: &Object) -> Result<Value, Error> {
    Ok(match o {
        Object::Segment(e) => Value::Records(archive::fetch_segment(repo, e).await?),
        Object::Snapshot(e) => Value::State(Box::new(snapshot::fetch(repo, e).await?)),
        Object::Manifest { newest: true } => Value::Manifest(Box::new(repo.manifest().await?)),
        Object::Manifest { newest: false } => Value::Manifest(Box::new(
            repo.get_message::<Manifest>(key, Kind::Manifest).await?,
        )),
        Object::IndexChunk { timeline, .. } => {
            Value::Entries(archive::segment_entries(repo, m, *timeline, 0, u64::MAX).await?)
        }
        Object::PinSet => Value::Pins(pin::load_all(repo).await?),
    })
}

/// The damage an error must report: Corruption, naming the key and a byte offset.
fn assert_names(err: &Error, key: &str, what: &str) {
    assert_eq!(err.kind(), ErrorKind::Corruption, "{what}: {err}");
    let msg = err.to_string();
    assert!(
        msg.contains(key),
        "{what}: the error does not name {key}: {msg}"
    );
    assert!(
        msg.contains("byte offset"),
        "{what}: the error gives no offset: {msg}"
    );
}

/// Writes raw bytes under a key, behind metapitr's back.
async fn put_raw(repo: &Repo, key: &str, bytes: Bytes) {
    repo.object_store()
        .put(&Path::from(key), bytes.into())
        .await
        .unwrap();
}

async fn get_raw(repo: &Repo, key: &str) -> Bytes {
    repo.object_store()
        .get(&Path::from(key))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
}

/// Positions to damage in an object of `len` bytes.
fn positions(len: usize, rng: &mut StdRng) -> Vec<usize> {
    if len <= SMALL || exhaustive() {
        return (0..len).collect();
    }
    let mut p: BTreeSet<usize> = (0..EDGE.min(len))
        .chain(len.saturating_sub(EDGE)..len)
        .collect();
    if len > 0 {
        for _ in 0..SAMPLES {
            p.insert(rng.random_range(0..len));
        }
    }
    p.into_iter().collect()
}

/// A flip the format ignored: where, and in what.
type Benign = (String, usize, u8);

/// Damages every position of one object in turn (and cuts it short), checking that the
/// reader refuses each; returns the flips made and those it did not notice, which must
/// have read back the same value. `bits`: also flip one seeded bit of each position.
async fn damage_every_byte(
    repo: &Repo,
    m: &Manifest,
    key: &str,
    o: &Object,
    bits: bool,
    rng: &mut StdRng,
) -> (usize, Vec<Benign>) {
    let original = get_raw(repo, key).await;
    let mut flips = 0;
    let expected = read(repo, m, key, o)
        .await
        .unwrap_or_else(|e| panic!("{key} does not read before any damage: {e}"));
    let mut benign = Vec::new();
    let mut check = |r: Result<Value, Error>, what: String, pos: usize, mask: u8| match r {
        Err(e) => assert_names(&e, key, &what),
        Ok(v) => {
            assert!(v == expected, "{what}: read back a different value");
            benign.push((key.to_string(), pos, mask));
        }
    };
    for pos in positions(original.len(), rng) {
        let bit = 1u8 << rng.random_range(0..8);
        let masks: &[u8] = if bits || exhaustive() {
            &[0xff, bit]
        } else {
            &[0xff]
        };
        for &mask in masks {
            let mut bad = original.to_vec();
            bad[pos] ^= mask;
            put_raw(repo, key, bad.into()).await;
            let r = read(repo, m, key, o).await;
            flips += 1;
            check(
                r,
                format!("{} {key}, byte {pos} ^ {mask:#04x}", o.kind()),
                pos,
                mask,
            );
        }
    }
    let len = original.len();
    let cuts: BTreeSet<usize> = [0, 1, 4, 9, len / 2, len.saturating_sub(4), len - 1]
        .into_iter()
        .filter(|c| *c < len)
        .collect();
    for cut in cuts {
        put_raw(repo, key, original.slice(..cut)).await;
        let r = read(repo, m, key, o).await;
        let what = format!("{} {key}, cut to {cut} of {len} bytes", o.kind());
        match r {
            Err(e) => assert_names(&e, key, &what),
            Ok(_) => panic!("{what}: read without an error"),
        }
    }
    put_raw(repo, key, original).await;
    (flips, benign)
}

/// Every object of the repo with the API that reads it, by key.
async fn objects(repo: &Repo) -> (Manifest, BTreeMap<String, Object>) {
    let m = repo.manifest().await.unwrap();
    let mut out = BTreeMap::new();
    for tl in &m.timelines {
        for e in archive::segment_entries(repo, &m, tl.id, 0, u64::MAX)
            .await
            .unwrap()
        {
            out.insert(e.key(), Object::Segment(e));
        }
        for c in &tl.chunks {
            out.insert(
                index_key(tl.id, c.first_lsn),
                Object::IndexChunk { timeline: tl.id },
            );
        }
    }
    for s in &m.snapshots {
        out.insert(snapshot_entry_key(s), Object::Snapshot(*s));
    }
    for p in &m.pins {
        out.insert(pin::pin_key(p), Object::PinSet);
    }
    // Head markers are empty objects whose keys are their content (docs/format.md §3):
    // nothing in them to damage.
    let versions: Vec<(String, u64)> = repo
        .list("manifest/")
        .await
        .unwrap()
        .into_iter()
        .filter(|(k, _)| !k.ends_with(".head"))
        .collect();
    let newest = versions.iter().map(|(k, _)| k.clone()).max();
    for (k, _) in versions {
        let newest = Some(&k) == newest.as_ref();
        out.insert(k, Object::Manifest { newest });
    }
    // Nothing else in the repo is left out.
    let listed: BTreeSet<String> = repo
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| !k.ends_with(".head"))
        .collect();
    let known: BTreeSet<String> = out.keys().cloned().collect();
    assert_eq!(
        listed.symmetric_difference(&known).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "the repo holds objects of no known kind, or misses known ones"
    );
    (m, out)
}

/// The keys a restore of each truth epoch reads (planned before any damage).
async fn needs(
    repo: &Repo,
    m: &Manifest,
    epochs: &[u64],
    newest_manifest: &str,
) -> BTreeMap<u64, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for e in epochs {
        let plan = restore::plan(repo, m, None, Target::Epoch(*e))
            .await
            .unwrap();
        let mut keys: BTreeSet<String> = plan.segments.iter().map(|s| s.key()).collect();
        keys.extend(plan.snapshot.as_ref().map(snapshot_entry_key));
        keys.insert(newest_manifest.to_string());
        let base = plan.snapshot.as_ref().map_or(0, |s| s.lsn);
        if let Some(tl) = m.timeline(plan.timeline) {
            for c in &tl.chunks {
                if c.last_lsn > base && c.first_epoch <= *e {
                    keys.insert(index_key(tl.id, c.first_lsn));
                }
            }
        }
        out.insert(*e, keys);
    }
    out
}

/// With `key` damaged (middle byte flipped): a restore that needs it fails naming it, and
/// restores that do not still equal the truth.
async fn restores_around(
    s: &common::Sim,
    needs: &BTreeMap<u64, BTreeSet<String>>,
    key: &str,
    rng: &mut StdRng,
) {
    common::damage_object(&s.repo, key, 0xff).await;
    let (mut with, mut without): (Vec<u64>, Vec<u64>) =
        needs.keys().partition(|e| needs[*e].contains(key));
    with.shuffle(rng);
    without.shuffle(rng);
    let n = if exhaustive() { 3 } else { 1 };
    for e in with.iter().take(n) {
        let err = restore::materialize(&s.repo, None, Target::Epoch(*e))
            .await
            .err()
            .unwrap_or_else(|| panic!("epoch {e} restored with {key} damaged"));
        assert_names(&err, key, &format!("restore of epoch {e}"));
    }
    for e in without.iter().take(n) {
        let (_, state) = restore::materialize(&s.repo, None, Target::Epoch(*e))
            .await
            .unwrap_or_else(|err| panic!("epoch {e} does not need {key}: {err}"));
        assert_matches(
            &jsonl::to_string(&state),
            &s.truth(*e),
            &format!("epoch {e} with {key} damaged"),
        );
    }
    common::damage_object(&s.repo, key, 0xff).await;
}

/// Damages the objects of a simulated repo that `select` picks (`Some(bits)`: see
/// [`damage_every_byte`]; `None`: not at all), and checks restores around each; flips the
/// format ignored must be rare.
async fn damage_repo(s: &common::Sim, seed: u64, select: impl Fn(&str, &Object) -> Option<bool>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (m, objs) = objects(&s.repo).await;
    let newest = objs
        .iter()
        .find(|(_, o)| matches!(o, Object::Manifest { newest: true }))
        .map(|(k, _)| k.clone())
        .unwrap();
    let epochs: Vec<u64> = s.report.truth_files.iter().map(|(e, _)| *e).collect();
    let needs = needs(&s.repo, &m, &epochs, &newest).await;
    let (mut flips, mut benign) = (0, Vec::new());
    let mut damaged = 0;
    for (key, o) in &objs {
        let Some(bits) = select(key, o) else {
            continue;
        };
        damaged += 1;
        let (n, b) = damage_every_byte(&s.repo, &m, key, o, bits, &mut rng).await;
        flips += n;
        benign.extend(b);
        restores_around(s, &needs, key, &mut rng).await;
    }
    assert!(
        benign.len() * BENIGN_AT_MOST_ONE_IN <= flips,
        "{} of {flips} flips went unnoticed: {benign:?}",
        benign.len()
    );
    if std::env::var_os("CORRUPTION_VERBOSE").is_some() {
        eprintln!("{damaged} objects, {flips} flips, unnoticed (same value read back): {benign:?}");
    }
    // An object that is gone is NotFound, naming it (one of each kind damaged). Not the
    // newest manifest version: without it the version before it is the newest. Not a pin
    // set: see `a_missing_pin_set_is_not_found`.
    let mut seen = BTreeSet::new();
    for (key, o) in &objs {
        if select(key, o).is_none()
            || matches!(o, Object::Manifest { newest: true } | Object::PinSet)
            || !seen.insert(o.kind())
        {
            continue;
        }
        let original = get_raw(&s.repo, key).await;
        s.repo
            .object_store()
            .delete(&Path::from(key.as_str()))
            .await
            .unwrap();
        let r = read(&s.repo, &m, key, o).await;
        put_raw(&s.repo, key, original).await;
        let err = r
            .err()
            .unwrap_or_else(|| panic!("{key} read after it was deleted"));
        assert_eq!(
            err.kind(),
            ErrorKind::NotFound,
            "{} {key} deleted: {err}",
            o.kind()
        );
        assert!(err.to_string().contains(key.as_str()), "{err}");
    }
    // Everything still reads after the damage was undone.
    for (key, o) in &objs {
        read(&s.repo, &m, key, o).await.unwrap();
    }
}

/// A small history with snapshots: segments, snapshots, manifest versions and a pin set.
#[test]
fn every_damaged_byte_of_every_object_is_detected() {
    rt().block_on(async {
        let s = common::simulate(31, 120, Some(30), 1).await;
        let (_, objs) = objects(&s.repo).await;
        for kind in ["segment", "snapshot", "manifest", "pin set"] {
            assert!(
                objs.values().any(|o| o.kind() == kind),
                "the fixture has no {kind}"
            );
        }
        // Single bits as well as whole bytes: every snapshot and pin set, the newest
        // manifest, a few older versions and a few segments.
        let mut rng = StdRng::seed_from_u64(31);
        let pick = |kind: &str, n: usize, rng: &mut StdRng| -> BTreeSet<String> {
            let mut keys: Vec<String> = objs
                .iter()
                .filter(|(_, o)| o.kind() == kind)
                .map(|(k, _)| k.clone())
                .collect();
            keys.shuffle(rng);
            keys.into_iter().take(n).collect()
        };
        let mut thorough = pick("segment", 6, &mut rng);
        thorough.extend(pick("manifest", 4, &mut rng));
        damage_repo(&s, 31, |key, o| {
            Some(
                exhaustive()
                    || thorough.contains(key)
                    || matches!(
                        o,
                        Object::Snapshot(_) | Object::PinSet | Object::Manifest { newest: true }
                    ),
            )
        })
        .await;
    });
}

/// A history long enough that the oldest segment entries move into an index object: the
/// chunk is damaged (a sample of positions, all with `METAPITR_CORRUPTION_EXHAUSTIVE`),
/// planning a restore that needs it fails naming it, and a restore from the snapshot
/// taken after the chunk's run still equals the truth.
#[test]
fn a_damaged_segment_index_chunk_is_detected_and_contained() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let epochs = 2 * archive::INDEX_CHUNK as u64 + 100;
        let mut opts = common::run_opts(41, epochs, Some(1000), 50, dir.path());
        // One commit per group and a seal per commit: a segment per epoch.
        opts.in_flight = 1;
        opts.recorder.wal.segment_max_age_ms = 0;
        let mut sim = Simulator::new(opts.sim.clone());
        let repo = common::mem_repo(&sim);
        let report = sim::run_with_repo(repo.clone(), &dir.path().join("wal"), opts, &mut sim)
            .await
            .unwrap();
        let s = common::Sim {
            repo,
            report,
            sim,
            dir,
        };
        let (_, objs) = objects(&s.repo).await;
        assert!(
            objs.values()
                .any(|o| matches!(o, Object::IndexChunk { .. })),
            "the fixture has no index chunk"
        );
        damage_repo(&s, 41, |_, o| {
            matches!(o, Object::IndexChunk { .. }).then_some(true)
        })
        .await;
    });
}

/// Regression (src/pin.rs, `load_all`): a pin set the manifest names but the repo no longer holds
/// is taken for one replaced while it was being read, eight times over, and reported as
/// `Error::internal("the pin set kept moving while being read")`: kind Internal, and the
/// missing key is not named. When the manifest did not move between the attempts, the
/// object is simply gone: NotFound, naming it, as for every other object kind.
#[test]
fn a_missing_pin_set_is_not_found() {
    rt().block_on(async {
        let s = common::simulate(32, 40, None, 40).await;
        let m = s.repo.manifest().await.unwrap();
        let key = pin::pin_key(&m.pins[0]);
        s.repo
            .object_store()
            .delete(&Path::from(key.as_str()))
            .await
            .unwrap();
        let err = pin::load_all(&s.repo).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(err.to_string().contains(&key), "{err}");
    });
}
