//! Criterion benches of the daemon's in-process hot paths, in a temp folder,
//! no root needed: a snapshot record written and made durable (the sled
//! flush plus the fsyncs that back every reply), default name allocation
//! among many taken names, reading one container's records, a listing page
//! as `ListSnapshots` cuts it, and a look-up by alias.
//!
//! `cargo bench --bench store`; under `cargo test --all-targets` criterion
//! runs each bench once, quickly.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use rollpoint::backend::btrfs::BtrfsBackend;
use rollpoint::engine::{names, Engine, EngineConfig, SystemClock};
use rollpoint::freezer::CgroupFreezer;
use rollpoint::lifecycle::HostLifecycle;
use rollpoint::store::{ContainerRecord, LifecycleSpec, SnapshotOrigin, SnapshotRecord, SnapshotState, Store};

const CONTAINER: &str = "db-1";

fn record(container: &str, name: &str, seconds: i64) -> SnapshotRecord {
    let create_time = Utc.timestamp_opt(1_780_000_000 + seconds, 0).single().expect("valid time");
    SnapshotRecord {
        container: container.into(),
        name: name.into(),
        alias: None,
        create_time,
        expire_time: None,
        frozen_for: Duration::from_millis(12),
        duration: Duration::from_millis(25),
        state: SnapshotState::Ready,
        origin: SnapshotOrigin::Api,
        read_only: true,
        location: format!("/srv/.rollpoint/{container}/{name}"),
        uuid: "123e4567-e89b-12d3-a456-426614174000".into(),
        generation: 42,
        comment: String::new(),
        sizes: None,
        hold: None,
        group: None,
    }
}

/// A store in `dir` holding `count` snapshots of [`CONTAINER`] (and 1,000
/// of another container, so the prefix scan has something to skip).
fn store_with(dir: &Path, count: usize) -> Store {
    let store = Store::open(dir).expect("open the store");
    for (container, n) in [(CONTAINER, count), ("db-0", 1000)] {
        let records: Vec<SnapshotRecord> = (0..n).map(|i| record(container, &format!("m-{i:05}"), i as i64)).collect();
        for chunk in records.chunks(1000) {
            store.put_snapshots(&chunk.iter().collect::<Vec<_>>()).expect("put");
        }
    }
    store.make_durable().expect("durable");
    store
}

fn store_writes(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store_with(dir.path(), 1000);
    let counter = AtomicU64::new(0);
    let mut group = c.benchmark_group("store");
    group.bench_function("put_snapshot", |b| {
        b.iter(|| {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            store.put_snapshots(&[&record(CONTAINER, &format!("w-{n}"), n as i64)]).expect("put");
        });
    });
    group.finish();
    // A store of its own, flushed first: what every reply that says
    // something exists waits for, one record at a time.
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store_with(dir.path(), 1000);
    let mut group = c.benchmark_group("store");
    group.bench_function("put_snapshot_and_make_durable", |b| {
        b.iter(|| {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            store.put_snapshots(&[&record(CONTAINER, &format!("d-{n}"), n as i64)]).expect("put");
            store.make_durable().expect("durable");
        });
    });
    group.finish();
}

fn name_allocation(c: &mut Criterion) {
    let now = Utc.with_ymd_and_hms(2026, 5, 4, 2, 55, 0).single().expect("valid time");
    let base = names::default_name_base("snap", now);
    let mut group = c.benchmark_group("names/default_snapshot_name");
    for taken in [0usize, 100, 1000, 10_000] {
        // The day's names all taken, as after `taken` snapshots with default
        // names in one day: snap-2026-05-04, snap-2026-05-04-2, ... (and
        // 1,000 snapshots of another container).
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store_with(dir.path(), 0);
        let existing: Vec<SnapshotRecord> = (0..taken)
            .map(|i| match i {
                0 => record(CONTAINER, "snap-2026-05-04", 0),
                _ => record(CONTAINER, &format!("snap-2026-05-04-{}", i + 1), i as i64),
            })
            .collect();
        for chunk in existing.chunks(1000) {
            store.put_snapshots(&chunk.iter().collect::<Vec<_>>()).expect("put");
        }
        // The engine's test of a name (without its stat of the location).
        group.bench_with_input(BenchmarkId::from_parameter(taken), &store, |b, store| {
            // As the engine does it: the names and aliases of the day, read
            // from the store's keys, then candidates checked against them.
            b.iter(|| {
                let taken = store.snapshot_names_starting_with(CONTAINER, &base).expect("names");
                names::default_snapshot_name(now, |n| taken.contains(n))
            });
        });
    }
    group.finish();
}

fn listing(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cgroup_root = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(store_with(dir.path(), 10_000));
    store
        .put_container(&ContainerRecord {
            id: CONTAINER.into(),
            cgroup: cgroup_root.path().join(CONTAINER),
            volume: "/srv/containers/db-1".into(),
            backend: "btrfs".into(),
            snapshot_dir: format!("/srv/.rollpoint/{CONTAINER}").into(),
            lifecycle: LifecycleSpec::None,
            labels: BTreeMap::new(),
            create_time: Utc::now(),
            last_restore: None,
            hooks: Default::default(),
            retention: Default::default(),
            discovered: None,
            group: None,
        })
        .expect("put container");
    // The last snapshot by name carries an alias, for the look-up by alias.
    let mut aliased = record(CONTAINER, "m-09999", 9999);
    aliased.alias = Some("rollback-point".into());
    store.put_snapshots(&[&aliased]).expect("put");
    let engine = Engine::new(
        store.clone(),
        Arc::new(BtrfsBackend::new()),
        Arc::new(CgroupFreezer::new(Some(cgroup_root.path().to_path_buf()), None).expect("fixture freezer")),
        Arc::new(HostLifecycle),
        Arc::new(SystemClock),
        EngineConfig::default(),
    );
    let mut group = c.benchmark_group("listing_10000");
    group.bench_function("store_snapshots_of", |b| {
        b.iter(|| black_box(store.snapshots_of(CONTAINER).expect("scan").len()));
    });
    group.bench_function("engine_first_page_1000", |b| {
        b.iter(|| black_box(engine.list_snapshots(CONTAINER, 1000, "").expect("list").items.len()));
    });
    let middle = engine.list_snapshots(CONTAINER, 1000, "").expect("list").next_page_token;
    group.bench_function("engine_second_page_1000", |b| {
        b.iter(|| black_box(engine.list_snapshots(CONTAINER, 1000, &middle).expect("list").items.len()));
    });
    group.bench_function("engine_first_page_default", |b| {
        b.iter(|| black_box(engine.list_snapshots(CONTAINER, 0, "").expect("list").items.len()));
    });
    group.bench_function("engine_get_by_alias", |b| {
        b.iter(|| black_box(engine.snapshot(CONTAINER, "rollback-point").expect("get").name.len()));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = store_writes, name_allocation, listing
}
criterion_main!(benches);
