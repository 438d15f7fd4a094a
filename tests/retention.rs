//! Retention on a real daemon and a loop-backed btrfs: a container's own
//! policy applied by the daemon after each snapshot, a hold that keeps a
//! snapshot through it and through a delete by hand, `prune --dry-run`
//! saying which rule keeps what; and the space guard on a small filesystem
//! filled by a writer: snapshots pruned beyond the policy first, then a
//! refusal with RESOURCE_EXHAUSTED naming the floor, never a full disk.
//! Root only.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::curl::{curl, Via};
use common::*;
use rollpoint::testkit::remote::RemoteHost;
use rollpoint::testkit::root_or_skip;

/// Waits (up to 20 s) until the container's snapshots are `expected`: the
/// daemon prunes in the background, after each snapshot.
async fn settle(host: &mut RemoteHost, expected: &[&str]) {
    let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
    let started = Instant::now();
    loop {
        let listed = names(&list_snapshots(&mut host.clients, "app").await).into_iter().collect::<BTreeSet<_>>();
        if listed == expected {
            let folder = snapshot_folder(host.fs.mount_point(), "app");
            assert_eq!(subvolumes_in(&folder), expected, "the disk agrees with the listing");
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "snapshots {listed:?}, expected {expected:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_prunes_after_each_snapshot_and_a_hold_keeps() {
    if !root_or_skip("a_policy_prunes_after_each_snapshot_and_a_hold_keeps") {
        return;
    }
    let mut host = RemoteHost::start(daemon_binary(), "retention", "").await;
    let volume = host.volume.clone();
    register(&mut host.clients, "app", host.cgroup.relative_name(), &volume).await.expect("register");
    let shown = succeeded(cli(&host.daemon, &["--json", "container", "update", "app", "--retention", "last=2"]));
    assert_eq!(shown["retention"], "last=2", "{shown}");
    assert_eq!(shown["own_retention"], true, "{shown}");

    create_snapshot(&mut host.clients, "app", "s0", "").await.expect("s0");
    let held = succeeded(cli(&host.daemon, &["--json", "snapshot", "hold", "app", "s0", "--reason", "audit 2026-05"]));
    assert_eq!(held["hold"]["reason"], "audit 2026-05", "{held}");
    for name in ["s1", "s2", "s3"] {
        create_snapshot(&mut host.clients, "app", name, "").await.expect("snapshot");
    }
    settle(&mut host, &["s0", "s2", "s3"]).await;

    let dry = succeeded(cli(&host.daemon, &["--json", "prune", "app", "--dry-run"]));
    let verdicts: Vec<(String, String, String)> = dry["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let reasons = d["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect::<Vec<_>>();
            (d["snapshot"].as_str().unwrap().into(), d["verdict"].as_str().unwrap().into(), reasons.join(", "))
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            ("s3".into(), "keep".into(), "last 2".into()),
            ("s2".into(), "keep".into(), "last 2".into()),
            ("s0".into(), "keep".into(), "held".into()),
        ],
        "{dry}"
    );
    let events = list_events(&mut host.clients, "app", "").await;
    let pruned = events.iter().find(|e| e.kind == "snapshot.pruned" && e.snapshot == "s1").expect("s1 pruned");
    assert!(pruned.detail.contains("last=2"), "{pruned:?}");

    // Held: not deleted by hand either, until released; then the policy
    // takes it.
    let refused = cli(&host.daemon, &["snapshot", "delete", "app", "s0"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("held"), "{}", String::from_utf8_lossy(&refused.stderr));
    succeeded(cli(&host.daemon, &["--json", "snapshot", "release", "app", "s0"]));
    settle(&mut host, &["s2", "s3"]).await;

    // A minimum: `daily=1` alone would keep one; `min=2` keeps two.
    succeeded(cli(&host.daemon, &["--json", "container", "update", "app", "--retention", "daily=1,min=2"]));
    create_snapshot(&mut host.clients, "app", "s4", "").await.expect("s4");
    settle(&mut host, &["s3", "s4"]).await;
    let dry = succeeded(cli(&host.daemon, &["--json", "prune", "app", "--dry-run"]));
    assert_eq!(dry["decisions"][1]["reasons"][0], "minimum 2", "{dry}");

    // A bad policy is refused by the CLI, naming the rule.
    let bad = cli(&host.daemon, &["container", "update", "app", "--retention", "dayly=3"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("dayly"));

    // The same over REST: a policy, a hold, a dry run, a bad rule.
    let via = Via::Socket(host.daemon.socket().to_path_buf());
    let (status, container) = curl(&via, "PATCH", "/api/v1/containers/app", Some(r#"{"retention": "last=1,min=1"}"#));
    assert_eq!((status, container["retention"].as_str()), (200, Some("last=1,min=1")), "{container}");
    let (status, held) = curl(&via, "PATCH", "/api/v1/containers/app/snapshots/s3", Some(r#"{"hold": "rest"}"#));
    assert_eq!((status, held["hold"]["reason"].as_str()), (200, Some("rest")), "{held}");
    let (status, dry) = curl(&via, "POST", "/api/v1/containers/app/prune", Some(r#"{"dry_run": true}"#));
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["decisions"][0]["reasons"][0], "last 1", "{dry}");
    assert_eq!(dry["decisions"][1]["reasons"][0], "held", "{dry}");
    let (status, refused) = curl(&via, "PATCH", "/api/v1/containers/app", Some(r#"{"retention": "dayly=1"}"#));
    assert_eq!(status, 400, "{refused}");
    assert!(refused.to_string().contains("dayly"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_space_floor_snapshots_are_pruned_then_refused() {
    if !root_or_skip("under_the_space_floor_snapshots_are_pruned_then_refused") {
        return;
    }
    // A 30% floor on the 1 GiB filesystem, a policy that keeps at least one.
    let mut host = RemoteHost::start(daemon_binary(), "space-floor", "space_floor_percent = 30.0\n").await;
    let volume = host.volume.clone();
    register(&mut host.clients, "app", host.cgroup.relative_name(), &volume).await.expect("register");
    succeeded(cli(&host.daemon, &["--json", "container", "update", "app", "--retention", "last=5,min=1"]));

    // Each snapshot holds its own tenth of the filesystem: the data is
    // rewritten in between, so no two share it.
    let (_, total) = free_space(&volume);
    let tenth = total / 10;
    for name in ["a", "b", "c"] {
        write_file(&volume.join("data"), tenth, name.as_bytes()[0]);
        create_snapshot(&mut host.clients, "app", name, "").await.expect("snapshot");
    }
    write_file(&volume.join("data"), tenth, b'd');
    // Under the floor (25% free): the next snapshot prunes the oldest, then
    // lands (35% free).
    fill_to(&volume.join("more"), 0.25);
    create_snapshot(&mut host.clients, "app", "d", "").await.expect("a snapshot once a was pruned");
    let events = list_events(&mut host.clients, "app", "").await;
    let pruned: Vec<&str> =
        events.iter().filter(|e| e.kind == "snapshot.pruned").map(|e| e.snapshot.as_str()).collect();
    assert_eq!(pruned, ["a"], "{events:?}");
    assert!(events.iter().any(|e| e.kind == "snapshot.pruned" && e.detail.contains("floor of 30%")), "{events:?}");
    assert!(events.iter().any(|e| e.kind == "space.low" && e.outcome == "warning"), "{events:?}");

    // Down to 5% free: pruning b and c gives back 20%, not enough; d holds
    // nothing of its own and is the minimum: refused, naming the floor.
    fill_to(&volume.join("filler"), 0.05);
    let refused = create_snapshot(&mut host.clients, "app", "e", "").await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("floor of 30%"), "{refused:?}");
    assert_eq!(names(&list_snapshots(&mut host.clients, "app").await), ["d"], "pruned down to the minimum");

    // The daemon serves on, and once space is freed snapshots land again.
    std::fs::remove_file(volume.join("filler")).unwrap();
    let started = Instant::now();
    while create_snapshot(&mut host.clients, "app", "after", "").await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "no snapshot once space was freed");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A daemon with a 30% space floor and two containers on its 1 GiB
/// filesystem, `app` and `web`, each keeping the last 5 and at least one:
/// the host, both volumes and web's cgroup.
async fn app_and_web(
    name: &str,
) -> (RemoteHost, std::path::PathBuf, std::path::PathBuf, rollpoint::testkit::cgroup::TestCgroup) {
    let mut host = RemoteHost::start(daemon_binary(), name, "space_floor_percent = 30.0\n").await;
    let app = host.volume.clone();
    register(&mut host.clients, "app", host.cgroup.relative_name(), &app).await.expect("register app");
    let web = host.fs.create_subvolume("web").expect("second subvolume");
    let web_cgroup = rollpoint::testkit::cgroup::TestCgroup::create(&format!("{name}-web")).expect("cgroup");
    register(&mut host.clients, "web", web_cgroup.relative_name(), &web).await.expect("register web");
    for id in ["app", "web"] {
        succeeded(cli(&host.daemon, &["--json", "container", "update", id, "--retention", "last=5,min=1"]));
    }
    (host, app, web, web_cgroup)
}

/// Two containers on one filesystem: when one's snapshot finds the
/// filesystem under the floor and its own snapshots may not go (its minimum),
/// the other's oldest snapshot beyond its policy is pruned for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_space_floor_prunes_other_containers_on_the_filesystem() {
    if !root_or_skip("the_space_floor_prunes_other_containers_on_the_filesystem") {
        return;
    }
    let (mut host, app, web, web_cgroup) = app_and_web("space-shared").await;

    // web's two snapshots each hold a tenth of the filesystem; app's one.
    let (_, total) = free_space(&app);
    let tenth = total / 10;
    for name in ["w1", "w2"] {
        write_file(&web.join("data"), tenth, name.as_bytes()[1]);
        create_snapshot(&mut host.clients, "web", name, "").await.expect("web snapshot");
    }
    write_file(&web.join("data"), tenth, b'3');
    write_file(&app.join("data"), tenth, b'a');
    create_snapshot(&mut host.clients, "app", "a1", "").await.expect("app snapshot");
    write_file(&app.join("data"), tenth, b'b');

    // Under the floor: app's only snapshot is its minimum, so web's oldest
    // goes, and app's new snapshot lands.
    fill_to(&app.join("more"), 0.25);
    create_snapshot(&mut host.clients, "app", "a2", "").await.expect("a snapshot once w1 was pruned");
    assert_eq!(names(&list_snapshots(&mut host.clients, "web").await), ["w2"], "web's oldest was pruned");
    assert_eq!(names(&list_snapshots(&mut host.clients, "app").await), ["a1", "a2"]);
    let events = list_events(&mut host.clients, "web", "").await;
    let pruned: Vec<&rollpoint::api::proto::Event> = events.iter().filter(|e| e.kind == "snapshot.pruned").collect();
    assert_eq!(pruned.len(), 1, "{events:?}");
    assert_eq!(pruned[0].snapshot, "w1");
    assert!(pruned[0].detail.contains("room for a snapshot of container app"), "{pruned:?}");
    drop(web_cgroup);
}

/// A group snapshot goes for space as a unit: while one member's policy
/// keeps its part, no member's part is pruned (the snapshot is refused
/// instead); once every member may spare it, every part goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_space_floor_prunes_a_group_snapshot_as_a_unit() {
    if !root_or_skip("the_space_floor_prunes_a_group_snapshot_as_a_unit") {
        return;
    }
    let (mut host, app, web, web_cgroup) = app_and_web("space-group").await;
    succeeded(cli(&host.daemon, &["--json", "group", "set", "pair", "app", "web"]));

    // Each part of g1 and app's a1 hold a tenth of the filesystem of their own.
    let (_, total) = free_space(&app);
    let tenth = total / 10;
    write_file(&app.join("data"), tenth, b'1');
    write_file(&web.join("data"), tenth, b'1');
    succeeded(cli(&host.daemon, &["--json", "group", "snapshot", "pair", "--name", "g1"]));
    write_file(&app.join("data"), tenth, b'2');
    create_snapshot(&mut host.clients, "app", "a1", "").await.expect("app snapshot");
    write_file(&app.join("data"), tenth, b'3');
    write_file(&web.join("data"), tenth, b'3');

    // Under the floor: app may spare its part of g1, but g1 is web's only
    // snapshot (its minimum): nothing goes, the snapshot is refused.
    fill_to(&app.join("more"), 0.25);
    let refused = create_snapshot(&mut host.clients, "app", "a2", "").await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused:?}");
    assert_eq!(names(&list_snapshots(&mut host.clients, "app").await), ["g1", "a1"]);
    assert_eq!(names(&list_snapshots(&mut host.clients, "web").await), ["g1"], "web's part stays, and app's with it");

    // web may now spare it too: both parts go, and the snapshot lands.
    succeeded(cli(&host.daemon, &["--json", "container", "update", "web", "--retention", "last=5,min=0"]));
    create_snapshot(&mut host.clients, "app", "a2", "").await.expect("a snapshot once g1 was pruned");
    assert_eq!(names(&list_snapshots(&mut host.clients, "app").await), ["a1", "a2"]);
    assert!(list_snapshots(&mut host.clients, "web").await.is_empty(), "web's part went with app's");
    for id in ["app", "web"] {
        let events = list_events(&mut host.clients, id, "").await;
        let pruned: Vec<&rollpoint::api::proto::Event> =
            events.iter().filter(|e| e.kind == "snapshot.pruned").collect();
        assert_eq!(pruned.len(), 1, "{id}: {events:?}");
        assert_eq!(pruned[0].snapshot, "g1");
        assert!(pruned[0].detail.contains("every member's part goes"), "{pruned:?}");
    }
    drop(web_cgroup);
}

/// Free and total bytes of the filesystem holding `path`.
fn free_space(path: &std::path::Path) -> (u64, u64) {
    let stat = nix::sys::statvfs::statvfs(path).expect("statvfs");
    let unit = stat.fragment_size();
    (stat.blocks_available() * unit, stat.blocks() * unit)
}

/// Writes a new file at `path` until about `fraction` of the filesystem is
/// left free.
fn fill_to(path: &std::path::Path, fraction: f64) {
    let (free, total) = free_space(path.parent().unwrap());
    let keep = (total as f64 * fraction) as u64;
    write_file(path, free.saturating_sub(keep), b'x');
}

/// Writes `len` bytes (whole MiB) of `byte` to `path`, replacing it, and syncs.
fn write_file(path: &std::path::Path, len: u64, byte: u8) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("create");
    let block = vec![byte; 1 << 20];
    for _ in 0..len >> 20 {
        file.write_all(&block).expect("write");
    }
    file.sync_all().expect("sync");
}
