//! Case 6, metadata scale: one container with 10,000 real snapshots recorded
//! (1,000 with --quick), made through the API; then ListSnapshots, a first
//! page of 1,000, the default first page, and every page of 1,000 followed
//! to the end; and the daemon's memory with all of it recorded. Then, with
//! 99 more containers registered, a `/metrics` scrape, and a snapshot taken
//! over REST against the same over gRPC, in alternating rounds.

use std::time::Instant;

use rollpoint::api::proto;
use rollpoint::testkit::loop_btrfs::LoopBtrfs;

use super::{Bench, METADATA, SNAPSHOT};
use crate::http::Connection;
use crate::report::{Goal, Target, Unit};
use crate::setup::{self, check_interrupted, create_snapshot, progress, write_data, Container, Fallible, GIB, MIB};
use crate::stats::{median, ms};

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
    let more = scrape_and_rest(bench, &fs, count, n).await;
    drop(container);
    more
}

/// With 99 more containers registered (100 in all, one of them holding
/// `count` snapshots): `GET /metrics` timed `n` times, and CreateSnapshot
/// over gRPC against `POST /api/v1/containers/{id}/snapshots` on a fresh
/// container, alternating, 100 of each (30 with --quick; one kept-alive
/// connection each).
async fn scrape_and_rest(bench: &mut Bench, fs: &LoopBtrfs, count: usize, n: usize) -> Fallible<()> {
    progress("metadata: /metrics with 100 containers, and REST against gRPC");
    let mut others = Vec::with_capacity(99);
    for i in 0..99 {
        check_interrupted()?;
        let other = Container::create(fs, &format!("meta-{i:02}"), 1, 0)?;
        other.register(&mut bench.clients, None).await?;
        others.push(other);
    }
    let mut http = Connection::open(bench.daemon.socket()).await?;
    let mut scrapes = Vec::with_capacity(n);
    for round in 0..=n {
        let sent = Instant::now();
        let (status, text) = http.call("GET", "/metrics", None).await?;
        let took = sent.elapsed();
        if status != 200 || !text.contains("rollpoint_container_snapshots{container=\"meta\"}") {
            return Err(format!("GET /metrics: {status}: {}", text.chars().take(200).collect::<String>()).into());
        }
        if round > 0 {
            scrapes.push(ms(took));
        }
    }
    bench.report.add(
        METADATA,
        "metrics.scrape",
        format!("GET /metrics, 100 containers, {count} snapshots in one"),
        Unit::Ms,
        scrapes,
        None,
        Target::goal("median <= 10 ms (goal)", Goal::Median(10.0)),
        "one kept-alive HTTP/1.1 connection on the socket",
    );

    // More rounds than the scrape's: the two differ by a fraction of a
    // snapshot's own time, which varies by more than that.
    let rounds = bench.options.pick(30, 100);
    let target = &others[0].id;
    let (mut grpc, mut rest) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for round in 0..=rounds {
        check_interrupted()?;
        let sent = Instant::now();
        create_snapshot(&mut bench.clients, target, &format!("grpc-{round:03}")).await?;
        let grpc_took = sent.elapsed();
        let body = format!(r#"{{"name": "rest-{round:03}"}}"#);
        let sent = Instant::now();
        let (status, answer) =
            http.call("POST", &format!("/api/v1/containers/{target}/snapshots"), Some(&body)).await?;
        let rest_took = sent.elapsed();
        if status != 200 {
            return Err(format!("REST create: {status}: {answer}").into());
        }
        if round > 0 {
            grpc.push(ms(grpc_took));
            rest.push(ms(rest_took));
        }
    }
    let ratio = median(&rest) / median(&grpc);
    bench.report.add(
        SNAPSHOT,
        "snapshot.grpc",
        "1 container at rest, CreateSnapshot over gRPC",
        Unit::Ms,
        grpc,
        None,
        Target::info(),
        "alternating with the REST row",
    );
    bench.report.add(
        SNAPSHOT,
        "snapshot.rest",
        "the same, POST .../snapshots over REST (HTTP/1.1)",
        Unit::Ms,
        rest,
        None,
        Target::info(),
        "",
    );
    bench.report.add(
        SNAPSHOT,
        "snapshot.rest-over-grpc",
        "REST / gRPC, medians",
        Unit::Ratio,
        vec![ratio],
        None,
        Target::goal("<= 1.1x (goal)", Goal::Max(1.1)),
        "",
    );
    drop(others);
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
