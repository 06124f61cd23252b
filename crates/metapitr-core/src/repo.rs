//! The repo: where archived WAL segments, snapshots and manifests live, in any object
//! store (file://, s3://, memory://).
//!
//! Layout under the repo root (every object one zstd frame, see [`crate::codec`]):
//!
//! ```text
//! manifest/{version:020}.mpm.zst            the manifest, one immutable object per version
//! wal/{timeline:08}/{first_lsn:020}.wal.zst archived WAL segments
//! wal-index/{timeline:08}/{first_lsn:020}.idx.zst  runs of segment entries moved out of the manifest
//! snapshots/{timeline:08}-{lsn:020}-{epoch:020}.snap.zst  base snapshots
//! ```
//!
//! Objects are immutable and written with a conditional create. The manifest is advanced by
//! compare-and-swap: version N+1 is created only if no one else created it first, so two
//! writers can never both believe they moved it. Planning a restore reads the newest
//! manifest (one LIST of `manifest/`, which holds a bounded number of versions) and then only
//! the objects it names.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use prost::Message;
use tokio::sync::Mutex;
use tracing::{debug, info, warn};

use crate::clock::SharedClock;
use crate::codec::{self, Kind};
use crate::encrypting_object_store::EncryptingObjectStore;
use crate::error::{Error, ErrorKind, Result};
use crate::instrumented_object_store::{InstrumentedObjectStore, StoreStats};
use std::marker::PhantomData;

use crate::model_api::{raise_marks, IdMarks, Model};
use crate::pb::{IdMark, Manifest, SegmentEntry, SnapshotEntry, TimelineEntry};
use crate::retrying_object_store::RetryingObjectStore;

// The S3 backend, with its HTTP client, only in builds with the `s3` feature.
#[cfg(feature = "s3")]
mod s3;

pub use crate::retrying_object_store::RetryPolicy;

/// Manifest versions are pruned in steps of this many, keeping at least the newest
/// `MANIFEST_KEEP` (and at most twice that) in the repo.
pub const MANIFEST_KEEP: u64 = 64;

/// What a conditional create found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// This call wrote the object.
    New,
    /// The object already held exactly these bytes (an earlier attempt landed).
    AlreadyThere,
}

/// A handle on a repo: the manifest's compare-and-swap and the repo's objects, read and
/// written through a stack of object stores, from the bottom up:
///
/// 1. the backend (`memory://`, `file://`, `s3://`), as given, behind [`PrefixStore`] when
///    the repo is a directory inside it, so that the layers above see the repo's keys;
/// 2. [`InstrumentedObjectStore`], which counts what reaches the backend: every attempt of
///    a retried call, and the bytes as stored;
/// 3. [`RetryingObjectStore`], which retries transient failures: it sees the backend's
///    errors as they are, and retries nothing the layer above refuses;
/// 4. [`EncryptingObjectStore`], on top, which seals what is written and opens what is
///    read: once per call, however often the call was retried, and a wrong key or a
///    damaged object (which no retry can mend) fails at once. The keys it binds into the
///    objects are the repo's keys, as the prefix store below hands them on.
///
/// A repo holds one model's history (`M`: see [`crate::model_api`]).
#[derive(Clone)]
pub struct Repo<M> {
    /// The backend, as given ([`Repo::object_store`]).
    backend: Arc<dyn ObjectStore>,
    /// The backend under the repo's directory, counted.
    counted: Arc<InstrumentedObjectStore>,
    /// The whole stack, addressed by the repo's keys.
    store: Arc<dyn ObjectStore>,
    url: String,
    clock: SharedClock,
    retry: RetryPolicy,
    /// Written into every manifest version this handle creates.
    writer_id: u64,
    /// The newest manifest this handle has seen, to skip a LIST on the hot path.
    cached: Arc<Mutex<Option<Manifest>>>,
    /// (timeline, writer epoch) this handle writes as: every manifest update checks that
    /// the timeline's writer epoch is still this one.
    fence: Option<(u32, u64)>,
    /// Client-side encryption of every object ([`crate::crypt`]).
    key: Option<crate::crypt::Key>,
    /// Manifest updates go on past a lost newest version. Default false.
    accept_lost: bool,
    model: PhantomData<fn() -> M>,
}

impl<M> std::fmt::Debug for Repo<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Repo({})", self.url)
    }
}

pub use crate::keys::{
    head_key, index_key, manifest_key, segment_key, segment_key_of, snapshot_entry_key,
    snapshot_key,
};
use crate::keys::{head_version, manifest_version};

/// What a LIST of `manifest/` says about the newest versions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ManifestListing {
    /// The newest manifest object (0: none).
    pub newest: u64,
    /// The newest head marker (0: none).
    pub head: u64,
}

impl ManifestListing {
    fn of(keys: &[(String, u64)]) -> Self {
        ManifestListing {
            newest: keys
                .iter()
                .filter_map(|(k, _)| manifest_version(k))
                .max()
                .unwrap_or(0),
            head: keys
                .iter()
                .filter_map(|(k, _)| head_version(k))
                .max()
                .unwrap_or(0),
        }
    }

    /// The newest version that is known to have been written but is not in the repo.
    pub fn lost(&self) -> Option<u64> {
        (self.head > self.newest).then_some(self.head)
    }
}

/// The S3 store of `url` (`bucket_path` is what follows `s3://`) and the repo's directory
/// in the bucket.
#[cfg(feature = "s3")]
fn open_s3(
    url: &str,
    bucket_path: &str,
    loc: &RepoLocation,
) -> Result<(Arc<dyn ObjectStore>, Path)> {
    s3::open(url, bucket_path, &loc.s3, loc.network)
}

#[cfg(not(feature = "s3"))]
fn open_s3(url: &str, _: &str, _: &RepoLocation) -> Result<(Arc<dyn ObjectStore>, Path)> {
    Err(Error::invalid_input(format!(
        "repo URL {url}: this build has no S3 support; build metapitr-core with its `s3` feature"
    )))
}

/// S3 settings for a repo. Every unset one comes from the standard AWS environment
/// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL, AWS_ALLOW_HTTP).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Options {
    /// e.g. `http://127.0.0.1:9000` for an S3-compatible server. Default: AWS.
    pub endpoint: Option<String>,
    /// Default: AWS_REGION, else `us-east-1`.
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Allow `http://` endpoints. Default: false.
    pub allow_http: Option<bool>,
}

/// Where a repo lives: a storage URL and a directory inside it, as a meta service's
/// `backup_storage_url` and `backup_storage_directory`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoLocation {
    /// `s3://bucket[/prefix]`, `file:///abs/dir` (or a plain path) or `memory://`.
    pub url: String,
    /// A directory inside `url`. Default: none (the URL itself).
    pub directory: Option<String>,
    pub s3: S3Options,
    /// Encrypt every object written and require it of every object read
    /// ([`crate::crypt`]). Default: none.
    pub encryption_key: Option<crate::crypt::Key>,
    /// Connect and request timeouts of an S3 repo's calls. Default: [`crate::net`]'s.
    pub network: crate::net::Timeouts,
}

impl RepoLocation {
    pub fn new(url: impl Into<String>) -> Self {
        RepoLocation {
            url: url.into(),
            ..Default::default()
        }
    }

    /// The URL with the directory joined to it.
    pub fn joined(&self) -> String {
        join_location(&self.url, self.directory.as_deref())
    }
}

impl From<&str> for RepoLocation {
    fn from(url: &str) -> Self {
        RepoLocation::new(url)
    }
}

impl From<&String> for RepoLocation {
    fn from(url: &String) -> Self {
        RepoLocation::new(url.as_str())
    }
}

/// `url` and `directory` as one URL (`s3://b` + `backup` = `s3://b/backup`).
pub fn join_location(url: &str, directory: Option<&str>) -> String {
    match directory
        .map(|d| d.trim_matches('/'))
        .filter(|d| !d.is_empty())
    {
        Some(d) => format!("{}/{d}", url.trim_end_matches('/')),
        None => url.to_string(),
    }
}

impl<M: Model> Repo<M> {
    /// Opens a repo from a URL: `file:///abs/dir` (or a plain path), `s3://bucket/prefix`
    /// (credentials and endpoint from the standard AWS environment: AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL, AWS_ALLOW_HTTP), or `memory://`
    /// (a fresh, process-local store, for tests).
    pub fn open(url: &str, clock: SharedClock) -> Result<Self> {
        Self::open_location(&RepoLocation::new(url), clock)
    }

    /// Opens a repo that must exist already: a `file://` repo whose directory does not
    /// exist is refused (not created), so that reading a mistyped path changes nothing.
    pub fn open_existing(loc: &RepoLocation, clock: SharedClock) -> Result<Self> {
        let url = loc.joined();
        if url.trim().is_empty() {
            return Self::open_location(loc, clock);
        }
        let local = match url.strip_prefix("file://") {
            Some(p) => Some(p.to_string()),
            None if !url.contains("://") => Some(url.clone()),
            None => None,
        };
        if let Some(dir) = local {
            match std::fs::metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(Error::invalid_input(format!(
                        "repo {url} is not a directory; check --repo"
                    )))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::not_found(format!(
                        "repo {url} does not exist; check --repo (a repo is created by the \
                         first `metapitr archive` or `simulate` into it)"
                    )))
                }
                Err(e) => return Err(Error::io(&dir, e)),
            }
        }
        Self::open_location(loc, clock)
    }

    /// Opens the repo at a location. A `file://` repo's URL is made absolute, so that the
    /// same directory always has the same URL.
    pub fn open_location(loc: &RepoLocation, clock: SharedClock) -> Result<Self> {
        let url = loc.joined();
        let url = url.as_str();
        if url.trim().is_empty() {
            return Err(Error::invalid_input(
                "the repo URL is empty; give --repo s3://BUCKET[/PREFIX], file:///DIR or a path",
            ));
        }
        let (store, root, url): (Arc<dyn ObjectStore>, Path, String) =
            if url.starts_with("memory://") {
                (
                    Arc::new(object_store::memory::InMemory::new()),
                    Path::default(),
                    url.to_string(),
                )
            } else if let Some(bucket_path) = url.strip_prefix("s3://") {
                let (store, root) = open_s3(url, bucket_path, loc)?;
                (store, root, url.to_string())
            } else {
                let dir = match url.strip_prefix("file://") {
                    Some(p) => p.to_string(),
                    None if !url.contains("://") => url.to_string(),
                    None => {
                        return Err(Error::invalid_input(format!(
                            "repo URL {url} has an unknown scheme; use file://, s3:// or memory://"
                        )))
                    }
                };
                let dir = std::path::absolute(&dir).map_err(|e| Error::io(&dir, e))?;
                std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| Error::invalid_input(format!("repo {url}: {e}")))?;
                (
                    Arc::new(fs),
                    Path::default(),
                    format!("file://{}", dir.display()),
                )
            };
        let repo = Self::from_store(store, root, &url, clock);
        Ok(match &loc.encryption_key {
            Some(k) => repo.with_encryption(k.clone()),
            None => repo,
        })
    }

    /// A repo over any object store, rooted at `root`.
    pub fn from_store(
        store: Arc<dyn ObjectStore>,
        root: Path,
        url: &str,
        clock: SharedClock,
    ) -> Self {
        let under_root: Arc<dyn ObjectStore> = if root.as_ref().is_empty() {
            store.clone()
        } else {
            Arc::new(PrefixStore::new(store.clone(), root))
        };
        let counted = Arc::new(InstrumentedObjectStore::new(under_root, clock.clone()));
        Repo {
            backend: store,
            store: counted.clone(),
            counted,
            url: url.to_string(),
            clock,
            retry: RetryPolicy::default(),
            writer_id: rand::random(),
            cached: Arc::new(Mutex::new(None)),
            fence: None,
            key: None,
            accept_lost: false,
            model: PhantomData,
        }
        .assembled()
    }

    /// This handle with its store stack built again from its settings (see [`Repo`]).
    fn assembled(mut self) -> Self {
        let seed = self.retry.jitter_seed.unwrap_or(self.writer_id);
        let retrying = RetryingObjectStore::new(
            self.counted.clone(),
            self.retry.clone(),
            self.clock.clone(),
            seed,
        );
        self.store = Arc::new(EncryptingObjectStore::new(
            Arc::new(retrying),
            self.key.clone(),
            self.url.clone(),
        ));
        self
    }

    /// Sets the id written into manifests (random by default), for simulations that must
    /// replay byte for byte. It also seeds the retries' jitter, unless the retry policy
    /// gives a seed.
    pub fn with_writer_id(mut self, id: u64) -> Self {
        self.writer_id = id;
        self.assembled()
    }

    /// Encrypts every object this handle writes and requires it of every object it reads.
    pub fn with_encryption(mut self, key: crate::crypt::Key) -> Self {
        self.key = Some(key);
        self.assembled()
    }

    /// Takes over `timeline` as its one writer: raises the timeline's writer epoch in the
    /// manifest and returns a handle whose manifest updates are refused with
    /// an error of kind `Fenced` once another writer takes it over in turn.
    pub async fn claim_timeline(&self, timeline: u32) -> Result<Self> {
        let mut mine = 0;
        let plain = Repo {
            fence: None,
            ..self.clone()
        };
        plain
            .update_manifest(|m| {
                let t = m.timeline_mut(timeline);
                t.writer_epoch += 1;
                mine = t.writer_epoch;
                Ok(true)
            })
            .await?;
        info!(
            timeline,
            writer_epoch = mine,
            "took over the timeline as its writer"
        );
        Ok(Repo {
            fence: Some((timeline, mine)),
            ..self.clone()
        })
    }

    /// The (timeline, writer epoch) this handle writes as, if it claimed one.
    pub fn fence(&self) -> Option<(u32, u64)> {
        self.fence
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self.assembled()
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The backend as given, without the repo's layers: its objects as stored (sealed,
    /// when encrypted), under its own paths.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.backend
    }

    /// What this handle (and its clones) asked of the backend so far, per kind of call.
    pub fn store_stats(&self) -> StoreStats {
        self.counted.stats()
    }

    /// The error of a failed call `op` on `key`, naming the object in the repo.
    fn failed(&self, op: &'static str, key: &str, e: object_store::Error) -> Error {
        Error::store(op, format!("{}/{key}", self.url), e)
    }

    /// Creates an immutable object. If it already exists, reads it back: identical bytes
    /// mean an earlier attempt landed ([`Created::AlreadyThere`]); different bytes are a
    /// conflict with another writer (kind `Fenced`).
    pub async fn put_new(&self, key: &str, data: Bytes) -> Result<Created> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let r = self
            .store
            .put_opts(&Path::from(key), PutPayload::from_bytes(data.clone()), opts)
            .await;
        match r {
            Ok(_) => Ok(Created::New),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let existing = self.get(key).await?;
                // Objects are zstd frames: the same content compressed by another zstd
                // build is still the same object.
                let same = existing == data
                    || matches!(
                        (codec::decompress(&existing, key), codec::decompress(&data, key)),
                        (Ok(a), Ok(b)) if a == b
                    );
                if same {
                    debug!(key, "object already present with the same bytes");
                    Ok(Created::AlreadyThere)
                } else {
                    Err(Error::fenced(format!(
                        "{key} already exists in {} with different content; another writer is active",
                        self.url
                    )))
                }
            }
            Err(e) => Err(self.failed("put", key, e)),
        }
    }

    /// Writes an object unconditionally (for objects outside the repo's immutable set, such
    /// as a Hummock checkpoint).
    pub async fn put_overwrite(&self, key: &str, data: Bytes) -> Result<()> {
        self.store
            .put(&Path::from(key), PutPayload::from_bytes(data))
            .await
            .map(|_| ())
            .map_err(|e| self.failed("put", key, e))
    }

    pub async fn get(&self, key: &str) -> Result<Bytes> {
        let read = async { self.store.get(&Path::from(key)).await?.bytes().await };
        read.await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => Error::not_found(format!(
                "object {key} is missing from {}; the repo was changed outside metapitr",
                self.url
            )),
            e => self.failed("get", key, e),
        })
    }

    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.failed("delete", key, e)),
        }
    }

    /// Keys (relative to the root) under a prefix, sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let mut out: Vec<(String, u64)> = self
            .store
            .list(Some(&Path::from(prefix)))
            .map_ok(|m| (m.location.as_ref().to_string(), m.size))
            .try_collect()
            .await
            .map_err(|e| self.failed("list", prefix, e))?;
        out.sort();
        Ok(out)
    }

    /// Reads an archived object: the zstd frame, checked, decompressed.
    pub async fn get_payload(&self, key: &str) -> Result<Vec<u8>> {
        let data = self.get(key).await?;
        codec::decompress(&data, key)
    }

    /// Reads and checks an enveloped protobuf object.
    pub async fn get_message<T: Message + Default>(&self, key: &str, kind: Kind) -> Result<T> {
        let payload = self.get_payload(key).await?;
        let body = codec::open(kind, &payload, key)?;
        T::decode(body).map_err(|e| {
            Error::corrupt(
                key,
                codec::HEADER_LEN as u64,
                format!("does not decode: {e}"),
            )
        })
    }

    /// Writes an enveloped protobuf object with a conditional create.
    pub async fn put_message<T: Message>(
        &self,
        key: &str,
        kind: Kind,
        m: &T,
    ) -> Result<(Created, u64)> {
        let payload = codec::seal(kind, &m.encode_to_vec());
        let z = codec::compress(&payload)?;
        let size = z.len() as u64;
        Ok((self.put_new(key, Bytes::from(z)).await?, size))
    }

    /// The newest manifest, read from the store (None: the repo is empty). When the newest
    /// version was lost (see [`head_key`]) the newest readable one is returned, with a
    /// warning, for reading; writers refuse to go on from it ([`Self::update_manifest`]).
    pub async fn load_manifest(&self) -> Result<Option<Manifest>> {
        Ok(self.load_manifest_checked().await?.0)
    }

    /// The newest readable manifest and what the listing says about the newest versions.
    pub async fn load_manifest_checked(&self) -> Result<(Option<Manifest>, ManifestListing)> {
        self.load_newest(false).await
    }

    /// For `metapitr repair`: as [`Self::load_manifest_checked`], but a newest version
    /// that does not read back counts as lost, and the newest readable one is returned.
    pub async fn load_manifest_for_repair(&self) -> Result<(Option<Manifest>, ManifestListing)> {
        self.load_newest(true).await
    }

    async fn load_newest(&self, skip_corrupt: bool) -> Result<(Option<Manifest>, ManifestListing)> {
        for _ in 0..5 {
            let keys = self.list(crate::keys::MANIFEST_PREFIX).await?;
            let mut listing = ManifestListing::of(&keys);
            let mut versions: Vec<u64> = keys
                .iter()
                .filter_map(|(k, _)| manifest_version(k))
                .collect();
            versions.sort_unstable();
            let Some(&newest) = versions.last() else {
                return Ok((None, listing));
            };
            let key = manifest_key(newest);
            if skip_corrupt {
                for v in versions.iter().rev() {
                    match self
                        .get_message::<Manifest>(&manifest_key(*v), Kind::Manifest)
                        .await
                    {
                        Ok(m) => return Ok((Some(m), listing)),
                        Err(e) if e.kind() == ErrorKind::Corruption => {
                            listing.head = listing.head.max(*v);
                            listing.newest = v - 1;
                        }
                        Err(e) => return Err(e),
                    }
                }
                return Ok((None, listing));
            }
            match self.get_message::<Manifest>(&key, Kind::Manifest).await {
                Ok(m) => {
                    if let Some(lost) = listing.lost() {
                        warn!(
                            lost,
                            newest_readable = newest,
                            "{}",
                            self.lost_manifest_message(lost, newest)
                        );
                    } else {
                        *self.cached.lock().await = Some(m.clone());
                    }
                    return Ok((Some(m), listing));
                }
                // Deleted by a writer's clean-up between LIST and GET: list again.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) if e.kind() == ErrorKind::Corruption => {
                    let older = versions.iter().rev().nth(1);
                    let advice = match older {
                        Some(v) => format!(
                            "the version before it ({}) is in the repo: put back an intact copy \
                             of {key}, or run `metapitr repair` to go on from version {v} \
                             (it lists again the WAL and snapshots the lost version named)",
                            manifest_key(*v)
                        ),
                        None => format!("put back an intact copy of {key}"),
                    };
                    return Err(Error::corrupt(
                        format!("newest manifest {key} of {}", self.url),
                        e.corrupt_offset().unwrap_or(0),
                        format!("{e}; {advice}"),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::internal("the manifest kept moving while being read"))
    }

    fn lost_manifest_message(&self, lost: u64, newest: u64) -> String {
        format!(
            "manifest version {lost} of {} is missing: its head marker {} says it was written, \
             but the newest manifest in the repo is version {newest}. Epochs archived after \
             version {newest} are not listed, and writing on would rewind the repo over them. \
             Put back {} if a copy exists (e.g. an older object version), or run `metapitr \
             verify` to see what was lost and `metapitr repair` to list it again",
            self.url,
            head_key(lost),
            manifest_key(lost)
        )
    }

    /// The newest manifest, or an error saying the repo is empty.
    pub async fn manifest(&self) -> Result<Manifest> {
        self.load_manifest().await?.ok_or_else(|| {
            Error::not_found(format!(
                "{} holds no metapitr manifest; archive to it first (metapitr archive or simulate)",
                self.url
            ))
        })
    }

    /// Moves the manifest by compare-and-swap. `f` edits a copy of the newest version and
    /// returns whether it changed anything; it is called again if another writer moved the
    /// manifest first, so it must be a pure function of the manifest it is given.
    pub async fn update_manifest<F>(&self, mut f: F) -> Result<Manifest>
    where
        F: FnMut(&mut Manifest) -> Result<bool>,
    {
        let mut cur = self.cached.lock().await.clone();
        if cur.is_none() {
            cur = self.load_for_write().await?;
        }
        loop {
            let base = cur.clone().unwrap_or_default();
            if let Some((tl, mine)) = self.fence {
                let now = base.timeline(tl).map_or(0, |t| t.writer_epoch);
                if now != mine {
                    return Err(Error::fenced(format!(
                        "timeline {tl} of {} was taken over by another writer (writer epoch \
                         {now}, this one {mine}); this writer stops: make sure only one \
                         recorder or archiver runs per timeline",
                        self.url
                    )));
                }
            }
            let mut next = base.clone();
            if !f(&mut next)? {
                return Ok(base);
            }
            next.version = base.version + 1;
            next.updated_at_ms = self.clock.now_ms();
            next.writer_id = self.writer_id;
            next.prev_writer_id = base.writer_id;
            if next.repo_id.is_empty() {
                next.repo_id = format!("{:016x}", self.clock.now_ms() ^ 0x6d65_7461_7069_7472);
            }
            let key = manifest_key(next.version);
            fail::fail_point!("repo::before_manifest_cas");
            match self.put_message(&key, Kind::Manifest, &next).await {
                Ok(_) => {
                    // A version number freed by pruning can be created again by a writer
                    // whose view is stale. The newest versions are never pruned, so a newer
                    // version that was not built on this write means it lost the race.
                    if self.newest_manifest_version().await? > next.version
                        && !self.built_on(next.version).await?
                    {
                        debug!(
                            version = next.version,
                            "wrote over a pruned manifest version; reloading"
                        );
                        self.delete(&key).await?;
                        cur = self.load_for_write().await?;
                        continue;
                    }
                    fail::fail_point!("repo::after_manifest_cas");
                    *self.cached.lock().await = Some(next.clone());
                    self.mark_head(next.version).await;
                    if next.version > MANIFEST_KEEP && next.version % MANIFEST_KEEP == 0 {
                        self.prune_manifests(next.version).await;
                    }
                    return Ok(next);
                }
                Err(e) if e.kind() == ErrorKind::Fenced => {
                    debug!(version = next.version, "manifest moved under us; reloading");
                    cur = self.load_for_write().await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The newest manifest, for a writer to go on from: refused when the newest version
    /// was lost, unless [`Self::accepting_lost_manifest`] (then the next version is
    /// numbered past the lost one). Every loop that reads the manifest to update it
    /// starts here, so that it fails at once rather than retrying over a lost version.
    pub async fn manifest_for_update(&self) -> Result<Option<Manifest>> {
        self.load_for_write().await
    }

    async fn load_for_write(&self) -> Result<Option<Manifest>> {
        let (m, listing) = self.load_newest(self.accept_lost).await?;
        match (listing.lost(), m) {
            (Some(lost), Some(mut m)) if self.accept_lost => {
                warn!(lost, "going on past a lost manifest version");
                m.version = m.version.max(lost);
                Ok(Some(m))
            }
            (Some(lost), m) => Err(Error::corrupt(
                format!("manifest of {}", self.url),
                0,
                self.lost_manifest_message(lost, m.map_or(0, |m| m.version)),
            )),
            (None, m) => Ok(m),
        }
    }

    /// A handle whose manifest updates go on past a lost newest version (for `metapitr
    /// repair`, which lists again what the lost version named).
    pub fn accepting_lost_manifest(mut self) -> Self {
        self.accept_lost = true;
        self
    }

    /// Creates the head marker of `version` and removes the one before it. Best effort: a
    /// marker that lags behind only weakens the check, it never raises a false alarm.
    async fn mark_head(&self, version: u64) {
        if let Err(e) = self.put_new(&head_key(version), Bytes::new()).await {
            warn!(version, error = %e, "cannot write the manifest head marker");
            return;
        }
        if version > 1 {
            let _ = self.delete(&head_key(version - 1)).await;
        }
    }

    /// Whether the version after `version` was built on the one this handle wrote.
    async fn built_on(&self, version: u64) -> Result<bool> {
        match self
            .get_message::<Manifest>(&manifest_key(version + 1), Kind::Manifest)
            .await
        {
            Ok(n) => Ok(n.prev_writer_id == self.writer_id),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn newest_manifest_version(&self) -> Result<u64> {
        Ok(self
            .list(crate::keys::MANIFEST_PREFIX)
            .await?
            .iter()
            .filter_map(|(k, _)| manifest_version(k))
            .max()
            .unwrap_or(0))
    }

    async fn prune_manifests(&self, newest: u64) {
        let Ok(keys) = self.list(crate::keys::MANIFEST_PREFIX).await else {
            return;
        };
        for (k, _) in keys {
            let v = manifest_version(&k).or_else(|| head_version(&k));
            if v.is_some_and(|v| v + MANIFEST_KEEP <= newest) {
                let _ = self.delete(&k).await;
            }
        }
    }
}

/// Convenience lookups on a manifest.
impl Manifest {
    pub fn timeline(&self, id: u32) -> Option<&TimelineEntry> {
        self.timelines.iter().find(|t| t.id == id)
    }

    pub fn timeline_mut(&mut self, id: u32) -> &mut TimelineEntry {
        if let Some(i) = self.timelines.iter().position(|t| t.id == id) {
            return &mut self.timelines[i];
        }
        self.timelines.push(TimelineEntry {
            id,
            ..Default::default()
        });
        self.timelines.sort_by_key(|t| t.id);
        // Just pushed, so the lookup finds it.
        let i = self.timelines.iter().position(|t| t.id == id).unwrap_or(0);
        &mut self.timelines[i]
    }

    /// The newest timeline id (1 for an empty repo).
    pub fn newest_timeline(&self) -> u32 {
        self.timelines.iter().map(|t| t.id).max().unwrap_or(1)
    }

    pub fn snapshot(&self, id: u64) -> Option<&SnapshotEntry> {
        self.snapshots.iter().find(|s| s.id == id)
    }

    /// The largest value each id generator has reached in anything archived.
    pub fn id_high_water(&self) -> IdMarks {
        let mut out = IdMarks::new();
        for g in &self.id_high_water {
            let slot = out.entry(g.category).or_insert(0);
            *slot = (*slot).max(g.next);
        }
        out
    }

    /// Raises the high-water marks to at least `ids`; true if one rose.
    pub fn raise_id_high_water(&mut self, ids: &IdMarks) -> bool {
        let mut cur = self.id_high_water();
        let changed = raise_marks(&mut cur, ids);
        if changed {
            self.id_high_water = cur
                .into_iter()
                .map(|(category, next)| IdMark { category, next })
                .collect();
        }
        changed
    }
}

impl TimelineEntry {
    /// The last archived lsn and epoch of the timeline (0, 0 if nothing is archived).
    pub fn last(&self) -> (u64, u64) {
        if let Some(s) = self.segments.last() {
            return (s.last_lsn, s.last_epoch);
        }
        if let Some(c) = self.chunks.last() {
            return (c.last_lsn, c.last_epoch);
        }
        (self.fork_lsn, self.fork_epoch)
    }

    pub fn first_archived(&self) -> Option<(u64, u64)> {
        if let Some(c) = self.chunks.first() {
            return Some((c.first_lsn, c.first_epoch));
        }
        self.segments.first().map(|s| (s.first_lsn, s.first_epoch))
    }

    pub fn segment_count(&self) -> u64 {
        self.chunks.iter().map(|c| c.count as u64).sum::<u64>() + self.segments.len() as u64
    }

    pub fn archived_bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.stored_size).sum::<u64>()
            + self.segments.iter().map(|s| s.stored_size).sum::<u64>()
    }
}

impl SegmentEntry {
    pub fn key(&self) -> String {
        segment_key_of(self.timeline, self.first_lsn, self.writer_epoch)
    }
}
