//! Today's metadata model ([`model::State`]: catalog, users, Hummock version, id
//! generators, system parameters, workers) and the engine instantiated with it.
//!
//! [`model::State`] implements [`metapitr_core::Model`]. Besides the model, this crate
//! holds what is specific to it: the JSONL export ([`jsonl`]), the state diff ([`diff`])
//! and the Hummock storage helpers ([`hummock`]). The engine's modules are re-exported
//! here, with [`repo::Repo`], [`recorder::Recorder`] and the functions that cannot infer
//! the model fixed to today's.

pub use metapitr_core::{
    archive, clock, codec, crypt, epoch, error, keys, manifest, model_api, net, pb, pin, progress,
    repair, restore, retention, timeline, verify,
};

pub mod diff;
pub mod hummock;
pub mod jsonl;
pub mod model;

/// The repo, holding today's model's history.
pub mod repo {
    pub use metapitr_core::repo::*;
    /// A repo of today's model.
    pub type Repo = metapitr_core::repo::Repo<crate::model::State>;
}

/// The recorder, committing today's model's changes.
pub mod recorder {
    pub use metapitr_core::recorder::*;
    /// A recorder of today's model.
    pub type Recorder = metapitr_core::recorder::Recorder<crate::model::State>;
}

/// Base snapshots of today's model.
pub mod snapshot {
    pub use metapitr_core::snapshot::*;

    use crate::model::State;
    use crate::Result;

    /// A state from its stored bytes (zstd frame around the envelope).
    pub fn decode(bytes: &[u8], what: &str) -> Result<State> {
        metapitr_core::snapshot::decode(bytes, what)
    }

    /// A state from a snapshot envelope (not compressed).
    pub fn decode_payload(payload: &[u8], what: &str) -> Result<State> {
        metapitr_core::snapshot::decode_payload(payload, what)
    }

    /// The local checkpoint of a meta store directory, if it has one.
    pub fn read_checkpoint(dir: &std::path::Path) -> Result<Option<State>> {
        metapitr_core::snapshot::read_checkpoint(dir)
    }
}

/// The archived WAL's read path for today's model.
pub mod segments {
    pub use metapitr_core::segments::*;

    /// Checks a sealed segment's bytes and describes them.
    pub fn summarize(
        data: &[u8],
        what: &str,
    ) -> crate::Result<(crate::pb::SegmentEntry, crate::model_api::IdMarks, Vec<u64>)> {
        metapitr_core::segments::summarize::<crate::model::State>(data, what)
    }
}

/// The WAL, carrying today's model's changes.
pub mod wal {
    pub use metapitr_core::wal::*;

    /// A WAL record of today's model.
    pub type Record = metapitr_core::wal::Record<crate::model::Change>;

    /// Reads the records of every local segment with lsn > `after`, in order.
    pub fn read_local_records(dir: &std::path::Path, after: u64) -> crate::Result<Vec<Record>> {
        metapitr_core::wal::read_local_records(dir, after)
    }

    /// The WAL's bytes, with today's model's changes.
    pub mod format {
        pub use metapitr_core::wal::format::*;

        use crate::model::Change;

        /// A WAL record of today's model.
        pub type Record = metapitr_core::wal::format::Record<Change>;
        /// The result of reading a segment's records.
        pub type Scan = metapitr_core::wal::format::Scan<Change>;

        /// Reads every record it can. Stops at the first bad frame and reports it.
        pub fn scan(data: &[u8], what: &str) -> crate::Result<Scan> {
            metapitr_core::wal::format::scan(data, what)
        }

        /// Reads a sealed segment, which must be whole.
        pub fn read_sealed(data: &[u8], what: &str) -> crate::Result<(SegmentHeader, Vec<Record>)> {
            metapitr_core::wal::format::read_sealed(data, what)
        }

        /// Decodes the frame at `off`, which must hold `expect_lsn`.
        pub fn decode_frame(
            data: &[u8],
            off: usize,
            expect_lsn: u64,
        ) -> std::result::Result<(Record, usize), FrameError> {
            metapitr_core::wal::format::decode_frame(data, off, expect_lsn)
        }
    }
}

pub use error::{Error, ErrorKind, Result};
