//! What each snapshot costs, on a real daemon and a loop-backed btrfs:
//!
//! - 412 MB written into a snapshot's successor (new files and an
//!   overwrite in the middle of an old one): its delta, measured in the
//!   background from the send stream without data, reads 412 MB +- 2%, in
//!   ListSnapshots and GetSnapshot, counted from the snapshot before it;
//! - the first snapshot's delta is all of its data, with no parent;
//! - deleting the snapshot in between makes the daemon measure the later
//!   one again, against its new predecessor.
//!
//! Root only.

mod common;

use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::time::Duration;

use common::*;
use rollpoint::api::client::Clients;
use rollpoint::api::proto;
use rollpoint::testkit::remote::{pseudo_random, RemoteHost};
use rollpoint::testkit::root_or_skip;

const MB: u64 = 1_000_000;
/// How long the background measurement may take before the test gives up
/// (a timeout, not a measured bound).
const MEASURE_TIMEOUT: Duration = Duration::from_secs(120);

/// Writes `bytes` of incompressible data into a new file, 1 MB at a time,
/// synced.
fn write_file(path: &Path, bytes: u64, seed: u64) {
    let block = pseudo_random(MB as usize, seed);
    let mut file = std::fs::File::create(path).unwrap();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(MB);
        file.write_all(&block[..n as usize]).unwrap();
        left -= n;
    }
    file.sync_all().unwrap();
}

/// The snapshot once its delta is measured (and counted from `parent`).
async fn measured(clients: &mut Clients, container: &str, name: &str, parent: &str) -> proto::Snapshot {
    let deadline = tokio::time::Instant::now() + MEASURE_TIMEOUT;
    loop {
        let listed = list_snapshots(clients, container).await;
        let snapshot = listed.into_iter().find(|s| s.name == name).expect("listed");
        if snapshot.delta_bytes.is_some() && snapshot.delta_parent == parent {
            return snapshot;
        }
        assert!(tokio::time::Instant::now() < deadline, "{name}: no delta from {parent:?} yet: {snapshot:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_within_two_percent(what: &str, measured: u64, expected: u64) {
    let error = measured.abs_diff(expected) as f64 / expected as f64;
    println!("{what}: measured {measured}, written {expected} ({:.3}% off)", error * 100.0);
    assert!(error <= 0.02, "{what}: measured {measured}, written {expected}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshots_delta_is_what_was_written_since_the_one_before() {
    if !root_or_skip("a_snapshots_delta_is_what_was_written_since_the_one_before") {
        return;
    }
    let mut host = RemoteHost::start(daemon_binary(), "rp-sizes", "").await;
    register(&mut host.clients, "db-1", host.cgroup.relative_name(), &host.volume).await.expect("register");

    let base = 20 * MB;
    write_file(&host.volume.join("base.db"), base, 1);
    create_snapshot(&mut host.clients, "db-1", "s1", "").await.expect("s1");
    let first = measured(&mut host.clients, "db-1", "s1", "").await;
    assert_within_two_percent("first snapshot (all of its data)", first.delta_bytes.unwrap(), base);

    // 412 MB: 400 MB of new files and 12 MB over the middle of base.db.
    for (index, size) in [(0, 250 * MB), (1, 150 * MB)] {
        write_file(&host.volume.join(format!("new-{index}.db")), size, 10 + index);
    }
    let patch = pseudo_random((12 * MB) as usize, 3);
    let file = std::fs::OpenOptions::new().write(true).open(host.volume.join("base.db")).unwrap();
    file.write_all_at(&patch, 4 * MB).unwrap();
    file.sync_all().unwrap();
    let written = 412 * MB;
    create_snapshot(&mut host.clients, "db-1", "s2", "").await.expect("s2");
    create_snapshot(&mut host.clients, "db-1", "s3", "").await.expect("s3");

    let second = measured(&mut host.clients, "db-1", "s2", "s1").await;
    assert_within_two_percent("s2 since s1", second.delta_bytes.unwrap(), written);
    let third = measured(&mut host.clients, "db-1", "s3", "s2").await;
    assert!(third.delta_bytes.unwrap() < MB, "nothing written between s2 and s3: {third:?}");
    let shown = get_snapshot(&mut host.clients, "db-1", "s2").await.unwrap();
    assert_eq!(shown.delta_bytes, second.delta_bytes, "GetSnapshot shows the same figure");

    // s2 deleted: s3 is measured again, now from s1.
    host.clients
        .snapshots
        .delete_snapshot(proto::DeleteSnapshotRequest { container: "db-1".into(), snapshot: "s2".into() })
        .await
        .expect("delete s2");
    let remeasured = measured(&mut host.clients, "db-1", "s3", "s1").await;
    assert_within_two_percent("s3 since s1", remeasured.delta_bytes.unwrap(), written);
}
