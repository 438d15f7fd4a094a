//! `rollpoint restore-files` on a real daemon and a loop-backed btrfs: a
//! file (owner, mode, xattr) and a folder are brought back from a snapshot
//! into the live volume, with a pre-restore snapshot that undoes it; `--to`
//! writes them elsewhere and leaves the container alone; bad paths are
//! refused by name. Root only.

mod common;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

use common::curl::{curl, Via};
use common::*;
use rollpoint::testkit::remote::RemoteHost;
use rollpoint::testkit::root_or_skip;
use serde_json::{json, Value};

fn json_of(output: &std::process::Output) -> Value {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chosen_paths_come_back_with_their_metadata_and_the_restore_is_undone() {
    if !root_or_skip("chosen_paths_come_back_with_their_metadata_and_the_restore_is_undone") {
        return;
    }
    let mut host = RemoteHost::start(daemon_binary(), "restorefiles", "").await;
    let volume = host.volume.clone();
    register(&mut host.clients, "app", host.cgroup.relative_name(), &volume).await.expect("register");
    std::fs::create_dir_all(volume.join("etc")).unwrap();
    std::fs::create_dir_all(volume.join("uploads/2026")).unwrap();
    let conf = volume.join("etc/app.conf");
    std::fs::write(&conf, "good = 1\n").unwrap();
    std::os::unix::fs::chown(&conf, Some(1234), Some(2345)).unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o640)).unwrap();
    set_xattr(&conf, "user.origin", b"snapshot");
    std::fs::write(volume.join("uploads/2026/a.png"), "A").unwrap();
    std::fs::write(volume.join("uploads/2026/b.png"), "B").unwrap();
    std::fs::write(volume.join("other"), "kept as is").unwrap();
    create_snapshot(&mut host.clients, "app", "good", "").await.expect("snapshot");

    // The migration: the file rewritten (new owner and mode), the folder
    // half deleted and grown, another file changed.
    std::fs::remove_file(&conf).unwrap();
    std::fs::write(&conf, "good = 0\n").unwrap();
    std::fs::remove_file(volume.join("uploads/2026/a.png")).unwrap();
    std::fs::write(volume.join("uploads/2026/c.png"), "C").unwrap();
    std::fs::write(volume.join("other"), "changed since").unwrap();

    let restored = json_of(&cli(&host.daemon, &["--json", "restore-files", "app", "good", "etc/app.conf", "/uploads"]));
    assert_eq!(restored["paths"], json!(["etc/app.conf", "/uploads"]), "{restored}");
    let pre = restored["pre_restore_snapshot"].as_str().expect("a pre-restore snapshot").to_owned();
    assert!(pre.starts_with("pre-restore-"), "{pre}");
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "good = 1\n");
    let meta = std::fs::metadata(&conf).unwrap();
    assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (1234, 2345, 0o640));
    assert_eq!(get_xattr(&conf, "user.origin").as_deref(), Some(&b"snapshot"[..]));
    let uploads: Vec<String> = std::fs::read_dir(volume.join("uploads/2026"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(uploads, ["a.png", "b.png"], "the folder is the snapshot's, whole");
    assert_eq!(std::fs::read_to_string(volume.join("other")).unwrap(), "changed since", "not asked for");
    let names: Vec<String> = std::fs::read_dir(volume.join("etc"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["app.conf"], "no temporary names left");

    // Undo: the same paths from the pre-restore snapshot.
    json_of(&cli(&host.daemon, &["--json", "restore-files", "app", &pre, "etc/app.conf", "uploads"]));
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "good = 0\n");
    assert!(volume.join("uploads/2026/c.png").exists() && !volume.join("uploads/2026/a.png").exists());

    // Elsewhere: the container is left alone, no pre-restore snapshot.
    let elsewhere = tempfile::tempdir().unwrap();
    let to = elsewhere.path().join("copy");
    let socket = Via::Socket(host.daemon.socket().to_owned());
    let body = json!({"snapshot": "good", "paths": ["etc/app.conf"], "to": to}).to_string();
    let (code, written) = curl(&socket, "POST", "/api/v1/containers/app/restore-files", Some(&body));
    assert_eq!(code, 200, "{written}");
    assert_eq!(written["pre_restore_snapshot"], Value::Null, "{written}");
    assert_eq!(std::fs::read_to_string(to.join("etc/app.conf")).unwrap(), "good = 1\n");
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "good = 0\n", "the container is untouched");

    // Bad paths are refused by name; nothing is snapshotted for them.
    let before = list_snapshots(&mut host.clients, "app").await.len();
    for (path, code, field) in [("../etc/passwd", 400, Some("paths")), ("nope", 404, None)] {
        let body = json!({"snapshot": "good", "paths": [path]}).to_string();
        let (got, refused) = curl(&socket, "POST", "/api/v1/containers/app/restore-files", Some(&body));
        assert_eq!((got, refused["field"].as_str()), (code, field), "{path}: {refused}");
    }
    // A symlink planted in the container does not lead the daemon out.
    std::fs::remove_dir_all(volume.join("etc")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), volume.join("etc")).unwrap();
    let escaped = cli(&host.daemon, &["restore-files", "app", "good", "etc/app.conf"]);
    assert!(!escaped.status.success(), "written through a symlink");
    assert!(
        String::from_utf8_lossy(&escaped.stderr).contains("outside"),
        "{}",
        String::from_utf8_lossy(&escaped.stderr)
    );
    assert_eq!(std::fs::read_to_string(to.join("etc/app.conf")).unwrap(), "good = 1\n");
    assert!(!elsewhere.path().join("app.conf").exists(), "nothing written outside the volume");
    assert_eq!(list_snapshots(&mut host.clients, "app").await.len(), before, "nothing snapshotted for refused calls");
    drop(host);
}

/// Detaches whatever is still mounted at the path when the test ends, so
/// that a failure never leaves the loop filesystem busy.
struct MountGuard(std::path::PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_mounts_read_only_and_unmounts() {
    if !root_or_skip("a_snapshot_mounts_read_only_and_unmounts") {
        return;
    }
    let mut host = RemoteHost::start(daemon_binary(), "mountsnap", "").await;
    let volume = host.volume.clone();
    register(&mut host.clients, "app", host.cgroup.relative_name(), &volume).await.expect("register");
    std::fs::write(volume.join("data"), "then").unwrap();
    create_snapshot(&mut host.clients, "app", "then", "rollback-point").await.expect("snapshot");
    std::fs::write(volume.join("data"), "now").unwrap();

    let place = tempfile::tempdir().unwrap();
    let at = place.path().join("view");
    std::fs::create_dir(&at).unwrap();
    let _guard = MountGuard(at.clone());
    let at_text = at.to_str().unwrap();
    let mounted = succeeded(cli(&host.daemon, &["--json", "snapshot", "mount", "app", "rollback-point", at_text]));
    assert_eq!(mounted["snapshot"]["name"], "then", "{mounted}");
    assert_eq!(std::fs::read_to_string(at.join("data")).unwrap(), "then");
    let written = std::fs::write(at.join("data"), "changed");
    assert_eq!(written.unwrap_err().raw_os_error(), Some(libc::EROFS), "the mount is read-only");

    // Refusals: a folder that is not empty, one inside the volume, a path
    // where no snapshot of the container is mounted, deleting the snapshot
    // while it is mounted (btrfs itself would delete it under the mount).
    for (args, words) in [
        (vec!["snapshot", "delete", "app", "then"], "is mounted at"),
        (vec!["snapshot", "mount", "app", "then", at_text], "not an empty directory"),
        (vec!["snapshot", "mount", "app", "then", volume.to_str().unwrap()], "inside"),
        (vec!["snapshot", "unmount", "app", place.path().to_str().unwrap()], "mounted at"),
    ] {
        let refused = cli(&host.daemon, &args);
        assert!(!refused.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains(words), "{args:?}: {stderr}");
    }

    assert_eq!(std::fs::read_to_string(at.join("data")).unwrap(), "then", "still there after the refused delete");

    let unmounted = succeeded(cli(&host.daemon, &["--json", "snapshot", "unmount", "app", at_text]));
    assert_eq!(unmounted["snapshot"], "then", "{unmounted}");
    assert_eq!(std::fs::read_dir(&at).unwrap().count(), 0, "the folder is empty again");
    succeeded(cli(&host.daemon, &["snapshot", "delete", "app", "then"]));
    let events = list_events(&mut host.clients, "app", "").await;
    assert!(
        events.iter().any(|e| e.kind == "snapshot.mounted") && events.iter().any(|e| e.kind == "snapshot.unmounted")
    );
}
