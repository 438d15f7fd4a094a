//! The command line: clap structs only. What each command does is in
//! `commands`; what it prints is in `output` and `views`.

use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgGroup, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::DEFAULT_SOCKET;

const GLOBAL: &str = "Global options";

const EXAMPLES: &str = "\
Examples:
  rollpoint container register db-1 --cgroup system.slice/db-1.scope \\
      --subvolume /srv/containers/db-1 --systemd-unit db-1.service
  rollpoint snapshot create db-1 --alias rollback-point --expire-days 7
  rollpoint snapshot list db-1
  rollpoint restore db-1 rollback-point
  rollpoint --json snapshot show db-1 rollback-point

Exit status: 0 success, 1 the daemon refused or failed the request,
2 usage error, 3 the daemon cannot be reached.";

/// Client of rollpointd: consistent snapshots and one-call restores of
/// cgroup-scoped containers.
///
/// rollpointd freezes a container's cgroup, snapshots its btrfs subvolume
/// read-only and thaws it again; a restore puts the container back to a
/// snapshot and keeps the state it had just before as a "pre-restore"
/// snapshot, so every restore can be undone.
///
/// Output is meant for people by default (tables, "key: value" blocks);
/// --json prints one JSON document per command for scripts. Errors go to
/// stderr as "rollpoint: <code>: <message>".
#[derive(Parser, Debug)]
#[command(name = "rollpoint", version, about, long_about, after_long_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the process's arguments, exiting with a usage error (2) or the
    /// help; see `try_parse_command_line_from`.
    pub fn parse_command_line() -> Cli {
        Cli::resolve(&Cli::command().get_matches()).unwrap_or_else(|error| error.exit())
    }

    /// Like `Parser::try_parse_from`, and settles where the daemon is: the
    /// command line beats the environment, so `--socket` wins over
    /// ROLLPOINT_ENDPOINT; `--socket` with `--endpoint` is a usage error.
    /// (clap's own conflicts would also fire on values from the environment.)
    pub fn try_parse_command_line_from<I, T>(argv: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Cli::resolve(&Cli::command().try_get_matches_from(argv)?)
    }

    fn resolve(matches: &ArgMatches) -> Result<Cli, clap::Error> {
        let mut cli = Cli::from_arg_matches(matches).map_err(|error| error.format(&mut Cli::command()))?;
        let from_command_line = |id| matches.value_source(id) == Some(ValueSource::CommandLine);
        if from_command_line("endpoint") && from_command_line("socket") {
            let message = "--socket and --endpoint exclude each other: give one";
            return Err(Cli::command().error(ErrorKind::ArgumentConflict, message));
        }
        if from_command_line("socket") {
            cli.global.endpoint = None;
        }
        Ok(cli)
    }
}

#[derive(Args, Debug)]
pub struct GlobalArgs {
    /// Unix socket of rollpointd.
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "PATH", env = "ROLLPOINT_SOCKET", hide_env_values = true, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Reach rollpointd over TCP instead of its socket, e.g. http://127.0.0.1:7443.
    ///
    /// Wins over ROLLPOINT_SOCKET; an explicit --socket wins over ROLLPOINT_ENDPOINT.
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "URL", env = "ROLLPOINT_ENDPOINT", hide_env_values = true, value_parser = parse_endpoint)]
    pub endpoint: Option<String>,
    /// Bearer token for --endpoint (TCP); the Unix socket knows the caller
    /// without one. Prefer the environment variable: flags show in `ps`.
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "SECRET", env = "ROLLPOINT_TOKEN", hide_env_values = true, value_parser = parse_token)]
    pub token: Option<String>,
    /// Print JSON for scripts, one document per command.
    ///
    /// Lists are arrays; timestamps are RFC 3339 (UTC); durations are numbers
    /// in the unit their key names (frozen_for_ms); absent values are null.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Register, list, show and unregister containers.
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Create, list, show, update and delete snapshots of a container.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Put a container back to a snapshot (stops it, swaps its volume, starts it).
    ///
    /// The state the container had just before is kept as a snapshot of origin
    /// pre-restore; restore that one to undo. A progress line goes to stderr
    /// (not with --json);
    /// the result (restored snapshot, pre-restore snapshot, timings and steps)
    /// to stdout.
    Restore(RestoreArgs),
}

// ---------------------------------------------------------------- containers

#[derive(Subcommand, Debug)]
pub enum ContainerCommand {
    /// Register a container: the cgroup frozen around each snapshot and the
    /// btrfs subvolume snapshotted.
    ///
    /// How the daemon stops and starts the container around a restore:
    /// --stop-command/--start-command (argv, no shell), --systemd-unit, or by
    /// default none (the daemon kills the cgroup's processes; restarting is
    /// left to whoever supervises the container).
    Register(RegisterArgs),
    /// List every registered container.
    List,
    /// Show one container.
    Show {
        /// Container id.
        id: String,
    },
    /// Forget a container.
    ///
    /// A container that has snapshots needs --delete-snapshots or
    /// --keep-snapshots.
    Unregister(UnregisterArgs),
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("lifecycle").args(["stop_command", "systemd_unit"])))]
pub struct RegisterArgs {
    /// Container id: 1-63 of [a-z0-9-], starting and ending alphanumeric.
    pub id: String,
    /// cgroup v2 directory, relative to the cgroup mount or absolute.
    #[arg(long, value_name = "PATH")]
    pub cgroup: String,
    /// Absolute path of the container's btrfs subvolume.
    #[arg(long, value_name = "PATH")]
    pub subvolume: String,
    /// Label KEY=VALUE; repeat for more.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Command that stops the container, as one string split on whitespace
    /// (run without a shell, so no quoting: use a script for arguments with spaces).
    #[arg(long, value_name = "COMMAND", requires = "start_command", value_parser = parse_argv)]
    pub stop_command: Option<Argv>,
    /// Command that starts the container; same form as --stop-command.
    #[arg(long, value_name = "COMMAND", requires = "stop_command", value_parser = parse_argv)]
    pub start_command: Option<Argv>,
    /// Time allowed to each of the stop and start commands [default: 30].
    #[arg(long, value_name = "SECS", requires = "stop_command")]
    pub command_timeout: Option<u32>,
    /// systemd unit to stop and start around a restore.
    #[arg(long, value_name = "UNIT")]
    pub systemd_unit: Option<String>,
    /// Time allowed to each stop and start of the unit [default: 30].
    #[arg(long, value_name = "SECS", requires = "systemd_unit")]
    pub systemd_timeout: Option<u32>,
}

fn parse_endpoint(value: &str) -> Result<String, String> {
    match value.parse::<tonic::transport::Uri>() {
        Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => Ok(value.to_owned()),
        _ => Err(format!("expected http://HOST:PORT, got {value:?}")),
    }
}

fn parse_token(value: &str) -> Result<String, String> {
    // It travels in an `authorization` header: visible ASCII only.
    if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_graphic()) {
        Ok(value.to_owned())
    } else {
        Err("a token is printable ASCII without spaces".into())
    }
}

/// An argv list given as one whitespace-separated string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argv(pub Vec<String>);

fn parse_argv(value: &str) -> Result<Argv, String> {
    let argv: Vec<String> = value.split_whitespace().map(str::to_owned).collect();
    if argv.is_empty() {
        return Err("empty command".into());
    }
    Ok(Argv(argv))
}

fn parse_label(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {value:?}")),
    }
}

#[derive(Args, Debug)]
pub struct UnregisterArgs {
    /// Container id.
    pub id: String,
    /// Delete the container's snapshots from disk too.
    #[arg(long, conflicts_with = "keep_snapshots")]
    pub delete_snapshots: bool,
    /// Leave the container's snapshots on disk.
    #[arg(long)]
    pub keep_snapshots: bool,
}

// ----------------------------------------------------------------- snapshots

#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Freeze the container, snapshot its volume read-only, thaw it.
    Create(CreateArgs),
    /// List a container's snapshots, oldest first.
    List {
        /// Container id.
        container: String,
        /// Show at most N snapshots.
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
    /// Show one snapshot.
    Show {
        /// Container id.
        container: String,
        /// Snapshot name or alias.
        snapshot: String,
    },
    /// Change a snapshot's alias and/or expiry; only the fields given change.
    Update(UpdateArgs),
    /// Delete a snapshot from disk and from the records.
    Delete {
        /// Container id.
        container: String,
        /// Snapshot name or alias.
        snapshot: String,
    },
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Container id.
    pub container: String,
    /// Snapshot name [default: snap-YYYY-MM-DD (UTC), then -2, -3... the same day].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Alias to give the snapshot; moved here from any other snapshot of the container.
    #[arg(long, value_name = "ALIAS")]
    pub alias: Option<String>,
    /// Delete the snapshot after D days [default: never].
    #[arg(long, value_name = "D")]
    pub expire_days: Option<u32>,
    /// Free text kept with the snapshot.
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("change").args(["alias", "clear_alias", "expire_days"]).required(true).multiple(true)))]
pub struct UpdateArgs {
    /// Container id.
    pub container: String,
    /// Snapshot name or alias.
    pub snapshot: String,
    /// New alias; moved here from any other snapshot of the container.
    #[arg(long, value_name = "ALIAS", conflicts_with = "clear_alias")]
    pub alias: Option<String>,
    /// Remove the snapshot's alias.
    #[arg(long)]
    pub clear_alias: bool,
    /// New expiry, D days from now; 0 = never expires.
    #[arg(long, value_name = "D")]
    pub expire_days: Option<u32>,
}

// ------------------------------------------------------------------- restore

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Container id.
    pub container: String,
    /// Snapshot name or alias to restore.
    pub snapshot: String,
    /// Idempotency key: repeating a restore with the same id returns the first
    /// answer instead of restoring again.
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_command_line_from(std::iter::once("rollpoint").chain(argv.iter().copied()))
    }

    #[test]
    fn command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = parse(&["snapshot", "list", "db-1", "--json", "--socket", "/tmp/s"]).unwrap();
        assert!(cli.global.json);
        assert_eq!(cli.global.socket, PathBuf::from("/tmp/s"));
        assert_eq!(cli.global.endpoint, None);
        let cli = parse(&["--endpoint", "http://127.0.0.1:7443", "container", "list"]).unwrap();
        assert_eq!(cli.global.endpoint.as_deref(), Some("http://127.0.0.1:7443"));
    }

    #[test]
    fn socket_and_endpoint_together_are_a_usage_error() {
        let error = parse(&["--socket", "/s", "--endpoint", "http://h:1", "container", "list"]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ArgumentConflict);
        assert_eq!(error.exit_code(), 2);
    }

    #[test]
    fn token_must_fit_a_header() {
        assert!(parse(&["--token", "rp_abc123", "container", "list"]).is_ok());
        assert!(parse(&["--token", "two words", "container", "list"]).is_err());
    }

    #[test]
    fn endpoint_must_be_a_url() {
        assert!(parse(&["--endpoint", "127.0.0.1:7443", "container", "list"]).is_err());
    }

    #[test]
    fn restore_and_unregister_flags() {
        let cli = parse(&["restore", "db-1", "rollback-point", "--request-id", "r-1"]).unwrap();
        match cli.command {
            Command::Restore(args) => {
                assert_eq!((args.container.as_str(), args.snapshot.as_str()), ("db-1", "rollback-point"));
                assert_eq!(args.request_id.as_deref(), Some("r-1"));
            }
            other => panic!("parsed as {other:?}"),
        }
        assert!(parse(&["container", "unregister", "db-1", "--delete-snapshots", "--keep-snapshots"]).is_err());
        assert!(parse(&["snapshot", "list", "db-1", "--limit", "-1"]).is_err());
    }
}
