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
//!                              5 hummock checkpoint, 6 verify state
//!      5    1 format_version   1
//!      6    2 reserved         0
//!      8    8 body_len         bytes of body
//!     16    n body             kind-specific (a protobuf message, except kind 4)
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
    VerifyState = 6,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Snapshot => "snapshot",
            Kind::Manifest => "manifest",
            Kind::SegmentIndex => "segment index",
            Kind::PinSet => "pin set",
            Kind::HummockCheckpoint => "hummock checkpoint",
            Kind::VerifyState => "verify state",
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
    let expected = body_len.checked_add((HEADER_LEN + TRAILER_LEN) as u64);
    if expected != Some(bytes.len() as u64) {
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
        .map_err(|e| Error::internal(format!("zstd: {e}")))?;
    enc.include_checksum(true)
        .and_then(|_| enc.include_contentsize(true))
        .map_err(|e| Error::internal(format!("zstd: {e}")))?;
    enc.compress(payload)
        .map_err(|e| Error::internal(format!("zstd: {e}")))
}

/// Output reserved before decoding a frame is at most this many times the frame's length
/// (plus [`DECODE_CHUNK`]); a frame that declares more grows its output as it decodes.
pub const PREALLOC_RATIO: usize = 8;
/// The smallest step by which the output of a frame grows while it decodes.
pub const DECODE_CHUNK: usize = 128 << 10;
/// The largest zstd window (log2 bytes) a frame may need when it is decoded in steps:
/// 8 MiB, four times what level [`ZSTD_LEVEL`] writes. A frame whose whole declared content
/// fits the reserved output decodes in one pass and needs no window buffer.
pub const WINDOW_LOG_MAX: u32 = 23;

/// The zstd frame magic number, little-endian.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

fn zstd_internal(code: usize) -> Error {
    Error::internal(format!("zstd: {}", zstd::zstd_safe::get_error_name(code)))
}

/// Decompresses one zstd frame, verifying its content checksum.
///
/// Memory is bounded by what the frame holds, not by what it claims: the declared content
/// size must be at most [`MAX_PAYLOAD`]; the output reserved up front is the declared size
/// only when that is at most [`PREALLOC_RATIO`] times the frame's length plus
/// [`DECODE_CHUNK`], and otherwise grows (at most doubling, never past the declared size) as
/// bytes actually decode; a frame that cannot decode in one pass may not need a window above
/// 2^[`WINDOW_LOG_MAX`] bytes.
pub fn decompress(data: &[u8], what: &str) -> Result<Vec<u8>> {
    if data.len() < ZSTD_MAGIC.len() || data[..4] != ZSTD_MAGIC {
        return Err(Error::corrupt(what, 0, "not a zstd frame"));
    }
    let size = zstd::zstd_safe::get_frame_content_size(data)
        .map_err(|_| Error::corrupt(what, 0, "not a zstd frame"))?
        .ok_or_else(|| Error::corrupt(what, 0, "zstd frame does not declare its content size"))?;
    let declared = match usize::try_from(size) {
        Ok(n) if size <= MAX_PAYLOAD => n,
        _ => {
            return Err(Error::corrupt(
                what,
                0,
                format!("declared size {size} is implausible"),
            ))
        }
    };
    // Where the first frame ends, from its block headers alone. Anything after it would be
    // silently ignored, so refuse it.
    let frame_len = zstd::zstd_safe::find_frame_compressed_size(data)
        .map_err(|_| Error::corrupt(what, 0, "zstd frame is truncated"))?;
    if frame_len != data.len() {
        return Err(Error::corrupt(
            what,
            frame_len as u64,
            format!(
                "{} trailing bytes after the zstd frame",
                data.len().saturating_sub(frame_len)
            ),
        ));
    }
    DCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        let dctx = match slot.as_mut() {
            Some(d) => {
                // A frame that failed part-way leaves the context mid-frame.
                d.reset(zstd::zstd_safe::ResetDirective::SessionOnly)
                    .map_err(zstd_internal)?;
                d
            }
            None => {
                let mut d = zstd::zstd_safe::DCtx::try_create().ok_or_else(|| {
                    Error::internal("zstd: cannot create a decompression context")
                })?;
                d.set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(WINDOW_LOG_MAX))
                    .map_err(zstd_internal)?;
                slot.insert(d)
            }
        };
        decompress_frame(dctx, data, declared, what)
    })
}

thread_local! {
    /// One decompression context per thread, reused: creating one allocates (and the
    /// kernel zeroes) a window's worth of memory, which dominated decoding small segments.
    static DCTX: std::cell::RefCell<Option<zstd::zstd_safe::DCtx<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn decompress_frame(
    dctx: &mut zstd::zstd_safe::DCtx<'static>,
    data: &[u8],
    declared: usize,
    what: &str,
) -> Result<Vec<u8>> {
    let bad = |reason: String| Error::corrupt(what, 0, reason);
    let initial = declared.min(
        data.len()
            .saturating_mul(PREALLOC_RATIO)
            .saturating_add(DECODE_CHUNK),
    );
    let mut out: Vec<u8> = Vec::with_capacity(initial);
    let mut input = zstd::zstd_safe::InBuffer::around(data);
    loop {
        if out.len() == out.capacity() && out.len() < declared {
            let grow = (declared - out.len()).min(out.len().max(DECODE_CHUNK));
            out.reserve_exact(grow);
        }
        let before = (input.pos(), out.len());
        let pos = out.len();
        // Decoding sets the length of `out` to what has been written.
        let step = dctx.decompress_stream(
            &mut zstd::zstd_safe::OutBuffer::around_pos(&mut out, pos),
            &mut input,
        );
        match step {
            // The frame is complete and its content checksum verified.
            Ok(0) => break,
            Ok(_) if (input.pos(), out.len()) == before => {
                return Err(bad(if out.len() >= declared {
                    format!("zstd frame holds more than the {declared} bytes it declares")
                } else {
                    "zstd frame is truncated".into()
                }));
            }
            Ok(_) => {}
            Err(code) => {
                return Err(bad(format!(
                    "zstd frame does not decode: {}",
                    zstd::zstd_safe::get_error_name(code)
                )))
            }
        }
    }
    if out.len() != declared {
        return Err(bad("zstd frame is shorter than it declares".into()));
    }
    Ok(out)
}

pub fn le8(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    a
}

pub fn le4(b: &[u8]) -> [u8; 4] {
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

    #[test]
    fn a_body_length_near_the_largest_is_corrupt() {
        // Adding the header and trailer to this body length used to overflow (a panic in
        // debug builds).
        let mut env = seal(Kind::PinSet, b"body");
        for len in [u64::MAX, u64::MAX - 19, u64::MAX - 20] {
            env[8..16].copy_from_slice(&len.to_le_bytes());
            let e = open(Kind::PinSet, &env, "p").unwrap_err().to_string();
            assert!(e.contains("at byte offset 8"), "{e}");
        }
    }

    /// A hand-made frame: 8-byte content size, content checksum flag, a window of
    /// 2^`window_log` bytes (not single-segment), one last RLE block of `rle_len` bytes and a
    /// checksum of zeros.
    fn claiming_frame(content_size: u64, window_log: u8, rle_len: u32) -> Vec<u8> {
        let mut f = ZSTD_MAGIC.to_vec();
        f.push(0xC4);
        f.push((window_log - 10) << 3);
        f.extend_from_slice(&content_size.to_le_bytes());
        let block = 1 | (1 << 1) | (rle_len << 3);
        f.extend_from_slice(&block.to_le_bytes()[..3]);
        f.push(0xAB);
        f.extend_from_slice(&[0; 4]);
        f
    }

    #[test]
    fn a_claimed_content_size_is_not_reserved_up_front() {
        // 22 bytes claiming the largest payload allowed: this used to reserve 4 GiB before
        // decoding anything. Now at most PREALLOC_RATIO x 22 + DECODE_CHUNK is reserved,
        // and the frame fails when its one block ends short of the claim.
        let f = claiming_frame(MAX_PAYLOAD, 21, 1000);
        assert_eq!(f.len(), 22);
        let e = decompress(&f, "x").unwrap_err().to_string();
        assert!(e.contains("at byte offset 0") && e.contains("zstd"), "{e}");
        // One byte more than the limit is refused from the header alone.
        let f = claiming_frame(MAX_PAYLOAD + 1, 21, 1000);
        assert!(decompress(&f, "x")
            .unwrap_err()
            .to_string()
            .contains("implausible"));
    }

    #[test]
    fn a_frame_decoded_in_steps_may_not_need_a_huge_window() {
        // Claims 64 MiB (more than is reserved for 22 bytes, so it decodes in steps) with
        // a 16 MiB window, above WINDOW_LOG_MAX: refused before the window is allocated.
        let f = claiming_frame(64 << 20, 24, 1000);
        let e = decompress(&f, "x").unwrap_err().to_string();
        assert!(e.contains("does not decode"), "{e}");
        // The same claim with a 2 MiB window decodes its block, then fails on the size.
        let f = claiming_frame(64 << 20, 21, 1000);
        assert!(decompress(&f, "x").is_err());
    }

    #[test]
    fn highly_compressed_payloads_still_decode() {
        // Far more than PREALLOC_RATIO x the frame: the output grows while decoding.
        for payload in [
            vec![0u8; 12 << 20],
            (0..3_000_000u32).map(|i| (i % 7) as u8).collect::<Vec<_>>(),
            Vec::new(),
            vec![7u8; 1],
        ] {
            let z = compress(&payload).unwrap();
            assert_eq!(decompress(&z, "x").unwrap(), payload);
        }
    }

    #[test]
    fn only_a_zstd_frame_is_accepted() {
        // A skippable frame (magic 0x184D2A50, 0 bytes of content) used to decode to an
        // empty payload.
        let skippable = [0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0];
        assert!(decompress(&skippable, "x")
            .unwrap_err()
            .to_string()
            .contains("not a zstd frame"));
        for short in [
            &[][..],
            &[0x28][..],
            &ZSTD_MAGIC[..],
            &[0x28, 0xb5, 0x2f, 0xfd, 0xC4][..],
        ] {
            assert!(decompress(short, "x").is_err());
        }
    }
}
