//! Section 8, what changed between two snapshots of a 200,000-file container
//! (20,000 with --quick) in which 10 files were rewritten: `DiffSnapshots` (the send
//! stream without data, replayed on names, one lstat per listed path)
//! against `diff -rq` of the two snapshots, each from a cold page cache
//! (caches dropped before every run). Goal: at least 10x faster.

use std::process::{Command, Stdio};
use std::time::Instant;

use rollpoint::api::proto;
use rollpoint::testkit::loop_btrfs::LoopBtrfs;

use super::{Bench, DIFF};
use crate::report::{Goal, Target, Unit};
use crate::setup::{check_interrupted, create_snapshot, progress, sync_fs, write_small_files, Container, Fallible};
use crate::stats::median;

const CHANGED_FILES: u64 = 10;
const SPEEDUP_TARGET: f64 = 10.0;

/// Empties the page, dentry and inode caches, so both sides read the disk.
fn drop_caches() -> Fallible<()> {
    std::fs::write("/proc/sys/vm/drop_caches", "3").map_err(|e| format!("drop caches: {e}"))?;
    Ok(())
}

pub async fn run(bench: &mut Bench) -> Fallible<()> {
    let files = bench.options.pick(20_000, 200_000);
    let rounds = bench.options.pick(1, 3);
    let fs = LoopBtrfs::create(4 << 30)?;
    let container = Container::create(&fs, "diff", 1, 0)?;
    progress(format!("diff: writing {files} small files"));
    write_small_files(&container.volume, files)?;
    sync_fs(&container.volume)?;
    container.register(&mut bench.clients, None).await?;
    let before = create_snapshot(&mut bench.clients, &container.id, "before").await?;
    for k in 0..CHANGED_FILES {
        let i = k * (files / CHANGED_FILES) + 7;
        let path = container.volume.join(format!("files/d{:04}/f{i:07}", i / 1000));
        std::fs::write(&path, format!("changed {k}\n")).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    sync_fs(&container.volume)?;
    let after = create_snapshot(&mut bench.clients, &container.id, "after").await?;

    let (mut ours, mut theirs, mut listed) = (Vec::new(), Vec::new(), 0);
    for round in 0..rounds {
        check_interrupted()?;
        progress(format!(
            "diff: round {}/{rounds}, DiffSnapshots then diff -rq, caches dropped before each",
            round + 1
        ));
        drop_caches()?;
        let started = Instant::now();
        let reply = bench
            .clients
            .snapshots
            .diff_snapshots(proto::DiffSnapshotsRequest {
                container: container.id.clone(),
                from: before.name.clone(),
                to: after.name.clone(),
            })
            .await
            .map_err(|s| format!("DiffSnapshots: {:?}: {}", s.code(), s.message()))?;
        ours.push(started.elapsed().as_secs_f64() * 1000.0);
        listed = reply.into_inner().paths.len();
        drop_caches()?;
        let started = Instant::now();
        let status =
            Command::new("diff").args(["-rq", &before.location, &after.location]).stdout(Stdio::null()).status()?;
        theirs.push(started.elapsed().as_secs_f64() * 1000.0);
        // 1: differences found (the expected answer); 2: trouble.
        if status.code() != Some(1) {
            return Err(format!("diff -rq ended with {status}").into());
        }
    }
    if listed != CHANGED_FILES as usize {
        return Err(format!("DiffSnapshots listed {listed} paths, {CHANGED_FILES} changed").into());
    }
    let ratio = median(&ours) / median(&theirs);
    let size = format!("{files} files, {CHANGED_FILES} changed");
    let report = &mut bench.report;
    report.add(
        DIFF,
        "diff.rollpoint",
        format!("{size}: DiffSnapshots"),
        Unit::Ms,
        ours,
        None,
        Target::info(),
        "cold cache",
    );
    report.add(
        DIFF,
        "diff.diff-rq",
        format!("{size}: diff -rq of the snapshots"),
        Unit::Ms,
        theirs,
        None,
        Target::info(),
        "cold cache",
    );
    report.add(
        DIFF,
        "diff.ratio",
        "rollpoint time / diff -rq time",
        Unit::Ratio,
        vec![ratio],
        None,
        Target::goal("<= 1/10 (>= 10x faster)", Goal::Median(1.0 / SPEEDUP_TARGET)),
        "medians",
    );
    drop(container);
    drop(fs);
    Ok(())
}
