//! Fuzzing on stable, sized for CI: every entry point of `metapitr::fuzz` on (a) arbitrary
//! bytes and (b) real encodings (a WAL segment written by `Wal`, a snapshot of a simulated
//! state, the manifest of a simulated repo, a pin set) mutated by byte flips, truncations,
//! insertions and rewrites of their length fields, at every layer (stored zstd frame,
//! envelope, body).
//!
//! Asserts that no decoder panics and that no single allocation made while decoding is
//! larger than `ALLOC_PER_INPUT_BYTE` x the input plus `ALLOC_SLACK` (a counting global
//! allocator records the largest request of the decoding thread). Allocations made inside
//! the zstd C library do not go through the Rust allocator; `codec::WINDOW_LOG_MAX` bounds
//! those.
//!
//! `PROPTEST_CASES` sets the cases per target and kind of input (default
//! `DEFAULT_CASES`).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::OnceLock;

use metapitr::codec::{self, Kind};
use metapitr::fuzz;
use metapitr::model::{CatalogKind, IdCategory};
use metapitr::pin::PinSet;
use metapitr::sim::{SimConfig, Simulator};
use metapitr::wal::{self, format, Wal, WalOptions};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestRunner};
use prost::Message;

// ---------------------------------------------------------------------------------------
// The counting allocator.

struct Counting;

thread_local! {
    /// The largest single allocation request of this thread since the last reset.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The largest single allocation `f` requests on this thread.
fn largest_allocation(f: impl FnOnce()) -> usize {
    LARGEST.with(|l| l.set(0));
    f();
    LARGEST.with(|l| l.get())
}

/// No single allocation of a decode may exceed this many bytes per input byte...
const ALLOC_PER_INPUT_BYTE: usize = 16;
/// ... plus this.
const ALLOC_SLACK: usize = 1 << 20;

const DEFAULT_CASES: u32 = 1000;
/// Epochs of the simulation behind the large seeds.
const LARGE_EPOCHS: u64 = 300;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// Runs a target on `data`, checking the allocation bound.
fn run_target(name: &str, target: fn(&[u8]), data: &[u8]) -> Result<(), TestCaseError> {
    let largest = largest_allocation(|| target(data));
    let bound = ALLOC_PER_INPUT_BYTE * data.len() + ALLOC_SLACK;
    prop_assert!(
        largest <= bound,
        "{name}: an allocation of {largest} bytes for {} input bytes (bound {bound})",
        data.len()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Seeds: real encodings, each with the offsets of its length fields.

#[derive(Debug, Clone)]
struct Seed {
    what: &'static str,
    bytes: Vec<u8>,
    /// (offset, width) of fields that hold a length or a count.
    lengths: Vec<(usize, usize)>,
}

impl Seed {
    fn new(what: &'static str, bytes: Vec<u8>, lengths: Vec<(usize, usize)>) -> Self {
        Seed {
            what,
            bytes,
            lengths,
        }
    }
}

struct Seeds {
    wal_record: Vec<Seed>,
    segment: Vec<Seed>,
    envelope: Vec<Seed>,
    snapshot: Vec<Seed>,
    manifest: Vec<Seed>,
    pin_set: Vec<Seed>,
}

/// The zstd frame content size field: its offset and width.
fn zstd_content_size_field(z: &[u8]) -> (usize, usize) {
    let fhd = z[4];
    let single_segment = fhd & 0x20 != 0;
    let dict_id = [0, 1, 2, 4][usize::from(fhd & 3)];
    let width = match fhd >> 6 {
        0 if single_segment => 1,
        0 => 0,
        1 => 2,
        2 => 4,
        _ => 8,
    };
    (5 + usize::from(!single_segment) + dict_id, width)
}

/// A payload in its three layers: body, envelope, stored zstd frame; length fields of the
/// body at `body_lengths` (offsets into the body).
fn layered(
    name: &'static str,
    kind: Kind,
    body: Vec<u8>,
    body_lengths: Vec<(usize, usize)>,
) -> [Seed; 3] {
    let env = codec::seal(kind, &body);
    let mut env_lengths = vec![(8, 8)];
    env_lengths.extend(
        body_lengths
            .iter()
            .map(|(o, w)| (o + codec::HEADER_LEN, *w)),
    );
    let z = codec::compress(&env).unwrap();
    let fcs = zstd_content_size_field(&z);
    [
        Seed::new(name, body, body_lengths),
        Seed::new(name, env, env_lengths),
        Seed::new(name, z, vec![fcs]),
    ]
}

/// Offsets of the varint length prefixes of a protobuf message's length-delimited fields,
/// recursively where the field parses as a message (good enough to aim rewrites at).
fn protobuf_lengths(msg: &[u8], base: usize, out: &mut Vec<(usize, usize)>, depth: u32) {
    fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *b.get(*at)?;
            *at += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    let mut at = 0;
    while at < msg.len() && out.len() < 4096 {
        let Some(key) = varint(msg, &mut at) else {
            return;
        };
        match key & 7 {
            0 => {
                if varint(msg, &mut at).is_none() {
                    return;
                }
            }
            1 => at += 8,
            5 => at += 4,
            2 => {
                let len_at = at;
                let Some(len) = varint(msg, &mut at) else {
                    return;
                };
                let end = at.saturating_add(len as usize);
                if end > msg.len() {
                    return;
                }
                out.push((base + len_at, at - len_at));
                if depth < 6 {
                    protobuf_lengths(&msg[at..end], base + at, out, depth + 1);
                }
                at = end;
            }
            _ => return,
        }
    }
}

fn proto_seed(name: &'static str, kind: Kind, body: Vec<u8>) -> [Seed; 3] {
    let mut lengths = Vec::new();
    protobuf_lengths(&body, 0, &mut lengths, 0);
    layered(name, kind, body, lengths)
}

/// A simulated state after `epochs` busy epochs and the batches that built it.
fn simulate(seed: u64, epochs: u64) -> (Simulator, Vec<(u64, Vec<metapitr::model::Change>)>) {
    let mut sim = Simulator::new(SimConfig {
        seed,
        ddl_rate: 0.5,
        user_rate: 0.3,
        compaction_rate: 0.5,
        ..Default::default()
    });
    let batches = (0..epochs).map(|_| sim.next_epoch().unwrap()).collect();
    (sim, batches)
}

/// A sealed segment written by the WAL itself.
fn real_segment(batches: &[(u64, Vec<metapitr::model::Change>)]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let rt = common::rt();
    rt.block_on(async {
        let opts = WalOptions {
            sync: false,
            segment_max_age_ms: u64::MAX,
            ..Default::default()
        };
        let w = Wal::open(dir.path(), 1, 1, opts, metapitr::clock::system()).unwrap();
        for (epoch, changes) in batches {
            w.append(*epoch, changes).unwrap().await.unwrap();
        }
        w.close().await.unwrap();
    });
    let segs = wal::list_segments(dir.path()).unwrap();
    assert_eq!(segs.len(), 1);
    std::fs::read(&segs[0].path).unwrap()
}

/// The frames of a segment, by offset and length.
fn frames(seg: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut off = format::HEADER_LEN;
    while off + format::FRAME_HEADER_LEN <= seg.len() {
        let len = u32::from_le_bytes(seg[off..off + 4].try_into().unwrap()) as usize;
        out.push((off, format::FRAME_HEADER_LEN + len));
        off += format::FRAME_HEADER_LEN + len;
    }
    out
}

fn pin_set_body_lengths(env: &[u8]) -> Vec<(usize, usize)> {
    let body = &env[codec::HEADER_LEN..env.len() - codec::TRAILER_LEN];
    let mut out = Vec::new();
    let mut off = 32;
    for _ in 0..2 {
        out.push((off, 8));
        let len = u64::from_le_bytes(body[off..off + 8].try_into().unwrap()) as usize;
        // The bitmap count, and the container count of the first bitmap.
        out.push((off + 8, 8));
        if len >= 20 {
            out.push((off + 8 + 16, 4));
        }
        off += 8 + len;
    }
    out
}

fn seeds() -> &'static Seeds {
    static SEEDS: OnceLock<Seeds> = OnceLock::new();
    SEEDS.get_or_init(|| {
        // A small state (after 40 epochs) and a large one, whose stored forms are big
        // enough for a 4-byte zstd content size field.
        let (small, batches) = simulate(7, 40);
        let (sim, big_batches) = simulate(7, LARGE_EPOCHS);
        let state = small.state();
        let big = sim.state();

        // WAL: a real segment and its frames.
        let seg = real_segment(&batches);
        let frames = frames(&seg);
        let mut seg_lengths: Vec<_> = frames.iter().map(|(o, _)| (*o, 4)).collect();
        seg_lengths.push((16, 8));
        let mut wal_record = Vec::new();
        for (o, n) in frames.iter().step_by(frames.len().div_ceil(12)) {
            let frame = seg[*o..o + n].to_vec();
            wal_record.push(Seed::new("frame", frame.clone(), vec![(0, 4)]));
            wal_record.push(Seed::new("record body", frame[8..].to_vec(), {
                let mut l = Vec::new();
                protobuf_lengths(&frame[8 + format::BODY_FIXED_LEN..], 17, &mut l, 0);
                l
            }));
        }
        let big_seg = real_segment(&big_batches);
        let archived = codec::compress(&big_seg).unwrap();
        let archived_fcs = zstd_content_size_field(&archived);
        assert_eq!(archived_fcs.1, 4, "the archived segment is too small");
        let segment = vec![
            Seed::new("segment", seg.clone(), seg_lengths),
            Seed::new(
                "short segment",
                seg[..frames[3].0 + frames[3].1].to_vec(),
                vec![(frames[0].0, 4), (frames[1].0, 4)],
            ),
        ];

        // Snapshot of the simulated state.
        let mut snapshot = Vec::new();
        for s in [state, big] {
            snapshot.extend(proto_seed(
                "snapshot",
                Kind::Snapshot,
                s.to_proto().encode_to_vec(),
            ));
            let stored = &snapshot[snapshot.len() - 1].bytes;
            assert_eq!(&metapitr::snapshot::decode(stored, "s").unwrap(), s);
        }
        assert_eq!(
            snapshot[5].lengths[0].1, 4,
            "the large snapshot is too small"
        );

        // The manifest of a simulated repo (snapshots, segments, timelines, id high water).
        let rt = common::rt();
        let m = rt.block_on(async {
            let s = common::simulate(3, 30, Some(10), 1_000_000).await;
            s.repo.manifest().await.unwrap()
        });
        assert!(!m.snapshots.is_empty());
        let manifest = proto_seed("manifest", Kind::Manifest, m.encode_to_vec()).to_vec();
        assert_eq!(fuzz::decode_manifest(&manifest[2].bytes).unwrap(), m);

        // Pin sets: the objects of the simulated version (with the keep set a subset),
        // and a small one.
        let window: roaring::RoaringTreemap = state.hummock.object_ids().collect();
        let keep = window.iter().step_by(5).collect();
        let mut pin_set = Vec::new();
        for p in [
            PinSet {
                timeline: 1,
                from_epoch: batches[0].0,
                to_epoch: state.epoch,
                to_lsn: state.lsn,
                window,
                keep,
            },
            PinSet {
                timeline: 2,
                window: [1u64, 2, 1 << 40].into_iter().collect(),
                ..Default::default()
            },
        ] {
            let env = p.encode().unwrap();
            assert_eq!(PinSet::decode(&env, "p").unwrap(), p);
            let lengths = pin_set_body_lengths(&env);
            let body = env[codec::HEADER_LEN..env.len() - codec::TRAILER_LEN].to_vec();
            pin_set.extend(layered("pin set", Kind::PinSet, body, lengths));
        }

        // Envelopes: the stored form of each kind, and the archived segment.
        let mut envelope: Vec<Seed> = [&snapshot, &manifest, &pin_set]
            .iter()
            .flat_map(|s| s.chunks(3).flat_map(|layers| layers[1..3].iter().cloned()))
            .collect();
        envelope.push(Seed::new("archived segment", archived, vec![archived_fcs]));

        Seeds {
            wal_record,
            segment,
            envelope,
            snapshot,
            manifest,
            pin_set,
        }
    })
}

// ---------------------------------------------------------------------------------------
// Mutations.

#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Truncate(Index),
    Insert(Index, Vec<u8>),
    /// Rewrite one of the seed's length fields (or, for a seed without any, 4 bytes at a
    /// random offset) with an interesting value.
    Length(Index, Index, u64),
}

fn interesting() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(0x7f),
        Just(0xff),
        Just(0xffff),
        Just(0x1_0000),
        Just(u32::MAX as u64),
        Just(u32::MAX as u64 + 1),
        Just(1 << 31),
        Just(4 << 30),
        Just(u64::MAX),
        Just(u64::MAX >> 1),
        0u64..4096,
        any::<u64>(),
    ]
}

/// The start of a zstd frame: magic, a frame header descriptor with an 8-byte content
/// size and the checksum flag, a window descriptor, and a content size claim.
fn zstd_header() -> impl Strategy<Value = Vec<u8>> {
    (any::<u8>(), interesting()).prop_map(|(window, size)| {
        let mut h = vec![0x28, 0xb5, 0x2f, 0xfd, 0xC4, window];
        h.extend_from_slice(&size.to_le_bytes());
        h
    })
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 1u8..=255).prop_map(|(i, m)| Mutation::Flip(i, m)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        3 => (any::<Index>(), any::<Index>(), interesting())
            .prop_map(|(f, i, v)| Mutation::Length(f, i, v)),
    ]
}

fn apply(seed: &Seed, mutations: &[Mutation]) -> Vec<u8> {
    let mut b = seed.bytes.clone();
    for m in mutations {
        match m {
            Mutation::Flip(i, mask) if !b.is_empty() => {
                let i = i.index(b.len());
                b[i] ^= mask;
            }
            Mutation::Flip(..) => {}
            Mutation::Truncate(i) => b.truncate(i.index(b.len() + 1)),
            Mutation::Insert(i, bytes) => {
                let at = i.index(b.len() + 1);
                b.splice(at..at, bytes.iter().copied());
            }
            Mutation::Length(f, i, v) => {
                let (off, width) = if seed.lengths.is_empty() || b.len() < 4 {
                    (i.index(b.len().max(1)), 4)
                } else {
                    seed.lengths[f.index(seed.lengths.len())]
                };
                let bytes = v.to_le_bytes();
                if width == 0 {
                    continue;
                }
                for (k, byte) in bytes.iter().take(width).enumerate() {
                    if let Some(slot) = b.get_mut(off + k) {
                        *slot = *byte;
                    }
                }
            }
        }
    }
    b
}

// ---------------------------------------------------------------------------------------
// The tests: one per target, each on arbitrary bytes and on mutated seeds.

fn fuzz_target(name: &str, target: fn(&[u8]), seeds: &[Seed]) {
    let config = Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    };
    // (a) arbitrary bytes, some behind the magic bytes of a zstd frame, an envelope or a
    // segment so that they get past the first check.
    let prefixes: [&[u8]; 5] = [
        b"",
        &[0x28, 0xb5, 0x2f, 0xfd],
        b"MPTR",
        b"MPWALSEG\x01\x00\x00\x00",
        &[0x28, 0xb5, 0x2f, 0xfd, 0xC4],
    ];
    let arbitrary = (
        0..prefixes.len() + 1,
        zstd_header(),
        prop::collection::vec(any::<u8>(), 0..2048),
    );
    TestRunner::new(config.clone())
        .run(&arbitrary, |(p, header, tail)| {
            let mut data = prefixes.get(p).map_or(header, |p| p.to_vec());
            data.extend_from_slice(&tail);
            run_target(name, target, &data)
        })
        .unwrap();
    // The seeds themselves.
    for s in seeds {
        run_target(name, target, &s.bytes).unwrap();
    }
    // (b) mutated real encodings.
    let mutated = (0..seeds.len(), prop::collection::vec(mutation(), 1..5));
    TestRunner::new(config)
        .run(&mutated, |(s, ms)| {
            let data = apply(&seeds[s], &ms);
            run_target(&format!("{name} ({})", seeds[s].what), target, &data)
        })
        .unwrap();
}

#[test]
fn wal_record() {
    fuzz_target("wal_record", fuzz::wal_record, &seeds().wal_record);
}

#[test]
fn segment() {
    fuzz_target("segment", fuzz::segment, &seeds().segment);
}

#[test]
fn envelope() {
    fuzz_target("envelope", fuzz::envelope, &seeds().envelope);
}

#[test]
fn snapshot() {
    fuzz_target("snapshot", fuzz::snapshot, &seeds().snapshot);
}

#[test]
fn manifest() {
    fuzz_target("manifest", fuzz::manifest, &seeds().manifest);
}

#[test]
fn pin_set() {
    fuzz_target("pin_set", fuzz::pin_set, &seeds().pin_set);
}

/// Claims that used to be trusted: each is refused without an allocation near its size.
#[test]
fn length_claims_do_not_size_allocations() {
    // A zstd frame claiming 4 GiB of content, with one small block.
    let mut f = vec![0x28, 0xb5, 0x2f, 0xfd, 0xC4, (21 - 10) << 3];
    f.extend_from_slice(&codec::MAX_PAYLOAD.to_le_bytes());
    f.extend_from_slice(&(1u32 | (1 << 1) | (1000 << 3)).to_le_bytes()[..3]);
    f.extend_from_slice(&[0xab, 0, 0, 0, 0]);
    let largest = largest_allocation(|| assert!(codec::decompress(&f, "x").is_err()));
    assert!(largest <= codec::DECODE_CHUNK + 8 * f.len(), "{largest}");

    // A snapshot whose compaction group claims u32::MAX levels.
    let m = metapitr::model::pb::MetaState {
        hummock: Some(metapitr::model::pb::HummockVersion {
            groups: vec![metapitr::model::pb::CompactionGroup {
                id: 2,
                max_level: u32::MAX,
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let z = codec::compress(&codec::seal(Kind::Snapshot, &m.encode_to_vec())).unwrap();
    let largest = largest_allocation(|| assert!(metapitr::snapshot::decode(&z, "s").is_err()));
    assert!(largest < ALLOC_SLACK, "{largest}");

    // A pin set whose bitmap claims 65536 containers.
    let mut body = vec![0u8; 32];
    let mut bitmap = 1u64.to_le_bytes().to_vec();
    bitmap.extend_from_slice(&[0, 0, 0, 0]);
    bitmap.extend_from_slice(&12346u32.to_le_bytes());
    bitmap.extend_from_slice(&65536u32.to_le_bytes());
    body.extend_from_slice(&(bitmap.len() as u64).to_le_bytes());
    body.extend_from_slice(&bitmap);
    body.extend_from_slice(&8u64.to_le_bytes());
    body.extend_from_slice(&0u64.to_le_bytes());
    let env = codec::seal(Kind::PinSet, &body);
    let largest = largest_allocation(|| assert!(PinSet::decode(&env, "p").is_err()));
    assert!(largest < 4096, "{largest}");
}

/// The simulated seeds hold what the decoders must handle: catalog objects, users, SSTs.
#[test]
fn seeds_are_rich() {
    let s = seeds();
    let state = metapitr::snapshot::decode(&s.snapshot[2].bytes, "s").unwrap();
    assert!(state.catalog_of(CatalogKind::Table).count() > 0);
    assert!(state.hummock.sst_count() > 0);
    assert!(state.id(IdCategory::Catalog) > 0);
    let (_, records) = format::read_sealed(&s.segment[0].bytes, "s").unwrap();
    assert!(records.len() > 40);
}
