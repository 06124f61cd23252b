//! A fault-injecting object store, for testing how the repo behaves when object storage
//! misbehaves.
//!
//! [`FaultyObjectStore`] wraps any [`ObjectStore`]. For each kind of operation ([`Op`]) and,
//! optionally, only for paths under given prefixes, it can
//!
//! - fail a call before it reaches the store (nothing happened),
//! - delay a call by a bounded random time,
//! - fail a call after the store performed it: a write or delete that took effect but whose
//!   answer was lost (the ambiguous case a writer must resolve), or a read whose answer was
//!   thrown away,
//! - end a GET body or a LIST stream with an error part way through.
//!
//! Injected errors are [`object_store::Error::Generic`] (source [`InjectedFault`]), which
//! [`crate::error::object_store_kind`] classifies as `Unavailable`, so the repo retries them.
//!
//! Every decision is drawn from an RNG seeded by the store's seed, the operation, the path
//! and how many times that operation was called on that path before. A shared sequential
//! RNG would hand each call a draw that depends on how concurrent calls on different paths
//! happened to interleave; keyed draws give every call on a path the same fate in every run
//! with the same seed, so a failing run replays from its seed as far as the caller's own
//! calls on each path are deterministic.
//!
//! Counters of calls and of injected faults ([`FaultStats`]) let a test assert that faults
//! actually happened, and an optional write log ([`FaultyObjectStore::with_write_log`])
//! records every write that reached the wrapped store.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, Extensions, GetOptions, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions,
    PutPayload, PutResult, RenameOptions, UploadPart,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type OsResult<T> = object_store::Result<T>;

/// The store name injected errors carry.
pub const STORE_NAME: &str = "FaultyObjectStore";

/// A kind of object-store operation, each configured separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `put`, `put_opts`.
    Put,
    /// `put_multipart_opts` and the parts and completion of its upload.
    Multipart,
    /// `get`, `get_opts`, `get_range`, `get_ranges`.
    Get,
    /// `head` (a `get_opts` with `head` set).
    Head,
    /// `list`, `list_with_offset`, `list_with_delimiter`.
    List,
    /// `delete`, `delete_stream` (decided per location).
    Delete,
    /// `copy`, `copy_opts`, `copy_if_not_exists`.
    Copy,
    /// `rename`, `rename_opts`, `rename_if_not_exists`.
    Rename,
}

impl Op {
    pub const ALL: [Op; 8] = [
        Op::Put,
        Op::Multipart,
        Op::Get,
        Op::Head,
        Op::List,
        Op::Delete,
        Op::Copy,
        Op::Rename,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Multipart => "multipart",
            Op::Get => "get",
            Op::Head => "head",
            Op::List => "list",
            Op::Delete => "delete",
            Op::Copy => "copy",
            Op::Rename => "rename",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The faults injected into one kind of operation. Probabilities are per call, in [0, 1]
/// (values outside are clamped by the comparison: <= 0 never, >= 1 always).
#[derive(Debug, Clone, PartialEq)]
pub struct OpFaults {
    /// Fail the call before it reaches the store: nothing happens.
    pub fail_before: f64,
    /// Fail the call after the store performed it: a write, delete, copy or rename took
    /// effect (the ambiguous case), or a read's answer is thrown away.
    pub fail_after: f64,
    /// End a GET body after a random number of its bytes, or a LIST after a random number
    /// of its entries, with an error. For calls that return no stream (`get_ranges`,
    /// `list_with_delimiter`) the answer is thrown away after the call, as `fail_after`.
    pub fail_mid_stream: f64,
    /// Delay the call (before it reaches the store) by a random time up to `max_delay`.
    pub delay: f64,
    pub max_delay: Duration,
    /// Only the first this-many calls of this kind on each path may fault (`Some(1)`: only
    /// first attempts). `None`: every call.
    pub first_calls: Option<u32>,
}

impl Default for OpFaults {
    fn default() -> Self {
        OpFaults::NONE
    }
}

impl OpFaults {
    /// No faults.
    pub const NONE: OpFaults = OpFaults {
        fail_before: 0.0,
        fail_after: 0.0,
        fail_mid_stream: 0.0,
        delay: 0.0,
        max_delay: Duration::ZERO,
        first_calls: None,
    };

    /// Fails calls with total probability `p`: half of them before the call, a quarter after
    /// it, a quarter part way through a stream (after it, where there is no stream).
    pub fn flaky(p: f64) -> OpFaults {
        OpFaults {
            fail_before: p / 2.0,
            fail_after: p / 4.0,
            fail_mid_stream: p / 4.0,
            ..OpFaults::NONE
        }
    }

    pub fn with_fail_before(mut self, p: f64) -> Self {
        self.fail_before = p;
        self
    }

    pub fn with_fail_after(mut self, p: f64) -> Self {
        self.fail_after = p;
        self
    }

    pub fn with_fail_mid_stream(mut self, p: f64) -> Self {
        self.fail_mid_stream = p;
        self
    }

    pub fn with_delay(mut self, p: f64, max: Duration) -> Self {
        self.delay = p;
        self.max_delay = max;
        self
    }

    pub fn with_first_calls(mut self, n: u32) -> Self {
        self.first_calls = Some(n);
        self
    }

    fn is_none(&self) -> bool {
        self.fail_before <= 0.0
            && self.fail_after <= 0.0
            && self.fail_mid_stream <= 0.0
            && self.delay <= 0.0
    }
}

/// What a [`FaultyObjectStore`] injects, per kind of operation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultConfig {
    pub put: OpFaults,
    pub multipart: OpFaults,
    pub get: OpFaults,
    pub head: OpFaults,
    pub list: OpFaults,
    pub delete: OpFaults,
    pub copy: OpFaults,
    pub rename: OpFaults,
    /// Faults apply only to paths under one of these prefixes (segment-wise, as
    /// [`Path::prefix_matches`]); a LIST applies when its prefix and one of these contain
    /// one another. Empty: every path.
    pub prefixes: Vec<Path>,
}

impl FaultConfig {
    /// No faults at all.
    pub fn none() -> Self {
        FaultConfig::default()
    }

    /// Every kind of operation fails with total probability `p` ([`OpFaults::flaky`]) and
    /// is delayed with probability `p` by up to `max_delay`.
    pub fn flaky(p: f64, max_delay: Duration) -> Self {
        let f = OpFaults::flaky(p).with_delay(p, max_delay);
        FaultConfig {
            put: f.clone(),
            multipart: f.clone(),
            get: f.clone(),
            head: f.clone(),
            list: f.clone(),
            delete: f.clone(),
            copy: f.clone(),
            rename: f,
            prefixes: Vec::new(),
        }
    }

    /// This configuration with `op` set to `faults`.
    pub fn with(mut self, op: Op, faults: OpFaults) -> Self {
        *self.op_mut(op) = faults;
        self
    }

    /// This configuration limited to paths under `prefix` (added to any given before).
    pub fn only_under(mut self, prefix: impl Into<Path>) -> Self {
        self.prefixes.push(prefix.into());
        self
    }

    pub fn op(&self, op: Op) -> &OpFaults {
        match op {
            Op::Put => &self.put,
            Op::Multipart => &self.multipart,
            Op::Get => &self.get,
            Op::Head => &self.head,
            Op::List => &self.list,
            Op::Delete => &self.delete,
            Op::Copy => &self.copy,
            Op::Rename => &self.rename,
        }
    }

    pub fn op_mut(&mut self, op: Op) -> &mut OpFaults {
        match op {
            Op::Put => &mut self.put,
            Op::Multipart => &mut self.multipart,
            Op::Get => &mut self.get,
            Op::Head => &mut self.head,
            Op::List => &mut self.list,
            Op::Delete => &mut self.delete,
            Op::Copy => &mut self.copy,
            Op::Rename => &mut self.rename,
        }
    }

    fn covers(&self, path: &Path) -> bool {
        self.prefixes.is_empty() || self.prefixes.iter().any(|p| path.prefix_matches(p))
    }

    fn covers_listing(&self, prefix: &Path) -> bool {
        self.prefixes.is_empty()
            || self
                .prefixes
                .iter()
                .any(|p| prefix.prefix_matches(p) || p.prefix_matches(prefix))
    }
}

/// Counts for one kind of operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpStats {
    /// Calls made (for deletes, locations).
    pub calls: u64,
    /// Calls failed before they reached the store.
    pub failed_before: u64,
    /// Calls failed after the store performed them.
    pub failed_after: u64,
    /// Streams ended with an error part way (or, without a stream, answers thrown away).
    pub failed_mid_stream: u64,
    /// Calls delayed.
    pub delayed: u64,
    /// Calls the wrapped store refused because the object already existed (a conditional
    /// create, or a copy or rename that must not overwrite).
    pub already_exists: u64,
}

impl OpStats {
    /// Faults injected: failures of every kind (delays aside).
    pub fn faults(&self) -> u64 {
        self.failed_before + self.failed_after + self.failed_mid_stream
    }

    fn add(&mut self, o: &OpStats) {
        self.calls += o.calls;
        self.failed_before += o.failed_before;
        self.failed_after += o.failed_after;
        self.failed_mid_stream += o.failed_mid_stream;
        self.delayed += o.delayed;
        self.already_exists += o.already_exists;
    }
}

/// Counts per kind of operation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultStats {
    ops: [OpStats; 8],
}

impl FaultStats {
    pub fn op(&self, op: Op) -> OpStats {
        self.ops[op.index()]
    }

    /// All kinds together.
    pub fn total(&self) -> OpStats {
        let mut t = OpStats::default();
        for o in &self.ops {
            t.add(o);
        }
        t
    }
}

impl std::fmt::Display for FaultStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for op in Op::ALL {
            let s = self.op(op);
            if s.calls == 0 {
                continue;
            }
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            write!(
                f,
                "{op}: {} calls, {} failed before, {} after, {} mid-stream, {} delayed",
                s.calls, s.failed_before, s.failed_after, s.failed_mid_stream, s.delayed
            )?;
        }
        if first {
            f.write_str("no calls")?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    failed_before: AtomicU64,
    failed_after: AtomicU64,
    failed_mid_stream: AtomicU64,
    delayed: AtomicU64,
    already_exists: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> OpStats {
        OpStats {
            calls: self.calls.load(Ordering::Relaxed),
            failed_before: self.failed_before.load(Ordering::Relaxed),
            failed_after: self.failed_after.load(Ordering::Relaxed),
            failed_mid_stream: self.failed_mid_stream.load(Ordering::Relaxed),
            delayed: self.delayed.load(Ordering::Relaxed),
            already_exists: self.already_exists.load(Ordering::Relaxed),
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The error an injected fault returns (as the source of an
/// [`object_store::Error::Generic`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedFault {
    pub op: Op,
    pub path: String,
    /// Which fault: "before the call", "after the call", "part way through the stream".
    pub when: &'static str,
    /// How many calls of this kind on this path came before this one.
    pub call: u32,
}

impl std::fmt::Display for InjectedFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "injected fault: {} {} failed {} (call {})",
            self.op, self.path, self.when, self.call
        )
    }
}

impl std::error::Error for InjectedFault {}

/// Whether an object-store error (or one it wraps) is an injected fault.
pub fn is_injected(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.is::<InjectedFault>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// A write that reached the wrapped store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRecord {
    pub op: Op,
    pub path: Path,
    /// crc32 of the bytes written (None for copies and renames, whose bytes the wrapper
    /// does not see).
    pub crc32: Option<u32>,
    pub len: Option<u64>,
    /// Whether the write was a conditional create (`PutMode::Create`, `CopyMode::Create`).
    pub create: bool,
    /// Whether the caller was told the write failed although it took effect (an injected
    /// fault after the call).
    pub answer_lost: bool,
}

/// What happens to one call.
#[derive(Debug, Clone, Copy)]
struct Decision {
    op: Op,
    call: u32,
    /// Whether faults could apply to this call (enabled, covered, within `first_calls`).
    armed: bool,
    fail_before: bool,
    delay: Option<Duration>,
    fail_after: bool,
    /// Where a stream is cut, as a fraction of its length.
    mid_stream: Option<f64>,
}

impl Decision {
    fn clean(op: Op, call: u32) -> Self {
        Decision {
            op,
            call,
            armed: false,
            fail_before: false,
            delay: None,
            fail_after: false,
            mid_stream: None,
        }
    }

    /// Draws a decision. Always draws the same values in the same order, so that changing
    /// one probability does not reshuffle the others.
    fn draw(op: Op, call: u32, f: &OpFaults, rng: &mut StdRng) -> Self {
        let u: [f64; 6] = std::array::from_fn(|_| rng.random::<f64>());
        let fail_before = u[0] < f.fail_before;
        Decision {
            op,
            call,
            armed: true,
            fail_before,
            delay: (u[1] < f.delay && !f.max_delay.is_zero()).then(|| f.max_delay.mul_f64(u[2])),
            fail_after: !fail_before && u[3] < f.fail_after,
            mid_stream: (!fail_before && u[4] < f.fail_mid_stream).then_some(u[5]),
        }
    }
}

struct Shared {
    inner: Arc<dyn ObjectStore>,
    seed: u64,
    enabled: AtomicBool,
    config: Mutex<FaultConfig>,
    /// Calls so far per operation and path (only calls that faults could apply to).
    calls: Mutex<HashMap<(Op, String), u32>>,
    counters: [Counters; 8],
    log: Option<Mutex<Vec<WriteRecord>>>,
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the data here are
/// counters and a configuration, valid at every point).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// FNV-1a over the key, finished with splitmix64.
fn key_seed(seed: u64, op: Op, path: &str, call: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let bytes = [op as u8]
        .into_iter()
        .chain(path.bytes())
        .chain(call.to_le_bytes());
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl Shared {
    fn counters(&self, op: Op) -> &Counters {
        &self.counters[op.index()]
    }

    /// Decides the fate of a call of `op` on `key`; `covered` says whether the configured
    /// prefixes cover it.
    fn decide_with(
        &self,
        op: Op,
        key: &str,
        covered: impl FnOnce(&FaultConfig) -> bool,
    ) -> Decision {
        bump(&self.counters(op).calls);
        if !self.enabled.load(Ordering::SeqCst) {
            return Decision::clean(op, 0);
        }
        let faults = {
            let cfg = lock(&self.config);
            let f = cfg.op(op);
            if f.is_none() || !covered(&cfg) {
                return Decision::clean(op, 0);
            }
            f.clone()
        };
        let call = {
            let mut calls = lock(&self.calls);
            let n = calls.entry((op, key.to_string())).or_insert(0);
            let call = *n;
            *n = n.saturating_add(1);
            call
        };
        if faults.first_calls.is_some_and(|k| call >= k) {
            return Decision::clean(op, call);
        }
        let mut rng = StdRng::seed_from_u64(key_seed(self.seed, op, key, call));
        Decision::draw(op, call, &faults, &mut rng)
    }

    fn decide(&self, op: Op, path: &Path) -> Decision {
        self.decide_with(op, path.as_ref(), |c| c.covers(path))
    }

    fn decide_list(&self, prefix: Option<&Path>) -> Decision {
        let root = Path::default();
        let p = prefix.unwrap_or(&root);
        self.decide_with(Op::List, p.as_ref(), |c| c.covers_listing(p))
    }

    fn error(&self, d: &Decision, path: &str, when: &'static str) -> object_store::Error {
        object_store::Error::Generic {
            store: STORE_NAME,
            source: Box::new(InjectedFault {
                op: d.op,
                path: path.to_string(),
                when,
                call: d.call,
            }),
        }
    }

    /// Sleeps if the decision says so, then fails if it says to fail before the call.
    async fn before(&self, d: &Decision, path: &str) -> OsResult<()> {
        if let Some(t) = d.delay {
            bump(&self.counters(d.op).delayed);
            tokio::time::sleep(t).await;
        }
        if d.fail_before {
            bump(&self.counters(d.op).failed_before);
            return Err(self.error(d, path, "before the call"));
        }
        Ok(())
    }

    /// Fails if the decision says to fail after the call (or, `as_mid_stream`, to throw
    /// away an answer that has no stream to cut).
    fn after(&self, d: &Decision, path: &str, as_mid_stream: bool) -> OsResult<()> {
        if d.fail_after {
            bump(&self.counters(d.op).failed_after);
            return Err(self.error(d, path, "after the call"));
        }
        if as_mid_stream && d.mid_stream.is_some() {
            bump(&self.counters(d.op).failed_mid_stream);
            return Err(self.error(d, path, "part way through the answer"));
        }
        Ok(())
    }

    /// Counts a refusal because the object exists.
    fn note<T>(&self, op: Op, r: &OsResult<T>) {
        if matches!(r, Err(object_store::Error::AlreadyExists { .. })) {
            bump(&self.counters(op).already_exists);
        }
    }

    fn record(&self, w: WriteRecord) {
        if let Some(log) = &self.log {
            lock(log).push(w);
        }
    }
}

/// An [`ObjectStore`] that injects faults into the calls it passes to another one. See the
/// module documentation.
#[derive(Clone)]
pub struct FaultyObjectStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FaultyObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyObjectStore")
            .field("inner", &self.shared.inner)
            .field("seed", &self.shared.seed)
            .field("enabled", &self.shared.enabled.load(Ordering::SeqCst))
            .field("config", &*lock(&self.shared.config))
            .finish()
    }
}

impl std::fmt::Display for FaultyObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaultyObjectStore({})", self.shared.inner)
    }
}

impl FaultyObjectStore {
    /// Wraps `inner`, injecting the faults of `config`, drawn from `seed`.
    pub fn new(inner: Arc<dyn ObjectStore>, config: FaultConfig, seed: u64) -> Self {
        FaultyObjectStore {
            shared: Arc::new(Shared {
                inner,
                seed,
                enabled: AtomicBool::new(true),
                config: Mutex::new(config),
                calls: Mutex::new(HashMap::new()),
                counters: Default::default(),
                log: None,
            }),
        }
    }

    /// Also records every write that reaches the wrapped store ([`Self::writes`]). Call
    /// before the store is shared.
    pub fn with_write_log(self) -> Self {
        let s = &self.shared;
        FaultyObjectStore {
            shared: Arc::new(Shared {
                inner: s.inner.clone(),
                seed: s.seed,
                enabled: AtomicBool::new(s.enabled.load(Ordering::SeqCst)),
                config: Mutex::new(lock(&s.config).clone()),
                calls: Mutex::new(lock(&s.calls).clone()),
                counters: Default::default(),
                log: Some(Mutex::new(Vec::new())),
            }),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.shared.inner
    }

    pub fn seed(&self) -> u64 {
        self.shared.seed
    }

    pub fn config(&self) -> FaultConfig {
        lock(&self.shared.config).clone()
    }

    /// Replaces the configuration for the calls that follow.
    pub fn set_config(&self, config: FaultConfig) {
        *lock(&self.shared.config) = config;
    }

    /// Turns fault injection on or off (on at creation); calls are counted either way.
    pub fn set_enabled(&self, enabled: bool) {
        self.shared.enabled.store(enabled, Ordering::SeqCst);
    }

    pub fn stats(&self) -> FaultStats {
        FaultStats {
            ops: std::array::from_fn(|i| self.shared.counters[i].snapshot()),
        }
    }

    /// Every write that reached the wrapped store, in order (empty without
    /// [`Self::with_write_log`]).
    pub fn writes(&self) -> Vec<WriteRecord> {
        self.shared
            .log
            .as_ref()
            .map(|l| lock(l).clone())
            .unwrap_or_default()
    }

    /// A list stream with the decision `d` applied.
    fn faulty_list(
        &self,
        d: Decision,
        key: String,
        inner: Option<BoxStream<'static, OsResult<ObjectMeta>>>,
    ) -> BoxStream<'static, OsResult<ObjectMeta>> {
        let shared = self.shared.clone();
        let fut = async move {
            shared.before(&d, &key).await?;
            let Some(inner) = inner else {
                return Err(shared.error(&d, &key, "before the call"));
            };
            if d.fail_after {
                bump(&shared.counters(d.op).failed_after);
                return Err(shared.error(&d, &key, "after the call"));
            }
            let Some(frac) = d.mid_stream else {
                return Ok(inner);
            };
            // Cut after a fraction of the entries: collect them first (this store is for
            // tests; listings are small).
            let all: Vec<ObjectMeta> = inner.try_collect().await?;
            let keep = ((all.len() as f64) * frac) as usize;
            let err = shared.error(&d, &key, "part way through the stream");
            let counted = stream::once(async move {
                bump(&shared.counters(Op::List).failed_mid_stream);
                Err(err)
            });
            Ok(stream::iter(all.into_iter().take(keep).map(Ok))
                .chain(counted)
                .boxed())
        };
        stream::once(fut)
            .map(|r| match r {
                Ok(s) => s,
                Err(e) => stream::once(async move { Err(e) }).boxed(),
            })
            .flatten()
            .boxed()
    }
}

/// A GET body that ends with an injected error after `cut` bytes.
fn cut_stream(
    shared: Arc<Shared>,
    d: Decision,
    key: String,
    inner: BoxStream<'static, OsResult<Bytes>>,
    cut: u64,
) -> BoxStream<'static, OsResult<Bytes>> {
    struct St {
        inner: BoxStream<'static, OsResult<Bytes>>,
        sent: u64,
        pending: Option<object_store::Error>,
        done: bool,
    }
    let st = St {
        inner,
        sent: 0,
        pending: None,
        done: false,
    };
    stream::unfold(st, move |mut st| {
        let shared = shared.clone();
        let key = key.clone();
        async move {
            if st.done {
                return None;
            }
            let inject = |st: &mut St| {
                st.done = true;
                bump(&shared.counters(Op::Get).failed_mid_stream);
                shared.error(&d, &key, "part way through the stream")
            };
            if let Some(e) = st.pending.take() {
                st.done = true;
                return Some((Err(e), st));
            }
            match st.inner.next().await {
                // Shorter than the cut (an empty object): fail at its end.
                None => {
                    let e = inject(&mut st);
                    Some((Err(e), st))
                }
                Some(Err(e)) => {
                    st.done = true;
                    Some((Err(e), st))
                }
                Some(Ok(chunk)) => {
                    let left = cut - st.sent;
                    if (chunk.len() as u64) < left {
                        st.sent += chunk.len() as u64;
                        return Some((Ok(chunk), st));
                    }
                    let e = inject(&mut st);
                    if left == 0 {
                        return Some((Err(e), st));
                    }
                    // Deliver the bytes before the cut, then the error.
                    st.done = false;
                    st.pending = Some(e);
                    st.sent += left;
                    Some((Ok(chunk.slice(..left as usize)), st))
                }
            }
        }
    })
    .boxed()
}

#[async_trait]
impl ObjectStore for FaultyObjectStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> OsResult<PutResult> {
        let s = &self.shared;
        let d = s.decide(Op::Put, location);
        s.before(&d, location.as_ref()).await?;
        let create = matches!(opts.mode, object_store::PutMode::Create);
        let summary = s.log.as_ref().map(|_| {
            let mut h = crc32fast::Hasher::new();
            for chunk in payload.iter() {
                h.update(chunk);
            }
            (h.finalize(), payload.content_length() as u64)
        });
        let r = s.inner.put_opts(location, payload, opts).await;
        s.note(Op::Put, &r);
        let r = r?;
        if let Some((crc, len)) = summary {
            s.record(WriteRecord {
                op: Op::Put,
                path: location.clone(),
                crc32: Some(crc),
                len: Some(len),
                create,
                answer_lost: d.fail_after,
            });
        }
        s.after(&d, location.as_ref(), false)?;
        Ok(r)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> OsResult<Box<dyn MultipartUpload>> {
        let s = &self.shared;
        let d = s.decide(Op::Multipart, location);
        s.before(&d, location.as_ref()).await?;
        let mut upload = s.inner.put_multipart_opts(location, opts).await?;
        if let Err(e) = s.after(&d, location.as_ref(), false) {
            // The caller never sees this upload; do not leave it behind.
            let _ = upload.abort().await;
            return Err(e);
        }
        // Parts and completion draw from a generator of their own, seeded by this call.
        let faults = d.armed.then(|| lock(&s.config).multipart.clone());
        let seed = key_seed(s.seed, Op::Multipart, location.as_ref(), d.call) ^ 0x5555;
        Ok(Box::new(FaultyUpload {
            inner: upload,
            shared: s.clone(),
            path: location.clone(),
            faults,
            rng: StdRng::seed_from_u64(seed),
            parts: 0,
            crc: crc32fast::Hasher::new(),
            len: 0,
        }) as Box<dyn MultipartUpload>)
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> OsResult<GetResult> {
        let s = &self.shared;
        let op = if options.head { Op::Head } else { Op::Get };
        let d = s.decide(op, location);
        s.before(&d, location.as_ref()).await?;
        let r = s.inner.get_opts(location, options).await?;
        s.after(&d, location.as_ref(), op == Op::Head)?;
        let Some(frac) = d.mid_stream.filter(|_| op == Op::Get) else {
            return Ok(r);
        };
        let GetResult {
            payload,
            meta,
            range,
            attributes,
            extensions,
        } = r;
        let len = range.end.saturating_sub(range.start);
        let cut = ((len as f64) * frac) as u64;
        let body = GetResult {
            payload,
            meta: meta.clone(),
            range: range.clone(),
            attributes: Attributes::new(),
            extensions: Extensions::new(),
        }
        .into_stream();
        let body = cut_stream(s.clone(), d, location.to_string(), body, cut.min(len));
        Ok(GetResult {
            payload: GetResultPayload::Stream(body),
            meta,
            range,
            attributes,
            extensions,
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> OsResult<Vec<Bytes>> {
        let s = &self.shared;
        let d = s.decide(Op::Get, location);
        s.before(&d, location.as_ref()).await?;
        let r = s.inner.get_ranges(location, ranges).await?;
        s.after(&d, location.as_ref(), true)?;
        Ok(r)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, OsResult<Path>>,
    ) -> BoxStream<'static, OsResult<Path>> {
        let shared = self.shared.clone();
        locations
            .then(move |location| {
                let s = shared.clone();
                async move {
                    let location = location?;
                    let d = s.decide(Op::Delete, &location);
                    s.before(&d, location.as_ref()).await?;
                    s.inner.delete(&location).await?;
                    s.after(&d, location.as_ref(), false)?;
                    Ok(location)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, OsResult<ObjectMeta>> {
        let d = self.shared.decide_list(prefix);
        let inner = (!d.fail_before).then(|| self.shared.inner.list(prefix));
        let key = prefix.map(|p| p.to_string()).unwrap_or_default();
        self.faulty_list(d, key, inner)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, OsResult<ObjectMeta>> {
        let d = self.shared.decide_list(prefix);
        let inner = (!d.fail_before).then(|| self.shared.inner.list_with_offset(prefix, offset));
        let key = prefix.map(|p| p.to_string()).unwrap_or_default();
        self.faulty_list(d, key, inner)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> OsResult<ListResult> {
        let s = &self.shared;
        let d = s.decide_list(prefix);
        let key = prefix.map(|p| p.to_string()).unwrap_or_default();
        s.before(&d, &key).await?;
        let r = s.inner.list_with_delimiter(prefix).await?;
        s.after(&d, &key, true)?;
        Ok(r)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> OsResult<()> {
        let s = &self.shared;
        let d = s.decide_with(Op::Copy, to.as_ref(), |c| c.covers(from) || c.covers(to));
        s.before(&d, to.as_ref()).await?;
        let create = matches!(options.mode, object_store::CopyMode::Create);
        let r = s.inner.copy_opts(from, to, options).await;
        s.note(Op::Copy, &r);
        r?;
        s.record(WriteRecord {
            op: Op::Copy,
            path: to.clone(),
            crc32: None,
            len: None,
            create,
            answer_lost: d.fail_after,
        });
        s.after(&d, to.as_ref(), false)
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> OsResult<()> {
        let s = &self.shared;
        let d = s.decide_with(Op::Rename, to.as_ref(), |c| c.covers(from) || c.covers(to));
        s.before(&d, to.as_ref()).await?;
        let create = matches!(options.target_mode, object_store::RenameTargetMode::Create);
        let r = s.inner.rename_opts(from, to, options).await;
        s.note(Op::Rename, &r);
        r?;
        s.record(WriteRecord {
            op: Op::Rename,
            path: to.clone(),
            crc32: None,
            len: None,
            create,
            answer_lost: d.fail_after,
        });
        s.after(&d, to.as_ref(), false)
    }
}

/// A multipart upload whose parts and completion may fail.
struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    shared: Arc<Shared>,
    path: Path,
    /// None: this upload is not subject to faults.
    faults: Option<OpFaults>,
    rng: StdRng,
    parts: u32,
    crc: crc32fast::Hasher,
    len: u64,
}

impl std::fmt::Debug for FaultyUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyUpload")
            .field("path", &self.path)
            .field("inner", &self.inner)
            .field("parts", &self.parts)
            .finish()
    }
}

impl FaultyUpload {
    fn next_decision(&mut self) -> Decision {
        let call = self.parts;
        self.parts = self.parts.saturating_add(1);
        match &self.faults {
            Some(f) => Decision::draw(Op::Multipart, call, f, &mut self.rng),
            None => Decision::clean(Op::Multipart, call),
        }
    }
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let d = self.next_decision();
        let shared = self.shared.clone();
        let key = self.path.to_string();
        if d.fail_before {
            // Decided now so that the part is not handed to the store at all.
            return Box::pin(async move { shared.before(&d, &key).await });
        }
        for chunk in data.iter() {
            self.crc.update(chunk);
        }
        self.len += data.content_length() as u64;
        let part = self.inner.put_part(data);
        Box::pin(async move {
            shared.before(&d, &key).await?;
            part.await?;
            shared.after(&d, &key, false)
        })
    }

    async fn complete(&mut self) -> OsResult<PutResult> {
        let d = self.next_decision();
        let key = self.path.to_string();
        self.shared.before(&d, &key).await?;
        let r = self.inner.complete().await;
        self.shared.note(Op::Multipart, &r);
        let r = r?;
        self.shared.record(WriteRecord {
            op: Op::Multipart,
            path: self.path.clone(),
            crc32: Some(self.crc.clone().finalize()),
            len: Some(self.len),
            create: false,
            answer_lost: d.fail_after,
        });
        self.shared.after(&d, &key, false)?;
        Ok(r)
    }

    async fn abort(&mut self) -> OsResult<()> {
        self.inner.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::PutMode;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn store(config: FaultConfig, seed: u64) -> (Arc<InMemory>, FaultyObjectStore) {
        let mem = Arc::new(InMemory::new());
        let f = FaultyObjectStore::new(mem.clone(), config, seed);
        (mem, f)
    }

    fn injected(e: &object_store::Error) -> bool {
        matches!(e, object_store::Error::Generic { store, .. } if *store == STORE_NAME)
            && is_injected(e)
    }

    async fn read(s: &dyn ObjectStore, p: &Path) -> OsResult<Bytes> {
        s.get(p).await?.bytes().await
    }

    #[test]
    fn without_faults_every_operation_passes_through() {
        rt().block_on(async {
            let (mem, f) = store(FaultConfig::none(), 1);
            let f = f.with_write_log();
            let a = Path::from("d/a");
            let b = Path::from("d/b");
            f.put(&a, Bytes::from_static(b"hello world").into())
                .await
                .unwrap();
            assert_eq!(read(&f, &a).await.unwrap(), &b"hello world"[..]);
            assert_eq!(read(mem.as_ref(), &a).await.unwrap(), &b"hello world"[..]);
            assert_eq!(f.head(&a).await.unwrap().size, 11);
            assert_eq!(f.get_range(&a, 6..11).await.unwrap(), &b"world"[..]);
            assert_eq!(
                f.get_ranges(&a, &[0..1, 2..4]).await.unwrap(),
                vec![Bytes::from_static(b"h"), Bytes::from_static(b"ll")]
            );
            f.copy(&a, &b).await.unwrap();
            let err = f.copy_if_not_exists(&a, &b).await.unwrap_err();
            assert!(matches!(err, object_store::Error::AlreadyExists { .. }));
            let listed: Vec<_> = f
                .list(Some(&Path::from("d")))
                .map_ok(|m| m.location)
                .try_collect()
                .await
                .unwrap();
            assert_eq!(listed, vec![a.clone(), b.clone()]);
            let after_a: Vec<_> = f
                .list_with_offset(Some(&Path::from("d")), &a)
                .map_ok(|m| m.location)
                .try_collect()
                .await
                .unwrap();
            assert_eq!(after_a, vec![b.clone()]);
            assert_eq!(
                f.list_with_delimiter(None)
                    .await
                    .unwrap()
                    .common_prefixes
                    .len(),
                1
            );
            let c = Path::from("e/c");
            f.rename(&b, &c).await.unwrap();
            assert!(read(&f, &b).await.is_err());
            f.delete(&c).await.unwrap();
            assert!(matches!(
                read(mem.as_ref(), &c).await.unwrap_err(),
                object_store::Error::NotFound { .. }
            ));
            let mut up = f.put_multipart(&c).await.unwrap();
            up.put_part(Bytes::from_static(b"ab").into()).await.unwrap();
            up.put_part(Bytes::from_static(b"cd").into()).await.unwrap();
            up.complete().await.unwrap();
            assert_eq!(read(mem.as_ref(), &c).await.unwrap(), &b"abcd"[..]);

            let st = f.stats();
            assert_eq!(st.total().faults(), 0);
            assert_eq!(st.total().delayed, 0);
            assert_eq!(st.op(Op::Put).calls, 1);
            assert_eq!(st.op(Op::Copy).already_exists, 1);
            assert!(st.op(Op::Get).calls >= 4);
            assert_eq!(st.op(Op::Head).calls, 1);
            let w = f.writes();
            assert_eq!(w.len(), 4, "{w:?}");
            assert_eq!(w[0].crc32, Some(crc32fast::hash(b"hello world")));
            assert_eq!(w[3].crc32, Some(crc32fast::hash(b"abcd")));
            assert!(format!("{f}").contains("InMemory"));
        });
    }

    #[test]
    fn failing_before_the_call_leaves_the_store_untouched() {
        rt().block_on(async {
            let cfg = FaultConfig::none()
                .with(Op::Put, OpFaults::NONE.with_fail_before(1.0))
                .with(Op::Delete, OpFaults::NONE.with_fail_before(1.0));
            let (mem, f) = store(cfg, 2);
            let p = Path::from("x");
            let e = f
                .put(&p, Bytes::from_static(b"1").into())
                .await
                .unwrap_err();
            assert!(injected(&e), "{e}");
            assert!(e
                .to_string()
                .contains("injected fault: put x failed before the call"));
            assert!(mem.head(&p).await.is_err());
            mem.put(&p, Bytes::from_static(b"1").into()).await.unwrap();
            assert!(injected(&f.delete(&p).await.unwrap_err()));
            assert!(mem.head(&p).await.is_ok());
            let st = f.stats();
            assert_eq!(st.op(Op::Put).failed_before, 1);
            assert_eq!(st.op(Op::Delete).failed_before, 1);
            assert_eq!(st.total().faults(), 2);
            // Turned off, the same calls go through.
            f.set_enabled(false);
            f.delete(&p).await.unwrap();
            assert!(mem.head(&p).await.is_err());
        });
    }

    #[test]
    fn failing_after_a_write_leaves_it_written() {
        rt().block_on(async {
            let cfg = FaultConfig::none()
                .with(
                    Op::Put,
                    OpFaults::NONE.with_fail_after(1.0).with_first_calls(1),
                )
                .with(Op::Delete, OpFaults::NONE.with_fail_after(1.0));
            let (mem, f) = store(cfg, 3);
            let f = f.with_write_log();
            let p = Path::from("obj");
            let create = || PutOptions::from(PutMode::Create);
            let e = f
                .put_opts(&p, Bytes::from_static(b"v1").into(), create())
                .await
                .unwrap_err();
            assert!(injected(&e));
            assert_eq!(read(mem.as_ref(), &p).await.unwrap(), &b"v1"[..]);
            // Only the first call on a path faults: the retry finds the object.
            let e = f
                .put_opts(&p, Bytes::from_static(b"v1").into(), create())
                .await
                .unwrap_err();
            assert!(
                matches!(e, object_store::Error::AlreadyExists { .. }),
                "{e}"
            );
            // Another path faults on its first call again.
            let q = Path::from("other");
            assert!(f.put(&q, Bytes::from_static(b"x").into()).await.is_err());
            f.put(&q, Bytes::from_static(b"y").into()).await.unwrap();
            assert!(injected(&f.delete(&q).await.unwrap_err()));
            assert!(mem.head(&q).await.is_err());
            let st = f.stats().op(Op::Put);
            assert_eq!((st.calls, st.failed_after, st.already_exists), (4, 2, 1));
            assert_eq!(f.stats().op(Op::Delete).failed_after, 1);
            let paths: Vec<String> = f.writes().iter().map(|w| w.path.to_string()).collect();
            assert_eq!(paths, ["obj", "other", "other"]);
        });
    }

    #[test]
    fn a_get_can_fail_part_way_through_its_body() {
        rt().block_on(async {
            let cfg = FaultConfig::none().with(Op::Get, OpFaults::NONE.with_fail_mid_stream(1.0));
            let (mem, f) = store(cfg, 4);
            let p = Path::from("big");
            let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
            mem.put(&p, data.clone().into()).await.unwrap();
            for _ in 0..20 {
                let r = f.get(&p).await.unwrap();
                assert_eq!(r.meta.size, 10_000);
                let mut got = Vec::new();
                let mut s = r.into_stream();
                let mut err = None;
                while let Some(c) = s.next().await {
                    match c {
                        Ok(b) => got.extend_from_slice(&b),
                        Err(e) => err = Some(e),
                    }
                }
                let err = err.expect("the body must end with an error");
                assert!(injected(&err), "{err}");
                assert!(got.len() < data.len());
                assert_eq!(
                    &got[..],
                    &data[..got.len()],
                    "bytes before the cut are intact"
                );
                assert!(f.get(&p).await.unwrap().bytes().await.is_err());
            }
            // Head requests are a kind of their own and not affected.
            f.head(&p).await.unwrap();
            assert_eq!(f.stats().op(Op::Get).failed_mid_stream, 40);
            // An empty object fails at its end.
            let e = Path::from("empty");
            mem.put(&e, PutPayload::new()).await.unwrap();
            assert!(f.get(&e).await.unwrap().bytes().await.is_err());
            // Ranges are thrown away after reading.
            assert!(injected(
                &f.get_ranges(&p, &[0..4, 5..6]).await.unwrap_err()
            ));
        });
    }

    #[test]
    fn lists_fail_before_after_and_part_way() {
        rt().block_on(async {
            let (mem, f) = store(FaultConfig::none(), 5);
            for i in 0..50 {
                mem.put(
                    &Path::from(format!("l/{i:03}")),
                    Bytes::from_static(b"x").into(),
                )
                .await
                .unwrap();
            }
            let collect = |s: BoxStream<'static, OsResult<ObjectMeta>>| async move {
                let v: Vec<OsResult<ObjectMeta>> = s.collect().await;
                let ok = v.iter().filter(|r| r.is_ok()).count();
                let errs: Vec<_> = v.into_iter().filter_map(|r| r.err()).collect();
                (ok, errs)
            };
            for (faults, ok_max) in [
                (OpFaults::NONE.with_fail_before(1.0), 0),
                (OpFaults::NONE.with_fail_after(1.0), 0),
                (OpFaults::NONE.with_fail_mid_stream(1.0), 49),
            ] {
                f.set_config(FaultConfig::none().with(Op::List, faults));
                for _ in 0..10 {
                    let (ok, errs) = collect(f.list(Some(&Path::from("l")))).await;
                    assert!(ok <= ok_max);
                    assert_eq!(errs.len(), 1);
                    assert!(injected(&errs[0]));
                }
                assert!(injected(&f.list_with_delimiter(None).await.unwrap_err()));
            }
            let st = f.stats().op(Op::List);
            assert_eq!(
                (st.failed_before, st.failed_after, st.failed_mid_stream),
                (11, 11, 11)
            );
        });
    }

    #[test]
    fn faults_apply_only_under_the_configured_prefixes() {
        rt().block_on(async {
            let cfg = FaultConfig::none()
                .with(Op::Put, OpFaults::NONE.with_fail_before(1.0))
                .with(Op::List, OpFaults::NONE.with_fail_before(1.0))
                .only_under("wal");
            let (_mem, f) = store(cfg, 6);
            // Segment-wise: wal-index is not under wal.
            f.put(&Path::from("wal-index/1"), Bytes::from_static(b"x").into())
                .await
                .unwrap();
            f.put(&Path::from("manifest/1"), Bytes::from_static(b"x").into())
                .await
                .unwrap();
            assert!(f
                .put(&Path::from("wal/1"), Bytes::from_static(b"x").into())
                .await
                .is_err());
            // A listing of the root covers wal; one of manifest does not.
            let root: Vec<_> = f.list(None).collect().await;
            assert!(root.iter().any(|r| r.is_err()));
            let m: Vec<_> = f.list(Some(&Path::from("manifest"))).collect().await;
            assert!(m.iter().all(|r| r.is_ok()) && m.len() == 1);
            assert_eq!(f.stats().op(Op::Put).failed_before, 1);
        });
    }

    /// The fate of the n-th call on a path depends only on the seed, the operation, the path
    /// and n: interleaving calls on other paths differently changes nothing.
    #[test]
    fn decisions_replay_from_the_seed_whatever_the_interleaving() {
        rt().block_on(async {
            let cfg = FaultConfig::flaky(0.5, Duration::ZERO);
            let outcomes = |order: Vec<&'static str>, seed: u64| {
                let cfg = cfg.clone();
                async move {
                    let (_mem, f) = store(cfg, seed);
                    let mut out: HashMap<&str, Vec<bool>> = HashMap::new();
                    for p in order {
                        let ok = f
                            .put(&Path::from(p), Bytes::from_static(b"x").into())
                            .await
                            .is_ok();
                        out.entry(p).or_default().push(ok);
                    }
                    (out, f.stats())
                }
            };
            let a: Vec<&str> = ["a", "b", "c"].repeat(20);
            let mut b = a.clone();
            b.sort();
            let (oa, sa) = outcomes(a.clone(), 7).await;
            let (ob, sb) = outcomes(b, 7).await;
            assert_eq!(oa, ob);
            assert_eq!(sa, sb);
            assert!(sa.op(Op::Put).faults() > 5 && sa.op(Op::Put).faults() < 55);
            let (oc, _) = outcomes(a, 8).await;
            assert_ne!(oa, oc, "another seed, other fates");
        });
    }

    #[test]
    fn delays_are_bounded_and_counted() {
        rt().block_on(async {
            let cfg = FaultConfig::none().with(
                Op::Get,
                OpFaults::NONE.with_delay(1.0, Duration::from_millis(5)),
            );
            let (mem, f) = store(cfg, 9);
            let p = Path::from("d");
            mem.put(&p, Bytes::from_static(b"x").into()).await.unwrap();
            let t = std::time::Instant::now();
            for _ in 0..20 {
                read(&f, &p).await.unwrap();
            }
            // 20 delays of at most 5 ms each, with slack for a loaded machine.
            assert!(t.elapsed() < Duration::from_secs(2));
            assert_eq!(f.stats().op(Op::Get).delayed, 20);
            assert_eq!(f.stats().total().faults(), 0);
        });
    }

    #[test]
    fn multipart_parts_and_completion_can_fail() {
        rt().block_on(async {
            let cfg = FaultConfig::none().with(
                Op::Multipart,
                OpFaults::NONE.with_fail_before(1.0).with_first_calls(1),
            );
            let (mem, f) = store(cfg, 10);
            let p = Path::from("mp");
            assert!(injected(&f.put_multipart(&p).await.unwrap_err()));
            // The second upload of the path is past first_calls: it and its parts go through.
            let mut up = f.put_multipart(&p).await.unwrap();
            up.put_part(Bytes::from_static(b"ab").into()).await.unwrap();
            up.complete().await.unwrap();
            assert_eq!(read(mem.as_ref(), &p).await.unwrap(), &b"ab"[..]);
            // Parts and completions of uploads that fault fail too.
            f.set_config(
                FaultConfig::none().with(Op::Multipart, OpFaults::NONE.with_fail_before(0.4)),
            );
            let q = Path::from("mq");
            let (mut created, mut part_errors, mut completed) = (0, 0, 0);
            for _ in 0..30 {
                let Ok(mut up) = f.put_multipart(&q).await else {
                    continue;
                };
                created += 1;
                let mut ok = true;
                for _ in 0..3 {
                    if up.put_part(Bytes::from_static(b"xy").into()).await.is_err() {
                        part_errors += 1;
                        ok = false;
                    }
                }
                if ok && up.complete().await.is_ok() {
                    completed += 1;
                    assert_eq!(read(mem.as_ref(), &q).await.unwrap(), &b"xyxyxy"[..]);
                } else {
                    up.abort().await.unwrap();
                }
            }
            assert!(created > 5 && part_errors > 0 && completed > 0);
            assert!(f.stats().op(Op::Multipart).failed_before > 10);
        });
    }

    /// The repo classifies injected faults as retryable, and resolves a create whose answer
    /// was lost by reading the object back.
    #[test]
    fn the_repo_retries_injected_faults_and_resolves_lost_answers() {
        use crate::error::ErrorKind;
        use crate::repo::{Created, Repo, RetryPolicy};
        rt().block_on(async {
            let cfg = FaultConfig::none()
                .with(
                    Op::Put,
                    OpFaults::NONE.with_fail_after(1.0).with_first_calls(1),
                )
                .with(
                    Op::Get,
                    OpFaults::NONE.with_fail_before(1.0).with_first_calls(2),
                );
            let (_mem, f) = store(cfg, 11);
            let f = Arc::new(f);
            let retry = RetryPolicy {
                attempts: 4,
                initial_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(2),
                ..Default::default()
            };
            let repo = Repo::from_store(
                f.clone(),
                Path::default(),
                "faulty://",
                crate::clock::system(),
            )
            .with_retry(retry.clone());
            let created = repo.put_new("k", Bytes::from_static(b"v")).await.unwrap();
            assert_eq!(created, Created::AlreadyThere);
            assert_eq!(repo.get("k").await.unwrap(), &b"v"[..]);
            let st = f.stats();
            assert_eq!(st.op(Op::Put).failed_after, 1);
            assert_eq!(st.op(Op::Put).already_exists, 1);
            assert_eq!(st.op(Op::Get).failed_before, 2);
            // Out of attempts: the error is Unavailable and names the key.
            f.set_config(FaultConfig::none().with(Op::Get, OpFaults::NONE.with_fail_before(1.0)));
            let e = repo.get("k").await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unavailable);
            assert!(e.to_string().contains("k") && e.to_string().contains("injected fault"));
            assert_eq!(
                f.stats().op(Op::Get).failed_before,
                2 + u64::from(retry.attempts)
            );
        });
    }
}
