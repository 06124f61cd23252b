//! Errors. [`Error`] is opaque: it holds the detailed cause (what failed, on which object,
//! and the error underneath, kept whole) and tells a caller what to do about it through
//! [`Error::kind`], the small public classification [`ErrorKind`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a caller should do about an [`Error`]. New kinds may be added: match with a
/// fallback arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request itself is wrong (bad flag, epoch outside the restorable range,
    /// non-empty target, invalid change). Fix the input and retry.
    InvalidInput,
    /// Stored bytes fail a checksum or do not parse. Do not retry; restore from a
    /// different snapshot or range, or investigate the named object.
    Corruption,
    /// Something the request needs does not exist (a snapshot id, an archived object).
    NotFound,
    /// Another writer holds the WAL directory, or wrote a different object where this
    /// writer expected to create one; this writer must stop.
    Fenced,
    /// Object storage or the filesystem failed; the operation may succeed when retried.
    Unavailable,
    /// A bug or an unexpected condition.
    Internal,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A cause kept whole (its type and its own sources), from a layer this one does not name.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A cause shared by the clones of an [`Error`].
type ArcError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// A metapitr error: what failed and why, with the error underneath as its
/// [`source`](std::error::Error::source). Decide what to do by [`Error::kind`]; the
/// accessors ([`Error::corrupt_offset`], ...) give the details some callers act on.
/// Cloning is cheap: the causes are shared.
#[derive(Clone)]
pub struct Error(Box<Repr>);

/// The detailed error behind an [`Error`].
#[derive(Debug, Clone, thiserror::Error)]
enum Repr {
    #[error("invalid input: {0}")]
    InvalidInput(String),

    #[error("record lsn {lsn} (epoch {epoch}) cannot be applied: {cause}")]
    Apply {
        lsn: u64,
        epoch: u64,
        /// The model's reason (for today's model, `model::ApplyError`).
        cause: ArcError,
    },

    #[error(
        "change {index} of the batch at epoch {epoch} is invalid: {cause}; nothing was committed"
    )]
    InvalidBatch {
        epoch: u64,
        index: usize,
        cause: ArcError,
    },

    #[error("corrupt {what} at byte offset {offset}: {reason}")]
    Corrupt {
        what: String,
        offset: u64,
        reason: String,
    },

    #[error("not found: {0}")]
    NotFound(String),

    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: Arc<std::io::Error>,
    },

    #[error("object store, {op} {key}: {cause}{}", object_store_hint(cause))]
    ObjectStore {
        op: &'static str,
        key: String,
        cause: Arc<object_store::Error>,
    },

    #[error("WAL directory {} is locked by another writer; stop that process or choose another directory", .0.display())]
    Locked(PathBuf),

    #[error("fenced: {0}")]
    Fenced(String),

    /// `from` names what was asked: "the repo", "WAL directory PATH".
    #[error("target epoch {requested} is outside what {from} can restore; restorable: {ranges}")]
    OutOfRange {
        requested: String,
        from: String,
        ranges: String,
    },

    /// A meta store (etcd, PostgreSQL, SQLite, ...) refused or failed a request. `kind` says
    /// what to do: Unavailable (unreachable, retry), InvalidInput (credentials, bad URL),
    /// Corruption (what it holds does not read back as a state).
    #[error("meta store {store}: {reason}")]
    MetaStore {
        store: String,
        reason: String,
        kind: ErrorKind,
    },

    /// Archiving failed for the reason given, with the kind of the underlying error.
    #[error("{reason}")]
    Archive { reason: String, kind: ErrorKind },

    /// `metapitr verify` found problems (each listed with what to do); `kind` is the
    /// worst of them.
    #[error("{summary}")]
    Verify { summary: String, kind: ErrorKind },

    /// A JSONL export that cannot be read back: cut short or altered (`Corruption`), or
    /// not a whole, consistent export (`InvalidInput`).
    #[error("{what}: {cause}")]
    Export {
        what: String,
        kind: ErrorKind,
        cause: ArcError,
    },

    #[error("target {0} is not empty; choose an empty target or pass --force to overwrite it")]
    TargetNotEmpty(String),

    #[error("the recorder is stopped after an earlier failure ({0}); reopen it")]
    Poisoned(String),

    #[error("internal error: {0}")]
    Internal(String),
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.0 {
            Repr::Apply { cause, .. }
            | Repr::InvalidBatch { cause, .. }
            | Repr::Export { cause, .. } => Some(&**cause),
            Repr::Io { cause, .. } => Some(&**cause),
            Repr::ObjectStore { cause, .. } => Some(&**cause),
            _ => None,
        }
    }
}

impl From<Repr> for Error {
    fn from(r: Repr) -> Self {
        Error(Box::new(r))
    }
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match &*self.0 {
            Repr::InvalidInput(_)
            | Repr::InvalidBatch { .. }
            | Repr::OutOfRange { .. }
            | Repr::TargetNotEmpty(_) => ErrorKind::InvalidInput,
            Repr::Apply { .. } | Repr::Corrupt { .. } => ErrorKind::Corruption,
            Repr::NotFound(_) => ErrorKind::NotFound,
            Repr::Locked(_) | Repr::Fenced(_) => ErrorKind::Fenced,
            Repr::Io { cause, .. } => io_kind(cause.kind()),
            Repr::ObjectStore { cause, .. } => object_store_kind(cause),
            Repr::MetaStore { kind, .. }
            | Repr::Archive { kind, .. }
            | Repr::Verify { kind, .. }
            | Repr::Export { kind, .. } => *kind,
            Repr::Poisoned(_) | Repr::Internal(_) => ErrorKind::Internal,
        }
    }

    /// The request is wrong; the message says what to fix.
    pub fn invalid_input(msg: impl Into<String>) -> Self {
        Repr::InvalidInput(msg.into()).into()
    }

    /// Something the request needs does not exist; the message names it.
    pub fn not_found(msg: impl Into<String>) -> Self {
        Repr::NotFound(msg.into()).into()
    }

    /// Another writer took over; the message says which and what to do.
    pub fn fenced(msg: impl Into<String>) -> Self {
        Repr::Fenced(msg.into()).into()
    }

    /// A bug or an unexpected condition.
    pub fn internal(msg: impl Into<String>) -> Self {
        Repr::Internal(msg.into()).into()
    }

    /// The recorder stopped after an earlier failure, described by `why`.
    pub fn poisoned(why: impl Into<String>) -> Self {
        Repr::Poisoned(why.into()).into()
    }

    /// A restore target (named by `target`) that already holds data.
    pub fn target_not_empty(target: impl Into<String>) -> Self {
        Repr::TargetNotEmpty(target.into()).into()
    }

    /// Another writer holds the lock of the WAL directory `dir`.
    pub fn locked(dir: impl Into<PathBuf>) -> Self {
        Repr::Locked(dir.into()).into()
    }

    /// Stored bytes of `what` are wrong at `offset`.
    pub fn corrupt(what: impl Into<String>, offset: u64, reason: impl Into<String>) -> Self {
        Repr::Corrupt {
            what: what.into(),
            offset,
            reason: reason.into(),
        }
        .into()
    }

    /// A target epoch outside what `from` can restore (`ranges`, as text).
    pub fn out_of_range(
        requested: impl Into<String>,
        from: impl Into<String>,
        ranges: impl Into<String>,
    ) -> Self {
        Repr::OutOfRange {
            requested: requested.into(),
            from: from.into(),
            ranges: ranges.into(),
        }
        .into()
    }

    /// The logged record at `lsn` (of `epoch`) does not apply, for the model's reason.
    pub fn apply(lsn: u64, epoch: u64, cause: impl Into<BoxError>) -> Self {
        Repr::Apply {
            lsn,
            epoch,
            cause: Arc::from(cause.into()),
        }
        .into()
    }

    /// Change `index` of a batch at `epoch` is invalid, for the model's reason.
    pub fn invalid_batch(epoch: u64, index: usize, cause: impl Into<BoxError>) -> Self {
        Repr::InvalidBatch {
            epoch,
            index,
            cause: Arc::from(cause.into()),
        }
        .into()
    }

    /// A meta store refused or failed a request; `kind` says what to do.
    pub fn meta_store(store: impl ToString, kind: ErrorKind, reason: impl Into<String>) -> Self {
        Repr::MetaStore {
            store: store.to_string(),
            reason: reason.into(),
            kind,
        }
        .into()
    }

    /// Archiving failed for `reason`, with the kind of the error underneath.
    pub fn archive(reason: impl Into<String>, kind: ErrorKind) -> Self {
        Repr::Archive {
            reason: reason.into(),
            kind,
        }
        .into()
    }

    /// `metapitr verify` found problems; `kind` is the worst of them.
    pub fn verify(summary: impl Into<String>, kind: ErrorKind) -> Self {
        Repr::Verify {
            summary: summary.into(),
            kind,
        }
        .into()
    }

    /// An export (named by `what`) that cannot be read back; `kind` is `Corruption` or
    /// `InvalidInput`.
    pub fn export(
        what: impl Into<String>,
        kind: ErrorKind,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Repr::Export {
            what: what.into(),
            kind,
            cause: Arc::new(cause),
        }
        .into()
    }

    /// A filesystem call on `path` failed.
    pub fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Repr::Io {
            path: path.into(),
            cause: Arc::new(cause),
        }
        .into()
    }

    /// An object-store call (`op` on `key`) failed. A failure that carries a metapitr
    /// error (raised by a layer of the repo's own store, such as decryption) is that error.
    pub fn store(op: &'static str, key: impl ToString, cause: object_store::Error) -> Self {
        let cause = match cause {
            object_store::Error::Generic { store, source } => match source.downcast::<Error>() {
                Ok(e) => return *e,
                Err(source) => object_store::Error::Generic { store, source },
            },
            e => e,
        };
        Repr::ObjectStore {
            op,
            key: key.to_string(),
            cause: Arc::new(cause),
        }
        .into()
    }

    /// The same error with `prefix` put before the message of an error that is one (a
    /// wrong input, a missing thing, a non-empty target, a fence, an internal error), so
    /// that a caller can name what it was asked (`--flag VALUE: `); other errors unchanged.
    pub fn prefixed(self, prefix: &str) -> Self {
        let p = |m: String| format!("{prefix}{m}");
        match *self.0 {
            Repr::InvalidInput(m) => Repr::InvalidInput(p(m)).into(),
            Repr::NotFound(m) => Repr::NotFound(p(m)).into(),
            Repr::TargetNotEmpty(m) => Repr::TargetNotEmpty(p(m)).into(),
            Repr::Fenced(m) => Repr::Fenced(p(m)).into(),
            Repr::Internal(m) => Repr::Internal(p(m)).into(),
            r => Error(Box::new(r)),
        }
    }

    /// For a corruption: where in the named object it was found.
    pub fn corrupt_offset(&self) -> Option<u64> {
        match &*self.0 {
            Repr::Corrupt { offset, .. } => Some(*offset),
            _ => None,
        }
    }

    /// For a corruption: what was found corrupt (an object key, a file, a record).
    pub fn corrupt_what(&self) -> Option<&str> {
        match &*self.0 {
            Repr::Corrupt { what, .. } => Some(what),
            _ => None,
        }
    }

    /// For a locked WAL directory: the directory.
    pub fn locked_dir(&self) -> Option<&Path> {
        match &*self.0 {
            Repr::Locked(dir) => Some(dir),
            _ => None,
        }
    }

    /// Whether this is a recorder stopped by an earlier failure (it must be reopened).
    pub fn is_poisoned(&self) -> bool {
        matches!(&*self.0, Repr::Poisoned(_))
    }

    /// Whether this is a restore target that already holds data.
    pub fn is_target_not_empty(&self) -> bool {
        matches!(&*self.0, Repr::TargetNotEmpty(_))
    }

    /// Whether a write went to a reader that went away (`| head`): a command ends quietly
    /// on it, as a closed pipe ends any Unix filter.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(&*self.0, Repr::Io { cause, .. } if cause.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// What to do about a filesystem error, by its kind: a path that is wrong for what it is
/// used for, or that may not be written, is fixed by the operator, not by retrying.
pub fn io_kind(kind: std::io::ErrorKind) -> ErrorKind {
    use std::io::ErrorKind as K;
    match kind {
        K::NotFound => ErrorKind::NotFound,
        K::PermissionDenied
        | K::ReadOnlyFilesystem
        | K::NotADirectory
        | K::IsADirectory
        | K::DirectoryNotEmpty
        | K::AlreadyExists
        | K::InvalidInput
        | K::InvalidData
        | K::InvalidFilename
        | K::FileTooLarge
        | K::Unsupported
        | K::CrossesDevices => ErrorKind::InvalidInput,
        _ => ErrorKind::Unavailable,
    }
}

/// Whether an error is a write to a reader that went away (`| head`).
pub fn is_broken_pipe(e: &Error) -> bool {
    e.is_broken_pipe()
}

/// A request an HTTP object store (S3) refused with an error document: its status and the
/// document's error code and message. The repo's S3 client reports such a refusal as this
/// error (inside the object-store error), so that what it means is decided by its fields
/// and not by the text of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRefusal {
    /// The HTTP status (400, 401, 403, 404).
    pub status: u16,
    /// The service's error code, e.g. `SignatureDoesNotMatch`, `NoSuchBucket`.
    pub code: String,
    /// The service's message, if it gave one.
    pub message: Option<String>,
}

impl HttpRefusal {
    /// Whether the credentials were refused (or may not do this).
    pub fn is_auth(&self) -> bool {
        matches!(self.status, 401 | 403)
    }

    /// Whether the bucket does not exist.
    pub fn is_missing_bucket(&self) -> bool {
        self.status == 404 && self.code == "NoSuchBucket"
    }
}

impl std::fmt::Display for HttpRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP status {}, {}", self.status, self.code)?;
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}

impl std::error::Error for HttpRefusal {}

/// The errors an error wraps, itself first.
fn chain<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| e.source())
}

/// The first error of type `T` in `e`'s chain of sources (`e` itself included).
fn find<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    chain(e).find_map(|e| e.downcast_ref::<T>())
}

/// What to do about an object-store error: by its variant, and for a generic one by the
/// typed error it carries (a metapitr [`Error`] raised by a layer of the repo's store, an
/// [`HttpRefusal`], a filesystem error). Only `Unavailable` is worth retrying: a failed
/// conditional create or a missing object never is.
pub fn object_store_kind(e: &object_store::Error) -> ErrorKind {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => ErrorKind::NotFound,
        E::AlreadyExists { .. } | E::Precondition { .. } => ErrorKind::Fenced,
        E::Unauthenticated { .. } | E::PermissionDenied { .. } => ErrorKind::InvalidInput,
        E::InvalidPath { .. } | E::UnknownConfigurationKey { .. } => ErrorKind::InvalidInput,
        // metapitr makes no conditional reads and uses no optional operation: a retry
        // would get the same answer.
        E::NotModified { .. } | E::NotSupported { .. } | E::NotImplemented { .. } => {
            ErrorKind::Internal
        }
        e => {
            let Some(src) = std::error::Error::source(e) else {
                return ErrorKind::Unavailable;
            };
            if let Some(mine) = find::<Error>(src) {
                return mine.kind();
            }
            if let Some(r) = find::<HttpRefusal>(src) {
                return match r.status {
                    404 => ErrorKind::NotFound,
                    _ => ErrorKind::InvalidInput,
                };
            }
            match find::<std::io::Error>(src) {
                // A local store's failure: as the filesystem's error says.
                Some(io) => io_kind(io.kind()),
                None => ErrorKind::Unavailable,
            }
        }
    }
}

/// Whether `s` is an HTTP client's timeout (only builds with S3 have an HTTP client).
#[cfg(feature = "s3")]
fn http_timeout(s: &(dyn std::error::Error + 'static)) -> bool {
    s.downcast_ref::<object_store::client::HttpError>()
        .is_some_and(|h| h.kind() == object_store::client::HttpErrorKind::Timeout)
}

#[cfg(not(feature = "s3"))]
fn http_timeout(_: &(dyn std::error::Error + 'static)) -> bool {
    false
}

/// Whether an object-store call failed because a connect or request timeout passed.
fn timed_out(e: &object_store::Error) -> bool {
    chain(e).any(|s| {
        http_timeout(s)
            || s.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    })
}

/// What to do about an object-store error, appended to its message.
fn object_store_hint(e: &object_store::Error) -> &'static str {
    let refusal = find::<HttpRefusal>(e);
    let auth = matches!(
        e,
        object_store::Error::Unauthenticated { .. } | object_store::Error::PermissionDenied { .. }
    ) || refusal.is_some_and(HttpRefusal::is_auth);
    if auth {
        "; check the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
         [backup.s3] in metapitr.toml) and that they may use this bucket"
    } else if refusal.is_some_and(HttpRefusal::is_missing_bucket) {
        "; the bucket does not exist: create it or fix the storage URL"
    } else if timed_out(e) {
        "; the server did not answer in time (settings network.connect_timeout and \
         network.request_timeout): check the endpoint and the network, then retry"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(source: BoxError) -> object_store::Error {
        object_store::Error::Generic {
            store: "test",
            source,
        }
    }

    #[test]
    fn object_store_errors_are_classified_by_their_types() {
        let boxed = || -> BoxError { "x".into() };
        let path = || "p".to_string();
        use object_store::Error as E;
        for (e, kind) in [
            (
                E::NotFound {
                    path: path(),
                    source: boxed(),
                },
                ErrorKind::NotFound,
            ),
            (
                E::AlreadyExists {
                    path: path(),
                    source: boxed(),
                },
                ErrorKind::Fenced,
            ),
            (
                E::Precondition {
                    path: path(),
                    source: boxed(),
                },
                ErrorKind::Fenced,
            ),
            (
                E::PermissionDenied {
                    path: path(),
                    source: boxed(),
                },
                ErrorKind::InvalidInput,
            ),
            (
                E::NotModified {
                    path: path(),
                    source: boxed(),
                },
                ErrorKind::Internal,
            ),
            (generic(boxed()), ErrorKind::Unavailable),
            (
                generic(Box::new(std::io::Error::from(
                    std::io::ErrorKind::PermissionDenied,
                ))),
                ErrorKind::InvalidInput,
            ),
            (
                generic(Box::new(HttpRefusal {
                    status: 403,
                    code: "AccessDenied".into(),
                    message: None,
                })),
                ErrorKind::InvalidInput,
            ),
            (
                generic(Box::new(Error::corrupt("k", 3, "bad"))),
                ErrorKind::Corruption,
            ),
        ] {
            assert_eq!(object_store_kind(&e), kind, "{e}");
        }
    }

    #[test]
    fn a_refusal_deep_in_the_chain_gives_the_kind_and_the_hint() {
        #[derive(Debug)]
        struct Wrapper(HttpRefusal);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("request failed")
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let refusal = |status, code: &str| {
            generic(Box::new(Wrapper(HttpRefusal {
                status,
                code: code.into(),
                message: Some("no".into()),
            })))
        };
        let e = Error::store(
            "list",
            "s3://b/manifest",
            refusal(403, "SignatureDoesNotMatch"),
        );
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("check the credentials"), "{e}");
        let e = Error::store("put", "s3://b/x", refusal(404, "NoSuchBucket"));
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("bucket does not exist"), "{e}");
        // The cause is kept whole, not flattened to text.
        let src = std::error::Error::source(&e).expect("a source");
        assert!(find::<HttpRefusal>(src).is_some_and(HttpRefusal::is_missing_bucket));
    }

    #[test]
    fn a_metapitr_error_carried_by_the_store_comes_back_as_itself() {
        let inner = Error::invalid_input("object k was encrypted with a different key");
        let e = Error::store("get", "k", generic(Box::new(inner.clone())));
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(e.to_string(), inner.to_string());
    }

    #[test]
    fn errors_clone_with_their_sources_and_keep_their_display() {
        let e = Error::io("/x/y", std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        let c = e.clone();
        assert!(c.is_broken_pipe() && is_broken_pipe(&e));
        assert_eq!(c.to_string(), e.to_string());
        assert!(c.to_string().starts_with("/x/y: "), "{c}");
        let io = std::error::Error::source(&c)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .expect("the io error is the source");
        assert_eq!(io.kind(), std::io::ErrorKind::BrokenPipe);
        let e = Error::corrupt("wal/1", 8, "bad crc");
        assert_eq!(e.to_string(), "corrupt wal/1 at byte offset 8: bad crc");
        assert_eq!(
            (e.corrupt_offset(), e.corrupt_what()),
            (Some(8), Some("wal/1"))
        );
        assert_eq!(e.kind(), ErrorKind::Corruption);
        assert!(Error::locked("/w").locked_dir().is_some());
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    }
}
