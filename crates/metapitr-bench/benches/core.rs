//! Benchmarks of the core paths: WAL append with group commit, replay (restore end to end
//! from an in-memory repo), snapshot encode and decode.
//!
//! `cargo bench --bench core`. Numbers depend on the disk (fsync) and CPU; report them with
//! the machine they came from.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use metapitr::clock;
use metapitr::model::{change::Kind, pb, Change};
use metapitr::restore::{self, Target};
use metapitr::sim::{self, RunOptions, SimConfig, Simulator};
use metapitr::wal::{Wal, WalOptions};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn param(i: u64) -> Change {
    Change {
        kind: Some(Kind::SetParam(pb::SystemParam {
            name: format!("p{}", i % 64),
            value: format!("{i:08}"),
        })),
    }
}

/// Appends 1024 records in commits of `group` records, all in flight at once, fsync per
/// group of commits.
fn wal_append(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("wal_append");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    for group in [1u64, 16, 256, 1024] {
        g.throughput(Throughput::Elements(1024));
        g.bench_with_input(BenchmarkId::from_parameter(group), &group, |b, &group| {
            let dir = tempfile::tempdir().unwrap();
            let w = Wal::open(dir.path(), 1, 1, WalOptions::default(), clock::system()).unwrap();
            let mut epoch = 1u64 << 16;
            b.iter(|| {
                rt.block_on(async {
                    let mut pending = Vec::new();
                    for start in (0..1024).step_by(group as usize) {
                        epoch += 1;
                        let batch: Vec<Change> = (start..start + group).map(param).collect();
                        pending.push(w.append(epoch, &batch).unwrap());
                    }
                    for p in pending {
                        p.await.unwrap();
                    }
                })
            });
        });
    }
    g.finish();
}

fn restore_and_snapshot(c: &mut Criterion) {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let mut sim = Simulator::new(SimConfig {
        seed: 1,
        ..Default::default()
    });
    let repo = metapitr::repo::Repo::from_store(
        std::sync::Arc::new(object_store::memory::InMemory::new()),
        object_store::path::Path::default(),
        "memory://bench",
        sim.clock(),
    );
    let mut opts = RunOptions {
        epochs: 3000,
        ..Default::default()
    };
    opts.recorder.wal.sync = false;
    let report = rt
        .block_on(sim::run_with_repo(repo.clone(), dir.path(), opts, &mut sim))
        .unwrap();
    let target = report.last_epoch;
    let mut g = c.benchmark_group("restore");
    g.sample_size(10);
    g.throughput(Throughput::Elements(report.records));
    g.bench_function("replay_3000_epochs_from_wal", |b| {
        b.iter(|| {
            rt.block_on(restore::materialize(&repo, None, Target::Epoch(target)))
                .unwrap()
        })
    });
    g.finish();

    let state = sim.state().clone();
    let bytes = metapitr::snapshot::encode(&state).unwrap();
    let mut g = c.benchmark_group("snapshot");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("encode", |b| {
        b.iter(|| metapitr::snapshot::encode(&state).unwrap())
    });
    g.bench_function("decode", |b| {
        b.iter(|| metapitr::snapshot::decode(&bytes, "bench").unwrap())
    });
    g.finish();
}

/// Sealing and opening a repo object of 1 MiB with AES-256-GCM (encrypted repos).
fn crypt(c: &mut Criterion) {
    let key = metapitr::crypt::Key::from_bytes(&[7u8; 32]);
    let plain: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 31) as u8).collect();
    let sealed = key.seal("wal/00000001/x.wal.zst", &plain).unwrap();
    let mut g = c.benchmark_group("crypt");
    g.throughput(Throughput::Bytes(plain.len() as u64));
    g.bench_function("seal_1mib", |b| {
        b.iter(|| key.seal("wal/00000001/x.wal.zst", &plain).unwrap())
    });
    g.bench_function("open_1mib", |b| {
        b.iter(|| key.open("wal/00000001/x.wal.zst", &sealed).unwrap())
    });
    g.finish();
}

criterion_group!(benches, wal_append, restore_and_snapshot, crypt);
criterion_main!(benches);
