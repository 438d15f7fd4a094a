//! What the CLI shows: API messages turned into plain structs, serialized as
//! they are for --json and formatted by `output` for people. Field names are
//! part of the CLI's contract with scripts: timestamps are RFC 3339 (UTC),
//! durations are float milliseconds in keys ending in `_ms`, "none" is null.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::api::proto;

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SnapshotView {
    pub name: String,
    pub container: String,
    pub resource_name: String,
    /// Null when the snapshot has no alias.
    pub alias: Option<String>,
    pub create_time: Option<DateTime<Utc>>,
    /// Null when the snapshot never expires.
    pub expire_time: Option<DateTime<Utc>>,
    pub frozen_for_ms: f64,
    pub duration_ms: f64,
    /// ready, creating, deleting, lost or unspecified.
    pub state: &'static str,
    /// api, schedule, pre-restore or unspecified.
    pub origin: &'static str,
    pub read_only: bool,
    pub location: String,
    pub uuid: String,
    pub comment: String,
    /// Bytes only this snapshot holds; null when not known (listings, btrfs:
    /// the daemon fills them in for `snapshot show` on LVM only).
    pub exclusive_bytes: Option<u64>,
    /// Bytes of file data written since `delta_parent` (the previous
    /// snapshot; null for the first); null while not measured.
    pub delta_bytes: Option<u64>,
    pub delta_parent: Option<String>,
    /// Set while the snapshot is held: never expired, pruned or deleted.
    pub hold: Option<HoldView>,
    /// The group it was taken with (at one instant with the other members').
    pub group: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct HoldView {
    pub reason: String,
    pub actor: String,
    pub time: Option<DateTime<Utc>>,
}

impl From<proto::Snapshot> for SnapshotView {
    fn from(snapshot: proto::Snapshot) -> SnapshotView {
        SnapshotView {
            state: state_word(snapshot.state()),
            origin: origin_word(snapshot.origin()),
            alias: non_empty(snapshot.alias),
            create_time: snapshot.create_time.and_then(time),
            expire_time: snapshot.expire_time.and_then(time),
            frozen_for_ms: millis(snapshot.frozen_for),
            duration_ms: millis(snapshot.duration),
            name: snapshot.name,
            container: snapshot.container,
            resource_name: snapshot.resource_name,
            read_only: snapshot.read_only,
            location: snapshot.location,
            uuid: snapshot.uuid,
            comment: snapshot.comment,
            exclusive_bytes: Some(snapshot.exclusive_bytes).filter(|bytes| *bytes > 0),
            delta_bytes: snapshot.delta_bytes,
            delta_parent: Some(snapshot.delta_parent).filter(|parent| !parent.is_empty()),
            hold: snapshot.hold.map(|hold| HoldView {
                reason: hold.reason,
                actor: hold.actor,
                time: hold.time.and_then(time),
            }),
            group: non_empty(snapshot.group),
        }
    }
}

/// A group and its members, in start order.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct GroupView {
    pub name: String,
    pub members: Vec<String>,
}

/// The v1 replies that wrap one resource read as that resource.
macro_rules! view_of_reply {
    ($($reply:ident . $field:ident => $view:ident),* $(,)?) => {$(
        impl From<proto::$reply> for $view {
            fn from(reply: proto::$reply) -> $view {
                reply.$field.unwrap_or_default().into()
            }
        }
    )*};
}

view_of_reply! {
    SetGroupResponse.group => GroupView,
    GetGroupResponse.group => GroupView,
    GetStatusResponse.status => StatusView,
    CreateEntryResponse.entry => EntryView,
    GetEntryResponse.entry => EntryView,
    UpdateEntryResponse.entry => EntryView,
}

impl From<proto::Group> for GroupView {
    fn from(group: proto::Group) -> GroupView {
        GroupView { name: group.name, members: group.members }
    }
}

/// A group snapshot: one snapshot per member, of one instant.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct GroupSnapshotView {
    pub group: String,
    pub snapshots: Vec<SnapshotView>,
}

/// What a group restore did.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct GroupRestoreView {
    pub group: String,
    pub snapshot: String,
    /// Restore this one to undo.
    pub pre_restore_snapshot: String,
    pub members: Vec<String>,
    pub total_ms: f64,
    pub downtime_ms: f64,
}

impl From<proto::RestoreGroupResponse> for GroupRestoreView {
    fn from(reply: proto::RestoreGroupResponse) -> GroupRestoreView {
        GroupRestoreView {
            total_ms: millis(reply.total),
            downtime_ms: millis(reply.downtime),
            group: reply.group,
            snapshot: reply.snapshot,
            pre_restore_snapshot: reply.pre_restore_snapshot,
            members: reply.members,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ContainerView {
    pub id: String,
    pub cgroup: String,
    pub subvolume: String,
    pub backend: String,
    pub snapshot_dir: String,
    pub lifecycle: LifecycleView,
    pub labels: BTreeMap<String, String>,
    pub create_time: Option<DateTime<Utc>>,
    pub snapshot_count: u32,
    /// By moment (`pre_freeze`, `hold`, ...); absent when there are none.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub hooks: BTreeMap<String, HookView>,
    /// The retention in force, as rules (`last=3,daily=7,min=2`; `none`).
    pub retention: String,
    pub pre_restore_retention: String,
    /// Whether those are the container's own (else the daemon's default).
    pub own_retention: bool,
    /// The group it is a member of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Where discovery found it; absent when it was registered by hand.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovered: Option<DiscoveryView>,
}

/// The manager a container was found in.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DiscoveryView {
    /// `machined` or `podman`.
    pub source: String,
    /// The manager's name for it.
    pub name: String,
    /// Set while the manager no longer lists it (its snapshots are kept).
    pub vanish_time: Option<DateTime<Utc>>,
}

/// What `rollpoint discover` found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiscoverView {
    pub containers: Vec<DiscoveredView>,
    /// Managers that could not be asked, and why.
    pub unavailable: Vec<UnavailableView>,
    /// Whether registering was asked.
    pub register: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnavailableView {
    pub source: String,
    pub reason: String,
}

/// A found container: what its manager says, and whether it can be registered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiscoveredView {
    pub source: String,
    pub name: String,
    pub suggested_id: String,
    pub running: bool,
    pub cgroup: Option<String>,
    pub volumes: Vec<String>,
    /// The volume it is (or would be) registered with.
    pub volume: Option<String>,
    pub lifecycle: LifecycleView,
    /// The registered container it is.
    pub registered_as: Option<String>,
    /// Why it cannot be registered as it is.
    pub problem: Option<String>,
    pub registered_now: bool,
    pub register_error: Option<String>,
}

impl From<proto::DiscoverContainersResponse> for DiscoverView {
    fn from(response: proto::DiscoverContainersResponse) -> DiscoverView {
        let some = |text: String| (!text.is_empty()).then_some(text);
        DiscoverView {
            register: false,
            unavailable: response
                .unavailable
                .into_iter()
                .map(|u| UnavailableView { source: u.source, reason: u.reason })
                .collect(),
            containers: response
                .containers
                .into_iter()
                .map(|c| DiscoveredView {
                    source: c.source,
                    name: c.name,
                    suggested_id: c.suggested_id,
                    running: c.running,
                    cgroup: some(c.cgroup),
                    volumes: c.volumes,
                    volume: some(c.volume),
                    lifecycle: LifecycleView::from(c.lifecycle),
                    registered_as: some(c.registered_as),
                    problem: some(c.problem),
                    registered_now: c.registered_now,
                    register_error: some(c.register_error),
                })
                .collect(),
        }
    }
}

/// A hook: argv run inside the container, as `user`, within the timeout.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct HookView {
    pub command: Vec<String>,
    pub user: String,
    pub timeout_seconds: u32,
    /// `abort` or `continue`.
    pub on_failure: String,
}

impl HookView {
    fn all(hooks: Option<proto::Hooks>) -> BTreeMap<String, HookView> {
        let Some(hooks) = hooks else { return BTreeMap::new() };
        [
            ("pre_freeze", hooks.pre_freeze),
            ("hold", hooks.hold),
            ("post_thaw", hooks.post_thaw),
            ("pre_restore", hooks.pre_restore),
            ("post_restore", hooks.post_restore),
        ]
        .into_iter()
        .filter_map(|(point, hook)| {
            let hook = hook?;
            let on_failure = match proto::HookFailure::try_from(hook.on_failure) {
                Ok(proto::HookFailure::Continue) => "continue",
                _ => "abort",
            };
            Some((
                point.to_owned(),
                HookView {
                    command: hook.command,
                    user: hook.user,
                    timeout_seconds: hook.timeout_seconds,
                    on_failure: on_failure.into(),
                },
            ))
        })
        .collect()
    }
}

impl From<proto::Container> for ContainerView {
    fn from(container: proto::Container) -> ContainerView {
        ContainerView {
            hooks: HookView::all(container.hooks),
            retention: policy_text(container.retention),
            pre_restore_retention: policy_text(container.pre_restore_retention),
            own_retention: container.own_retention,
            group: non_empty(container.group),
            discovered: container.discovered.map(|d| DiscoveryView {
                source: d.source,
                name: d.name,
                vanish_time: d.vanish_time.and_then(time),
            }),
            lifecycle: LifecycleView::from(container.lifecycle),
            labels: container.labels.into_iter().collect(),
            create_time: container.create_time.and_then(time),
            id: container.id,
            cgroup: container.cgroup,
            subvolume: container.subvolume,
            backend: container.backend,
            snapshot_dir: container.snapshot_dir,
            snapshot_count: container.snapshot_count,
        }
    }
}

/// `{"kind": "none"}`, `{"kind": "command", "stop": [...], ...}` or
/// `{"kind": "systemd", "unit": ..., ...}`; also what `POST
/// /api/v1/containers` takes (`timeout_seconds` 0 or absent: 30 s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum LifecycleView {
    None,
    Command {
        stop: Vec<String>,
        start: Vec<String>,
        #[serde(default)]
        timeout_seconds: u32,
    },
    Systemd {
        unit: String,
        #[serde(default)]
        timeout_seconds: u32,
    },
    Podman {
        container: String,
        #[serde(default)]
        command: Vec<String>,
        #[serde(default)]
        timeout_seconds: u32,
    },
}

impl From<LifecycleView> for proto::Lifecycle {
    fn from(view: LifecycleView) -> proto::Lifecycle {
        use proto::lifecycle::Kind;
        let kind = match view {
            LifecycleView::None => Kind::None(proto::NoLifecycle {}),
            LifecycleView::Command { stop, start, timeout_seconds } => {
                Kind::Command(proto::CommandLifecycle { stop, start, timeout_seconds })
            }
            LifecycleView::Systemd { unit, timeout_seconds } => {
                Kind::Systemd(proto::SystemdLifecycle { unit, timeout_seconds })
            }
            LifecycleView::Podman { container, command, timeout_seconds } => {
                Kind::Podman(proto::PodmanLifecycle { container, command, timeout_seconds })
            }
        };
        proto::Lifecycle { kind: Some(kind) }
    }
}

impl From<Option<proto::Lifecycle>> for LifecycleView {
    fn from(lifecycle: Option<proto::Lifecycle>) -> LifecycleView {
        use proto::lifecycle::Kind;
        match lifecycle.and_then(|lifecycle| lifecycle.kind) {
            None | Some(Kind::None(_)) => LifecycleView::None,
            Some(Kind::Command(command)) => LifecycleView::Command {
                stop: command.stop,
                start: command.start,
                timeout_seconds: command.timeout_seconds,
            },
            Some(Kind::Systemd(systemd)) => {
                LifecycleView::Systemd { unit: systemd.unit, timeout_seconds: systemd.timeout_seconds }
            }
            Some(Kind::Podman(podman)) => LifecycleView::Podman {
                container: podman.container,
                command: podman.command,
                timeout_seconds: podman.timeout_seconds,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RestoreView {
    pub container: String,
    pub restored: Option<SnapshotView>,
    /// Restore this one to undo; null when nothing was done.
    pub pre_restore_snapshot: Option<String>,
    pub already_restored: bool,
    pub total_ms: f64,
    pub downtime_ms: f64,
    pub daemon_time_ms: f64,
    /// Always every step, in JSON too: only the text for people leaves them
    /// out when they were already printed live (`steps_shown_live`).
    pub steps: Vec<StepView>,
    /// The steps went to stderr as they happened: the text need not list them.
    #[serde(skip)]
    pub steps_shown_live: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StepView {
    pub name: String,
    pub took_ms: f64,
}

impl RestoreView {
    pub fn new(container: &str, response: proto::RestoreSnapshotResponse) -> RestoreView {
        RestoreView {
            container: container.to_owned(),
            restored: response.restored.map(SnapshotView::from),
            pre_restore_snapshot: non_empty(response.pre_restore_snapshot),
            already_restored: response.already_restored,
            total_ms: millis(response.total),
            downtime_ms: millis(response.downtime),
            daemon_time_ms: millis(response.daemon_time),
            steps: response
                .steps
                .into_iter()
                .map(|step| StepView { took_ms: millis(step.took), name: step.name })
                .collect(),
            steps_shown_live: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct UnregisterView {
    pub id: String,
    pub snapshots_deleted: u32,
}

/// A list: a JSON array, a table for people.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct ListView<T>(pub Vec<T>);

/// What `snapshot delete` prints: the snapshot as it was.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct DeletedView(pub SnapshotView);

/// A token, never with its secret.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub name: String,
    pub scopes: Vec<String>,
    /// Empty: every container.
    pub containers: Vec<String>,
    pub create_time: Option<DateTime<Utc>>,
}

impl From<proto::Token> for TokenView {
    fn from(token: proto::Token) -> TokenView {
        TokenView {
            create_time: token.create_time.and_then(time),
            name: token.name,
            scopes: token.scopes,
            containers: token.containers,
        }
    }
}

/// What `token create` prints: the token and, this once, its secret.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TokenCreatedView {
    #[serde(flatten)]
    pub token: TokenView,
    pub secret: String,
    /// The daemon's address when reached over TCP, for the usage lines.
    #[serde(skip)]
    pub endpoint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RevokedTokenView {
    pub name: String,
}

/// One event of the audit timeline.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct EventView {
    pub sequence: u64,
    pub time: Option<DateTime<Utc>>,
    pub kind: String,
    pub container: Option<String>,
    pub snapshot: Option<String>,
    /// Schedule entry, users/{user}/entries/{id}.
    pub entry: Option<String>,
    /// uid:N, token:NAME, schedule or daemon.
    pub actor: Option<String>,
    /// ok, failed, late, missed or skipped.
    pub outcome: String,
    /// Null when the event has no duration.
    pub duration_ms: Option<f64>,
    /// Null when nothing was frozen.
    pub frozen_for_ms: Option<f64>,
    pub detail: Option<String>,
}

impl From<proto::Event> for EventView {
    fn from(event: proto::Event) -> EventView {
        EventView {
            sequence: event.sequence,
            time: event.time.and_then(time),
            kind: event.kind,
            container: non_empty(event.container),
            snapshot: non_empty(event.snapshot),
            entry: non_empty(event.entry),
            actor: non_empty(event.actor),
            outcome: event.outcome,
            duration_ms: event.duration.map(|duration| millis(Some(duration))),
            frozen_for_ms: event.frozen_for.map(|frozen_for| millis(Some(frozen_for))),
            detail: non_empty(event.detail),
        }
    }
}

/// `rollpoint status`: the daemon now.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StatusView {
    pub version: String,
    pub host: String,
    pub start_time: Option<DateTime<Utc>>,
    pub ready: bool,
    pub containers: u32,
    pub snapshots: u32,
    pub schedule_entries: u32,
    /// Per kind of call (read, change): waiting, running, and the bounds.
    pub admission: Vec<AdmissionView>,
    /// The run listener ($SNAP_URL); null when off.
    pub run_listener: Option<String>,
    pub runs_in_progress: u32,
    /// Snapshot volumes on disk that no record knows (found at start; left
    /// in place; `rollpoint recover` re-creates their records).
    pub unrecorded_snapshot_volumes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AdmissionView {
    pub kind: String,
    pub queued: u32,
    pub in_flight: u32,
    pub max_in_flight: u32,
    pub max_queued: u32,
}

impl From<proto::DaemonStatus> for StatusView {
    fn from(status: proto::DaemonStatus) -> StatusView {
        StatusView {
            version: status.version,
            host: status.host,
            start_time: status.start_time.and_then(time),
            ready: status.ready,
            containers: status.containers,
            snapshots: status.snapshots,
            schedule_entries: status.schedule_entries,
            admission: status
                .admission
                .into_iter()
                .map(|load| AdmissionView {
                    kind: load.kind,
                    queued: load.queued,
                    in_flight: load.in_flight,
                    max_in_flight: load.max_in_flight,
                    max_queued: load.max_queued,
                })
                .collect(),
            run_listener: non_empty(status.run_listener),
            runs_in_progress: status.runs_in_progress,
            unrecorded_snapshot_volumes: status.unrecorded_snapshot_volumes,
        }
    }
}

/// What `rollpoint restore-files` did.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FilesRestoredView {
    pub paths: Vec<String>,
    /// The snapshot taken just before (restore it to undo); null with --to.
    pub pre_restore_snapshot: Option<String>,
    /// The container's volume, or the --to folder.
    pub written_to: String,
}

impl From<proto::RestoreFilesResponse> for FilesRestoredView {
    fn from(reply: proto::RestoreFilesResponse) -> FilesRestoredView {
        FilesRestoredView {
            paths: reply.paths,
            pre_restore_snapshot: non_empty(reply.pre_restore_snapshot),
            written_to: reply.written_to,
        }
    }
}

/// One path of `rollpoint diff`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PathDiffView {
    /// added, changed, metadata, deleted or renamed.
    pub change: String,
    pub path: String,
    /// Where a renamed path was.
    pub renamed_from: Option<String>,
    /// A new hard link: the path it shares its file with.
    pub link_to: Option<String>,
    pub data_changed: bool,
    /// Bytes of file data written in between.
    pub changed_bytes: u64,
    /// In the newer snapshot (the older one for a deleted path).
    pub size: Option<u64>,
}

impl From<proto::PathDiff> for PathDiffView {
    fn from(diff: proto::PathDiff) -> PathDiffView {
        PathDiffView {
            change: diff.kind,
            path: diff.path,
            renamed_from: non_empty(diff.renamed_from),
            link_to: non_empty(diff.link_to),
            data_changed: diff.data_changed,
            changed_bytes: diff.changed_bytes,
            size: diff.size,
        }
    }
}

/// A schedule entry.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct EntryView {
    /// users/{user}/entries/{id}.
    pub name: String,
    pub id: String,
    pub schedule: String,
    pub time_zone: String,
    pub action: ActionView,
    pub comment: Option<String>,
    pub enabled: bool,
    pub last_fire_time: Option<DateTime<Utc>>,
    /// Null when disabled.
    pub next_fire_time: Option<DateTime<Utc>>,
    /// Null before the first firing.
    pub last_outcome: Option<String>,
    /// Each firing comes up to this much after the schedule's time.
    pub random_delay_seconds: u32,
    /// The container the entry is about: a snapshot entry's, or the one a
    /// command entry is bound to (its runs get `SNAP_URL`); null: none.
    pub container: Option<String>,
    /// Variables the command gets.
    pub environment: BTreeMap<String, String>,
}

impl From<proto::Entry> for EntryView {
    fn from(entry: proto::Entry) -> EntryView {
        EntryView {
            action: ActionView::from(entry.action),
            comment: non_empty(entry.comment),
            last_fire_time: entry.last_fire_time.and_then(time),
            next_fire_time: entry.next_fire_time.and_then(time),
            last_outcome: non_empty(entry.last_outcome),
            name: entry.name,
            id: entry.id,
            schedule: entry.schedule,
            time_zone: entry.time_zone,
            enabled: entry.enabled.unwrap_or(true),
            random_delay_seconds: entry.random_delay_seconds,
            container: non_empty(entry.container),
            environment: entry.environment,
        }
    }
}

/// `{"kind": "snapshot", "container": ..., "alias": ..., "expiry_days": ...}`
/// (expiry_days 0: never), `{"kind": "command", "command": ..., "timeout_seconds": ...}`
/// (0: the default) or `{"kind": "none"}`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ActionView {
    None,
    Snapshot {
        container: String,
        alias: Option<String>,
        expiry_days: u32,
        export_to: Option<String>,
        /// Set for a group snapshot (then `container` is empty).
        #[serde(skip_serializing_if = "Option::is_none")]
        group: Option<String>,
    },
    Command {
        command: String,
        timeout_seconds: u32,
    },
}

impl From<Option<proto::entry::Action>> for ActionView {
    fn from(action: Option<proto::entry::Action>) -> ActionView {
        use proto::entry::Action;
        match action {
            None => ActionView::None,
            Some(Action::Snapshot(snapshot)) => ActionView::Snapshot {
                container: snapshot.container,
                alias: non_empty(snapshot.alias),
                expiry_days: snapshot.expiry_days,
                export_to: non_empty(snapshot.export_to),
                group: non_empty(snapshot.group),
            },
            Some(Action::Command(command)) => {
                ActionView::Command { command: command.command, timeout_seconds: command.timeout_seconds }
            }
        }
    }
}

/// What `schedule run` prints.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RunView {
    pub entry: EntryView,
    /// ok or failed.
    pub outcome: String,
    pub detail: Option<String>,
    /// The snapshot taken; null for a command, or when none was taken.
    pub snapshot: Option<SnapshotView>,
}

impl RunView {
    pub fn new(name: &str, response: proto::RunEntryResponse) -> RunView {
        let entry = response.entry.unwrap_or_else(|| proto::Entry { name: name.to_owned(), ..Default::default() });
        RunView {
            entry: EntryView::from(entry),
            outcome: response.outcome,
            detail: non_empty(response.detail),
            snapshot: response.snapshot.map(SnapshotView::from),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeletedEntryView {
    pub name: String,
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

fn time(timestamp: prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(timestamp.seconds, u32::try_from(timestamp.nanos).ok()?)
}

fn millis(duration: Option<prost_types::Duration>) -> f64 {
    // Lossy above 2^53 ns (104 days): far beyond any freeze or restore.
    #[allow(clippy::cast_precision_loss)]
    duration.map_or(0.0, |d| d.seconds as f64 * 1e3 + f64::from(d.nanos) / 1e6)
}

fn state_word(state: proto::SnapshotState) -> &'static str {
    match state {
        proto::SnapshotState::Unspecified => "unspecified",
        proto::SnapshotState::Creating => "creating",
        proto::SnapshotState::Ready => "ready",
        proto::SnapshotState::Deleting => "deleting",
        proto::SnapshotState::Lost => "lost",
    }
}

fn origin_word(origin: proto::SnapshotOrigin) -> &'static str {
    match origin {
        proto::SnapshotOrigin::Unspecified => "unspecified",
        proto::SnapshotOrigin::Api => "api",
        proto::SnapshotOrigin::Schedule => "schedule",
        proto::SnapshotOrigin::PreRestore => "pre-restore",
        proto::SnapshotOrigin::Import => "import",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample_snapshot() -> proto::Snapshot {
        proto::Snapshot {
            name: "snap-2026-05-04".into(),
            container: "db-1".into(),
            alias: "rollback-point".into(),
            create_time: Some(prost_types::Timestamp { seconds: 1_777_888_800, nanos: 500_000_000 }),
            expire_time: None,
            frozen_for: Some(prost_types::Duration { seconds: 0, nanos: 3_250_000 }),
            duration: Some(prost_types::Duration { seconds: 1, nanos: 500_000_000 }),
            state: proto::SnapshotState::Ready as i32,
            origin: proto::SnapshotOrigin::PreRestore as i32,
            read_only: true,
            location: "/srv/.snapshots/db-1/snap-2026-05-04".into(),
            uuid: "0b3c".into(),
            resource_name: "containers/db-1/snapshots/snap-2026-05-04".into(),
            comment: String::new(),
            exclusive_bytes: 0,
            delta_bytes: None,
            delta_parent: String::new(),
            hold: None,
            group: String::new(),
        }
    }

    #[test]
    fn snapshot_json_uses_rfc3339_and_milliseconds() {
        let json = serde_json::to_value(SnapshotView::from(sample_snapshot())).unwrap();
        assert_eq!(json["name"], "snap-2026-05-04");
        assert_eq!(json["alias"], "rollback-point");
        assert_eq!(json["create_time"], "2026-05-04T10:00:00.500Z");
        assert_eq!(json["expire_time"], serde_json::Value::Null);
        assert_eq!(json["frozen_for_ms"], 3.25);
        assert_eq!(json["duration_ms"], 1500.0);
        assert_eq!(json["state"], "ready");
        assert_eq!(json["origin"], "pre-restore");
        assert_eq!(json["read_only"], true);
        assert_eq!(json["exclusive_bytes"], serde_json::Value::Null, "0: not known");
        let known = proto::Snapshot { exclusive_bytes: 4_194_304, ..sample_snapshot() };
        assert_eq!(serde_json::to_value(SnapshotView::from(known)).unwrap()["exclusive_bytes"], 4_194_304);
    }

    #[test]
    fn empty_alias_is_null() {
        let snapshot = proto::Snapshot { alias: String::new(), ..sample_snapshot() };
        let json = serde_json::to_value(SnapshotView::from(snapshot)).unwrap();
        assert_eq!(json["alias"], serde_json::Value::Null);
    }

    #[test]
    fn lifecycle_json_is_tagged_by_kind() {
        let none = serde_json::to_value(LifecycleView::from(None)).unwrap();
        assert_eq!(none, serde_json::json!({"kind": "none"}));
        let systemd = LifecycleView::from(Some(proto::Lifecycle {
            kind: Some(proto::lifecycle::Kind::Systemd(proto::SystemdLifecycle {
                unit: "db.service".into(),
                timeout_seconds: 0,
            })),
        }));
        assert_eq!(
            serde_json::to_value(systemd).unwrap(),
            serde_json::json!({"kind": "systemd", "unit": "db.service", "timeout_seconds": 0})
        );
    }

    #[test]
    fn event_json_has_nulls_for_what_is_absent() {
        let event = proto::Event {
            sequence: 42,
            time: Some(prost_types::Timestamp { seconds: 1_777_863_308, nanos: 104_000_000 }),
            kind: "snapshot.created".into(),
            container: "db-1".into(),
            snapshot: "snap-2026-05-04".into(),
            entry: "users/root/entries/pre-migration".into(),
            actor: "schedule".into(),
            outcome: "ok".into(),
            duration: Some(prost_types::Duration { seconds: 8, nanos: 102_000_000 }),
            frozen_for: None,
            detail: String::new(),
        };
        assert_eq!(
            serde_json::to_value(EventView::from(event)).unwrap(),
            serde_json::json!({
                "sequence": 42,
                "time": "2026-05-04T02:55:08.104Z",
                "kind": "snapshot.created",
                "container": "db-1",
                "snapshot": "snap-2026-05-04",
                "entry": "users/root/entries/pre-migration",
                "actor": "schedule",
                "outcome": "ok",
                "duration_ms": 8102.0,
                "frozen_for_ms": null,
                "detail": null,
            })
        );
    }

    #[test]
    fn entry_action_json_is_tagged_by_kind() {
        let entry = proto::Entry {
            action: Some(proto::entry::Action::Snapshot(proto::SnapshotAction {
                container: "db-1".into(),
                alias: String::new(),
                expiry_days: 7,
                export_to: String::new(),
                group: String::new(),
            })),
            ..Default::default()
        };
        let json = serde_json::to_value(EntryView::from(entry)).unwrap();
        assert_eq!(
            json["action"],
            serde_json::json!({"kind": "snapshot", "container": "db-1", "alias": null, "expiry_days": 7, "export_to": null})
        );
        assert_eq!(json["next_fire_time"], serde_json::Value::Null);
        assert_eq!(json["last_outcome"], serde_json::Value::Null);
    }

    #[test]
    fn list_is_a_json_array() {
        let list = ListView(vec![SnapshotView::from(sample_snapshot())]);
        assert!(serde_json::to_value(list).unwrap().is_array());
    }
}

/// What a retention pass did or (dry run) would do.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PruneView {
    pub dry_run: bool,
    pub decisions: Vec<PruneDecisionView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PruneDecisionView {
    pub container: String,
    pub snapshot: String,
    pub create_time: Option<DateTime<Utc>>,
    /// `keep` or `delete`.
    pub verdict: &'static str,
    pub reasons: Vec<String>,
    pub deleted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<proto::PruneDecision> for PruneDecisionView {
    fn from(decision: proto::PruneDecision) -> PruneDecisionView {
        PruneDecisionView {
            create_time: decision.create_time.and_then(time),
            verdict: if decision.keep { "keep" } else { "delete" },
            container: decision.container,
            snapshot: decision.snapshot,
            reasons: decision.reasons,
            deleted: decision.deleted,
            error: non_empty(decision.error),
        }
    }
}

/// A policy as its rules, the form `container update --retention` takes.
fn policy_text(policy: Option<proto::RetentionPolicy>) -> String {
    crate::api::convert::policy_from_proto(policy.unwrap_or_default()).to_string()
}

/// Where a snapshot was mounted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MountView {
    pub path: String,
    pub snapshot: SnapshotView,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnmountView {
    pub path: String,
    pub snapshot: String,
}
