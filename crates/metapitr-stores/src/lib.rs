//! The meta stores metapitr restores into and reads from: a native directory, a JSONL
//! export, SQLite, PostgreSQL and etcd, each behind a cargo feature of its own where it
//! needs a client library.

// The engine and today's model, as `crate::…` paths for the stores' modules.
#[allow(unused_imports)]
use metapitr_model::*;

pub mod store;
