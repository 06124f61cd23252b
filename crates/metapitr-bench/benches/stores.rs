//! Restoring into each meta store and reading it back: a whole state written (force, so
//! every iteration replaces the last) and read, against real servers the harness starts
//! (PostgreSQL and etcd on loopback), SQLite and JSONL on local disk.
//!
//! `cargo bench --bench stores`. The state is the simulator's after 3000 epochs at the
//! default rates; its size in export lines is printed, so that rates can be given per
//! line.

use metapitr_testkit::servers;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use metapitr::sim::{self, RunOptions, SimConfig, Simulator};
use metapitr::store::{parse_url, JsonlStore, MetaStore, PgTarget, SqliteStore};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn stores(c: &mut Criterion) {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let mut sim = Simulator::new(SimConfig {
        seed: 1,
        ..Default::default()
    });
    let repo = metapitr::repo::Repo::open("memory://", sim.clock()).unwrap();
    let mut opts = RunOptions {
        epochs: 3000,
        ..Default::default()
    };
    opts.recorder.wal.sync = false;
    rt.block_on(sim::run_with_repo(
        repo,
        &dir.path().join("wal"),
        opts,
        &mut sim,
    ))
    .unwrap();
    let state = sim.state().clone();
    let lines = metapitr::jsonl::lines(&state).len() as u64;
    eprintln!(
        "state: {lines} export lines, {} catalog objects, {} SSTs",
        state.catalog.len(),
        state.hummock.sst_count()
    );

    let targets: Vec<(&str, Box<dyn MetaStore>)> = vec![
        (
            "jsonl",
            Box::new(JsonlStore::File(dir.path().join("bench.jsonl"))),
        ),
        (
            "sqlite",
            Box::new(SqliteStore::new(dir.path().join("bench.db"))),
        ),
        (
            "postgres",
            Box::new(PgTarget::new(servers::postgres().create_db())),
        ),
        ("etcd", parse_url(&servers::etcd().url("bench")).unwrap()),
    ];
    let mut g = c.benchmark_group("store");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(lines));
    for (name, t) in &targets {
        g.bench_with_input(BenchmarkId::new("write", name), t, |b, t| {
            b.iter(|| rt.block_on(t.write(&state, true)).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("read", name), t, |b, t| {
            b.iter(|| rt.block_on(t.read()).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, stores);
criterion_main!(benches);
