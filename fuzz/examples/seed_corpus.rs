//! Writes a seed corpus for every fuzz target into `corpus/{target}/` (next to this crate's
//! Cargo.toml, or under the directory given as the first argument): real encodings of a
//! simulated cluster's WAL, snapshot, manifest and pin set, each in all its layers (stored
//! zstd frame, envelope, body), so that the fuzzers start from inputs that decode.
//!
//! cargo run --manifest-path fuzz/Cargo.toml --example seed_corpus

use std::path::{Path, PathBuf};

use metapitr::codec::{self, Kind};
use metapitr::model::pb::{IdGenerator, Manifest, PinSetRef, SnapshotEntry, TimelineEntry};
use metapitr::model::Change;
use metapitr::pin::PinSet;
use metapitr::sim::{SimConfig, Simulator};
use metapitr::wal::format::{self, SegmentHeader};
use prost::Message;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A stored object in its three layers: zstd frame, envelope, body.
fn layers(kind: Kind, body: &[u8]) -> Result<Vec<Vec<u8>>> {
    let env = codec::seal(kind, body);
    Ok(vec![codec::compress(&env)?, env, body.to_vec()])
}

/// A segment file holding `batches`, written with the WAL's own encoders.
fn segment(first_lsn: u64, batches: &[(u64, Vec<Change>)]) -> Result<Vec<u8>> {
    let mut seg = SegmentHeader {
        timeline: 1,
        first_lsn,
    }
    .encode()
    .to_vec();
    let mut lsn = first_lsn;
    for (epoch, changes) in batches {
        for (i, c) in changes.iter().enumerate() {
            format::encode_record(&mut seg, lsn, *epoch, i + 1 == changes.len(), c)?;
            lsn += 1;
        }
    }
    Ok(seg)
}

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) -> Result<()> {
    let d = dir.join(target);
    std::fs::create_dir_all(&d)?;
    std::fs::write(d.join(name), bytes)?;
    Ok(())
}

fn main() -> Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let mut sim = Simulator::new(SimConfig {
        seed: 11,
        ddl_rate: 0.5,
        user_rate: 0.3,
        compaction_rate: 0.5,
        ..Default::default()
    });
    let batches = (0..60)
        .map(|_| sim.next_epoch())
        .collect::<metapitr::Result<Vec<_>>>()?;
    let state = sim.state().clone();

    // WAL: a segment, a short one, some frames and their bodies.
    let seg = segment(1, &batches)?;
    let short = segment(1, &batches[..3])?;
    write(&dir, "segment", "segment", &seg)?;
    write(&dir, "segment", "short", &short)?;
    let mut off = format::HEADER_LEN;
    let mut n = 0;
    while off + format::FRAME_HEADER_LEN <= seg.len() {
        let len = u32::from_le_bytes([seg[off], seg[off + 1], seg[off + 2], seg[off + 3]]);
        let end = off + format::FRAME_HEADER_LEN + len as usize;
        if n % 8 == 0 {
            write(&dir, "wal_record", &format!("frame-{n}"), &seg[off..end])?;
            let body = &seg[off + format::FRAME_HEADER_LEN..end];
            write(&dir, "wal_record", &format!("body-{n}"), body)?;
        }
        off = end;
        n += 1;
    }

    // Snapshot, pin set, manifest.
    let snapshot = layers(Kind::Snapshot, &state.to_proto().encode_to_vec())?;
    let window: roaring::RoaringTreemap = state.hummock.object_ids().collect();
    let pins = PinSet {
        timeline: 1,
        from_epoch: batches[0].0,
        to_epoch: state.epoch,
        to_lsn: state.lsn,
        keep: window.iter().step_by(4).collect(),
        window,
    };
    let pin_env = pins.encode()?;
    let pin_set = layers(
        Kind::PinSet,
        &pin_env[codec::HEADER_LEN..pin_env.len() - codec::TRAILER_LEN],
    )?;
    let (segment_entry, ids, _) = metapitr::archive::summarize(&seg, "segment")?;
    let manifest = Manifest {
        version: 3,
        repo_id: "seed".into(),
        writer_epoch: 1,
        timelines: vec![TimelineEntry {
            id: 1,
            segments: vec![segment_entry],
            writer_epoch: 1,
            ..Default::default()
        }],
        snapshots: vec![SnapshotEntry {
            id: 1,
            timeline: 1,
            lsn: state.lsn,
            max_committed_epoch: state.epoch,
            raw_size: snapshot[1].len() as u64,
            stored_size: snapshot[0].len() as u64,
            payload_crc32: codec::envelope_crc(&snapshot[1]),
            ..Default::default()
        }],
        id_high_water: ids
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(c, n)| IdGenerator {
                category: c as i32,
                next: *n,
            })
            .collect(),
        next_snapshot_id: 2,
        pins: vec![PinSetRef {
            timeline: 1,
            from_epoch: pins.from_epoch,
            to_epoch: pins.to_epoch,
            to_lsn: pins.to_lsn,
            count: pins.count(),
            stored_size: pin_set[0].len() as u64,
            payload_crc32: codec::envelope_crc(&pin_env),
        }],
        ..Default::default()
    };
    let manifest = layers(Kind::Manifest, &manifest.encode_to_vec())?;

    for (target, objects) in [
        ("snapshot", &snapshot),
        ("pin_set", &pin_set),
        ("manifest", &manifest),
    ] {
        for (layer, bytes) in ["stored", "envelope", "body"].iter().zip(objects.iter()) {
            write(&dir, target, layer, bytes)?;
        }
        write(&dir, "envelope", &format!("{target}-stored"), &objects[0])?;
        write(&dir, "envelope", &format!("{target}-envelope"), &objects[1])?;
    }
    write(
        &dir,
        "envelope",
        "archived-segment",
        &codec::compress(&seg)?,
    )?;
    println!("seed corpus written to {}", dir.display());
    Ok(())
}
