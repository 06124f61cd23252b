//! The one error type of this crate. Every variant that comes from reading names the file
//! (as the caller named it) and a byte offset into it.
use std::ops::Range;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{file}: {message} at byte {offset} is cut short: {detail}; the object was not read or copied whole, fetch it again")]
    Truncated {
        file: String,
        message: &'static str,
        offset: usize,
        detail: String,
    },
    #[error("{file}: {message} at byte {offset} does not decode: {detail}; this is not a RisingWave {message}, or it is damaged")]
    Malformed {
        file: String,
        message: &'static str,
        offset: usize,
        detail: String,
    },
    #[error("{file}: checksum at byte {offset} is {stored:#018x} but bytes {}..{} hash to {computed:#018x}; the object is damaged, use another copy", covered.start, covered.end)]
    Checksum {
        file: String,
        offset: usize,
        stored: u64,
        computed: u64,
        covered: Range<usize>,
    },
    #[error("{file}: compression algorithm {value} (at byte {offset}) is not one RisingWave writes (0 none, 1 zstd, 2 lz4)")]
    UnknownCompression {
        file: String,
        offset: usize,
        value: i32,
    },
    #[error("{file}: the {algorithm} payload at byte {offset} does not decompress: {detail}")]
    Decompress {
        file: String,
        algorithm: &'static str,
        offset: usize,
        detail: String,
    },
    #[error("compressing a checkpoint payload with {algorithm} failed: {detail}")]
    Compress {
        algorithm: &'static str,
        detail: String,
    },
    #[error("{file}: meta snapshot format version {version} (at byte 0) is not supported; this reader knows versions 1 and 2")]
    UnsupportedSnapshotFormat { file: String, version: u32 },
    #[error("{file}: invalid JSON at byte {offset}: {detail}")]
    Json {
        file: String,
        offset: usize,
        detail: String,
    },
    #[error("{file}: not a RisingWave Hummock metadata object ({detail}); expected a checkpoint, a version, a version delta, a meta snapshot or a backup manifest.json")]
    Unrecognized { file: String, detail: String },
    #[error("delta {delta_id} follows version {prev_id}, but the version is {version_id}: apply deltas in order, starting from the one whose prev_id is {version_id}")]
    PrevIdMismatch {
        delta_id: u64,
        prev_id: u64,
        version_id: u64,
    },
    #[error("delta {delta_id}, compaction group {group_id}: {detail}")]
    Apply {
        delta_id: u64,
        group_id: u64,
        detail: String,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Where the bytes being read came from, for error messages: the file name and the
/// offset of the buffer being decoded within it.
#[derive(Debug, Clone)]
pub struct Ctx<'a> {
    pub file: &'a str,
    root: &'a [u8],
}

impl<'a> Ctx<'a> {
    pub fn new(file: &'a str, root: &'a [u8]) -> Self {
        Ctx { file, root }
    }

    /// Offset of `part` within the root buffer, when `part` is a slice of it (sub-messages
    /// are zero-copy slices); 0 otherwise.
    pub fn offset_of(&self, part: &[u8]) -> usize {
        let root = self.root.as_ptr() as usize;
        let p = part.as_ptr() as usize;
        if p >= root && p + part.len() <= root + self.root.len() {
            p - root
        } else {
            0
        }
    }

    pub fn node_error(&self, part: &[u8], e: crate::wire::NodeError) -> Error {
        let offset = self.offset_of(part) + e.offset;
        if e.truncated {
            Error::Truncated {
                file: self.file.to_owned(),
                message: e.message,
                offset,
                detail: e.detail,
            }
        } else {
            Error::Malformed {
                file: self.file.to_owned(),
                message: e.message,
                offset,
                detail: e.detail,
            }
        }
    }
}
