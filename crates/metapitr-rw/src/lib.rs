//! Reads RisingWave's Hummock metadata and applies version deltas.
//!
//! What it reads (docs/format.md §18 has the byte layouts): the version checkpoint
//! `{data_dir}/checkpoint/0` (enveloped: compression + payload + xxHash64 checksum; or bare),
//! a `HummockVersion`, a `HummockVersionDelta`, a meta backup file `{id}.snapshot`
//! (formats 1 and 2) and a backup `manifest.json`. [`inspect`] recognises which one it
//! has and decodes it; [`Inspected::to_json`] renders it. [`apply::apply`] computes the
//! version a chain of deltas leads to, with RisingWave's semantics for every group delta.
//! [`paths`] names SST objects on S3 and on a local file system.
//!
//! Pinned to RisingWave `main` at commit `448c6570b1b9d636736708340f61a85900c2b7d7`
//! (2026-08-21, `Cargo.toml` version 3.2.0-alpha; the newest release tag then was v3.0.3).
//! The message definitions in `proto/rw_hummock.proto` are this crate's own, written from
//! the field numbers and types of that commit's `proto/hummock.proto`.
//!
//! Fields this crate does not model survive a decode and re-encode byte for byte: see
//! [`wire`] and docs/format.md §18.
pub mod apply;
pub mod checkpoint;
pub mod error;
pub mod inspect;
pub mod model;
pub mod paths;
pub mod pb;
mod pbjson;
pub mod snapshot;
pub mod wire;

pub use apply::apply;
pub use checkpoint::{Checkpoint, Compression};
pub use error::{Error, Result};
pub use inspect::{inspect, inspect_as, inspect_named, Inspected, Kind};
pub use model::{Delta, Tree, Version};
pub use snapshot::{Manifest, MetaSnapshot};
