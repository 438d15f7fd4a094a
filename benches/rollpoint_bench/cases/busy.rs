//! Case 10, what landed, under pressure:
//! - a restore asked while 500 MiB written into the container's volume are
//!   not yet on disk and 10 writers run: the downtime's daemon part (from
//!   the stop's return to the start's call: the `swap` step), beside the
//!   raw floor (a writable snapshot, the exchange and a syncfs) with the
//!   same dirty data, in the same run;
//! - one container (10 writers) snapshotted while 10 neighbours on the same
//!   filesystem each write 20 MiB/s: request -> landed and the freeze
//!   window, beside `btrfs subvolume snapshot -r` of the same volume and a
//!   `syncfs` of the filesystem (what a write-back of the whole filesystem
//!   costs) under the same load, each after the neighbours wrote for a
//!   second.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rollpoint::api::proto;
use rollpoint::testkit::loop_btrfs::{btrfs_command, LoopBtrfs};

use super::{Bench, BUSY};
use crate::report::{Goal, Target, Unit};
use crate::setup::{
    self, check_interrupted, create_snapshot, delete_snapshot, progress, run_program, write_data, Container, Fallible,
    GIB, MIB, WORKLOAD, WRITER_PAUSE_US,
};
use crate::stats::{median, ms, proto_ms, StepTimes};

/// "500 MB written and not yet flushed when the restore is asked for".
const DIRTY_BYTES: u64 = 500 * MIB;
const WRITERS: u32 = 10;
const NEIGHBOURS: usize = 10;
const NEIGHBOUR_MIB_PER_SECOND: u64 = 20;
/// How long the neighbours write before the first timed snapshot.
const NEIGHBOUR_WARM_UP: Duration = Duration::from_secs(5);
/// How long the neighbours write before each timed operation: snapshots
/// come minutes apart, not back to back, and in between the neighbours'
/// dirty data piles up (200 MiB in this second).
const NEIGHBOUR_PAUSE: Duration = Duration::from_secs(1);

pub async fn run(bench: &mut Bench) -> Fallible<()> {
    let fs = LoopBtrfs::create(8 * GIB)?;
    restore_with_dirty_data(bench, &fs).await?;
    check_interrupted()?;
    snapshot_beside_busy_neighbours(bench, &fs).await
}

/// The container's writers as its start command brings them back: `WRITERS`
/// record writers in the background; the shell returns at once.
fn start_writers_line(container: &Container) -> String {
    format!(
        "for i in $(seq 1 {WRITERS}); do {WORKLOAD} write --data {}/writer-$i.dat --progress {}/writer-$i.progress --id $i --pause-us {WRITER_PAUSE_US} </dev/null >/dev/null 2>&1 & done",
        container.volume.display(),
        container.progress_dir.path().display()
    )
}

fn kill_line(container: &Container) -> String {
    format!("echo 1 > {}/cgroup.kill", container.cgroup.path().display())
}

/// Runs a shell line inside the container's cgroup, as the daemon runs a
/// start command, and waits for the shell.
fn run_in_cgroup(container: &Container, line: &str) -> Fallible<()> {
    let status = container
        .cgroup
        .spawn(Command::new("/bin/sh").arg("-c").arg(line).stdin(Stdio::null()).stdout(Stdio::null()))?
        .wait()?;
    if !status.success() {
        return Err(format!("{line}: {status}").into());
    }
    Ok(())
}

/// Waits until the cgroup is empty (after a cgroup.kill).
fn wait_empty(container: &Container) -> Fallible<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !container.cgroup.pids()?.is_empty() {
        if Instant::now() > deadline {
            return Err(format!("{}: processes left after cgroup.kill", container.id).into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Removes what the previous round left dirty in the volume.
fn remove_dirty_files(volume: &Path) -> Fallible<()> {
    for entry in std::fs::read_dir(volume)? {
        let path = entry?.path();
        if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("dirty-")) {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

async fn restore_with_dirty_data(bench: &mut Bench, fs: &LoopBtrfs) -> Fallible<()> {
    let n = bench.options.pick(5, 20);
    progress(format!("restore with 500 MiB dirty and {WRITERS} writers: {n}"));
    let container = Container::create(fs, "busy-restore", 0, WRITERS)?;
    container.wait_for_processes(WRITERS as usize)?;
    let lifecycle = proto::Lifecycle {
        kind: Some(proto::lifecycle::Kind::Command(proto::CommandLifecycle {
            stop: vec!["/bin/sh".into(), "-c".into(), kill_line(&container)],
            start: vec!["/bin/sh".into(), "-c".into(), start_writers_line(&container)],
            timeout_seconds: 30,
        })),
    };
    container.register(&mut bench.clients, Some(lifecycle)).await?;
    std::fs::write(container.volume.join("marker"), "a")?;
    let a = create_snapshot(&mut bench.clients, &container.id, "rev-a").await?;
    std::fs::write(container.volume.join("marker"), "b")?;
    let b = create_snapshot(&mut bench.clients, &container.id, "rev-b").await?;
    let scratch = fs.mount_point().join(".bench-floor");
    std::fs::create_dir_all(&scratch)?;

    let (mut daemon_part, mut downtime, mut floor, mut total) = (vec![], vec![], vec![], vec![]);
    let mut steps = StepTimes::default();
    for round in 0..n + 1 {
        check_interrupted()?;
        let target = if round % 2 == 0 { &a } else { &b };

        // The daemon: 500 MiB dirty, writers running, then the restore.
        remove_dirty_files(&container.volume)?;
        write_data(&container.volume, &format!("dirty-{round}"), DIRTY_BYTES)?;
        let reply = setup::restore(&mut bench.clients, &container.id, &target.name).await?;
        if reply.already_restored {
            return Err("the restore did nothing: the alternation is broken".into());
        }
        let step = |name: &str| {
            reply.steps.iter().find(|s| s.name == name).map(|s| proto_ms(s.took.as_ref())).unwrap_or_default()
        };
        delete_snapshot(&mut bench.clients, &container.id, &reply.pre_restore_snapshot).await?;

        // The floor: the same dirty data, the writers killed as the stop
        // would, then snapshot + exchange + syncfs, and the writers back.
        remove_dirty_files(&container.volume)?;
        write_data(&container.volume, &format!("dirty-floor-{round}"), DIRTY_BYTES)?;
        run_program("/bin/sh", &["-c", &kill_line(&container)])?;
        wait_empty(&container)?;
        let floor_took = bench.floor.revert(&target.location, &container.volume, &scratch, true)?;
        run_in_cgroup(&container, &start_writers_line(&container))?;
        btrfs_command(&["subvolume", "sync", &fs.mount_point().to_string_lossy()])?;

        if round >= 1 {
            daemon_part.push(step("swap"));
            downtime.push(proto_ms(reply.downtime.as_ref()));
            total.push(proto_ms(reply.total.as_ref()));
            floor.push(ms(floor_took));
            steps.add(&reply.steps);
        }
    }
    let note = format!(
        "500 MiB written into the volume (not synced) and {WRITERS} writers running when each restore is asked; median steps: {}",
        steps.medians()
    );
    bench.report.add(
        BUSY,
        "busy.restore.downtime-daemon",
        "restore, 500 MiB dirty + 10 writers: downtime, daemon part (stop returned -> start called)",
        Unit::Ms,
        daemon_part,
        Some(&floor),
        Target::goal("p99 <= 100 ms (goal)", Goal::P99(100.0)),
        format!("floor: writable snapshot of the target + RENAME_EXCHANGE + syncfs, same dirty data; {note}"),
    );
    bench.report.add(
        BUSY,
        "busy.restore.downtime",
        "restore, 500 MiB dirty + 10 writers: downtime (stop + swap + start)",
        Unit::Ms,
        downtime,
        None,
        Target::info(),
        "stop = echo 1 > cgroup.kill; start = a shell that starts the 10 writers in the background",
    );
    bench.report.add(
        BUSY,
        "busy.restore.total",
        "restore, 500 MiB dirty + 10 writers: total (write-back before the stop included)",
        Unit::Ms,
        total,
        None,
        Target::info(),
        "",
    );
    setup::delete_all_snapshots(&mut bench.clients, &container.id).await?;
    Ok(())
}

async fn snapshot_beside_busy_neighbours(bench: &mut Bench, fs: &LoopBtrfs) -> Fallible<()> {
    let n = bench.options.pick(10, 50);
    progress(format!("snapshot beside {NEIGHBOURS} neighbours writing {NEIGHBOUR_MIB_PER_SECOND} MiB/s each: {n}"));
    let container = Container::create(fs, "busy-target", 90, WRITERS)?;
    container.wait_for_processes(100)?;
    write_data(&container.volume, "data", 10 * MIB)?;
    setup::sync_fs(&container.volume)?;
    container.register(&mut bench.clients, None).await?;
    let mut neighbours = Vec::with_capacity(NEIGHBOURS);
    for i in 0..NEIGHBOURS {
        let neighbour = Container::create(fs, &format!("busy-neighbour-{i}"), 0, 0)?;
        #[allow(clippy::zombie_processes)] // the cgroup's drop kills and reaps it
        let _child = neighbour.cgroup.spawn(
            Command::new(WORKLOAD)
                .arg("stream")
                .arg("--dir")
                .arg(&neighbour.volume)
                .arg("--mib-per-second")
                .arg(NEIGHBOUR_MIB_PER_SECOND.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
        )?;
        neighbours.push(neighbour);
    }
    std::thread::sleep(NEIGHBOUR_WARM_UP);
    let raw_dir = fs.mount_point().join(".bench-raw-busy");
    std::fs::create_dir_all(&raw_dir)?;
    let volume = container.volume.to_string_lossy().into_owned();

    let (mut latency, mut frozen, mut raw, mut syncfs) = (vec![], vec![], vec![], vec![]);
    for round in 0..n + 2 {
        check_interrupted()?;
        let name = format!("busy-{round}");
        tokio::time::sleep(NEIGHBOUR_PAUSE).await;
        let sent = Instant::now();
        let snapshot = create_snapshot(&mut bench.clients, &container.id, &name).await?;
        let took = sent.elapsed();
        let location = raw_dir.join(format!("raw-{round}"));
        tokio::time::sleep(NEIGHBOUR_PAUSE).await;
        let started = Instant::now();
        btrfs_command(&["subvolume", "snapshot", "-r", &volume, &location.to_string_lossy()])?;
        let raw_took = started.elapsed();
        tokio::time::sleep(NEIGHBOUR_PAUSE).await;
        let started = Instant::now();
        setup::sync_fs(fs.mount_point())?;
        let syncfs_took = started.elapsed();
        delete_snapshot(&mut bench.clients, &container.id, &name).await?;
        btrfs_command(&["subvolume", "delete", &location.to_string_lossy()])?;
        if round >= 2 {
            latency.push(ms(took));
            frozen.push(proto_ms(snapshot.frozen_for.as_ref()));
            raw.push(ms(raw_took));
            syncfs.push(ms(syncfs_took));
        }
    }
    drop(neighbours);
    let note = format!(
        "{NEIGHBOURS} other containers on the same filesystem each write {NEIGHBOUR_MIB_PER_SECOND} MiB/s (buffered, never synced); the snapshotted one has 90 sleeping processes and {WRITERS} writers"
    );
    let ratio = median(&latency) / median(&raw);
    bench.report.add(
        BUSY,
        "busy.snapshot.latency",
        "snapshot beside 10 busy neighbours: request -> landed",
        Unit::Ms,
        latency,
        None,
        Target::goal("p99 <= 100 ms (goal)", Goal::P99(100.0)),
        note.clone(),
    );
    bench.report.add(
        BUSY,
        "busy.snapshot.frozen",
        "snapshot beside 10 busy neighbours: freeze window (frozen_for)",
        Unit::Ms,
        frozen,
        None,
        Target::goal("p99 <= 50 ms (goal)", Goal::P99(50.0)),
        note,
    );
    bench.report.add(
        BUSY,
        "busy.snapshot.raw",
        "snapshot beside 10 busy neighbours: btrfs subvolume snapshot -r",
        Unit::Ms,
        raw,
        None,
        Target::info(),
        "the btrfs command alone (process start included), same volume, same load, right after each daemon snapshot",
    );
    bench.report.add(
        BUSY,
        "busy.snapshot.syncfs",
        "snapshot beside 10 busy neighbours: syncfs of the filesystem",
        Unit::Ms,
        syncfs,
        None,
        Target::info(),
        "what a write-back of the whole filesystem before the freeze would wait for (the daemon's before this section)",
    );
    bench.report.add(
        BUSY,
        "busy.snapshot.ratio",
        "snapshot beside 10 busy neighbours: rollpointd / btrfs subvolume snapshot -r",
        Unit::Ratio,
        vec![ratio],
        None,
        Target::info(),
        "medians",
    );
    Ok(())
}
