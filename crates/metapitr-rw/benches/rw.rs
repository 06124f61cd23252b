//! Decode and apply rates on RisingWave's own bytes (the golden vectors in testdata/rw):
//! `cargo bench -p metapitr-rw --bench rw`.

use std::path::Path;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn vector(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/rw")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("rw");
    for name in [
        "version_10.bin",
        "checkpoint_zstd.bin",
        "snapshot_7.snapshot",
    ] {
        let data = vector(name);
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function(format!("inspect/{name}"), |b| {
            b.iter(|| metapitr_rw::inspect_named(name, &data).unwrap())
        });
    }
    let base = Bytes::from(vector("version_10.bin"));
    let version = metapitr_rw::Version::from_bytes("version_10.bin", &base).unwrap();
    let deltas: Vec<metapitr_rw::Delta> = (11..=18)
        .map(|i| {
            let name = format!("delta_{i}.bin");
            match metapitr_rw::inspect_named(&name, &vector(&name)).unwrap() {
                metapitr_rw::Inspected::Delta(d) => *d,
                other => panic!("{name} is a {}", other.kind()),
            }
        })
        .collect();
    g.throughput(Throughput::Elements(deltas.len() as u64));
    g.bench_function("apply/8_deltas", |b| {
        b.iter(|| metapitr_rw::apply(&version, deltas.iter()).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
