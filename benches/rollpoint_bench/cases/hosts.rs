//! Case 9, real container hosts: the freeze window of a group snapshot of
//! 10 containers with 10 writers each (every cgroup frozen, every volume
//! snapshotted, thawed; `Snapshot.frozen_for`), and DiscoverContainers of
//! 100 machines from a stand-in systemd-machined on a bus of the run's own
//! (each a real leader process and a real subvolume root), through a second
//! daemon pointed at that bus.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use rollpoint::api::proto;
use rollpoint::testkit::cgroup::TestCgroup;
use rollpoint::testkit::daemon::{DaemonOptions, TestDaemon};
use rollpoint::testkit::loop_btrfs::LoopBtrfs;
use rollpoint::testkit::machined::{Machine, PrivateBus, StandInMachined};

use super::{Bench, HOSTS};
use crate::report::{Goal, Target, Unit};
use crate::setup::{check_interrupted, progress, Container, Fallible, DAEMON, GIB, WORKLOAD};
use crate::stats::{ms, proto_ms};

const MEMBERS: usize = 10;
const WRITERS: u32 = 10;
const MACHINES: usize = 100;

pub async fn run(bench: &mut Bench) -> Fallible<()> {
    group_freeze(bench).await?;
    discovery(bench).await
}

async fn group_freeze(bench: &mut Bench) -> Fallible<()> {
    let n = bench.options.pick(20, 100);
    progress(format!("group snapshot: {MEMBERS} containers x {WRITERS} writers, {n} snapshots"));
    // 100 writers append about 60 MiB/s between them: room for a few
    // minutes, and each group snapshot is deleted once measured.
    let fs = LoopBtrfs::create(16 * GIB)?;
    let mut members = Vec::with_capacity(MEMBERS);
    for i in 0..MEMBERS {
        let container = Container::create(&fs, &format!("grp-{i}"), 0, WRITERS)?;
        container.register(&mut bench.clients, None).await?;
        members.push(container);
    }
    for container in &members {
        container.wait_for_processes(WRITERS as usize)?;
    }
    let ids: Vec<String> = members.iter().map(|c| c.id.clone()).collect();
    let group = proto::SetGroupRequest { name: "bench-group".into(), members: ids.clone() };
    bench.clients.containers.set_group(group).await.map_err(|s| format!("SetGroup: {}", s.message()))?;
    let (mut frozen, mut latency) = (Vec::new(), Vec::new());
    for round in 0..n + 2 {
        check_interrupted()?;
        let request = proto::CreateGroupSnapshotRequest {
            group: "bench-group".into(),
            name: format!("g-{round}"),
            ..Default::default()
        };
        let sent = Instant::now();
        let reply = bench.clients.snapshots.create_group_snapshot(request).await;
        let took = sent.elapsed();
        let taken = reply.map_err(|s| format!("CreateGroupSnapshot: {}", s.message()))?.into_inner().snapshots;
        if round >= 2 {
            frozen.push(proto_ms(taken[0].frozen_for.as_ref()));
            latency.push(ms(took));
        }
        for snapshot in &taken {
            crate::setup::delete_snapshot(&mut bench.clients, &snapshot.container, &snapshot.name).await?;
        }
    }
    let note =
        format!("{MEMBERS} containers, each its own cgroup and subvolume with {WRITERS} rollpoint-workload writers");
    bench.report.add(
        HOSTS,
        "group.freeze",
        format!("group snapshot of {MEMBERS} containers: freeze window"),
        Unit::Ms,
        frozen,
        None,
        Target::goal("p99 <= 100 ms (goal)", Goal::P99(100.0)),
        note.clone(),
    );
    bench.report.add(
        HOSTS,
        "group.snapshot",
        format!("group snapshot of {MEMBERS} containers: call to reply"),
        Unit::Ms,
        latency,
        None,
        Target::info(),
        note,
    );
    for id in &ids {
        let request =
            proto::UnregisterContainerRequest { id: id.clone(), delete_snapshots: true, keep_snapshots: false };
        bench.clients.containers.unregister_container(request).await.map_err(|s| s.message().to_owned())?;
    }
    Ok(())
}

async fn discovery(bench: &mut Bench) -> Fallible<()> {
    let n = bench.options.pick(20, 100);
    progress(format!("discovery: {MACHINES} machines from a stand-in machined, {n} calls"));
    let bus = PrivateBus::start()?;
    let machined = StandInMachined::start(&bus.address).await?;
    let fs = LoopBtrfs::create(GIB)?;
    let cgroup = TestCgroup::create("bench-machines")?;
    // One real leader: every machine's cgroup is read from /proc/LEADER.
    #[allow(clippy::zombie_processes, reason = "the TestCgroup kills and reaps what it spawned")]
    let leader = cgroup.spawn(Command::new(WORKLOAD).arg("sleep").stdin(Stdio::null()).stdout(Stdio::null()))?;
    for i in 0..MACHINES {
        let name = format!("m-{i}");
        let root = fs.create_subvolume(&name)?;
        let machine = Machine {
            unit: format!("systemd-nspawn@{name}.service"),
            name,
            class: "container".into(),
            leader: leader.id(),
            root: root.display().to_string(),
        };
        machined.add(machine).await?;
    }
    let settings = "[discovery]\nsources = [\"machined\"]\n";
    let options = DaemonOptions::default().env("ROLLPOINT_SYSTEMD_BUS", &bus.address).config(settings);
    let daemon = TestDaemon::start_with(Path::new(DAEMON), options).await?;
    let mut clients = daemon.clients().await?;
    let mut samples = Vec::new();
    for round in 0..n + 2 {
        check_interrupted()?;
        let sent = Instant::now();
        let reply = clients.containers.discover_containers(proto::DiscoverContainersRequest::default()).await;
        let took = sent.elapsed();
        let found = reply.map_err(|s| format!("DiscoverContainers: {}", s.message()))?.into_inner();
        let registrable = found.containers.iter().filter(|c| c.problem.is_empty()).count();
        if registrable != MACHINES {
            return Err(format!("discovery found {registrable} registrable machines of {MACHINES}: {found:?}").into());
        }
        if round >= 2 {
            samples.push(ms(took));
        }
    }
    bench.report.add(
        HOSTS,
        "discovery.machined100",
        format!("discover {MACHINES} machines (DiscoverContainers)"),
        Unit::Ms,
        samples,
        None,
        Target::goal("p99 <= 200 ms (goal)", Goal::P99(200.0)),
        "each call: ListMachines, each machine's properties over D-Bus, /proc/LEADER/cgroup, and the backend's check of each root subvolume",
    );
    Ok(())
}
