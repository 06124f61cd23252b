//! Meta backups: the snapshot file `{backup_dir}/{id}.snapshot` and `{backup_dir}/manifest.json`.
//!
//! Snapshot file layout (all integers little-endian):
//! `format_version: u32 | snapshot id: u64 | body | xxHash64(seed 0) of all bytes before: u64`.
//! Body of format 2: a positional list of sections; each is `count: u32` then `count`
//! elements, each `len: u32` (or `0u32, len: u64` for 4 GiB and more) then that many bytes
//! of JSON. Section 0 is the SQL migrations table, section 1 holds one element: the
//! `HummockVersion` in protobuf's JSON mapping; the rest are meta store tables.
//! Body of format 1: two lists (`count: u32`, then `len: u32` + bytes each) of default
//! column-family keys and values, then `len: u32` + the `HummockVersion` protobuf, then
//! further protobuf messages and lists.
use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::Version;
use crate::pbjson;
use crate::wire::xxh64;

/// A decoded meta snapshot (only the Hummock version is read from its body).
#[derive(Debug, Clone, PartialEq)]
pub struct MetaSnapshot {
    pub format_version: u32,
    pub id: u64,
    pub version: Version,
    /// Number of body sections (format 2) or top-level items found (format 1).
    pub sections: usize,
    pub checksum: u64,
    /// Parts of the JSON-carried version that were not carried into `version`.
    pub omitted_from_json: Vec<String>,
}

struct Reader<'a> {
    file: &'a str,
    data: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        match self.pos.checked_add(n) {
            Some(e) if e <= self.end => {
                let s = &self.data[self.pos..e];
                self.pos = e;
                Ok(s)
            }
            _ => Err(Error::Truncated {
                file: self.file.to_owned(),
                message: "meta snapshot",
                offset: self.pos,
                detail: format!("{what} needs {n} bytes, {} remain", self.end - self.pos),
            }),
        }
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    /// A format-2 element: its length prefix, then its bytes.
    fn element(&mut self, what: &str) -> Result<(usize, &'a [u8])> {
        let len = match self.u32(what)? {
            0 => {
                let l = self.u64(what)?;
                usize::try_from(l).map_err(|_| Error::Truncated {
                    file: self.file.to_owned(),
                    message: "meta snapshot",
                    offset: self.pos,
                    detail: format!("{what} claims {l} bytes"),
                })?
            }
            l => l as usize,
        };
        let at = self.pos;
        Ok((at, self.take(len, what)?))
    }
}

/// Checks the structure of a snapshot body without the checksum: used to recognise one.
pub(crate) fn looks_like_snapshot(data: &[u8]) -> bool {
    if data.len() < 20 {
        return false;
    }
    let fv = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let mut r = Reader {
        file: "",
        data,
        pos: 12,
        end: data.len() - 8,
    };
    match fv {
        2 => {
            let mut sections = 0;
            while r.pos < r.end {
                let Ok(n) = r.u32("") else { return false };
                for _ in 0..n {
                    if r.element("").is_err() {
                        return false;
                    }
                }
                sections += 1;
            }
            sections >= 2
        }
        1 => {
            for _ in 0..2 {
                let Ok(n) = r.u32("") else { return false };
                for _ in 0..n {
                    let Ok(l) = r.u32("") else { return false };
                    if r.take(l as usize, "").is_err() {
                        return false;
                    }
                }
            }
            let Ok(l) = r.u32("") else { return false };
            r.take(l as usize, "").is_ok()
        }
        _ => false,
    }
}

impl MetaSnapshot {
    /// Reads a snapshot file; `file` names it in errors.
    pub fn from_bytes(file: &str, data: &Bytes) -> Result<MetaSnapshot> {
        if data.len() < 20 {
            return Err(Error::Truncated {
                file: file.to_owned(),
                message: "meta snapshot",
                offset: 0,
                detail: format!(
                    "header and checksum need 20 bytes, the file has {}",
                    data.len()
                ),
            });
        }
        let end = data.len() - 8;
        let mut tail = [0u8; 8];
        tail.copy_from_slice(&data[end..]);
        let stored = u64::from_le_bytes(tail);
        let computed = xxh64(&data[..end], 0);
        if stored != computed {
            return Err(Error::Checksum {
                file: file.to_owned(),
                offset: end,
                stored,
                computed,
                covered: 0..end,
            });
        }
        let mut r = Reader {
            file,
            data,
            pos: 0,
            end,
        };
        let format_version = r.u32("format version")?;
        let id = r.u64("snapshot id")?;
        match format_version {
            2 => {
                let n0 = r.u32("section 0 count")?;
                for _ in 0..n0 {
                    r.element("section 0 element")?;
                }
                let n1 = r.u32("section 1 count")?;
                if n1 != 1 {
                    return Err(Error::Malformed {
                        file: file.to_owned(),
                        message: "meta snapshot",
                        offset: r.pos - 4,
                        detail: format!("section 1 must hold one Hummock version, it holds {n1}"),
                    });
                }
                let (at, json) = r.element("Hummock version")?;
                let value: serde_json::Value =
                    serde_json::from_slice(json).map_err(|e| Error::Json {
                        file: file.to_owned(),
                        offset: at + json_offset(json, &e),
                        detail: e.to_string(),
                    })?;
                let (bin, omitted) =
                    pbjson::version_from_json(&value).map_err(|detail| Error::Malformed {
                        file: file.to_owned(),
                        message: "HummockVersion (JSON)",
                        offset: at,
                        detail,
                    })?;
                let name = format!("{file} (Hummock version at byte {at}, re-encoded from JSON)");
                let version = Version::from_bytes(&name, &Bytes::from(bin))?;
                let mut sections = 2;
                while r.pos < r.end {
                    let n = r.u32("section count")?;
                    for _ in 0..n {
                        r.element("section element")?;
                    }
                    sections += 1;
                }
                Ok(MetaSnapshot {
                    format_version,
                    id,
                    version,
                    sections,
                    checksum: stored,
                    omitted_from_json: omitted,
                })
            }
            1 => {
                for what in ["default column family keys", "default column family values"] {
                    let n = r.u32(what)?;
                    for _ in 0..n {
                        let l = r.u32(what)? as usize;
                        r.take(l, what)?;
                    }
                }
                let l = r.u32("Hummock version length")? as usize;
                let at = r.pos;
                r.take(l, "Hummock version")?;
                let version =
                    Version::decode(&crate::error::Ctx::new(file, data), &data.slice(at..at + l))?;
                Ok(MetaSnapshot {
                    format_version,
                    id,
                    version,
                    sections: 3,
                    checksum: stored,
                    omitted_from_json: Vec::new(),
                })
            }
            v => Err(Error::UnsupportedSnapshotFormat {
                file: file.to_owned(),
                version: v,
            }),
        }
    }
}

fn json_offset(text: &[u8], e: &serde_json::Error) -> usize {
    let (line, col) = (e.line(), e.column());
    let mut l = 1;
    for (i, b) in text.iter().enumerate() {
        if l == line {
            return i + col.saturating_sub(1);
        }
        if *b == b'\n' {
            l += 1;
        }
    }
    text.len()
}

/// `manifest.json` of a backup directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub manifest_id: u64,
    pub snapshot_metadata: Vec<SnapshotMetadata>,
}

/// One snapshot listed in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotMetadata {
    pub id: u64,
    pub hummock_version_id: u64,
    /// Object ids the snapshot's version needs (named `ssts` in the file).
    #[serde(rename = "ssts")]
    pub objects: Vec<u64>,
    #[serde(default)]
    pub format_version: u32,
    #[serde(default)]
    pub remarks: Option<String>,
    #[serde(default)]
    pub state_table_info: BTreeMap<String, ManifestTableInfo>,
    #[serde(default)]
    pub rw_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestTableInfo {
    #[serde(default)]
    pub committed_epoch: u64,
    #[serde(default)]
    pub compaction_group_id: u64,
}

impl Manifest {
    pub fn from_bytes(file: &str, data: &[u8]) -> Result<Manifest> {
        serde_json::from_slice(data).map_err(|e| Error::Json {
            file: file.to_owned(),
            offset: json_offset(data, &e),
            detail: e.to_string(),
        })
    }
}
