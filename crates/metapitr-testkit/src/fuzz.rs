//! Fuzz entry points: one function per decoder of stored bytes, each taking arbitrary
//! bytes, running the decoder on them, ignoring the `Err` it returns and never panicking.
//! The cargo-fuzz targets in `fuzz/` and the smoke test `tests/fuzz_smoke.rs` call these;
//! docs/fuzzing.md says how to run them.
//!
//! Every stored object is covered by checksums (crc32, the zstd content checksum), which
//! random bytes almost never satisfy. So besides the input as given, each entry point also
//! decodes the input with its checksums made right (the input as a record body, as an
//! envelope body, as a segment with its header and frame crcs recomputed), which lets a
//! fuzzer reach the decoders behind the checksums: protobuf messages, the state loader,
//! the pin set's bitmaps.

use prost::Message;

use crate::codec::{self, le8, Kind};
use crate::pb::Manifest;
use crate::pin::PinSet;
use crate::snapshot;
use crate::wal::format::{self, FRAME_HEADER_LEN, HEADER_LEN, MAX_BODY};
use crate::Result;

/// How the fuzz input is named in the errors the decoders return (and that are ignored).
const WHAT: &str = "fuzz input";

const KINDS: [Kind; 5] = [
    Kind::Snapshot,
    Kind::Manifest,
    Kind::SegmentIndex,
    Kind::PinSet,
    Kind::HummockCheckpoint,
];

/// The lsn a frame at `off` carries, or 0 if the bytes end first.
fn frame_lsn(data: &[u8], off: usize) -> u64 {
    off.checked_add(FRAME_HEADER_LEN + 1)
        .and_then(|start| data.get(start..start + 8))
        .map_or(0, |b| u64::from_le_bytes(le8(b)))
}

/// The crc32 a frame stores: of its 4 length bytes followed by its body.
fn frame_crc(len: &[u8], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len);
    h.update(body);
    h.finalize()
}

/// A WAL record frame (`wal::format::decode_frame`): the input as a frame, expecting the
/// lsn it carries; a frame past the end of the input; and the input as the body of a frame
/// with a right length and crc (its flags masked to the known one), so that the change
/// decoder sees arbitrary bytes.
pub fn wal_record(data: &[u8]) {
    let _ = format::decode_frame(data, 0, frame_lsn(data, 0));
    let _ = format::decode_frame(data, data.len().saturating_add(1), 0);
    if data.len() < format::BODY_FIXED_LEN || data.len() > MAX_BODY {
        return;
    }
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + data.len());
    frame.extend_from_slice(&(data.len() as u32).to_le_bytes());
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(data);
    frame[FRAME_HEADER_LEN] &= format::FLAG_END_OF_BATCH;
    let crc = frame_crc(&frame[..4], &frame[FRAME_HEADER_LEN..]);
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
    let lsn = frame_lsn(&frame, 0);
    let _ = format::decode_frame(&frame, 0, lsn);
}

/// Recomputes the header crc of a segment and the crc of every frame whose length fits.
fn repair_segment(data: &[u8]) -> Vec<u8> {
    let mut s = data.to_vec();
    if s.len() < HEADER_LEN {
        return s;
    }
    let crc = crc32fast::hash(&s[..28]);
    s[28..32].copy_from_slice(&crc.to_le_bytes());
    let mut off = HEADER_LEN;
    while let Some(len) = s.get(off..off + 4) {
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let end = off + FRAME_HEADER_LEN + len;
        if len > MAX_BODY || end > s.len() {
            break;
        }
        let crc = frame_crc(&s[off..off + 4], &s[off + FRAME_HEADER_LEN..end]);
        s[off + 4..off + 8].copy_from_slice(&crc.to_le_bytes());
        off = end;
    }
    s
}

/// Decodes a segment the ways the WAL and the archive do: scan (recovery of the active
/// segment, with the search for an intact frame after damage) and the strict read of a
/// sealed segment.
fn decode_segment(data: &[u8]) {
    if let Ok(s) = format::scan(data, WHAT) {
        if let Some(e) = &s.error {
            let next = s.header.first_lsn.saturating_add(s.records.len() as u64);
            let _ = format::intact_frame_after(data, e.offset as usize, next);
        }
    }
    let _ = format::read_sealed(data, WHAT);
}

/// A WAL segment file (`wal::format::{scan, read_sealed, intact_frame_after}`), as given
/// and with its header and frame crcs recomputed.
pub fn segment(data: &[u8]) {
    decode_segment(data);
    decode_segment(&repair_segment(data));
}

/// A stored object's outer layers (`codec::{decompress, open}`): the input as a zstd frame
/// whose payload is opened as an envelope of every kind, and the input as an envelope of
/// every kind.
pub fn envelope(data: &[u8]) {
    if let Ok(payload) = codec::decompress(data, WHAT) {
        for kind in KINDS {
            let _ = codec::open(kind, &payload, WHAT);
        }
    }
    for kind in KINDS {
        let _ = codec::open(kind, data, WHAT);
    }
    let _ = codec::envelope_crc(data);
}

/// A snapshot or local checkpoint (`snapshot::decode`): the input as stored bytes, as the
/// uncompressed envelope, and as the body of a right envelope (the `MetaState` decoder and
/// `State::from_proto`).
pub fn snapshot(data: &[u8]) {
    let _ = snapshot::decode(data, WHAT);
    let _ = snapshot::decode_payload(data, WHAT);
    let _ = snapshot::decode_payload(&codec::seal(Kind::Snapshot, data), WHAT);
}

/// What `Repo::get_message::<Manifest>` does with the bytes of a manifest object.
pub fn decode_manifest(stored: &[u8]) -> Result<Manifest> {
    let payload = codec::decompress(stored, WHAT)?;
    decode_manifest_payload(&payload)
}

fn decode_manifest_payload(payload: &[u8]) -> Result<Manifest> {
    let body = codec::open(Kind::Manifest, payload, WHAT)?;
    Manifest::decode(body).map_err(|e| {
        crate::Error::corrupt(
            WHAT,
            codec::HEADER_LEN as u64,
            format!("does not decode: {e}"),
        )
    })
}

/// A manifest: the input as stored bytes, as the uncompressed envelope, and as the body of
/// a right envelope (the `Manifest` protobuf decoder).
pub fn manifest(data: &[u8]) {
    let _ = decode_manifest(data);
    let _ = decode_manifest_payload(data);
    let _ = decode_manifest_payload(&codec::seal(Kind::Manifest, data));
}

/// A pin set (`PinSet::decode`): the input as stored bytes, as the uncompressed envelope,
/// and as the body of a right envelope (the header and the two bitmaps).
pub fn pin_set(data: &[u8]) {
    if let Ok(payload) = codec::decompress(data, WHAT) {
        let _ = PinSet::decode(&payload, WHAT);
    }
    let _ = PinSet::decode(data, WHAT);
    let _ = PinSet::decode(&codec::seal(Kind::PinSet, data), WHAT);
}
