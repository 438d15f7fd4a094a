//! Case 6, metadata scale: one container with 10,000 real snapshots recorded
//! (1,000 with --quick), made through the API; then ListSnapshots, a first
//! page of 1,000, the default first page, and every page of 1,000 followed
//! to the end; and the daemon's memory with all of it recorded.

use std::time::Instant;

use rollpoint::api::proto;
use rollpoint::testkit::loop_btrfs::LoopBtrfs;

use super::{Bench, METADATA, SNAPSHOT};
use crate::report::{Target, Unit};
use crate::setup::{self, check_interrupted, create_snapshot, progress, write_data, Container, Fallible, GIB, MIB};
use crate::stats::ms;

pub async fn run(bench: &mut Bench) -> Fallible<()> {
    let count = bench.options.pick(1_000, 10_000);
    let n = bench.options.pick(10, 30);
    let fs = LoopBtrfs::create(4 * GIB)?;
    let container = Container::create(&fs, "meta", 1, 0)?;
    container.wait_for_processes(1)?;
    write_data(&container.volume, "data", MIB)?;
    setup::sync_fs(&container.volume)?;
    container.register(&mut bench.clients, None).await?;
    let id = container.id.clone();

    progress(format!("metadata: recording {count} snapshots through the API"));
    let started = Instant::now();
    let mut latency = Vec::with_capacity(count);
    for i in 0..count {
        check_interrupted()?;
        let sent = Instant::now();
        create_snapshot(&mut bench.clients, &id, &format!("m-{i:05}")).await?;
        latency.push(ms(sent.elapsed()));
        if (i + 1) % (count / 10) == 0 {
            progress(format!("  {}/{count}", i + 1));
        }
    }
    let took = started.elapsed();
    let first: Vec<f64> = latency[..100].to_vec();
    let last: Vec<f64> = latency[count - 100..].to_vec();
    bench.report.add(
        SNAPSHOT,
        "snapshot.meta-first100",
        "1 MiB, snapshots 1-100 of one container",
        Unit::Ms,
        first,
        None,
        Target::info(),
        "",
    );
    bench.report.add(
        SNAPSHOT,
        "snapshot.meta-last100",
        format!("1 MiB, snapshots {}-{count} of one container", count - 99),
        Unit::Ms,
        last,
        None,
        Target::info(),
        format!(
            "all {count} recorded in {:.0} s ({:.0} per second)",
            took.as_secs_f64(),
            count as f64 / took.as_secs_f64()
        ),
    );

    progress(format!("metadata: ListSnapshots with {count} recorded, {n} of each"));
    let (mut first_page, mut default_page, mut full) = (vec![], vec![], vec![]);
    for round in 0..n + 1 {
        check_interrupted()?;
        let sent = Instant::now();
        list(bench, &id, 1000, "").await?;
        let first_took = sent.elapsed();
        let sent = Instant::now();
        list(bench, &id, 0, "").await?;
        let default_took = sent.elapsed();
        let sent = Instant::now();
        let (mut listed, mut pages, mut token) = (0, 0, String::new());
        loop {
            let page = list(bench, &id, 1000, &token).await?;
            listed += page.snapshots.len();
            pages += 1;
            token = page.next_page_token;
            if token.is_empty() {
                break;
            }
        }
        let full_took = sent.elapsed();
        if listed != count {
            return Err(format!("listing found {listed} snapshots in {pages} pages, expected {count}").into());
        }
        if round >= 1 {
            first_page.push(ms(first_took));
            default_page.push(ms(default_took));
            full.push(ms(full_took));
        }
    }
    bench.report.add(
        METADATA,
        "list.first1000",
        format!("ListSnapshots, {count} recorded: first page of 1,000"),
        Unit::Ms,
        first_page,
        None,
        Target::info(),
        "",
    );
    bench.report.add(
        METADATA,
        "list.first-default",
        format!("ListSnapshots, {count} recorded: first page of 100 (default)"),
        Unit::Ms,
        default_page,
        None,
        Target::info(),
        "",
    );
    bench.report.add(
        METADATA,
        "list.all",
        format!("ListSnapshots, {count} recorded: every page of 1,000"),
        Unit::Ms,
        full,
        None,
        Target::info(),
        "",
    );
    bench.record_rss("rss.metadata", &format!("daemon RSS, {count} more snapshots recorded"))?;
    drop(container);
    Ok(())
}

async fn list(bench: &mut Bench, id: &str, page_size: i32, token: &str) -> Fallible<proto::ListSnapshotsResponse> {
    Ok(bench
        .clients
        .snapshots
        .list_snapshots(proto::ListSnapshotsRequest { container: id.into(), page_size, page_token: token.into() })
        .await
        .map_err(|s| format!("ListSnapshots {id}: {:?}: {}", s.code(), s.message()))?
        .into_inner())
}
