//! The seam between the engine and a metadata model.
//!
//! The engine (WAL, archive, snapshots, restore, pins, retention, timelines, verify) moves
//! a model's changes and states as bytes and asks the model, through [`Model`], only what
//! it must know: how a change applies, how a state encodes, which SST objects a change
//! inserts and a state references, and the id generators' high-water marks. It names no
//! model type; the model is a type parameter, fixed once per repo ([`crate::repo::Repo`]).

use std::collections::BTreeMap;
use std::fmt::Debug;

use roaring::RoaringTreemap;

use crate::error::BoxError;

/// The largest value each id generator has reached, by the model's generator number.
/// A generator absent from the map has reached 0.
pub type IdMarks = BTreeMap<u32, u64>;

/// Raises every generator of `into` to at least its value in `from`; true if one rose.
pub fn raise_marks(into: &mut IdMarks, from: &IdMarks) -> bool {
    let mut changed = false;
    for (c, v) in from {
        let slot = into.entry(*c).or_insert(0);
        if *v > *slot {
            *slot = *v;
            changed = true;
        }
    }
    changed
}

/// A metadata model: the state of a meta service at one epoch (the implementing type)
/// and the changes that move it.
///
/// Both ways of applying are deterministic: the same changes on the same state give the
/// same state, which is what makes a restore equal to the truth.
pub trait Model: Clone + PartialEq + Debug + Send + Sync + 'static {
    /// One change, the payload of one WAL record. A protobuf message: the WAL stores its
    /// encoding, and a record's checksum covers it.
    type Change: prost::Message + Default + Clone + PartialEq + Debug + Send + Sync + 'static;

    /// The model's name, for messages.
    const NAME: &'static str;

    /// The empty state of a new store on `timeline` (epoch 0, lsn 0).
    fn empty(timeline: u32) -> Self;

    /// Every record with an epoch at or below this one is applied.
    fn epoch(&self) -> u64;
    /// The last applied WAL record (0: none).
    fn lsn(&self) -> u64;
    /// The timeline the state's records were written on.
    fn timeline(&self) -> u32;
    /// Makes the state the start of `timeline` (a fork restored from this state).
    fn set_timeline(&mut self, timeline: u32);
    /// Records that `n` more records were appended after a committed batch.
    fn advance_lsn(&mut self, n: u64);
    /// Declares the state as of `epoch`, a later epoch at which no record was written
    /// (a restore to an epoch between two commits).
    fn set_epoch(&mut self, epoch: u64);

    /// Applies a batch committed at `epoch`, validating it, all or nothing: on error the
    /// state is unchanged and the error names the index of the change refused. Does not
    /// move the lsn (the WAL assigns it; see [`Model::advance_lsn`]).
    fn apply_batch(
        &mut self,
        epoch: u64,
        changes: &[Self::Change],
    ) -> Result<(), (usize, BoxError)>;

    /// Applies one logged record (recovery, restore): the log was valid when written, so
    /// an error means the log or the base state is wrong.
    fn replay(&mut self, lsn: u64, epoch: u64, change: &Self::Change) -> Result<(), BoxError>;

    /// The state as a snapshot body.
    fn encode_state(&self) -> Vec<u8>;
    /// A snapshot body back as a state, checking what apply would have kept; `Err` says
    /// what is wrong (the caller names the object and offset).
    fn decode_state(body: &[u8]) -> Result<Self, String>;

    /// The SST object ids a change inserts into the storage version.
    fn inserted_objects(change: &Self::Change) -> impl Iterator<Item = u64> + '_;
    /// The SST object ids the state's storage version references.
    fn referenced_objects(&self) -> RoaringTreemap;

    /// The state's id generators.
    fn id_marks(&self) -> IdMarks;
    /// Raises the state's generators to at least `floor` (never lowers one).
    fn raise_ids(&mut self, floor: &IdMarks);
    /// The generator a change advances, and to what.
    fn id_mark_of(change: &Self::Change) -> Option<(u32, u64)>;

    /// The storage version's safe epoch, recorded in snapshot entries (0 where the model
    /// has none).
    fn safe_epoch(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_only_rise() {
        let mut a: IdMarks = [(1, 10), (2, 5)].into();
        assert!(raise_marks(&mut a, &[(1, 12), (2, 3), (4, 1)].into()));
        assert_eq!(a, [(1, 12), (2, 5), (4, 1)].into());
        assert!(!raise_marks(&mut a, &[(1, 11)].into()));
    }
}
