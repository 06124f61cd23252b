//! Pin-set benchmarks: gc-check of 1,000,000 candidate ids against a 1,000,000-object pin
//! set, the cost of adding one delta's objects, and the bytes a pinned id costs.
//!
//! `cargo bench --bench pin`. The memory figures are printed once before the timings.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use metapitr::model::pb::{group_delta::Delta, GroupDelta, NewL0SubLevel};
use metapitr::model::{change::Kind, Change, HummockVersionDelta, SstableInfo};
use metapitr::pin::{self, PinSet};
use roaring::RoaringTreemap;

const N: u64 = 1_000_000;

/// A pin set shaped like a real one: object ids allocated in order, with the ids of objects
/// that died before the window removed (every third id here).
fn pin_set() -> PinSet {
    let mut p = PinSet {
        timeline: 1,
        to_epoch: u64::MAX,
        ..Default::default()
    };
    p.window = (0..N * 3 / 2)
        .filter(|i| i % 3 != 0)
        .map(|i| i + 1_000_000_000)
        .collect();
    p
}

fn candidates() -> RoaringTreemap {
    // Half pinned ids, half ids that died (not pinned).
    (0..N * 2)
        .step_by(2)
        .map(|i| i / 2 * 3 + (i % 4) / 2 + 1_000_000_000)
        .collect()
}

fn report_memory(p: &PinSet) {
    let n = p.count();
    let serialized = p.window.serialized_size() + p.keep.serialized_size();
    println!(
        "pin set: {n} pinned ids, serialized {serialized} bytes = {:.3} bytes per pinned id",
        serialized as f64 / n as f64
    );
}

fn gc_check(c: &mut Criterion) {
    let p = pin_set();
    report_memory(&p);
    let cand = candidates();
    let mut g = c.benchmark_group("gc_check");
    g.throughput(Throughput::Elements(cand.len()));
    g.bench_function("1M_candidates_vs_1M_pinned", |b| {
        b.iter(|| match pin::gc_check(std::slice::from_ref(&p), 1, &cand) {
            pin::GcAnswer::Safe(v) => v.len(),
            _ => unreachable!(),
        })
    });
    // Including building the candidate bitmap from unsorted ids, as the CLI does.
    let ids: Vec<u64> = cand.iter().collect();
    g.bench_function("1M_candidates_from_ids", |b| {
        b.iter_batched(
            || ids.clone(),
            |mut ids| {
                ids.sort_unstable();
                let set = RoaringTreemap::from_sorted_iter(ids).unwrap();
                pin::gc_check(std::slice::from_ref(&p), 1, &set)
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    let bytes = p.encode().unwrap();
    let mut g = c.benchmark_group("pin_persist");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("encode_1M", |b| b.iter(|| p.encode().unwrap()));
    g.bench_function("decode_1M", |b| {
        b.iter(|| PinSet::decode(&bytes, "bench").unwrap())
    });
    g.finish();
}

fn delta(ssts: u64, base: u64) -> Change {
    let ssts = (0..ssts)
        .map(|i| SstableInfo {
            object_id: base + i,
            sst_id: base + i,
            ..Default::default()
        })
        .collect();
    Change {
        kind: Some(Kind::HummockDelta(HummockVersionDelta {
            id: 2,
            prev_id: 1,
            group_deltas: vec![GroupDelta {
                group_id: 2,
                delta: Some(Delta::NewL0SubLevel(NewL0SubLevel {
                    sub_level_id: 1,
                    ssts,
                })),
            }],
            ..Default::default()
        })),
    }
}

/// Adding a delta's objects costs time in proportion to the SSTs in the delta, whatever
/// the size of the pin set.
fn update(c: &mut Criterion) {
    let mut g = c.benchmark_group("pin_update");
    for (size, k) in [
        (1_000u64, 4u64),
        (1_000_000, 4),
        (1_000_000, 64),
        (1_000_000, 1024),
    ] {
        let p = PinSet {
            window: (0..size).collect(),
            ..Default::default()
        };
        let d = delta(k, size + 10);
        g.throughput(Throughput::Elements(k));
        g.bench_with_input(BenchmarkId::new(format!("pinned_{size}"), k), &k, |b, _| {
            b.iter_batched(
                || p.clone(),
                |mut p| p.extend_with::<metapitr::model::State>(&d),
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, gc_check, update);
criterion_main!(benches);
