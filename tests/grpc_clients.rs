//! gRPC clients of other languages over the Unix socket, which send the
//! socket path (or nothing) as `:authority`: grpcurl 1.8.6 without
//! `-authority`, and Python grpcio from PyPI creating, listing and restoring
//! over the socket and over TCP with a token. Before the h2 patch
//! (third_party/h2) the daemon reset every such stream (PROTOCOL_ERROR).
//!
//! Root only: loop-backed btrfs, a real cgroup, a real `rollpointd`. Needs
//! `grpcurl` and Python's `grpcio` and `grpcio-tools` (scripts/install-deps).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use rollpoint::testkit::cgroup::TestCgroup;
use rollpoint::testkit::loop_btrfs::LoopBtrfs;
use rollpoint::testkit::root_or_skip;

const PYTHON_CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/grpcio_client.py");
const PROTO_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/proto");

fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn python(target: &str, container: &str, token: Option<&str>) -> serde_json::Value {
    let mut command = Command::new("python3");
    command.arg(PYTHON_CLIENT).arg(PROTO_DIR).arg(target).arg(container);
    if let Some(token) = token {
        command.arg(token);
    }
    let output = run(&mut command);
    serde_json::from_slice(&output.stdout).expect("one JSON line from the Python client")
}

fn grpcurl(socket: &Path, args: &[&str]) -> String {
    let mut command = Command::new("grpcurl");
    command.arg("-unix").arg("-plaintext").args(args.iter().take(args.len() - 1)).arg(socket);
    command.args(args.last());
    String::from_utf8(run(&mut command).stdout).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_and_python_grpcio_are_served_whatever_authority_they_send() {
    if !root_or_skip("grpcurl_and_python_grpcio_are_served_whatever_authority_they_send") {
        return;
    }
    let fs = LoopBtrfs::create(256 << 20).expect("loop btrfs");
    let volume = fs.create_subvolume("py").expect("subvolume");
    let cgroup = TestCgroup::create("grpc-clients").expect("cgroup");
    let (daemon, port) = daemon_on_loopback_tcp().await;
    let mut root = daemon.clients().await.expect("connect");
    register(&mut root, "py", cgroup.relative_name(), &volume).await.expect("register");

    // grpcurl sends the socket path as :authority.
    let health = grpcurl(daemon.socket(), &["grpc.health.v1.Health/Check"]);
    assert!(health.contains("SERVING"), "{health}");
    let services = grpcurl(daemon.socket(), &["list"]);
    assert!(services.contains("rollpoint.v1.SnapshotService"), "{services}");
    let listed =
        grpcurl(daemon.socket(), &["-d", r#"{"container": "py"}"#, "rollpoint.v1.SnapshotService/ListSnapshots"]);
    assert!(!listed.contains("snapshots"), "no snapshot yet: {listed}");

    // grpcio sends the socket path, percent-encoded.
    let target = format!("unix:{}", daemon.socket().display());
    let seen = python(&target, "py", None);
    assert_eq!(seen["alias"], "py-point", "{seen}");
    assert!(seen["listed"].as_array().unwrap().contains(&seen["created"]), "{seen}");
    assert_eq!(seen["restored"], seen["created"], "{seen}");
    assert!(!seen["pre_restore"].as_str().unwrap().is_empty(), "{seen}");

    // Over TCP with a token.
    let token = admin_token(&mut root, "python").await;
    let seen = python(&format!("127.0.0.1:{port}"), "py", Some(&token));
    assert_eq!(seen["restored"], seen["created"], "{seen}");
    drop(daemon);
}
