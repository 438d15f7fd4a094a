//! `rollpoint diff` on a real daemon and a loop-backed btrfs: between two
//! snapshots the test makes a known list of changes (added, changed,
//! deleted, renamed, metadata only, an xattr only, a new hard link, a folder
//! renamed with its files, a folder deleted with its files) and the diff
//! lists exactly those, with sizes, through the CLI (`--json` and the
//! table) and REST; then against the live container.
//!
//! Root only.

mod common;

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use common::curl::{curl, Via};
use common::*;
use rollpoint::testkit::remote::RemoteHost;
use rollpoint::testkit::root_or_skip;
use serde_json::Value;

fn write(path: &Path, bytes: usize) {
    std::fs::write(path, vec![b'x'; bytes]).unwrap();
}

/// change, path -> (renamed_from or link_to, size) of a `--json` diff.
fn by_path(diff: &Value) -> BTreeMap<String, (String, Option<String>, Option<u64>)> {
    diff.as_array()
        .expect("an array")
        .iter()
        .map(|d| {
            let other = d["renamed_from"].as_str().or(d["link_to"].as_str()).map(str::to_owned);
            (
                d["path"].as_str().unwrap().to_owned(),
                (d["change"].as_str().unwrap().to_owned(), other, d["size"].as_u64()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diff_lists_the_changes_made_between_two_snapshots() {
    if !root_or_skip("a_diff_lists_the_changes_made_between_two_snapshots") {
        return;
    }
    let mut host = RemoteHost::start(daemon_binary(), "diff", "").await;
    let volume = host.volume.clone();
    register(&mut host.clients, "app", host.cgroup.relative_name(), &volume).await.expect("register");
    for folder in ["etc", "data", "logs", "old"] {
        std::fs::create_dir(volume.join(folder)).unwrap();
    }
    write(&volume.join("etc/app.conf"), 100);
    write(&volume.join("etc/untouched.conf"), 10);
    write(&volume.join("data/table.dat"), 1 << 20);
    write(&volume.join("data/gone.dat"), 300);
    write(&volume.join("data/mode"), 5);
    write(&volume.join("data/tagged"), 6);
    write(&volume.join("logs/a.log"), 7);
    write(&volume.join("old/x"), 8);
    write(&volume.join("old/y"), 9);
    write(&volume.join("moved-out"), 11);
    create_snapshot(&mut host.clients, "app", "before", "").await.expect("snapshot before");

    write(&volume.join("etc/new.conf"), 42);
    {
        use std::os::unix::fs::FileExt as _;
        let file = std::fs::OpenOptions::new().write(true).open(volume.join("data/table.dat")).unwrap();
        file.write_all_at(&[b'y'; 4096], 65536).unwrap();
    }
    std::fs::remove_file(volume.join("data/gone.dat")).unwrap();
    std::fs::set_permissions(volume.join("data/mode"), std::fs::Permissions::from_mode(0o600)).unwrap();
    set_xattr(&volume.join("data/tagged"), "user.rollpoint-test", b"1");
    std::fs::hard_link(volume.join("etc/app.conf"), volume.join("etc/app.conf.link")).unwrap();
    std::fs::rename(volume.join("logs"), volume.join("journal")).unwrap();
    std::fs::rename(volume.join("moved-out"), volume.join("etc/moved-in")).unwrap();
    std::fs::remove_dir_all(volume.join("old")).unwrap();
    create_snapshot(&mut host.clients, "app", "after", "").await.expect("snapshot after");

    let output = cli(&host.daemon, &["--json", "diff", "app", "before", "after"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let diff: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let got = by_path(&diff);
    let entry =
        |change: &str, other: Option<&str>, size: Option<u64>| (change.to_owned(), other.map(str::to_owned), size);
    let expected = BTreeMap::from([
        ("data/gone.dat".to_owned(), entry("deleted", None, Some(300))),
        ("data/mode".to_owned(), entry("metadata", None, Some(5))),
        ("data/table.dat".to_owned(), entry("changed", None, Some(1 << 20))),
        ("data/tagged".to_owned(), entry("metadata", None, Some(6))),
        ("etc/app.conf.link".to_owned(), entry("added", Some("etc/app.conf"), Some(100))),
        ("etc/moved-in".to_owned(), entry("renamed", Some("moved-out"), Some(11))),
        ("etc/new.conf".to_owned(), entry("added", None, Some(42))),
        ("journal".to_owned(), entry("renamed", Some("logs"), got.get("journal").and_then(|e| e.2))),
        ("old".to_owned(), entry("deleted", None, got.get("old").and_then(|e| e.2))),
        ("old/x".to_owned(), entry("deleted", None, Some(8))),
        ("old/y".to_owned(), entry("deleted", None, Some(9))),
    ]);
    assert_eq!(got, expected, "{diff:#}");
    let table_changed = diff.as_array().unwrap().iter().find(|d| d["path"] == "data/table.dat").unwrap();
    assert_eq!(table_changed["changed_bytes"], 4096, "{table_changed}");

    // The same changes found by walking both trees, as for LVM thin volumes
    // (whose filesystem cannot say): the same paths, kinds and origins.
    let folder = snapshot_folder(host.fs.mount_point(), "app");
    let (before, after) = (folder.join("before"), folder.join("after"));
    let changes = rollpoint::engine::tree_changes::walk_changes(&before, &after).expect("walk");
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    let walked: BTreeMap<String, (String, Option<String>)> =
        rollpoint::engine::diff::fold(&changes, |path| before.join(std::ffi::OsStr::from_bytes(path)).exists())
            .into_iter()
            .map(|d| (text(d.path), (d.kind.name().to_owned(), d.from.or(d.link_to).map(text))))
            .collect();
    let sent: BTreeMap<String, (String, Option<String>)> =
        expected.iter().map(|(path, (change, other, _))| (path.clone(), (change.clone(), other.clone()))).collect();
    assert_eq!(walked, sent, "{changes:?}");

    // The table, and the same through REST; an unknown snapshot is a 404.
    let table = cli(&host.daemon, &["diff", "app", "before", "after"]);
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.starts_with("CHANGE"), "{table}");
    assert!(table.contains("etc/moved-in <- moved-out"), "{table}");
    let socket = Via::Socket(host.daemon.socket().to_owned());
    let (code, rest) = curl(&socket, "GET", "/api/v1/containers/app/diff?from=before&to=after", None);
    assert_eq!(code, 200, "{rest}");
    assert_eq!(by_path(&rest["paths"]), expected);
    let (code, missing) = curl(&socket, "GET", "/api/v1/containers/app/diff?from=before&to=nope", None);
    assert_eq!(code, 404, "{missing}");
    // No change at all: an empty diff.
    let same = cli(&host.daemon, &["--json", "diff", "app", "after", "after"]);
    assert_eq!(serde_json::from_slice::<Value>(&same.stdout).unwrap(), serde_json::json!([]));
    // Against the live container; its temporary view does not stay.
    write(&volume.join("etc/later.conf"), 3);
    let live = cli(&host.daemon, &["--json", "diff", "app", "after"]);
    assert!(live.status.success(), "{}", String::from_utf8_lossy(&live.stderr));
    let live: Value = serde_json::from_slice(&live.stdout).unwrap();
    assert_eq!(by_path(&live), BTreeMap::from([("etc/later.conf".to_owned(), entry("added", None, Some(3)))]));
    let left = subvolumes_in(&snapshot_folder(host.fs.mount_point(), "app"));
    assert_eq!(left.into_iter().collect::<Vec<_>>(), ["after", "before"], "the live view is gone");
    drop(host);
}
