//! metapitr's engine: point-in-time recovery for the metadata of a streaming database's
//! meta service, generic over the metadata model ([`model_api::Model`]).
//!
//! Data flows one way: commit ([`recorder`]) → [`wal`] → [`archive`] → [`snapshot`] →
//! [`restore`]; [`pin`] and [`retention`] keep what the window needs, [`verify`] and
//! [`repair`] check and mend the repo.

pub mod archive;
pub mod clock;
pub mod codec;
pub mod crypt;
pub mod encrypting_object_store;
pub mod epoch;
pub mod error;
pub mod instrumented_object_store;
pub mod keys;
pub mod manifest;
pub mod model_api;
pub mod net;
pub mod pb;
pub mod pin;
pub mod progress;
pub mod recorder;
pub mod repair;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod retrying_object_store;
pub mod segments;
pub mod snapshot;
pub mod timeline;
pub mod verify;
pub mod wal;

pub use error::{Error, ErrorKind, Result};
pub use model_api::{IdMarks, Model};
