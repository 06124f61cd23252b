//! The version checkpoint object, `{data_dir}/checkpoint/0`.
//!
//! Newer clusters write a `HummockVersionCheckpointEnvelope`: compression algorithm
//! (field 1), payload (field 2: the `HummockVersionCheckpoint` bytes, compressed), and the
//! xxHash64 (seed 0) of the payload as stored (field 3). Older clusters wrote the
//! `HummockVersionCheckpoint` bare. As RisingWave does, an envelope is recognised by its
//! checksum field; bytes without one are read as a bare checkpoint.
use std::collections::BTreeMap;
use std::io::{Read, Write};

use bytes::Bytes;

use crate::error::{Ctx, Error, Result};
use crate::model::{node, Tree, Version};
use crate::pb;
use crate::wire::{scan, xxh64, Node};

/// Checkpoint payload compression (`CheckpointCompressionAlgorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd,
    Lz4,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zstd => "zstd",
            Compression::Lz4 => "lz4",
        }
    }
    fn from_wire(v: i32) -> Option<Compression> {
        match v {
            0 => Some(Compression::None),
            1 => Some(Compression::Zstd),
            2 => Some(Compression::Lz4),
            _ => None,
        }
    }
    fn wire(self) -> i32 {
        match self {
            Compression::None => 0,
            Compression::Zstd => 1,
            Compression::Lz4 => 2,
        }
    }
}

/// The envelope around a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub node: Node<pb::HummockVersionCheckpointEnvelope>,
    pub compression: Compression,
    pub checksum: u64,
    /// Offset of the payload bytes in the object.
    pub payload_offset: usize,
}

/// A decoded checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// `None` for a bare (legacy) checkpoint.
    pub envelope: Option<Envelope>,
    pub node: Node<pb::HummockVersionCheckpoint>,
    pub version: Version,
    pub stale_objects: BTreeMap<u64, Node<pb::StaleObjects>>,
}

/// What reading an envelope found.
pub(crate) enum EnvelopeProbe {
    /// Not an envelope (no checksum field, or not a message of that shape).
    NotEnvelope,
    /// An envelope whose checksum does not match its payload.
    BadChecksum(Error),
    Envelope(Box<Checkpoint>),
}

fn field_value_offset(data: &[u8], number: u32) -> usize {
    scan(data)
        .ok()
        .and_then(|fs| fs.into_iter().rev().find(|f| f.number == number))
        .map_or(0, |f| f.value_start)
}

pub(crate) fn probe_envelope(file: &str, data: &Bytes) -> Result<EnvelopeProbe> {
    let Ok(env) = Node::<pb::HummockVersionCheckpointEnvelope>::decode(data) else {
        return Ok(EnvelopeProbe::NotEnvelope);
    };
    let Some(stored) = env.msg().checksum else {
        return Ok(EnvelopeProbe::NotEnvelope);
    };
    let payload = env.msg().payload.clone();
    let ctx = Ctx::new(file, data);
    let payload_offset = ctx.offset_of(&payload);
    let computed = xxh64(&payload, 0);
    if computed != stored {
        return Ok(EnvelopeProbe::BadChecksum(Error::Checksum {
            file: file.to_owned(),
            offset: field_value_offset(data, 3),
            stored,
            computed,
            covered: payload_offset..payload_offset + payload.len(),
        }));
    }
    let compression = Compression::from_wire(env.msg().compression_algorithm).ok_or_else(|| {
        Error::UnknownCompression {
            file: file.to_owned(),
            offset: field_value_offset(data, 1),
            value: env.msg().compression_algorithm,
        }
    })?;
    let decompress_err = |detail: String| Error::Decompress {
        file: file.to_owned(),
        algorithm: compression.name(),
        offset: payload_offset,
        detail,
    };
    let inner = match compression {
        Compression::None => payload,
        Compression::Zstd => Bytes::from(
            zstd::stream::decode_all(&payload[..]).map_err(|e| decompress_err(e.to_string()))?,
        ),
        Compression::Lz4 => {
            let mut out = Vec::new();
            lz4_flex::frame::FrameDecoder::new(&payload[..])
                .read_to_end(&mut out)
                .map_err(|e| decompress_err(e.to_string()))?;
            Bytes::from(out)
        }
    };
    let inner_name = format!("{file} (decompressed checkpoint payload)");
    let mut ckpt = decode_bare(&inner_name, &inner)?;
    ckpt.envelope = Some(Envelope {
        node: env,
        compression,
        checksum: stored,
        payload_offset,
    });
    Ok(EnvelopeProbe::Envelope(Box::new(ckpt)))
}

/// Decodes a bare `HummockVersionCheckpoint`.
pub(crate) fn decode_bare(file: &str, data: &Bytes) -> Result<Checkpoint> {
    let ctx = Ctx::new(file, data);
    let n: Node<pb::HummockVersionCheckpoint> = node(&ctx, data)?;
    let Some(vb) = n.msg().version.clone() else {
        return Err(Error::Malformed {
            file: file.to_owned(),
            message: "HummockVersionCheckpoint",
            offset: 0,
            detail: "it has no version (field 1)".into(),
        });
    };
    let version = Version::decode(&ctx, &vb)?;
    let stale_objects = n
        .msg()
        .stale_objects
        .iter()
        .map(|(k, b)| Ok((*k, node(&ctx, b)?)))
        .collect::<Result<_>>()?;
    Ok(Checkpoint {
        envelope: None,
        node: n,
        version,
        stale_objects,
    })
}

impl Checkpoint {
    /// Reads a checkpoint object (enveloped or bare); `file` names it in errors.
    pub fn from_bytes(file: &str, data: &Bytes) -> Result<Checkpoint> {
        match probe_envelope(file, data)? {
            EnvelopeProbe::Envelope(c) => Ok(*c),
            EnvelopeProbe::BadChecksum(e) => Err(e),
            EnvelopeProbe::NotEnvelope => decode_bare(file, data),
        }
    }

    fn inner_pristine(&self) -> Option<&Bytes> {
        let o = self.node.original()?;
        let m = self.node.msg();
        let version_same = m
            .version
            .as_ref()
            .is_some_and(|b| self.version.pristine_bytes() == Some(b));
        let stale_same = m.stale_objects.len() == self.stale_objects.len()
            && m.stale_objects
                .iter()
                .zip(&self.stale_objects)
                .all(|((k1, b), (k2, n))| k1 == k2 && n.original() == Some(b));
        (version_same && stale_same).then_some(o)
    }

    /// The `HummockVersionCheckpoint` bytes (inside the envelope, uncompressed).
    pub fn inner_bytes(&self, fresh: bool) -> Bytes {
        if !fresh {
            if let Some(b) = self.inner_pristine() {
                return b.clone();
            }
        }
        let mut m = self.node.msg().clone();
        m.version = Some(self.version.to_bytes(fresh));
        m.stale_objects = self
            .stale_objects
            .iter()
            .map(|(k, n)| (*k, n.to_bytes(fresh)))
            .collect();
        self.node.encode_msg(&m)
    }

    /// The object's bytes: the original ones when nothing changed; otherwise the
    /// checkpoint is encoded, compressed as before (zstd level 3, or an lz4 frame) and
    /// wrapped with a new checksum.
    pub fn encode(&self) -> Result<Bytes> {
        let Some(env) = &self.envelope else {
            return Ok(self.inner_bytes(false));
        };
        if let (Some(_), Some(o)) = (self.inner_pristine(), env.node.original()) {
            return Ok(o.clone());
        }
        let inner = self.inner_bytes(false);
        let payload = compress(env.compression, &inner)?;
        let mut node = env.node.clone();
        let m = node.msg_mut();
        m.compression_algorithm = env.compression.wire();
        m.checksum = Some(xxh64(&payload, 0));
        m.payload = Bytes::from(payload);
        Ok(node.encode())
    }
}

/// Compresses a checkpoint payload the way RisingWave's writer does.
pub fn compress(c: Compression, data: &[u8]) -> Result<Vec<u8>> {
    let err = |detail: String| Error::Compress {
        algorithm: c.name(),
        detail,
    };
    match c {
        Compression::None => Ok(data.to_vec()),
        Compression::Zstd => zstd::stream::encode_all(data, 3).map_err(|e| err(e.to_string())),
        Compression::Lz4 => {
            let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
            enc.write_all(data).map_err(|e| err(e.to_string()))?;
            enc.finish().map_err(|e| err(e.to_string()))
        }
    }
}

/// Wraps checkpoint bytes in an envelope (for tests and tools that write checkpoints).
pub fn wrap_envelope(c: Compression, checkpoint: &[u8]) -> Result<Bytes> {
    use prost::Message;
    let payload = compress(c, checkpoint)?;
    let env = pb::HummockVersionCheckpointEnvelope {
        compression_algorithm: c.wire(),
        checksum: Some(xxh64(&payload, 0)),
        payload: Bytes::from(payload),
    };
    Ok(Bytes::from(env.encode_to_vec()))
}
