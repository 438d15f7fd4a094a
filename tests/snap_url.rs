//! The page's cron entry as written: `curl -X POST $SNAP_URL -d '{"alias":
//! "rollback-point"}'`, fired by rollpointd, reaches rollpointd. The entry is
//! bound to its container (`POST /api/v1/containers/{id}/entries`), each run
//! gets `SNAP_URL` with a credential for that run only, and the timeline
//! reads "cron fired -> snapshot landed". Then what the credential may not
//! do: be used after its run, on another container, for a restore or a
//! delete, on the daemon's other listeners; and it never reaches the log.
//!
//! Root only: loop-backed btrfs, real cgroups, a real `rollpointd`, the
//! `curl` binary.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::curl::{curl, curl_with, Via};
use common::*;
use rollpoint::testkit::cgroup::TestCgroup;
use rollpoint::testkit::daemon::TestDaemon;
use rollpoint::testkit::loop_btrfs::LoopBtrfs;
use rollpoint::testkit::root_or_skip;
use serde_json::{json, Value};

/// The page's first step, verbatim.
const PAGES_ENTRY: &str = r#"{"schedule": "55 2 * * *", "command": "curl -X POST $SNAP_URL -d '{\"alias\":\"rollback-point\"}'", "comment": "pre-migration snapshot"}"#;

/// How long the test waits for a `* * * * *` entry to fire by the clock.
const CLOCK_TIMEOUT: Duration = Duration::from_secs(150);

struct Setup {
    daemon: TestDaemon,
    port: u16,
    socket: Via,
    // Dropped after the daemon: cgroups, then the filesystem.
    _cgroups: Vec<TestCgroup>,
    _fs: LoopBtrfs,
}

async fn setup(containers: &[&str]) -> Setup {
    let fs = LoopBtrfs::create(256 << 20).expect("loop btrfs");
    let (daemon, port) = daemon_on_loopback_tcp().await;
    let socket = Via::Socket(daemon.socket().to_owned());
    let mut cgroups = Vec::new();
    for name in containers {
        let volume = fs.create_subvolume(name).expect("subvolume");
        let cgroup = TestCgroup::create(&format!("snapurl-{name}")).expect("cgroup");
        let body = json!({"id": name, "cgroup": cgroup.relative_name(), "subvolume": volume}).to_string();
        let (code, container) = curl(&socket, "POST", "/api/v1/containers", Some(&body));
        assert_eq!(code, 200, "{container}");
        cgroups.push(cgroup);
    }
    Setup { daemon, port, socket, _cgroups: cgroups, _fs: fs }
}

fn kinds_of(events: &Value) -> Vec<String> {
    events["events"].as_array().unwrap().iter().filter_map(|e| e["kind"].as_str().map(str::to_owned)).collect()
}

/// The snapshot of `container` with `alias`, once it exists.
fn wait_for_alias(via: &Via, container: &str, alias: &str, timeout: Duration) -> Value {
    let started = Instant::now();
    loop {
        let (code, snapshot) = curl(via, "GET", &format!("/api/v1/containers/{container}/snapshots/{alias}"), None);
        if code == 200 {
            return snapshot;
        }
        assert!(started.elapsed() < timeout, "no snapshot {alias} of {container} after {timeout:?}: {snapshot}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_entry_fires_and_its_snap_url_takes_the_snapshot() {
    if !root_or_skip("the_pages_entry_fires_and_its_snap_url_takes_the_snapshot") {
        return;
    }
    let setup = setup(&["db-1"]).await;
    let socket = &setup.socket;
    // By the clock: every minute (started first, checked last).
    let every_minute = r#"{"id": "clock", "schedule": "* * * * *", "command": "curl -sS -X POST $SNAP_URL -d '{\"alias\":\"by-the-clock\"}'"}"#;
    let (code, clock) = curl(socket, "POST", "/api/v1/containers/db-1/entries", Some(every_minute));
    assert_eq!(code, 200, "{clock}");

    // The page's body pasted as is; only the container is in the path.
    let (code, entry) = curl(socket, "POST", "/api/v1/containers/db-1/entries", Some(PAGES_ENTRY));
    assert_eq!(code, 200, "{entry}");
    assert_eq!(entry["container"], "db-1", "{entry}");
    assert_eq!(entry["comment"], "pre-migration snapshot", "{entry}");
    let name = entry["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("users/root/entries/"), "{name}");

    let (code, run) = curl(socket, "POST", &format!("/api/v1/{name}:run"), None);
    assert_eq!(code, 200, "{run}");
    assert_eq!(run["outcome"], "ok", "{run}");
    let snapshot = wait_for_alias(socket, "db-1", "rollback-point", Duration::from_secs(5));
    assert_eq!(snapshot["origin"], "schedule", "{snapshot}");
    assert_eq!(snapshot["state"], "ready", "{snapshot}");

    // The timeline as JSON: the firing, then the snapshot it took (the
    // entry's user as actor, the entry named), then the command's end.
    let (code, events) = curl(socket, "GET", &format!("/api/v1/events?entry={name}&limit=100"), None);
    assert_eq!(code, 200, "{events}");
    assert_eq!(kinds_of(&events), ["schedule.created", "schedule.fired", "snapshot.created", "schedule.command"]);
    // The same, watched (the live stream catches up from the start, then
    // keeps to the entry).
    let mut clients = setup.daemon.clients().await.expect("connect");
    let request = rollpoint::api::proto::WatchEventsRequest { entry: name.clone(), ..Default::default() };
    let mut watched = clients.events.watch_events(request).await.expect("watch").into_inner();
    let mut kinds = Vec::new();
    while kinds.len() < 4 {
        let event = tokio::time::timeout(Duration::from_secs(30), watched.message()).await;
        let event = event.expect("an event within 30 s").expect("stream").expect("not ended");
        assert_eq!(event.entry, name, "{event:?}");
        kinds.push(event.kind);
    }
    assert_eq!(kinds, ["schedule.created", "schedule.fired", "snapshot.created", "schedule.command"]);
    let created = &events["events"][2];
    assert_eq!(created["actor"], "user:root", "{created}");
    assert_eq!(created["container"], "db-1", "{created}");
    let (code, listed) = curl(socket, "GET", "/api/v1/containers/db-1/entries", None);
    assert_eq!(code, 200, "{listed}");
    assert_eq!(listed["entries"].as_array().unwrap().len(), 2, "{listed}");

    let by_clock = wait_for_alias(socket, "db-1", "by-the-clock", CLOCK_TIMEOUT);
    assert_eq!(by_clock["origin"], "schedule", "{by_clock}");
    let (_, events) = curl(socket, "GET", "/api/v1/events?entry=users/root/entries/clock&limit=100", None);
    let kinds = kinds_of(&events);
    let fired = kinds.iter().position(|k| k == "schedule.fired").expect("fired");
    let landed = kinds.iter().position(|k| k == "snapshot.created").expect("snapshot");
    assert!(fired < landed, "{kinds:?}");
    drop(setup);
}

/// A command that records what its run sees and what its credential may
/// do, each answer in a file of `dir` (nothing on stdout: that goes to the
/// timeline).
fn probe_command(dir: &Path) -> String {
    let dir = dir.display();
    let code = "curl -s -o /dev/null -w '%{http_code}'";
    [
        format!("printf %s \"$SNAP_URL\" > {dir}/url"),
        format!("env | grep -E '^(ROLLPOINT_|GREETING=)' | sort > {dir}/env"),
        format!("{code} -X POST \"$SNAP_URL\" -d '{{\"alias\":\"probe\"}}' > {dir}/create"),
        format!("{code} \"$SNAP_URL\" > {dir}/list"),
        format!("{code} \"$SNAP_URL/probe\" > {dir}/get"),
        format!("{code} -X POST \"$(printf %s \"$SNAP_URL\" | sed s,/db-1/,/db-2/,)\" -d '{{}}' > {dir}/other"),
        format!("{code} -X PATCH \"$SNAP_URL/probe\" > {dir}/restore"),
        format!("{code} -X DELETE \"$SNAP_URL/probe\" > {dir}/delete"),
        format!("{code} -X POST \"${{SNAP_URL%/snapshots}}/entries\" -d '{{}}' > {dir}/entries"),
    ]
    .join("; ")
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_credential_takes_snapshots_of_its_container_only_while_it_runs() {
    if !root_or_skip("a_runs_credential_takes_snapshots_of_its_container_only_while_it_runs") {
        return;
    }
    let setup = setup(&["db-1", "db-2"]).await;
    let socket = &setup.socket;
    let dir = tempfile::tempdir().expect("temp dir");
    let body = json!({
        "id": "probe",
        "schedule": "55 2 * * *",
        "command": probe_command(dir.path()),
        "environment": {"GREETING": "hello world"},
    })
    .to_string();
    let (code, entry) = curl(socket, "POST", "/api/v1/containers/db-1/entries", Some(&body));
    assert_eq!(code, 200, "{entry}");
    assert_eq!(entry["environment"], json!({"GREETING": "hello world"}), "{entry}");
    let (code, run) = curl(socket, "POST", "/api/v1/users/root/entries/probe:run", None);
    assert_eq!(code, 200, "{run}");
    assert_eq!(run["outcome"], "ok", "{run}");

    // During the run: its container's snapshots, and nothing else.
    assert_eq!(read(dir.path(), "create"), "200");
    assert_eq!(read(dir.path(), "list"), "200");
    assert_eq!(read(dir.path(), "get"), "200");
    for refused in ["other", "restore", "delete", "entries"] {
        assert_eq!(read(dir.path(), refused), "403", "{refused}");
    }
    assert_eq!(curl(socket, "GET", "/api/v1/containers/db-2/snapshots", None).1["snapshots"], json!([]));

    // What the run was told.
    let environment = read(dir.path(), "env");
    let variables: Vec<&str> = environment.lines().collect();
    assert_eq!(variables.len(), 5, "{environment}");
    assert_eq!(variables[0], "GREETING=hello world");
    assert_eq!(variables[1], "ROLLPOINT_CONTAINER=db-1");
    assert_eq!(variables[2], "ROLLPOINT_ENTRY=users/root/entries/probe");
    assert!(variables[3].starts_with("ROLLPOINT_FIRE_TIME=20"), "{environment}");
    let run_id = variables[4].strip_prefix("ROLLPOINT_RUN_ID=").expect("run id");
    assert!(run_id.len() == 16 && run_id.chars().all(|c| c.is_ascii_hexdigit()), "{run_id}");

    // After the run: the same URL is turned away.
    let url = read(dir.path(), "url");
    let (scheme_and_secret, rest) = url.split_once('@').expect("userinfo in the URL");
    let secret = scheme_and_secret.rsplit(':').next().unwrap().to_owned();
    assert!(rest.starts_with("127.0.0.1:"), "{url}");
    let (code, answer) = curl(&Via::Url(url.clone()), "POST", "", Some(r#"{"alias":"late"}"#));
    assert_eq!(code, 401, "{answer}");
    assert_eq!(answer["code"], "UNAUTHENTICATED", "{answer}");
    // A fresh credential each run: the second run's is another one.
    let (code, _) = curl(socket, "POST", "/api/v1/users/root/entries/probe:run", None);
    assert_eq!(code, 200);
    assert_ne!(read(dir.path(), "url"), url);
    // A run's credential is no key to the daemon's other listeners.
    let basic = format!("Authorization: Basic {}", base64_of(&format!("run:{secret}")));
    let tcp = Via::Tcp { port: setup.port, token: None };
    let (code, answer) = curl_with(&tcp, "GET", "/api/v1/containers/db-1/snapshots", None, &[&basic]);
    assert_eq!(code, 401, "{answer}");

    // The credential is in neither the log nor the timeline.
    let (_, events) = curl(socket, "GET", "/api/v1/events?limit=1000", None);
    assert!(!events.to_string().contains(&secret), "the timeline holds the credential");
    assert!(!setup.daemon.log().contains(&secret), "the log holds the credential");
    drop(setup);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_variables_and_bindings_are_refused_by_field() {
    if !root_or_skip("bad_variables_and_bindings_are_refused_by_field") {
        return;
    }
    let setup = setup(&["db-1"]).await;
    let socket = &setup.socket;
    let entry = |environment: Value| {
        json!({"schedule": "55 2 * * *", "command": "true", "environment": environment}).to_string()
    };
    for (environment, what) in [
        (json!({"1BAD": "x"}), "1BAD"),
        (json!({"A-B": "x"}), "A-B"),
        (json!({"SNAP_URL": "x"}), "SNAP_URL"),
        (json!({"BIG": "x".repeat(5000)}), "4096"),
    ] {
        let (code, refused) = curl(socket, "POST", "/api/v1/containers/db-1/entries", Some(&entry(environment)));
        assert_eq!(code, 400, "{refused}");
        assert_eq!(refused["field"], "entry.environment", "{refused}");
        assert!(refused["message"].as_str().unwrap().contains(what), "{refused}");
    }
    let (code, refused) = curl(socket, "POST", "/api/v1/containers/nope/entries", Some(&entry(json!({}))));
    assert_eq!(code, 404, "{refused}");
    let (code, refused) = curl(
        socket,
        "POST",
        "/api/v1/containers/db-1/entries",
        Some(r#"{"schedule": "* * * * *", "command": "true", "container": "db-2"}"#),
    );
    assert_eq!((code, refused["field"].as_str()), (400, Some("container")), "{refused}");
    // Still serving, and nothing was created.
    let (code, listed) = curl(socket, "GET", "/api/v1/containers/db-1/entries", None);
    assert_eq!(code, 200, "{listed}");
    assert_eq!(listed["entries"], json!([]), "{listed}");
    drop(setup);
}

/// Standard base64 (RFC 4648) of `text`, as curl writes Basic credentials.
fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}
