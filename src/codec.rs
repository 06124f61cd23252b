//! The envelope around every object metapitr persists apart from WAL segments
//! (snapshots, local checkpoints, manifests, segment index chunks), and the zstd frame
//! around every archived object.
//!
//! Envelope layout (all integers little-endian):
//!
//! ```text
//! offset size field
//!      0    4 magic            b"MPTR"
//!      4    1 kind             1 snapshot, 2 manifest, 3 segment index chunk, 4 pin set,
//!                              5 hummock checkpoint
//!      5    1 format_version   1
//!      6    2 reserved         0
//!      8    8 body_len         bytes of body
//!     16    n body             kind-specific (a protobuf message for kinds 1..3)
//!   16+n    4 crc32            crc32 (IEEE) of bytes [0, 16+n)
//! ```
//!
//! An archived object is one standard zstd frame with the content checksum flag set, whose
//! decompressed content is an envelope or a WAL segment file, so `zstd -t` can test it.

use crate::error::{Error, Result};

pub const MAGIC: [u8; 4] = *b"MPTR";
pub const FORMAT_VERSION: u8 = 1;
pub const HEADER_LEN: usize = 16;
pub const TRAILER_LEN: usize = 4;

/// The zstd level archived objects are written with.
pub const ZSTD_LEVEL: i32 = 3;
/// Objects larger than this after decompression are refused as corrupt.
pub const MAX_PAYLOAD: u64 = 4 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Snapshot = 1,
    Manifest = 2,
    SegmentIndex = 3,
    PinSet = 4,
    HummockCheckpoint = 5,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Snapshot => "snapshot",
            Kind::Manifest => "manifest",
            Kind::SegmentIndex => "segment index",
            Kind::PinSet => "pin set",
            Kind::HummockCheckpoint => "hummock checkpoint",
        }
    }
}

/// Wraps `body` in an envelope of `kind`.
pub fn seal(kind: Kind, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + TRAILER_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(kind as u8);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Checks an envelope of `kind` and returns its body. `what` names the object in errors.
pub fn open<'a>(kind: Kind, bytes: &'a [u8], what: &str) -> Result<&'a [u8]> {
    let bad = |offset: u64, reason: String| Error::corrupt(what, offset, reason);
    if bytes.len() < HEADER_LEN + TRAILER_LEN {
        return Err(bad(
            0,
            format!(
                "{} bytes is too short for a {} envelope",
                bytes.len(),
                kind.name()
            ),
        ));
    }
    if bytes[0..4] != MAGIC {
        return Err(bad(0, "bad magic (not a metapitr object)".into()));
    }
    if bytes[4] != kind as u8 {
        return Err(bad(
            4,
            format!("kind {} where a {} was expected", bytes[4], kind.name()),
        ));
    }
    if bytes[5] != FORMAT_VERSION {
        return Err(bad(
            5,
            format!(
                "format version {} is not supported (this build reads {FORMAT_VERSION})",
                bytes[5]
            ),
        ));
    }
    let body_len = u64::from_le_bytes(le8(&bytes[8..16]));
    let expected = (HEADER_LEN + TRAILER_LEN) as u64 + body_len;
    if expected != bytes.len() as u64 {
        return Err(bad(
            8,
            format!(
                "body length {body_len} does not match object size {}",
                bytes.len()
            ),
        ));
    }
    let end = bytes.len() - TRAILER_LEN;
    let stored = u32::from_le_bytes(le4(&bytes[end..]));
    let actual = crc32fast::hash(&bytes[..end]);
    if stored != actual {
        return Err(bad(
            end as u64,
            format!("checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"),
        ));
    }
    if bytes[6..8] != [0, 0] {
        return Err(bad(6, "reserved bytes are not zero".into()));
    }
    Ok(&bytes[HEADER_LEN..end])
}

/// The content checksum of an envelope: its trailer, the crc32 of everything before it.
/// (A crc32 over the whole envelope would be the same constant for every envelope, since a
/// message followed by its own crc32 always has the same crc32.)
pub fn envelope_crc(envelope: &[u8]) -> u32 {
    let n = envelope.len();
    if n < TRAILER_LEN {
        return 0;
    }
    u32::from_le_bytes(le4(&envelope[n - TRAILER_LEN..]))
}

/// Compresses `payload` into one zstd frame with the content checksum enabled.
pub fn compress(payload: &[u8]) -> Result<Vec<u8>> {
    let mut enc = zstd::bulk::Compressor::new(ZSTD_LEVEL)
        .map_err(|e| Error::Internal(format!("zstd: {e}")))?;
    enc.include_checksum(true)
        .and_then(|_| enc.include_contentsize(true))
        .map_err(|e| Error::Internal(format!("zstd: {e}")))?;
    enc.compress(payload)
        .map_err(|e| Error::Internal(format!("zstd: {e}")))
}

/// Decompresses one zstd frame, verifying its content checksum. The declared content
/// size is bounded before anything is allocated.
pub fn decompress(data: &[u8], what: &str) -> Result<Vec<u8>> {
    let size = zstd::zstd_safe::get_frame_content_size(data)
        .map_err(|_| Error::corrupt(what, 0, "not a zstd frame"))?
        .ok_or_else(|| Error::corrupt(what, 0, "zstd frame does not declare its content size"))?;
    if size > MAX_PAYLOAD {
        return Err(Error::corrupt(
            what,
            0,
            format!("declared size {size} is implausible"),
        ));
    }
    let mut dec =
        zstd::bulk::Decompressor::new().map_err(|e| Error::Internal(format!("zstd: {e}")))?;
    let out = dec
        .decompress(data, size as usize)
        .map_err(|e| Error::corrupt(what, 0, format!("zstd frame does not decode: {e}")))?;
    if out.len() as u64 != size {
        return Err(Error::corrupt(
            what,
            0,
            "zstd frame is shorter than it declares",
        ));
    }
    // The bulk decompressor stops at the end of the first frame; anything after it
    // would be silently ignored, so refuse it.
    let frame_len = zstd::zstd_safe::find_frame_compressed_size(data)
        .map_err(|_| Error::corrupt(what, 0, "zstd frame is truncated"))?;
    if frame_len != data.len() {
        return Err(Error::corrupt(
            what,
            frame_len as u64,
            format!(
                "{} trailing bytes after the zstd frame",
                data.len() - frame_len
            ),
        ));
    }
    Ok(out)
}

pub(crate) fn le8(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    a
}

pub(crate) fn le4(b: &[u8]) -> [u8; 4] {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_flipped_byte_is_detected() {
        let body = b"hello metadata".to_vec();
        let env = seal(Kind::Manifest, &body);
        assert_eq!(open(Kind::Manifest, &env, "m").unwrap(), &body[..]);
        for i in 0..env.len() {
            let mut bad = env.clone();
            bad[i] ^= 0x01;
            assert!(
                open(Kind::Manifest, &bad, "m").is_err(),
                "flip at {i} undetected"
            );
        }
        assert!(open(Kind::Snapshot, &env, "m").is_err());
        assert!(open(Kind::Manifest, &env[..env.len() - 1], "m").is_err());
    }

    #[test]
    fn zstd_round_trip_detects_damage() {
        let payload: Vec<u8> = (0..10_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let z = compress(&payload).unwrap();
        assert_eq!(decompress(&z, "x").unwrap(), payload);
        assert!(decompress(&z[..z.len() - 1], "x").is_err());
        let mut extra = z.clone();
        extra.push(0);
        assert!(decompress(&extra, "x").is_err());
        let mut flipped = z.clone();
        let mid = z.len() / 2;
        flipped[mid] ^= 0x40;
        assert!(decompress(&flipped, "x").is_err());
    }
}
