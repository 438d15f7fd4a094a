//! Case 1, the freeze window: how long the container's processes were stopped,
//! as the daemon reports it in `Snapshot.frozen_for`, with 1, 100 and 1,000
//! sleeping processes, with 100 processes of which 10 write continuously,
//! and with those writers plus 500 MiB freshly written and not yet synced.

use std::time::Instant;

use rollpoint::testkit::loop_btrfs::{btrfs_command, LoopBtrfs};

use super::{Bench, FREEZE, SNAPSHOT};
use crate::report::{Goal, Target, Unit};
use crate::setup::{
    self, check_interrupted, create_snapshot, delete_all_snapshots, delete_snapshot, progress, write_data, Container,
    Fallible, GIB, MIB,
};
use crate::stats::{ms, proto_ms};

/// The dirty case: "500 MB of freshly written, not yet synced data".
const DIRTY_BYTES: u64 = 500 * MIB;
/// Data at rest in every freeze container's volume.
const AT_REST_BYTES: u64 = 10 * MIB;
const FREEZE_GOAL_MS: f64 = 50.0;

/// Samples of one case: the daemon's and the floor's.
#[derive(Default)]
struct Samples {
    frozen_for: Vec<f64>,
    latency: Vec<f64>,
    floor_window: Vec<f64>,
    floor_total: Vec<f64>,
}

pub async fn run(bench: &mut Bench) -> Fallible<()> {
    let n = bench.options.pick(20, 200);
    let n_dirty = bench.options.pick(5, 20);
    let fs = LoopBtrfs::create(8 * GIB)?;
    let goal = || Target::goal("p99 <= 50 ms (goal)", Goal::P99(FREEZE_GOAL_MS));

    for (key, title, sleepers) in
        [("p1", "1 process", 1), ("p100", "100 processes", 100), ("p1000", "1,000 processes", 1000)]
    {
        check_interrupted()?;
        progress(format!("freeze window: {title}"));
        let container = Container::create(&fs, &format!("fz-{key}"), sleepers, 0)?;
        container.wait_for_processes(sleepers)?;
        write_data(&container.volume, "data", AT_REST_BYTES)?;
        setup::sync_fs(&container.volume)?;
        container.register(&mut bench.clients, None).await?;
        let samples = measure(bench, &container, &fs, n, None).await?;
        let target = if sleepers == 1000 { Target::text("info (the 50 ms goal is for 100)") } else { goal() };
        bench.report.add(
            FREEZE,
            format!("freeze.{key}"),
            format!("{title}, sleeping"),
            Unit::Ms,
            samples.frozen_for,
            Some(&samples.floor_window),
            target,
            "",
        );
        delete_all_snapshots(&mut bench.clients, &container.id).await?;
    }

    check_interrupted()?;
    progress("freeze window: 100 processes, 10 of them writing");
    let container = Container::create(&fs, "fz-w10", 90, 10)?;
    container.wait_for_processes(100)?;
    write_data(&container.volume, "data", AT_REST_BYTES)?;
    container.register(&mut bench.clients, None).await?;
    let samples = measure(bench, &container, &fs, n, None).await?;
    let writers_note =
        "10 rollpoint-workload writers append 64-byte records (one write(2) each, 100 us apart), 90 sleep";
    bench.report.add(
        FREEZE,
        "freeze.p100-w10",
        "100 processes, 10 writing",
        Unit::Ms,
        samples.frozen_for,
        Some(&samples.floor_window),
        goal(),
        writers_note,
    );
    bench.report.add(
        SNAPSHOT,
        "snapshot.p100-w10",
        "100 processes, 10 writing (10 MiB at rest)",
        Unit::Ms,
        samples.latency,
        Some(&samples.floor_total),
        Target::goal("p99 <= 100 ms (goal)", Goal::P99(100.0)),
        writers_note,
    );
    delete_all_snapshots(&mut bench.clients, &container.id).await?;

    check_interrupted()?;
    progress("freeze window: 100 processes, 10 writing, 500 MiB dirty");
    let samples = measure(bench, &container, &fs, n_dirty, Some(DIRTY_BYTES)).await?;
    let dirty_note = "before each snapshot (and each floor) 500 MiB are written into the volume and not synced";
    bench.report.add(
        FREEZE,
        "freeze.p100-w10-dirty500",
        "100 processes, 10 writing, 500 MiB dirty",
        Unit::Ms,
        samples.frozen_for,
        Some(&samples.floor_window),
        goal(),
        dirty_note,
    );
    bench.report.add(
        SNAPSHOT,
        "snapshot.p100-w10-dirty500",
        "100 processes, 10 writing, 500 MiB dirty",
        Unit::Ms,
        samples.latency,
        Some(&samples.floor_total),
        Target::text("info: writing back 500 MiB first"),
        dirty_note,
    );
    delete_all_snapshots(&mut bench.clients, &container.id).await?;
    drop(container);
    Ok(())
}

/// Takes `n` snapshots through the daemon and `n` by the floor, one of each
/// in turn (alternating which goes first), after two untimed ones of each. With `dirty`, that many bytes
/// are written (not synced) into the volume before every one of them, and
/// each snapshot is deleted right away so that the filesystem does not fill.
async fn measure(
    bench: &mut Bench,
    container: &Container,
    fs: &LoopBtrfs,
    n: usize,
    dirty: Option<u64>,
) -> Fallible<Samples> {
    let scratch = fs.mount_point().join(".bench-floor");
    let cgroup = container.cgroup.relative_name().to_string();
    let mut samples = Samples::default();
    let dirty_round = |round: usize| -> Fallible<()> {
        if let Some(bytes) = dirty {
            // The previous round's file goes (its extents stay in no snapshot).
            for entry in std::fs::read_dir(&container.volume)? {
                let path = entry?.path();
                if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("dirty-")) {
                    std::fs::remove_file(&path)?;
                }
            }
            write_data(&container.volume, &format!("dirty-{round}"), bytes)?;
        }
        Ok(())
    };
    for round in 0..n + 2 {
        check_interrupted()?;
        let timed = round >= 2;
        // The daemon and the floor in turn, in alternating order.
        let (mut latency, mut snapshot, mut floor) = Default::default();
        for step in 0..2 {
            dirty_round(2 * round + step)?;
            if (round + step) % 2 == 0 {
                let name = format!("b-{round}");
                let sent = Instant::now();
                snapshot = Some(create_snapshot(&mut bench.clients, &container.id, &name).await?);
                latency = sent.elapsed();
                if dirty.is_some() {
                    delete_snapshot(&mut bench.clients, &container.id, &name).await?;
                }
            } else {
                floor = Some(bench.floor.snapshot(&cgroup, &container.volume, &scratch)?);
            }
        }
        let (Some(snapshot), Some(floor)) = (snapshot, floor) else { unreachable!("each round takes both") };
        if dirty.is_some() {
            // Let btrfs reclaim the deleted snapshots before the next round.
            btrfs_command(&["subvolume", "sync", &fs.mount_point().to_string_lossy()])?;
        }
        if timed {
            samples.frozen_for.push(proto_ms(snapshot.frozen_for.as_ref()));
            samples.latency.push(ms(latency));
            samples.floor_window.push(ms(floor.window));
            samples.floor_total.push(ms(floor.total()));
        }
        if timed && (round - 1) % (n / 5).max(1) == 0 {
            progress(format!("  {}/{n}", round - 1));
        }
    }
    Ok(samples)
}
