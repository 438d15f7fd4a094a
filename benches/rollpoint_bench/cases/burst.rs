//! Case 5, burst: 100 registered containers (100 subvolumes of one filesystem,
//! 100 cgroups with a sleeping process each) snapshotted at the same moment
//! through 10 connections: the time until the last reply lands. Then
//! bursts of 200 and 1,000 against a daemon with the default configuration
//! (64 in flight, the rest queued): all land, none refused, compared with
//! the same snapshots taken one after another.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rollpoint::api::client::Clients;
use rollpoint::api::proto;
use rollpoint::testkit::daemon::TestDaemon;
use rollpoint::testkit::loop_btrfs::LoopBtrfs;
use tonic::Code;

use super::{Bench, BURST, METADATA};
use crate::report::{Goal, Target, Unit};
use crate::setup::{self, check_interrupted, progress, write_data, Container, Fallible, DAEMON, GIB, MIB};
use crate::stats::{ms, proto_ms};

const CONTAINERS: usize = 100;
const CONNECTIONS: usize = 10;
const BURST_GOAL_MS: f64 = 2000.0;
/// The bursts against a daemon with the default configuration.
const DEFAULT_BURSTS: &[usize] = &[200, 1000];

/// One call of a burst: when it was sent, when its reply landed, and the
/// snapshot's freeze window or the error.
struct Call {
    sent: Instant,
    landed: Instant,
    result: Result<f64, tonic::Status>,
}

struct Burst {
    /// From the first call sent to the last reply.
    last_landed: Duration,
    calls: Vec<Call>,
}

pub async fn run(bench: &mut Bench) -> Fallible<()> {
    let rounds = bench.options.pick(3, 10);
    progress(format!("burst: {CONTAINERS} containers, {rounds} bursts"));
    let fs = LoopBtrfs::create(4 * GIB)?;
    let mut containers = Vec::with_capacity(CONTAINERS);
    for i in 0..CONTAINERS {
        check_interrupted()?;
        let container = Container::create(&fs, &format!("burst-{i:03}"), 1, 0)?;
        write_data(&container.volume, "data", MIB)?;
        containers.push(container);
    }
    setup::sync_fs(fs.mount_point())?;
    for container in &containers {
        container.wait_for_processes(1)?;
        container.register(&mut bench.clients, None).await?;
    }
    bench.record_rss("rss.registered", "daemon RSS, 100 more containers registered")?;

    let mut connections = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        connections.push(bench.daemon.clients().await?);
    }
    let ids: Vec<String> = containers.iter().map(|c| c.id.clone()).collect();
    let (mut last, mut latency, mut frozen, mut floor) = (vec![], vec![], vec![], vec![]);
    // Round 0 warms up (each container's first snapshot makes its folder).
    for round in 0..=rounds {
        check_interrupted()?;
        let burst = fire(&connections, &ids, &format!("burst-{round}")).await;
        if let Some(call) = burst.calls.iter().find(|c| c.result.is_err()) {
            let status = call.result.as_ref().err().map(|s| format!("{:?}: {}", s.code(), s.message()));
            return Err(format!("a burst call failed: {}", status.unwrap_or_default()).into());
        }
        // The floor: the same 100 snapshots at once, by the minimal program.
        let pairs: Vec<(&str, &std::path::Path)> =
            containers.iter().map(|c| (c.cgroup.relative_name(), c.volume.as_path())).collect();
        let floor_took = bench.floor.snapshot_all(&pairs, &fs.mount_point().join(".bench-floor"))?;
        if round == 0 {
            continue;
        }
        last.push(ms(burst.last_landed));
        floor.push(ms(floor_took));
        for call in &burst.calls {
            latency.push(ms(call.landed - call.sent));
            frozen.push(*call.result.as_ref().unwrap_or(&f64::NAN));
        }
        progress(format!("  burst {round}: the last of {CONTAINERS} landed after {:.0} ms", ms(burst.last_landed)));
    }
    bench.report.add(
        BURST,
        "burst.last",
        "time until the last of 100 lands",
        Unit::Ms,
        last,
        Some(&floor),
        Target::goal("max <= 2 s (goal)", Goal::Max(BURST_GOAL_MS)),
        format!("{CONTAINERS} CreateSnapshot calls at once over {CONNECTIONS} connections; floor: the same 100 by the minimal program, 100 threads released together"),
    );
    bench.report.add(BURST, "burst.call", "each call, sent to reply", Unit::Ms, latency, None, Target::info(), "");
    bench.report.add(
        BURST,
        "burst.frozen",
        "each container's frozen_for",
        Unit::Ms,
        frozen,
        None,
        Target::text("info (50 ms goal is per snapshot)"),
        "",
    );
    bench.record_rss("rss.burst", "daemon RSS, after the bursts")?;
    drop(containers);
    drop(fs);
    defaults(bench).await
}

/// Bursts of 200 and 1,000 containers against a second daemon with the
/// default configuration (64 in flight, the rest queued): every call must
/// land, none refused, and the last within 2x of the time the same
/// snapshots take one after another on the same daemon.
async fn defaults(bench: &mut Bench) -> Fallible<()> {
    let largest = *DEFAULT_BURSTS.last().unwrap_or(&0);
    progress(format!("burst: {DEFAULT_BURSTS:?} containers against a daemon with the defaults"));
    let fs = LoopBtrfs::create(4 * GIB)?;
    let daemon = TestDaemon::start(std::path::Path::new(DAEMON)).await?;
    let mut clients = daemon.clients().await?;
    let mut containers = Vec::with_capacity(largest);
    for i in 0..largest {
        check_interrupted()?;
        let container = Container::create(&fs, &format!("dflt-{i:04}"), 1, 0)?;
        container.wait_for_processes(1)?;
        container.register(&mut clients, None).await?;
        containers.push(container);
    }
    let mut connections = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        connections.push(daemon.clients().await?);
    }
    for &size in DEFAULT_BURSTS {
        check_interrupted()?;
        let ids: Vec<String> = containers[..size].iter().map(|c| c.id.clone()).collect();
        // Each container's first snapshot makes its folder: warm them up.
        fire(&connections, &ids, &format!("warm-{size}")).await;
        let (mut bursts, mut sequences, mut ratios, mut refused) = (vec![], vec![], vec![], vec![]);
        for round in 0..bench.options.pick(1, 3) {
            let burst = fire(&connections, &ids, &format!("all-{size}-{round}")).await;
            let failed: Vec<&tonic::Status> = burst.calls.iter().filter_map(|c| c.result.as_ref().err()).collect();
            refused.push(failed.iter().filter(|s| s.code() == Code::ResourceExhausted).count() as f64);
            if let Some(status) = failed.first() {
                return Err(format!(
                    "burst of {size} on the defaults: {} of {size} failed, e.g. {:?}: {}",
                    failed.len(),
                    status.code(),
                    status.message()
                )
                .into());
            }
            let one_by_one = Instant::now();
            for id in &ids {
                setup::create_snapshot(&mut clients, id, &format!("seq-{size}-{round}")).await?;
            }
            let sequence = one_by_one.elapsed();
            progress(format!(
                "  defaults, {size} at once: the last landed after {:.0} ms; one after another {:.0} ms",
                ms(burst.last_landed),
                ms(sequence)
            ));
            bursts.push(ms(burst.last_landed));
            sequences.push(ms(sequence));
            ratios.push(ms(burst.last_landed) / ms(sequence));
        }
        bench.report.add(
            BURST,
            format!("burst.defaults-{size}.last"),
            format!("default config: time until the last of {size} lands"),
            Unit::Ms,
            bursts,
            None,
            Target::info(),
            format!("a second daemon with no configuration (64 in flight, the rest queued); {CONNECTIONS} connections"),
        );
        bench.report.add(
            BURST,
            format!("burst.defaults-{size}.sequence"),
            format!("default config: the same {size} one after another"),
            Unit::Ms,
            sequences,
            None,
            Target::info(),
            "",
        );
        bench.report.add(
            BURST,
            format!("burst.defaults-{size}.ratio"),
            format!("default config: {size} at once / one after another"),
            Unit::Ratio,
            ratios,
            None,
            Target::goal("max <= 2x (goal)", Goal::Max(2.0)),
            "",
        );
        bench.report.add(
            BURST,
            format!("burst.defaults-{size}.refused"),
            format!("default config: calls refused of {size}"),
            Unit::Count,
            refused,
            None,
            Target::goal("0 (goal)", Goal::Max(0.0)),
            "RESOURCE_EXHAUSTED per burst",
        );
    }
    let rss = setup::rss_mib(daemon.pid().ok_or("the second daemon is not running")?)?;
    bench.report.add(
        METADATA,
        "rss.defaults-bursts",
        format!("daemon RSS, second daemon after the bursts of {DEFAULT_BURSTS:?}"),
        Unit::MiB,
        vec![rss],
        None,
        Target::info(),
        "VmRSS of /proc/<pid>/status",
    );
    drop(daemon);
    drop(containers);
    Ok(())
}

/// Sends one CreateSnapshot per container at the same moment (a barrier
/// releases them all), spread over the connections, and waits for every reply.
async fn fire(connections: &[Clients], ids: &[String], name: &str) -> Burst {
    let barrier = Arc::new(tokio::sync::Barrier::new(ids.len() + 1));
    let mut tasks = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let mut clients = connections[i % connections.len()].clone();
        let (barrier, id, name) = (barrier.clone(), id.clone(), name.to_string());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let sent = Instant::now();
            let reply = clients
                .snapshots
                .create_snapshot(proto::CreateSnapshotRequest { container: id, name, ..Default::default() })
                .await;
            let landed = Instant::now();
            let result = reply.map(|r| proto_ms(r.into_inner().snapshot.and_then(|s| s.frozen_for).as_ref()));
            Call { sent, landed, result }
        }));
    }
    barrier.wait().await;
    let fired = Instant::now();
    let mut calls = Vec::with_capacity(tasks.len());
    for task in tasks {
        match task.await {
            Ok(call) => calls.push(call),
            Err(error) => calls.push(Call {
                sent: fired,
                landed: Instant::now(),
                result: Err(tonic::Status::internal(format!("task: {error}"))),
            }),
        }
    }
    let first = calls.iter().map(|c| c.sent).min().unwrap_or(fired).min(fired);
    let last = calls.iter().map(|c| c.landed).max().unwrap_or(fired);
    Burst { last_landed: last - first, calls }
}
