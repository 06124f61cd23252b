//! Errors. [`Error`] is the internal, detailed enum; [`ErrorKind`] is the small public
//! classification that tells a caller what to do about it.

use std::path::PathBuf;

use crate::model::ApplyError;

/// What a caller should do about an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid input: {0}")]
    InvalidInput(String),

    #[error("record lsn {lsn} (epoch {epoch}) cannot be applied: {source}")]
    Apply {
        lsn: u64,
        epoch: u64,
        #[source]
        source: ApplyError,
    },

    #[error(
        "change {index} of the batch at epoch {epoch} is invalid: {source}; nothing was committed"
    )]
    InvalidBatch {
        epoch: u64,
        index: usize,
        #[source]
        source: ApplyError,
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

    #[error("object store, {op} {key}: {source}")]
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

    #[error("target epoch {requested} is outside what the repo can restore; restorable: {ranges}")]
    OutOfRange { requested: String, ranges: String },

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
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Locked(_) | Error::Fenced(_) => ErrorKind::Fenced,
            Error::Io { .. } => ErrorKind::Unavailable,
            Error::ObjectStore { source, .. } => match source {
                object_store::Error::NotFound { .. } => ErrorKind::NotFound,
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. } => ErrorKind::Fenced,
                object_store::Error::Unauthenticated { .. }
                | object_store::Error::PermissionDenied { .. } => ErrorKind::InvalidInput,
                _ => ErrorKind::Unavailable,
            },
            Error::Poisoned(_) | Error::Internal(_) => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            what: what.into(),
            offset,
            reason: reason.into(),
        }
    }

    pub(crate) fn store(op: &'static str, key: impl ToString, source: object_store::Error) -> Self {
        Error::ObjectStore {
            op,
            key: key.to_string(),
            source,
        }
    }
}
