//! Discovery against real managers: a real Podman (storage of its own, runc)
//! running busybox containers with a volume on a loop-backed btrfs, found,
//! registered, snapshotted and restored through `podman stop`/`start` by the
//! real daemon; and the daemon following Podman by itself (`auto_register`),
//! marking a container that vanished. Root only; Podman comes from
//! scripts/install-deps. (systemd-machined is checked in the systemd VM,
//! tests/vm/systemd, and against a stand-in on a private bus in
//! tests/systemd_lifecycle.rs.)

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use rollpoint::testkit::daemon::{DaemonOptions, TestDaemon};
use rollpoint::testkit::loop_btrfs::LoopBtrfs;
use rollpoint::testkit::podman::{self, TestPodman};
use rollpoint::testkit::{root_or_skip, REQUIRE_ROOT_ENV};
use serde_json::Value;

/// Appends "N TOKEN" lines to /data/log, N going on from the lines already
/// there, TOKEN new at each start; leaves at once on SIGTERM.
const WRITER: &str = "trap 'exit 0' TERM; t=$(date +%s%N); i=$(cat /data/log 2>/dev/null | wc -l); \
     while true; do i=$((i+1)); echo \"$i $t\" >> /data/log; sleep 0.05; done";

/// Podman, or a skip (a failure when root tests are required).
fn podman_or_skip(test: &str) -> Option<std::path::PathBuf> {
    if !root_or_skip(test) {
        return None;
    }
    let found = podman::available();
    if found.is_none() {
        assert!(
            std::env::var(REQUIRE_ROOT_ENV).as_deref() != Ok("1"),
            "{test}: needs podman, runc and busybox-static (scripts/install-deps)"
        );
        eprintln!("skipping {test}: podman, runc or busybox-static is missing");
    }
    found
}

fn config(podman: &TestPodman, extra: &str) -> String {
    let argv: Vec<String> = podman.argv().iter().map(|a| format!("{a:?}")).collect();
    format!(
        "[discovery]\nsources = [\"podman\"]\npodman = [{}]\nlifecycle_timeout_seconds = 20\n{extra}",
        argv.join(", ")
    )
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
}

/// Waits until `path` has at least `count` lines.
fn wait_lines(path: &Path, count: usize) -> Vec<String> {
    let deadline = Instant::now() + PROGRESS_TIMEOUT;
    loop {
        let now = lines(path);
        if now.len() >= count {
            return now;
        }
        assert!(Instant::now() < deadline, "{} has {} lines, not {count}", path.display(), now.len());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn found<'a>(listing: &'a Value, name: &str) -> &'a Value {
    listing["containers"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("{name} not discovered: {listing}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_containers_are_discovered_registered_snapshotted_and_restored() {
    let test = "podman_containers_are_discovered_registered_snapshotted_and_restored";
    let Some(podman_path) = podman_or_skip(test) else { return };
    let fs = LoopBtrfs::create(512 << 20).expect("loop btrfs");
    let data = fs.create_subvolume("web-data").unwrap();
    let plain = tempfile::tempdir().unwrap();
    let podman = TestPodman::start(&podman_path);
    podman.run_container("Web_1", &[format!("{}:/data", data.display())], WRITER);
    podman.run_container("scratch", &[], "trap 'exit 0' TERM; while true; do sleep 0.1; done");
    podman.run_container("plain", &[format!("{}:/data", plain.path().display())], "sleep 600");
    podman.ok(&["create", "--name", "idle", podman::IMAGE, "/bin/true"]);
    let daemon = TestDaemon::start_with(daemon_binary(), DaemonOptions::default().config(config(&podman, "")))
        .await
        .expect("daemon");

    let listing = succeeded(cli(&daemon, &["--json", "discover"]));
    assert_eq!(listing["unavailable"], Value::Array(vec![]), "{listing}");
    let web = found(&listing, "Web_1");
    assert_eq!(web["suggested_id"], "web-1");
    assert_eq!(web["volume"], data.display().to_string(), "{web}");
    assert_eq!(web["problem"], Value::Null, "{web}");
    assert_eq!(web["lifecycle"]["kind"], "podman", "{web}");
    let cgroup = web["cgroup"].as_str().unwrap();
    let pid = podman.inspect("Web_1")["State"]["Pid"].as_u64().unwrap();
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(own.lines().any(|l| l == format!("0::{cgroup}")), "{cgroup} is not the group of {pid}: {own}");
    let why = |name: &str| found(&listing, name)["problem"].as_str().unwrap_or_default().to_owned();
    assert!(why("scratch").contains("no volume"), "{}", why("scratch"));
    assert!(why("plain").contains("none of its volumes can be snapshotted"), "{}", why("plain"));
    assert!(why("idle").contains("not running"), "{}", why("idle"));
    let text = String::from_utf8(cli(&daemon, &["discover"]).stdout).unwrap();
    assert!(text.contains("can register"), "{text}");

    let registered = succeeded(cli(&daemon, &["--json", "discover", "--register"]));
    assert_eq!(found(&registered, "Web_1")["registered_now"], true, "{registered}");
    assert_eq!(found(&registered, "scratch")["registered_as"], Value::Null, "{registered}");
    let again = succeeded(cli(&daemon, &["--json", "discover", "--register"]));
    assert_eq!(found(&again, "Web_1")["registered_as"], "web-1", "{again}");
    assert_eq!(found(&again, "Web_1")["registered_now"], false, "registered twice: {again}");
    let container = succeeded(cli(&daemon, &["--json", "container", "show", "web-1"]));
    assert_eq!(container["discovered"]["source"], "podman", "{container}");
    assert_eq!(container["discovered"]["name"], "Web_1", "{container}");

    // Snapshot while it writes; write on; restore through podman stop/start.
    let log = data.join("log");
    wait_lines(&log, 10);
    let snapshot = succeeded(cli(&daemon, &["--json", "snapshot", "create", "web-1", "--name", "before"]));
    let at_snapshot = lines(&Path::new(snapshot["location"].as_str().unwrap()).join("log"));
    let first_token = at_snapshot[0].split(' ').nth(1).unwrap().to_owned();
    wait_lines(&log, at_snapshot.len() + 10);
    let restored = succeeded(cli(&daemon, &["--json", "restore", "web-1", "before"]));
    assert!(restored["pre_restore_snapshot"].is_string(), "{restored}");
    let state = podman.inspect("Web_1");
    assert_eq!(state["State"]["Running"], true, "podman start did not run: {state}");
    assert_ne!(state["State"]["Pid"].as_u64(), Some(pid), "the container was not restarted");
    // The restarted writer went on from the snapshot's last line, under a
    // new token: what was written after the snapshot is gone.
    let after = wait_lines(&log, at_snapshot.len() + 3);
    assert_eq!(after[..at_snapshot.len()], at_snapshot[..], "the snapshot is not where the log restarts");
    let next = &after[at_snapshot.len()];
    assert_eq!(next.split(' ').next(), Some((at_snapshot.len() + 1).to_string().as_str()), "{next}");
    assert_ne!(next.split(' ').nth(1), Some(first_token.as_str()), "line {next} is from before the restore");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_follows_podman_and_marks_what_vanished() {
    let test = "the_daemon_follows_podman_and_marks_what_vanished";
    let Some(podman_path) = podman_or_skip(test) else { return };
    let fs = LoopBtrfs::create(512 << 20).expect("loop btrfs");
    let data = fs.create_subvolume("db-data").unwrap();
    let podman = TestPodman::start(&podman_path);
    podman.run_container("db", &[format!("{}:/data", data.display())], WRITER);
    let settings = config(&podman, "auto_register = [\"podman\"]\ninterval_seconds = 5\n");
    let daemon =
        TestDaemon::start_with(daemon_binary(), DaemonOptions::default().config(settings)).await.expect("daemon");

    // Registered by the daemon itself, then snapshotted.
    let registered = eventually(Duration::from_secs(60), || {
        let container = cli(&daemon, &["--json", "container", "show", "db"]);
        container.status.success().then(|| succeeded(container))
    });
    assert_eq!(registered["discovered"]["vanish_time"], Value::Null, "{registered}");
    succeeded(cli(&daemon, &["--json", "snapshot", "create", "db", "--name", "kept"]));

    // Gone from Podman: marked, with its snapshots kept.
    podman.ok(&["rm", "--force", "--time", "0", "db"]);
    let vanished = eventually(Duration::from_secs(60), || {
        let container = succeeded(cli(&daemon, &["--json", "container", "show", "db"]));
        container["discovered"]["vanish_time"].is_string().then_some(container)
    });
    assert_eq!(vanished["snapshot_count"], 1, "{vanished}");
    let events = succeeded(cli(&daemon, &["--json", "events", "--container", "db"]));
    let kinds: Vec<&str> = events.as_array().unwrap().iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(kinds.contains(&"container.registered") && kinds.contains(&"container.vanished"), "{kinds:?}");
    let registered_by = events.as_array().unwrap().iter().find(|e| e["kind"] == "container.registered").unwrap();
    assert_eq!(registered_by["actor"], "discovery", "{registered_by}");

    // Made again under the same name: back, at its new cgroup.
    podman.run_container("db", &[format!("{}:/data", data.display())], WRITER);
    let back = eventually(Duration::from_secs(60), || {
        let container = succeeded(cli(&daemon, &["--json", "container", "show", "db"]));
        container["discovered"]["vanish_time"].is_null().then_some(container)
    });
    let pid = podman.inspect("db")["State"]["Pid"].as_u64().unwrap();
    let group = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let v2 = group.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    assert!(back["cgroup"].as_str().unwrap().ends_with(v2), "{back} is not at {v2}");
    succeeded(cli(&daemon, &["--json", "snapshot", "create", "db", "--name", "after-return"]));
}

/// Polls `check` every 200 ms until it gives a value, failing after `limit`.
fn eventually<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
