//! metapitr against what an operator would use instead, on the same history, in one run:
//!
//! 1. metapitr: `bench::recovery` builds the history with the simulator (commits with
//!    fsync, continuous archiving, snapshots) and restores to random epochs across it.
//! 2. pgBackRest: the same history, read back from metapitr's archive batch by batch, is
//!    applied as SQL to PostgreSQL (a table per category, one transaction per epoch) while
//!    pgBackRest archives its WAL, with a backup every `--pg-backup-every` epochs. Each
//!    of metapitr's restore targets is then restored with `pgbackrest restore --type=time`
//!    into a fresh data directory and timed until the server answers `SELECT count(*) FROM
//!    ssts`, which must equal the SST count the history holds at that target.
//! 3. etcd: the newest state written into etcd (one key per export line), `etcdctl snapshot
//!    save`, then `etcdctl snapshot restore`, start, until a count of the keys answers.
//! 4. JSONL: the newest state's export parsed and written into a fresh `dir:` store.
//!
//! `crates/metapitr-bench/benches/peers.sh [ARGS]` installs the peers and runs `cargo bench --bench peers --
//! ARGS`; `--help` lists the knobs. Under `cargo test` (no `--bench`), a small history runs
//! end to end, so the peers' code is exercised by the test suite.

#[allow(dead_code)]
#[path = "peers/etcd.rs"]
mod etcd;
#[allow(dead_code)]
#[path = "peers/pg.rs"]
mod pg;
use metapitr_testkit::servers::s3;

use std::path::PathBuf;
use std::time::Instant;

use futures::StreamExt;
use metapitr::bench::{self, PeerSample, Peers, RecoveryConfig, RecoveryResult};
use metapitr::model::{Change, State};
use metapitr::repo::{Repo, RepoLocation};
use metapitr::store::{parse_url, postgres, sql, DirStore, MetaStore};

struct Args {
    cfg: RecoveryConfig,
    pg_backup_every: u64,
    s3: bool,
    out: PathBuf,
    /// Run by `cargo test`: the output is removed afterwards.
    test_mode: bool,
}

const USAGE: &str = "cargo bench --bench peers -- [--window 1d] [--epoch-interval-ms 1000] \
[--ssts 100000] [--catalog 10000] [--snapshot-every 1800] [--pg-backup-every N (default: \
--snapshot-every)] [--restores 20] [--seed 1] [--s3] [--out DIR (default target/peers)]";

fn parse_args() -> Result<Args, String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let bench_mode = argv.iter().any(|a| a == "--bench");
    let mut cfg = RecoveryConfig {
        window_ms: 24 * 3_600_000,
        ..Default::default()
    };
    let mut out = PathBuf::from("target/peers");
    if !bench_mode {
        // Under `cargo test`: a small history, so that every peer runs in seconds.
        cfg = RecoveryConfig {
            window_ms: 20 * 60_000,
            ssts: 400,
            catalog: 60,
            snapshot_every: 300,
            restores: 3,
            ..cfg
        };
        out = std::env::temp_dir().join(format!("metapitr-peers-test-{}", std::process::id()));
    }
    let mut pg_backup_every = None;
    let mut s3 = false;
    let mut it = argv.into_iter().filter(|a| a != "--bench");
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.into());
        }
        if flag == "--s3" {
            s3 = true;
            continue;
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value; usage: {USAGE}"))?;
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|e| format!("{flag} {v}: {e}; usage: {USAGE}"))
        };
        match flag.as_str() {
            "--window" => {
                cfg.window_ms =
                    metapitr::retention::Policy::parse_window(&value).map_err(|e| e.to_string())?
            }
            "--epoch-interval-ms" => cfg.epoch_interval_ms = num(&value)?,
            "--ssts" => cfg.ssts = num(&value)? as usize,
            "--catalog" => cfg.catalog = num(&value)? as usize,
            "--snapshot-every" => cfg.snapshot_every = num(&value)?,
            "--pg-backup-every" => pg_backup_every = Some(num(&value)?),
            "--restores" => cfg.restores = num(&value)? as usize,
            "--seed" => cfg.seed = num(&value)?,
            "--out" => out = PathBuf::from(value),
            // Flags cargo's harness protocol may pass.
            "--format" | "--color" => {}
            _ => return Err(format!("unknown argument {flag}; usage: {USAGE}")),
        }
    }
    Ok(Args {
        pg_backup_every: pg_backup_every.unwrap_or(cfg.snapshot_every).max(1),
        cfg,
        s3,
        out,
        test_mode: !bench_mode,
    })
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if let Err(e) = rt.block_on(run(&args)) {
        eprintln!("peers benchmark failed: {e}");
        std::process::exit(1);
    }
}

async fn run(args: &Args) -> Result<(), String> {
    let work = args.out.join("work");
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    }
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let loc = if args.s3 {
        s3::s3().location(Some("bench"))
    } else {
        RepoLocation {
            url: format!("file://{}", work.join("repo").display()),
            ..Default::default()
        }
    };
    eprintln!("metapitr: building the history and restoring ({})", loc.url);
    let mut r = bench::recovery(&args.cfg, &loc, &work)
        .await
        .map_err(|e| e.to_string())?;
    let repo = Repo::open_location(&loc, metapitr::clock::system()).map_err(|e| e.to_string())?;

    let mut conditions = vec![format!(
        "metapitr repo on {}",
        if args.s3 {
            "the in-process S3 server (s3s-fs on loopback)"
        } else {
            "the local file system"
        }
    )];
    eprintln!("pgBackRest: applying the history to PostgreSQL");
    let pg_peer = pg::PgPeer::start(&mkdir(&work.join("pg"))?)?;
    let (points, apply_seconds) = apply_to_postgres(&repo, &pg_peer, &r, args.pg_backup_every)
        .await
        .map_err(|e| format!("applying the history to PostgreSQL: {e}"))?;
    pg_peer.flush_archive()?;
    conditions.push(format!(
        "PostgreSQL {} with pgBackRest {}: one transaction per epoch (synchronous_commit=off), \
         archive_mode=on, a full backup before the history and a differential one every {} \
         epochs ({} backups); restores pick the newest backup before the target",
        command_version(&["/usr/lib/postgresql/15/bin/postgres", "--version"]),
        command_version(&["pgbackrest", "version"]),
        args.pg_backup_every,
        pg_peer.backups().len()
    ));
    let mut pgbackrest = Vec::new();
    for (s, (target_us, expected)) in r.samples.iter().zip(&points) {
        let restored =
            pg_peer.restore_to_time(&pg::format_target(*target_us), "SELECT count(*) FROM ssts")?;
        if restored.value != *expected {
            return Err(format!(
                "pgBackRest restored {} SSTs at epoch {} where the history holds {expected}",
                restored.value, s.target_epoch
            ));
        }
        eprintln!(
            "pgBackRest: epoch at {:.3} of the history in {:.0} ms (metapitr {:.1} ms)",
            s.position,
            restored.total.as_secs_f64() * 1000.0,
            s.store_ms
        );
        pgbackrest.push(PeerSample {
            target_epoch: s.target_epoch,
            position: s.position,
            ms: restored.total.as_secs_f64() * 1000.0,
            restore_ms: restored.restore_cmd.as_secs_f64() * 1000.0,
            answered: restored.value,
            expected: *expected,
        });
    }
    let pgbackrest_repo_bytes = pg_peer.repo_bytes();
    pg_peer.stop();

    // The newest state, restored by metapitr, is what etcd and JSONL hold.
    let (_, newest) =
        metapitr::restore::materialize(&repo, None, metapitr::restore::Target::Latest)
            .await
            .map_err(|e| e.to_string())?;
    let newest_store_ms = r.samples.last().map_or(0.0, |s| s.store_ms);

    eprintln!("etcd: snapshot save and restore of the newest state");
    let etcd_peer = etcd::EtcdPeer::start(&mkdir(&work.join("etcd"))?)?;
    let target =
        parse_url(&format!("etcd://{}/meta/", etcd_peer.endpoint())).map_err(|e| e.to_string())?;
    target
        .write(&newest, false)
        .await
        .map_err(|e| e.to_string())?;
    let snap = work.join("etcd.snapshot.db");
    let (etcd_snapshot_bytes, _) = etcd_peer.snapshot_save(&snap)?;
    // The etcd store writes every key under /PREFIX/.
    let etcd_restored = etcd_peer.restore_snapshot(&snap, "/meta/")?;
    let lines = metapitr::jsonl::lines(&newest).len() as u64;
    if etcd_restored.keys < lines {
        return Err(format!(
            "the restored etcd holds {} keys under /meta/ where the state has {lines} export lines",
            etcd_restored.keys
        ));
    }
    conditions.push(format!(
        "etcd {}: the newest state as one key per export line ({lines} keys), \
         `etcdctl snapshot restore`, then a member started on it until a count answers",
        command_version(&["etcd", "--version"])
    ));
    etcd_peer.stop();

    eprintln!("JSONL: import of the newest state");
    let export = work.join("newest.jsonl");
    {
        let f = std::fs::File::create(&export).map_err(|e| e.to_string())?;
        let mut w = std::io::BufWriter::new(f);
        metapitr::jsonl::write(&newest, &mut w).map_err(|e| e.to_string())?;
    }
    let t = Instant::now();
    let f = std::fs::File::open(&export).map_err(|e| e.to_string())?;
    let imported =
        metapitr::jsonl::read(std::io::BufReader::new(f), false).map_err(|e| e.to_string())?;
    DirStore::new(work.join("imported"))
        .write(&imported, false)
        .await
        .map_err(|e| e.to_string())?;
    let jsonl_import_ms = t.elapsed().as_secs_f64() * 1000.0;
    conditions.push(format!(
        "JSONL: the newest state's export ({} bytes) parsed and written into a fresh dir: \
         store, as metapitr's restore writes it",
        std::fs::metadata(&export).map_or(0, |m| m.len())
    ));

    let mut ms: Vec<f64> = pgbackrest.iter().map(|s| s.ms).collect();
    let pgbackrest_ms_p50 = bench::quantile(&mut ms, 0.5).unwrap_or(0.0);
    let pgbackrest_ms_p99 = bench::quantile(&mut ms, 0.99).unwrap_or(0.0);
    let etcd_restore_ms = etcd_restored.total.as_secs_f64() * 1000.0;
    r.peers = Some(Peers {
        conditions,
        pgbackrest_ratio_p50: pgbackrest_ms_p50 / r.store_ms_p50,
        pgbackrest_ratio_p99: pgbackrest_ms_p99 / r.store_ms_p99,
        pgbackrest,
        pgbackrest_ms_p50,
        pgbackrest_ms_p99,
        pgbackrest_repo_bytes,
        pg_apply_seconds: apply_seconds,
        etcd_snapshot_bytes,
        etcd_restore_ms,
        jsonl_import_ms,
        metapitr_newest_store_ms: newest_store_ms,
        etcd_ratio: etcd_restore_ms / newest_store_ms,
        jsonl_ratio: jsonl_import_ms / newest_store_ms,
    });
    let (json, html) = bench::write_report(&r, &args.out).map_err(|e| e.to_string())?;
    if let Some(p) = &r.peers {
        println!(
            "metapitr restore into a store p50 {:.1} ms, p99 {:.1} ms; pgBackRest PITR p50 {:.0} ms \
             ({:.1}x), p99 {:.0} ms ({:.1}x); etcd snapshot restore {:.0} ms ({:.1}x); JSONL \
             import {:.0} ms ({:.1}x); archive {:.3} of the history as JSON\nwrote {} and {}",
            r.store_ms_p50,
            r.store_ms_p99,
            p.pgbackrest_ms_p50,
            p.pgbackrest_ratio_p50,
            p.pgbackrest_ms_p99,
            p.pgbackrest_ratio_p99,
            p.etcd_restore_ms,
            p.etcd_ratio,
            p.jsonl_import_ms,
            p.jsonl_ratio,
            r.archive_to_json_ratio,
            json.display(),
            html.display()
        );
    }
    let done = if args.test_mode { &args.out } else { &work };
    std::fs::remove_dir_all(done).map_err(|e| format!("{}: {e}", done.display()))?;
    Ok(())
}

/// Applies the archived history to PostgreSQL, one transaction per epoch, taking a
/// backup every `backup_every` epochs. Returns, for each of `r`'s samples, the server's
/// clock between the last commit at or before the sample's target and the next one, and
/// the SST count the history holds there; and the seconds the apply took.
async fn apply_to_postgres(
    repo: &Repo,
    peer: &pg::PgPeer,
    r: &RecoveryResult,
    backup_every: u64,
) -> Result<(Vec<(i64, i64)>, f64), String> {
    let m = repo.manifest().await.map_err(|e| e.to_string())?;
    let tl = m.newest_timeline();
    let url = peer.url();
    let mut state = State::new(tl);
    postgres::write(&postgres::PgTarget::new(url.clone()), &state, false)
        .await
        .map_err(|e| e.to_string())?;
    peer.backup(pg::BackupKind::Full)?;
    let mut applier = postgres::BatchApplier::connect(&url)
        .await
        .map_err(|e| e.to_string())?;
    // Targets in epoch order, each with its index in `r.samples`.
    let mut targets: Vec<(u64, usize)> = r
        .samples
        .iter()
        .enumerate()
        .map(|(i, s)| (s.target_epoch, i))
        .collect();
    targets.sort_unstable();
    let mut next_target = 0;
    let mut points = vec![(0i64, 0i64); r.samples.len()];
    let segments = metapitr::archive::segment_entries(repo, &m, tl, 0, u64::MAX)
        .await
        .map_err(|e| e.to_string())?;
    let mut fetched = futures::stream::iter(segments.into_iter().map(|s| {
        let repo = repo.clone();
        async move { metapitr::archive::fetch_segment(&repo, &s).await }
    }))
    .buffered(8);
    let t = Instant::now();
    let mut batch: Vec<Change> = Vec::new();
    let mut batch_epoch = 0u64;
    let mut epochs = 0u64;
    // Applies the batch gathered so far to the state and turns it into row operations.
    let commit = |batch: &mut Vec<Change>,
                  epoch: u64,
                  state: &mut State|
     -> Result<Vec<sql::RowOp>, String> {
        state
            .apply_batch(epoch, batch)
            .map_err(|(i, e)| format!("change {i} at epoch {epoch}: {e}"))?;
        let ops = sql::batch_ops(state, batch, &url).map_err(|e| e.to_string())?;
        batch.clear();
        Ok(ops)
    };
    while let Some(records) = fetched.next().await {
        for rec in records.map_err(|e| e.to_string())? {
            if rec.epoch != batch_epoch && !batch.is_empty() {
                let ops = commit(&mut batch, batch_epoch, &mut state)?;
                applier.apply(&ops).await.map_err(|e| e.to_string())?;
                epochs += 1;
                record_targets(
                    peer,
                    &state,
                    &targets,
                    &mut next_target,
                    rec.epoch,
                    &mut points,
                )?;
                if epochs.is_multiple_of(backup_every) {
                    peer.backup(pg::BackupKind::Diff)?;
                }
            }
            batch_epoch = rec.epoch;
            batch.push(rec.change);
        }
    }
    if !batch.is_empty() {
        let ops = commit(&mut batch, batch_epoch, &mut state)?;
        applier.apply(&ops).await.map_err(|e| e.to_string())?;
        record_targets(
            peer,
            &state,
            &targets,
            &mut next_target,
            u64::MAX,
            &mut points,
        )?;
    }
    if next_target < targets.len() {
        return Err(format!(
            "the archive ends before target epoch {}",
            targets[next_target].0
        ));
    }
    Ok((points, t.elapsed().as_secs_f64()))
}

/// After a commit: every target before `next_epoch` (the epoch of the next commit) is
/// reached; record the server's clock now and the SST count the state holds.
fn record_targets(
    peer: &pg::PgPeer,
    state: &State,
    targets: &[(u64, usize)],
    next_target: &mut usize,
    next_epoch: u64,
    points: &mut [(i64, i64)],
) -> Result<(), String> {
    while *next_target < targets.len() && targets[*next_target].0 < next_epoch {
        let (_, i) = targets[*next_target];
        points[i] = (peer.clock_us()?, state.hummock.sst_count() as i64);
        *next_target += 1;
    }
    Ok(())
}

fn mkdir(p: &std::path::Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(p.to_path_buf())
}

fn command_version(cmd: &[&str]) -> String {
    std::process::Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(|l| l.trim().to_string()))
        .unwrap_or_else(|| "(version unknown)".into())
}
