//! `rollpoint container clone` on a real daemon and a loop-backed btrfs: a
//! new container from a snapshot of another, its volume a writable snapshot
//! beside the source's, registered with its own cgroup, snapshotted in
//! turn, and independent of the source. Root only.

mod common;

use common::*;
use rollpoint::testkit::cgroup::TestCgroup;
use rollpoint::testkit::remote::RemoteHost;
use rollpoint::testkit::root_or_skip;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_is_a_writable_copy_of_a_snapshot_registered_on_its_own() {
    if !root_or_skip("a_clone_is_a_writable_copy_of_a_snapshot_registered_on_its_own") {
        return;
    }
    let mut host = RemoteHost::start(daemon_binary(), "clone", "").await;
    let clone_cgroup = TestCgroup::create("clone-test").expect("cgroup");
    let volume = host.volume.clone();
    register(&mut host.clients, "app", host.cgroup.relative_name(), &volume).await.expect("register");
    std::fs::write(volume.join("data"), "at the rollback point").unwrap();
    create_snapshot(&mut host.clients, "app", "good", "rollback-point").await.expect("snapshot");
    std::fs::write(volume.join("data"), "later").unwrap();

    let output = cli(
        &host.daemon,
        &[
            "--json",
            "container",
            "clone",
            "app",
            "rollback-point",
            "app-test",
            "--cgroup",
            clone_cgroup.relative_name(),
        ],
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let clone: Value = serde_json::from_slice(&output.stdout).unwrap();
    let clone_volume = volume.parent().unwrap().join("app-test");
    assert_eq!(clone["id"], "app-test", "{clone}");
    assert_eq!(clone["subvolume"], clone_volume.to_str().unwrap(), "{clone}");
    assert_eq!(clone["labels"]["rollpoint/cloned-from"], "app/good", "{clone}");
    assert_eq!(std::fs::read_to_string(clone_volume.join("data")).unwrap(), "at the rollback point");

    // Writable and independent, and a container like any other.
    std::fs::write(clone_volume.join("data"), "tried a migration here").unwrap();
    assert_eq!(std::fs::read_to_string(volume.join("data")).unwrap(), "later");
    let taken = create_snapshot(&mut host.clients, "app-test", "", "").await.expect("a snapshot of the clone");
    assert!(taken.location.contains("app-test"), "{taken:?}");

    // Refusals: the id is taken; the volume's place is taken.
    for (args, code) in [
        (
            vec!["container", "clone", "app", "good", "app-test", "--cgroup", clone_cgroup.relative_name()],
            "ALREADY_EXISTS",
        ),
        (
            vec![
                "container",
                "clone",
                "app",
                "good",
                "app-2",
                "--cgroup",
                clone_cgroup.relative_name(),
                "--subvolume",
                volume.to_str().unwrap(),
            ],
            "ALREADY_EXISTS",
        ),
        (vec!["container", "clone", "app", "nope", "app-3", "--cgroup", clone_cgroup.relative_name()], "NOT_FOUND"),
    ] {
        let refused = cli(&host.daemon, &args);
        assert!(!refused.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains(code) || stderr.to_lowercase().contains(&code.replace('_', " ").to_lowercase()),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(list_containers(&mut host.clients).await.len(), 2);
    drop(clone_cgroup);
    drop(host);
}
