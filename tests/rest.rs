//! REST/JSON on the daemon's own listeners, with the `curl` binary only, as
//! on the page: over the Unix socket (`--unix-socket`) and over loopback TCP
//! with a bearer token. The story (snapshot with alias, PATCH restore, the
//! events as JSON, the SSE stream sees the restore), the auth refusals of
//! tests/authorization.rs on REST, and bad input that leaves the daemon
//! serving.
//!
//! Root only: loop-backed btrfs, a real cgroup, a real `rollpointd`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::curl::{curl, curl_with, Via};
use common::*;
use rollpoint::api::proto;
use rollpoint::testkit::cgroup::TestCgroup;
use rollpoint::testkit::daemon::TestDaemon;
use rollpoint::testkit::loop_btrfs::LoopBtrfs;
use rollpoint::testkit::root_or_skip;
use serde_json::{json, Value};

/// Longest wait for one SSE event.
const SSE_TIMEOUT: Duration = Duration::from_secs(30);

/// A `curl -N` reading the live event stream, killed (by its pid) on drop.
struct SseReader {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl SseReader {
    fn start(via: &Via, query: &str) -> SseReader {
        let mut command = Command::new("curl");
        command.args(["-sS", "-N", "-H", "Accept: text/event-stream"]);
        let base = via.base_args(&mut command);
        command.arg(format!("{base}/api/v1/events{query}")).stdout(Stdio::piped());
        let mut child = command.spawn().expect("run curl -N");
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        SseReader { child, lines }
    }

    /// The data of the next event of `kind`.
    fn wait_for(&self, kind: &str) -> Value {
        let mut current_kind = String::new();
        loop {
            let line = self.lines.recv_timeout(SSE_TIMEOUT).unwrap_or_else(|_| panic!("no {kind} event on the stream"));
            if let Some(event) = line.strip_prefix("event: ") {
                current_kind = event.to_owned();
            } else if let Some(data) = line.strip_prefix("data: ") {
                if current_kind == kind {
                    return serde_json::from_str(data).expect("event data is JSON");
                }
            }
        }
    }
}

impl Drop for SseReader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Setup {
    daemon: TestDaemon,
    port: u16,
    volume: PathBuf,
    // Dropped after the daemon, in this order: cgroup, then filesystem.
    _cgroup: TestCgroup,
    fs: LoopBtrfs,
}

async fn setup(name: &str) -> Setup {
    let fs = LoopBtrfs::create(256 << 20).expect("loop btrfs");
    let volume = fs.create_subvolume(name).expect("subvolume");
    let cgroup = TestCgroup::create(&format!("rest-{name}")).expect("cgroup");
    let (daemon, port) = daemon_on_loopback_tcp().await;
    let socket = Via::Socket(daemon.socket().to_owned());
    let body = json!({"id": name, "cgroup": cgroup.relative_name(), "subvolume": volume}).to_string();
    let (code, container) = curl(&socket, "POST", "/api/v1/containers", Some(&body));
    assert_eq!(code, 200, "{container}");
    assert_eq!(container["id"], name);
    Setup { daemon, port, volume, _cgroup: cgroup, fs }
}

fn story(via: &Via, container: &str, volume: &Path) {
    std::fs::write(volume.join("db.txt"), "before the migration").unwrap();
    let sse = SseReader::start(via, &format!("?container={container}"));
    let snapshots = format!("/api/v1/containers/{container}/snapshots");
    let (code, snapshot) = curl(via, "POST", &snapshots, Some(r#"{"alias": "rollback-point", "expiry": 7}"#));
    assert_eq!(code, 200, "{snapshot}");
    assert_eq!(snapshot["alias"], "rollback-point");
    assert_eq!(snapshot["state"], "ready");
    assert!(snapshot["expire_time"].is_string(), "{snapshot}");
    let name = snapshot["name"].as_str().unwrap().to_owned();

    let (code, listed) = curl(via, "GET", &snapshots, None);
    assert_eq!(code, 200, "{listed}");
    assert!(listed["snapshots"].as_array().unwrap().iter().any(|s| s["name"] == name.as_str()), "{listed}");

    std::fs::write(volume.join("db.txt"), "ALTER TABLE broke it").unwrap();
    let (code, restored) = curl(via, "PATCH", &format!("{snapshots}/rollback-point"), None);
    assert_eq!(code, 200, "{restored}");
    assert_eq!(restored["restored"]["name"], name.as_str(), "{restored}");
    assert!(restored["pre_restore_snapshot"].is_string(), "{restored}");
    assert!(restored["downtime_ms"].is_number(), "{restored}");
    assert_eq!(restored["already_restored"], false, "{restored}");
    // Repeating the same restore, nothing written since, is answered as
    // already done: no second swap, no second pre-restore snapshot. (The
    // file is read only after: a read that updates its atime is a write to
    // btrfs, which moves the volume's generation: the README's noatime note.)
    let (code, again) = curl(via, "PATCH", &format!("{snapshots}/rollback-point"), None);
    assert_eq!(code, 200, "{again}");
    assert_eq!(again["restored"]["name"], name.as_str(), "{again}");
    assert_eq!(again["already_restored"], true, "{again}");
    assert_eq!(std::fs::read_to_string(volume.join("db.txt")).unwrap(), "before the migration");

    let seen = sse.wait_for("restore.finished");
    assert_eq!(seen["container"], container, "{seen}");

    let (code, events) = curl(via, "GET", &format!("/api/v1/events?container={container}&limit=1000"), None);
    assert_eq!(code, 200, "{events}");
    let kinds: Vec<&str> = events["events"].as_array().unwrap().iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(kinds.contains(&"snapshot.created") && kinds.contains(&"restore.finished"), "{kinds:?}");
    // The cursor: nothing after the last one.
    let last = events["events"].as_array().unwrap().last().unwrap()["sequence"].as_u64().unwrap();
    let (code, after) = curl(via, "GET", &format!("/api/v1/events?container={container}&after={last}"), None);
    assert_eq!(code, 200, "{after}");
    assert!(after["events"].as_array().unwrap().is_empty(), "{after}");

    // Update instead of restore; both at once is refused.
    let (code, updated) = curl(via, "PATCH", &format!("{snapshots}/{name}"), Some(r#"{"alias": "kept", "expiry": 3}"#));
    assert_eq!(code, 200, "{updated}");
    assert_eq!(updated["alias"], "kept");
    let (code, both) = curl(via, "PATCH", &format!("{snapshots}/{name}"), Some(r#"{"restore": true, "alias": "x"}"#));
    assert_eq!(code, 400, "{both}");
    assert_eq!(both["code"], "INVALID_ARGUMENT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_story_with_curl_over_the_socket_and_tcp() {
    if !root_or_skip("the_pages_story_with_curl_over_the_socket_and_tcp") {
        return;
    }
    let setup = setup("db-1").await;
    let socket = Via::Socket(setup.daemon.socket().to_owned());
    story(&socket, "db-1", &setup.volume);
    // A schedule entry, fired now, and changed.
    let body = r#"{"id": "pre-migration", "schedule": "55 2 * * *", "comment": "pre-migration snapshot",
                   "snapshot": {"container": "db-1", "alias": "nightly", "expiry": 7}}"#;
    let (code, entry) = curl(&socket, "POST", "/api/v1/users/root/entries", Some(body));
    assert_eq!(code, 200, "{entry}");
    assert_eq!(entry["name"], "users/root/entries/pre-migration");
    let (code, run) = curl(&socket, "POST", "/api/v1/users/root/entries/pre-migration:run", None);
    assert_eq!(code, 200, "{run}");
    assert_eq!(run["outcome"], "ok", "{run}");
    assert_eq!(run["snapshot"]["alias"], "nightly", "{run}");
    let (code, entry) =
        curl(&socket, "PATCH", "/api/v1/users/root/entries/pre-migration", Some(r#"{"enabled": false}"#));
    assert_eq!((code, &entry["enabled"]), (200, &json!(false)), "{entry}");
    let (code, entries) = curl(&socket, "GET", "/api/v1/users/root/entries", None);
    assert_eq!(code, 200, "{entries}");
    assert_eq!(entries["entries"].as_array().unwrap().len(), 1, "{entries}");
    let (code, deleted) = curl(&socket, "DELETE", "/api/v1/users/root/entries/pre-migration", None);
    assert_eq!(code, 200, "{deleted}");
    let (code, gone) = curl(&socket, "GET", "/api/v1/users/root/entries/pre-migration", None);
    assert_eq!((code, gone["code"].as_str()), (404, Some("NOT_FOUND")), "{gone}");

    let mut root = setup.daemon.clients().await.expect("connect");
    let token = admin_token(&mut root, "ops").await;
    story(&Via::Tcp { port: setup.port, token: Some(token) }, "db-1", &setup.volume);
    let (code, health) = curl(&socket, "GET", "/healthz", None);
    assert_eq!((code, health), (200, json!({"status": "SERVING"})));
    // What happened shows in the metrics (on the socket without a token).
    let (code, metrics) = curl(&socket, "GET", "/metrics", None);
    assert_eq!(code, 200);
    let metrics = metrics.as_str().expect("text").to_owned();
    for wanted in [
        "rollpoint_container_last_snapshot_timestamp_seconds{container=\"db-1\"}",
        "rollpoint_container_snapshots{container=\"db-1\"}",
        "rollpoint_expiry_backlog_snapshots 0",
        "rollpoint_container_snapshot_delta_bytes{container=\"db-1\"}",
        "rollpoint_store_bytes ",
    ] {
        assert!(metrics.contains(wanted), "{wanted} missing from:\n{metrics}");
    }
    for histogram in [
        "rollpoint_snapshot_duration_seconds_count",
        "rollpoint_freeze_window_seconds_count",
        "rollpoint_restore_downtime_seconds_count",
    ] {
        let count = metrics.lines().find_map(|line| line.strip_prefix(histogram)).expect(histogram);
        assert!(count.trim().parse::<u64>().unwrap() >= 2, "{histogram}{count}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_refuses_whom_grpc_refuses_and_changes_nothing() {
    if !root_or_skip("rest_refuses_whom_grpc_refuses_and_changes_nothing") {
        return;
    }
    let setup = setup("alpha").await;
    let root = setup.daemon.clients().await.expect("connect");
    let scoped = |name: &str, scopes: &[&str], containers: &[&str]| {
        let request = proto::CreateTokenRequest {
            name: name.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            containers: containers.iter().map(|s| s.to_string()).collect(),
        };
        let mut tokens = root.tokens.clone();
        async move { tokens.create_token(request).await.expect("create token").into_inner().secret }
    };
    let reader = scoped("reader", &["read"], &[]).await;
    let other = scoped("snap-beta", &["snapshot"], &["beta"]).await;
    let scraper = scoped("scraper", &["metrics:read"], &[]).await;
    let tcp = |token: Option<&str>| Via::Tcp { port: setup.port, token: token.map(str::to_owned) };
    let snapshots = "/api/v1/containers/alpha/snapshots";
    let before = curl(&Via::Socket(setup.daemon.socket().to_owned()), "GET", snapshots, None).1;
    for (via, method, path, body, status, code) in [
        (tcp(None), "POST", snapshots, Some("{}"), 401, "UNAUTHENTICATED"),
        (tcp(Some("not-a-token")), "GET", "/api/v1/containers", None, 401, "UNAUTHENTICATED"),
        (tcp(Some(&format!("rpt.admin.{}", "0".repeat(64)))), "GET", snapshots, None, 401, "UNAUTHENTICATED"),
        (tcp(Some(&reader)), "POST", snapshots, Some("{}"), 403, "PERMISSION_DENIED"),
        (tcp(Some(&reader)), "PATCH", "/api/v1/containers/alpha/snapshots/x", None, 403, "PERMISSION_DENIED"),
        (tcp(Some(&reader)), "DELETE", "/api/v1/containers/alpha", None, 403, "PERMISSION_DENIED"),
        (tcp(Some(&other)), "POST", snapshots, Some("{}"), 403, "PERMISSION_DENIED"),
        (tcp(Some(&other)), "GET", "/api/v1/events", None, 403, "PERMISSION_DENIED"),
        (tcp(None), "GET", "/metrics", None, 401, "UNAUTHENTICATED"),
        (tcp(Some(&reader)), "GET", "/metrics", None, 403, "PERMISSION_DENIED"),
        (tcp(Some(&scraper)), "GET", snapshots, None, 403, "PERMISSION_DENIED"),
        (
            tcp(Some(&reader)),
            "POST",
            "/api/v1/tokens",
            Some(r#"{"name": "x", "scopes": ["admin"]}"#),
            403,
            "PERMISSION_DENIED",
        ),
        (tcp(Some(&reader)), "GET", "/api/v1/tokens", None, 403, "PERMISSION_DENIED"),
        (tcp(Some(&reader)), "DELETE", "/api/v1/tokens/reader", None, 403, "PERMISSION_DENIED"),
    ] {
        let (got, error) = curl(&via, method, path, body);
        assert_eq!(got, status, "{method} {path}: {error}");
        assert_eq!(error["code"], code, "{method} {path}: {error}");
    }
    // The reader reads; nothing was changed by the refusals.
    let (code, after) = curl(&tcp(Some(&reader)), "GET", snapshots, None);
    assert_eq!(code, 200, "{after}");
    assert_eq!(after, before);
    let (code, metrics) = curl(&tcp(Some(&scraper)), "GET", "/metrics", None);
    assert_eq!(code, 200, "{metrics}");
    assert!(metrics.as_str().unwrap().contains("rollpoint_container_snapshots{container=\"alpha\"} 0"), "{metrics}");

    // Tokens over REST: made by root on the socket (the secret shown once),
    // listed without secrets, used over TCP, revoked, refused from then on.
    let socket = Via::Socket(setup.daemon.socket().to_owned());
    let body = r#"{"name": "ci", "scopes": ["snapshot"], "containers": ["alpha"]}"#;
    let (code, created) = curl(&socket, "POST", "/api/v1/tokens", Some(body));
    assert_eq!(code, 200, "{created}");
    assert_eq!((&created["name"], &created["containers"]), (&json!("ci"), &json!(["alpha"])), "{created}");
    let secret = created["secret"].as_str().expect("the secret, once").to_owned();
    let (code, again) = curl(&socket, "POST", "/api/v1/tokens", Some(body));
    assert_eq!((code, again["code"].as_str()), (409, Some("ALREADY_EXISTS")), "{again}");
    let (code, bad) = curl(&socket, "POST", "/api/v1/tokens", Some(r#"{"name": "x", "scopes": ["everything"]}"#));
    assert_eq!((code, bad["field"].as_str()), (400, Some("scopes")), "{bad}");
    let (code, listed) = curl(&socket, "GET", "/api/v1/tokens", None);
    assert_eq!(code, 200, "{listed}");
    let names: Vec<&str> = listed.as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.contains(&"ci") && names.contains(&"reader"), "{listed}");
    assert!(!listed.to_string().contains(&secret) && !listed.to_string().contains("secret"), "{listed}");
    let (code, snapshot) = curl(&tcp(Some(&secret)), "POST", snapshots, Some(r#"{"alias": "by-ci"}"#));
    assert_eq!(code, 200, "{snapshot}");
    let (code, revoked) = curl(&socket, "DELETE", "/api/v1/tokens/ci", None);
    assert_eq!((code, &revoked), (200, &json!({"name": "ci"})), "{revoked}");
    let (code, refused) = curl(&tcp(Some(&secret)), "GET", snapshots, None);
    assert_eq!((code, refused["code"].as_str()), (401, Some("UNAUTHENTICATED")), "{refused}");
    let (code, gone) = curl(&socket, "DELETE", "/api/v1/tokens/ci", None);
    assert_eq!((code, gone["code"].as_str()), (404, Some("NOT_FOUND")), "{gone}");

    // The scrape before the snapshot said 0; the one after says 1 (the
    // summary kept between scrapes follows the records), and 0 once the
    // snapshot is deleted again.
    let count_of = |text: &Value| {
        let text = text.as_str().expect("metrics are text").to_owned();
        let line = text.lines().find(|l| l.starts_with("rollpoint_container_snapshots{container=\"alpha\"}"));
        line.and_then(|l| l.rsplit(' ').next()).map(str::to_owned).unwrap_or_default()
    };
    assert_eq!(count_of(&curl(&socket, "GET", "/metrics", None).1), "1");
    let (code, _) = curl(&socket, "DELETE", &format!("{snapshots}/by-ci"), None);
    assert_eq!(code, 200);
    assert_eq!(count_of(&curl(&socket, "GET", "/metrics", None).1), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx_and_the_daemon_keeps_serving() {
    if !root_or_skip("bad_input_gets_a_clear_4xx_and_the_daemon_keeps_serving") {
        return;
    }
    let setup = setup("bad").await;
    let socket = Via::Socket(setup.daemon.socket().to_owned());
    let snapshots = "/api/v1/containers/bad/snapshots";
    for (body, field) in [
        (r#"{"alias": "x""#, "body"),
        (r#"{"alias": "x", "colour": "red"}"#, "body"),
        (r#"{"alias": 7}"#, "body"),
        (r#"{"expiry": "next week"}"#, "body"),
        (r#"{"name": "../escape"}"#, "name"),
    ] {
        let (code, error) = curl(&socket, "POST", snapshots, Some(body));
        assert_eq!(code, 400, "{body}: {error}");
        assert_eq!(error["code"], "INVALID_ARGUMENT", "{body}: {error}");
        assert_eq!(error["field"], field, "{body}: {error}");
    }
    // Registration takes the lifecycle and the hooks, as the CLI and gRPC do.
    let cgroup = TestCgroup::create("rest-with-lifecycle").expect("cgroup");
    let volume = setup.fs.create_subvolume("with-lifecycle").expect("subvolume");
    let body = json!({
        "id": "with-lifecycle", "cgroup": cgroup.relative_name(), "subvolume": volume,
        "lifecycle": {"kind": "command", "stop": ["/bin/true"], "start": ["/bin/true"], "timeout_seconds": 5},
        "hooks": {"pre_freeze": {"command": ["sync"], "on_failure": "continue"}},
    });
    let (code, registered) = curl(&socket, "POST", "/api/v1/containers", Some(&body.to_string()));
    assert_eq!(code, 200, "{registered}");
    let (code, shown) = curl(&socket, "GET", "/api/v1/containers/with-lifecycle", None);
    assert_eq!(code, 200, "{shown}");
    assert_eq!(
        shown["lifecycle"],
        json!({"kind": "command", "stop": ["/bin/true"], "start": ["/bin/true"], "timeout_seconds": 5}),
        "{shown}"
    );
    assert_eq!(shown["hooks"]["pre_freeze"]["on_failure"], "continue", "{shown}");
    for (lifecycle, wanted) in [(json!({"kind": "teleport"}), "`command`"), (json!({"kind": "systemd"}), "unit")] {
        let body = json!({"id": "x", "cgroup": "x", "subvolume": "/x", "lifecycle": lifecycle}).to_string();
        let (code, error) = curl(&socket, "POST", "/api/v1/containers", Some(&body));
        assert_eq!((code, error["field"].as_str()), (400, Some("body")), "{error}");
        assert!(error["message"].as_str().unwrap().contains(wanted), "{error}");
    }
    let (code, _) = curl(&socket, "DELETE", "/api/v1/containers/with-lifecycle", None);
    assert_eq!(code, 200);
    drop(cgroup);

    let (code, error) = curl(&socket, "GET", "/api/v1/containers/nope/snapshots/x", None);
    assert_eq!((code, error["code"].as_str()), (404, Some("NOT_FOUND")), "{error}");
    let (code, error) = curl_with(&socket, "POST", snapshots, Some(vec![b' '; 8 << 20]), &[]);
    assert_eq!(code, 413, "{error}");
    let (code, error) = curl_with(&socket, "POST", snapshots, Some(b"<x/>".to_vec()), &["Content-Type: text/xml"]);
    assert_eq!(code, 415, "{error}");
    let (code, error) = curl(&socket, "GET", "/api/v1/nothing-here", None);
    assert_eq!(code, 404, "{error}");
    // Still serving, and nothing was made.
    let (code, listed) = curl(&socket, "GET", snapshots, None);
    assert_eq!(code, 200, "{listed}");
    assert!(listed["snapshots"].as_array().unwrap().is_empty(), "{listed}");
    assert_eq!(curl(&socket, "GET", "/healthz", None).0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_listener_serves_metrics_and_health_without_credentials_and_nothing_else() {
    if !root_or_skip("the_metrics_listener_serves_metrics_and_health_without_credentials_and_nothing_else") {
        return;
    }
    let port = free_loopback_port();
    let options =
        rollpoint::testkit::daemon::DaemonOptions::default().config(format!("metrics_listen = \"127.0.0.1:{port}\"\n"));
    let daemon = TestDaemon::start_with(daemon_binary(), options).await.expect("start rollpointd");
    let listener = Via::Url(format!("http://127.0.0.1:{port}"));
    let (code, metrics) = curl(&listener, "GET", "/metrics", None);
    assert_eq!(code, 200, "{metrics}");
    let text = metrics.as_str().expect("metrics are text");
    assert!(text.contains("rollpoint_store_bytes ") && text.ends_with("# EOF\n"), "{text}");
    let (code, health) = curl(&listener, "GET", "/healthz", None);
    assert_eq!((code, health), (200, json!({"status": "SERVING"})));
    // Nothing else: not the API, not a token's calls.
    for path in ["/api/v1/containers", "/api/v1/tokens", "/api/v1/events"] {
        let (code, refused) = curl(&listener, "GET", path, None);
        assert_eq!((code, refused["code"].as_str()), (404, Some("NOT_FOUND")), "{path}: {refused}");
    }
    // Only loopback addresses are taken: a daemon told otherwise does not start.
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("bad.toml"), "metrics_listen = \"0.0.0.0:9947\"\n").unwrap();
    let refused = Command::new(daemon_binary())
        .arg("--config")
        .arg(dir.path().join("bad.toml"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--socket")
        .arg(dir.path().join("sock"))
        .stdin(Stdio::null())
        .output()
        .expect("run rollpointd");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("metrics_listen") && stderr.contains("loopback"), "{stderr}");
    drop(daemon);
}

/// Writes `request` on a new connection to the daemon's socket and returns
/// the first `want` bytes it answers (fewer if it closes first).
async fn raw_exchange(daemon: &TestDaemon, request: &[u8], want: usize) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::UnixStream::connect(daemon.socket()).await.expect("connect");
    stream.write_all(request).await.expect("send");
    let mut answer = vec![0_u8; want];
    let mut read = 0;
    while read < want {
        match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut answer[read..])).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(count)) => read += count,
            Ok(Err(error)) => panic!("reading the answer: {error}"),
        }
    }
    String::from_utf8_lossy(&answer[..read]).into_owned()
}

/// Open file descriptors of a process.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(Iterator::count).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_requests_time_out_and_dropped_event_streams_leak_nothing() {
    if !root_or_skip("unfinished_requests_time_out_and_dropped_event_streams_leak_nothing") {
        return;
    }
    const DROPS: usize = 1000;
    let options = rollpoint::testkit::daemon::DaemonOptions::default().config("rest_request_timeout_ms = 500\n");
    let daemon = TestDaemon::start_with(daemon_binary(), options).await.expect("start rollpointd");
    let pid = daemon.pid().expect("daemon pid");
    let socket = Via::Socket(daemon.socket().to_owned());

    // A body announced and never sent: 408 once the limit passes, and the
    // daemon serves on.
    let unfinished = b"POST /api/v1/containers/x/snapshots HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{";
    let answer = raw_exchange(&daemon, unfinished, 400).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("DEADLINE_EXCEEDED") && answer.contains("rest_request_timeout_ms"), "{answer}");
    assert_eq!(curl(&socket, "GET", "/healthz", None).0, 200);

    // The live event stream, opened and dropped mid-flight again and again:
    // the daemon's descriptors and threads come back to where they were.
    let subscribe = b"GET /api/v1/events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n";
    let head = raw_exchange(&daemon, subscribe, 12).await;
    assert_eq!(head, "HTTP/1.1 200", "the stream opens");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (fds_before, threads_before) = (open_fds(pid), process_threads(pid));
    for _ in 0..DROPS {
        let head = raw_exchange(&daemon, subscribe, 12).await;
        assert_eq!(head, "HTTP/1.1 200");
    }
    // Something happens after the drops: a stream left behind would get it.
    let entry = r#"{"id": "after-the-drops", "schedule": "55 2 * * *", "command": "true"}"#;
    let (code, created) = curl(&socket, "POST", "/api/v1/users/root/entries", Some(entry));
    assert_eq!(code, 200, "{created}");
    let mut settled = (open_fds(pid), process_threads(pid));
    for _ in 0..50 {
        if settled.0 <= fds_before + 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        settled = (open_fds(pid), process_threads(pid));
    }
    println!(
        "after {DROPS} dropped streams: fds {fds_before} -> {}, threads {threads_before} -> {}",
        settled.0, settled.1
    );
    assert!(settled.0 <= fds_before + 2, "descriptors leaked: {fds_before} -> {}", settled.0);
    assert!(settled.1 <= threads_before + 8, "threads grew: {threads_before} -> {}", settled.1);
    assert_eq!(curl(&socket, "GET", "/healthz", None).0, 200);
    drop(daemon);
}

/// Threads of a process.
fn process_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map(Iterator::count).unwrap_or(0)
}
