//! The commands, one module per command or command family. Each takes its parsed
//! arguments ([`crate::cli::args`]) and the global flags, prints its result on stdout and
//! returns an error for `main` to map to an exit code.

pub(crate) mod archive;
pub(crate) mod bench;
pub(crate) mod config;
pub(crate) mod demo;
pub(crate) mod diff;
pub(crate) mod epoch;
pub(crate) mod export;
pub(crate) mod gc_check;
pub(crate) mod hummock_version;
pub(crate) mod import;
pub(crate) mod info;
pub(crate) mod pins;
pub(crate) mod repair;
pub(crate) mod restore;
pub(crate) mod retention;
pub(crate) mod rw;
pub(crate) mod show;
pub(crate) mod simulate;
pub(crate) mod snapshot;
pub(crate) mod verify;
