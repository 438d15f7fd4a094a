//! The engine's views (`engine::views`) to messages of the API, and back.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::proto;
use crate::engine::discovery::Candidate;
use crate::engine::views::{
    ContainerRecord, EntryAction, EntryRecord, EventRecord, HookSpec, Hooks, LifecycleSpec, OnFailure, RetentionPolicy,
    SnapshotOrigin, SnapshotRecord, SnapshotState,
};
use crate::engine::{EngineError, EngineResult, RestoreOutcome};

use crate::lifecycle::DEFAULT_PODMAN;

/// Default timeout of lifecycle commands and units.
pub const DEFAULT_LIFECYCLE_TIMEOUT: Duration = Duration::from_secs(30);

pub fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

pub fn duration(duration: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(duration.subsec_nanos()).unwrap_or(0),
    }
}

/// A snapshot as listings and every reply but GetSnapshot show it: its
/// exclusive bytes only as measured in the background (a backend call each
/// otherwise).
pub fn snapshot(record: &SnapshotRecord) -> proto::Snapshot {
    snapshot_with_exclusive_bytes(record, None)
}

/// A snapshot with its exclusive bytes where the backend told them.
pub fn snapshot_with_exclusive_bytes(record: &SnapshotRecord, exclusive_bytes: Option<u64>) -> proto::Snapshot {
    proto::Snapshot {
        name: record.name.clone(),
        container: record.container.clone(),
        alias: record.alias.clone().unwrap_or_default(),
        create_time: Some(timestamp(record.create_time)),
        expire_time: record.expire_time.map(timestamp),
        frozen_for: Some(duration(record.frozen_for)),
        duration: Some(duration(record.duration)),
        state: match record.state {
            SnapshotState::Ready => proto::SnapshotState::Ready,
            SnapshotState::Deleting => proto::SnapshotState::Deleting,
            SnapshotState::Lost => proto::SnapshotState::Lost,
        } as i32,
        origin: match record.origin {
            SnapshotOrigin::Api => proto::SnapshotOrigin::Api,
            SnapshotOrigin::Schedule { .. } => proto::SnapshotOrigin::Schedule,
            SnapshotOrigin::PreRestore => proto::SnapshotOrigin::PreRestore,
            SnapshotOrigin::Import { .. } => proto::SnapshotOrigin::Import,
        } as i32,
        read_only: record.read_only,
        location: record.location.clone(),
        uuid: record.uuid.clone(),
        resource_name: record.resource_name(),
        comment: record.comment.clone(),
        exclusive_bytes: exclusive_bytes.or(record.sizes.as_ref().and_then(|s| s.exclusive_bytes)).unwrap_or(0),
        delta_bytes: record.sizes.as_ref().map(|s| s.delta_bytes),
        delta_parent: record.sizes.as_ref().and_then(|s| s.delta_parent.clone()).unwrap_or_default(),
        hold: record.hold.as_ref().map(|hold| proto::SnapshotHold {
            reason: hold.reason.clone(),
            actor: hold.actor.clone(),
            time: Some(timestamp(hold.time)),
        }),
        group: record.group.clone().unwrap_or_default(),
    }
}

/// A container, with the retention policies in force for it.
pub fn container(
    record: &ContainerRecord,
    snapshot_count: usize,
    policies: (RetentionPolicy, RetentionPolicy),
) -> proto::Container {
    proto::Container {
        id: record.id.clone(),
        cgroup: record.cgroup.display().to_string(),
        subvolume: record.volume.display().to_string(),
        backend: record.backend.clone(),
        snapshot_dir: record.snapshot_dir.display().to_string(),
        lifecycle: Some(lifecycle_to_proto(&record.lifecycle)),
        labels: record.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        create_time: Some(timestamp(record.create_time)),
        snapshot_count: u32::try_from(snapshot_count).unwrap_or(u32::MAX),
        hooks: (!record.hooks.is_empty()).then(|| hooks_to_proto(&record.hooks)),
        retention: Some(policy_to_proto(policies.0)),
        pre_restore_retention: Some(policy_to_proto(policies.1)),
        own_retention: !record.retention.is_default(),
        discovered: record.discovered.as_ref().map(|d| proto::Discovery {
            source: d.source.clone(),
            name: d.name.clone(),
            vanish_time: d.vanish_time.map(timestamp),
        }),
        group: record.group.as_ref().map(|g| g.name.clone()).unwrap_or_default(),
    }
}

/// A found container, judged; `registration` says what registering it did.
pub fn discovered(
    candidate: &Candidate,
    registration: Option<&EngineResult<ContainerRecord>>,
) -> proto::DiscoveredContainer {
    let found = &candidate.found;
    let path = |p: &std::path::PathBuf| p.display().to_string();
    let registered_now = registration.and_then(|r| r.as_ref().ok()).map(|record| record.id.clone());
    proto::DiscoveredContainer {
        source: found.source.as_str().to_owned(),
        name: found.name.clone(),
        suggested_id: found.suggested_id.clone(),
        running: found.running,
        cgroup: found.cgroup.clone().unwrap_or_default(),
        volumes: found.volumes.iter().map(path).collect(),
        volume: candidate.volume.as_ref().map(path).unwrap_or_default(),
        lifecycle: Some(lifecycle_to_proto(&found.lifecycle)),
        registered_now: registered_now.is_some(),
        registered_as: registered_now.or_else(|| candidate.registered_as.clone()).unwrap_or_default(),
        problem: candidate.problem.clone().unwrap_or_default(),
        register_error: registration.and_then(|r| r.as_ref().err()).map(ToString::to_string).unwrap_or_default(),
    }
}

pub fn policy_to_proto(policy: RetentionPolicy) -> proto::RetentionPolicy {
    let RetentionPolicy { last, hourly, daily, weekly, monthly, yearly, min } = policy;
    proto::RetentionPolicy { last, hourly, daily, weekly, monthly, yearly, min }
}

pub fn policy_from_proto(policy: proto::RetentionPolicy) -> RetentionPolicy {
    let proto::RetentionPolicy { last, hourly, daily, weekly, monthly, yearly, min } = policy;
    RetentionPolicy { last, hourly, daily, weekly, monthly, yearly, min }
}

/// One snapshot's fate in a retention pass.
pub fn pruned(pruned: &crate::engine::prune::Pruned) -> proto::PruneDecision {
    use crate::engine::retention::Verdict;
    let (keep, reasons) = match &pruned.decision.verdict {
        Verdict::Keep(reasons) => (true, reasons.iter().map(ToString::to_string).collect()),
        Verdict::Drop(why) => (false, vec![why.to_string()]),
    };
    proto::PruneDecision {
        container: pruned.container.clone(),
        snapshot: pruned.decision.name.clone(),
        create_time: Some(timestamp(pruned.decision.create_time)),
        keep,
        reasons,
        deleted: pruned.deleted.is_some(),
        error: pruned.error.clone().unwrap_or_default(),
    }
}

fn hooks_to_proto(hooks: &Hooks) -> proto::Hooks {
    let hook = |spec: &Option<HookSpec>| {
        spec.as_ref().map(|spec| proto::Hook {
            command: spec.command.clone(),
            user: spec.user.clone(),
            timeout_seconds: u32::try_from(spec.timeout.as_secs()).unwrap_or(u32::MAX),
            on_failure: match spec.on_failure {
                OnFailure::Abort => proto::HookFailure::Abort,
                OnFailure::Continue => proto::HookFailure::Continue,
            } as i32,
        })
    };
    proto::Hooks {
        pre_freeze: hook(&hooks.pre_freeze),
        post_thaw: hook(&hooks.post_thaw),
        pre_restore: hook(&hooks.pre_restore),
        post_restore: hook(&hooks.post_restore),
        hold: hook(&hooks.hold),
    }
}

/// The hooks of a request; none given means none. A timeout of 0 is the
/// default; the engine checks the rest.
pub fn hooks_from_proto(hooks: Option<proto::Hooks>) -> Result<Hooks, EngineError> {
    let Some(hooks) = hooks else { return Ok(Hooks::default()) };
    let hook = |hook: Option<proto::Hook>| -> Result<Option<HookSpec>, EngineError> {
        let Some(hook) = hook else { return Ok(None) };
        let on_failure = match proto::HookFailure::try_from(hook.on_failure) {
            Ok(proto::HookFailure::Abort) => OnFailure::Abort,
            Ok(proto::HookFailure::Continue) => OnFailure::Continue,
            Err(_) => {
                return Err(EngineError::invalid(
                    "hooks.on_failure",
                    format!("{} is not a HookFailure", hook.on_failure),
                ))
            }
        };
        let timeout = match hook.timeout_seconds {
            0 => DEFAULT_LIFECYCLE_TIMEOUT,
            seconds => Duration::from_secs(u64::from(seconds)),
        };
        Ok(Some(HookSpec { command: hook.command, user: hook.user, timeout, on_failure }))
    };
    Ok(Hooks {
        pre_freeze: hook(hooks.pre_freeze)?,
        post_thaw: hook(hooks.post_thaw)?,
        pre_restore: hook(hooks.pre_restore)?,
        post_restore: hook(hooks.post_restore)?,
        hold: hook(hooks.hold)?,
    })
}

fn lifecycle_to_proto(spec: &LifecycleSpec) -> proto::Lifecycle {
    use proto::lifecycle::Kind;
    let kind = match spec {
        LifecycleSpec::None => Kind::None(proto::NoLifecycle {}),
        LifecycleSpec::Command { stop, start, timeout } => Kind::Command(proto::CommandLifecycle {
            stop: stop.clone(),
            start: start.clone(),
            timeout_seconds: u32::try_from(timeout.as_secs()).unwrap_or(u32::MAX),
        }),
        LifecycleSpec::Systemd { unit, timeout } => Kind::Systemd(proto::SystemdLifecycle {
            unit: unit.clone(),
            timeout_seconds: u32::try_from(timeout.as_secs()).unwrap_or(u32::MAX),
        }),
        LifecycleSpec::Podman { command, container, timeout } => Kind::Podman(proto::PodmanLifecycle {
            container: container.clone(),
            command: command.clone(),
            timeout_seconds: u32::try_from(timeout.as_secs()).unwrap_or(u32::MAX),
        }),
    };
    proto::Lifecycle { kind: Some(kind) }
}

/// The lifecycle of a registration request; none given means `none`.
pub fn lifecycle_from_proto(lifecycle: Option<proto::Lifecycle>) -> Result<LifecycleSpec, EngineError> {
    use proto::lifecycle::Kind;
    let timeout = |seconds: u32, field: &'static str| -> Result<Duration, EngineError> {
        match seconds {
            0 => Ok(DEFAULT_LIFECYCLE_TIMEOUT),
            1..=3600 => Ok(Duration::from_secs(u64::from(seconds))),
            _ => Err(EngineError::invalid(field, format!("{seconds} s; at most 3600"))),
        }
    };
    Ok(match lifecycle.and_then(|l| l.kind) {
        None | Some(Kind::None(_)) => LifecycleSpec::None,
        Some(Kind::Command(command)) => LifecycleSpec::Command {
            stop: command.stop,
            start: command.start,
            timeout: timeout(command.timeout_seconds, "lifecycle.command.timeout_seconds")?,
        },
        Some(Kind::Systemd(systemd)) => LifecycleSpec::Systemd {
            unit: systemd.unit,
            timeout: timeout(systemd.timeout_seconds, "lifecycle.systemd.timeout_seconds")?,
        },
        Some(Kind::Podman(podman)) => LifecycleSpec::Podman {
            command: if podman.command.is_empty() { vec![DEFAULT_PODMAN.to_owned()] } else { podman.command },
            container: podman.container,
            timeout: timeout(podman.timeout_seconds, "lifecycle.podman.timeout_seconds")?,
        },
    })
}

pub fn restore(outcome: &RestoreOutcome) -> proto::RestoreSnapshotResponse {
    proto::RestoreSnapshotResponse {
        restored: Some(snapshot(&outcome.restored)),
        pre_restore_snapshot: outcome.pre_restore_snapshot.clone(),
        total: Some(duration(outcome.total)),
        downtime: Some(duration(outcome.downtime)),
        daemon_time: Some(duration(outcome.daemon_time)),
        already_restored: outcome.already_restored,
        steps: outcome
            .steps
            .iter()
            .map(|(name, took)| proto::RestoreStep { name: name.clone(), took: Some(duration(*took)) })
            .collect(),
    }
}

pub fn event(record: &EventRecord) -> proto::Event {
    proto::Event {
        sequence: record.sequence,
        time: Some(timestamp(record.time)),
        kind: record.kind.clone(),
        container: record.container.clone(),
        snapshot: record.snapshot.clone(),
        entry: record.entry.clone(),
        actor: record.actor.clone(),
        outcome: record.outcome.clone(),
        duration: record.duration.map(duration),
        frozen_for: record.frozen_for.map(duration),
        detail: record.detail.clone(),
    }
}

pub fn path_diff(diff: &crate::engine::diff::PathDiff) -> proto::PathDiff {
    let text = |path: &[u8]| String::from_utf8_lossy(path).into_owned();
    proto::PathDiff {
        kind: diff.kind.name().to_owned(),
        path: text(&diff.path),
        renamed_from: diff.from.as_deref().map(text).unwrap_or_default(),
        link_to: diff.link_to.as_deref().map(text).unwrap_or_default(),
        data_changed: diff.data,
        changed_bytes: diff.changed_bytes,
        size: diff.size,
    }
}

pub fn entry(record: &EntryRecord, next_fire: Option<DateTime<Utc>>) -> proto::Entry {
    use proto::entry::Action;
    proto::Entry {
        name: record.resource_name(),
        id: record.id.clone(),
        schedule: record.schedule.clone(),
        time_zone: record.time_zone.clone(),
        action: Some(match &record.action {
            EntryAction::Snapshot { container, alias, expiry_days, export_to, group } => {
                Action::Snapshot(proto::SnapshotAction {
                    container: container.clone(),
                    alias: alias.clone(),
                    expiry_days: *expiry_days,
                    export_to: export_to.clone(),
                    group: group.clone(),
                })
            }
            EntryAction::Command { command, timeout } => Action::Command(proto::CommandAction {
                command: command.clone(),
                timeout_seconds: u32::try_from(timeout.as_secs()).unwrap_or(u32::MAX),
            }),
        }),
        comment: record.comment.clone(),
        enabled: Some(record.enabled),
        last_fire_time: record.last_fire_time.map(timestamp),
        next_fire_time: next_fire.map(timestamp),
        last_outcome: record.last_outcome.clone(),
        random_delay_seconds: record.random_delay_seconds,
        container: record.container().to_owned(),
        environment: record.environment.clone(),
    }
}
