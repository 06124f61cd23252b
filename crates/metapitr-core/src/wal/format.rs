//! The WAL's bytes: segment files made of a header and framed records.
//!
//! A segment file (all integers little-endian):
//!
//! ```text
//! offset size field
//!      0    8 magic           b"MPWALSEG"
//!      8    2 format_version  1
//!     10    2 flags           0
//!     12    4 timeline
//!     16    8 first_lsn       lsn of the first record in the file
//!     24    4 reserved        0
//!     28    4 header_crc      crc32 of bytes [0, 28)
//!     32      records, back to back, until the end of the file
//! ```
//!
//! A record frame:
//!
//! ```text
//! offset size field
//!      0    4 len             bytes of body (17 + change bytes), at most MAX_BODY
//!      4    4 crc             crc32 of the 4 len bytes followed by the body
//!      8    1 flags           bit 0: END_OF_BATCH, the last record of a commit
//!      9    8 lsn             consecutive from first_lsn, no gaps
//!     17    8 epoch           non-decreasing (the reader checks it within a segment;
//!                             the writer and replay check it across segments)
//!     25    n change          the model's change, a protobuf message (today: `metapitr.model.Change`)
//! ```
//!
//! A segment holds whole commit batches: every sealed segment ends with an END_OF_BATCH
//! record, so a restore never sees half a commit.

use prost::Message;

use crate::codec::{le4, le8};
use crate::error::{Error, Result};

pub const SEGMENT_MAGIC: [u8; 8] = *b"MPWALSEG";
pub const SEGMENT_VERSION: u16 = 1;
pub const HEADER_LEN: usize = 32;
pub const FRAME_HEADER_LEN: usize = 8;
pub const BODY_FIXED_LEN: usize = 17;
/// A record body larger than this is corrupt (or refused when written).
pub const MAX_BODY: usize = 64 << 20;
pub const FLAG_END_OF_BATCH: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub timeline: u32,
    pub first_lsn: u64,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..10].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.timeline.to_le_bytes());
        b[16..24].copy_from_slice(&self.first_lsn.to_le_bytes());
        let crc = crc32fast::hash(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8], what: &str) -> Result<Self> {
        if b.len() < HEADER_LEN {
            return Err(Error::corrupt(
                what,
                b.len() as u64,
                "segment header is truncated",
            ));
        }
        if b[0..8] != SEGMENT_MAGIC {
            return Err(Error::corrupt(
                what,
                0,
                "bad magic (not a metapitr WAL segment)",
            ));
        }
        let crc = u32::from_le_bytes(le4(&b[28..32]));
        if crc != crc32fast::hash(&b[0..28]) {
            return Err(Error::corrupt(what, 28, "segment header checksum mismatch"));
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if version != SEGMENT_VERSION {
            return Err(Error::corrupt(
                what,
                8,
                format!("segment format version {version} is not supported (this build reads {SEGMENT_VERSION})"),
            ));
        }
        if b[10..12] != [0, 0] || b[24..28] != [0, 0, 0, 0] {
            return Err(Error::corrupt(
                what,
                10,
                "reserved header bytes are not zero",
            ));
        }
        Ok(SegmentHeader {
            timeline: u32::from_le_bytes(le4(&b[12..16])),
            first_lsn: u64::from_le_bytes(le8(&b[16..24])),
        })
    }
}

/// One decoded WAL record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<C> {
    pub lsn: u64,
    pub epoch: u64,
    pub end_of_batch: bool,
    pub change: C,
}

impl<C> Record<C> {
    /// Replays the record onto a state (recovery, restore, pin maintenance); an error names
    /// the record.
    pub fn apply_to<M: crate::model_api::Model<Change = C>>(&self, state: &mut M) -> Result<()> {
        state
            .replay(self.lsn, self.epoch, &self.change)
            .map_err(|source| Error::apply(self.lsn, self.epoch, source))
    }
}

/// A change read for its frame only. Recovering a WAL directory needs each record's lsn
/// and epoch, not what it changes: the body's protobuf fields are walked, so a body that is
/// not a protobuf message is still refused, but nothing is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Unparsed;

impl Message for Unparsed {
    fn encode_raw(&self, _buf: &mut impl bytes::BufMut) {}

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> std::result::Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        0
    }

    fn clear(&mut self) {}
}

/// Appends one record frame to `out`.
pub fn encode_record<C: Message + Default>(
    out: &mut Vec<u8>,
    lsn: u64,
    epoch: u64,
    end_of_batch: bool,
    change: &C,
) -> Result<()> {
    let body_len = BODY_FIXED_LEN + change.encoded_len();
    if body_len > MAX_BODY {
        return Err(Error::invalid_input(format!(
            "a change of {body_len} bytes exceeds the {MAX_BODY}-byte record limit"
        )));
    }
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.push(if end_of_batch { FLAG_END_OF_BATCH } else { 0 });
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&epoch.to_le_bytes());
    // Encoding into a Vec grows it as needed and cannot fail.
    let _ = change.encode(out);
    let mut h = crc32fast::Hasher::new();
    h.update(&out[start..start + 4]);
    h.update(&out[start + 8..]);
    let crc = h.finalize();
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// What went wrong with the frame at an offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub offset: u64,
    pub reason: String,
    /// The frame runs past the end of the data (a torn write looks like this).
    pub incomplete: bool,
}

/// Decodes the frame at `off`, returning the record and the offset after it.
/// `expect_lsn` is the lsn the frame must carry.
pub fn decode_frame<C: Message + Default>(
    data: &[u8],
    off: usize,
    expect_lsn: u64,
) -> std::result::Result<(Record<C>, usize), FrameError> {
    let err = |reason: String, incomplete: bool| FrameError {
        offset: off as u64,
        reason,
        incomplete,
    };
    let Some(rest) = data.get(off..) else {
        return Err(err(
            format!("offset is past the end of the {} bytes", data.len()),
            true,
        ));
    };
    if rest.len() < FRAME_HEADER_LEN {
        return Err(err(format!("{} bytes of a frame header", rest.len()), true));
    }
    let len = u32::from_le_bytes(le4(&rest[0..4])) as usize;
    if !(BODY_FIXED_LEN..=MAX_BODY).contains(&len) {
        return Err(err(format!("record length {len} is out of bounds"), false));
    }
    if rest.len() < FRAME_HEADER_LEN + len {
        return Err(err(
            format!(
                "record of {len} bytes runs past the end ({} left)",
                rest.len() - FRAME_HEADER_LEN
            ),
            true,
        ));
    }
    let body = &rest[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len];
    let stored = u32::from_le_bytes(le4(&rest[4..8]));
    let mut h = crc32fast::Hasher::new();
    h.update(&rest[0..4]);
    h.update(body);
    if h.finalize() != stored {
        return Err(err("record checksum mismatch".into(), false));
    }
    let flags = body[0];
    if flags & !FLAG_END_OF_BATCH != 0 {
        return Err(err(format!("unknown record flags {flags:#04x}"), false));
    }
    let lsn = u64::from_le_bytes(le8(&body[1..9]));
    let epoch = u64::from_le_bytes(le8(&body[9..17]));
    if lsn != expect_lsn {
        return Err(err(
            format!("lsn {lsn} where {expect_lsn} was expected"),
            false,
        ));
    }
    let change = C::decode(&body[BODY_FIXED_LEN..])
        .map_err(|e| err(format!("change does not decode: {e}"), false))?;
    Ok((
        Record {
            lsn,
            epoch,
            end_of_batch: flags & FLAG_END_OF_BATCH != 0,
            change,
        },
        off + FRAME_HEADER_LEN + len,
    ))
}

/// The result of reading a segment's records.
#[derive(Debug)]
pub struct Scan<C> {
    pub header: SegmentHeader,
    pub records: Vec<Record<C>>,
    /// Offset just past the last record of the last complete batch.
    pub batch_end: usize,
    /// The number of records up to `batch_end`.
    pub batch_records: usize,
    /// The first bad frame, if reading stopped before the end.
    pub error: Option<FrameError>,
}

/// Reads every record it can. Stops at the first bad frame and reports it.
pub fn scan<C: Message + Default>(data: &[u8], what: &str) -> Result<Scan<C>> {
    let header = SegmentHeader::decode(data, what)?;
    let mut off = HEADER_LEN;
    let mut records = Vec::new();
    let (mut batch_end, mut batch_records) = (HEADER_LEN, 0);
    let mut error = None;
    let mut last_epoch = 0;
    while off < data.len() {
        let Some(expect_lsn) = header.first_lsn.checked_add(records.len() as u64) else {
            error = Some(FrameError {
                offset: off as u64,
                reason: format!(
                    "record {} after first lsn {} is past the largest lsn",
                    records.len(),
                    header.first_lsn
                ),
                incomplete: false,
            });
            break;
        };
        match decode_frame(data, off, expect_lsn) {
            Ok((r, next)) => {
                if r.epoch < last_epoch {
                    error = Some(FrameError {
                        offset: off as u64,
                        reason: format!("epoch {} goes back from {last_epoch}", r.epoch),
                        incomplete: false,
                    });
                    break;
                }
                last_epoch = r.epoch;
                off = next;
                let eob = r.end_of_batch;
                records.push(r);
                if eob {
                    batch_end = off;
                    batch_records = records.len();
                }
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    Ok(Scan {
        header,
        records,
        batch_end,
        batch_records,
        error,
    })
}

/// Whether any intact frame with a plausible lsn starts after `from`: if one does, the
/// damage at `from` is not a torn tail but corruption in the middle of the data.
pub fn intact_frame_after(data: &[u8], from: usize, min_lsn: u64) -> Option<usize> {
    let max_lsn = min_lsn.saturating_add((data.len() / (FRAME_HEADER_LEN + BODY_FIXED_LEN)) as u64);
    (from.saturating_add(1)
        ..data
            .len()
            .saturating_sub(FRAME_HEADER_LEN + BODY_FIXED_LEN - 1))
        .find(|&p| {
            let lsn = u64::from_le_bytes(le8(&data[p + 9..p + 17]));
            (min_lsn..=max_lsn).contains(&lsn) && decode_frame::<Unparsed>(data, p, lsn).is_ok()
        })
}

/// Reads a sealed segment (local or archived) strictly: every byte must be valid and the
/// last record must end a batch.
pub fn read_sealed<C: Message + Default>(
    data: &[u8],
    what: &str,
) -> Result<(SegmentHeader, Vec<Record<C>>)> {
    let s = scan(data, what)?;
    if let Some(e) = s.error {
        return Err(Error::corrupt(what, e.offset, e.reason));
    }
    if s.batch_end != data.len() {
        return Err(Error::corrupt(
            what,
            s.batch_end as u64,
            "segment ends inside a commit batch",
        ));
    }
    if s.records.is_empty() {
        return Err(Error::corrupt(
            what,
            HEADER_LEN as u64,
            "sealed segment holds no records",
        ));
    }
    Ok((s.header, s.records))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A change of some model: the WAL only frames its bytes.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Change {
        #[prost(uint64, tag = "1")]
        next: u64,
        #[prost(string, tag = "2")]
        note: String,
    }

    fn change(next: u64) -> Change {
        Change {
            next,
            note: "id advance".into(),
        }
    }

    /// A segment file starting at `first_lsn` holding one single-record commit per lsn.
    fn segment(first_lsn: u64, lsns: &[u64]) -> Vec<u8> {
        let mut data = SegmentHeader {
            timeline: 1,
            first_lsn,
        }
        .encode()
        .to_vec();
        for (i, lsn) in lsns.iter().enumerate() {
            encode_record(&mut data, *lsn, 7, true, &change(i as u64)).unwrap();
        }
        data
    }

    #[test]
    fn round_trip() {
        let data = segment(5, &[5, 6, 7]);
        let (h, records) = read_sealed::<Change>(&data, "s").unwrap();
        assert_eq!(h.first_lsn, 5);
        assert_eq!(
            records.iter().map(|r| r.lsn).collect::<Vec<_>>(),
            vec![5, 6, 7]
        );
    }

    #[test]
    fn a_frame_offset_past_the_end_is_an_error() {
        // Used to panic slicing data[off..].
        let data = segment(1, &[1]);
        for off in [data.len() + 1, data.len() + 100, usize::MAX] {
            let e = decode_frame::<Change>(&data, off, 1).unwrap_err();
            assert!(e.incomplete, "{e:?}");
            assert_eq!(e.offset, off as u64);
        }
        assert!(
            decode_frame::<Change>(&data, data.len(), 1)
                .unwrap_err()
                .incomplete
        );
    }

    #[test]
    fn lsns_past_the_largest_are_corrupt() {
        // A header at the largest lsn followed by two records: computing the lsn the
        // second must carry used to overflow (a panic in debug builds).
        let data = segment(u64::MAX, &[u64::MAX, 0]);
        let s = scan::<Change>(&data, "s").unwrap();
        assert_eq!(s.records.len(), 1);
        let e = s.error.unwrap();
        assert!(e.reason.contains("past the largest lsn"), "{e:?}");
        let e = read_sealed::<Change>(&data, "s").unwrap_err().to_string();
        assert!(e.contains("corrupt s at byte offset"), "{e}");
        // The search for an intact frame after damage near the largest lsn used to
        // overflow too.
        let mut torn = segment(u64::MAX, &[u64::MAX]);
        torn.extend_from_slice(&[0xff; 40]);
        let _ = intact_frame_after(&torn, HEADER_LEN, u64::MAX);
        let _ = intact_frame_after(&torn, usize::MAX, u64::MAX);
    }
}
