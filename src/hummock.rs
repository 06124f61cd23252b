//! Hummock object storage as metapitr sees it: the SST objects a cluster's version
//! references, checked after a restore (`--validate-integrity`), and the checkpoint of the
//! restored version that a restore writes there, as RisingWave's restore-meta does.
//!
//! Layout under the storage root: `{object_id}.data` per SST object, and
//! `checkpoint/0` holding the restored version (a zstd frame around envelope kind 5, whose
//! body is the protobuf `metapitr.HummockVersion`).

use bytes::Bytes;
use prost::Message;
use roaring::RoaringTreemap;

use crate::codec::{self, Kind};
use crate::error::{Error, Result};
use crate::model::State;
use crate::repo::Repo;

pub const CHECKPOINT_KEY: &str = "checkpoint/0";

pub fn object_key(object_id: u64) -> String {
    format!("{object_id}.data")
}

fn object_id_of(key: &str) -> Option<u64> {
    key.strip_suffix(".data")?.parse().ok()
}

/// The bytes the simulator writes for an SST object: its id and a checksum, enough for a
/// reader to tell the object is the one named.
pub fn sst_body(object_id: u64) -> Bytes {
    let mut b = Vec::with_capacity(12);
    b.extend_from_slice(&object_id.to_le_bytes());
    b.extend_from_slice(&crc32fast::hash(&object_id.to_le_bytes()).to_le_bytes());
    Bytes::from(b)
}

/// Every SST object id present in the storage (one LIST).
pub async fn list_objects(storage: &Repo) -> Result<RoaringTreemap> {
    Ok(storage
        .list("")
        .await?
        .iter()
        .filter_map(|(k, _)| object_id_of(k))
        .collect())
}

/// Checks that every object the state's version references exists; the error lists the
/// missing object ids.
pub async fn validate_integrity(storage: &Repo, state: &State) -> Result<u64> {
    let present = list_objects(storage).await?;
    let needed: RoaringTreemap = state.hummock.object_ids().collect();
    let missing = &needed - &present;
    if missing.is_empty() {
        return Ok(needed.len());
    }
    let shown: Vec<String> = missing.iter().take(20).map(|i| i.to_string()).collect();
    Err(Error::NotFound(format!(
        "{} of the {} SST objects the version at epoch {} references are missing from {}: {}{}; the garbage collector removed them or the storage is not the one the cluster used",
        missing.len(),
        needed.len(),
        state.epoch,
        storage.url(),
        shown.join(", "),
        if missing.len() > 20 { ", ..." } else { "" }
    )))
}

/// Writes the restored version as the storage's checkpoint.
pub async fn write_checkpoint(storage: &Repo, state: &State) -> Result<()> {
    let payload = codec::seal(
        Kind::HummockCheckpoint,
        &state.hummock.to_proto().encode_to_vec(),
    );
    let z = codec::compress(&payload)?;
    storage.put_overwrite(CHECKPOINT_KEY, Bytes::from(z)).await
}
