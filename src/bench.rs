//! `metapitr bench recovery`: builds a history with the simulator, restores to random
//! epochs across it, and reports recovery time (RTO), what a restore fetches, peak memory,
//! archive size and archive lag, as `result.json` and an HTML report with SVG plots.
//!
//! Restore times are wall-clock, one restore at a time, from the repo the history was
//! archived to (cold: each restore reads its snapshot and segments again). Archive lag is
//! wall-clock too, sampled while the simulator commits as fast as it can: the age of the
//! oldest acknowledged commit not yet archived (what a machine lost at that moment would
//! lose). The simulator runs far faster than real time, so the archiver is under more load
//! than one epoch per second puts on it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::repo::{Repo, RepoLocation};
use crate::restore::{self, Target};
use crate::sim::{self, RunOptions, SimConfig};
use crate::store::MetaStore;

/// What to build and measure. Defaults are the reference history: 7 days at one
/// epoch per second, 100,000 SSTs, 10,000 catalog objects.
#[derive(Debug, Clone)]
pub struct RecoveryConfig {
    /// Simulated span of the history. Default 7 days.
    pub window_ms: u64,
    /// Simulated time between epochs. Default 1000 ms.
    pub epoch_interval_ms: u64,
    /// SSTs the version holds once grown. Default 100,000.
    pub ssts: usize,
    /// Catalog objects the catalog holds once grown. Default 10,000.
    pub catalog: usize,
    /// Epochs between snapshots. Default 1800 (30 minutes at 1 s per epoch): a restore
    /// replays at most that many epochs on top of its snapshot.
    pub snapshot_every: u64,
    /// Restores to random epochs. Default 20.
    pub restores: usize,
    pub seed: u64,
    /// Progress of the build, the restores and the checks. Default hidden.
    pub progress: crate::progress::Progress,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            window_ms: 7 * 24 * 3_600_000,
            epoch_interval_ms: 1000,
            ssts: 100_000,
            catalog: 10_000,
            snapshot_every: 1800,
            restores: 20,
            seed: 1,
            progress: crate::progress::Progress::hidden(),
        }
    }
}

/// One restore.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    pub target_epoch: u64,
    /// Where the target lies in the history, 0 (first epoch) to 1 (last).
    pub position: f64,
    /// Epoch time between the plan's base snapshot and the target (0 without one).
    pub since_snapshot_ms: u64,
    pub segments: usize,
    pub fetched_bytes: u64,
    /// Fetch, verify and replay, to the state in memory.
    pub ms: f64,
    /// `ms` plus writing the state into a fresh `dir:` meta store (what `metapitr
    /// restore --target-store dir:` does before a meta service can open it).
    pub store_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoveryResult {
    pub repo: String,
    pub epochs: u64,
    pub records: u64,
    pub final_ssts: usize,
    pub final_catalog_objects: usize,
    pub snapshot_every: u64,
    pub build_seconds: f64,
    pub rto_ms_p50: f64,
    pub rto_ms_p99: f64,
    pub rto_ms_max: f64,
    pub fetched_bytes_p50: u64,
    pub peak_rss_bytes: u64,
    pub archived_bytes: u64,
    pub archived_bytes_per_epoch: f64,
    /// Bytes of the newest state as the JSONL export, for the archive's compression.
    pub final_state_json_bytes: u64,
    pub archive_lag_ms_p50: u64,
    pub archive_lag_ms_p99: u64,
    /// The same history as plain JSON: every record as a JSON line plus every snapshot's
    /// state as a JSONL export (see `jsonl::change_json_len`).
    pub history_json_bytes: u64,
    /// `archived_bytes / history_json_bytes`.
    pub archive_to_json_ratio: f64,
    pub store_ms_p50: f64,
    pub store_ms_p99: f64,
    pub samples: Vec<Sample>,
    /// Operator commands on the same history (absent from results written before they
    /// were measured).
    #[serde(default)]
    pub inspect: Inspect,
    /// What an operator would use instead, on the same history (filled by the peer
    /// benchmark, `crates/metapitr-bench/benches/peers.sh`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<Peers>,
}

/// `verify` and `diff` on the built history.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Inspect {
    /// `verify` on the fresh repo, reading every object.
    pub verify_full_ms: f64,
    pub verify_full_objects: u64,
    pub verify_full_bytes: u64,
    /// `verify` right after: the listing only, no object read.
    pub verify_again_ms: f64,
    pub verify_again_objects: u64,
    /// `diff` from the first to the newest restorable epoch: two replays and a compare.
    pub diff_ms: f64,
    pub diff_created: u64,
    pub diff_ssts_added: u64,
}

/// The peers' results, side by side with metapitr's on the same history.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Peers {
    /// How the peers ran (versions, settings), one line each.
    pub conditions: Vec<String>,
    /// PostgreSQL holding the same metadata, archived with pgBackRest: restores with
    /// `pgbackrest restore --type=time` to the same targets as `samples`.
    pub pgbackrest: Vec<PeerSample>,
    pub pgbackrest_ms_p50: f64,
    pub pgbackrest_ms_p99: f64,
    /// Bytes of the pgBackRest repo (backups and archived WAL) after the history.
    pub pgbackrest_repo_bytes: u64,
    /// Seconds to apply the history to PostgreSQL as SQL, one transaction per epoch.
    pub pg_apply_seconds: f64,
    /// etcd holding the newest state (one key per export line): `etcdctl snapshot
    /// restore`, start, until a range count answers.
    pub etcd_snapshot_bytes: u64,
    pub etcd_restore_ms: f64,
    /// The newest state's JSONL export imported into a fresh SQLite store.
    pub jsonl_import_ms: f64,
    /// metapitr's restore of the newest epoch into a fresh store, for the last two.
    pub metapitr_newest_store_ms: f64,
    /// pgBackRest p50 / metapitr `store_ms` p50, and the same at p99.
    pub pgbackrest_ratio_p50: f64,
    pub pgbackrest_ratio_p99: f64,
    pub etcd_ratio: f64,
    pub jsonl_ratio: f64,
}

/// One peer restore.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerSample {
    pub target_epoch: u64,
    pub position: f64,
    /// Until the restored server answered its first query.
    pub ms: f64,
    /// Of which the restore command.
    pub restore_ms: f64,
    /// What the query returned, and what the history holds at the target (equal when the
    /// peer restored the right point).
    pub answered: i64,
    pub expected: i64,
}

/// The value at quantile `q` (0..=1) of `v`, sorted in place (nearest rank).
pub fn quantile<T: Copy + PartialOrd>(v: &mut [T], q: f64) -> Option<T> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    if v.is_empty() {
        return None;
    }
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    Some(v[i])
}

/// The peak resident set of this process (VmHWM), if the platform tells.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Builds the history into `repo` (WAL in `work`), then restores and measures.
pub async fn recovery(
    cfg: &RecoveryConfig,
    repo: &RepoLocation,
    work: &Path,
) -> Result<RecoveryResult> {
    let epochs = (cfg.window_ms / cfg.epoch_interval_ms.max(1)).max(2);
    let mut opts = RunOptions {
        sim: SimConfig {
            seed: cfg.seed,
            epoch_interval_ms: cfg.epoch_interval_ms,
            target_ssts: cfg.ssts,
            target_catalog: cfg.catalog,
            // Reaches 10,000 objects in about 1,300 epochs (22 minutes of history).
            catalog_growth_per_epoch: 8,
            ..Default::default()
        },
        epochs,
        snapshot_every: Some(cfg.snapshot_every.max(1)),
        lag_every: Some((epochs / 1000).max(1)),
        measure_json: true,
        progress: cfg.progress.clone(),
        ..Default::default()
    };
    cfg.progress.set_length(epochs);
    cfg.progress
        .set_message("bench: building the history, epochs");
    opts.recorder.wal.sync = true;
    let t = Instant::now();
    let report = sim::run(repo.clone(), &work.join("wal"), opts).await?;
    let build_seconds = t.elapsed().as_secs_f64();
    let repo = Repo::open_location(repo, crate::clock::system())?;
    let m = repo.manifest().await?;
    let tl = m.newest_timeline();
    let archived_bytes = m.timeline(tl).map_or(0, |t| t.archived_bytes())
        + m.snapshots.iter().map(|s| s.stored_size).sum::<u64>();
    let (first, last) = (report.first_epoch, report.last_epoch);
    let ranges = restore::restorable_ranges(&m, tl);
    if ranges.is_empty() {
        return Err(Error::not_found(format!(
            "{} holds nothing restorable after the build",
            repo.url()
        )));
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed ^ 0x0062_656e_6368);
    let mut samples = Vec::with_capacity(cfg.restores);
    let mut final_json = 0;
    cfg.progress.set_message("bench: restores");
    cfg.progress.set_length(cfg.restores.max(1) as u64);
    cfg.progress.set_position(0);
    for i in 0..cfg.restores.max(1) {
        cfg.progress.set_position(i as u64);
        // The last restore is always the newest epoch.
        let target = if i + 1 == cfg.restores.max(1) {
            last
        } else {
            let (a, b) = ranges[rng.random_range(0..ranges.len())];
            rng.random_range(a..=b)
        };
        let t = Instant::now();
        let plan = restore::plan(&repo, &m, Some(tl), Target::Epoch(target)).await?;
        let state = restore::execute(&repo, &plan).await?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        let store_dir = work.join(format!("restored-{i}"));
        crate::store::DirStore::new(&store_dir)
            .write(&state, false)
            .await?;
        let store_ms = t.elapsed().as_secs_f64() * 1000.0;
        std::fs::remove_dir_all(&store_dir).map_err(|e| Error::io(&store_dir, e))?;
        if target == last {
            final_json = crate::jsonl::export_len(&state);
        }
        samples.push(Sample {
            target_epoch: target,
            position: if last > first {
                (target - first) as f64 / (last - first) as f64
            } else {
                1.0
            },
            since_snapshot_ms: plan.snapshot.as_ref().map_or(0, |s| {
                crate::epoch::to_unix_ms(target)
                    .saturating_sub(crate::epoch::to_unix_ms(s.max_committed_epoch))
            }),
            segments: plan.segments.len(),
            fetched_bytes: plan.fetch_bytes,
            ms,
            store_ms,
        });
    }
    cfg.progress.set_message("bench: verify and diff");
    let inspect = inspect(&repo, tl, ranges[0].0, last).await?;
    cfg.progress.finish();
    let mut rto: Vec<f64> = samples.iter().map(|s| s.ms).collect();
    let mut store: Vec<f64> = samples.iter().map(|s| s.store_ms).collect();
    let mut fetched: Vec<u64> = samples.iter().map(|s| s.fetched_bytes).collect();
    let mut lag = report.archive_lag_ms.clone();
    Ok(RecoveryResult {
        repo: repo.url().to_string(),
        epochs,
        records: report.records,
        final_ssts: report.final_state_ssts,
        final_catalog_objects: report.final_catalog_objects,
        snapshot_every: cfg.snapshot_every,
        build_seconds,
        rto_ms_p50: quantile(&mut rto, 0.5).unwrap_or(0.0),
        rto_ms_p99: quantile(&mut rto, 0.99).unwrap_or(0.0),
        rto_ms_max: quantile(&mut rto, 1.0).unwrap_or(0.0),
        fetched_bytes_p50: quantile(&mut fetched, 0.5).unwrap_or(0),
        peak_rss_bytes: peak_rss_bytes(),
        archived_bytes,
        archived_bytes_per_epoch: archived_bytes as f64 / epochs as f64,
        final_state_json_bytes: final_json,
        archive_lag_ms_p50: quantile(&mut lag, 0.5).unwrap_or(0),
        archive_lag_ms_p99: quantile(&mut lag, 0.99).unwrap_or(0),
        history_json_bytes: report.history_json_bytes,
        archive_to_json_ratio: archived_bytes as f64 / report.history_json_bytes.max(1) as f64,
        store_ms_p50: quantile(&mut store, 0.5).unwrap_or(0.0),
        store_ms_p99: quantile(&mut store, 0.99).unwrap_or(0.0),
        samples,
        inspect,
        peers: None,
    })
}

/// Times `verify` twice (everything, then nothing new) and a `diff` across the history.
async fn inspect(repo: &Repo, timeline: u32, first: u64, last: u64) -> Result<Inspect> {
    let hidden = crate::progress::Progress::hidden();
    let t = Instant::now();
    let full = crate::verify::run(repo, true, &hidden).await?;
    let verify_full_ms = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    let again = crate::verify::run(repo, false, &hidden).await?;
    let verify_again_ms = t.elapsed().as_secs_f64() * 1000.0;
    if let Some(e) = full.error().or(again.error()) {
        return Err(e);
    }
    let t = Instant::now();
    let (a, b) = tokio::try_join!(
        restore::as_recorded(repo, Some(timeline), Target::Epoch(first)),
        restore::as_recorded(repo, Some(timeline), Target::Epoch(last)),
    )?;
    let d = crate::diff::Diff::between(&a.1, &b.1);
    Ok(Inspect {
        verify_full_ms,
        verify_full_objects: full.objects_read,
        verify_full_bytes: full.bytes_read,
        verify_again_ms,
        verify_again_objects: again.objects_read,
        diff_ms: t.elapsed().as_secs_f64() * 1000.0,
        diff_created: d.created.len() as u64,
        diff_ssts_added: d.ssts.added,
    })
}

/// Writes `result.json`, `report.html` and its plots as SVG files into `out`.
pub fn write_report(r: &RecoveryResult, out: &Path) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let json = out.join("result.json");
    let text = serde_json::to_string_pretty(r)
        .map_err(|e| Error::internal(format!("result does not serialize: {e}")))?;
    std::fs::write(&json, text).map_err(|e| Error::io(&json, e))?;
    let html = out.join("report.html");
    std::fs::write(&html, html_report(r)).map_err(|e| Error::io(&html, e))?;
    for (name, svg) in plots(r) {
        let p = out.join(name);
        std::fs::write(&p, svg).map_err(|e| Error::io(&p, e))?;
    }
    Ok((json, html))
}

/// One series of a plot: its legend, colour and (x, y) points.
type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// A scatter plot as an SVG element. The y axis (milliseconds) is logarithmic when the
/// values span more than a factor of 20, so that series far apart stay readable.
fn scatter(title: &str, x_label: &str, series: &[Series]) -> String {
    const W: f64 = 600.0;
    const H: f64 = 320.0;
    const M: f64 = 56.0;
    let all = || series.iter().flat_map(|s| s.2.iter());
    let max_x = all().map(|p| p.0).fold(0.0, f64::max).max(1e-9);
    let max_y = all().map(|p| p.1).fold(0.0, f64::max).max(1e-9);
    let min_y = all()
        .map(|p| p.1)
        .filter(|y| *y > 0.0)
        .fold(max_y, f64::min);
    let log = max_y / min_y > 20.0;
    let (lo, hi) = if log {
        (
            min_y.log10().floor(),
            max_y.log10().ceil().max(min_y.log10().floor() + 1.0),
        )
    } else {
        (0.0, max_y * 1.1)
    };
    let y_of = |y: f64| {
        let f = if log {
            (y.max(1e-9).log10() - lo) / (hi - lo)
        } else {
            y / hi
        };
        (H - M) - f.clamp(0.0, 1.0) * (H - M - 16.0)
    };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
         role=\"img\" aria-label=\"{title}\"><title>{title}</title>\
         <rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>\
         <line x1=\"{M}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\" stroke=\"black\"/>\
         <line x1=\"{M}\" y1=\"16\" x2=\"{M}\" y2=\"{y0}\" stroke=\"black\"/>\
         <text x=\"{xm}\" y=\"{yl}\" text-anchor=\"middle\" font-size=\"12\">{x_label}</text>\
         <text x=\"12\" y=\"{ym}\" font-size=\"12\" transform=\"rotate(-90 12 {ym})\" \
         text-anchor=\"middle\">restore time (ms{scale})</text>\
         <text x=\"{x1}\" y=\"{yt}\" font-size=\"11\" text-anchor=\"end\">{max_x:.3}</text>",
        y0 = H - M,
        x1 = W - 16.0,
        xm = W / 2.0,
        yl = H - 12.0,
        ym = H / 2.0,
        yt = H - M + 14.0,
        scale = if log { ", log scale" } else { "" },
    );
    let ticks: Vec<f64> = if log {
        (lo as i32..=hi as i32).map(|e| 10f64.powi(e)).collect()
    } else {
        vec![0.0, hi / 2.0, hi]
    };
    for t in ticks {
        s.push_str(&format!(
            "<text x=\"{x}\" y=\"{y:.1}\" font-size=\"11\" text-anchor=\"end\">{t}</text>",
            x = M - 4.0,
            y = y_of(t) + 4.0,
            t = if t >= 10.0 || t == 0.0 {
                format!("{t:.0}")
            } else {
                format!("{t}")
            }
        ));
    }
    for (i, (label, colour, points)) in series.iter().enumerate() {
        for (x, y) in points {
            let px = M + x / max_x * (W - M - 16.0);
            s.push_str(&format!(
                "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"3\" fill=\"{colour}\"/>",
                py = y_of(*y)
            ));
        }
        if series.len() > 1 {
            let ly = 24.0 + 16.0 * i as f64;
            s.push_str(&format!(
                "<circle cx=\"{lx}\" cy=\"{cy}\" r=\"4\" fill=\"{colour}\"/>\
                 <text x=\"{tx}\" y=\"{ty}\" font-size=\"11\">{label}</text>",
                lx = M + 16.0,
                cy = ly - 4.0,
                tx = M + 26.0,
                ty = ly,
            ));
        }
    }
    s.push_str("</svg>");
    s
}

/// The report's two plots, as (file name, SVG): restore time against the target's
/// position (metapitr, and pgBackRest when peers ran), and against the distance from the
/// base snapshot.
pub fn plots(r: &RecoveryResult) -> [(&'static str, String); 2] {
    let series = |f: fn(&Sample) -> f64, label: &'static str, colour: &'static str| {
        (
            label,
            colour,
            r.samples
                .iter()
                .map(|s| (s.position, f(s)))
                .collect::<Vec<_>>(),
        )
    };
    let mut by_position = vec![
        series(|s| s.ms, "metapitr, to memory", "steelblue"),
        series(|s| s.store_ms, "metapitr, into a dir: store", "seagreen"),
    ];
    if let Some(p) = &r.peers {
        by_position.push((
            "pgBackRest PITR, until PostgreSQL answers",
            "firebrick",
            p.pgbackrest.iter().map(|s| (s.position, s.ms)).collect(),
        ));
    }
    let by_snapshot: Vec<(f64, f64)> = r
        .samples
        .iter()
        .map(|s| (s.since_snapshot_ms as f64 / 1000.0, s.ms))
        .collect();
    [
        (
            "restore-by-position.svg",
            scatter(
                "restore time against target position",
                "target position in the history (0 = first epoch, 1 = newest)",
                &by_position,
            ),
        ),
        (
            "restore-by-snapshot-distance.svg",
            scatter(
                "restore time against distance from the base snapshot",
                "epoch time since the base snapshot (s)",
                &[("metapitr, to memory", "steelblue", by_snapshot)],
            ),
        ),
    ]
}

fn html_report(r: &RecoveryResult) -> String {
    let [(_, by_position), (_, by_snapshot)] = plots(r);
    let row = |k: &str, v: String| format!("<tr><th>{k}</th><td>{v}</td></tr>");
    let mut rows = vec![
        row("repo", r.repo.clone()),
        row("epochs (records)", format!("{} ({})", r.epochs, r.records)),
        row(
            "final version",
            format!(
                "{} SSTs, {} catalog objects",
                r.final_ssts, r.final_catalog_objects
            ),
        ),
        row("snapshot every", format!("{} epochs", r.snapshot_every)),
        row("history built in", format!("{:.1} s", r.build_seconds)),
        row(
            "RTO p50 / p99 / max (to memory)",
            format!(
                "{:.1} / {:.1} / {:.1} ms",
                r.rto_ms_p50, r.rto_ms_p99, r.rto_ms_max
            ),
        ),
        row(
            "RTO p50 / p99 (into a fresh dir: store)",
            format!("{:.1} / {:.1} ms", r.store_ms_p50, r.store_ms_p99),
        ),
        row(
            "bytes fetched per restore (p50)",
            r.fetched_bytes_p50.to_string(),
        ),
        row(
            "peak memory (RSS)",
            format!("{} MiB", r.peak_rss_bytes >> 20),
        ),
        row(
            "archived (segments + snapshots)",
            format!(
                "{} bytes, {:.1} per epoch",
                r.archived_bytes, r.archived_bytes_per_epoch
            ),
        ),
        row(
            "the same history as plain JSON",
            format!(
                "{} bytes (archive = {:.3} of it)",
                r.history_json_bytes, r.archive_to_json_ratio
            ),
        ),
        row(
            "newest state as JSONL",
            format!("{} bytes", r.final_state_json_bytes),
        ),
        row(
            "archive lag p50 / p99 (wall clock)",
            format!("{} / {} ms", r.archive_lag_ms_p50, r.archive_lag_ms_p99),
        ),
        row(
            "verify: everything / again",
            format!(
                "{:.0} ms for {} objects ({} bytes) / {:.0} ms reading {} objects",
                r.inspect.verify_full_ms,
                r.inspect.verify_full_objects,
                r.inspect.verify_full_bytes,
                r.inspect.verify_again_ms,
                r.inspect.verify_again_objects
            ),
        ),
        row(
            "diff first → newest epoch",
            format!(
                "{:.0} ms ({} objects created, {} SSTs added)",
                r.inspect.diff_ms, r.inspect.diff_created, r.inspect.diff_ssts_added
            ),
        ),
    ];
    let mut peers = String::new();
    if let Some(p) = &r.peers {
        let prow = |what: &str, them: String, us: String, ratio: f64| {
            format!("<tr><td>{what}</td><td>{them}</td><td>{us}</td><td>{ratio:.1}×</td></tr>")
        };
        peers = format!(
            "<h2>Against peers, same history, same run</h2>\n<table>\n\
             <tr><th>peer</th><th>peer</th><th>metapitr</th><th>metapitr faster by</th></tr>\n\
             {}\n{}\n{}\n{}\n</table>\n<ul>{}</ul>\n",
            prow(
                "pgBackRest PITR (p50), same targets",
                format!("{:.0} ms", p.pgbackrest_ms_p50),
                format!("{:.1} ms", r.store_ms_p50),
                p.pgbackrest_ratio_p50
            ),
            prow(
                "pgBackRest PITR (p99), same targets",
                format!("{:.0} ms", p.pgbackrest_ms_p99),
                format!("{:.1} ms", r.store_ms_p99),
                p.pgbackrest_ratio_p99
            ),
            prow(
                "etcd snapshot restore, newest state",
                format!("{:.0} ms", p.etcd_restore_ms),
                format!("{:.1} ms", p.metapitr_newest_store_ms),
                p.etcd_ratio
            ),
            prow(
                "JSONL import, newest state",
                format!("{:.0} ms", p.jsonl_import_ms),
                format!("{:.1} ms", p.metapitr_newest_store_ms),
                p.jsonl_ratio
            ),
            p.conditions
                .iter()
                .map(|c| format!("<li>{}</li>", html_escape(c)))
                .collect::<String>()
        );
        rows.push(row(
            "pgBackRest repo (backups + WAL)",
            format!("{} bytes", p.pgbackrest_repo_bytes),
        ));
    }
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>metapitr recovery \
         benchmark</title><style>body{{font-family:sans-serif;max-width:760px;margin:2em auto}}\
         th,td{{text-align:left;padding-right:1em}}</style></head><body>\n\
         <h1>metapitr recovery benchmark</h1>\n<table>\n{rows}\n</table>\n{peers}\
         <h2>Restore time against target position</h2>\n{}\n\
         <h2>Restore time against distance from the base snapshot</h2>\n{}\n\
         <p>Each point is one restore, from the repo, one at a time. The distance from the \
         base snapshot is what the snapshot interval bounds: a restore replays the WAL from \
         the newest snapshot at or before its target.</p>\n</body></html>\n",
        by_position,
        by_snapshot,
        rows = rows.join("\n"),
    )
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let mut v = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(quantile(&mut v, 0.5), Some(3.0));
        assert_eq!(quantile(&mut v, 0.99), Some(5.0));
        assert_eq!(quantile(&mut v, 0.0), Some(1.0));
        assert_eq!(quantile::<f64>(&mut [], 0.5), None);
    }
}
