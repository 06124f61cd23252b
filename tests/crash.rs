//! The crash loop: the simulated meta service runs with continuous archiving in a child
//! process and is killed with SIGKILL at random moments, then `archive --once` recovers
//! the WAL directory and ships it, and the service starts again from it.
//!
//! After every kill, every commit acknowledged before it is archived; at the end the
//! archive has neither gap nor overlap and restores at random epochs equal the truth.
//! `METAPITR_CRASH_ROUNDS` sets the number of kills (default 50), `METAPITR_CRASH_SEED`
//! the seed of the kill times.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::bin::ok;
use common::last_acked;
use metapitr::repo::Repo;
use metapitr::restore::{self, Target};
use rand::{Rng, SeedableRng};

fn env_u64(k: &str, default: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn killed_at_random_moments_nothing_acknowledged_is_lost() {
    let rounds = env_u64("METAPITR_CRASH_ROUNDS", 50);
    let seed = env_u64("METAPITR_CRASH_SEED", 20261121);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let d = tempfile::tempdir().unwrap();
    let repo_url = format!("file://{}", d.path().join("repo").display());
    let wal = d.path().join("wal");
    let truth = d.path().join("truth");
    let acks = d.path().join("acks");
    let rt = common::rt();
    let repo = Repo::open(&repo_url, metapitr::clock::system()).unwrap();
    let mut killed_with_progress = 0;
    for round in 0..rounds {
        let mut child = Command::new(env!("CARGO_BIN_EXE_metapitr"))
            .args([
                "simulate",
                "--repo",
                &repo_url,
                "--wal-dir",
                wal.to_str().unwrap(),
                "--epochs",
                "1000000",
                "--seed",
                &(seed + round).to_string(),
                "--snapshot-every",
                "37",
                "--truth-dir",
                truth.to_str().unwrap(),
                "--truth-every",
                "5",
                "--ack-log",
                acks.to_str().unwrap(),
                "--no-sync",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let before = last_acked(&acks);
        std::thread::sleep(Duration::from_millis(rng.random_range(40..400)));
        let still_running = child.try_wait().unwrap().is_none();
        child.kill().unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            still_running,
            "round {round}: the simulator exited by itself: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let acked = last_acked(&acks);
        if acked > before {
            killed_with_progress += 1;
        }
        // Recover the directory the kill left and ship everything in it.
        ok(&[
            "archive",
            "--once",
            "--wal-dir",
            wal.to_str().unwrap(),
            "--repo",
            &repo_url,
        ]);
        let m = rt.block_on(repo.manifest()).unwrap();
        let (_, archived_epoch) = m.timeline(m.newest_timeline()).unwrap().last();
        assert!(
            archived_epoch >= acked,
            "round {round} (seed {seed}): acknowledged epoch {acked} is not archived (archive ends at {archived_epoch})"
        );
    }
    assert!(
        killed_with_progress * 2 >= rounds,
        "only {killed_with_progress} of {rounds} rounds made progress before the kill"
    );

    rt.block_on(async {
        let m = repo.manifest().await.unwrap();
        assert_eq!(m.timelines.len(), 1, "a crash never starts a timeline");
        let segs = common::archive_chain(&repo, &m, 1).await;
        assert_eq!(segs.first().map(|s| s.first_lsn), Some(1));
        let files = common::truth_files(&truth);
        assert!(files.len() > 10, "{} truth files", files.len());
        for _ in 0..12 {
            let (e, p) = &files[rng.random_range(0..files.len())];
            common::assert_restores_truth(&repo, *e, p, &format!("seed {seed}")).await;
        }
        // The acknowledged end itself restores.
        let acked = last_acked(&acks);
        restore::materialize(&repo, None, Target::Epoch(acked))
            .await
            .unwrap();
    });
}
