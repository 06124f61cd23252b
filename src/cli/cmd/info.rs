//! `metapitr info`: the repo at a glance: restorable window, timelines, snapshots, WAL,
//! pin sets, archive lag and the last verify.

use serde_json::{json, Value};

use crate::cli::args::InfoArgs;
use crate::cli::common::{human_bytes, human_duration, open_repo, out, Ctx};
use crate::epoch;
use crate::error::Result;
use crate::pb::{Manifest, TimelineEntry};
use crate::repo::Repo;
use crate::restore;

pub(crate) async fn run(a: InfoArgs, ctx: &Ctx) -> Result<()> {
    let repo = open_repo(&a.repo, ctx)?;
    let m = repo.manifest().await?;
    let now = repo.clock().now_ms();
    let verify = last_verify(&repo, now).await;
    let tot = Totals::of(&m, now);
    if a.json {
        return out(info_json(&repo, &m, &tot, now, &verify).to_string());
    }
    let mut t = summary_text(&repo, &m, &tot, now, &verify);
    t.push_str(&timelines_text(&m));
    out(t.trim_end())
}

/// The age now of an epoch, in ms.
fn age(now: u64, e: u64) -> u64 {
    now.saturating_sub(epoch::to_unix_ms(e))
}

/// A duration in ms, for people.
fn ago(ms: u64) -> String {
    human_duration(std::time::Duration::from_millis(ms))
}

/// Epoch ranges as `{from, from_ts, to, to_ts}` objects.
fn ranges_json(ranges: &[(u64, u64)]) -> Vec<Value> {
    ranges
        .iter()
        .map(|(a, b)| {
            json!({
                "from": a, "from_ts": epoch::format(*a),
                "to": b, "to_ts": epoch::format(*b),
            })
        })
        .collect()
}

/// The last `verify` run as remembered in the repo: null if never, `{error}` if its
/// state is unreadable.
async fn last_verify(repo: &Repo, now: u64) -> Value {
    match crate::verify::load_state(repo).await {
        Ok(Some(v)) => json!({
            "at_ms": v.verified_at_ms,
            "at": epoch::format_unix_ms(v.verified_at_ms),
            "age_ms": now.saturating_sub(v.verified_at_ms),
            "manifest_version": v.manifest_version,
            "problems": v.last_problems,
            "full": v.last_full,
            "objects_read": v.last_objects_read,
            "bytes_read": v.last_bytes_read,
            "objects_verified": v.objects.len(),
        }),
        Ok(None) => Value::Null,
        Err(e) => json!({ "error": e.to_string() }),
    }
}

/// One timeline: its fork, what is archived of it and what is restorable.
fn timeline_json(m: &Manifest, t: &TimelineEntry, now: u64) -> Value {
    let (last_lsn, last_epoch) = t.last();
    let first = t.first_archived();
    let ranges = restore::restorable_ranges(m, t.id);
    json!({
        "id": t.id,
        "parent": t.parent,
        "fork_epoch": t.fork_epoch,
        "fork_epoch_ts": (t.parent != 0).then(|| epoch::format(t.fork_epoch)),
        "fork_lsn": t.fork_lsn,
        "writer_epoch": t.writer_epoch,
        "first_archived_epoch": first.map(|f| f.1),
        "last_archived_epoch": last_epoch,
        "last_archived_epoch_ts": (last_epoch != 0).then(|| epoch::format(last_epoch)),
        "last_archived_lsn": last_lsn,
        "archive_age_ms": (last_epoch != 0).then(|| age(now, last_epoch)),
        "segments": t.segment_count(),
        "index_chunks": t.chunks.len(),
        "archived_bytes": t.archived_bytes(),
        "snapshots": m.snapshots.iter().filter(|s| s.timeline == t.id).count(),
        "restorable": ranges.iter().map(|(a, b)| json!([a, b])).collect::<Vec<_>>(),
        "restorable_ts": ranges_json(&ranges),
    })
}

/// What both renderings print, computed once from the manifest.
struct Totals {
    newest: u32,
    window: Vec<(u64, u64)>,
    lag_ms: Option<u64>,
    snap_bytes: u64,
    wal_segments: u64,
    wal_bytes: u64,
    pinned: u64,
    pin_bytes: u64,
}

impl Totals {
    fn of(m: &Manifest, now: u64) -> Totals {
        let newest = m.newest_timeline();
        Totals {
            newest,
            window: restore::restorable_ranges(m, newest),
            lag_ms: m
                .timeline(newest)
                .map(|t| t.last().1)
                .filter(|e| *e != 0)
                .map(|e| age(now, e)),
            snap_bytes: m.snapshots.iter().map(|s| s.stored_size).sum(),
            wal_segments: m.timelines.iter().map(|t| t.segment_count()).sum(),
            wal_bytes: m.timelines.iter().map(|t| t.archived_bytes()).sum(),
            pinned: m.pins.iter().map(|p| p.count).sum(),
            pin_bytes: m.pins.iter().map(|p| p.stored_size).sum(),
        }
    }
}

/// Everything `info` reports, as `--json` prints it.
fn info_json(repo: &Repo, m: &Manifest, tot: &Totals, now: u64, verify: &Value) -> Value {
    let timelines: Vec<Value> = crate::timeline::tree(m)
        .into_iter()
        .map(|t| timeline_json(m, t, now))
        .collect();
    let newest_snap = m.snapshots.iter().max_by_key(|s| s.max_committed_epoch);
    json!({
        "repo": repo.url(),
        "manifest_version": m.version,
        "manifest_updated_at_ms": m.updated_at_ms,
        "newest_timeline": tot.newest,
        "timelines": timelines,
        "restorable": ranges_json(&tot.window),
        "archive_lag_ms": tot.lag_ms,
        "snapshots": {
            "count": m.snapshots.len(),
            "stored_bytes": tot.snap_bytes,
            "kept": m.snapshots.iter().filter(|s| s.keep).count(),
            "newest": newest_snap.map(|s| json!({
                "id": s.id,
                "max_committed_epoch": s.max_committed_epoch,
                "max_committed_epoch_ts": epoch::format(s.max_committed_epoch),
                "age_ms": age(now, s.max_committed_epoch),
            })),
        },
        "wal": { "segments": tot.wal_segments, "stored_bytes": tot.wal_bytes },
        "pin_sets": {
            "count": m.pins.len(),
            "pinned_objects": tot.pinned,
            "stored_bytes": tot.pin_bytes,
        },
        "retention": {
            "window_ms": (m.retention_window_ms != 0).then_some(m.retention_window_ms),
            "keep_last": (m.retention_keep_last != 0).then_some(m.retention_keep_last),
        },
        "last_verify": verify,
    })
}

/// The text up to the timelines: repo, window, archive lag, WAL, snapshots, pin sets,
/// retention and the last verify.
fn summary_text(repo: &Repo, m: &Manifest, tot: &Totals, now: u64, verify: &Value) -> String {
    let mut t = format!(
        "repo {} (manifest version {}, written {} ago), newest timeline {}\n",
        repo.url(),
        m.version,
        ago(now.saturating_sub(m.updated_at_ms)),
        tot.newest
    );
    t.push_str(&format!(
        "restorable: {}\n",
        restore::format_ranges(&tot.window)
    ));
    if let Some(l) = tot.lag_ms {
        t.push_str(&format!("archive: newest epoch archived {} ago\n", ago(l)));
    }
    t.push_str(&format!(
        "wal: {} segments ({})\n",
        tot.wal_segments,
        human_bytes(tot.wal_bytes)
    ));
    let newest_snap = m.snapshots.iter().max_by_key(|s| s.max_committed_epoch);
    t.push_str(&format!(
        "snapshots: {} ({}){}\n",
        m.snapshots.len(),
        human_bytes(tot.snap_bytes),
        newest_snap
            .map(|s| format!(
                ", newest {} at epoch {} ({}), {} old",
                s.id,
                s.max_committed_epoch,
                epoch::format(s.max_committed_epoch),
                ago(age(now, s.max_committed_epoch))
            ))
            .unwrap_or_default()
    ));
    t.push_str(&format!(
        "pin sets: {} ({} objects pinned, {})\n",
        m.pins.len(),
        tot.pinned,
        human_bytes(tot.pin_bytes)
    ));
    let policy = crate::retention::Policy::last_applied(m);
    if !policy.is_empty() {
        t.push_str(&format!("retention: {}\n", policy.describe()));
    }
    t.push_str(&verify_text(verify));
    t
}

/// The last verify's line.
fn verify_text(v: &Value) -> String {
    match v {
        Value::Null => "last verify: never (run `metapitr verify`)\n".to_string(),
        v if v.get("error").is_some() => format!("last verify: unreadable state: {}\n", v["error"]),
        v => format!(
            "last verify: {} ago, manifest version {}, problems: {}{}\n",
            ago(v["age_ms"].as_u64().unwrap_or(0)),
            v["manifest_version"],
            v["problems"],
            if v["full"].as_bool() == Some(true) {
                " (full)"
            } else {
                ""
            }
        ),
    }
}

/// The timeline tree, one line per timeline, indented by depth.
fn timelines_text(m: &Manifest) -> String {
    let mut t = String::from("timelines:\n");
    for tl in crate::timeline::tree(m) {
        let depth = {
            let mut d = 0;
            let mut p = tl.parent;
            while p != 0 && d < 64 {
                d += 1;
                p = m.timeline(p).map_or(0, |x| x.parent);
            }
            d
        };
        let fork = if tl.parent == 0 {
            String::new()
        } else {
            format!(
                " forked from {} at epoch {} ({})",
                tl.parent,
                tl.fork_epoch,
                epoch::format(tl.fork_epoch)
            )
        };
        let ranges = restore::format_ranges(&restore::restorable_ranges(m, tl.id));
        t.push_str(&format!(
            "{}{}{fork}: {} segments ({}), writer epoch {}; restorable {ranges}\n",
            "  ".repeat(depth + 1),
            tl.id,
            tl.segment_count(),
            human_bytes(tl.archived_bytes()),
            tl.writer_epoch
        ));
    }
    t
}
