//! Load: 20 containers (subvolumes of one loop-backed btrfs, each a cgroup
//! of one or two sleeping processes), 50 client tasks over loopback TCP with
//! an admin token, a few thousand mixed calls (create, with and without a
//! moving alias; list; get by alias; delete of a snapshot other tasks may
//! delete first), bounded in calls and in time. Then: every error is one of
//! the documented answers to contention (ABORTED: the container was busy
//! past lock_wait_ms; RESOURCE_EXHAUSTED: past max_concurrent_operations;
//! NOT_FOUND: a get or delete of what another task deleted), no container
//! is frozen, its processes are all there, the store, the filesystem and
//! what the clients were told agree, and the daemon's memory did not run
//! away. Prints counts per outcome and the daemon's RSS.
//!
//! Root only.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rollpoint::api::client::{Clients, Target};
use rollpoint::api::proto::{self, SnapshotState};
use rollpoint::testkit::cgroup::TestCgroup;
use rollpoint::testkit::daemon::{DaemonOptions, TestDaemon};
use rollpoint::testkit::loop_btrfs::LoopBtrfs;
use rollpoint::testkit::root_or_skip;
use tonic::Code;

const CONTAINERS: usize = 20;
const TASKS: usize = 50;
/// The load stops after this many calls...
const MAX_CALLS: usize = 6000;
/// ...or after this long, whichever comes first.
const MAX_TIME: Duration = Duration::from_secs(45);
/// Longest a single call may take before the test calls it hung.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Below the 50 tasks, so that the in-flight limit is reached now and then;
/// a short lock wait, so that busy containers are refused now and then.
const DAEMON_CONFIG: &str = "max_concurrent_operations = 40\nlock_wait_ms = 2000\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Create,
    CreateWithAlias,
    List,
    GetAlias,
    Delete,
}

/// What the clients were told, per container.
#[derive(Default)]
struct Ledger {
    /// Snapshots whose create succeeded and whose delete has not (yet).
    live: Vec<BTreeSet<String>>,
}

/// xorshift64*: enough randomness to mix the calls, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

fn container_id(index: usize) -> String {
    format!("load-{index:02}")
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read the daemon's status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_calls_from_fifty_clients_on_twenty_containers() {
    if !root_or_skip("mixed_calls_from_fifty_clients_on_twenty_containers") {
        return;
    }
    let fs = LoopBtrfs::create(1 << 30).expect("loop btrfs");
    let mut cgroups = Vec::new();
    let mut volumes = Vec::new();
    let mut processes = Vec::new();
    for index in 0..CONTAINERS {
        let id = container_id(index);
        let volume = fs.create_subvolume(&id).expect("subvolume");
        std::fs::write(volume.join("data.txt"), format!("container {id}\n")).unwrap();
        let cgroup = TestCgroup::create(&id).expect("cgroup");
        for _ in 0..(1 + index % 2) {
            // Reaped by the cgroup's drop.
            #[allow(clippy::zombie_processes)]
            let _child = cgroup.spawn(Command::new(WORKLOAD).arg("sleep").stdin(Stdio::null())).expect("spawn");
        }
        processes.push(1 + index % 2);
        cgroups.push(cgroup);
        volumes.push(volume);
    }
    let port = free_loopback_port();
    let options = DaemonOptions::default().config(DAEMON_CONFIG).arg("--listen").arg(format!("127.0.0.1:{port}"));
    let daemon = TestDaemon::start_with(daemon_binary(), options).await.expect("start rollpointd");
    let pid = daemon.pid().expect("daemon pid");
    let mut root = daemon.clients().await.expect("connect");
    for (index, (cgroup, volume)) in cgroups.iter().zip(&volumes).enumerate() {
        register(&mut root, &container_id(index), cgroup.relative_name(), volume).await.expect("register");
    }
    let secret = admin_token(&mut root, "load").await;
    let tcp = Target::Tcp(format!("http://127.0.0.1:{port}"));
    // Warm up (one snapshot and one listing per container) before the first
    // memory reading, so that it includes what any run needs.
    let mut warm = Clients::connect_with_token(&tcp, Some(&secret)).await.expect("connect over TCP");
    let ledger = Arc::new(Mutex::new(Ledger { live: vec![BTreeSet::new(); CONTAINERS] }));
    for index in 0..CONTAINERS {
        let name = format!("warm-{index}");
        create_snapshot(&mut warm, &container_id(index), &name, "").await.expect("warm-up snapshot");
        ledger.lock().unwrap().live[index].insert(name);
        list_snapshots(&mut warm, &container_id(index)).await;
    }
    let rss_before = rss_kib(pid);

    let calls = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + MAX_TIME;
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let mut clients = Clients::connect_with_token(&tcp, Some(&secret)).await.expect("connect over TCP");
        let calls = calls.clone();
        let ledger = ledger.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((task as u64 + 1) << 17));
            let mut outcomes: BTreeMap<(Op, String), usize> = BTreeMap::new();
            let mut unexpected: Vec<String> = Vec::new();
            let mut made = 0usize;
            while calls.fetch_add(1, Ordering::Relaxed) < MAX_CALLS && Instant::now() < deadline {
                let index = rng.below(CONTAINERS);
                let container = container_id(index);
                let op = match rng.below(100) {
                    0..=29 => Op::Create,
                    30..=39 => Op::CreateWithAlias,
                    40..=69 => Op::List,
                    70..=77 => Op::GetAlias,
                    _ => Op::Delete,
                };
                let (result, name) = match op {
                    Op::Create | Op::CreateWithAlias => {
                        made += 1;
                        let name = format!("t{task}-{made}");
                        let alias = if op == Op::CreateWithAlias { "latest" } else { "" };
                        let call = create_snapshot(&mut clients, &container, &name, alias);
                        (tokio::time::timeout(CALL_TIMEOUT, call).await.map(|r| r.map(drop)), Some(name))
                    }
                    Op::List => {
                        let call = clients.snapshots.list_snapshots(proto::ListSnapshotsRequest {
                            container: container.clone(),
                            ..Default::default()
                        });
                        (tokio::time::timeout(CALL_TIMEOUT, call).await.map(|r| r.map(drop)), None)
                    }
                    Op::GetAlias => {
                        let call = get_snapshot(&mut clients, &container, "latest");
                        (tokio::time::timeout(CALL_TIMEOUT, call).await.map(|r| r.map(drop)), None)
                    }
                    Op::Delete => {
                        // A snapshot the clients were told exists; another
                        // task may delete it first.
                        let victim = {
                            let ledger = ledger.lock().unwrap();
                            let live = &ledger.live[index];
                            (!live.is_empty()).then(|| live.iter().nth(rng.below(live.len())).unwrap().clone())
                        };
                        let Some(victim) = victim else { continue };
                        let call = clients.snapshots.delete_snapshot(proto::DeleteSnapshotRequest {
                            container: container.clone(),
                            snapshot: victim.clone(),
                        });
                        (tokio::time::timeout(CALL_TIMEOUT, call).await.map(|r| r.map(drop)), Some(victim))
                    }
                };
                let code = match result {
                    Err(_) => {
                        unexpected.push(format!("{op:?} on {container}: no answer in {CALL_TIMEOUT:?}"));
                        *outcomes.entry((op, "HUNG".into())).or_default() += 1;
                        continue;
                    }
                    Ok(Ok(())) => Code::Ok,
                    Ok(Err(status)) => {
                        let expected = match status.code() {
                            Code::Aborted | Code::ResourceExhausted => true,
                            Code::NotFound => matches!(op, Op::Delete | Op::GetAlias),
                            _ => false,
                        };
                        if !expected {
                            unexpected.push(format!("{op:?} on {container}: {:?} {}", status.code(), status.message()));
                        }
                        status.code()
                    }
                };
                if code == Code::Ok {
                    let mut ledger = ledger.lock().unwrap();
                    match op {
                        Op::Create | Op::CreateWithAlias => {
                            ledger.live[index].insert(name.expect("a name"));
                        }
                        Op::Delete => {
                            ledger.live[index].remove(&name.expect("a name"));
                        }
                        Op::List | Op::GetAlias => {}
                    }
                }
                *outcomes.entry((op, format!("{code:?}"))).or_default() += 1;
                if matches!(code, Code::Aborted | Code::ResourceExhausted) {
                    // "Retry shortly", as a well-behaved client does; without
                    // it, refusals (instant) would make most of the calls.
                    tokio::time::sleep(Duration::from_millis(10 + rng.below(40) as u64)).await;
                }
            }
            (outcomes, unexpected)
        }));
    }
    let mut outcomes: BTreeMap<(Op, String), usize> = BTreeMap::new();
    let mut unexpected = Vec::new();
    for task in tasks {
        let (task_outcomes, task_unexpected) = task.await.expect("client task");
        for (key, count) in task_outcomes {
            *outcomes.entry(key).or_default() += count;
        }
        unexpected.extend(task_unexpected);
    }
    let elapsed = started.elapsed();
    let total: usize = outcomes.values().sum();
    let rss_after = rss_kib(pid);

    println!();
    println!("{total} calls by {TASKS} tasks on {CONTAINERS} containers in {elapsed:.1?}");
    println!("{:<16} {:<20} {:>7}", "call", "outcome", "count");
    for ((op, code), count) in &outcomes {
        println!("{:<16} {:<20} {:>7}", format!("{op:?}"), code, count);
    }
    println!("daemon RSS: {:.1} MiB before, {:.1} MiB after", rss_before as f64 / 1024.0, rss_after as f64 / 1024.0);
    assert!(
        unexpected.is_empty(),
        "{} unexpected outcomes, first ones: {:?}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(10)]
    );
    assert!(total >= 1000, "only {total} calls in {elapsed:?}: the daemon is too slow under load");
    let ok_creates: usize = outcomes
        .iter()
        .filter(|((op, code), _)| matches!(op, Op::Create | Op::CreateWithAlias) && code == "Ok")
        .map(|(_, n)| n)
        .sum();
    assert!(ok_creates > 0, "no create succeeded");

    // Nothing frozen, every process still there.
    for (cgroup, count) in cgroups.iter().zip(&processes) {
        assert!(!cgroup.is_frozen().unwrap(), "{} is frozen after the load", cgroup.path().display());
        assert_eq!(cgroup.pids().unwrap().len(), *count, "processes of {}", cgroup.path().display());
    }
    // The store, the filesystem and what the clients were told agree.
    let live = std::mem::take(&mut ledger.lock().unwrap().live);
    let mut snapshots = 0;
    for (index, live) in live.iter().enumerate().take(CONTAINERS) {
        let id = container_id(index);
        let listed = assert_listing_matches_disk(&mut root, &id, &snapshot_folder(fs.mount_point(), &id)).await;
        assert_eq!(&listed, live, "{id}: listed vs created minus deleted, as the clients were told");
        for snapshot in list_snapshots(&mut root, &id).await {
            assert_eq!(snapshot.state(), SnapshotState::Ready, "{id}/{}", snapshot.name);
        }
        let container = root
            .containers
            .get_container(proto::GetContainerRequest { id: id.clone() })
            .await
            .expect("GetContainer")
            .into_inner()
            .container
            .unwrap();
        assert_eq!(container.snapshot_count as usize, listed.len(), "{id}: snapshot_count");
        snapshots += listed.len();
    }
    println!("{snapshots} snapshots left, listing and disk agree for all {CONTAINERS} containers");
    // Memory: a generous bound, to catch growth per call, not noise.
    assert!(rss_after < 3 * rss_before + 50 * 1024, "daemon RSS grew from {rss_before} KiB to {rss_after} KiB");
    // And the daemon still works.
    create_snapshot(&mut root, &container_id(0), "after-load", "").await.expect("a snapshot after the load");
}
