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

use crate::keys::sst_object_id as object_id_of;
pub use crate::keys::{sst_object_key as object_key, HUMMOCK_CHECKPOINT_KEY as CHECKPOINT_KEY};

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
    Err(Error::not_found(format!(
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

/// Splits a storage URL into its base and last path segment, the way a meta service keeps
/// it in `state_store` (`hummock+` base) and `data_directory`:
/// `s3://bucket/hummock_001` → (`s3://bucket`, `hummock_001`). A URL with no path after
/// its host or bucket has an empty directory.
pub fn split_location(url: &str) -> (&str, &str) {
    let url = url.trim_end_matches('/');
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].rfind('/') {
        Some(i) if after_scheme + i > after_scheme => {
            (&url[..after_scheme + i], &url[after_scheme + i + 1..])
        }
        _ => (url, ""),
    }
}

/// The Hummock storage a state was recorded against, from its `state_store` and
/// `data_directory` system parameters, as one URL (None: the parameters are not set).
pub fn recorded_location(state: &State) -> Option<String> {
    let store = state.params.get("state_store")?;
    let base = store.strip_prefix("hummock+").unwrap_or(store);
    let dir = state.params.get("data_directory").map(String::as_str);
    Some(crate::repo::join_location(base, dir))
}

/// Compares two storage locations, ignoring a trailing `/`.
fn same_location(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// The storage guard of a restore: the Hummock storage given (`location`, URL with the
/// directory joined) must be the one the restored metadata was recorded against, since a
/// restore copies no SSTs. With `overwrite`, the restored metadata is pointed at the given
/// storage instead (its `state_store` and `data_directory` parameters are rewritten), as
/// after copying the SSTs there.
pub fn guard_storage(state: &mut State, location: &str, overwrite: bool) -> Result<()> {
    let recorded = recorded_location(state);
    if recorded
        .as_deref()
        .is_some_and(|r| same_location(r, location))
    {
        return Ok(());
    }
    if !overwrite {
        return Err(Error::invalid_input(format!(
            "the restored metadata was recorded against Hummock storage {}, not {location}; \
             a restore copies no SSTs, so give the cluster's own storage \
             (--hummock-storage-url/--hummock-storage-directory), or pass \
             --overwrite-hummock-storage-endpoint if its SSTs were copied to {location}",
            recorded.as_deref().unwrap_or("(none recorded)")
        )));
    }
    let (base, dir) = split_location(location);
    state
        .params
        .insert("state_store".into(), format!("hummock+{base}"));
    state.params.insert("data_directory".into(), dir.into());
    Ok(())
}
