//! Epochs in RisingWave's format: `(unix_ms - 1617235200000) << 16`, the low 16 bits a
//! sequence number within the millisecond.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};

use crate::error::{Error, Result};

/// 2021-04-01T00:00:00Z in unix milliseconds: epoch 0.
pub const EPOCH_BASE_MS: u64 = 1_617_235_200_000;
/// Bits of the sequence part.
pub const SEQ_BITS: u32 = 16;

/// The epoch of a unix time in milliseconds, sequence 0. Times before the base map to 0.
pub fn from_unix_ms(unix_ms: u64) -> u64 {
    unix_ms.saturating_sub(EPOCH_BASE_MS) << SEQ_BITS
}

/// The unix time in milliseconds of an epoch (its sequence bits dropped).
pub fn to_unix_ms(epoch: u64) -> u64 {
    (epoch >> SEQ_BITS) + EPOCH_BASE_MS
}

/// The largest epoch whose physical time is `unix_ms` (sequence bits all ones), so that
/// "as of time T" includes every epoch of T's millisecond.
pub fn last_of_ms(unix_ms: u64) -> u64 {
    from_unix_ms(unix_ms) | ((1 << SEQ_BITS) - 1)
}

/// `2022-12-28 11:08:56.918`, UTC, as rw_meta_snapshot prints it.
pub fn format(epoch: u64) -> String {
    format_unix_ms(to_unix_ms(epoch))
}

pub fn format_unix_ms(unix_ms: u64) -> String {
    match Utc.timestamp_millis_opt(unix_ms as i64).single() {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        None => format!("<unix ms {unix_ms}>"),
    }
}

/// Parses an RFC 3339 timestamp (`2022-12-28T11:08:56.918Z`, any offset) or the
/// rw_meta_snapshot form (`2022-12-28 11:08:56.918`, read as UTC) into unix milliseconds.
pub fn parse_time_ms(s: &str) -> Result<u64> {
    let s = s.trim();
    let ms = if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        t.timestamp_millis()
    } else {
        let naive = [
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M:%S",
        ]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s.trim_end_matches(" UTC"), f).ok())
        .ok_or_else(|| {
            Error::invalid_input(format!(
                "'{s}' is neither an epoch nor a timestamp; use e.g. 2022-12-28T11:08:56.918Z"
            ))
        })?;
        naive.and_utc().timestamp_millis()
    };
    if ms < EPOCH_BASE_MS as i64 {
        return Err(Error::invalid_input(format!(
            "'{s}' is before 2021-04-01T00:00:00Z, the first time an epoch can express"
        )));
    }
    Ok(ms as u64)
}

/// An epoch number or a timestamp, as the CLI accepts them; a time is its millisecond's
/// first epoch (for a moment something happened, as `gc-check --current-epoch`).
pub fn parse_epoch_or_time(s: &str) -> Result<u64> {
    match s.trim().parse::<u64>() {
        Ok(e) => Ok(e),
        Err(_) => parse_time_ms(s).map(from_unix_ms),
    }
}

/// An epoch number or a timestamp naming a state "as of then": a time is its
/// millisecond's last epoch, so that every commit of that millisecond is included (as
/// `restore --target-time`).
pub fn parse_as_of(s: &str) -> Result<u64> {
    match s.trim().parse::<u64>() {
        Ok(e) => Ok(e),
        Err(_) => parse_time_ms(s).map(last_of_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_as_of_then_includes_its_whole_millisecond() {
        let t = "2022-12-28T11:08:56.918Z";
        let first = parse_epoch_or_time(t).unwrap();
        let last = parse_as_of(t).unwrap();
        assert_eq!(first, 3603859827458048);
        assert_eq!(last, first | 0xffff);
        assert_eq!(to_unix_ms(first), to_unix_ms(last));
        assert_eq!(parse_as_of("42").unwrap(), 42);
    }

    /// The rw_meta_snapshot example table of the meta backup guide.
    const TABLE: [(u64, &str); 4] = [
        (3603859827458048, "2022-12-28 11:08:56.918"),
        (3603862776381440, "2022-12-28 11:09:41.915"),
        (3603898821640192, "2022-12-28 11:18:51.922"),
        (3603900263432192, "2022-12-28 11:19:13.922"),
    ];

    #[test]
    fn guide_table_converts_both_ways() {
        for (epoch, ts) in TABLE {
            assert_eq!(format(epoch), ts);
            assert_eq!(from_unix_ms(parse_time_ms(ts).unwrap()), epoch);
            assert_eq!(parse_epoch_or_time(ts).unwrap(), epoch);
            let rfc = format!("{}Z", ts.replace(' ', "T"));
            assert_eq!(parse_epoch_or_time(&rfc).unwrap(), epoch);
        }
    }

    #[test]
    fn sequence_bits_do_not_change_the_time() {
        let e = 3603859827458048;
        assert_eq!(format(e | 0xffff), format(e));
        assert_eq!(last_of_ms(to_unix_ms(e)), e | 0xffff);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_epoch_or_time("yesterday").is_err());
        assert!(parse_epoch_or_time("1999-01-01T00:00:00Z").is_err());
    }
}
