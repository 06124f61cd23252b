//! Timeouts for every call metapitr makes over the network: the S3 repo (and Hummock
//! storage), PostgreSQL and etcd targets. A server that accepts the connection and then
//! never answers fails the call after these, as [`crate::ErrorKind::Unavailable`] (a retry
//! may find it answering), instead of hanging.

use std::time::Duration;

/// The connect and request timeouts (settings `network.connect_timeout` and
/// `network.request_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing a connection: TCP, and for PostgreSQL its startup and authentication.
    /// Default [`CONNECT_TIMEOUT`].
    pub connect: Duration,
    /// One request and its whole answer: an HTTP request to S3 or etcd, or a PostgreSQL
    /// statement (or a pipelined batch of them). Default [`REQUEST_TIMEOUT`].
    pub request: Duration,
}

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: CONNECT_TIMEOUT,
            request: REQUEST_TIMEOUT,
        }
    }
}

/// A duration as a setting takes it back (`1s 500ms`, `30s`).
pub fn show(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}
