//! metapitr: point-in-time recovery for the metadata of a streaming database's meta
//! service. Data flows one way: commit → [`wal`] → [`archive`] → [`snapshot`] → [`restore`].

pub mod archive;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod codec;
pub mod config;
pub mod crypt;
pub mod demo;
pub mod diff;
pub mod encrypting_object_store;
pub mod epoch;
pub mod error;
pub mod faulty_store;
pub mod fuzz;
pub mod hummock;
pub mod instrumented_object_store;
pub mod jsonl;
pub mod keys;
pub mod manifest;
pub mod metrics;
pub mod model;
pub mod net;
pub mod pin;
pub mod progress;
pub mod recorder;
pub mod repair;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod retrying_object_store;
pub mod segments;
pub mod sim;
pub mod snapshot;
pub mod store;
pub mod timeline;
pub mod verify;
pub mod wal;

pub use error::{Error, ErrorKind, Result};
