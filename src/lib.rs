//! metapitr: point-in-time recovery for the metadata of a streaming database's meta
//! service. Data flows one way: commit → [`wal`] → [`archive`] → [`snapshot`] → [`restore`].
//!
//! This crate is the command line. The engine is `metapitr-core`, generic over a metadata
//! model; `metapitr-model` is today's model and the engine instantiated with it;
//! `metapitr-stores` the meta stores; `metapitr-testkit` the simulator and test tools.
//! Their modules are re-exported here under the paths they have always had.

pub use metapitr_model::{
    archive, clock, codec, crypt, diff, epoch, error, hummock, jsonl, keys, manifest, model,
    model_api, net, pb, pin, recorder, repair, repo, restore, retention, segments, snapshot,
    timeline, verify, wal,
};
pub use metapitr_stores::store;
pub use metapitr_testkit::{faulty_store, fuzz, sim};

pub mod bench;
pub mod cli;
pub mod config;
pub mod demo;
pub mod metrics;
pub mod progress;

pub use error::{Error, ErrorKind, Result};
