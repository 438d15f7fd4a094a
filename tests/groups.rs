//! Groups on a real daemon: two containers (real cgroups, each with its own
//! loop-backed btrfs) whose writers append the same sequence numbers to
//! their own volumes in lockstep (the app writes n, then the database n,
//! then the app n+1...). A group snapshot is one instant: the two files end
//! at the same record (or the app's one ahead, the record in flight), where
//! two snapshots one after the other would be hundreds of records apart.
//! A group restore stops the members in reverse order, swaps both volumes,
//! starts them in order, and is undone by restoring its pre-restore
//! snapshot. SIGKILL at each step of a group create and a group restore:
//! after the restart nothing is frozen, and both members have the snapshot
//! or neither, both volumes are restored or neither. Root only.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::curl::{curl, Via};
use common::*;
use rollpoint::testkit::cgroup::TestCgroup;
use rollpoint::testkit::daemon::{DaemonOptions, TestDaemon, GROUP_CREATE_FAULT_POINTS, GROUP_RESTORE_FAULT_POINTS};
use rollpoint::testkit::loop_btrfs::LoopBtrfs;
use rollpoint::testkit::root_or_skip;
use serde_json::Value;

/// The app: writes n, hands it to the database, waits for it back.
const LEADER: &str = r#"exec 3<>"$1/db-to-app" 4<>"$1/app-to-db"; n=0
while :; do n=$((n+1)); echo $n >> "$2/seq"; echo $n >&4; read x <&3; done"#;
/// The database: writes what the app handed over, hands it back.
const FOLLOWER: &str = r#"exec 3<>"$1/app-to-db" 4<>"$1/db-to-app"
while read n <&3; do echo $n >> "$2/seq"; echo $n >&4; done"#;

/// One member: its filesystem, volume and cgroup (dropped first).
struct Member {
    id: &'static str,
    cgroup: TestCgroup,
    volume: PathBuf,
    _fs: LoopBtrfs,
}

/// The two members, their writers' pipes, and a file where their
/// lifecycle commands note each stop and start (a start leaves a sleeping
/// process in the member's cgroup).
struct Shop {
    app: Member,
    db: Member,
    pipes: tempfile::TempDir,
    order: PathBuf,
}

impl Shop {
    fn new(prefix: &str) -> Shop {
        let member = |name: &'static str| {
            let fs = LoopBtrfs::create(256 << 20).expect("loop btrfs");
            let volume = fs.create_subvolume(name).unwrap();
            Member { id: name, cgroup: TestCgroup::create(&format!("{prefix}-{name}")).unwrap(), volume, _fs: fs }
        };
        let pipes = tempfile::tempdir().unwrap();
        for pipe in ["app-to-db", "db-to-app"] {
            nix::unistd::mkfifo(&pipes.path().join(pipe), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        }
        let order = pipes.path().join("order");
        Shop { app: member("app"), db: member("db"), pipes, order }
    }

    /// Starts both writers (the database first: it waits for the app).
    #[allow(clippy::zombie_processes, reason = "the TestCgroup kills and reaps what it spawned")]
    fn start_writers(&self) {
        for (member, script) in [(&self.db, FOLLOWER), (&self.app, LEADER)] {
            let mut command = Command::new("/bin/sh");
            command.arg("-c").arg(script).arg("writer").arg(self.pipes.path()).arg(&member.volume);
            member.cgroup.spawn(&mut command).expect("start a writer");
        }
    }

    /// Registers both, with lifecycle commands that note their calls, and
    /// makes the group `shop` (the database starts first).
    fn register(&self, daemon: &TestDaemon) {
        for (name, member) in [("app", &self.app), ("db", &self.db)] {
            let note = |verb: &str| format!("/bin/sh -c 'echo {verb}-{name} >> {}'", self.order.display());
            // The start leaves a process in the member's cgroup (the
            // lifecycle runs it there), for its post_restore hook to run in.
            let start = format!(
                "/bin/sh -c 'echo start-{name} >> {}; sleep 600 </dev/null >/dev/null 2>&1 &'",
                self.order.display()
            );
            succeeded(cli(
                daemon,
                &[
                    "--json",
                    "container",
                    "register",
                    name,
                    "--cgroup",
                    member.cgroup.relative_name(),
                    "--subvolume",
                    member.volume.to_str().unwrap(),
                    "--stop-command",
                    &note("stop"),
                    "--start-command",
                    &start,
                ],
            ));
        }
        let group = succeeded(cli(daemon, &["--json", "group", "set", "shop", "db", "app"]));
        assert_eq!(group["members"], serde_json::json!(["db", "app"]), "{group}");
    }

    fn records(&self) -> (u64, u64) {
        (last_record(&self.app.volume), last_record(&self.db.volume))
    }
}

fn last_record(folder: &Path) -> u64 {
    std::fs::read_to_string(folder.join("seq"))
        .unwrap_or_default()
        .lines()
        .last()
        .map_or(0, |line| line.parse().unwrap_or_else(|_| panic!("bad record {line:?} in {}", folder.display())))
}

/// Waits until the app has written `count` records.
fn wait_records(shop: &Shop, count: u64) {
    let deadline = Instant::now() + PROGRESS_TIMEOUT;
    while last_record(&shop.app.volume) < count {
        assert!(Instant::now() < deadline, "the writers did not reach record {count}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn location(snapshot: &Value) -> PathBuf {
    PathBuf::from(snapshot["location"].as_str().unwrap())
}

/// The members' snapshots as `snapshot list` shows them, by name.
fn listed(daemon: &TestDaemon, container: &str) -> Vec<String> {
    let all = succeeded(cli(daemon, &["--json", "snapshot", "list", container]));
    all.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_is_snapshotted_at_one_instant_and_restored_as_one() {
    if !root_or_skip("a_group_is_snapshotted_at_one_instant_and_restored_as_one") {
        return;
    }
    let shop = Shop::new("group");
    let daemon = TestDaemon::start(daemon_binary()).await.expect("daemon");
    shop.register(&daemon);
    shop.start_writers();
    wait_records(&shop, 200);

    // One instant: the two files end at the same record, or the app's one
    // ahead (written, not yet handed over).
    let taken = succeeded(cli(&daemon, &["--json", "group", "snapshot", "shop", "--name", "v1", "--alias", "good"]));
    let snapshots = taken["snapshots"].as_array().unwrap();
    let containers: Vec<&str> = snapshots.iter().map(|s| s["container"].as_str().unwrap()).collect();
    assert_eq!(containers, ["db", "app"], "{taken}");
    assert!(snapshots.iter().all(|s| s["group"] == "shop" && s["name"] == "v1"), "{taken}");
    assert_eq!(snapshots[0]["create_time"], snapshots[1]["create_time"], "one instant, one time: {taken}");
    let (db_at, app_at) = (last_record(&location(&snapshots[0])), last_record(&location(&snapshots[1])));
    println!("group snapshot v1: app at record {app_at}, db at {db_at}");
    assert!(app_at == db_at || app_at == db_at + 1, "not one instant: app at {app_at}, db at {db_at}");
    assert!(!shop.app.cgroup.is_frozen().unwrap() && !shop.db.cgroup.is_frozen().unwrap(), "left frozen");
    wait_records(&shop, app_at + 100);

    // For contrast, each alone, one after the other: far apart.
    let app_alone = succeeded(cli(&daemon, &["--json", "snapshot", "create", "app", "--name", "alone"]));
    wait_records(&shop, last_record(&location(&app_alone)) + 100);
    let db_alone = succeeded(cli(&daemon, &["--json", "snapshot", "create", "db", "--name", "alone"]));
    let (app_alone, db_alone) = (last_record(&location(&app_alone)), last_record(&location(&db_alone)));
    println!("one after the other: app at {app_alone}, db at {db_alone}");
    assert!(db_alone > app_alone + 1, "the contrast did not show: app {app_alone}, db {db_alone}");

    // All or nothing: a name one member has already is refused for both.
    let refused = cli(&daemon, &["--json", "group", "snapshot", "shop", "--name", "alone"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("alone"), "{refused:?}");
    assert_eq!(listed(&daemon, "app").iter().filter(|n| *n == "alone").count(), 1);
    // A snapshot of one member alone cannot restore the group.
    let alone = cli(&daemon, &["group", "restore", "shop", "alone"]);
    assert!(String::from_utf8_lossy(&alone.stderr).contains("was not taken with group shop"), "{alone:?}");

    // Restore the group to v1 (by its alias): stopped in reverse, started
    // in order, both volumes at v1.
    std::fs::write(&shop.order, "").unwrap();
    let restored = succeeded(cli(&daemon, &["--json", "group", "restore", "shop", "good"]));
    assert_eq!(restored["snapshot"], "v1", "{restored}");
    let calls = std::fs::read_to_string(&shop.order).unwrap();
    assert_eq!(calls.lines().collect::<Vec<_>>(), ["stop-app", "stop-db", "start-db", "start-app"], "{calls}");
    assert_eq!(shop.records(), (app_at, db_at), "the volumes are not at v1");
    let undo = restored["pre_restore_snapshot"].as_str().unwrap().to_owned();
    let before = succeeded(cli(&daemon, &["--json", "snapshot", "show", "app", &undo]));
    assert_eq!(before["group"], "shop", "{before}");

    // Undone as one.
    let was = (last_record(&location(&before)), {
        let db = succeeded(cli(&daemon, &["--json", "snapshot", "show", "db", &undo]));
        last_record(&location(&db))
    });
    assert!(was.0 > app_at, "the pre-restore snapshot holds the later state");
    succeeded(cli(&daemon, &["--json", "group", "restore", "shop", &undo]));
    assert_eq!(shop.records(), was, "the undo did not bring both back");

    // The same through REST, as curl speaks it.
    let via = Via::Socket(daemon.socket().to_path_buf());
    let (status, taken) =
        curl(&via, "POST", "/api/v1/groups/shop/snapshots", Some(r#"{"alias": "rest", "expiry": 7}"#));
    assert_eq!(status, 200, "{taken}");
    let name = taken["snapshots"][0]["name"].as_str().unwrap().to_owned();
    assert!(taken["snapshots"].as_array().unwrap().iter().all(|s| s["name"] == name.as_str() && s["alias"] == "rest"));
    let (status, restored) = curl(&via, "PATCH", "/api/v1/groups/shop/snapshots/rest", None);
    assert_eq!((status, restored["snapshot"].as_str()), (200, Some(name.as_str())), "{restored}");
    let (status, refused) = curl(&via, "PUT", "/api/v1/groups/other", Some(r#"{"members": ["app"]}"#));
    assert_eq!(status, 409, "app is in shop already: {refused}");

    // A schedule entry takes the group's snapshot.
    let entry =
        ["--json", "schedule", "add", "--schedule", "55 2 * * *", "--snapshot-group", "shop", "--id", "nightly"];
    let added = succeeded(cli(&daemon, &entry));
    assert_eq!(added["action"]["group"], "shop", "{added}");
    let fired = succeeded(cli(&daemon, &["--json", "schedule", "run", "nightly"]));
    assert_eq!(fired["outcome"], "ok", "{fired}");
    let name = fired["snapshot"]["name"].as_str().unwrap().to_owned();
    for member in ["app", "db"] {
        let shown = succeeded(cli(&daemon, &["--json", "snapshot", "show", member, &name]));
        assert_eq!((shown["group"].as_str(), shown["origin"].as_str()), (Some("shop"), Some("schedule")), "{shown}");
    }

    let groups = succeeded(cli(&daemon, &["--json", "group", "list"]));
    assert_eq!(groups, serde_json::json!([{"name": "shop", "members": ["db", "app"]}]));
    succeeded(cli(&daemon, &["--json", "group", "delete", "shop"]));
    let container = succeeded(cli(&daemon, &["--json", "container", "show", "app"]));
    assert!(container.get("group").is_none(), "{container}");
    assert_eq!(listed(&daemon, "app").iter().filter(|n| *n == "v1").count(), 1, "snapshots stay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_step_leaves_the_group_whole() {
    if !root_or_skip("a_crash_at_any_step_leaves_the_group_whole") {
        return;
    }
    for point in GROUP_CREATE_FAULT_POINTS {
        let shop = Shop::new("gcrash");
        let mut daemon = TestDaemon::start(daemon_binary()).await.expect("daemon");
        shop.register(&daemon);
        shop.start_writers();
        wait_records(&shop, 50);
        daemon.restart_with(DaemonOptions::fault(point)).await.expect("restart armed");
        let call = cli(&daemon, &["group", "snapshot", "shop", "--name", "crashed"]);
        assert!(!call.status.success(), "{point}: the call succeeded");
        expect_fault_death(&mut daemon, point);
        daemon.restart_with(DaemonOptions::default()).await.expect("restart");
        assert!(!shop.app.cgroup.is_frozen().unwrap() && !shop.db.cgroup.is_frozen().unwrap(), "{point}: frozen");
        let has = |container: &str| listed(&daemon, container).contains(&"crashed".to_owned());
        let on_disk = |member: &Member| {
            member.volume.parent().unwrap().join(".rollpoint").join(member.id).join("crashed").exists()
        };
        let (app, db) = (has("app"), has("db"));
        println!("{point}: app has it {app}, db has it {db}");
        assert_eq!(app, db, "{point}: one member has the snapshot, the other not");
        assert_eq!((on_disk(&shop.app), on_disk(&shop.db)), (app, db), "{point}: disk and record disagree");
        wait_records(&shop, last_record(&shop.app.volume) + 20);
    }
    for point in GROUP_RESTORE_FAULT_POINTS {
        let shop = Shop::new("rcrash");
        let mut daemon = TestDaemon::start(daemon_binary()).await.expect("daemon");
        shop.register(&daemon);
        // Each member's restore hooks note that they ran, with the key.
        let hooks = shop.pipes.path().join("hooks");
        for name in ["app", "db"] {
            let note =
                format!(r#"/bin/sh -c 'echo "$ROLLPOINT_HOOK-{name} $ROLLPOINT_RESTORE_ID" >> {}'"#, hooks.display());
            let args = ["--json", "container", "update", name, "--pre-restore", &note, "--post-restore", &note];
            succeeded(cli(&daemon, &args));
        }
        shop.start_writers();
        wait_records(&shop, 50);
        let taken = succeeded(cli(&daemon, &["--json", "group", "snapshot", "shop", "--name", "target"]));
        let target = (last_record(&location(&taken["snapshots"][1])), last_record(&location(&taken["snapshots"][0])));
        wait_records(&shop, target.0 + 50);
        daemon.restart_with(DaemonOptions::fault(point)).await.expect("restart armed");
        let call = cli(&daemon, &["group", "restore", "shop", "target"]);
        assert!(!call.status.success(), "{point}: the call succeeded");
        expect_fault_death(&mut daemon, point);
        // The writers may still run (the crash came before the stop):
        // what they write now is not what is checked.
        let now = shop.records();
        daemon.restart_with(DaemonOptions::default()).await.expect("restart");
        let after = shop.records();
        let restored = after == target;
        let ran = std::fs::read_to_string(&hooks).unwrap_or_default();
        let key =
            format!(" group-shop-{}", ran.lines().next().and_then(|l| l.split("group-shop-").nth(1)).unwrap_or("?"));
        let ran: Vec<String> = ran.lines().map(|line| line.replace(&key, " K")).collect();
        println!("{point}: {}, hooks {ran:?}", if restored { "finished" } else { "rolled back" });
        // Each hook once per member, whatever the point: recovery runs the
        // post_restore hooks of the restore it finishes, with its key.
        let mut want = vec!["pre_restore-db K", "pre_restore-app K"];
        if restored {
            want.extend(["post_restore-db K", "post_restore-app K"]);
        }
        assert_eq!(ran, want, "{point}: the hooks run by the restore and its recovery");
        if !restored {
            assert!(after.0 >= now.0 && after.1 >= now.1, "{point}: rolled back, yet the volumes went back");
            assert_ne!(after.0, target.0, "{point}: the app was restored without the db");
            assert_ne!(after.1, target.1, "{point}: the db was restored without the app");
        }
        for member in ["app", "db"] {
            let names = listed(&daemon, member);
            assert!(!names.iter().any(|n| n.starts_with("restore-staging")), "{point}: {names:?}");
            let pre = names.iter().filter(|n| n.starts_with("pre-restore")).count();
            assert_eq!(pre, usize::from(restored), "{point}: {member} has {names:?}");
        }
    }
}

/// Retention keeps or prunes a group snapshot as a unit: a member whose own
/// policy would let its part go keeps it while another member's policy
/// keeps that member's part (the dry run says so), and both parts go once
/// neither policy keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_or_prunes_a_group_snapshot_as_a_unit() {
    if !root_or_skip("retention_keeps_or_prunes_a_group_snapshot_as_a_unit") {
        return;
    }
    let shop = Shop::new("group-retention");
    let daemon = TestDaemon::start(daemon_binary()).await.expect("daemon");
    shop.register(&daemon);
    for name in ["g1", "g2", "g3"] {
        succeeded(cli(&daemon, &["--json", "group", "snapshot", "shop", "--name", name]));
    }
    let sorted = |daemon: &TestDaemon, container: &str| {
        let mut names = listed(daemon, container);
        names.sort();
        names
    };
    succeeded(cli(&daemon, &["--json", "container", "update", "db", "--retention", "last=5"]));
    succeeded(cli(&daemon, &["--json", "container", "update", "app", "--retention", "last=1"]));
    let dry = succeeded(cli(&daemon, &["--json", "prune", "app", "--dry-run"]));
    assert!(dry.to_string().contains("with group shop (member db keeps its part)"), "the dry run says why: {dry}");
    succeeded(cli(&daemon, &["--json", "prune", "app"]));
    assert_eq!(sorted(&daemon, "app"), ["g1", "g2", "g3"], "kept with the db's parts");

    // Neither keeps g1 and g2 now: both parts of each go.
    succeeded(cli(&daemon, &["--json", "container", "update", "db", "--retention", "last=1"]));
    succeeded(cli(&daemon, &["--json", "prune", "app"]));
    succeeded(cli(&daemon, &["--json", "prune", "db"]));
    assert_eq!(sorted(&daemon, "app"), ["g3"]);
    assert_eq!(sorted(&daemon, "db"), ["g3"]);
    drop(daemon);
}
