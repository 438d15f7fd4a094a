//! The command line: clap structs only. What each command does is in
//! `commands`; what it prints is in `output` and `views`.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use clap::builder::PossibleValuesParser;
use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgGroup, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::DEFAULT_SOCKET;
use crate::engine::tokens::Scope;
use crate::engine::views::RetentionPolicy;

const GLOBAL: &str = "Global options";

const EXAMPLES: &str = "\
Examples:
  rollpoint container register db-1 --cgroup system.slice/db-1.scope \\
      --subvolume /srv/containers/db-1 --systemd-unit db-1.service
  rollpoint snapshot create db-1 --alias rollback-point --expire-days 7
  rollpoint snapshot list db-1
  rollpoint restore db-1 rollback-point
  rollpoint --json snapshot show db-1 rollback-point
  rollpoint schedule add --schedule \"55 2 * * *\" --snapshot db-1 --alias rollback-point --expire-days 7 --comment \"pre-migration snapshot\"
  rollpoint events --container db-1 --since 24h
  rollpoint token create --name ci --scope snapshot --container db-1
  rollpoint recover --apply            # rollpointd stopped: rebuild its record from the disks

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
    /// The CA certificate is kept for an https:// endpoint only: `--ca-cert`
    /// for anything else is a usage error (the caller expects TLS and would
    /// not get it), ROLLPOINT_CA_CERT is left unused.
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
        if !cli.global.endpoint.as_deref().is_some_and(|url| url.starts_with("https://")) {
            if from_command_line("ca_cert") {
                let message = "--ca-cert is for an https:// --endpoint";
                return Err(Cli::command().error(ErrorKind::ArgumentConflict, message));
            }
            cli.global.ca_cert = None;
        }
        if let Command::Schedule(command) = &mut cli.command {
            if let Some(entry) = command.entry_mut() {
                entry.name = entry_name(&entry.name, entry.user.as_deref())
                    .map_err(|message| Cli::command().error(ErrorKind::ArgumentConflict, message))?;
                entry.user = None;
            }
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
    /// PEM file of the CA that signed the daemon's certificate, for an
    /// https:// --endpoint.
    ///
    /// Read only for https://; on the command line with another target it is
    /// a usage error.
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "FILE", env = "ROLLPOINT_CA_CERT", hide_env_values = true)]
    pub ca_cert: Option<PathBuf>,
    /// Print JSON for scripts, one document per command.
    ///
    /// Lists are arrays; timestamps are RFC 3339 (UTC); durations are numbers
    /// in the unit their key names (frozen_for_ms); absent values are null.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,
    /// Times a call the daemon was too busy to take is sent again.
    ///
    /// A busy daemon (its admission queue full) answers RESOURCE_EXHAUSTED
    /// with a time to wait: the call is sent again after it, with exponential
    /// backoff and jitter, saying so on stderr. Reads are also retried when
    /// the daemon is unavailable. 0 sends each call once.
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "N", env = "ROLLPOINT_RETRIES", default_value_t = 5)]
    pub retries: u32,
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
    /// pre-restore; restore that one to undo. The steps go to stderr as they
    /// happen (not with --json); the result (restored snapshot, pre-restore
    /// snapshot, timings) to stdout, with the steps only if some could not be
    /// shown as they happened. --json prints the result with every step.
    Restore(RestoreArgs),
    /// What changed between two snapshots of a container, path by path.
    ///
    /// One line per path: CHANGE (added, changed, metadata, deleted,
    /// renamed), PATH (with "<- OLD" for a rename, "= OTHER" for a new hard
    /// link), SIZE (in TO; in FROM for a deleted path) and WRITTEN (file data
    /// written in between). Without TO, against the live container (read
    /// through a temporary read-only snapshot, not frozen, deleted after).
    /// Computed from what btrfs knows changed between
    /// the two (the send stream without file data), not by walking both
    /// trees: seconds for a container of any size when little changed.
    #[command(after_long_help = DIFF_EXAMPLES)]
    Diff(DiffArgs),
    /// Apply retention now, or with --dry-run say what would go and which
    /// rule keeps the rest.
    ///
    /// Each container's snapshots follow its policy (or the daemon's
    /// default), its pre-restore snapshots their own; held snapshots are
    /// kept, and never fewer than a policy's min. The daemon prunes by
    /// itself after each snapshot and at each expiry: this is for seeing
    /// what it does, or doing it at once after a policy change.
    ///
    /// Example: rollpoint prune db-1 --dry-run
    Prune(PruneSnapshotsArgs),
    /// Bring chosen files or folders of a snapshot back into the container.
    ///
    /// Ownership, modes, times and xattrs are kept; each path replaces what
    /// is there in one rename (a folder as a whole). A pre-restore snapshot of
    /// the container is taken first: `rollpoint restore CONTAINER PRE-RESTORE`
    /// (or `restore-files` from it) undoes this. With --to DIR, the paths are
    /// written under DIR instead and the container is left alone (root only).
    #[command(name = "restore-files", after_long_help = RESTORE_FILES_EXAMPLES)]
    RestoreFiles(RestoreFilesArgs),
    /// List the containers this host's managers run, and register them.
    ///
    /// Asks systemd-machined (over the system bus) and Podman (its JSON
    /// output) for their containers; one line each: SOURCE, NAME, the ID it
    /// gets when registered, the VOLUME it would be snapshotted by (a
    /// machine's root; a Podman container's btrfs root or the first of its
    /// volumes and bind mounts on a btrfs subvolume or thin LV), and STATUS:
    /// registered already, can register, or why not (not running, no
    /// volume that can be snapshotted, cgroup v1 only, ...). With
    /// --register, registers those that can be, with their manager's
    /// lifecycle (the machine's unit; podman stop/start). The daemon can do
    /// this by itself: `auto_register` in [discovery] of rollpointd.toml.
    ///
    /// Example: rollpoint discover --source podman --register
    Discover(DiscoverArgs),
    /// Groups: containers snapshotted at one instant and restored together.
    #[command(subcommand, after_long_help = GROUP_EXAMPLES)]
    Group(GroupCommand),
    /// Create, list and revoke bearer tokens for the TCP listener.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Show how the daemon is doing: version, uptime, what it holds, and how
    /// busy it is (calls running and waiting for an operation slot, per kind).
    Status,
    /// Show the audit timeline: what the daemon did, when, for whom, how long.
    ///
    /// One line per event, oldest at the top: TIME (UTC, HH:MM:SS.mmm, with
    /// the date on the first line and wherever it changes), KIND, CONTAINER,
    /// SNAPSHOT, OUTCOME, DURATION, FROZEN and DETAIL (after the schedule
    /// entry, if any). --json prints an array, oldest first, with each event's
    /// sequence number and actor too.
    #[command(after_long_help = EVENTS_EXAMPLES)]
    Events(EventsArgs),
    /// Schedule snapshots (or commands) on crontab(5) schedules.
    #[command(subcommand, after_long_help = SCHEDULE_EXAMPLES)]
    Schedule(ScheduleCommand),
    /// Off-host copies: list, create, check, verify and prune remotes.
    ///
    /// A remote is an S3-compatible bucket or a directory named in the
    /// daemon's configuration ([remotes.NAME] in rollpointd.toml); it holds a
    /// repository of encrypted, deduplicated exports (see `rollpoint export`).
    #[command(subcommand, after_long_help = REMOTE_EXAMPLES)]
    Remote(RemoteCommand),
    /// Copy a snapshot to a remote, off this host.
    ///
    /// Incremental: only what changed since the container's newest earlier
    /// export is read (btrfs tells what changed) and only chunks the remote
    /// does not hold are uploaded. The container is never frozen for it.
    /// Progress goes to stderr; the result to stdout.
    #[command(after_long_help = REMOTE_EXAMPLES)]
    Export(ExportArgs),
    /// Bring an exported snapshot back from a remote, on this host or any other.
    ///
    /// Without --to, it becomes a snapshot of the registered container of
    /// the same id (origin import), ready for `rollpoint restore`. With --to
    /// PATH, the tree is written to a new btrfs subvolume at PATH (when its
    /// folder is on btrfs) or a new directory (any other filesystem). Every
    /// chunk is checked before it is written.
    #[command(after_long_help = REMOTE_EXAMPLES)]
    Import(ImportArgs),
    /// Rebuild the daemon's store from the records kept beside the data.
    ///
    /// Run as root with rollpointd stopped (it refuses to start on a store
    /// older than the disks and names this command). Reads the records kept
    /// beside every container folder and snapshot (`<fs>/.rollpoint/<id>/`)
    /// of the filesystems in the configuration's `filesystems`, those given
    /// with --filesystem and those of the containers the store knows, and
    /// re-creates the containers and snapshots the store lacks, with their
    /// names, aliases, expiry and origins. Conflicts are listed, never
    /// overwritten. Without --apply nothing is changed (a dry run). Works
    /// with an empty state directory.
    Recover(RecoverArgs),
    /// Copy the daemon's whole record to a file, or add one back.
    ///
    /// Run as root with rollpointd stopped (the store admits one user). The
    /// daemon also keeps a daily export in <state dir>/store-exports/ (the
    /// newest 7): put that folder in the host's backups.
    #[command(subcommand)]
    Store(StoreCommand),
}

/// Where the daemon's store is, for the commands that open it themselves.
#[derive(Args, Debug)]
pub struct OfflineArgs {
    /// The daemon's configuration file (for state_dir and filesystems).
    #[arg(long, value_name = "PATH", default_value = crate::config::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// The state directory, instead of the configuration's.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Write containers, snapshots and schedule entries as versioned JSON.
    Export {
        /// File to write (mode 0600).
        file: PathBuf,
        /// Include the token records (hashes of the secrets).
        #[arg(long)]
        with_tokens: bool,
        #[command(flatten)]
        offline: OfflineArgs,
    },
    /// Add what an export holds and the store lacks; nothing is overwritten.
    Import {
        /// File written by `rollpoint store export`.
        file: PathBuf,
        #[command(flatten)]
        offline: OfflineArgs,
    },
}

#[derive(Args, Debug)]
pub struct RecoverArgs {
    #[command(flatten)]
    pub offline: OfflineArgs,
    /// A btrfs mount point to scan as well; repeat for more.
    #[arg(long, value_name = "PATH")]
    pub filesystem: Vec<PathBuf>,
    /// An LVM volume group whose metadata volume (rp--meta) to scan as
    /// well; repeat for more.
    #[arg(long, value_name = "VG")]
    pub volume_group: Vec<String>,
    /// Write the changes (without it: say what would be done).
    #[arg(long)]
    pub apply: bool,
}

const REMOTE_EXAMPLES: &str = "\
Examples:
  rollpoint remote init offsite
  rollpoint remote check offsite
  rollpoint export db-1 rollback-point --remote offsite
  rollpoint remote snapshots offsite --container db-1
  rollpoint import db-1 snap-2026-05-04 --remote offsite
  rollpoint import db-1 snap-2026-05-04 --remote offsite --to /srv/restored/db-1
  rollpoint restore db-1 snap-2026-05-04 --remote offsite
  rollpoint remote verify offsite
  rollpoint remote prune offsite --keep-last 7 --keep-days 30";

// ------------------------------------------------------------------- remotes

#[derive(Subcommand, Debug)]
pub enum RemoteCommand {
    /// List the configured remotes and their key files.
    List,
    /// Create the repository at a remote (and this host's key file for it).
    ///
    /// The key file opens the repository: copy it to every host that is to
    /// restore from it and keep a copy off the hosts. Losing every copy of
    /// it loses the data.
    Init {
        /// Remote name, as in the daemon's configuration.
        remote: String,
    },
    /// Reach a remote and open its repository (credentials, bucket, key).
    Check {
        /// Remote name.
        remote: String,
    },
    /// List the snapshots exported to a remote, with the bytes each added.
    Snapshots {
        /// Remote name.
        remote: String,
        /// Only this container's.
        #[arg(long, value_name = "ID")]
        container: Option<String>,
    },
    /// Read everything back and check every seal and id.
    ///
    /// Names each damaged object and the snapshots it touches; exits 1 when
    /// anything is damaged.
    Verify {
        /// Remote name.
        remote: String,
    },
    /// Forget exports by retention and collect what nothing references.
    ///
    /// Unreferenced packs are marked first and deleted by a later prune
    /// once the mark is older than --grace, which keeps prune safe while
    /// other hosts export into the same repository.
    Prune(PruneArgs),
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remote name.
    pub remote: String,
    /// Keep the newest N exports of each container.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the exports of snapshots taken in the last D days.
    #[arg(long, value_name = "D")]
    pub keep_days: Option<u32>,
    /// Only forget this container's exports.
    #[arg(long, value_name = "ID")]
    pub container: Option<String>,
    /// How long an unreferenced pack stays marked before a prune deletes
    /// it: 30m, 24h, 7d... [default: 24h].
    #[arg(long, value_name = "AGE", value_parser = parse_grace)]
    pub grace: Option<Duration>,
    /// Say what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Container id.
    pub container: String,
    /// Snapshot name or alias.
    pub snapshot: String,
    /// Remote to copy to.
    #[arg(long, value_name = "NAME")]
    pub remote: String,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Container id the snapshot was exported from.
    pub container: String,
    /// Exported snapshot's name or alias, or its id (see `rollpoint remote snapshots`).
    pub snapshot: String,
    /// Remote to read from.
    #[arg(long, value_name = "NAME")]
    pub remote: String,
    /// Write the tree to a new volume at this absolute path instead of a
    /// snapshot of the container.
    #[arg(long, value_name = "PATH")]
    pub to: Option<PathBuf>,
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
    /// A new container from a snapshot of another: its volume is a writable
    /// snapshot of that snapshot (sharing its data until written), under its
    /// own id and cgroup, with no lifecycle and the label
    /// rollpoint/cloned-from=CONTAINER/SNAPSHOT.
    ///
    /// Example: rollpoint container clone db-1 rollback-point db-1-test --cgroup machine.slice/db-1-test
    Clone(CloneArgs),
    /// Change a container's hooks or retention: the hooks given replace all
    /// of them (--no-hooks removes them); --retention and
    /// --pre-restore-retention set its own policies.
    ///
    /// Example: rollpoint container update db-1 --pre-freeze "psql -U postgres -c CHECKPOINT" --hook-user postgres
    Update(UpdateContainerArgs),
}

#[derive(Args, Debug)]
pub struct CloneArgs {
    /// The container to clone from.
    pub container: String,
    /// Its snapshot (name or alias).
    pub snapshot: String,
    /// The new container's id.
    pub id: String,
    /// The new container's cgroup v2 directory (as for `container register`).
    #[arg(long, value_name = "PATH")]
    pub cgroup: String,
    /// Where the new volume goes: an absolute path on btrfs, `vg/lv` on LVM
    /// thin [default: beside the source's volume, named after ID].
    #[arg(long, value_name = "PATH")]
    pub subvolume: Option<String>,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("lifecycle").args(["stop_command", "systemd_unit", "podman"])))]
pub struct RegisterArgs {
    /// Container id: 1-63 of [a-z0-9-], starting and ending alphanumeric.
    pub id: String,
    /// cgroup v2 directory: relative to the cgroup mount, absolute, or as
    /// /proc/PID/cgroup prints it (/machine.slice/db-1.scope).
    #[arg(long, value_name = "PATH", required_unless_present = "cgroup_of_pid")]
    pub cgroup: Option<String>,
    /// Register the cgroup of this running process (read from
    /// /proc/PID/cgroup on the host where rollpoint runs) instead of --cgroup.
    #[arg(long = "pid", value_name = "PID", value_parser = cgroup_of_pid, conflicts_with = "cgroup")]
    pub cgroup_of_pid: Option<String>,
    /// Absolute path of the container's btrfs subvolume.
    #[arg(long, value_name = "PATH")]
    pub subvolume: String,
    /// Label KEY=VALUE; repeat for more.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Command that stops the container, as one string split like a shell
    /// splits words (quotes group words; run without a shell: nothing is expanded).
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
    /// Podman container (name or id) to stop and start around a restore,
    /// with /usr/bin/podman (`rollpoint discover` fills this in).
    #[arg(long, value_name = "CONTAINER")]
    pub podman: Option<String>,
    /// Time allowed to each podman stop and start [default: 30].
    #[arg(long, value_name = "SECS", requires = "podman")]
    pub podman_timeout: Option<u32>,
    #[command(flatten)]
    pub hooks: HookArgs,
}

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Make NAME the group of exactly these containers, in start order.
    ///
    /// Members are stopped in reverse order and started in this order
    /// around a group restore. A container is in one group at most; members
    /// left out of a group that exists leave it. A container with several
    /// volumes (data and WAL) is one member per volume, registered on the
    /// same cgroup: frozen once, every volume snapshotted.
    Set {
        /// Group name: 1-63 of [a-z0-9-].
        name: String,
        /// Container ids, in start order.
        #[arg(required = true, value_name = "CONTAINER")]
        members: Vec<String>,
    },
    /// Show a group's members.
    Show {
        /// Group name.
        name: String,
    },
    /// List the groups.
    List,
    /// Take every member out of the group (their snapshots stay).
    Delete {
        /// Group name.
        name: String,
    },
    /// Snapshot every member at one instant: one freeze window and budget
    /// for all, one name, alias and expiry; all or nothing.
    Snapshot(GroupSnapshotArgs),
    /// Restore every member to a group snapshot: stop all (reverse order),
    /// swap every volume, start all (in order). Prints the group
    /// pre-restore snapshot that undoes it.
    Restore {
        /// Group name.
        name: String,
        /// A snapshot (name or alias) taken with `group snapshot`.
        snapshot: String,
    },
}

#[derive(Args, Debug)]
pub struct GroupSnapshotArgs {
    /// Group name.
    pub group: String,
    #[command(flatten)]
    pub fields: SnapshotFields,
}

const GROUP_EXAMPLES: &str = "\
Examples:
  rollpoint group set shop shop-db shop-app      # the database starts first
  rollpoint group snapshot shop --alias before-upgrade
  rollpoint group restore shop before-upgrade    # prints the pre-restore snapshot that undoes it
  rollpoint group list";

#[derive(Args, Debug)]
pub struct DiscoverArgs {
    /// Register every container found that can be registered as it is.
    #[arg(long)]
    pub register: bool,
    /// Ask only this manager: machined or podman; repeat for both
    /// [default: the daemon's configured ones].
    #[arg(long = "source", value_name = "MANAGER", value_parser = ["machined", "podman"])]
    pub sources: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PruneSnapshotsArgs {
    /// Container id [default: every container].
    pub container: Option<String>,
    /// Only say what would be deleted and why the rest stays.
    #[arg(long)]
    pub dry_run: bool,
}

/// Hooks: commands run inside the container (its namespaces and root,
/// entered from its oldest process), each given as one string split like a
/// shell does (quotes group words; no variables, globs or pipes: use
/// `sh -c '...'`). The program is looked up in the container's PATH.
#[derive(Args, Debug, Default)]
pub struct HookArgs {
    /// Run before the freeze, e.g. "psql -U postgres -c CHECKPOINT".
    #[arg(long, value_name = "COMMAND", value_parser = parse_argv, help_heading = "Hooks")]
    pub pre_freeze: Option<Argv>,
    /// Run after the thaw (a failure is a warning; the snapshot stands).
    #[arg(long, value_name = "COMMAND", value_parser = parse_argv, help_heading = "Hooks")]
    pub post_thaw: Option<Argv>,
    /// Run before the container is stopped for a restore.
    #[arg(long, value_name = "COMMAND", value_parser = parse_argv, help_heading = "Hooks")]
    pub pre_restore: Option<Argv>,
    /// Run after the restored container started (a failure is a warning).
    #[arg(long, value_name = "COMMAND", value_parser = parse_argv, help_heading = "Hooks")]
    pub post_restore: Option<Argv>,
    /// Runs across the snapshot: started before the freeze, the snapshot is
    /// taken once it prints a line, and its standard input is closed after
    /// the thaw, e.g. for MariaDB:
    /// sh -c '{ echo "FLUSH TABLES WITH READ LOCK; SELECT 1;"; cat; } | mariadb -N --unbuffered'
    #[arg(long, value_name = "COMMAND", value_parser = parse_argv, help_heading = "Hooks")]
    pub hold: Option<Argv>,
    /// User the hooks run as inside the container (name, uid or uid:gid)
    /// [default: root].
    #[arg(long, value_name = "USER", help_heading = "Hooks")]
    pub hook_user: Option<String>,
    /// Time allowed to each hook, not counted in the freeze budget
    /// [default: 30].
    #[arg(long, value_name = "SECS", help_heading = "Hooks")]
    pub hook_timeout: Option<u32>,
    /// What a failed pre_freeze, hold or pre_restore hook does: abort the
    /// snapshot or restore, or continue with a warning on the timeline.
    #[arg(long, value_name = "POLICY", value_parser = ["abort", "continue"], help_heading = "Hooks")]
    pub hook_on_failure: Option<String>,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("change").required(true).multiple(true)
    .args(["no_hooks", "pre_freeze", "post_thaw", "pre_restore", "post_restore", "hold", "retention",
        "pre_restore_retention", "default_retention"])))]
pub struct UpdateContainerArgs {
    /// Container id.
    pub id: String,
    /// Remove every hook.
    #[arg(long, conflicts_with_all = ["pre_freeze", "post_thaw", "pre_restore", "post_restore", "hold"])]
    pub no_hooks: bool,
    /// Given hooks replace all the container's hooks.
    #[command(flatten)]
    pub hooks: HookArgs,
    /// The container's own retention of its snapshots, as
    /// last=N,hourly=N,daily=N,weekly=N,monthly=N,yearly=N,min=N (any of
    /// them; `none`: no rule, only expiry). See README "Retention".
    #[arg(long, value_name = "RULES", value_parser = parse_policy, help_heading = "Retention")]
    pub retention: Option<RetentionPolicy>,
    /// The same for its pre-restore snapshots.
    #[arg(long, value_name = "RULES", value_parser = parse_policy, help_heading = "Retention")]
    pub pre_restore_retention: Option<RetentionPolicy>,
    /// Back to the daemon's default policies (its [retention] and
    /// [pre_restore_retention] configuration).
    #[arg(long, conflicts_with_all = ["retention", "pre_restore_retention"], help_heading = "Retention")]
    pub default_retention: bool,
}

fn parse_policy(text: &str) -> Result<RetentionPolicy, String> {
    RetentionPolicy::parse(text)
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

/// An argv list given as one string, split like a shell splits words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argv(pub Vec<String>);

/// Splits on unquoted whitespace; single quotes keep everything, double
/// quotes keep everything but `\"` and `\\`, a backslash outside quotes
/// keeps the next character. Nothing is expanded.
fn parse_argv(value: &str) -> Result<Argv, String> {
    let mut argv = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => argv.extend(word.take()),
            '\'' => {
                let word = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        None => return Err("unmatched single quote".into()),
                        Some('\'') => break,
                        Some(c) => word.push(c),
                    }
                }
            }
            '"' => {
                let word = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        None => return Err("unmatched double quote".into()),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unmatched double quote".into()),
                        },
                        Some(c) => word.push(c),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    argv.extend(word);
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
    /// Hold a snapshot: never expired, pruned or deleted until released.
    ///
    /// Example: rollpoint snapshot hold db-1 rollback-point --reason "audit 2026-05"
    Hold {
        /// Container id.
        container: String,
        /// Snapshot name or alias.
        snapshot: String,
        /// Why it is held (shown with the snapshot and on the timeline).
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Read-only access to a snapshot's files at a folder of this host: an
    /// empty directory, bind-mounted read-only (nosuid, nodev) by the daemon.
    ///
    /// Example: rollpoint snapshot mount db-1 rollback-point /mnt/db-1-then
    Mount {
        /// Container id.
        container: String,
        /// Snapshot name or alias.
        snapshot: String,
        /// An empty directory (absolute, or relative to where this runs).
        path: PathBuf,
    },
    /// Undo `snapshot mount`.
    Unmount {
        /// Container id.
        container: String,
        /// Where the snapshot is mounted.
        path: PathBuf,
    },
    /// Release a held snapshot: retention and expiry apply to it again.
    Release {
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
    #[command(flatten)]
    pub fields: SnapshotFields,
}

/// What a new snapshot is called and how long it stays (a container's, or
/// each member's of a group snapshot).
#[derive(Args, Debug)]
pub struct SnapshotFields {
    /// Snapshot name [default: snap-YYYY-MM-DD (UTC), then -2, -3... the same
    /// day]; for a group, free in every member.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Alias to give the snapshot; moved here from any other snapshot of the
    /// container (of each member, for a group).
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
    /// When the snapshot is not on this host (expired, deleted, lost, or
    /// another host's), bring it back from this remote first.
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
}

const DIFF_EXAMPLES: &str = "\
Examples:
  # what the migration changed since the rollback point
  rollpoint diff db-1 rollback-point after-migration
  # what changed since the rollback point, live
  rollpoint diff db-1 rollback-point
  rollpoint --json diff db-1 snap-2026-05-04 snap-2026-05-05";

const RESTORE_FILES_EXAMPLES: &str = "\
Examples:
  # what changed, then bring one file and one folder back
  rollpoint diff db-1 rollback-point
  rollpoint restore-files db-1 rollback-point etc/postgresql/postgresql.conf var/lib/app/uploads
  # look at them first, elsewhere
  rollpoint restore-files db-1 rollback-point etc --to /root/db-1-etc";

#[derive(Args, Debug)]
pub struct RestoreFilesArgs {
    /// Container id.
    pub container: String,
    /// Snapshot name or alias.
    pub snapshot: String,
    /// Paths inside the container's volume (relative, or from its root).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<String>,
    /// Write them under this absolute folder of the host instead.
    #[arg(long, value_name = "DIR")]
    pub to: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// Container id.
    pub container: String,
    /// The older snapshot (name or alias).
    pub from: String,
    /// The newer snapshot (name or alias) [default: the live container].
    pub to: Option<String>,
}

// -------------------------------------------------------------------- tokens

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token and print its secret, once.
    ///
    /// The daemon keeps only a hash of the secret: store it when it is shown.
    /// Send it with --token (or ROLLPOINT_TOKEN) and --endpoint, or as the
    /// header "authorization: Bearer <secret>".
    #[command(after_long_help = TOKEN_EXAMPLES)]
    Create(TokenCreateArgs),
    /// List every token (never their secrets).
    List,
    /// Revoke a token: calls that send it are refused from now on.
    Revoke {
        /// Token name.
        name: String,
    },
}

const TOKEN_EXAMPLES: &str = "\
Examples:
  rollpoint token create --name ci --scope snapshot --container db-1
  rollpoint token create --name ops --scope read,restore
  ROLLPOINT_TOKEN=<secret> rollpoint --endpoint http://127.0.0.1:7443 snapshot list db-1";

#[derive(Args, Debug)]
pub struct TokenCreateArgs {
    /// Token name: 1-63 of [a-z0-9-].
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// What the token may do; repeat or comma-separate. Every scope but
    /// metrics:read (GET /metrics only) includes read; admin includes
    /// everything, token management too.
    #[arg(long = "scope", value_name = "SCOPE", required = true, value_delimiter = ',',
          value_parser = PossibleValuesParser::new(Scope::ALL.map(|(name, _)| name)))]
    pub scopes: Vec<String>,
    /// Limit the token to this container; repeat or comma-separate
    /// [default: every container].
    #[arg(long = "container", value_name = "ID", value_delimiter = ',')]
    pub containers: Vec<String>,
}

// -------------------------------------------------------------------- events

const EVENTS_EXAMPLES: &str = "\
Examples:
  rollpoint events --container db-1 --since 24h
  rollpoint events --kind snapshot --since 2026-05-04T02:50:00Z --until 2026-05-04T03:10:00Z
  rollpoint events --entry pre-migration --limit 20
  rollpoint events --follow
  rollpoint --json events --follow --kind restore | jq .";

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Only events of this container.
    #[arg(long, value_name = "ID")]
    pub container: Option<String>,
    /// Only events of this schedule entry: users/USER/entries/ID, or an ID of root's.
    #[arg(long, value_name = "NAME", value_parser = parse_entry_filter)]
    pub entry: Option<String>,
    /// Only events of this kind (snapshot.created); a prefix (snapshot) takes
    /// every snapshot.* kind.
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// Only events from this time on: an age (30m, 24h, 7d, 1h30m; units s m h
    /// d w), a date (2026-05-04, midnight UTC) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN", value_parser = parse_time_bound)]
    pub since: Option<TimeBound>,
    /// Only events before this time; same forms as --since.
    #[arg(long, value_name = "WHEN", value_parser = parse_time_bound, conflicts_with = "follow")]
    pub until: Option<TimeBound>,
    /// Show at most N events: the N newest (or, with --oldest-first, the N
    /// oldest) of the range. 0 shows none, e.g. to --follow new ones only.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: u32,
    /// Take the N oldest events of the range (from --since on) instead of the
    /// N newest; the timeline reads oldest at the top either way.
    #[arg(long)]
    pub oldest_first: bool,
    /// Then print new events as they happen, until Ctrl-C; reconnects by
    /// itself if the daemon goes away. With --json: one JSON object per line.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// A time given as an age ("24h": that long before now) or a point in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBound {
    Ago(Duration),
    At(DateTime<Utc>),
}

impl TimeBound {
    pub fn at(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            TimeBound::Ago(age) => chrono::Duration::from_std(age)
                .ok()
                .and_then(|age| now.checked_sub_signed(age))
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
            TimeBound::At(time) => time,
        }
    }
}

fn parse_time_bound(value: &str) -> Result<TimeBound, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(value) {
        return Ok(TimeBound::At(time.with_timezone(&Utc)));
    }
    if let Ok(date) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Ok(TimeBound::At(date.and_time(chrono::NaiveTime::MIN).and_utc()));
    }
    parse_age(value).map(TimeBound::Ago).ok_or_else(|| {
        format!("expected an age (30m, 24h, 7d), a date (2026-05-04) or an RFC 3339 time, got {value:?}")
    })
}

fn parse_grace(value: &str) -> Result<Duration, String> {
    parse_age(value).ok_or_else(|| format!("expected an age (30m, 24h, 7d), got {value:?}"))
}

/// `30m`, `24h`, `7d`, `1h30m`: numbers each followed by s, m, h, d or w.
fn parse_age(value: &str) -> Option<Duration> {
    let mut total: u64 = 0;
    let mut rest = value;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let (number, tail) = rest.split_at(digits);
        let mut chars = tail.chars();
        let unit: u64 = match chars.next()? {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return None,
        };
        total = total.checked_add(number.parse::<u64>().ok()?.checked_mul(unit)?)?;
        rest = chars.as_str();
    }
    Some(Duration::from_secs(total))
}

// ----------------------------------------------------------------- schedules

const SCHEDULE_EXAMPLES: &str = "\
Examples:
  # snapshot db-1 every night at 02:55 UTC, five minutes before the migration
  rollpoint schedule add --schedule \"55 2 * * *\" --snapshot db-1 --alias rollback-point \\
      --expire-days 7 --comment \"pre-migration snapshot\" --id pre-migration
  rollpoint schedule list
  rollpoint schedule run pre-migration
  rollpoint schedule update pre-migration --schedule \"50 2 * * *\" --time-zone Europe/Berlin
  rollpoint schedule update users/root/entries/pre-migration --disable
  # what happened last night
  rollpoint events --container db-1 --since 24h

An entry is named users/USER/entries/ID; wherever a NAME is asked for, a bare
ID will do, with --user (default root).";

/// What `schedule add --help` adds: the page's entry, and what a run gets.
const SCHEDULE_ADD_EXAMPLES: &str = r#"Examples:
  # snapshot db-1 every night at 02:55 UTC, five minutes before the migration
  rollpoint schedule add --schedule "55 2 * * *" --snapshot db-1 --alias rollback-point \
      --expire-days 7 --comment "pre-migration snapshot" --id pre-migration
  # the page's entry as written: its command takes the snapshot through $SNAP_URL
  rollpoint schedule add --schedule "55 2 * * *" --container db-1 --comment "pre-migration snapshot" \
      --command "curl -X POST \$SNAP_URL -d '{\"alias\":\"rollback-point\"}'"
  # a dump with its own variables
  rollpoint schedule add --schedule @daily --command 'pg_dumpall > /srv/backup/all.sql' \
      --env PGHOST=/run/postgresql --env PGUSER=postgres

What a command's run gets: /bin/sh -c COMMAND as --user (uid, groups, home),
with HOME, USER, LOGNAME, SHELL=/bin/sh, PATH=/usr/local/bin:/usr/bin:/bin, the
entry's --env variables, and
  ROLLPOINT_ENTRY       users/USER/entries/ID
  ROLLPOINT_FIRE_TIME   the due time of this firing (RFC 3339, UTC)
  ROLLPOINT_RUN_ID      unique per firing, the same for a retry of that firing
and, with --container:
  ROLLPOINT_CONTAINER   the container
  SNAP_URL              http://run:CREDENTIAL@127.0.0.1:PORT/api/v1/containers/ID/snapshots
The credential in SNAP_URL is minted for this run, lets it take (POST) and read
(GET) snapshots of that container and nothing else, works only on the loopback
run listener (schedule_listen in rollpointd.toml; "off" turns it off), and is
revoked when the command exits or is killed at its timeout. It is never written
to disk or logged."#;

/// User that owns entries when none is named.
pub const DEFAULT_USER: &str = "root";

#[derive(Subcommand, Debug)]
pub enum ScheduleCommand {
    /// Add an entry that snapshots a container (--snapshot) or runs a command
    /// (--command) on a crontab(5) schedule.
    #[command(after_long_help = SCHEDULE_ADD_EXAMPLES)]
    Add(ScheduleAddArgs),
    /// List entries: NAME, SCHEDULE, TZ, ACTION, ENABLED, LAST FIRE, NEXT FIRE,
    /// LAST OUTCOME.
    List {
        /// Only this user's entries [default: every user's].
        #[arg(long, value_name = "USER")]
        user: Option<String>,
    },
    /// Show one entry.
    Show(EntryArgs),
    /// Delete an entry; the snapshots it took stay.
    #[command(visible_alias = "delete")]
    Rm(EntryArgs),
    /// Fire an entry now, whatever its schedule, and print the outcome and
    /// the snapshot taken.
    Run(EntryArgs),
    /// Change an entry's schedule, time zone, comment, random delay or enabled state; only
    /// the fields given change.
    Update(ScheduleUpdateArgs),
}

impl ScheduleCommand {
    /// The entry the command names, if it names one.
    pub fn entry_mut(&mut self) -> Option<&mut EntryArgs> {
        match self {
            ScheduleCommand::Show(entry) | ScheduleCommand::Rm(entry) | ScheduleCommand::Run(entry) => Some(entry),
            ScheduleCommand::Update(args) => Some(&mut args.entry),
            ScheduleCommand::Add(_) | ScheduleCommand::List { .. } => None,
        }
    }
}

/// An entry, by name or by id and user. After `Cli::try_parse_command_line_from`
/// `name` is the full users/{user}/entries/{id} and `user` is None.
#[derive(Args, Debug)]
pub struct EntryArgs {
    /// Entry: users/USER/entries/ID, or a bare ID (of --user's entries).
    #[arg(value_name = "NAME", value_parser = parse_entry_shape)]
    pub name: String,
    /// Owner of a bare entry ID [default: root].
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
}

/// `users/{user}/entries/{id}` from a full name, or from a bare id and the
/// user (default root). A full name and a --user naming someone else contradict.
pub fn entry_name(name: &str, user: Option<&str>) -> Result<String, String> {
    match name.split('/').collect::<Vec<_>>().as_slice() {
        [id] if !id.is_empty() => Ok(format!("users/{}/entries/{id}", user.unwrap_or(DEFAULT_USER))),
        ["users", owner, "entries", id] if !owner.is_empty() && !id.is_empty() => match user {
            Some(user) if user != *owner => Err(format!("--user {user} contradicts the entry name {name}")),
            _ => Ok(name.to_owned()),
        },
        _ => Err(format!("expected an entry ID or users/USER/entries/ID, got {name:?}")),
    }
}

/// The cgroup of process `value`, as its /proc/PID/cgroup says.
fn cgroup_of_pid(value: &str) -> Result<String, String> {
    let pid: u32 = value.parse().map_err(|_| format!("expected a process id, got {value:?}"))?;
    let path = format!("/proc/{pid}/cgroup");
    let text = std::fs::read_to_string(&path).map_err(|error| format!("cannot read {path}: {error}"))?;
    crate::sys::proc_cgroup::cgroup_in_proc_file(&text)
        .ok_or_else(|| format!("{path} names no cgroup v2 group nor freezer group"))
}

fn parse_entry_shape(value: &str) -> Result<String, String> {
    entry_name(value, None).map(|_| value.to_owned())
}

fn parse_entry_filter(value: &str) -> Result<String, String> {
    entry_name(value, None)
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("action").args(["snapshot", "snapshot_group", "command"]).required(true)))]
pub struct ScheduleAddArgs {
    /// User that owns the entry; a --command runs as this user.
    #[arg(long, value_name = "USER", default_value = DEFAULT_USER)]
    pub user: String,
    /// When to fire, in crontab(5) form: five fields ("55 2 * * *") or
    /// @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually.
    #[arg(long, value_name = "CRON")]
    pub schedule: String,
    /// IANA time zone the schedule is read in, e.g. Europe/Berlin [default: UTC].
    #[arg(long, value_name = "ZONE")]
    pub time_zone: Option<String>,
    /// Snapshot this container at each firing.
    #[arg(long, value_name = "CONTAINER")]
    pub snapshot: Option<String>,
    /// Snapshot every member of this group at one instant at each firing.
    #[arg(long = "snapshot-group", value_name = "GROUP")]
    pub snapshot_group: Option<String>,
    /// Alias for each snapshot taken, moved from the one before.
    #[arg(long, value_name = "ALIAS", conflicts_with = "command")]
    pub alias: Option<String>,
    /// Each snapshot taken expires after D days [default: never].
    #[arg(long, value_name = "D", conflicts_with = "command")]
    pub expire_days: Option<u32>,
    /// Also export each snapshot taken to this remote (off-host); a failed
    /// export is an event and leaves the local snapshot in place.
    #[arg(long, value_name = "REMOTE", conflicts_with = "command")]
    pub export_to: Option<String>,
    /// Run this command line with /bin/sh, as --user, in a clean environment,
    /// at each firing; its output is kept (bounded) in the event.
    #[arg(long, value_name = "COMMAND")]
    pub command: Option<String>,
    /// Time allowed to the command, in seconds [default: 300].
    #[arg(long, value_name = "SECS", conflicts_with = "snapshot")]
    pub timeout: Option<u32>,
    /// Bind the --command to this container: each run gets SNAP_URL, the
    /// container's snapshots URL with a credential valid for that run only
    /// (so `curl -X POST $SNAP_URL -d '{"alias":"rollback-point"}'` takes a
    /// snapshot), and ROLLPOINT_CONTAINER.
    #[arg(long, value_name = "CONTAINER", conflicts_with = "snapshot")]
    pub container: Option<String>,
    /// A variable for the --command, like a crontab's NAME=value line;
    /// repeat for more. Every run also gets ROLLPOINT_ENTRY,
    /// ROLLPOINT_FIRE_TIME and ROLLPOINT_RUN_ID.
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_variable)]
    pub environment: Vec<(String, String)>,
    /// Free text kept with the entry.
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
    /// Fire up to this many seconds after the schedule's time, by an amount
    /// fixed per entry (at most 86400): spreads a fleet's entries of one
    /// minute. The next firing shown includes it [default: 0].
    #[arg(long, value_name = "SECS")]
    pub random_delay: Option<u32>,
    /// Add the entry disabled: it fires only through `schedule run`.
    #[arg(long)]
    pub disabled: bool,
    /// Entry ID: 1-63 of [a-z0-9-] [default: chosen by the daemon].
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("change").args(["schedule", "time_zone", "enable", "disable", "comment", "random_delay", "container", "environment", "no_env"]).required(true).multiple(true)))]
pub struct ScheduleUpdateArgs {
    #[command(flatten)]
    pub entry: EntryArgs,
    /// New schedule, in crontab(5) form.
    #[arg(long, value_name = "CRON")]
    pub schedule: Option<String>,
    /// New time zone; "" for UTC.
    #[arg(long, value_name = "ZONE")]
    pub time_zone: Option<String>,
    /// Let the entry fire on its schedule again.
    #[arg(long, conflicts_with = "disable")]
    pub enable: bool,
    /// Stop the entry firing on its schedule (`schedule run` still fires it).
    #[arg(long)]
    pub disable: bool,
    /// New comment; "" removes it.
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
    /// New random delay in seconds (see `schedule add`); 0 removes it.
    #[arg(long, value_name = "SECS")]
    pub random_delay: Option<u32>,
    /// Bind a command entry to this container (see `schedule add`); ""
    /// unbinds it.
    #[arg(long, value_name = "CONTAINER")]
    pub container: Option<String>,
    /// The command's variables: these replace all of them.
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_variable, conflicts_with = "no_env")]
    pub environment: Vec<(String, String)>,
    /// Remove all of the command's variables.
    #[arg(long)]
    pub no_env: bool,
}

/// `NAME=VALUE` of `--env` (the daemon checks the name).
fn parse_variable(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("{text:?} is not NAME=VALUE"))
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
    fn commands_split_like_a_shell_without_expanding() {
        let split = |text: &str| parse_argv(text).map(|argv| argv.0);
        assert_eq!(split("psql  -U postgres -c CHECKPOINT").unwrap(), ["psql", "-U", "postgres", "-c", "CHECKPOINT"]);
        assert_eq!(split(r#"sh -c 'echo "$HOME" > /x'"#).unwrap(), ["sh", "-c", r#"echo "$HOME" > /x"#]);
        assert_eq!(split(r#"a "b c" d\ e "q\"q" ''"#).unwrap(), ["a", "b c", "d e", "q\"q", ""]);
        assert_eq!(split(r#"x"y"'z'"#).unwrap(), ["xyz"]);
        assert!(split("sh -c 'open").unwrap_err().contains("single quote"));
        assert!(split(r#"sh -c "open"#).unwrap_err().contains("double quote"));
        assert!(split("   ").is_err());
    }

    #[test]
    fn container_update_needs_something_to_change() {
        assert!(parse(&["container", "update", "db-1"]).is_err());
        assert!(parse(&["container", "update", "db-1", "--no-hooks", "--pre-freeze", "true"]).is_err());
        let cli = parse(&["container", "update", "db-1", "--hold", "sh -c 'cat'", "--hook-user", "postgres"]).unwrap();
        let Command::Container(ContainerCommand::Update(args)) = cli.command else { panic!("not an update") };
        assert_eq!(args.hooks.hold.unwrap().0, ["sh", "-c", "cat"]);
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
    fn ca_cert_goes_with_an_https_endpoint() {
        let cli =
            parse(&["container", "list", "--endpoint", "https://rp:7443", "--ca-cert", "/etc/rp/ca.pem"]).unwrap();
        assert_eq!(cli.global.ca_cert, Some(PathBuf::from("/etc/rp/ca.pem")));
        for argv in [
            &["--ca-cert", "/ca.pem", "container", "list"][..],
            &["--ca-cert", "/ca.pem", "--endpoint", "http://127.0.0.1:7443", "container", "list"],
            &["--ca-cert", "/ca.pem", "--socket", "/s", "container", "list"],
        ] {
            let error = parse(argv).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::ArgumentConflict, "{argv:?}");
            assert!(error.to_string().contains("--ca-cert is for an https:// --endpoint"), "{error}");
        }
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
