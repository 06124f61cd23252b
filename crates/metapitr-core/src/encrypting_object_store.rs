//! An object store that seals every object body it writes and opens every one it reads,
//! with the repo's key ([`crate::crypt`]; the sealed format is docs/format.md's).
//!
//! The object's key in the repo is bound into each sealed object, so the paths this store
//! is given must be the repo's keys: it sits above the store that adds the repo's
//! directory. Without a key it stores bodies as they are, and refuses to read a sealed one
//! (naming the object and what to do) rather than hand its ciphertext on as data.
//!
//! A failure to open an object is a metapitr [`Error`] (wrong key, damaged or moved
//! object: each names the object) carried as the source of an
//! [`object_store::Error::Generic`]; [`Error::store`] gives it back as it was.
//!
//! Listings and HEADs report stored (sealed) sizes. A range is read by opening the whole
//! object. Multipart uploads are not supported (a body is sealed whole).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, RenameOptions,
};

use crate::crypt::{is_sealed, Key};
use crate::error::Error;

type OsResult<T> = object_store::Result<T>;

/// The store name the errors of this layer carry.
pub const STORE_NAME: &str = "EncryptingObjectStore";

/// An [`ObjectStore`] that seals and opens the bodies of another one. See the module
/// documentation.
#[derive(Debug, Clone)]
pub struct EncryptingObjectStore {
    inner: Arc<dyn ObjectStore>,
    key: Option<Key>,
    /// What the objects are named in messages (the repo's URL).
    repo: String,
}

fn carried(e: Error) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE_NAME,
        source: Box::new(e),
    }
}

impl EncryptingObjectStore {
    /// Wraps `inner`, whose objects belong to the repo at `repo`: with `key`, every body is
    /// sealed; without, sealed bodies are refused.
    pub fn new(inner: Arc<dyn ObjectStore>, key: Option<Key>, repo: impl Into<String>) -> Self {
        EncryptingObjectStore {
            inner,
            key,
            repo: repo.into(),
        }
    }

    /// The bytes stored for the body `plain` of the object at `location`.
    fn seal(&self, location: &Path, plain: Bytes) -> OsResult<Bytes> {
        match &self.key {
            Some(k) => k
                .seal(location.as_ref(), &plain)
                .map(Bytes::from)
                .map_err(carried),
            None => Ok(plain),
        }
    }

    /// The body of the object at `location` from what is stored.
    fn open(&self, location: &Path, stored: Bytes) -> OsResult<Bytes> {
        let key = location.as_ref();
        match &self.key {
            Some(k) => k.open(key, &stored).map(Bytes::from).map_err(carried),
            None if is_sealed(&stored) => Err(carried(Error::invalid_input(format!(
                "object {key} in {} is encrypted; give the key it was written with \
                 (METAPITR_ENCRYPTION_KEY or --encryption-key-file)",
                self.repo
            )))),
            None => Ok(stored),
        }
    }

    /// The whole body of the object at `location`, opened, with its result's metadata.
    async fn read(&self, location: &Path, mut options: GetOptions) -> OsResult<(GetResult, Bytes)> {
        options.range = None;
        let r = self.inner.get_opts(location, options).await?;
        let head = GetResult {
            payload: GetResultPayload::Stream(stream::empty().boxed()),
            meta: r.meta.clone(),
            range: r.range.clone(),
            attributes: r.attributes.clone(),
            extensions: r.extensions.clone(),
        };
        let plain = self.open(location, r.bytes().await?)?;
        Ok((head, plain))
    }
}

impl std::fmt::Display for EncryptingObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EncryptingObjectStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for EncryptingObjectStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> OsResult<PutResult> {
        let stored = self.seal(location, Bytes::from(payload))?;
        self.inner.put_opts(location, stored.into(), opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> OsResult<Box<dyn MultipartUpload>> {
        if self.key.is_none() {
            return self.inner.put_multipart_opts(location, opts).await;
        }
        Err(object_store::Error::NotSupported {
            source: format!(
                "{location} in {}: an encrypted repo seals each object whole; write it with one put",
                self.repo
            )
            .into(),
        })
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> OsResult<GetResult> {
        if options.head {
            return self.inner.get_opts(location, options).await;
        }
        let range = options.range.clone();
        let (head, plain) = self.read(location, options).await?;
        let len = plain.len() as u64;
        let range = match range {
            Some(r) => r.as_range(len).map_err(|e| object_store::Error::Generic {
                store: STORE_NAME,
                source: Box::new(e),
            })?,
            None => 0..len,
        };
        // `as_range` keeps the range within the body.
        let body = plain.slice(range.start as usize..range.end as usize);
        let mut meta = head.meta;
        meta.size = len;
        Ok(GetResult {
            payload: GetResultPayload::Stream(stream::once(async move { Ok(body) }).boxed()),
            meta,
            range,
            attributes: head.attributes,
            extensions: head.extensions,
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, OsResult<Path>>,
    ) -> BoxStream<'static, OsResult<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, OsResult<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, OsResult<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> OsResult<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    /// A sealed object is bound to its key: a copy is opened and sealed again for its new
    /// key.
    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> OsResult<()> {
        if self.key.is_none() {
            return self.inner.copy_opts(from, to, options).await;
        }
        let (_, plain) = self.read(from, GetOptions::default()).await?;
        let mode = match options.mode {
            CopyMode::Create => PutMode::Create,
            CopyMode::Overwrite => PutMode::Overwrite,
        };
        let stored = self.seal(to, plain)?;
        self.inner
            .put_opts(to, stored.into(), PutOptions::from(mode))
            .await
            .map(|_| ())
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> OsResult<()> {
        if self.key.is_none() {
            return self.inner.rename_opts(from, to, options).await;
        }
        let mode = match options.target_mode {
            object_store::RenameTargetMode::Create => CopyMode::Create,
            object_store::RenameTargetMode::Overwrite => CopyMode::Overwrite,
        };
        self.copy_opts(from, to, CopyOptions::new().with_mode(mode))
            .await?;
        self.inner.delete(from).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use object_store::memory::InMemory;

    fn pair(key: Option<Key>) -> (Arc<InMemory>, EncryptingObjectStore) {
        let mem = Arc::new(InMemory::new());
        let s = EncryptingObjectStore::new(mem.clone(), key, "memory://test");
        (mem, s)
    }

    async fn read(s: &dyn ObjectStore, p: &Path) -> OsResult<Bytes> {
        s.get(p).await?.bytes().await
    }

    /// The error a read failed with, as the repo sees it.
    fn repo_error(e: object_store::Error) -> Error {
        Error::store("get", "memory://test/k", e)
    }

    #[tokio::test]
    async fn bodies_are_sealed_in_the_store_and_opened_on_the_way_back() {
        let key = Key::from_bytes(&[7u8; 32]);
        let (mem, s) = pair(Some(key.clone()));
        let p = Path::from("wal/00000001/x.wal.zst");
        s.put(&p, Bytes::from_static(b"hello, metadata").into())
            .await
            .unwrap();
        let stored = read(mem.as_ref(), &p).await.unwrap();
        assert!(is_sealed(&stored));
        assert!(!stored.windows(5).any(|w| w == b"hello"));
        // The stored bytes are exactly crypt's format for this key and object key.
        assert_eq!(key.open(p.as_ref(), &stored).unwrap(), b"hello, metadata");
        let r = s.get(&p).await.unwrap();
        assert_eq!(r.meta.size, 15);
        assert_eq!(r.bytes().await.unwrap(), &b"hello, metadata"[..]);
        assert_eq!(s.get_range(&p, 7..15).await.unwrap(), &b"metadata"[..]);
        // A copy is sealed again for its new key.
        let q = Path::from("wal/00000001/y.wal.zst");
        s.copy(&p, &q).await.unwrap();
        assert_eq!(read(&s, &q).await.unwrap(), &b"hello, metadata"[..]);
        assert!(s.copy_if_not_exists(&p, &q).await.is_err());
    }

    #[tokio::test]
    async fn a_wrong_key_is_a_typed_error_naming_the_object() {
        let (mem, s) = pair(Some(Key::from_bytes(&[7u8; 32])));
        let p = Path::from("manifest/00000000000000000001.mpm.zst");
        s.put(&p, Bytes::from_static(b"m").into()).await.unwrap();
        let other = EncryptingObjectStore::new(mem.clone(), Some(Key::from_bytes(&[8u8; 32])), "r");
        let e = repo_error(read(&other, &p).await.unwrap_err());
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains(p.as_ref()), "{e}");
        assert!(e.to_string().contains("different key"), "{e}");

        // Moved under another key: authentication fails, a corruption of that object.
        let moved = Path::from("manifest/00000000000000000002.mpm.zst");
        mem.copy(&p, &moved).await.unwrap();
        let e = repo_error(read(&s, &moved).await.unwrap_err());
        assert_eq!(e.kind(), ErrorKind::Corruption, "{e}");
        assert!(e.to_string().contains(moved.as_ref()), "{e}");

        // Without a key, a sealed object is refused, not handed on.
        let plain = EncryptingObjectStore::new(mem.clone(), None, "memory://test");
        let e = repo_error(read(&plain, &p).await.unwrap_err());
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains("is encrypted"), "{e}");
        // And with a key, a plain object is refused.
        mem.put(
            &Path::from("plain"),
            Bytes::from_static(b"zstd frame").into(),
        )
        .await
        .unwrap();
        let e = repo_error(read(&s, &Path::from("plain")).await.unwrap_err());
        assert!(e.to_string().contains("not encrypted"), "{e}");
    }

    #[tokio::test]
    async fn without_a_key_bodies_pass_through() {
        let (mem, s) = pair(None);
        let p = Path::from("a");
        s.put(&p, Bytes::from_static(b"plain").into())
            .await
            .unwrap();
        assert_eq!(read(mem.as_ref(), &p).await.unwrap(), &b"plain"[..]);
        assert_eq!(read(&s, &p).await.unwrap(), &b"plain"[..]);
    }
}
