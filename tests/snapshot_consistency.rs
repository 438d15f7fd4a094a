//! Snapshots of a container whose processes keep writing: every snapshot
//! holds whole records and every record completed before the request, the
//! writers run again after each one, and the snapshot lifecycle (names,
//! aliases, expiry, delete, unregister) holds over the real daemon.
//!
//! Root only: loop-backed btrfs, a real cgroup v2, a real `rollpointd`.

mod common;

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use common::*;
use rollpoint::api::proto::{self, SnapshotOrigin, SnapshotState};
use rollpoint::testkit::daemon::TestDaemon;
use rollpoint::testkit::loop_btrfs::LoopBtrfs;
use rollpoint::testkit::root_or_skip;
use tonic::Code;

const FS_SIZE: u64 = 1 << 30;
const WRITERS: u32 = 10;
const CONTAINER: &str = "app";

/// How the cgroup is given at registration.
#[derive(Debug, Clone, Copy)]
enum CgroupForm {
    /// Relative to the cgroup v2 mount, as an operator would write it.
    Relative,
    /// The absolute path under /sys/fs/cgroup.
    Absolute,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_snapshots_under_writers_cgroup_relative() {
    if !root_or_skip("consistent_snapshots_under_writers_cgroup_relative") {
        return;
    }
    consistent_snapshots_under_writers(CgroupForm::Relative).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_snapshots_under_writers_cgroup_absolute() {
    if !root_or_skip("consistent_snapshots_under_writers_cgroup_absolute") {
        return;
    }
    consistent_snapshots_under_writers(CgroupForm::Absolute).await;
}

/// One round of the test: what to ask for and what the reply must say.
struct Round {
    alias: &'static str,
    expiry_days: u32,
}

const ROUNDS: [Round; 4] = [
    Round { alias: "", expiry_days: 0 },
    Round { alias: "latest", expiry_days: 0 },
    Round { alias: "nightly", expiry_days: 7 },
    // Reuses "latest": it moves here from round 1.
    Round { alias: "latest", expiry_days: 0 },
];

async fn consistent_snapshots_under_writers(form: CgroupForm) {
    // Declaration order is drop order reversed: daemon, then writers (the
    // cgroup), then the filesystem.
    let fs = LoopBtrfs::create(FS_SIZE).expect("loop btrfs");
    let volume = fs.create_subvolume("app").expect("subvolume");
    let writers = Writers::start("consistency", &volume, WRITERS);
    let daemon = TestDaemon::start(daemon_binary()).await.expect("start rollpointd");
    let mut clients = daemon.clients().await.expect("connect");

    let cgroup_arg = match form {
        CgroupForm::Relative => writers.cgroup.relative_name().to_string(),
        CgroupForm::Absolute => writers.cgroup.path().to_str().expect("utf-8").to_string(),
    };
    let container = register(&mut clients, CONTAINER, &cgroup_arg, &volume).await.expect("RegisterContainer");
    assert_eq!(Path::new(&container.cgroup), writers.cgroup.path(), "cgroup resolved to the absolute path");
    assert_eq!(Path::new(&container.subvolume), volume);
    assert_eq!(container.backend, "btrfs");
    let folder = snapshot_folder(fs.mount_point(), CONTAINER);
    assert_eq!(Path::new(&container.snapshot_dir), folder);

    // Let them write a bit first, so the files are not trivially small.
    writers.wait_progress_at_least(200);

    let mut taken: Vec<proto::Snapshot> = Vec::new();
    for (round, plan) in ROUNDS.iter().enumerate() {
        let before = writers.progress();
        assert!(before.iter().all(Option::is_some), "every writer has completed a record: {before:?}");
        let asked = Utc::now();
        let snapshot = clients
            .snapshots
            .create_snapshot(proto::CreateSnapshotRequest {
                container: CONTAINER.into(),
                alias: plan.alias.into(),
                expiry_days: plan.expiry_days,
                comment: format!("round {round}"),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|status| panic!("round {round}: CreateSnapshot: {status}"))
            .into_inner()
            .snapshot
            .expect("snapshot in reply");
        let answered = Utc::now();
        // Right after the reply: thawed, by the kernel's own account.
        assert!(!writers.frozen(), "round {round}: the cgroup is still frozen after the reply");
        let after_reply = writers.progress();

        // Name: snap-<UTC day of creation>, then -2, -3 the same day.
        let created = time_of(snapshot.create_time.as_ref());
        assert!(asked <= created && created <= answered, "round {round}: create_time {created} not within the call");
        let day = created.format("%Y-%m-%d").to_string();
        assert!(
            [asked.format("%Y-%m-%d").to_string(), answered.format("%Y-%m-%d").to_string()].contains(&day),
            "round {round}: not today (UTC): {day}"
        );
        let same_day_before =
            taken.iter().filter(|s| time_of(s.create_time.as_ref()).format("%Y-%m-%d").to_string() == day).count();
        let expected_name = match same_day_before {
            0 => format!("snap-{day}"),
            n => format!("snap-{day}-{}", n + 1),
        };
        assert_eq!(snapshot.name, expected_name, "round {round}");
        assert_eq!(snapshot.container, CONTAINER);
        assert_eq!(snapshot.alias, plan.alias, "round {round}");
        assert_eq!(snapshot.comment, format!("round {round}"));
        assert_eq!(snapshot.state(), SnapshotState::Ready);
        assert_eq!(snapshot.origin(), SnapshotOrigin::Api);
        assert!(snapshot.read_only, "round {round}: recorded read-only");
        assert!(!snapshot.uuid.is_empty(), "round {round}: uuid recorded");
        assert_eq!(snapshot.resource_name, format!("containers/{CONTAINER}/snapshots/{}", snapshot.name));
        match plan.expiry_days {
            0 => assert_eq!(snapshot.expire_time, None, "round {round}: never expires"),
            days => {
                let expires = time_of(snapshot.expire_time.as_ref());
                assert_eq!(expires - created, chrono::Duration::days(i64::from(days)), "round {round}: expiry");
            }
        }

        // Timings: frozen at all, and for less than the whole operation,
        // which itself fits in the call.
        let frozen_for = duration_of(snapshot.frozen_for.as_ref());
        let duration = duration_of(snapshot.duration.as_ref());
        assert!(frozen_for > Duration::ZERO, "round {round}: frozen_for not recorded");
        assert!(frozen_for <= duration, "round {round}: frozen_for {frozen_for:?} > duration {duration:?}");
        assert!(
            duration <= (answered - asked).to_std().expect("positive"),
            "round {round}: duration {duration:?} longer than the call"
        );

        // On disk: a read-only subvolume at the recorded location, holding
        // a consistent prefix of every writer's file.
        let location = Path::new(&snapshot.location);
        assert_eq!(location, folder.join(&snapshot.name), "round {round}: location");
        assert!(is_subvolume(location), "round {round}: {} is not a subvolume", location.display());
        assert_read_only(location);
        let reports = writers.verify_snapshot(location, &before);
        let records: u64 = reports.iter().map(|r| r.records).sum();
        println!(
            "{form:?} round {round}: {} frozen {frozen_for:?} of {duration:?}; {records} records from {WRITERS} writers, all whole, none completed before the call missing",
            snapshot.name
        );

        // The writers run again.
        writers.assert_all_advance(&after_reply);
        assert!(!writers.frozen(), "round {round}: frozen again?");
        taken.push(snapshot);
    }
    let name = |round: usize| taken[round].name.clone();

    // Listed oldest first, as taken; the alias "latest" moved to round 3.
    let listed = list_snapshots(&mut clients, CONTAINER).await;
    assert_eq!(names(&listed), names(&taken), "ListSnapshots order");
    let aliases: Vec<&str> = listed.iter().map(|s| s.alias.as_str()).collect();
    assert_eq!(aliases, ["", "", "nightly", "latest"], "aliases after reuse");
    assert!(listed.iter().all(|s| s.state() == SnapshotState::Ready));
    assert_eq!(get_snapshot(&mut clients, CONTAINER, "latest").await.expect("get by alias").name, name(3));
    assert_eq!(get_snapshot(&mut clients, CONTAINER, "nightly").await.expect("get by alias").name, name(2));
    assert_eq!(get_snapshot(&mut clients, CONTAINER, &name(1)).await.expect("get by name").alias, "");

    // An explicit name, next to the default ones.
    let before = writers.progress();
    let named = create_snapshot(&mut clients, CONTAINER, "before-upgrade", "").await.expect("named snapshot");
    assert_eq!(named.name, "before-upgrade");
    writers.verify_snapshot(Path::new(&named.location), &before);
    let taken_names: Vec<String> = names(&taken).into_iter().chain([named.name.clone()]).collect();
    assert_eq!(names(&list_snapshots(&mut clients, CONTAINER).await), taken_names);

    update_alias_and_expiry(&mut clients, &name(0), &name(3)).await;

    // Delete by name and by alias: gone from the record and from disk.
    for (reference, expected) in [(name(1), name(1)), ("nightly".to_string(), name(2))] {
        let deleted = clients
            .snapshots
            .delete_snapshot(proto::DeleteSnapshotRequest { container: CONTAINER.into(), snapshot: reference.clone() })
            .await
            .unwrap_or_else(|s| panic!("DeleteSnapshot {reference}: {s}"))
            .into_inner()
            .snapshot
            .expect("snapshot in reply");
        assert_eq!(deleted.name, expected);
        assert!(!Path::new(&deleted.location).exists(), "{} still on disk", deleted.location);
        expect_status(
            get_snapshot(&mut clients, CONTAINER, &reference).await.map(tonic::Response::new),
            Code::NotFound,
            &[&reference],
        );
    }
    let left = assert_listing_matches_disk(&mut clients, CONTAINER, &folder).await;
    assert_eq!(left, [name(0), name(3), named.name.clone()].into_iter().collect());
    let container = clients
        .containers
        .get_container(proto::GetContainerRequest { id: CONTAINER.into() })
        .await
        .expect("GetContainer")
        .into_inner()
        .container
        .expect("container");
    assert_eq!(container.snapshot_count, 3);

    // Unregistering: refused while snapshots exist unless told what to do
    // with them; delete_snapshots removes them from disk.
    expect_status(
        clients
            .containers
            .unregister_container(proto::UnregisterContainerRequest { id: CONTAINER.into(), ..Default::default() })
            .await,
        Code::FailedPrecondition,
        &["delete_snapshots", "keep_snapshots"],
    );
    let reply = clients
        .containers
        .unregister_container(proto::UnregisterContainerRequest {
            id: CONTAINER.into(),
            delete_snapshots: true,
            keep_snapshots: false,
        })
        .await
        .expect("UnregisterContainer")
        .into_inner();
    assert_eq!(reply.snapshots_deleted, 3);
    assert!(subvolumes_in(&folder).is_empty(), "snapshots left in {}", folder.display());
    assert!(list_containers(&mut clients).await.is_empty());
    // The writers never noticed any of it.
    writers.assert_all_advance(&writers.progress());
}

/// UpdateSnapshot: alias and expiry, with and without a mask. `first` has
/// no alias and no expiry, `latest` holds the alias "latest".
async fn update_alias_and_expiry(clients: &mut rollpoint::api::client::Clients, first: &str, latest: &str) {
    let update = |snapshot: &str, alias: &str, expiry_days: u32, mask: &[&str]| {
        let request = proto::UpdateSnapshotRequest {
            container: CONTAINER.into(),
            snapshot: snapshot.into(),
            alias: alias.into(),
            expiry_days,
            update_mask: mask.iter().map(|m| m.to_string()).collect(),
            ..Default::default()
        };
        let mut snapshots = clients.snapshots.clone();
        async move { snapshots.update_snapshot(request).await.map(|r| r.into_inner().snapshot.expect("snapshot")) }
    };

    // No mask: what is set changes.
    let updated = update(first, "first", 0, &[]).await.expect("set alias");
    assert_eq!((updated.alias.as_str(), updated.expire_time), ("first", None));
    let asked = Utc::now();
    let updated = update("first", "", 30, &[]).await.expect("set expiry by alias");
    let expires = time_of(updated.expire_time.as_ref());
    let expected = asked + chrono::Duration::days(30);
    assert!((expires - expected).num_seconds().abs() <= 60, "expiry {expires}, expected about {expected}");
    assert_eq!(updated.alias, "first", "alias untouched by an expiry update");
    // Nothing to change is an error naming the mask.
    expect_status(update(first, "", 0, &[]).await.map(tonic::Response::new), Code::InvalidArgument, &["update_mask"]);
    expect_status(
        update(first, "", 0, &["name"]).await.map(tonic::Response::new),
        Code::InvalidArgument,
        &["update_mask", "name"],
    );
    // An expiry in the past cannot be asked for: days count from now, 0 is never.
    let updated = update(first, "", 0, &["expiry_days"]).await.expect("clear expiry");
    assert_eq!(updated.expire_time, None);
    assert_eq!(updated.alias, "first");

    // Taking an alias another snapshot holds moves it.
    let updated = update(first, "latest", 0, &["alias"]).await.expect("move alias");
    assert_eq!(updated.alias, "latest");
    let mut clients2 = clients.clone();
    assert_eq!(get_snapshot(&mut clients2, CONTAINER, "latest").await.expect("get latest").name, first);
    assert_eq!(get_snapshot(&mut clients2, CONTAINER, latest).await.expect("get old holder").alias, "");
    // An alias may not be another snapshot's name.
    expect_status(
        update(first, latest, 0, &["alias"]).await.map(tonic::Response::new),
        Code::InvalidArgument,
        &["alias"],
    );
    // Removing the alias.
    let updated = update(first, "", 0, &["alias"]).await.expect("remove alias");
    assert_eq!(updated.alias, "");
    expect_status(
        get_snapshot(&mut clients2, CONTAINER, "latest").await.map(tonic::Response::new),
        Code::NotFound,
        &["latest"],
    );
}
