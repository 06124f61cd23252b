//! `metapitr epoch`: an epoch as its UTC time, or a time as its epoch.

use serde_json::json;

use crate::cli::args::EpochArgs;
use crate::cli::common::out;
use crate::epoch;
use crate::error::Result;

pub(crate) fn run(a: EpochArgs) -> Result<()> {
    let v = a.value.trim();
    let (e, is_epoch) = match v.parse::<u64>() {
        Ok(e) => (e, true),
        Err(_) => (epoch::from_unix_ms(epoch::parse_time_ms(v)?), false),
    };
    if a.json {
        out(
            json!({"epoch": e, "timestamp": epoch::format(e), "unix_ms": epoch::to_unix_ms(e)})
                .to_string(),
        )
    } else if is_epoch {
        out(epoch::format(e))
    } else {
        out(e.to_string())
    }
}
