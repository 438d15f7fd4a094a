//! Case 5, burst: 100 registered containers (100 subvolumes of one filesystem,
//! 100 cgroups with a sleeping process each) snapshotted at the same moment
//! through 10 connections: the time until the last reply lands. Then the
//! same burst against a daemon with the default configuration, whose
//! in-flight limit (64) refuses part of it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rollpoint::api::client::Clients;
use rollpoint::api::proto;
use rollpoint::testkit::daemon::TestDaemon;
use rollpoint::testkit::loop_btrfs::LoopBtrfs;
use tonic::Code;

use super::{Bench, BURST};
use crate::report::{Goal, Target, Unit};
use crate::setup::{self, check_interrupted, progress, write_data, Container, Fallible, DAEMON, GIB, MIB};
use crate::stats::{ms, proto_ms};

const CONTAINERS: usize = 100;
const CONNECTIONS: usize = 10;
const BURST_GOAL_MS: f64 = 2000.0;

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
    defaults(bench, &containers).await?;
    drop(containers);
    Ok(())
}

/// The same burst against a daemon with the default configuration
/// (`max_concurrent_operations = 64`): how many calls are refused.
async fn defaults(bench: &mut Bench, containers: &[Container]) -> Fallible<()> {
    progress("burst: the same against a daemon with the defaults");
    let daemon = TestDaemon::start(std::path::Path::new(DAEMON)).await?;
    let mut clients = daemon.clients().await?;
    let mut ids = Vec::with_capacity(containers.len());
    for (i, container) in containers.iter().enumerate() {
        let id = format!("dflt-{i:03}");
        container.register_as(&mut clients, &id, None).await?;
        ids.push(id);
    }
    let mut connections = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        connections.push(daemon.clients().await?);
    }
    let (mut lines, mut refused) = (Vec::new(), Vec::new());
    for round in 0..2 {
        let burst = fire(&connections, &ids, &format!("dflt-{round}")).await;
        let count = |code: Option<Code>| {
            burst.calls.iter().filter(|c| c.result.as_ref().err().map(tonic::Status::code) == code).count()
        };
        let exhausted = count(Some(Code::ResourceExhausted));
        let ok = count(None);
        refused.push(exhausted as f64);
        lines.push(format!(
            "burst {}: {ok} created, {exhausted} RESOURCE_EXHAUSTED, {} other errors, last reply after {:.0} ms",
            round + 1,
            CONTAINERS - ok - exhausted,
            ms(burst.last_landed)
        ));
    }
    bench.report.add(
        BURST,
        "burst.defaults-refused",
        "default config (64 in flight): calls refused of 100",
        Unit::Count,
        refused,
        None,
        Target::info(),
        "RESOURCE_EXHAUSTED per burst, 2 bursts, against a second daemon with no configuration",
    );
    bench.report.note(format!(
        "with the default max_concurrent_operations = 64 (a second daemon, same 100 containers): {}; the suite's daemon is configured with 256 so that no call of a burst is refused",
        lines.join("; ")
    ));
    drop(daemon);
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
