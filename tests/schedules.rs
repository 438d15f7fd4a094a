//! Schedule entries against a real daemon: RunEntry of a snapshot entry and
//! the timeline it leaves (ListEvents, a live WatchEvents stream and a
//! reconnect from the middle); a real timed fire on the minute, a fire
//! missed while the daemon was SIGKILLed that runs once, late, after the
//! restart, and the same miss recorded as missed past a 1 s grace; command
//! entries run as a user the test creates, with a clean environment and a
//! timeout, and refused to a token over TCP; bad schedules refused with the
//! field named.
//!
//! The timed scenarios share one minute boundary and run concurrently, so
//! the whole file takes about a minute. Measured lateness is printed (run
//! with `--nocapture`).
//!
//! Root only: loop-backed btrfs, real cgroups, real `rollpointd`s, useradd.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use common::*;
use rollpoint::api::client::{Clients, Target};
use rollpoint::api::proto;
use rollpoint::api::proto::{SnapshotOrigin, SnapshotState};
use rollpoint::testkit::daemon::{DaemonOptions, TestDaemon};
use rollpoint::testkit::loop_btrfs::LoopBtrfs;
use rollpoint::testkit::root_or_skip;
use tonic::Code;

/// How long a test waits for an event that should come at once.
const EVENT_TIMEOUT: Duration = Duration::from_secs(15);
/// What an on-time fire may lag the minute boundary before the test fails.
/// The goal is 100 ms; machines running the tests are noisy.
const ON_TIME_LIMIT: TimeDelta = TimeDelta::seconds(1);
/// How long the killed daemons stay down past the minute boundary: more
/// than the 1 s grace of the "missed" daemon and the 1 s on-time tolerance.
const DOWN_PAST_BOUNDARY: TimeDelta = TimeDelta::milliseconds(2500);

// ------------------------------------------------------------------ helpers

/// A daily schedule twelve hours away from now: never due while a test runs.
fn far_schedule() -> (String, u32) {
    let hour = (Utc::now().hour() + 12) % 24;
    (format!("55 {hour} * * *"), hour)
}

/// The next `hour`:55:00 UTC strictly after `after`.
fn next_daily(after: DateTime<Utc>, hour: u32) -> DateTime<Utc> {
    let today = after.date_naive().and_hms_opt(hour, 55, 0).expect("valid time").and_utc();
    if today > after {
        today
    } else {
        today + TimeDelta::days(1)
    }
}

/// The first whole minute strictly after `at`.
fn next_minute(at: DateTime<Utc>) -> DateTime<Utc> {
    let seconds = at.timestamp();
    DateTime::from_timestamp(seconds - seconds.rem_euclid(60) + 60, 0).expect("in range")
}

async fn sleep_until(at: DateTime<Utc>) {
    if let Ok(left) = (at - Utc::now()).to_std() {
        tokio::time::sleep(left).await;
    }
}

fn snapshot_entry(
    id: &str,
    schedule: &str,
    container: &str,
    alias: &str,
    expiry_days: u32,
    comment: &str,
) -> proto::Entry {
    proto::Entry {
        id: id.into(),
        schedule: schedule.into(),
        action: Some(proto::entry::Action::Snapshot(proto::SnapshotAction {
            container: container.into(),
            alias: alias.into(),
            expiry_days,
            ..Default::default()
        })),
        comment: comment.into(),
        enabled: Some(true),
        ..Default::default()
    }
}

fn command_entry(id: &str, command: &str, timeout_seconds: u32) -> proto::Entry {
    proto::Entry {
        id: id.into(),
        schedule: far_schedule().0,
        action: Some(proto::entry::Action::Command(proto::CommandAction { command: command.into(), timeout_seconds })),
        // As the page writes an entry: no `enabled` field, which means live.
        ..Default::default()
    }
}

async fn create_entry(clients: &mut Clients, user: &str, entry: proto::Entry) -> Result<proto::Entry, tonic::Status> {
    let request = proto::CreateEntryRequest { user: user.into(), entry: Some(entry) };
    Ok(clients.schedules.create_entry(request).await?.into_inner().entry.expect("CreateEntry answers with the entry"))
}

async fn get_entry(clients: &mut Clients, name: &str) -> proto::Entry {
    let reply = clients.schedules.get_entry(proto::GetEntryRequest { name: name.into() }).await.expect("GetEntry");
    reply.into_inner().entry.expect("GetEntry answers with the entry")
}

/// The entry once its fire is recorded (last_fire_time and outcome are
/// written when the action ends): the action's
/// events (snapshot.created) are on the timeline a moment before the entry
/// itself is updated.
async fn settled_entry(clients: &mut Clients, name: &str) -> proto::Entry {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let entry = get_entry(clients, name).await;
        if entry.last_fire_time.is_some() || std::time::Instant::now() > deadline {
            return entry;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn list_entries(clients: &mut Clients) -> Vec<proto::Entry> {
    clients
        .schedules
        .list_entries(proto::ListEntriesRequest::default())
        .await
        .expect("ListEntries")
        .into_inner()
        .entries
}

async fn run_entry(clients: &mut Clients, name: &str) -> proto::RunEntryResponse {
    clients.schedules.run_entry(proto::RunEntryRequest { name: name.into() }).await.expect("RunEntry").into_inner()
}

fn kinds(events: &[proto::Event]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

/// (sequence, kind) of each event: what two views of the timeline compare.
fn keys(events: &[proto::Event]) -> Vec<(u64, String)> {
    events.iter().map(|e| (e.sequence, e.kind.clone())).collect()
}

#[track_caller]
fn assert_increasing(events: &[proto::Event]) {
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "sequences not increasing: {sequences:?}");
}

/// Polls ListEvents until the entry has an event of `kind`; returns the
/// first one.
async fn wait_for_event(clients: &mut Clients, entry: &str, kind: &str, timeout: Duration) -> proto::Event {
    let deadline = Instant::now() + timeout;
    loop {
        let events = list_events(clients, "", entry).await;
        if let Some(event) = events.iter().find(|e| e.kind == kind) {
            return event.clone();
        }
        assert!(Instant::now() < deadline, "no {kind} for {entry} within {timeout:?}; events: {:?}", kinds(&events));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn watch(clients: &mut Clients, after_sequence: u64, container: &str) -> tonic::Streaming<proto::Event> {
    clients
        .events
        .watch_events(proto::WatchEventsRequest { after_sequence, container: container.into(), ..Default::default() })
        .await
        .expect("WatchEvents")
        .into_inner()
}

/// The next `count` events of a stream, each within [`EVENT_TIMEOUT`].
async fn receive(stream: &mut tonic::Streaming<proto::Event>, count: usize) -> Vec<proto::Event> {
    let mut got = Vec::new();
    while got.len() < count {
        match tokio::time::timeout(EVENT_TIMEOUT, stream.message()).await {
            Ok(Ok(Some(event))) => got.push(event),
            Ok(Ok(None)) => panic!("the stream ended after {:?}", keys(&got)),
            Ok(Err(status)) => panic!("the stream failed after {:?}: {status:?}", keys(&got)),
            Err(_) => panic!("only {:?} of {count} events in {EVENT_TIMEOUT:?}", keys(&got)),
        }
    }
    got
}

/// Nothing more arrives on the stream for `quiet`.
async fn assert_quiet(stream: &mut tonic::Streaming<proto::Event>, quiet: Duration) {
    if let Ok(next) = tokio::time::timeout(quiet, stream.message()).await {
        panic!("unexpected on the stream: {next:?}");
    }
}

/// A user made with useradd for one test, removed with its home (userdel
/// -r) on drop, also when the test fails.
struct TestUser {
    name: String,
    uid: u32,
    home: PathBuf,
}

impl TestUser {
    fn create() -> TestUser {
        let name = format!("rp-test-{}", std::process::id());
        let useradd = || Command::new("useradd").args(["--create-home", "--shell", "/bin/sh", &name]).status();
        let mut status = useradd().expect("run useradd");
        if status.code() == Some(9) {
            // Left over by an earlier run that had our pid: start clean.
            remove_user(&name);
            status = useradd().expect("run useradd");
        }
        assert!(status.success(), "useradd {name}: {status}");
        // From here on, dropping `user` removes the account.
        let mut user = TestUser { name, uid: u32::MAX, home: PathBuf::new() };
        let account = nix::unistd::User::from_name(&user.name).expect("getpwnam").expect("the new user exists");
        user.uid = account.uid.as_raw();
        user.home = account.dir;
        user
    }
}

fn remove_user(name: &str) {
    match Command::new("userdel").args(["-r", name]).output() {
        // userdel -r warns about a missing mail spool; the account is gone.
        Ok(output) if output.status.success() || output.status.code() == Some(12) => {}
        Ok(output) => eprintln!("userdel -r {name}: {}: {}", output.status, String::from_utf8_lossy(&output.stderr)),
        Err(error) => eprintln!("userdel -r {name}: {error}"),
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        remove_user(&self.name);
    }
}

/// What a command printed on stdout, from a schedule.command detail
/// (`exit status: 0 after 0.0 s\nstdout:\n...`).
fn stdout_of(detail: &str) -> Vec<&str> {
    let (_, after) = detail.split_once("\nstdout:\n").unwrap_or_else(|| panic!("no stdout in {detail:?}"));
    let stdout = after.split_once("\nstderr").map_or(after, |(stdout, _)| stdout);
    stdout.lines().collect()
}

// -------------------------------------------------------------------- tests

/// RunEntry of a snapshot entry: the reply holds the snapshot, the entry its
/// last fire, and the timeline the same events in every view of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_entry_takes_a_snapshot_and_the_timeline_shows_it() {
    if !root_or_skip("run_entry_takes_a_snapshot_and_the_timeline_shows_it") {
        return;
    }
    let fs = LoopBtrfs::create(512 << 20).expect("loop btrfs");
    let volume = fs.create_subvolume("app").expect("subvolume");
    let writers = Writers::start("sched-run", &volume, 2);
    let daemon = TestDaemon::start(daemon_binary()).await.expect("start rollpointd");
    let mut clients = daemon.clients().await.expect("connect");

    // Open before anything happens, from the very beginning.
    let mut stream = watch(&mut clients, 0, "").await;
    let mut container_stream = watch(&mut clients, 0, "app").await;

    register(&mut clients, "app", writers.cgroup.relative_name(), &volume).await.expect("RegisterContainer");
    writers.wait_progress_at_least(20);

    let (schedule, hour) = far_schedule();
    let entry = snapshot_entry("nightly", &schedule, "app", "rollback-point", 7, "pre-migration snapshot");
    let created = create_entry(&mut clients, "root", entry).await.expect("CreateEntry");
    let name = "users/root/entries/nightly";
    assert_eq!((created.name.as_str(), created.id.as_str(), created.time_zone.as_str()), (name, "nightly", "UTC"));
    assert_eq!(created.last_fire_time, None);
    assert_eq!(created.last_outcome, "");
    assert_eq!(time_of(created.next_fire_time.as_ref()), next_daily(Utc::now(), hour), "next fire of {schedule}");

    let before = writers.progress();
    let asked = Utc::now();
    let run = run_entry(&mut clients, name).await;
    let answered = Utc::now();
    assert_eq!(run.outcome, "ok", "detail: {}", run.detail);
    let snapshot = run.snapshot.as_ref().expect("the snapshot in the reply");
    assert_eq!(snapshot.origin(), SnapshotOrigin::Schedule);
    assert_eq!(snapshot.state(), SnapshotState::Ready);
    assert_eq!(
        (snapshot.container.as_str(), snapshot.alias.as_str(), snapshot.comment.as_str()),
        ("app", "rollback-point", "pre-migration snapshot")
    );
    let created_at = time_of(snapshot.create_time.as_ref());
    let expires = time_of(snapshot.expire_time.as_ref()) - created_at;
    assert!((expires - TimeDelta::days(7)).abs() < TimeDelta::seconds(1), "expires {expires} after creation");
    assert!(run.detail.contains(&snapshot.name), "detail {:?}", run.detail);
    let location = Path::new(&snapshot.location);
    assert!(is_subvolume(location), "{} on disk", location.display());
    assert_read_only(location);
    writers.verify_snapshot(location, &before);
    assert_eq!(get_snapshot(&mut clients, "app", "rollback-point").await.expect("by alias").name, snapshot.name);

    let entry = run.entry.as_ref().expect("the entry in the reply");
    let fired = time_of(entry.last_fire_time.as_ref());
    assert!(asked <= fired && fired <= answered, "last fire {fired} outside the call ({asked} to {answered})");
    assert_eq!(entry.last_outcome, "ok");
    assert_eq!(time_of(entry.next_fire_time.as_ref()), next_daily(answered, hour));
    assert_eq!(&get_entry(&mut clients, name).await, entry, "GetEntry agrees with the reply");

    // The timeline, filtered by entry, by container, and by both.
    let by_entry = list_events(&mut clients, "", name).await;
    assert_eq!(kinds(&by_entry), ["schedule.created", "schedule.fired", "snapshot.created"]);
    assert_increasing(&by_entry);
    let [created_event, fired_event, snapshot_event] = &by_entry[..] else { unreachable!() };
    assert_eq!((created_event.actor.as_str(), created_event.detail.as_str()), ("uid:0", schedule.as_str()));
    assert_eq!((fired_event.actor.as_str(), fired_event.outcome.as_str()), ("uid:0", "ok"));
    assert_eq!(
        (snapshot_event.container.as_str(), snapshot_event.snapshot.as_str(), snapshot_event.outcome.as_str()),
        ("app", snapshot.name.as_str(), "ok")
    );
    let by_container = list_events(&mut clients, "app", "").await;
    assert_eq!(
        kinds(&by_container),
        ["container.registered", "schedule.created", "schedule.fired", "snapshot.created"],
        "the container's timeline holds its entry's fires"
    );
    assert_increasing(&by_container);
    let by_both = list_events(&mut clients, "app", name).await;
    assert_eq!(keys(&by_both), keys(&by_entry), "container and entry together");

    // The streams opened before saw the same, in the same order.
    let everything = list_events(&mut clients, "", "").await;
    let streamed = receive(&mut stream, everything.len()).await;
    assert_eq!(streamed, everything, "WatchEvents from 0 vs ListEvents");
    assert_quiet(&mut stream, Duration::from_millis(300)).await;
    let streamed = receive(&mut container_stream, by_container.len()).await;
    assert_eq!(keys(&streamed), keys(&by_container), "WatchEvents of the container vs ListEvents");

    // A reconnect from the middle gets exactly what came after, then live
    // events.
    let middle = fired_event.sequence - 1;
    let later: Vec<proto::Event> = everything.iter().filter(|e| e.sequence > middle).cloned().collect();
    assert_eq!(kinds(&later), ["schedule.fired", "snapshot.created"]);
    let mut reconnected = watch(&mut clients, middle, "").await;
    assert_eq!(receive(&mut reconnected, later.len()).await, later, "after sequence {middle}");
    assert_quiet(&mut reconnected, Duration::from_millis(300)).await;
    let again = run_entry(&mut clients, name).await;
    assert_eq!(again.outcome, "ok", "detail: {}", again.detail);
    let live = receive(&mut reconnected, 2).await;
    assert_eq!(kinds(&live), ["schedule.fired", "snapshot.created"]);
    assert!(live[0].sequence > later[1].sequence);
    let moved = again.snapshot.expect("second snapshot");
    assert_eq!(live[1].snapshot, moved.name);
    assert_eq!(
        get_snapshot(&mut clients, "app", "rollback-point").await.expect("alias").name,
        moved.name,
        "alias moved"
    );
    assert_listing_matches_disk(&mut clients, "app", &snapshot_folder(fs.mount_point(), "app")).await;
    writers.assert_all_advance(&writers.progress());
}

/// One daemon whose entry fires on its own at the minute boundary.
struct Scenario {
    /// First: the writers go before the filesystem.
    writers: Writers,
    daemon: TestDaemon,
    clients: Clients,
    container: String,
    entry: String,
}

impl Scenario {
    async fn start(fs: &LoopBtrfs, container: &str, writers: u32, options: DaemonOptions) -> Scenario {
        let volume = fs.create_subvolume(container).expect("subvolume");
        let writers = Writers::start(&format!("sched-{container}"), &volume, writers);
        let daemon = TestDaemon::start_with(daemon_binary(), options).await.expect("start rollpointd");
        let mut clients = daemon.clients().await.expect("connect");
        register(&mut clients, container, writers.cgroup.relative_name(), &volume).await.expect("RegisterContainer");
        Scenario { writers, daemon, clients, container: container.into(), entry: String::new() }
    }

    async fn create_minutely_entry(&mut self) {
        let entry = snapshot_entry("minutely", "* * * * *", &self.container, "", 1, "every minute");
        let created = create_entry(&mut self.clients, "root", entry).await.expect("CreateEntry");
        self.entry = created.name;
    }

    async fn reconnect(&mut self) {
        self.clients = self.daemon.clients().await.expect("reconnect");
    }
}

/// The three timed scenarios, around one minute boundary B:
/// - `ontime`: the entry fires by itself at B; the lateness is printed;
/// - `late`: the daemon is SIGKILLed before B and restarted after it: its
///   entries and events survived, and B fires once, late;
/// - `missed`: the same with `schedule_grace_seconds = 1`: B is recorded as
///   missed and takes no snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_fires_on_time_late_after_a_crash_and_missed_past_grace() {
    if !root_or_skip("timed_fires_on_time_late_after_a_crash_and_missed_past_grace") {
        return;
    }
    let fs = LoopBtrfs::create(512 << 20).expect("loop btrfs");
    let mut ontime = Scenario::start(&fs, "ontime", 2, DaemonOptions::default()).await;
    let mut late = Scenario::start(&fs, "late", 1, DaemonOptions::default()).await;
    let grace = DaemonOptions::default().config("schedule_grace_seconds = 1\n");
    let mut missed = Scenario::start(&fs, "missed", 1, grace).await;

    // Create and kill well before the boundary, so B is the first occurrence
    // of each entry and the killed daemons cannot have fired it.
    let mut boundary = next_minute(Utc::now());
    if boundary - Utc::now() < TimeDelta::seconds(4) {
        sleep_until(boundary + TimeDelta::milliseconds(200)).await;
        boundary = next_minute(Utc::now());
    }
    for scenario in [&mut ontime, &mut late, &mut missed] {
        scenario.create_minutely_entry().await;
    }
    let before_kill = {
        let entry = get_entry(&mut late.clients, &late.entry).await;
        let events = list_events(&mut late.clients, "", "").await;
        (entry, events)
    };
    assert_eq!(kinds(&before_kill.1), ["container.registered", "schedule.created"]);
    for scenario in [&mut late, &mut missed] {
        scenario.daemon.kill9().expect("kill").expect("the daemon was running");
    }
    assert!(Utc::now() < boundary, "killed before the boundary {boundary}");
    println!("boundary {boundary}; two daemons killed {:.1} s before it", (boundary - Utc::now()).as_seconds_f64());

    // On time, while the others are down.
    let fired = wait_for_event(
        &mut ontime.clients,
        &ontime.entry,
        "schedule.fired",
        (boundary - Utc::now()).to_std().unwrap_or_default() + EVENT_TIMEOUT,
    )
    .await;
    let lateness = time_of(fired.time.as_ref()) - boundary;
    let snapshot_event = wait_for_event(&mut ontime.clients, &ontime.entry, "snapshot.created", EVENT_TIMEOUT).await;
    let snapshot_lag = time_of(snapshot_event.time.as_ref()) - boundary;
    println!(
        "on-time fire: schedule.fired {} ms after {boundary}, snapshot.created {} ms after (frozen {:?})",
        lateness.num_milliseconds(),
        snapshot_lag.num_milliseconds(),
        snapshot_event.frozen_for.as_ref().map(|d| duration_of(Some(d)))
    );
    assert!(lateness >= TimeDelta::zero(), "fired {lateness} before the boundary");
    assert!(lateness < ON_TIME_LIMIT, "fired {} ms late", lateness.num_milliseconds());
    assert_eq!(fired.detail, format!("due {}", boundary.format("%H:%M:%SZ")));
    assert_eq!(fired.actor, "schedule");
    assert!(fired.sequence < snapshot_event.sequence);
    let snapshots = list_snapshots(&mut ontime.clients, "ontime").await;
    assert_eq!(names(&snapshots), std::slice::from_ref(&snapshot_event.snapshot));
    assert_eq!(snapshots[0].origin(), SnapshotOrigin::Schedule);
    assert_eq!(snapshots[0].comment, "every minute");
    let entry = settled_entry(&mut ontime.clients, &ontime.entry).await;
    assert_eq!((time_of(entry.last_fire_time.as_ref()), entry.last_outcome.as_str()), (boundary, "ok"));
    assert_eq!(time_of(entry.next_fire_time.as_ref()), boundary + TimeDelta::minutes(1));

    // Restart the two killed daemons once B is well past.
    sleep_until(boundary + DOWN_PAST_BOUNDARY).await;
    let (restarted_late, restarted_missed) = tokio::join!(late.daemon.restart(), missed.daemon.restart());
    restarted_late.expect("restart late");
    restarted_missed.expect("restart missed");
    late.reconnect().await;
    missed.reconnect().await;

    // late: what was there before the kill survived, and B fired once, late.
    let late_event = wait_for_event(&mut late.clients, &late.entry, "schedule.late", EVENT_TIMEOUT).await;
    let late_snapshot = wait_for_event(&mut late.clients, &late.entry, "snapshot.created", EVENT_TIMEOUT).await;
    let events = list_events(&mut late.clients, "", "").await;
    assert_eq!(keys(&events[..2]), keys(&before_kill.1), "events from before the SIGKILL survive");
    assert_eq!(&events[..2], &before_kill.1[..]);
    let for_entry = list_events(&mut late.clients, "", &late.entry).await;
    assert_eq!(kinds(&for_entry), ["schedule.created", "schedule.late", "snapshot.created"]);
    assert_increasing(&events);
    let seconds_late: f64 = late_event
        .detail
        .split_once("late by ")
        .and_then(|(_, rest)| rest.strip_suffix(" s"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no lateness in {:?}", late_event.detail));
    println!(
        "late fire after the restart: {:?} (outcome {}); snapshot {} at +{} ms",
        late_event.detail,
        late_event.outcome,
        late_snapshot.snapshot,
        (time_of(late_snapshot.time.as_ref()) - boundary).num_milliseconds()
    );
    assert!(late_event.detail.starts_with(&format!("due {boundary}")), "detail {:?}", late_event.detail);
    assert!((2.0..60.0).contains(&seconds_late), "late by {seconds_late} s");
    assert_eq!((late_event.outcome.as_str(), late_event.actor.as_str()), ("late", "schedule"));
    let entry = settled_entry(&mut late.clients, &late.entry).await;
    assert_eq!((time_of(entry.last_fire_time.as_ref()), entry.last_outcome.as_str()), (boundary, "ok"));
    assert_eq!(
        (&entry.schedule, &entry.action, &entry.comment, entry.enabled),
        (&before_kill.0.schedule, &before_kill.0.action, &before_kill.0.comment, before_kill.0.enabled),
        "the entry survived the SIGKILL"
    );
    let snapshots = list_snapshots(&mut late.clients, "late").await;
    assert_eq!(names(&snapshots), std::slice::from_ref(&late_snapshot.snapshot), "exactly one snapshot for B");
    assert!(is_subvolume(Path::new(&snapshots[0].location)));

    // missed: B is recorded missed, and nothing is taken for it.
    let missed_event = wait_for_event(&mut missed.clients, &missed.entry, "schedule.missed", EVENT_TIMEOUT).await;
    println!("past a 1 s grace: {:?}", missed_event.detail);
    assert_eq!(missed_event.outcome, "missed");
    assert!(missed_event.detail.starts_with(&format!("due {boundary} to {boundary}")), "{:?}", missed_event.detail);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let for_entry = list_events(&mut missed.clients, "", &missed.entry).await;
    assert_eq!(kinds(&for_entry), ["schedule.created", "schedule.missed"]);
    let taken = list_snapshots(&mut missed.clients, "missed").await;
    assert!(taken.is_empty(), "no snapshot for a missed occurrence: {:?}", names(&taken));
    let entry = get_entry(&mut missed.clients, &missed.entry).await;
    assert_eq!(entry.last_fire_time, None);
    assert!(entry.last_outcome.starts_with("missed"), "last outcome {:?}", entry.last_outcome);
    assert_eq!(time_of(entry.next_fire_time.as_ref()), boundary + TimeDelta::minutes(1));

    for scenario in [&ontime, &late, &missed] {
        assert!(!scenario.writers.frozen(), "{} left frozen", scenario.container);
    }
}

/// Command entries run as their user with a clean environment and a
/// timeout; a token over TCP may not set or run them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_entries_run_as_their_user_and_only_root_or_the_user_may_set_them() {
    if !root_or_skip("command_entries_run_as_their_user_and_only_root_or_the_user_may_set_them") {
        return;
    }
    let user = TestUser::create();
    let port = free_loopback_port();
    let options = DaemonOptions::default()
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        // Must not reach the command either.
        .env("ROLLPOINT_TEST_SECRET", "leaked");
    let daemon = TestDaemon::start_with(daemon_binary(), options).await.expect("start rollpointd");
    let mut clients = daemon.clients().await.expect("connect");

    let entry = command_entry("env", "id -u; echo $HOME; pwd; env | sort", 30);
    let created = create_entry(&mut clients, &user.name, entry).await.expect("CreateEntry over the socket as root");
    let name = format!("users/{}/entries/env", user.name);
    assert_eq!(created.name, name);
    assert_eq!(created.enabled, Some(true), "an entry without `enabled` is live");
    assert!(created.next_fire_time.is_some(), "and has a next firing");

    let run = run_entry(&mut clients, &name).await;
    assert_eq!(run.outcome, "ok", "detail: {}", run.detail);
    assert!(run.snapshot.is_none());
    assert_eq!(run.entry.as_ref().expect("entry").last_outcome, "ok");
    let commands = list_events(&mut clients, "", &name).await;
    assert_eq!(kinds(&commands), ["schedule.created", "schedule.fired", "schedule.command"]);
    let event = &commands[2];
    assert_eq!((event.outcome.as_str(), event.actor.as_str()), ("ok", format!("user:{}", user.name).as_str()));
    assert_eq!(event.detail, run.detail);
    let lines = stdout_of(&event.detail);
    let home = user.home.to_str().expect("utf-8 home");
    assert_eq!(lines[..3], [user.uid.to_string().as_str(), home, home], "uid, $HOME, working directory");
    let mut environment: BTreeMap<&str, &str> =
        lines[3..].iter().map(|line| line.split_once('=').unwrap_or_else(|| panic!("env line {line:?}"))).collect();
    // rollpointd's own, which change with each firing.
    let fire_time = environment.remove("ROLLPOINT_FIRE_TIME").expect("ROLLPOINT_FIRE_TIME");
    assert!(chrono::DateTime::parse_from_rfc3339(fire_time).is_ok(), "{fire_time}");
    let run_id = environment.remove("ROLLPOINT_RUN_ID").expect("ROLLPOINT_RUN_ID");
    assert_eq!(run_id.len(), 16, "{run_id}");
    let entry_name = format!("users/{}/entries/env", user.name);
    let expected = BTreeMap::from([
        ("ROLLPOINT_ENTRY", entry_name.as_str()),
        ("HOME", home),
        ("LOGNAME", user.name.as_str()),
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("PWD", home),
        ("SHELL", "/bin/sh"),
        ("USER", user.name.as_str()),
    ]);
    assert_eq!(environment, expected, "the command's whole environment");
    let ours: BTreeSet<String> =
        std::env::vars().map(|(k, _)| k).filter(|k| !expected.contains_key(k.as_str())).collect();
    assert!(ours.iter().any(|k| k.starts_with("CARGO")), "the test runs under cargo: {ours:?}");

    // A command that outlives its timeout is killed and fails.
    let created =
        create_entry(&mut clients, &user.name, command_entry("slow", "sleep 5", 1)).await.expect("CreateEntry");
    let started = Instant::now();
    let run = run_entry(&mut clients, &created.name).await;
    let took = started.elapsed();
    println!("command with a 1 s timeout: {:?} in {took:?}", run.detail);
    assert_eq!(run.outcome, "failed");
    assert!(run.detail.contains("timed out"), "detail {:?}", run.detail);
    assert!(took < Duration::from_secs(4), "RunEntry took {took:?}: the sleep was not killed");
    let last_outcome = run.entry.as_ref().expect("entry").last_outcome.clone();
    assert!(last_outcome.starts_with("failed: timed out"), "last outcome {last_outcome:?}");
    let event = wait_for_event(&mut clients, &created.name, "schedule.command", EVENT_TIMEOUT).await;
    assert_eq!(event.outcome, "failed");

    // An admin token over TCP may read entries, but not set or run commands.
    let token = admin_token(&mut clients, "ops").await;
    let tcp = Target::Tcp(format!("http://127.0.0.1:{port}"));
    let mut remote = Clients::connect_with_token(&tcp, Some(&token)).await.expect("connect over TCP");
    assert_eq!(list_entries(&mut remote).await.len(), 2, "the token works");
    let events_before = list_events(&mut clients, "", "").await;
    for target_user in [user.name.as_str(), "root"] {
        let refused = create_entry(&mut remote, target_user, command_entry("remote", "id", 30)).await;
        let status = expect_status(refused.map(tonic::Response::new), Code::PermissionDenied, &["Unix socket"]);
        println!("command entry for {target_user} by a token: {}", status.message());
    }
    let refused = remote.schedules.run_entry(proto::RunEntryRequest { name: name.clone() }).await;
    expect_status(refused, Code::PermissionDenied, &["Unix socket"]);
    let refused = remote.schedules.delete_entry(proto::DeleteEntryRequest { name: name.clone() }).await;
    expect_status(refused, Code::PermissionDenied, &["Unix socket"]);
    let refused = remote
        .schedules
        .update_entry(proto::UpdateEntryRequest {
            name: name.clone(),
            entry: Some(proto::Entry { comment: "changed".into(), ..Default::default() }),
            update_mask: vec!["comment".into()],
        })
        .await;
    expect_status(refused, Code::PermissionDenied, &["Unix socket"]);
    assert_eq!(list_entries(&mut clients).await.len(), 2, "nothing created");
    assert_eq!(get_entry(&mut clients, &name).await.comment, "", "nothing changed");
    assert_eq!(list_events(&mut clients, "", "").await, events_before, "nothing ran");
}

/// Schedules that cannot be used are refused with the field named, and the
/// daemon goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_schedules_are_refused_with_the_field_named() {
    if !root_or_skip("bad_schedules_are_refused_with_the_field_named") {
        return;
    }
    let mut daemon = TestDaemon::start(daemon_binary()).await.expect("start rollpointd");
    let mut clients = daemon.clients().await.expect("connect");
    let cases: [(&str, &str, &[&str]); 5] = [
        ("61 * * * *", "", &["entry.schedule: minute: ", "61"]),
        ("* * *", "", &["entry.schedule: ", "5 fields", "got 3"]),
        ("0 0 * * 8", "", &["entry.schedule: day-of-week: ", "8"]),
        ("0 0 30 2 *", "", &["entry.schedule: day-of-month: ", "never"]),
        ("0 0 * * *", "Mars/Olympus", &["entry.time_zone: ", "Mars/Olympus"]),
    ];
    for (schedule, time_zone, needles) in cases {
        let mut entry = snapshot_entry("", schedule, "app", "", 0, "");
        entry.time_zone = time_zone.into();
        let status = expect_status(
            create_entry(&mut clients, "root", entry).await.map(tonic::Response::new),
            Code::InvalidArgument,
            needles,
        );
        println!("{schedule:?} in {time_zone:?}: {}", status.message());
    }
    assert!(list_entries(&mut clients).await.is_empty(), "nothing was created");
    assert!(list_events(&mut clients, "", "").await.is_empty(), "nothing happened");

    // An update to a bad schedule is refused the same way and changes nothing.
    let good = create_entry(&mut clients, "root", snapshot_entry("good", "*/5 * * * *", "app", "", 0, ""))
        .await
        .expect("a good entry after the bad ones");
    let refused = clients
        .schedules
        .update_entry(proto::UpdateEntryRequest {
            name: good.name.clone(),
            entry: Some(proto::Entry { schedule: "61 * * * *".into(), ..Default::default() }),
            update_mask: vec!["schedule".into()],
        })
        .await;
    expect_status(refused, Code::InvalidArgument, &["entry.schedule: minute: "]);
    let refused = clients
        .schedules
        .update_entry(proto::UpdateEntryRequest {
            name: good.name.clone(),
            entry: Some(proto::Entry { time_zone: "Mars/Olympus".into(), ..Default::default() }),
            update_mask: vec!["time_zone".into()],
        })
        .await;
    expect_status(refused, Code::InvalidArgument, &["entry.time_zone: "]);
    // next_fire_time moves with the clock; everything else must not.
    let without_next = |entry: proto::Entry| proto::Entry { next_fire_time: None, ..entry };
    let good = without_next(good);
    assert_eq!(without_next(get_entry(&mut clients, &good.name).await), good, "the entry is unchanged");
    assert!(daemon.is_running(), "the daemon still runs");
    let listed: Vec<proto::Entry> = list_entries(&mut clients).await.into_iter().map(without_next).collect();
    assert_eq!(listed, [good]);
}
