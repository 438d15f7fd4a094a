//! Hooks on a real daemon, a loop-backed btrfs and a real "container": a
//! process in its own cgroup and its own mount namespace, where the volume
//! is mounted at /mnt/app (a path that exists nowhere else). A hook that
//! writes there proves it ran inside. Root only.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::curl::{curl, Via};
use common::*;
use rollpoint::testkit::remote::RemoteHost;
use rollpoint::testkit::root_or_skip;

/// Starts the container in the background (when run in its cgroup) and
/// returns once its mount namespace has the volume at /mnt/app.
const CONTAINER_SCRIPT: &str = r#"#!/bin/sh
/usr/bin/unshare --mount --propagation private /bin/sh -c \
  'mount -t tmpfs rollpoint-hooks /mnt && mkdir /mnt/app && mount --bind "$0" /mnt/app && exec sleep 600' "$1" \
  </dev/null >/dev/null 2>&1 &
pid=$!
while ! grep -q " /mnt/app " /proc/$pid/mountinfo 2>/dev/null; do
  kill -0 $pid 2>/dev/null || exit 1
  sleep 0.01
done
"#;

struct Container {
    host: RemoteHost,
    script: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// A host with the container `app` started (not yet registered).
async fn start(prefix: &str) -> Container {
    let host = RemoteHost::start(daemon_binary(), prefix, "").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("container.sh");
    std::fs::write(&script, CONTAINER_SCRIPT).unwrap();
    let status = host
        .cgroup
        .spawn(std::process::Command::new("/bin/sh").arg(&script).arg(&host.volume))
        .expect("start the container")
        .wait()
        .unwrap();
    assert!(status.success(), "the container did not start");
    Container { host, script, _dir: dir }
}

fn register_args<'a>(container: &'a Container, hooks: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--json",
        "container",
        "register",
        "app",
        "--cgroup",
        container.host.cgroup.relative_name(),
        "--subvolume",
        container.host.volume.to_str().unwrap(),
    ];
    args.extend(hooks);
    args
}

fn nanos(path: &Path) -> i64 {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_run_inside_the_container_around_the_freeze() {
    if !root_or_skip("hooks_run_inside_the_container_around_the_freeze") {
        return;
    }
    let mut c = start("hooks-in").await;
    let start_command = format!("/bin/sh {} {}", c.script.display(), c.host.volume.display());
    let hooks = [
        "--pre-freeze",
        r#"sh -c 'echo "$ROLLPOINT_HOOK $ROLLPOINT_SNAPSHOT" > /mnt/app/pre-freeze'"#,
        "--hold",
        "sh -c 'date +%s%N > /mnt/app/held-from; echo locked; cat >/dev/null; date +%s%N > /mnt/app/held-until'",
        "--post-thaw",
        "sh -c 'date +%s%N > /mnt/app/thawed'",
        "--pre-restore",
        "sh -c 'echo before > /mnt/app/pre-restore'",
        "--post-restore",
        "sh -c 'echo after > /mnt/app/post-restore'",
        "--stop-command",
        "/bin/true",
        "--start-command",
        start_command.as_str(),
    ];
    let registered = succeeded(cli(&c.host.daemon, &register_args(&c, &hooks)));
    assert_eq!(registered["hooks"]["hold"]["on_failure"], "abort", "{registered}");
    assert_eq!(registered["hooks"]["pre_freeze"]["command"][0], "sh", "{registered}");

    let taken = create_snapshot(&mut c.host.clients, "app", "with-hooks", "").await.expect("snapshot");
    let snapshot = Path::new(&taken.location);
    let live = &c.host.volume;
    // The pre_freeze hook wrote inside the container's mount namespace: its
    // file is in the snapshot, and /mnt/app does not exist on the host.
    assert_eq!(std::fs::read_to_string(snapshot.join("pre-freeze")).unwrap(), "pre_freeze with-hooks\n");
    assert!(!Path::new("/mnt/app/pre-freeze").exists());
    // The hold was in place before the snapshot and ended after it.
    assert!(snapshot.join("held-from").exists());
    assert!(!snapshot.join("held-until").exists(), "the hold ended before the snapshot");
    assert!(!snapshot.join("thawed").exists(), "post_thaw ran before the snapshot");
    let snapshot_taken = time_of(taken.create_time.as_ref()).timestamp_nanos_opt().unwrap()
        + i64::try_from(duration_of(taken.frozen_for.as_ref()).as_nanos()).unwrap();
    assert!(nanos(&live.join("held-from")) <= snapshot_taken);
    assert!(nanos(&live.join("held-until")) >= snapshot_taken, "the hold ended before the thaw");
    assert!(nanos(&live.join("thawed")) >= nanos(&live.join("held-until")));

    let events = list_events(&mut c.host.clients, "app", "").await;
    let hooks_done: Vec<_> = events.iter().filter(|e| e.kind == "hook.finished").map(|e| e.detail.as_str()).collect();
    assert_eq!(hooks_done, ["pre_freeze", "hold", "post_thaw"], "{events:?}");

    // Restore: pre_restore runs in the running container before the stop,
    // post_restore in the one the lifecycle started after the swap.
    create_snapshot(&mut c.host.clients, "app", "target", "").await.expect("snapshot");
    let restored = restore(&mut c.host.clients, "app", "target", "").await.expect("restore");
    let before = get_snapshot(&mut c.host.clients, "app", &restored.pre_restore_snapshot).await.unwrap().location;
    let before = Path::new(&before);
    assert_eq!(std::fs::read_to_string(before.join("pre-restore")).unwrap(), "before\n");
    assert!(!live.join("pre-restore").exists(), "the restored volume has the file written after the target");
    assert_eq!(std::fs::read_to_string(live.join("post-restore")).unwrap(), "after\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_hooks_refuse_the_snapshot_without_freezing() {
    if !root_or_skip("failing_hooks_refuse_the_snapshot_without_freezing") {
        return;
    }
    let mut c = start("hooks-fail").await;
    // A hook that hangs: killed at its timeout, no snapshot, never frozen.
    let hanging = ["--pre-freeze", "sh -c 'echo $$ > /mnt/app/hook-pid; exec sleep 60'", "--hook-timeout", "1"];
    succeeded(cli(&c.host.daemon, &register_args(&c, &hanging)));
    let watching = Arc::new(AtomicBool::new(true));
    let frozen_seen = Arc::new(AtomicBool::new(false));
    let watcher = {
        let events = c.host.cgroup.path().join("cgroup.events");
        let (watching, frozen_seen) = (watching.clone(), frozen_seen.clone());
        std::thread::spawn(move || {
            while watching.load(Ordering::Relaxed) {
                if std::fs::read_to_string(&events).unwrap_or_default().contains("frozen 1") {
                    frozen_seen.store(true, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_micros(500));
            }
        })
    };
    let refused = create_snapshot(&mut c.host.clients, "app", "hung", "").await.unwrap_err();
    watching.store(false, Ordering::Relaxed);
    watcher.join().unwrap();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("pre_freeze") && refused.message().contains("1s"), "{refused:?}");
    assert!(!frozen_seen.load(Ordering::Relaxed), "the container was frozen although its hook failed");
    let hook_pid: u32 = std::fs::read_to_string(c.host.volume.join("hook-pid")).unwrap().trim().parse().unwrap();
    assert!(!process_alive(hook_pid), "the hook outlived its timeout");
    assert!(list_snapshots(&mut c.host.clients, "app").await.is_empty());

    // A hook that fails: its words are in the error.
    let failing = ["--pre-freeze", "sh -c 'echo cannot flush the cache >&2; exit 3'"];
    succeeded(cli(&c.host.daemon, &[&["container", "update", "app"][..], &failing].concat()));
    let refused = create_snapshot(&mut c.host.clients, "app", "failed", "").await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("cannot flush the cache"), "{refused:?}");

    // The same with policy continue: the snapshot is taken, with a warning.
    succeeded(cli(
        &c.host.daemon,
        &[&["container", "update", "app", "--hook-on-failure", "continue"][..], &failing].concat(),
    ));
    create_snapshot(&mut c.host.clients, "app", "anyway", "").await.expect("snapshot despite the hook");
    let events = list_events(&mut c.host.clients, "app", "").await;
    assert!(events.iter().any(|e| e.kind == "hook.failed" && e.outcome == "warning"), "{events:?}");

    // A hold hook that ends before it is released held nothing across the
    // snapshot: refused, and nothing is left on disk.
    succeeded(cli(&c.host.daemon, &["container", "update", "app", "--hold", "sh -c 'echo ready'"]));
    let before = subvolumes_in(&snapshot_folder(c.host.fs.mount_point(), "app"));
    let refused = create_snapshot(&mut c.host.clients, "app", "unheld", "").await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("hold") && refused.message().contains("ended before"), "{refused:?}");
    assert_eq!(subvolumes_in(&snapshot_folder(c.host.fs.mount_point(), "app")), before);

    // Bad hooks are refused by field; --no-hooks removes them all.
    let bad = cli(&c.host.daemon, &["container", "update", "app", "--pre-freeze", "true", "--hook-timeout", "99999"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("hooks.pre_freeze.timeout_seconds"));
    let via = Via::Socket(c.host.daemon.socket().to_path_buf());
    let body = r#"{"hooks": {"pre_freeze": {"command": ["true"], "timeout_seconds": 99999}}}"#;
    let (status, refused) = curl(&via, "PATCH", "/api/v1/containers/app", Some(body));
    assert_eq!(status, 400, "{refused}");
    assert!(refused.to_string().contains("hooks.pre_freeze.timeout_seconds"), "{refused}");
    let (status, refused) =
        curl(&via, "PATCH", "/api/v1/containers/app", Some(r#"{"hooks": {"pre_fraze": {"command": ["true"]}}}"#));
    assert_eq!(status, 400, "{refused}");
    let body = r#"{"hooks": {"post_thaw": {"command": ["true"], "on_failure": "continue"}}}"#;
    let (status, updated) = curl(&via, "PATCH", "/api/v1/containers/app", Some(body));
    assert_eq!((status, updated["hooks"]["post_thaw"]["on_failure"].as_str()), (200, Some("continue")), "{updated}");
    let cleared = succeeded(cli(&c.host.daemon, &["--json", "container", "update", "app", "--no-hooks"]));
    assert!(cleared.get("hooks").is_none(), "{cleared}");
    create_snapshot(&mut c.host.clients, "app", "plain", "").await.expect("snapshot without hooks");
}
