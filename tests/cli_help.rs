//! The `rollpoint` binary without a daemon: help, usage errors, and what it
//! says and returns when the daemon cannot be reached.

use std::process::{Command, Output};

use clap::CommandFactory;
use rollpoint::cli::{Cli, EXIT_UNREACHABLE, EXIT_USAGE};

fn rollpoint(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rollpoint"));
    command.args(args).env_remove("ROLLPOINT_SOCKET").env_remove("ROLLPOINT_ENDPOINT").env_remove("ROLLPOINT_CA_CERT");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run rollpoint")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn every_command_argument_and_flag_has_help() {
    fn walk(command: &clap::Command, path: &str, seen: &mut Vec<String>) {
        let path = format!("{path} {}", command.get_name());
        assert!(command.get_about().is_some(), "{path} has no about");
        for arg in command.get_arguments() {
            let builtin = matches!(arg.get_id().as_str(), "help" | "version");
            assert!(builtin || arg.get_help().is_some(), "{path} {} has no help", arg.get_id());
            if !builtin {
                seen.push(format!("{path} {}", arg.get_id()));
            }
        }
        for sub in command.get_subcommands().filter(|sub| sub.get_name() != "help") {
            walk(sub, &path, seen);
        }
    }
    let mut seen = Vec::new();
    walk(&Cli::command(), "", &mut seen);
    // The walk reaches every command, the newer ones included.
    for arg in [
        " rollpoint token create scopes",
        " rollpoint token revoke name",
        " rollpoint events since",
        " rollpoint events follow",
        " rollpoint schedule add snapshot",
        " rollpoint schedule add command",
        " rollpoint schedule list user",
        " rollpoint schedule show name",
        " rollpoint schedule rm user",
        " rollpoint schedule run name",
        " rollpoint schedule update disable",
    ] {
        assert!(seen.iter().any(|path| path == arg), "the help walk missed{arg}:\n{seen:#?}");
    }
}

#[test]
fn top_level_help_lists_commands_and_an_example() {
    let output = rollpoint(&["--help"], &[]);
    assert!(output.status.success());
    let help = text(&output.stdout);
    for needle in
        ["container", "snapshot", "restore", "--socket", "--endpoint", "--ca-cert", "--json", "ROLLPOINT_SOCKET"]
    {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
    assert!(help.contains("rollpoint snapshot create db-1 --alias rollback-point --expire-days 7"));
    assert!(help.contains("Exit status"));
    for needle in ["token", "events", "schedule"] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
    assert!(help.contains(
        "rollpoint schedule add --schedule \"55 2 * * *\" --snapshot db-1 --alias rollback-point \
         --expire-days 7 --comment \"pre-migration snapshot\""
    ));
    assert!(help.contains("rollpoint events --container db-1 --since 24h"));
}

#[test]
fn new_commands_have_examples_in_their_long_help() {
    for (args, needles) in [
        (
            &["schedule", "--help"][..],
            &["rollpoint schedule add --schedule \"55 2 * * *\" --snapshot db-1", "users/USER/entries/ID"][..],
        ),
        (
            &["schedule", "add", "--help"],
            &[
                "--expire-days 7 --comment \"pre-migration snapshot\"",
                "crontab(5)",
                "[default: root]",
                "--container db-1",
                "ROLLPOINT_RUN_ID",
                "SNAP_URL",
            ],
        ),
        (&["schedule", "update", "--help"], &["--enable", "--disable", "[default: root]"]),
        (
            &["events", "--help"],
            &["rollpoint events --container db-1 --since 24h", "RFC 3339", "--follow", "[default: 100]"],
        ),
        (
            &["token", "create", "--help"],
            &["read, snapshot, restore, schedule, admin", "rollpoint token create --name ci"],
        ),
    ] {
        let output = rollpoint(args, &[]);
        assert!(output.status.success(), "{args:?}");
        let help = text(&output.stdout);
        for needle in needles {
            assert!(help.contains(needle), "{args:?} lacks {needle}:\n{help}");
        }
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["snapshot", "update", "db-1", "snap-1"][..],
        &["snapshot", "update", "db-1", "snap-1", "--alias", "a", "--clear-alias"],
        &["container", "register", "db-1", "--cgroup", "c"],
        &["--socket", "/s", "--endpoint", "http://127.0.0.1:1", "container", "list"],
        &["frobnicate"],
        &["token", "create", "--name", "ci"],
        &["token", "create", "--name", "ci", "--scope", "write"],
        &["events", "--since", "yesterday"],
        &["events", "--follow", "--until", "1h"],
        &["schedule", "add", "--schedule", "@daily"],
        &["schedule", "add", "--schedule", "@daily", "--snapshot", "db-1", "--command", "true"],
        &["schedule", "update", "nightly"],
        &["schedule", "update", "nightly", "--enable", "--disable"],
        &["schedule", "show", "users/backup/entries/nightly", "--user", "root"],
        &["schedule", "rm", "a/b"],
    ] {
        let output = rollpoint(args, &[]);
        assert_eq!(output.status.code(), Some(i32::from(EXIT_USAGE)), "{args:?}");
    }
}

#[test]
fn unreachable_daemon_exits_3_with_a_hint() {
    let output = rollpoint(&["--socket", "/nonexistent/rollpoint.sock", "container", "list"], &[]);
    assert_eq!(output.status.code(), Some(i32::from(EXIT_UNREACHABLE)));
    assert!(output.stdout.is_empty());
    let stderr = text(&output.stderr);
    assert!(stderr.starts_with("rollpoint: "), "{stderr}");
    assert!(stderr.contains("is rollpointd running? socket: /nonexistent/rollpoint.sock"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn environment_picks_the_daemon_and_the_command_line_wins() {
    let endpoint = [("ROLLPOINT_ENDPOINT", "http://127.0.0.1:1")];
    let output = rollpoint(&["container", "list"], &endpoint);
    assert_eq!(output.status.code(), Some(i32::from(EXIT_UNREACHABLE)));
    assert!(text(&output.stderr).contains("endpoint: http://127.0.0.1:1"));

    let output = rollpoint(&["container", "list", "--socket", "/nonexistent/cli.sock"], &endpoint);
    assert_eq!(output.status.code(), Some(i32::from(EXIT_UNREACHABLE)));
    assert!(text(&output.stderr).contains("socket: /nonexistent/cli.sock"));

    let output = rollpoint(&["container", "list"], &[("ROLLPOINT_SOCKET", "/nonexistent/env.sock")]);
    assert!(text(&output.stderr).contains("socket: /nonexistent/env.sock"));
}

#[test]
fn ca_certificate_comes_from_the_flag_or_the_environment_and_is_named_when_bad() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.der");
    std::fs::write(&not_pem, b"\x30\x82\x01\x0a").unwrap();
    let not_pem = not_pem.to_str().unwrap();
    // Nothing listens on port 1: the file is read before any connection.
    let https = ["--endpoint", "https://127.0.0.1:1", "container", "list"];
    for (args, env, named) in [
        (&["--ca-cert", not_pem][..], &[][..], not_pem),
        (&[], &[("ROLLPOINT_CA_CERT", not_pem)], not_pem),
        (&["--ca-cert", "/nonexistent/ca.pem"], &[("ROLLPOINT_CA_CERT", not_pem)], "/nonexistent/ca.pem"),
    ] {
        let output = rollpoint(&[args, &https[..]].concat(), env);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(i32::from(EXIT_USAGE)), "{args:?} {env:?}: {stderr}");
        assert!(stderr.starts_with("rollpoint: "), "{stderr}");
        assert!(stderr.contains(&format!("CA certificate {named}")), "{args:?} {env:?}: {stderr}");
        assert!(!stderr.contains("is rollpointd running?"), "{stderr}");
    }
    // Given on the command line without an https:// endpoint, it would not be used.
    let output = rollpoint(&["--ca-cert", not_pem, "--endpoint", "http://127.0.0.1:1", "container", "list"], &[]);
    assert_eq!(output.status.code(), Some(i32::from(EXIT_USAGE)));
    assert!(text(&output.stderr).contains("--ca-cert is for an https:// --endpoint"));
    // From the environment it is left unused: the socket is tried.
    let output =
        rollpoint(&["--socket", "/nonexistent/ca.sock", "container", "list"], &[("ROLLPOINT_CA_CERT", not_pem)]);
    assert_eq!(output.status.code(), Some(i32::from(EXIT_UNREACHABLE)));
    assert!(text(&output.stderr).contains("socket: /nonexistent/ca.sock"));
}
