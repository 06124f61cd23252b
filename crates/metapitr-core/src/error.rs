//! Errors. [`Error`] is the internal, detailed enum; [`ErrorKind`] is the small public
//! classification that tells a caller what to do about it.

use std::path::PathBuf;

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

/// The detailed error. Callers decide what to do by [`Error::kind`]; variants may be
/// added, so a match needs a fallback arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid input: {0}")]
    InvalidInput(String),

    #[error("record lsn {lsn} (epoch {epoch}) cannot be applied: {source}")]
    Apply {
        lsn: u64,
        epoch: u64,
        /// The model's reason (for today's model, `model::ApplyError`).
        #[source]
        source: BoxError,
    },

    #[error(
        "change {index} of the batch at epoch {epoch} is invalid: {source}; nothing was committed"
    )]
    InvalidBatch {
        epoch: u64,
        index: usize,
        #[source]
        source: BoxError,
    },

    #[error("corrupt {what} at byte offset {offset}: {reason}")]
    Corrupt {
        what: String,
        offset: u64,
        reason: String,
    },

    #[error("not found: {0}")]
    NotFound(String),

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("object store, {op} {key}: {source}{}", object_store_hint(source))]
    ObjectStore {
        op: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },

    #[error("WAL directory {0} is locked by another writer; stop that process or choose another directory")]
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
    /// not a whole, consistent export (`InvalidInput`), as `source.kind` says.
    #[error("{what}: {source}")]
    Export {
        what: String,
        /// What to do: `Corruption` or `InvalidInput`.
        kind: ErrorKind,
        #[source]
        source: BoxError,
    },

    #[error("target {0} is not empty; choose an empty target or pass --force to overwrite it")]
    TargetNotEmpty(String),

    #[error("the recorder is stopped after an earlier failure ({0}); reopen it")]
    Poisoned(String),

    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidInput(_)
            | Error::InvalidBatch { .. }
            | Error::OutOfRange { .. }
            | Error::TargetNotEmpty(_) => ErrorKind::InvalidInput,
            Error::Apply { .. } | Error::Corrupt { .. } => ErrorKind::Corruption,
            Error::Verify { kind, .. } => *kind,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Locked(_) | Error::Fenced(_) => ErrorKind::Fenced,
            Error::Io { source, .. } => io_kind(source.kind()),
            Error::ObjectStore { source, .. } => match source {
                object_store::Error::NotFound { .. } => ErrorKind::NotFound,
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. } => ErrorKind::Fenced,
                object_store::Error::Unauthenticated { .. }
                | object_store::Error::PermissionDenied { .. } => ErrorKind::InvalidInput,
                e => match (http_status(e), io_source(e)) {
                    (Some(400 | 401 | 403), _) => ErrorKind::InvalidInput,
                    (Some(404), _) => ErrorKind::NotFound,
                    // A local store's failure: as the filesystem's error says.
                    (None, Some(io)) => io_kind(io.kind()),
                    _ => ErrorKind::Unavailable,
                },
            },
            Error::MetaStore { kind, .. } | Error::Archive { kind, .. } => *kind,
            Error::Export { kind, .. } => *kind,
            Error::Poisoned(_) | Error::Internal(_) => ErrorKind::Internal,
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn corrupt(what: impl Into<String>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            what: what.into(),
            offset,
            reason: reason.into(),
        }
    }

    pub fn meta_store(store: impl ToString, kind: ErrorKind, reason: impl Into<String>) -> Self {
        Error::MetaStore {
            store: store.to_string(),
            reason: reason.into(),
            kind,
        }
    }

    pub fn store(op: &'static str, key: impl ToString, source: object_store::Error) -> Self {
        Error::ObjectStore {
            op,
            key: key.to_string(),
            source,
        }
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

/// The filesystem error behind an object-store error (a local store's failures carry one).
fn io_source(e: &object_store::Error) -> Option<&std::io::Error> {
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        src = s.source();
    }
    None
}

/// Whether an error is a write to a reader that went away (`| head`): a command ends
/// quietly on it, as a closed pipe ends any Unix filter.
pub fn is_broken_pipe(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Whether an object-store call failed because a connect or request timeout passed.
fn timed_out(e: &object_store::Error) -> bool {
    let mut src: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = src {
        if s.to_string().contains("timed out") {
            return true;
        }
        src = s.source();
    }
    false
}

/// The HTTP status an object-store error carries, when the store reports one only in its
/// message (object_store classifies some failed requests, such as LIST, as generic).
fn http_status(e: &object_store::Error) -> Option<u16> {
    let mut text = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        text.push_str(&s.to_string());
        src = s.source();
    }
    let at = text.find("status code: ")? + "status code: ".len();
    text.get(at..at + 3)?.parse().ok()
}

/// What to do about an object-store error, appended to its message.
fn object_store_hint(e: &object_store::Error) -> &'static str {
    let status = match e {
        object_store::Error::Unauthenticated { .. } => Some(401),
        object_store::Error::PermissionDenied { .. } => Some(403),
        e => http_status(e),
    };
    match status {
        Some(401 | 403) => {
            "; check the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
             [backup.s3] in metapitr.toml) and that they may use this bucket"
        }
        Some(404) if e.to_string().contains("NoSuchBucket") => {
            "; the bucket does not exist: create it or fix the storage URL"
        }
        None if timed_out(e) => {
            "; the server did not answer in time (settings network.connect_timeout and \
             network.request_timeout): check the endpoint and the network, then retry"
        }
        _ => "",
    }
}
