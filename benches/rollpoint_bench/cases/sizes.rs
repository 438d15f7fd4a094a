//! Cases 2 to 4, per data size (10 MiB, 1 GiB, the largest that fits, and 200,000
//! small files), each on a filesystem of its own holding real written data:
//! snapshot latency through the daemon, the raw tool (`btrfs subvolume
//! snapshot -r`, after `sync`) and a plain copy (`cp -a --reflink=never`,
//! then syncfs) of the same data, and revert latency (the daemon's part and
//! end to end, with a tiny container stopped and started around the swap).

use std::path::Path;
use std::time::Instant;

use rollpoint::backend::btrfs::BtrfsBackend;
use rollpoint::backend::Backend;
use rollpoint::testkit::loop_btrfs::{btrfs_command, LoopBtrfs};

use super::{Bench, REVERT, SIDE_BY_SIDE, SNAPSHOT};
use crate::report::{Goal, Target, Unit};
use crate::setup::{
    self, check_interrupted, create_snapshot, free_bytes, progress, run_program, write_data, write_small_files,
    Container, Fallible, GIB, MIB,
};
use crate::stats::median;
use crate::stats::{ms, proto_ms, StepTimes};

const SNAPSHOT_GOAL_MS: f64 = 100.0;
const REVERT_GOAL_MS: f64 = 250.0;
const REVERT_TARGET_MS: f64 = 30_000.0;

#[derive(Debug, Clone, Copy)]
enum Contents {
    Bytes(u64),
    SmallFiles(u64),
}

struct SizeCase {
    key: String,
    title: String,
    contents: Contents,
    copies: usize,
}

pub async fn run(bench: &mut Bench) -> Fallible<()> {
    let quick = bench.options.quick;
    let wanted_gib = bench.options.largest_gib.unwrap_or(if quick { 2 } else { 10 });
    // The volume, a full copy of it, and room for btrfs metadata.
    let free_gib = free_bytes(&std::env::temp_dir())? / GIB;
    let largest_gib = wanted_gib.min(free_gib.saturating_sub(4) * 10 / 23).max(1);
    if largest_gib < wanted_gib {
        bench.report.note(format!(
            "the largest data case was cut from {wanted_gib} GiB to {largest_gib} GiB: {free_gib} GiB free under {}",
            std::env::temp_dir().display()
        ));
    }
    let files = bench.options.pick(20_000, 200_000);
    let cases = [
        SizeCase { key: "10m".into(), title: "10 MiB".into(), contents: Contents::Bytes(10 * MIB), copies: 5 },
        SizeCase {
            key: "1g".into(),
            title: "1 GiB".into(),
            contents: Contents::Bytes(GIB),
            copies: bench.options.pick(2, 3),
        },
        SizeCase {
            key: "largest".into(),
            title: format!("{largest_gib} GiB"),
            contents: Contents::Bytes(largest_gib * GIB),
            copies: bench.options.pick(1, 2),
        },
        SizeCase {
            key: "files".into(),
            title: format!("{files} small files"),
            contents: Contents::SmallFiles(files),
            copies: bench.options.pick(1, 2),
        },
    ];
    for case in &cases {
        check_interrupted()?;
        one_size(bench, case).await?;
    }

    // Flat in data size: the largest within 2x of the smallest.
    if let (Some(small), Some(large)) = (bench.report.row("snapshot.10m"), bench.report.row("snapshot.largest")) {
        let ratio = large.summary.median / small.summary.median;
        let case = format!("snapshot median {} / 10 MiB", cases[2].title);
        bench.report.add(
            SIDE_BY_SIDE,
            "ratio.flat",
            case,
            Unit::Ratio,
            vec![ratio],
            None,
            Target::goal("<= 2x (goal: flat)", Goal::Median(2.0)),
            "",
        );
    }
    Ok(())
}

async fn one_size(bench: &mut Bench, case: &SizeCase) -> Fallible<()> {
    let image = match case.contents {
        Contents::Bytes(bytes) => (2 * bytes + 3 * GIB).max(2 * GIB),
        Contents::SmallFiles(count) => (count * 8192 * 2 + 2 * GIB).max(2 * GIB),
    };
    progress(format!("sizes: {}: a {} GiB filesystem, writing the data", case.title, image / GIB));
    let fs = LoopBtrfs::create(image)?;
    let mount = fs.mount_point().to_path_buf();
    let container = Container::create(&fs, &format!("sz-{}", case.key), 1, 0)?;
    container.wait_for_processes(1)?;
    let started = Instant::now();
    match case.contents {
        Contents::Bytes(bytes) => write_data(&container.volume, "data", bytes)?,
        Contents::SmallFiles(count) => write_small_files(&container.volume, count)?,
    }
    setup::sync_fs(&container.volume)?;
    progress(format!("  written and synced in {:.1} s", started.elapsed().as_secs_f64()));
    container.register(&mut bench.clients, Some(container.tiny_lifecycle())).await?;
    let id = container.id.clone();
    let cgroup = container.cgroup.relative_name().to_string();
    let volume = container.volume.to_str().ok_or("volume path is not UTF-8")?.to_string();
    let floor_dir = mount.join(".bench-floor");
    let raw_dir = mount.join(".bench-raw");
    std::fs::create_dir_all(&raw_dir)?;

    // 2 and 4: the daemon, the floor and the raw tool, one of each in turn.
    let n = bench.options.pick(10, 50);
    progress(format!("  snapshot latency, raw tool: {n} each"));
    let (mut latency, mut floor, mut raw, mut raw_with_sync) = (vec![], vec![], vec![], vec![]);
    let (mut daemon_side, mut frozen, mut floor_flush, mut floor_window) = (vec![], vec![], vec![], vec![]);
    for round in 0..n + 2 {
        check_interrupted()?;
        // The three in turn, in a rotating order, each from a settled
        // filesystem (an untimed `sync` first): none pays for another's
        // transaction or profits from another's flush.
        let (mut took, mut snapshot, mut floor_sample, mut synced, mut raw_took) = Default::default();
        for step in 0..3 {
            match (round + step) % 3 {
                0 => {
                    run_program("/bin/sync", &[])?;
                    let sent = Instant::now();
                    snapshot = Some(create_snapshot(&mut bench.clients, &id, &format!("s-{round}")).await?);
                    took = sent.elapsed();
                }
                1 => {
                    run_program("/bin/sync", &[])?;
                    floor_sample = Some(bench.floor.snapshot(&cgroup, &container.volume, &floor_dir)?);
                }
                _ => {
                    let sync_started = Instant::now();
                    run_program("/bin/sync", &[])?;
                    synced = sync_started.elapsed();
                    let raw_started = Instant::now();
                    let location = raw_dir.join(format!("r-{round}"));
                    btrfs_command(&["subvolume", "snapshot", "-r", &volume, &location.to_string_lossy()])?;
                    raw_took = raw_started.elapsed();
                }
            }
        }
        let (Some(snapshot), Some(floor_sample)) = (snapshot, floor_sample) else {
            unreachable!("each round takes all three")
        };
        if round >= 2 {
            latency.push(ms(took));
            floor.push(ms(floor_sample.total()));
            raw.push(ms(raw_took));
            raw_with_sync.push(ms(synced + raw_took));
            daemon_side.push(proto_ms(snapshot.duration.as_ref()));
            frozen.push(proto_ms(snapshot.frozen_for.as_ref()));
            floor_flush.push(ms(floor_sample.flush));
            floor_window.push(ms(floor_sample.window));
        }
    }
    let title = &case.title;
    bench.report.add(
        SNAPSHOT,
        format!("snapshot.{}", case.key),
        format!("{title}, 1 process"),
        Unit::Ms,
        latency,
        Some(&floor),
        Target::goal("p99 <= 100 ms (goal)", Goal::P99(SNAPSHOT_GOAL_MS)),
        format!(
            "medians: daemon-side duration {:.1} ms, of which frozen_for {:.1} ms; floor: syncfs {:.1} ms + window {:.1} ms",
            median(&daemon_side),
            median(&frozen),
            median(&floor_flush),
            median(&floor_window)
        ),
    );
    bench.report.add(
        SIDE_BY_SIDE,
        format!("raw.{}", case.key),
        format!("{title}: btrfs subvolume snapshot -r"),
        Unit::Ms,
        raw,
        None,
        Target::info(),
        "the btrfs command alone (process start included), right after an untimed sync",
    );
    bench.report.add(
        SIDE_BY_SIDE,
        format!("raw-sync.{}", case.key),
        format!("{title}: sync + btrfs subvolume snapshot -r"),
        Unit::Ms,
        raw_with_sync,
        None,
        Target::info(),
        "",
    );
    delete_subvolumes(&raw_dir)?;
    setup::delete_all_snapshots(&mut bench.clients, &id).await?;

    // 4: a plain copy of the same data, written back to disk like a snapshot is.
    progress(format!("  copy: {}", case.copies));
    let mut copies = Vec::new();
    for round in 0..case.copies {
        check_interrupted()?;
        let destination = mount.join(format!("copy-{round}"));
        let started = Instant::now();
        run_program("/bin/cp", &["-a", "--reflink=never", &volume, &destination.to_string_lossy()])?;
        setup::sync_fs(&mount)?;
        copies.push(ms(started.elapsed()));
        run_program("/bin/rm", &["-rf", &destination.to_string_lossy()])?;
        setup::sync_fs(&mount)?;
    }
    bench.report.add(
        SIDE_BY_SIDE,
        format!("copy.{}", case.key),
        format!("{title}: cp -a --reflink=never + syncfs"),
        Unit::Ms,
        copies,
        None,
        Target::info(),
        "",
    );
    ratios(bench, case);

    // 3: revert, alternating between two snapshots so each call swaps.
    let n = bench.options.pick(6, 30);
    progress(format!("  revert: {n}"));
    std::fs::write(container.volume.join("marker"), "a")?;
    let a = create_snapshot(&mut bench.clients, &id, "rev-a").await?;
    std::fs::write(container.volume.join("marker"), "b")?;
    let b = create_snapshot(&mut bench.clients, &id, "rev-b").await?;
    let (mut daemon_part, mut end_to_end, mut downtime, mut floor) = (vec![], vec![], vec![], vec![]);
    let mut steps = StepTimes::default();
    for round in 0..n + 2 {
        check_interrupted()?;
        let target = if round % 2 == 0 { &a } else { &b };
        let sent = Instant::now();
        let reply = setup::restore(&mut bench.clients, &id, &target.name).await?;
        let took = sent.elapsed();
        if reply.already_restored {
            return Err(format!("restore {} of {id} did nothing: the alternation is broken", target.name).into());
        }
        let floor_took = bench.floor.revert(&target.location, Path::new(&volume), &floor_dir, false)?;
        if round >= 2 {
            daemon_part.push(proto_ms(reply.daemon_time.as_ref()));
            end_to_end.push(ms(took));
            downtime.push(proto_ms(reply.downtime.as_ref()));
            floor.push(ms(floor_took));
            steps.add(&reply.steps);
        }
    }
    let downtime_median = median(&downtime);
    bench.report.add(
        REVERT,
        format!("revert.daemon.{}", case.key),
        format!("{title}: daemon part (daemon_time)"),
        Unit::Ms,
        daemon_part,
        Some(&floor),
        Target::goal("p99 <= 250 ms (goal); 30 s (target)", Goal::P99(REVERT_GOAL_MS)),
        format!(
            "floor: writable snapshot of the target + RENAME_EXCHANGE + fsync of the folders; median steps: {}",
            steps.medians()
        ),
    );
    bench.report.add(
        REVERT,
        format!("revert.e2e.{}", case.key),
        format!("{title}: end to end, stop and start included"),
        Unit::Ms,
        end_to_end,
        None,
        Target::goal("p99 <= 30 s (revert target)", Goal::P99(REVERT_TARGET_MS)),
        format!(
            "client-side; command lifecycle: stop = echo 1 > cgroup.kill, start = sh -c 'rollpoint-workload sleep &'; downtime median {:.1} ms",
            downtime_median
        ),
    );
    drop(container);
    drop(fs);
    Ok(())
}

/// Rows 4: rollpointd vs the raw tool and vs the copy, by medians.
fn ratios(bench: &mut Bench, case: &SizeCase) {
    let median = |id: String| bench.report.row(&id).map(|r| r.summary.median);
    let (Some(ours), Some(raw), Some(copy)) = (
        median(format!("snapshot.{}", case.key)),
        median(format!("raw.{}", case.key)),
        median(format!("copy.{}", case.key)),
    ) else {
        return;
    };
    bench.report.add(
        SIDE_BY_SIDE,
        format!("ratio.raw.{}", case.key),
        format!("{}: rollpointd / raw tool", case.title),
        Unit::Ratio,
        vec![ours / raw],
        None,
        Target::goal("<= 2x (goal)", Goal::Median(2.0)),
        "medians",
    );
    bench.report.add(
        SIDE_BY_SIDE,
        format!("ratio.copy.{}", case.key),
        format!("{}: rollpointd / copy", case.title),
        Unit::Ratio,
        vec![ours / copy],
        None,
        Target::info(),
        "medians",
    );
}

/// Deletes every subvolume directly in `dir` (the raw tool's snapshots).
fn delete_subvolumes(dir: &Path) -> Fallible<()> {
    let backend = BtrfsBackend::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        backend.delete_snapshot(path.to_str().ok_or("path is not UTF-8")?)?;
    }
    Ok(())
}
