//! An object store that counts what is asked of another one: per kind of operation, the
//! requests, the failed ones, the bytes sent and received, and the time they took on the
//! injected clock. The repo puts it right above the backend, so every attempt of a retried
//! call counts, and the bytes are the ones stored (sealed, when encrypted).

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

use crate::clock::SharedClock;

type OsResult<T> = object_store::Result<T>;

/// A kind of object-store operation, counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StoreOp {
    Put,
    /// Starting a multipart upload (its parts are not counted).
    Multipart,
    Get,
    Head,
    List,
    Delete,
    Copy,
    Rename,
}

impl StoreOp {
    pub const ALL: [StoreOp; 8] = [
        StoreOp::Put,
        StoreOp::Multipart,
        StoreOp::Get,
        StoreOp::Head,
        StoreOp::List,
        StoreOp::Delete,
        StoreOp::Copy,
        StoreOp::Rename,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StoreOp::Put => "put",
            StoreOp::Multipart => "multipart",
            StoreOp::Get => "get",
            StoreOp::Head => "head",
            StoreOp::List => "list",
            StoreOp::Delete => "delete",
            StoreOp::Copy => "copy",
            StoreOp::Rename => "rename",
        }
    }
}

/// Counts of one kind of operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// Requests made (for deletes, objects).
    pub requests: u64,
    /// Requests that failed (a listing or body that failed part way counts too).
    pub errors: u64,
    /// Bytes of object bodies sent.
    pub bytes_sent: u64,
    /// Bytes of object bodies received.
    pub bytes_received: u64,
    /// Milliseconds from each request to its answer (for a listing: to its end), summed.
    pub latency_ms: u64,
}

impl OpCounts {
    fn add(&mut self, o: &OpCounts) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.bytes_sent += o.bytes_sent;
        self.bytes_received += o.bytes_received;
        self.latency_ms += o.latency_ms;
    }
}

/// Counts per kind of operation, as of one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    ops: [OpCounts; 8],
}

impl StoreStats {
    pub fn op(&self, op: StoreOp) -> OpCounts {
        self.ops[op as usize]
    }

    /// Every kind together.
    pub fn total(&self) -> OpCounts {
        let mut t = OpCounts::default();
        for o in &self.ops {
            t.add(o);
        }
        t
    }
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    errors: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    latency_ms: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> OpCounts {
        OpCounts {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            latency_ms: self.latency_ms.load(Ordering::Relaxed),
        }
    }
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

#[derive(Debug)]
struct Shared {
    clock: SharedClock,
    ops: [Counters; 8],
}

impl Shared {
    fn of(&self, op: StoreOp) -> &Counters {
        &self.ops[op as usize]
    }

    /// Counts a request and returns when it started.
    fn start(&self, op: StoreOp, bytes_sent: u64) -> u64 {
        let c = self.of(op);
        add(&c.requests, 1);
        add(&c.bytes_sent, bytes_sent);
        self.clock.now_ms()
    }

    /// Counts the answer to a request started at `started`.
    fn finish<T>(&self, op: StoreOp, started: u64, r: &OsResult<T>) {
        let c = self.of(op);
        add(&c.latency_ms, self.clock.now_ms().saturating_sub(started));
        if r.is_err() {
            add(&c.errors, 1);
        }
    }
}

/// An [`ObjectStore`] that counts the calls it passes to another one. See the module
/// documentation.
#[derive(Debug, Clone)]
pub struct InstrumentedObjectStore {
    inner: Arc<dyn ObjectStore>,
    shared: Arc<Shared>,
}

impl InstrumentedObjectStore {
    /// Wraps `inner`, timing calls on `clock`.
    pub fn new(inner: Arc<dyn ObjectStore>, clock: SharedClock) -> Self {
        InstrumentedObjectStore {
            inner,
            shared: Arc::new(Shared {
                clock,
                ops: Default::default(),
            }),
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            ops: std::array::from_fn(|i| self.shared.ops[i].snapshot()),
        }
    }

    /// `s` with its failures counted and its latency recorded at its end.
    fn counted_list(
        &self,
        s: BoxStream<'static, OsResult<ObjectMeta>>,
    ) -> BoxStream<'static, OsResult<ObjectMeta>> {
        let shared = self.shared.clone();
        let started = shared.start(StoreOp::List, 0);
        let at_end = shared.clone();
        s.inspect(move |r| {
            if r.is_err() {
                add(&shared.of(StoreOp::List).errors, 1);
            }
        })
        .chain(
            stream::once(async move {
                let c = at_end.of(StoreOp::List);
                add(&c.latency_ms, at_end.clock.now_ms().saturating_sub(started));
            })
            .filter_map(|()| async { None }),
        )
        .boxed()
    }
}

impl std::fmt::Display for InstrumentedObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InstrumentedObjectStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for InstrumentedObjectStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> OsResult<PutResult> {
        let s = &self.shared;
        let t = s.start(StoreOp::Put, payload.content_length() as u64);
        let r = self.inner.put_opts(location, payload, opts).await;
        s.finish(StoreOp::Put, t, &r);
        r
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> OsResult<Box<dyn MultipartUpload>> {
        let s = &self.shared;
        let t = s.start(StoreOp::Multipart, 0);
        let r = self.inner.put_multipart_opts(location, opts).await;
        s.finish(StoreOp::Multipart, t, &r);
        r
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> OsResult<GetResult> {
        let op = if options.head {
            StoreOp::Head
        } else {
            StoreOp::Get
        };
        let s = &self.shared;
        let t = s.start(op, 0);
        let r = self.inner.get_opts(location, options).await;
        s.finish(op, t, &r);
        let r = r?;
        if op == StoreOp::Head {
            return Ok(r);
        }
        let (meta, range) = (r.meta.clone(), r.range.clone());
        let (attributes, extensions) = (r.attributes.clone(), r.extensions.clone());
        let shared = s.clone();
        let body = r.into_stream().inspect(move |chunk| {
            let c = shared.of(StoreOp::Get);
            match chunk {
                Ok(b) => add(&c.bytes_received, b.len() as u64),
                Err(_) => add(&c.errors, 1),
            }
        });
        Ok(GetResult {
            payload: GetResultPayload::Stream(body.boxed()),
            meta,
            range,
            attributes,
            extensions,
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> OsResult<Vec<Bytes>> {
        let s = &self.shared;
        let t = s.start(StoreOp::Get, 0);
        let r = self.inner.get_ranges(location, ranges).await;
        s.finish(StoreOp::Get, t, &r);
        if let Ok(parts) = &r {
            let n: usize = parts.iter().map(Bytes::len).sum();
            add(&s.of(StoreOp::Get).bytes_received, n as u64);
        }
        r
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, OsResult<Path>>,
    ) -> BoxStream<'static, OsResult<Path>> {
        let shared = self.shared.clone();
        // Each location counts as a request when it is handed on; the answers come back in
        // order, one per location.
        let counted = {
            let shared = shared.clone();
            locations.inspect(move |_| {
                shared.start(StoreOp::Delete, 0);
            })
        };
        let started = shared.clock.now_ms();
        self.inner
            .delete_stream(counted.boxed())
            .inspect(move |r| shared.finish(StoreOp::Delete, started, r))
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, OsResult<ObjectMeta>> {
        self.counted_list(self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, OsResult<ObjectMeta>> {
        self.counted_list(self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> OsResult<ListResult> {
        let s = &self.shared;
        let t = s.start(StoreOp::List, 0);
        let r = self.inner.list_with_delimiter(prefix).await;
        s.finish(StoreOp::List, t, &r);
        r
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> OsResult<()> {
        let s = &self.shared;
        let t = s.start(StoreOp::Copy, 0);
        let r = self.inner.copy_opts(from, to, options).await;
        s.finish(StoreOp::Copy, t, &r);
        r
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> OsResult<()> {
        let s = &self.shared;
        let t = s.start(StoreOp::Rename, 0);
        let r = self.inner.rename_opts(from, to, options).await;
        s.finish(StoreOp::Rename, t, &r);
        r
    }
}
