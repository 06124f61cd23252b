//! Messages generated from `proto/rw_hummock.proto` (package `metapitr.rw`).
#![allow(clippy::all, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/metapitr.rw.rs"));
include!(concat!(env!("OUT_DIR"), "/known_fields.rs"));
