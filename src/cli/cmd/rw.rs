//! `metapitr rw`: RisingWave's own Hummock metadata objects, read from files.
//!
//! `rw inspect FILE` detects and decodes a version checkpoint (`checkpoint/0`), a
//! `HummockVersion` or `HummockVersionDelta` blob, a meta snapshot (`{id}.snapshot`) or a
//! backup `manifest.json`; `rw apply VERSION DELTA...` prints the version the deltas lead
//! to. Damaged bytes exit 3 naming the file and the offset; an object of the wrong kind
//! exits 2.

use std::path::Path;

use metapitr_rw::{Error as RwError, Inspected};
use serde_json::Value;

use crate::cli::args::{RwApplyArgs, RwCmd, RwInspectArgs};
use crate::cli::common::out;
use crate::error::{Error, Result};

pub(crate) fn run(c: RwCmd) -> Result<()> {
    match c {
        RwCmd::Inspect(a) => inspect(a),
        RwCmd::Apply(a) => apply(a),
    }
}

/// Our error for one of RisingWave's readers: damage is corruption (exit 3) at the offset
/// the reader names; anything else is a wrong input (exit 2).
fn from_rw(file: &str, e: RwError) -> Error {
    let msg = e.to_string();
    match e {
        RwError::Truncated { offset, .. }
        | RwError::Malformed { offset, .. }
        | RwError::Checksum { offset, .. }
        | RwError::UnknownCompression { offset, .. }
        | RwError::Decompress { offset, .. }
        | RwError::Json { offset, .. } => Error::corrupt(file, offset as u64, msg),
        RwError::UnsupportedSnapshotFormat { .. } => Error::corrupt(file, 0, msg),
        _ => Error::invalid_input(msg),
    }
}

fn read(path: &Path) -> Result<(String, Inspected)> {
    let name = path.display().to_string();
    // A FIFO or a socket would block the read until some writer appears: only a regular
    // file (or what a symlink names) holds an object.
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::invalid_input(format!(
            "{name} is not a regular file; give the file an object was saved in"
        )));
    }
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let i = metapitr_rw::inspect_named(&name, &data).map_err(|e| from_rw(&name, e))?;
    Ok((name, i))
}

fn print(v: &Value, json: bool) -> Result<()> {
    if json {
        return out(v.to_string());
    }
    let field = |k: &str| {
        v.get(k)
            .map(|x| x.to_string())
            .unwrap_or_else(|| "-".into())
    };
    out(format!("kind: {}", v["kind"].as_str().unwrap_or("-")))?;
    for k in ["version_id", "max_committed_epoch"] {
        if v.get(k).is_some() {
            out(format!("{k}: {}", field(k)))?;
        }
    }
    if let Some(groups) = v.get("groups").and_then(Value::as_array) {
        out(format!("groups: {}", groups.len()))?;
    }
    if let Some(ids) = v.get("object_ids").and_then(Value::as_array) {
        out(format!("object_ids: {}", ids.len()))?;
    }
    Ok(())
}

fn inspect(a: RwInspectArgs) -> Result<()> {
    let (_, i) = read(&a.file)?;
    print(&i.to_json(), a.json)
}

fn apply(a: RwApplyArgs) -> Result<()> {
    let (name, base) = read(&a.version)?;
    let Some(version) = base.version() else {
        return Err(Error::invalid_input(format!(
            "{name} is a {}, not a Hummock version; give a version, a checkpoint or a meta \
             snapshot first",
            base.kind()
        )));
    };
    let mut deltas = Vec::with_capacity(a.deltas.len());
    for p in &a.deltas {
        let (name, i) = read(p)?;
        match i {
            Inspected::Delta(d) => deltas.push(d),
            other => {
                return Err(Error::invalid_input(format!(
                    "{name} is a {}, not a HummockVersionDelta",
                    other.kind()
                )))
            }
        }
    }
    let after =
        metapitr_rw::apply(version, deltas.iter().map(|d| &**d)).map_err(|e| from_rw(&name, e))?;
    print(&Inspected::Version(Box::new(after)).to_json(), a.json)
}
