//! Where RisingWave keeps Hummock objects in its object store (`data_directory` is the
//! system parameter; paths are relative to the bucket or the local root).
//!
//! SST objects are `{data_dir}/{prefix}{object_id}.data`. On S3 and S3-compatible stores
//! the prefix is always `{crc32(object_id as big-endian u64) % 256}/`. On the OpenDAL
//! engines (local `fs://`, GCS, Azure Blob, OSS, OBS, HDFS, WebHDFS) it is the same hashed
//! prefix when the cluster uses the new prefix strategy (system parameter
//! `use_new_object_prefix_strategy`, set for clusters created by newer releases) and empty
//! otherwise; the in-memory store uses no prefix.

/// Number of hashed prefixes.
pub const NUM_PREFIXES: u32 = 256;

/// Suffix of SST object files.
pub const SST_SUFFIX: &str = "data";

/// How object names are prefixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixStrategy {
    /// `{crc32 % 256}/`: S3 and MinIO always; OpenDAL engines with the new strategy.
    Hashed,
    /// No prefix: OpenDAL engines (incl. local fs) in clusters with the old strategy.
    Flat,
}

impl PrefixStrategy {
    /// The strategy of a store: `s3` (and `minio`) always hash; other engines hash when
    /// `use_new_object_prefix_strategy` is on.
    pub fn for_store(is_s3: bool, use_new_object_prefix_strategy: bool) -> PrefixStrategy {
        if is_s3 || use_new_object_prefix_strategy {
            PrefixStrategy::Hashed
        } else {
            PrefixStrategy::Flat
        }
    }
}

/// The hashed prefix of an object, with its trailing slash: `"{n}/"`.
pub fn hashed_prefix(object_id: u64) -> String {
    format!(
        "{}/",
        crc32fast::hash(&object_id.to_be_bytes()) % NUM_PREFIXES
    )
}

/// Path of an SST object under `data_dir`.
pub fn sst_object_path(data_dir: &str, object_id: u64, strategy: PrefixStrategy) -> String {
    let prefix = match strategy {
        PrefixStrategy::Hashed => hashed_prefix(object_id),
        PrefixStrategy::Flat => String::new(),
    };
    format!("{data_dir}/{prefix}{object_id}.{SST_SUFFIX}")
}

/// S3 path of an SST object (always hashed).
pub fn s3_sst_path(data_dir: &str, object_id: u64) -> String {
    sst_object_path(data_dir, object_id, PrefixStrategy::Hashed)
}

/// Local file-system path of an SST object under the store root `root`
/// (`fs://{root}` state store), with or without the new prefix strategy.
pub fn local_sst_path(
    root: &str,
    data_dir: &str,
    object_id: u64,
    new_prefix_strategy: bool,
) -> String {
    let strategy = PrefixStrategy::for_store(false, new_prefix_strategy);
    format!(
        "{}/{}",
        root.trim_end_matches('/'),
        sst_object_path(data_dir, object_id, strategy)
    )
}

/// Object id and suffix of an object path (`.../{id}.{suffix}`), as RisingWave's
/// `get_object_id_from_path` reads it; `None` when the name does not have that shape.
pub fn parse_object_path(path: &str) -> Option<(u64, &str)> {
    let name = path.rsplit('/').next()?;
    let (id, suffix) = name.rsplit_once('.')?;
    Some((id.parse().ok()?, suffix))
}

/// `{data_dir}/checkpoint/0`, the version checkpoint.
pub fn checkpoint_path(data_dir: &str) -> String {
    format!("{data_dir}/checkpoint/0")
}

/// `{data_dir}/archive`, where archived versions go (`{archive}/{version_id}`).
pub fn archive_dir(data_dir: &str) -> String {
    format!("{data_dir}/archive")
}

/// `{backup_dir}/manifest.json`.
pub fn backup_manifest_path(backup_dir: &str) -> String {
    format!("{backup_dir}/manifest.json")
}

/// `{backup_dir}/{id}.snapshot`.
pub fn backup_snapshot_path(backup_dir: &str, id: u64) -> String {
    format!("{backup_dir}/{id}.snapshot")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_prefix_is_crc32_of_big_endian_id_mod_256() {
        // crc32 (IEEE) of [0,0,0,0,0,0,0,1] is 0x1225EFFF (Python's zlib.crc32 agrees).
        assert_eq!(crc32fast::hash(&1u64.to_be_bytes()), 0x1225_EFFF_u32);
        assert_eq!(hashed_prefix(1), "255/");
        assert_eq!(s3_sst_path("hummock_001", 1), "hummock_001/255/1.data");
        assert_eq!(
            local_sst_path("/data/", "hummock_001", 42, false),
            "/data/hummock_001/42.data"
        );
        assert_eq!(
            parse_object_path("hummock_001/182/42.data"),
            Some((42, "data"))
        );
        assert_eq!(parse_object_path("x/checkpoint/0"), None);
        assert_eq!(checkpoint_path("hummock_001"), "hummock_001/checkpoint/0");
    }
}
