//! The engine's own messages, generated from `proto/metapitr.proto`: the repo manifest,
//! segment and snapshot entries, pin-set references and the verify state.

#![allow(clippy::all, missing_docs)]
include!(concat!(env!("OUT_DIR"), "/metapitr.rs"));
