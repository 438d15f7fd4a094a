//! The `rollpoint` CLI against a real `rollpointd` whose TCP listener speaks
//! TLS, with a CA and server certificate made by openssl for the test:
//!
//! - `--ca-cert` and ROLLPOINT_CA_CERT both make the daemon's certificate
//!   trusted; without a CA, or with another one, the handshake fails;
//! - a restore over it prints each step once: live on stderr, not again in
//!   the result on stdout; `--json` keeps every step.
//!
//! Root only: loop-backed btrfs, a real cgroup, a real daemon.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use rollpoint::testkit::cgroup::TestCgroup;
use rollpoint::testkit::daemon::{DaemonOptions, TestDaemon};
use rollpoint::testkit::loop_btrfs::LoopBtrfs;
use rollpoint::testkit::root_or_skip;

const CLI: &str = env!("CARGO_BIN_EXE_rollpoint");
const OPENSSL: &str = "/usr/bin/openssl";
/// The steps a restore reports, in order (`engine/restore.rs`).
const RESTORE_STEPS: [&str; 5] = ["prepare", "stop", "swap", "start", "record"];

/// PEM files: a CA, and a certificate for 127.0.0.1 and localhost it signed.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new(OPENSSL)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|error| panic!("run {OPENSSL} (the test makes its certificates with it): {error}"));
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// A CA named `name` and a server certificate it signed, in `dir`.
fn make_pki(dir: &Path, name: &str) -> Pki {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    let (ca, ca_key) = (format!("{name}-ca.pem"), format!("{name}-ca.key"));
    let (cert, key, csr) = (format!("{name}.pem"), format!("{name}.key"), format!("{name}.csr"));
    let ca_subject = format!("/CN={name} test CA");
    openssl(
        dir,
        &[&["req", "-x509"][..], &ec, &["-keyout", &ca_key, "-out", &ca, "-days", "2", "-subj", &ca_subject]].concat(),
    );
    openssl(dir, &[&["req"][..], &ec, &["-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"]].concat());
    let extensions = dir.join(format!("{name}.ext"));
    std::fs::write(
        &extensions,
        "basicConstraints = CA:FALSE\n\
         keyUsage = digitalSignature\n\
         extendedKeyUsage = serverAuth\n\
         subjectAltName = IP:127.0.0.1, DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &cert,
            "-extfile",
            extensions.to_str().unwrap(),
        ],
    );
    Pki { ca: dir.join(ca), cert: dir.join(cert), key: dir.join(key) }
}

/// Runs the CLI with `args` against `endpoint`, the environment cleared of
/// the variables it reads except those in `env`.
fn cli(endpoint: &str, token: &str, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(CLI);
    command.arg("--endpoint").arg(endpoint).args(args);
    for key in ["ROLLPOINT_SOCKET", "ROLLPOINT_ENDPOINT", "ROLLPOINT_CA_CERT"] {
        command.env_remove(key);
    }
    command.env("ROLLPOINT_TOKEN", token);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run the CLI")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what}: {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_over_tls_trusts_the_given_ca_and_prints_restore_steps_once() {
    if !root_or_skip("cli_over_tls_trusts_the_given_ca_and_prints_restore_steps_once") {
        return;
    }
    let dir = tempfile::Builder::new().prefix("rollpoint-tls-").tempdir().expect("temp dir");
    let pki = make_pki(dir.path(), "daemon");
    let stranger = make_pki(dir.path(), "stranger");
    let fs = LoopBtrfs::create(256 << 20).expect("loop btrfs");
    let volume = fs.create_subvolume("plain").expect("subvolume");
    let cgroup = TestCgroup::create("cli-tls").expect("cgroup");
    let port = free_loopback_port();
    let config = format!(
        "listen = \"127.0.0.1:{port}\"\ntls_cert = {:?}\ntls_key = {:?}\n",
        pki.cert.to_str().unwrap(),
        pki.key.to_str().unwrap()
    );
    let daemon = TestDaemon::start_with(daemon_binary(), DaemonOptions::default().config(config))
        .await
        .expect("start rollpointd with TLS");
    let mut root = daemon.clients().await.expect("connect to the socket");
    let token = admin_token(&mut root, "ops").await;
    let endpoint = format!("https://127.0.0.1:{port}");
    let ca = pki.ca.to_str().unwrap();

    // The CA from the flag, then from the environment.
    let output = cli(&endpoint, &token, &["--ca-cert", ca, "container", "list"], &[]);
    assert_success(&output, "container list with --ca-cert");
    let output = cli(&endpoint, &token, &["container", "list"], &[("ROLLPOINT_CA_CERT", &pki.ca)]);
    assert_success(&output, "container list with ROLLPOINT_CA_CERT");
    // The flag wins over the environment.
    let output =
        cli(&endpoint, &token, &["--ca-cert", ca, "container", "list"], &[("ROLLPOINT_CA_CERT", &stranger.ca)]);
    assert_success(&output, "--ca-cert over ROLLPOINT_CA_CERT");
    // No CA, or one that did not sign the daemon's certificate: no connection.
    for (args, env) in [
        (&["container", "list"][..], &[][..]),
        (&["--ca-cert", stranger.ca.to_str().unwrap(), "container", "list"], &[]),
        (&["container", "list"], &[("ROLLPOINT_CA_CERT", stranger.ca.as_path())]),
    ] {
        let output = cli(&endpoint, &token, args, env);
        assert!(!output.status.success(), "{args:?} {env:?} connected:\n{}", text(&output.stdout));
        let stderr = text(&output.stderr);
        assert!(stderr.starts_with("rollpoint: "), "{stderr}");
        assert!(stderr.contains("invalid peer certificate"), "{args:?} {env:?}: {stderr}");
        assert!(stderr.contains("(--ca-cert, ROLLPOINT_CA_CERT)"), "{args:?} {env:?}: {stderr}");
        assert_eq!(output.status.code(), Some(i32::from(rollpoint::cli::EXIT_UNREACHABLE)), "{stderr}");
    }

    // A restore over TLS: each step once.
    let subvolume = volume.to_str().unwrap();
    let register = ["--ca-cert", ca, "container", "register", "plain", "--cgroup", cgroup.relative_name()];
    assert_success(&cli(&endpoint, &token, &[&register[..], &["--subvolume", subvolume]].concat(), &[]), "register");
    let create = ["--ca-cert", ca, "snapshot", "create", "plain", "--alias", "rollback-point"];
    assert_success(&cli(&endpoint, &token, &create, &[]), "snapshot create");
    std::fs::write(volume.join("data.txt"), "after the snapshot").unwrap();
    let output = cli(&endpoint, &token, &["--ca-cert", ca, "restore", "plain", "rollback-point"], &[]);
    assert_success(&output, "restore");
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    let live: Vec<&str> = stderr
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|w| RESTORE_STEPS.contains(w))
        .collect();
    assert_eq!(live, RESTORE_STEPS, "steps printed live, in order, once:\n{stderr}");
    assert!(!stdout.contains("STEP"), "the result repeats the steps shown live:\n{stdout}");
    for step in RESTORE_STEPS {
        assert!(!stdout.lines().any(|line| line.starts_with(step)), "{step} again in the result:\n{stdout}");
    }
    assert!(stdout.contains("pre-restore snapshot: pre-restore-"), "{stdout}");
    assert!(stdout.contains("undo with: rollpoint restore plain pre-restore-"), "{stdout}");

    // --json: no live feed, every step in the document.
    std::fs::write(volume.join("data.txt"), "after the restore").unwrap();
    let output =
        cli(&endpoint, &token, &["--json", "restore", "plain", "rollback-point"], &[("ROLLPOINT_CA_CERT", &pki.ca)]);
    assert_success(&output, "restore --json");
    assert!(!text(&output.stderr).contains("prepare"), "{}", text(&output.stderr));
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON document");
    let steps: Vec<&str> =
        result["steps"].as_array().expect("steps").iter().map(|step| step["name"].as_str().unwrap()).collect();
    assert_eq!(steps, RESTORE_STEPS, "{result:#}");
    assert_eq!(result["already_restored"], false, "{result:#}");
}
