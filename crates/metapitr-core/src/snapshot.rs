//! Base snapshots: the whole metadata state at one epoch, in the repo and as the local
//! checkpoint of a meta store directory.
//!
//! Both use the same bytes: a zstd frame around a snapshot envelope ([`crate::codec`],
//! kind 1) whose body is the model's encoding of a state ([`crate::model_api::Model::encode_state`]; today's model: the protobuf `metapitr.model.MetaState`).

use std::path::Path;

use bytes::Bytes;
use tracing::info;

use crate::codec::{self, Kind};
use crate::error::{Error, Result};
use crate::model_api::Model;
use crate::pb::{Manifest, SnapshotEntry};
use crate::repo::{snapshot_entry_key, snapshot_key, Repo};
use crate::wal::fsync_dir;

/// The local checkpoint of a meta store directory.
pub const CHECKPOINT_FILE: &str = "CHECKPOINT";

/// A state as stored bytes (zstd frame around the envelope).
pub fn encode<M: Model>(state: &M) -> Result<Vec<u8>> {
    codec::compress(&codec::seal(Kind::Snapshot, &state.encode_state()))
}

pub fn decode<M: Model>(bytes: &[u8], what: &str) -> Result<M> {
    let payload = codec::decompress(bytes, what)?;
    decode_payload(&payload, what)
}

/// Decodes a snapshot payload (an envelope, not compressed).
pub fn decode_payload<M: Model>(payload: &[u8], what: &str) -> Result<M> {
    let body = codec::open(Kind::Snapshot, payload, what)?;
    M::decode_state(body).map_err(|e| Error::corrupt(what, codec::HEADER_LEN as u64, e))
}

/// Writes the checkpoint of a meta store directory atomically (temp file, fsync, rename,
/// directory fsync).
pub fn write_checkpoint<M: Model>(dir: &Path, state: &M) -> Result<()> {
    let bytes = encode(state)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
    let path = dir.join(CHECKPOINT_FILE);
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(&bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    fsync_dir(dir)
}

pub fn read_checkpoint<M: Model>(dir: &Path) -> Result<Option<M>> {
    let path = dir.join(CHECKPOINT_FILE);
    match std::fs::read(&path) {
        Ok(b) => decode(&b, &path.display().to_string()).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// Uploads a snapshot of `state` and lists it in the manifest. Uploading the same state
/// twice returns the existing entry.
pub async fn upload<M: Model>(repo: &Repo<M>, state: &M) -> Result<SnapshotEntry> {
    let key = snapshot_key(state.timeline(), state.lsn(), state.epoch());
    let s2 = state.clone();
    let payload =
        tokio::task::spawn_blocking(move || codec::seal(Kind::Snapshot, &s2.encode_state()))
            .await
            .map_err(|e| Error::internal(format!("snapshot encode task: {e}")))?;
    let raw_size = payload.len() as u64;
    let crc = codec::envelope_crc(&payload);
    let z = tokio::task::spawn_blocking(move || codec::compress(&payload))
        .await
        .map_err(|e| Error::internal(format!("snapshot compress task: {e}")))??;
    let stored_size = z.len() as u64;
    repo.put_new(&key, Bytes::from(z)).await?;
    let now = repo.clock().now_ms();
    let mut entry = SnapshotEntry {
        id: 0,
        timeline: state.timeline(),
        lsn: state.lsn(),
        max_committed_epoch: state.epoch(),
        safe_epoch: state.safe_epoch(),
        raw_size,
        stored_size,
        payload_crc32: crc,
        created_at_ms: now,
        keep: false,
    };
    let ids = state.id_marks();
    let m = repo
        .update_manifest(|m| {
            if m.snapshots.iter().any(|s| snapshot_entry_key(s) == key) {
                return Ok(false);
            }
            let mut e = entry;
            e.id = m.next_snapshot_id.max(1);
            m.next_snapshot_id = e.id + 1;
            m.snapshots.push(e);
            m.raise_id_high_water(&ids);
            Ok(true)
        })
        .await?;
    if let Some(e) = m.snapshots.iter().find(|s| snapshot_entry_key(s) == key) {
        entry = *e;
    }
    info!(
        id = entry.id,
        epoch = entry.max_committed_epoch,
        bytes = entry.stored_size,
        "snapshot uploaded"
    );
    Ok(entry)
}

/// Makes a lost base recoverable: uploads the checkpoint of a meta store directory (the
/// state at its lsn, which the WAL archived after it extends) as a snapshot. With
/// `only_if_needed`, it does so only when the repo cannot restore the archive's end on the
/// directory's timeline, and returns `None` otherwise (an archiver calls it after every
/// pass). Returns `None` too when the directory holds no checkpoint.
pub async fn reseed_from_checkpoint<M: Model>(
    repo: &Repo<M>,
    dir: &Path,
    only_if_needed: bool,
) -> Result<Option<SnapshotEntry>> {
    let Some(state) = read_checkpoint::<M>(dir)? else {
        return Ok(None);
    };
    if only_if_needed {
        let m = repo.load_manifest().await?.unwrap_or_default();
        let Some(tl) = m.timeline(state.timeline()) else {
            return Ok(None);
        };
        let end = tl.last().1;
        let restorable = crate::manifest::restorable_ranges(&m, state.timeline())
            .iter()
            .any(|(a, b)| (*a..=*b).contains(&end));
        let same = |s: &&SnapshotEntry| s.timeline == state.timeline() && s.lsn == state.lsn();
        if restorable || m.snapshots.iter().any(|s| same(&s)) {
            return Ok(None);
        }
    }
    upload(repo, &state).await.map(Some)
}

/// Fetches a snapshot and checks it against its manifest entry.
pub async fn fetch<M: Model>(repo: &Repo<M>, e: &SnapshotEntry) -> Result<M> {
    let key = snapshot_entry_key(e);
    let z = repo.get(&key).await?;
    let e = *e;
    tokio::task::spawn_blocking(move || {
        let payload = codec::decompress(&z, &key)?;
        if payload.len() as u64 != e.raw_size || codec::envelope_crc(&payload) != e.payload_crc32 {
            return Err(Error::corrupt(
                &key,
                0,
                "snapshot does not match the size and checksum the manifest recorded",
            ));
        }
        let s: M = decode_payload(&payload, &key)?;
        if s.lsn() != e.lsn || s.epoch() != e.max_committed_epoch || s.timeline() != e.timeline {
            return Err(Error::corrupt(
                &key,
                0,
                "snapshot's lsn, epoch or timeline differs from its manifest entry",
            ));
        }
        Ok(s)
    })
    .await
    .map_err(|e| Error::internal(format!("snapshot decode task: {e}")))?
}

/// The snapshots the repo lists, by id.
pub async fn list<M: Model>(repo: &Repo<M>) -> Result<Vec<SnapshotEntry>> {
    let mut v = repo
        .load_manifest()
        .await?
        .map(|m| m.snapshots)
        .unwrap_or_default();
    v.sort_by_key(|s| s.id);
    Ok(v)
}

/// Removes snapshots from the manifest, then deletes their objects. Unknown ids are an
/// error and nothing is deleted. A snapshot marked keep, or the one the retention window
/// starts from, is refused unless `force`.
pub async fn delete<M: Model>(
    repo: &Repo<M>,
    ids: &[u64],
    force: bool,
) -> Result<Vec<SnapshotEntry>> {
    let m = repo.manifest().await?;
    for id in ids {
        if let Some(s) = m.snapshot(*id).filter(|_| !force) {
            if s.keep {
                return Err(Error::invalid_input(format!(
                    "snapshot {id} is marked keep; run metapitr snapshot unkeep {id} first, or pass --force"
                )));
            }
            // The snapshot the restorable window starts from: nothing older is restorable.
            let base = crate::manifest::window_start(&m, s.timeline) == Some(s.max_committed_epoch);
            if base {
                return Err(Error::invalid_input(format!(
                    "snapshot {id} is where the retention window starts; deleting it would shrink the restorable window below the policy. Pass --force to delete it anyway"
                )));
            }
        }
        if m.snapshot(*id).is_none() {
            let known: Vec<String> = m.snapshots.iter().map(|s| s.id.to_string()).collect();
            return Err(Error::not_found(format!(
                "snapshot {id} is not in {} (snapshots: {}); see metapitr snapshot list",
                repo.url(),
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            )));
        }
    }
    if !force {
        refuse_shrinking(repo, &m, ids)?;
    }
    let mut removed = Vec::new();
    repo.update_manifest(|m| {
        removed = m
            .snapshots
            .iter()
            .filter(|s| ids.contains(&s.id))
            .cloned()
            .collect();
        m.snapshots.retain(|s| !ids.contains(&s.id));
        Ok(!removed.is_empty())
    })
    .await?;
    for s in &removed {
        repo.delete(&snapshot_entry_key(s)).await?;
    }
    Ok(removed)
}

/// Refuses a delete that would make some epoch unrestorable: without `--force`, deleting
/// snapshots may only remove bases that another snapshot or the WAL makes redundant.
fn refuse_shrinking<M: Model>(repo: &Repo<M>, m: &Manifest, ids: &[u64]) -> Result<()> {
    let mut after = m.clone();
    after.snapshots.retain(|s| !ids.contains(&s.id));
    let mut timelines: Vec<u32> = m.timelines.iter().map(|t| t.id).collect();
    timelines.extend(m.snapshots.iter().map(|s| s.timeline));
    timelines.sort_unstable();
    timelines.dedup();
    for tl in timelines {
        let now = crate::manifest::restorable_ranges(m, tl);
        let then = crate::manifest::restorable_ranges(&after, tl);
        let covered = |(a, b): &(u64, u64)| then.iter().any(|(x, y)| x <= a && b <= y);
        if let Some(lost) = now.iter().find(|r| !covered(r)) {
            return Err(Error::invalid_input(format!(
                "deleting snapshot(s) {} would reduce what {} can restore on timeline {tl}: \
                 epochs in {} would become unrestorable (restorable after the delete: {}); \
                 take a snapshot that covers them first (metapitr snapshot create), or pass \
                 --force to lose them",
                ids.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                repo.url(),
                crate::manifest::format_ranges(std::slice::from_ref(lost)),
                crate::manifest::format_ranges(&then)
            )));
        }
    }
    Ok(())
}
