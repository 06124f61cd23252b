//! An object store that retries the calls that failed transiently.
//!
//! [`RetryingObjectStore`] wraps another store and calls it again, up to
//! [`RetryPolicy::attempts`] times in all, when a call fails with an error that
//! [`object_store_kind`] says is `Unavailable` (a refused connection, a timeout, a 5xx, an
//! injected fault). Nothing else is retried: not a failed conditional create or a precondition
//! (another writer won; retrying would not change that), not a missing object, not
//! refused credentials.
//!
//! Between attempts it sleeps on the injected [`Clock`](crate::clock::Clock): a capped
//! exponential backoff, each delay drawn between half of it and all of it from a generator
//! seeded by the caller, so that processes retrying at once spread out while a simulated
//! clock makes retries instant and the same seed draws the same delays.
//!
//! A GET's body and a LIST's entries are read whole inside the retry: a body or listing
//! cut off part way is retried as the whole call (the repo reads whole objects, and
//! listings of bounded size).

use std::future::Future;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    RenameOptions,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tracing::warn;

use crate::clock::SharedClock;
use crate::error::{object_store_kind, ErrorKind};

type OsResult<T> = object_store::Result<T>;

/// How calls that fail transiently are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (0 counts as 1). Default 6.
    pub attempts: u32,
    /// Delay before the first retry, doubled each time. Default 50 ms.
    pub initial_backoff: Duration,
    /// Largest delay between attempts. Default 2 s.
    pub max_backoff: Duration,
    /// Seeds the jitter of the delays. Default `None`: the repo handle's writer id, which
    /// is random per process unless set (`Repo::with_writer_id`, as a simulation does).
    pub jitter_seed: Option<u64>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            jitter_seed: None,
        }
    }
}

/// Whether a failed call is worth another attempt.
pub fn is_transient(e: &object_store::Error) -> bool {
    object_store_kind(e) == ErrorKind::Unavailable
}

/// The retry loop, shared by the store and the streams it returns.
#[derive(Debug, Clone)]
struct Retrier {
    policy: RetryPolicy,
    clock: SharedClock,
    rng: Arc<Mutex<StdRng>>,
}

impl Retrier {
    /// The sleep for a backoff of `delay`: uniform in [delay / 2, delay].
    fn jittered(&self, delay: Duration) -> Duration {
        let u: f64 = self.rng.lock().unwrap_or_else(|e| e.into_inner()).random();
        delay.mul_f64(0.5 + 0.5 * u)
    }

    /// Calls `f` until it succeeds, fails for good, or the attempts run out; the last
    /// error is returned as the store gave it.
    async fn run<T, F, Fut>(&self, op: &'static str, path: &str, mut f: F) -> OsResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = OsResult<T>>,
    {
        let attempts = self.policy.attempts.max(1);
        let mut delay = self.policy.initial_backoff.min(self.policy.max_backoff);
        let mut attempt = 1;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if attempt < attempts && is_transient(&e) => {
                    let sleep = self.jittered(delay);
                    warn!(op, path, attempt, ?sleep, error = %e, "object store call failed; retrying");
                    self.clock.sleep(sleep).await;
                    delay = delay.saturating_mul(2).min(self.policy.max_backoff);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// An [`ObjectStore`] that retries another one's transient failures. See the module
/// documentation.
#[derive(Debug, Clone)]
pub struct RetryingObjectStore {
    inner: Arc<dyn ObjectStore>,
    retrier: Retrier,
}

impl RetryingObjectStore {
    /// Wraps `inner`, retrying as `policy` says, sleeping on `clock`, with the jitter
    /// drawn from a generator seeded by `seed`.
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        policy: RetryPolicy,
        clock: SharedClock,
        seed: u64,
    ) -> Self {
        RetryingObjectStore {
            inner,
            retrier: Retrier {
                policy,
                clock,
                rng: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))),
            },
        }
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.retrier.policy
    }

    /// A listing read whole with retries, handed out as a stream.
    fn list_retrying<F>(
        &self,
        prefix: Option<&Path>,
        list: F,
    ) -> BoxStream<'static, OsResult<ObjectMeta>>
    where
        F: Fn(&dyn ObjectStore) -> BoxStream<'static, OsResult<ObjectMeta>> + Send + Sync + 'static,
    {
        let inner = self.inner.clone();
        let retrier = self.retrier.clone();
        let what = prefix.map(|p| p.to_string()).unwrap_or_default();
        stream::once(async move {
            retrier
                .run("list", &what, || {
                    list(inner.as_ref()).try_collect::<Vec<_>>()
                })
                .await
        })
        .flat_map(|r| match r {
            Ok(all) => stream::iter(all.into_iter().map(Ok)).boxed(),
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        })
        .boxed()
    }
}

impl std::fmt::Display for RetryingObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RetryingObjectStore({})", self.inner)
    }
}

/// A body read whole, as a result.
fn buffered(r: &GetResult, body: Bytes) -> GetResult {
    GetResult {
        payload: GetResultPayload::Stream(stream::once(async move { Ok(body) }).boxed()),
        meta: r.meta.clone(),
        range: r.range.clone(),
        attributes: r.attributes.clone(),
        extensions: r.extensions.clone(),
    }
}

#[async_trait]
impl ObjectStore for RetryingObjectStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> OsResult<PutResult> {
        self.retrier
            .run("put", location.as_ref(), || {
                self.inner.put_opts(location, payload.clone(), opts.clone())
            })
            .await
    }

    /// Retries starting the upload; its parts and completion are the caller's.
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> OsResult<Box<dyn MultipartUpload>> {
        self.retrier
            .run("multipart", location.as_ref(), || {
                self.inner.put_multipart_opts(location, opts.clone())
            })
            .await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> OsResult<GetResult> {
        if options.head {
            return self
                .retrier
                .run("head", location.as_ref(), || {
                    self.inner.get_opts(location, options.clone())
                })
                .await;
        }
        self.retrier
            .run("get", location.as_ref(), || async {
                let r = self.inner.get_opts(location, options.clone()).await?;
                let head = buffered(&r, Bytes::new());
                let body = r.bytes().await?;
                Ok(buffered(&head, body))
            })
            .await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> OsResult<Vec<Bytes>> {
        self.retrier
            .run("get", location.as_ref(), || {
                self.inner.get_ranges(location, ranges)
            })
            .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, OsResult<Path>>,
    ) -> BoxStream<'static, OsResult<Path>> {
        let this = self.clone();
        locations
            .then(move |location| {
                let this = this.clone();
                async move {
                    let location = location?;
                    this.retrier
                        .run("delete", location.as_ref(), || this.inner.delete(&location))
                        .await?;
                    Ok(location)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, OsResult<ObjectMeta>> {
        let p = prefix.cloned();
        self.list_retrying(prefix, move |s| s.list(p.as_ref()))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, OsResult<ObjectMeta>> {
        let (p, o) = (prefix.cloned(), offset.clone());
        self.list_retrying(prefix, move |s| s.list_with_offset(p.as_ref(), &o))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> OsResult<ListResult> {
        let what = prefix.map(|p| p.to_string()).unwrap_or_default();
        self.retrier
            .run("list", &what, || self.inner.list_with_delimiter(prefix))
            .await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> OsResult<()> {
        self.retrier
            .run("copy", to.as_ref(), || {
                self.inner.copy_opts(from, to, options.clone())
            })
            .await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> OsResult<()> {
        self.retrier
            .run("rename", to.as_ref(), || {
                self.inner.rename_opts(from, to, options.clone())
            })
            .await
    }
}
