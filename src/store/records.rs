//! What the store keeps, serialized as JSON values in sled trees.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How the daemon stops and starts a container around a restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LifecycleSpec {
    /// Freeze, kill the cgroup's processes, swap; the supervisor restarts.
    #[default]
    None,
    /// argv commands, no shell.
    Command { stop: Vec<String>, start: Vec<String>, timeout: Duration },
    /// A systemd unit, over D-Bus.
    Systemd { unit: String, timeout: Duration },
    /// A Podman container: `COMMAND stop --time N CONTAINER` and `COMMAND
    /// start CONTAINER`, run outside the container's cgroup (Podman makes it).
    Podman { command: Vec<String>, container: String, timeout: Duration },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    /// Absolute cgroup directory.
    pub cgroup: PathBuf,
    /// Absolute volume path (btrfs subvolume).
    pub volume: PathBuf,
    pub backend: String,
    pub snapshot_dir: PathBuf,
    pub lifecycle: LifecycleSpec,
    pub labels: BTreeMap<String, String>,
    pub create_time: DateTime<Utc>,
    /// The snapshot the container was last restored to and the volume
    /// generation right after, so that a repeat with no writes since is a no-op.
    #[serde(default)]
    pub last_restore: Option<LastRestore>,
    /// Commands run inside the container around its snapshots and restores.
    #[serde(default, skip_serializing_if = "Hooks::is_empty")]
    pub hooks: Hooks,
    /// The container's own retention policies; `None`: the daemon's default.
    #[serde(default, skip_serializing_if = "Retention::is_default")]
    pub retention: Retention,
    /// The manager it was found in by discovery, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovered: Option<Discovered>,
    /// The group it belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupMembership>,
}

/// A container's place in a group: snapshotted at one instant with the
/// other members, restored with them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMembership {
    pub name: String,
    /// Its place in the group's start order (0 first); stopped in reverse.
    pub order: u32,
}

/// Where discovery found a container, and whether it is still there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovered {
    /// "machined" or "podman".
    pub source: String,
    /// The manager's name for it.
    pub name: String,
    /// When a scan of that manager last found it missing; `None` while it is
    /// there. Its snapshots are kept either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vanish_time: Option<DateTime<Utc>>,
}

/// How many snapshots a retention policy keeps, per rule; all zero: no
/// policy. The rules are in `engine::retention`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionPolicy {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
    /// Never fewer than this many (holds aside, they are kept anyway).
    pub min: u32,
}

/// Retention policies of a container: its snapshots, and its pre-restore
/// snapshots, each `None` for the daemon's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Retention {
    pub snapshots: Option<RetentionPolicy>,
    pub pre_restore: Option<RetentionPolicy>,
}

impl Retention {
    pub fn is_default(&self) -> bool {
        *self == Retention::default()
    }
}

/// The hooks of a container, each optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Hooks {
    /// Before the freeze (flush, checkpoint); its time is not frozen time.
    pub pre_freeze: Option<HookSpec>,
    /// After the thaw.
    pub post_thaw: Option<HookSpec>,
    /// Before the container is stopped for a restore.
    pub pre_restore: Option<HookSpec>,
    /// After the restored container was started.
    pub post_restore: Option<HookSpec>,
    /// Started before the freeze, ready when it prints a line, told to finish
    /// by the end of its standard input after the thaw: a lock that lasts
    /// while a session stays open spans the snapshot.
    pub hold: Option<HookSpec>,
}

impl Hooks {
    pub fn is_empty(&self) -> bool {
        *self == Hooks::default()
    }
}

/// One hook: an argv (no shell) run inside the container's namespaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookSpec {
    pub command: Vec<String>,
    /// A user name or uid inside the container; empty: root.
    #[serde(default)]
    pub user: String,
    pub timeout: Duration,
    #[serde(default)]
    pub on_failure: OnFailure,
}

/// What a failed hook does to the operation around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The operation is refused (no snapshot, no restore), naming the hook.
    #[default]
    Abort,
    /// The operation goes on; the failure is a warning on the timeline.
    Continue,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRestore {
    pub snapshot: String,
    pub generation: u64,
    pub pre_restore_snapshot: String,
    pub time: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotState {
    Ready,
    Deleting,
    Lost,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SnapshotOrigin {
    Api,
    /// Taken by the schedule entry with this resource name.
    Schedule {
        entry: String,
    },
    PreRestore,
    /// Brought back from this remote (an off-host copy).
    Import {
        remote: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub container: String,
    pub name: String,
    pub alias: Option<String>,
    pub create_time: DateTime<Utc>,
    pub expire_time: Option<DateTime<Utc>>,
    pub frozen_for: Duration,
    pub duration: Duration,
    pub state: SnapshotState,
    pub origin: SnapshotOrigin,
    pub read_only: bool,
    pub location: String,
    pub uuid: String,
    pub generation: u64,
    pub comment: String,
    /// What the snapshot costs, measured in the background after it lands
    /// (`None` until then).
    #[serde(default)]
    pub sizes: Option<SnapshotSizes>,
    /// Set: never expired nor pruned until released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<SnapshotHold>,
    /// The group whose snapshot this is one part of (taken at the same
    /// instant as the other members' of the same name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// Why and by whom a snapshot is held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHold {
    pub reason: String,
    pub actor: String,
    pub time: DateTime<Utc>,
}

/// What a snapshot costs, as measured from what the filesystem says changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSizes {
    /// Bytes of file data written between `delta_parent` and this snapshot
    /// (the page's "412 MB delta"); with no parent, all of its file data.
    pub delta_bytes: u64,
    /// The snapshot the delta is counted from: the previous one of the
    /// container when it was measured (`None`: it was the first). When that
    /// one is deleted, the delta is measured again against the new previous.
    pub delta_parent: Option<String>,
    /// Bytes only this snapshot holds (what deleting it gives back), where
    /// the filesystem can tell (btrfs simple quotas).
    pub exclusive_bytes: Option<u64>,
}

impl SnapshotRecord {
    /// `containers/{id}/snapshots/{name}`, for messages and logs.
    pub fn resource_name(&self) -> String {
        format!("containers/{}/snapshots/{}", self.container, self.name)
    }

    /// Oldest first, the name breaking ties: the order of ListSnapshots, the
    /// key of the store's time index, and the page token (tokens already
    /// handed out hold this format, so it must not change).
    pub fn sort_key(&self) -> String {
        format!("{:020}|{}", self.create_time.timestamp_nanos_opt().unwrap_or(0).max(0), self.name)
    }

    /// Whether `reference` (a name or an alias) designates this snapshot.
    pub fn answers_to(&self, reference: &str) -> bool {
        self.name == reference || self.alias.as_deref() == Some(reference)
    }
}

/// A step the daemon is about to take, written durably before it happens so
/// that start-up recovery can finish or roll it back after a crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Intent {
    /// A snapshot is being made. `freezes` says whether the daemon is about to
    /// freeze `cgroup` (false when someone else had frozen it already).
    Create { container: String, name: String, location: String, cgroup: PathBuf, freezes: bool },
    /// A snapshot is being deleted.
    Delete { container: String, name: String, location: String },
    /// A restore is under way; `step` is the last step begun.
    Restore(RestoreIntent),
    /// A snapshot of every member of a group is being made.
    GroupCreate(GroupCreateIntent),
    /// A group is being restored.
    GroupRestore(GroupRestoreIntent),
}

/// One member's part of a group snapshot being made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateMember {
    pub container: String,
    pub location: String,
    pub cgroup: PathBuf,
    /// Whether the daemon is about to freeze `cgroup`.
    pub freezes: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCreateIntent {
    pub group: String,
    pub name: String,
    pub members: Vec<CreateMember>,
}

/// How far a group restore got: before `Exchanging` it is rolled back,
/// from there on finished (every member swapped), so no member is left
/// restored without the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupRestorePhase {
    /// Members being stopped (in reverse order).
    Stopping,
    /// Writable copies of the targets being made.
    Cloning,
    /// Volumes being swapped with their copies.
    Exchanging,
    /// The old states being recorded as the pre-restore snapshots.
    Recording,
    /// Members being started (in order).
    Starting,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRestoreIntent {
    pub group: String,
    pub target: String,
    pub pre_restore_name: String,
    pub phase: GroupRestorePhase,
    /// Each member's restore, in start order.
    pub members: Vec<RestoreIntent>,
}

impl Intent {
    /// The containers the unfinished operation is about.
    pub fn containers(&self) -> Vec<&str> {
        match self {
            Intent::Create { container, .. } | Intent::Delete { container, .. } => vec![container],
            Intent::Restore(restore) => vec![&restore.container],
            Intent::GroupCreate(create) => create.members.iter().map(|m| m.container.as_str()).collect(),
            Intent::GroupRestore(restore) => restore.members.iter().map(|m| m.container.as_str()).collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreIntent {
    pub container: String,
    pub target: String,
    pub pre_restore_name: String,
    pub volume: PathBuf,
    /// Writable copy of the target, made before the swap.
    pub staging: String,
    /// Uuid of the staging copy, known once it is made: after a crash, the
    /// volume path holding this uuid means the exchange happened.
    pub staging_uuid: String,
    /// Where the current volume goes (the pre-restore snapshot's location).
    pub aside: String,
    pub cgroup: PathBuf,
    pub step: RestoreStep,
    pub request_id: String,
    /// The volume's generation once the exchange is committed, read before
    /// the container starts writing (what `already_restored` compares
    /// with); None until then.
    #[serde(default)]
    pub generation: Option<u64>,
    /// The restore's key, given to its hooks as `ROLLPOINT_RESTORE_ID`: the
    /// request id when the call carried one, else made for this restore.
    #[serde(default)]
    pub restore_id: String,
    /// A group member's `post_restore` hook has run (or there is none to
    /// run), so recovery of the group does not run it again; a single
    /// restore's intent simply ends once its hook has run.
    #[serde(default)]
    pub post_restore_ran: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreStep {
    /// Stopping the container (nothing changed on disk yet).
    Stopping,
    /// Making the writable copy of the target at `staging`.
    Cloning,
    /// Exchanging `staging` and the volume, atomically.
    Exchanging,
    /// Moving the old state to `aside`, read-only, and recording it: after
    /// the start (before it in 0.1.0, whose intents recovery reads alike).
    Recording,
    /// Starting the container again, right after the exchange is committed.
    Starting,
}

/// A bearer token for the TCP listener. Only a keyed hash of its secret is
/// kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub name: String,
    pub scopes: Vec<String>,
    /// Empty: every container.
    pub containers: Vec<String>,
    /// Hex of blake3::keyed_hash(daemon key, secret).
    pub secret_hash: String,
    pub create_time: DateTime<Utc>,
}

/// One entry of the audit timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EventRecord {
    /// Given by the store at append; increasing.
    pub sequence: u64,
    pub time: DateTime<Utc>,
    /// `snapshot.created`, `restore.finished`, `schedule.fired`...
    pub kind: String,
    pub container: String,
    pub snapshot: String,
    pub entry: String,
    /// `uid:0`, `token:ci`, `schedule`, `daemon`.
    pub actor: String,
    /// `ok`, `failed`, `late`, `missed`, `skipped`.
    pub outcome: String,
    pub duration: Option<Duration>,
    pub frozen_for: Option<Duration>,
    pub detail: String,
}

/// A schedule entry: `users/{user}/entries/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRecord {
    pub user: String,
    pub id: String,
    /// As the user wrote it (crontab(5)).
    pub schedule: String,
    /// IANA name.
    pub time_zone: String,
    pub action: EntryAction,
    pub comment: String,
    pub enabled: bool,
    pub create_time: DateTime<Utc>,
    /// The due time of the last fire (on time, late or by RunEntry).
    pub last_fire_time: Option<DateTime<Utc>>,
    /// `ok`, `failed: ...`, `late by 12s`, `missed`, `skipped`.
    pub last_outcome: String,
    /// The scheduler's cursor: the due time of the last occurrence decided
    /// (fired, skipped or missed). Occurrences after it are still to come.
    #[serde(default)]
    pub cursor: Option<DateTime<Utc>>,
    /// Each firing comes up to this much after the schedule's time, by an
    /// amount fixed per entry (see `engine::entries::entry_schedule`).
    #[serde(default)]
    pub random_delay_seconds: u32,
    /// The container a command entry is bound to (its runs get `SNAP_URL`
    /// and a credential for its snapshots); empty: none. A snapshot entry's
    /// container is in its action.
    #[serde(default)]
    pub container: String,
    /// Variables the entry's command gets, like a crontab's `NAME=value`
    /// lines (checked by `engine::run_grants::check_environment`).
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
}

impl EntryRecord {
    pub fn resource_name(&self) -> String {
        format!("users/{}/entries/{}", self.user, self.id)
    }

    /// The container a snapshot entry is about, or the one a command entry
    /// is bound to; empty for a command entry of no container.
    pub fn container(&self) -> &str {
        match &self.action {
            EntryAction::Snapshot { container, .. } => container,
            EntryAction::Command { .. } => &self.container,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EntryAction {
    Snapshot {
        container: String,
        alias: String,
        expiry_days: u32,
        /// A remote each snapshot is exported to once it lands; empty: none.
        #[serde(default)]
        export_to: String,
        /// Set instead of `container`: a group snapshot of this group.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        group: String,
    },
    Command {
        command: String,
        timeout: Duration,
    },
}
