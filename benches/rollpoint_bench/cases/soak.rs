//! Case 11, soak (only with `--only soak`): 50 registered containers and 50
//! clients, each on its own connection, in a loop for `--minutes` (60 by
//! default): take a snapshot of its container, list the container's
//! snapshots, and once it has 10 delete the oldest. The daemon's RSS is
//! sampled every 10 s. The goal (issue 17): memory that stays flat, within
//! 64 MiB, however long the daemon runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rollpoint::api::proto;
use rollpoint::testkit::loop_btrfs::LoopBtrfs;

use super::{Bench, SOAK};
use crate::report::{Goal, Target, Unit};
use crate::setup::{self, check_interrupted, progress, write_data, Container, Fallible, GIB, MIB};
use crate::stats::ms;

const CLIENTS: usize = 50;
/// Snapshots each container keeps: the oldest goes when a new one lands.
const KEPT: usize = 10;
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
const RSS_GOAL_MIB: f64 = 64.0;

/// What one client did: the latency of each round, or how it failed.
type ClientRun = Result<Vec<f64>, String>;

pub async fn run(bench: &mut Bench) -> Fallible<()> {
    let minutes = bench.options.minutes;
    progress(format!("soak: {CLIENTS} clients for {minutes} min, RSS every {} s", SAMPLE_EVERY.as_secs()));
    let fs = LoopBtrfs::create(4 * GIB)?;
    let mut containers = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        check_interrupted()?;
        let container = Container::create(&fs, &format!("soak-{i:02}"), 1, 0)?;
        write_data(&container.volume, "data", MIB)?;
        container.register(&mut bench.clients, None).await?;
        containers.push(container);
    }
    let pid = bench.daemon_pid()?;
    let started = Instant::now();
    let until = started + Duration::from_secs(minutes * 60);
    let rounds = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut clients = Vec::with_capacity(CLIENTS);
    for container in &containers {
        let connection = bench.daemon.clients().await?;
        clients.push(tokio::spawn(client(connection, container.id.clone(), until, rounds.clone())));
    }

    let mut samples = vec![setup::rss_mib(pid)?];
    while Instant::now() < until && check_interrupted().is_ok() && !clients.iter().all(|c| c.is_finished()) {
        tokio::time::sleep(SAMPLE_EVERY).await;
        samples.push(setup::rss_mib(pid)?);
        if samples.len() % 6 == 0 {
            progress(format!(
                "  {:.0} min: RSS {:.1} MiB, {} rounds",
                started.elapsed().as_secs_f64() / 60.0,
                samples[samples.len() - 1],
                rounds.load(std::sync::atomic::Ordering::Relaxed)
            ));
        }
    }
    let mut latency = Vec::new();
    for task in clients {
        match task.await.map_err(|e| e.to_string()) {
            Ok(Ok(run)) => latency.extend(run),
            Ok(Err(error)) | Err(error) => return Err(format!("a soak client failed: {error}").into()),
        }
    }
    check_interrupted()?;
    let last = *samples.last().unwrap_or(&f64::NAN);
    let half = samples[samples.len() / 2];
    let took = started.elapsed();
    let round_count = latency.len();
    bench.report.add(
        SOAK,
        "soak.rss",
        format!("daemon RSS every {} s over {minutes} min", SAMPLE_EVERY.as_secs()),
        Unit::MiB,
        samples,
        None,
        Target::goal("max <= 64 MiB (goal)", Goal::Max(RSS_GOAL_MIB)),
        format!(
            "{CLIENTS} clients, {round_count} rounds (create, list, delete the oldest past {KEPT}) in {:.0} s",
            took.as_secs_f64()
        ),
    );
    bench.report.add(
        SOAK,
        "soak.growth",
        "daemon RSS growth over the second half",
        Unit::MiB,
        vec![last - half],
        None,
        Target::text("about 0 (flat)"),
        format!("{half:.1} MiB at half time, {last:.1} MiB at the end"),
    );
    bench.report.add(
        SOAK,
        "soak.round",
        "one round: create, list, delete",
        Unit::Ms,
        latency,
        None,
        Target::info(),
        "",
    );
    drop(containers);
    Ok(())
}

/// One client's loop until `until`: snapshot, list, delete the oldest.
async fn client(
    mut clients: rollpoint::api::client::Clients,
    id: String,
    until: Instant,
    rounds: Arc<std::sync::atomic::AtomicU64>,
) -> ClientRun {
    let mut latency = Vec::new();
    let mut taken = 0_usize;
    while Instant::now() < until && check_interrupted().is_ok() {
        let sent = Instant::now();
        setup::create_snapshot(&mut clients, &id, &format!("soak-{taken:06}")).await.map_err(|e| e.to_string())?;
        clients
            .snapshots
            .list_snapshots(proto::ListSnapshotsRequest { container: id.clone(), ..Default::default() })
            .await
            .map_err(|s| format!("ListSnapshots {id}: {}", s.message()))?;
        if taken >= KEPT {
            setup::delete_snapshot(&mut clients, &id, &format!("soak-{:06}", taken - KEPT))
                .await
                .map_err(|e| e.to_string())?;
        }
        taken += 1;
        latency.push(ms(sent.elapsed()));
        rounds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(latency)
}
