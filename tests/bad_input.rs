//! Bad requests over the real daemon: each gets its own status code and a
//! message naming the problem, changes nothing, and the daemon keeps serving.
//!
//! Root only: loop-backed btrfs, a real cgroup v2, a real `rollpointd`.

mod common;

use std::fmt::Debug;
use std::path::Path;

use common::*;
use rollpoint::api::client::Clients;
use rollpoint::api::proto;
use rollpoint::testkit::daemon::TestDaemon;
use rollpoint::testkit::loop_btrfs::LoopBtrfs;
use rollpoint::testkit::root_or_skip;
use tonic::{Code, Response, Status};

const CONTAINER: &str = "app";

/// Checks one bad request's status, then that the daemon still answers and
/// still knows exactly `containers`.
#[track_caller]
fn check<T: Debug>(case: &str, result: Result<Response<T>, Status>, code: Code, needles: &[&str]) {
    let status = expect_status(result, code, needles);
    println!("{case:<48} {:<20} {}", format!("{:?}", status.code()), status.message());
}

async fn still_serving(clients: &mut Clients, containers: &[&str]) {
    let listed: Vec<String> = list_containers(clients).await.into_iter().map(|c| c.id).collect();
    assert_eq!(listed, containers, "containers after a refused request");
}

fn register_request(id: &str, cgroup: &str, subvolume: &str) -> proto::RegisterContainerRequest {
    proto::RegisterContainerRequest {
        id: id.into(),
        cgroup: cgroup.into(),
        subvolume: subvolume.into(),
        ..Default::default()
    }
}

fn create_request(container: &str, name: &str) -> proto::CreateSnapshotRequest {
    proto::CreateSnapshotRequest { container: container.into(), name: name.into(), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_their_code_and_the_daemon_keeps_serving() {
    if !root_or_skip("bad_requests_are_refused_with_their_code_and_the_daemon_keeps_serving") {
        return;
    }
    let fs = LoopBtrfs::create(512 << 20).expect("loop btrfs");
    let volume = fs.create_subvolume("app").expect("subvolume");
    let other_volume = fs.create_subvolume("other").expect("second subvolume");
    let plain_dir = fs.mount_point().join("plain");
    std::fs::create_dir(&plain_dir).expect("plain dir on btrfs");
    let not_btrfs = tempfile::Builder::new().prefix("rollpoint-not-btrfs-").tempdir().expect("temp dir");
    let writers = Writers::start("bad-input", &volume, 1);
    let daemon = TestDaemon::start(daemon_binary()).await.expect("start rollpointd");
    let mut clients = daemon.clients().await.expect("connect");
    let cgroup = writers.cgroup.relative_name().to_string();
    let volume_arg = volume.to_str().expect("utf-8").to_string();
    let other_arg = other_volume.to_str().expect("utf-8").to_string();

    // ---------------------------------------------------------- register
    let mut c = clients.containers.clone();
    check(
        "register: id with upper case and '_'",
        c.register_container(register_request("Bad_ID", &cgroup, &volume_arg)).await,
        Code::InvalidArgument,
        &["id", "Bad_ID"],
    );
    still_serving(&mut clients, &[]).await;
    check(
        "register: id of 64 characters",
        c.register_container(register_request(&"a".repeat(64), &cgroup, &volume_arg)).await,
        Code::InvalidArgument,
        &["id", "64"],
    );
    still_serving(&mut clients, &[]).await;
    check(
        "register: cgroup that does not exist",
        c.register_container(register_request(CONTAINER, "rollpoint-test-no-such-cgroup", &volume_arg)).await,
        Code::FailedPrecondition,
        &["rollpoint-test-no-such-cgroup", "does not exist"],
    );
    still_serving(&mut clients, &[]).await;
    check(
        "register: cgroup escaping the hierarchy (../../etc)",
        c.register_container(register_request(CONTAINER, "../../etc", &volume_arg)).await,
        Code::FailedPrecondition,
        &["../../etc", "not inside a cgroup mount"],
    );
    still_serving(&mut clients, &[]).await;
    check(
        "register: cgroup outside the hierarchy (/etc)",
        c.register_container(register_request(CONTAINER, "/etc", &volume_arg)).await,
        Code::FailedPrecondition,
        &["/etc", "not inside a cgroup mount"],
    );
    still_serving(&mut clients, &[]).await;
    check(
        "register: the root cgroup",
        c.register_container(register_request(CONTAINER, ".", &volume_arg)).await,
        Code::FailedPrecondition,
        &["cannot be frozen"],
    );
    still_serving(&mut clients, &[]).await;
    let tmp_arg = not_btrfs.path().to_str().expect("utf-8").to_string();
    check(
        "register: subvolume not on btrfs (/tmp)",
        c.register_container(register_request(CONTAINER, &cgroup, &tmp_arg)).await,
        Code::FailedPrecondition,
        &[&tmp_arg, "not on a btrfs filesystem"],
    );
    still_serving(&mut clients, &[]).await;
    let plain_arg = plain_dir.to_str().expect("utf-8").to_string();
    check(
        "register: plain directory on btrfs",
        c.register_container(register_request(CONTAINER, &cgroup, &plain_arg)).await,
        Code::FailedPrecondition,
        &[&plain_arg, "not a btrfs subvolume"],
    );
    still_serving(&mut clients, &[]).await;
    let missing_arg = fs.mount_point().join("missing").to_str().expect("utf-8").to_string();
    check(
        "register: subvolume that does not exist",
        c.register_container(register_request(CONTAINER, &cgroup, &missing_arg)).await,
        Code::FailedPrecondition,
        &[&missing_arg],
    );
    still_serving(&mut clients, &[]).await;
    check(
        "register: relative subvolume path",
        c.register_container(register_request(CONTAINER, &cgroup, "./relative/app")).await,
        Code::InvalidArgument,
        &["./relative/app", "absolute"],
    );
    still_serving(&mut clients, &[]).await;
    check(
        "register: an LVM volume (vg/lv) that does not exist",
        c.register_container(register_request(CONTAINER, &cgroup, "novg/app")).await,
        Code::FailedPrecondition,
        &["novg/app"],
    );
    still_serving(&mut clients, &[]).await;
    check(
        "register: empty cgroup",
        c.register_container(register_request(CONTAINER, "", &volume_arg)).await,
        Code::InvalidArgument,
        &["cgroup"],
    );
    still_serving(&mut clients, &[]).await;

    // The good registration, then duplicates of it.
    register(&mut clients, CONTAINER, &cgroup, &volume).await.expect("RegisterContainer");
    still_serving(&mut clients, &[CONTAINER]).await;
    check(
        "register: duplicate id (other subvolume)",
        c.register_container(register_request(CONTAINER, &cgroup, &other_arg)).await,
        Code::AlreadyExists,
        &["container app", "already exists"],
    );
    still_serving(&mut clients, &[CONTAINER]).await;
    check(
        "register: subvolume of another container",
        c.register_container(register_request("app-2", &cgroup, &volume_arg)).await,
        Code::AlreadyExists,
        &[&volume_arg, "already exists"],
    );
    still_serving(&mut clients, &[CONTAINER]).await;

    // ---------------------------------------------------------- snapshots
    let mut s = clients.snapshots.clone();
    check(
        "create: unknown container",
        s.create_snapshot(create_request("nope", "")).await,
        Code::NotFound,
        &["nope", "not found"],
    );
    still_serving(&mut clients, &[CONTAINER]).await;
    check(
        "get container: unknown container",
        c.get_container(proto::GetContainerRequest { id: "nope".into() }).await,
        Code::NotFound,
        &["nope"],
    );
    still_serving(&mut clients, &[CONTAINER]).await;
    check(
        "list snapshots: unknown container",
        s.list_snapshots(proto::ListSnapshotsRequest { container: "nope".into(), ..Default::default() }).await,
        Code::NotFound,
        &["nope"],
    );
    still_serving(&mut clients, &[CONTAINER]).await;
    check(
        "get: unknown snapshot",
        s.get_snapshot(proto::GetSnapshotRequest { container: CONTAINER.into(), snapshot: "missing".into() }).await,
        Code::NotFound,
        &["missing", "not found"],
    );
    still_serving(&mut clients, &[CONTAINER]).await;
    check(
        "delete: unknown snapshot",
        s.delete_snapshot(proto::DeleteSnapshotRequest { container: CONTAINER.into(), snapshot: "missing".into() })
            .await,
        Code::NotFound,
        &["missing"],
    );
    still_serving(&mut clients, &[CONTAINER]).await;
    for bad in ["a/b", "../escape", "..", "a..b", "/etc/passwd"] {
        check(
            &format!("create: name {bad:?}"),
            s.create_snapshot(create_request(CONTAINER, bad)).await,
            Code::InvalidArgument,
            &["name", "must not contain '/', '..'"],
        );
        still_serving(&mut clients, &[CONTAINER]).await;
    }
    check(
        "create: name of 300 characters",
        s.create_snapshot(create_request(CONTAINER, &"x".repeat(300))).await,
        Code::InvalidArgument,
        &["name", "300 characters", "at most 128"],
    );
    still_serving(&mut clients, &[CONTAINER]).await;
    check(
        "create: name starting with a dot",
        s.create_snapshot(create_request(CONTAINER, ".hidden")).await,
        Code::InvalidArgument,
        &["name", "start with a letter or digit"],
    );
    still_serving(&mut clients, &[CONTAINER]).await;
    check(
        "create: alias with '/'",
        s.create_snapshot(proto::CreateSnapshotRequest {
            container: CONTAINER.into(),
            alias: "x/y".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        &["alias"],
    );
    still_serving(&mut clients, &[CONTAINER]).await;
    check(
        "create: expiry over 100 years",
        s.create_snapshot(proto::CreateSnapshotRequest {
            container: CONTAINER.into(),
            expiry_days: 36_501,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        &["expiry_days"],
    );
    still_serving(&mut clients, &[CONTAINER]).await;
    check(
        "get: snapshot reference with '..'",
        s.get_snapshot(proto::GetSnapshotRequest { container: CONTAINER.into(), snapshot: "../app".into() }).await,
        Code::InvalidArgument,
        &["snapshot"],
    );
    still_serving(&mut clients, &[CONTAINER]).await;

    let first = create_snapshot(&mut clients, CONTAINER, "dup", "").await.expect("CreateSnapshot dup");
    check(
        "create: duplicate snapshot name",
        s.create_snapshot(create_request(CONTAINER, "dup")).await,
        Code::AlreadyExists,
        &["dup", "already exists"],
    );
    still_serving(&mut clients, &[CONTAINER]).await;
    check(
        "create: alias equal to an existing name",
        s.create_snapshot(proto::CreateSnapshotRequest {
            container: CONTAINER.into(),
            alias: "dup".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        &["alias", "dup"],
    );
    still_serving(&mut clients, &[CONTAINER]).await;
    // A snapshot is not a container volume.
    check(
        "register: a snapshot as subvolume",
        c.register_container(register_request("snap-as-volume", &cgroup, &first.location)).await,
        Code::FailedPrecondition,
        &[&first.location, ".rollpoint"],
    );
    still_serving(&mut clients, &[CONTAINER]).await;

    // Nothing the refused requests asked for was made.
    let folder = snapshot_folder(fs.mount_point(), CONTAINER);
    let left = assert_listing_matches_disk(&mut clients, CONTAINER, &folder).await;
    assert_eq!(left, ["dup".to_string()].into_iter().collect());
    assert!(!Path::new(&fs.mount_point().join(".rollpoint/app-2")).exists());
    assert!(!writers.frozen());
}
