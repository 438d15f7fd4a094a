//! What happens when a schedule entry fires: its action runs (a snapshot
//! through the engine, or a command as the entry's user), and the entry and
//! the timeline record the outcome.

use chrono::{DateTime, Utc};

use super::entries::parse_entry_name;
use super::error::EngineResult;
use super::remotes::ExportRequest;
use super::run_grants::{run_id, snap_url, RunContext, RunGrant, RunGrantGuard};
use super::snapshots::CreateRequest;
use super::Engine;
use crate::events::Event;
use crate::scheduler::{run_as_user, CommandAction, CommandError, CommandLimits, CommandOutcome};
use crate::store::{EntryAction, EntryRecord, SnapshotOrigin, SnapshotRecord};

/// How an action ended.
#[derive(Debug, Clone)]
pub struct FireResult {
    /// `ok` or `failed`.
    pub outcome: String,
    pub detail: String,
    pub snapshot: Option<SnapshotRecord>,
}

impl Engine {
    /// Fires an entry now, whatever its schedule (RunEntry).
    pub fn run_entry_now(&self, name: &str, actor: &str) -> EngineResult<FireResult> {
        let entry = self.entry(name)?;
        let now = self.clock.now();
        self.emit(
            Event::new("schedule.fired", "ok").entry(name).container(entry.container()).actor(actor).detail("run now"),
        );
        self.store.make_durable()?;
        self.run_action(&entry.resource_name(), now, actor)
    }

    /// Runs the action of the entry `name` for the occurrence due at `due`,
    /// and records the outcome on the entry.
    pub fn run_action(&self, name: &str, due: DateTime<Utc>, actor: &str) -> EngineResult<FireResult> {
        let entry = self.entry(name)?;
        let result = match &entry.action {
            EntryAction::Snapshot { container, alias, expiry_days, export_to, group } => {
                let request = CreateRequest {
                    container: container.clone(),
                    name: String::new(),
                    alias: alias.clone(),
                    expiry_days: *expiry_days,
                    comment: entry.comment.clone(),
                    origin: SnapshotOrigin::Schedule { entry: name.to_owned() },
                    actor: actor.to_owned(),
                };
                if !group.is_empty() {
                    return self.finish_fire(name, due, group_fire(group, self.create_group_snapshot(group, request)));
                }
                match self.create_snapshot(request) {
                    Ok(snapshot) if !export_to.is_empty() => self.export_after_fire(snapshot, export_to, actor),
                    Ok(snapshot) => FireResult {
                        outcome: "ok".into(),
                        detail: format!("snapshot {} of {}", snapshot.name, snapshot.container),
                        snapshot: Some(snapshot),
                    },
                    // The snapshot.failed event already holds the details.
                    Err(error) => FireResult { outcome: "failed".into(), detail: error.to_string(), snapshot: None },
                }
            }
            EntryAction::Command { command, timeout } => {
                let started = std::time::Instant::now();
                let limits = CommandLimits { timeout: *timeout, ..CommandLimits::default() };
                // Revoked when the command has ended (or was killed).
                let grant = self.run_grant(&entry, due);
                let run = RunContext {
                    entry: &entry,
                    due,
                    snap_url: grant
                        .as_ref()
                        .zip(self.run_url_base.get())
                        .map(|(grant, base)| snap_url(base, grant.secret(), &entry.container)),
                };
                let action = CommandAction { command: command.clone(), environment: run.environment() };
                let ran = run_as_user(&action, &entry.user, &limits);
                drop(grant);
                let (outcome, detail) = describe_command(ran);
                self.emit(
                    Event::new("schedule.command", &outcome)
                        .entry(name)
                        .container(entry.container())
                        .actor(&format!("user:{}", entry.user))
                        .duration(started.elapsed())
                        .detail(detail.clone()),
                );
                FireResult { outcome, detail, snapshot: None }
            }
        };
        self.finish_fire(name, due, result)
    }

    /// Records a fire's outcome on its entry.
    fn finish_fire(&self, name: &str, due: DateTime<Utc>, result: FireResult) -> EngineResult<FireResult> {
        // Re-read: the entry may have changed while the action ran.
        let (user, id) = parse_entry_name(name)?;
        if let Some(mut current) = self.store.entry(&user, &id)? {
            current.last_fire_time = Some(due);
            current.last_outcome =
                if result.outcome == "ok" { "ok".into() } else { format!("failed: {}", result.detail) };
            self.store.put_entry(&current)?;
        }
        self.store.make_durable()?;
        Ok(result)
    }
}

/// The outcome of a group snapshot fired by an entry; the group's first
/// member's snapshot stands for the instant.
fn group_fire(group: &str, taken: EngineResult<Vec<SnapshotRecord>>) -> FireResult {
    match taken {
        Ok(taken) => {
            let members = taken.iter().map(|s| s.container.as_str()).collect::<Vec<_>>().join(", ");
            let name = taken.first().map(|s| s.name.clone()).unwrap_or_default();
            FireResult {
                outcome: "ok".into(),
                detail: format!("snapshot {name} of group {group} ({members})"),
                snapshot: taken.into_iter().next(),
            }
        }
        Err(error) => FireResult { outcome: "failed".into(), detail: error.to_string(), snapshot: None },
    }
}

impl Engine {
    /// A credential for one run of a command entry bound to a container,
    /// when run URLs are served.
    fn run_grant(&self, entry: &EntryRecord, due: DateTime<Utc>) -> Option<RunGrantGuard<'_>> {
        if entry.container.is_empty() || self.run_url_base.get().is_none() {
            return None;
        }
        let name = entry.resource_name();
        Some(self.run_grants.mint(RunGrant {
            run_id: run_id(&name, due),
            entry: name,
            user: entry.user.clone(),
            container: entry.container.clone(),
        }))
    }

    /// Exports a scheduled snapshot that has landed. A failure is recorded
    /// (the snapshot.exported event and the entry's outcome) and leaves the
    /// local snapshot in place.
    fn export_after_fire(&self, snapshot: SnapshotRecord, remote: &str, actor: &str) -> FireResult {
        let request = ExportRequest {
            container: snapshot.container.clone(),
            snapshot: snapshot.name.clone(),
            remote: remote.to_owned(),
            actor: actor.to_owned(),
        };
        let exported = self.export_snapshot(&request, &mut |_| {}, &std::sync::atomic::AtomicBool::new(false));
        let landed = format!("snapshot {} of {}", snapshot.name, snapshot.container);
        match exported {
            Ok(exported) => FireResult {
                outcome: "ok".into(),
                detail: format!(
                    "{landed}, exported to {remote} ({} new)",
                    crate::units::bytes(exported.manifest.added_bytes)
                ),
                snapshot: Some(snapshot),
            },
            Err(error) => FireResult {
                outcome: "failed".into(),
                detail: format!("{landed} (kept here), but its export to {remote} failed: {error}"),
                snapshot: Some(snapshot),
            },
        }
    }
}

/// The outcome and a one-paragraph account of a command: status, time,
/// and its output (bounded by the runner).
fn describe_command(ran: Result<CommandOutcome, CommandError>) -> (String, String) {
    let outcome = match ran {
        Ok(outcome) => outcome,
        Err(error) => return ("failed".to_owned(), error.to_string()),
    };
    let ok = outcome.status.success() && !outcome.timed_out;
    let mut detail = if outcome.timed_out {
        format!("timed out after {:.1} s; killed", outcome.duration.as_secs_f64())
    } else {
        format!("{} after {:.1} s", outcome.status, outcome.duration.as_secs_f64())
    };
    for (stream, captured) in [("stdout", &outcome.stdout), ("stderr", &outcome.stderr)] {
        if !captured.bytes.is_empty() {
            let cut = if captured.truncated { " (truncated)" } else { "" };
            detail.push_str(&format!("\n{stream}{cut}:\n{}", String::from_utf8_lossy(&captured.bytes).trim_end()));
        }
    }
    (if ok { "ok" } else { "failed" }.to_owned(), detail)
}
