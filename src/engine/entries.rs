//! Schedule entries (`users/{user}/entries/{id}`): checked, stored, listed.
//! Firing them is `schedule_fire.rs`; deciding when is the scheduler's.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::error::{EngineError, EngineResult};
use super::names;
use super::paging::{paginate, Page};
use super::run_grants::check_environment;
use super::Engine;
use crate::events::Event;
use crate::scheduler::CronSchedule;
use crate::store::{EntryAction, EntryRecord};

/// Longest command line of a command entry.
pub const MAX_COMMAND: usize = 4096;
/// Longest time a command entry may run.
pub const MAX_COMMAND_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// What a caller gives for an entry.
#[derive(Debug, Clone)]
pub struct EntrySpec {
    /// Empty: chosen by the daemon.
    pub id: String,
    pub schedule: String,
    /// Empty: UTC.
    pub time_zone: String,
    pub action: EntryAction,
    pub comment: String,
    pub enabled: bool,
    pub random_delay_seconds: u32,
    /// The container a command entry is bound to; empty: none.
    pub container: String,
    pub environment: BTreeMap<String, String>,
}

/// Which fields of an entry to change.
#[derive(Debug, Clone, Default)]
pub struct EntryPatch {
    pub schedule: Option<String>,
    pub time_zone: Option<String>,
    pub action: Option<EntryAction>,
    pub comment: Option<String>,
    pub enabled: Option<bool>,
    pub random_delay_seconds: Option<u32>,
    pub container: Option<String>,
    pub environment: Option<BTreeMap<String, String>>,
}

/// A user name as in `users/{user}`: what useradd accepts.
pub fn user_name(field: &'static str, user: &str) -> EngineResult<()> {
    let valid = !user.is_empty()
        && user.len() <= 32
        && user.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && user.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(EngineError::invalid(
            field,
            format!("{user:?} is not a user name (1-32 of a-z 0-9 _ -, starting with a letter or _)"),
        ))
    }
}

/// Splits `users/{user}/entries/{id}`.
pub fn parse_entry_name(name: &str) -> EngineResult<(String, String)> {
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        ["users", user, "entries", id] => {
            user_name("name", user)?;
            names::container_id("name", id)?;
            Ok(((*user).to_owned(), (*id).to_owned()))
        }
        _ => Err(EngineError::invalid("name", format!("{name:?} is not users/{{user}}/entries/{{id}}"))),
    }
}

/// Checks a schedule and its time zone; the error names the field.
/// The longest random delay: a day (a daily entry could otherwise pass its
/// next occurrence).
pub const MAX_RANDOM_DELAY_SECONDS: u32 = 24 * 60 * 60;

fn check_random_delay(seconds: u32) -> EngineResult<()> {
    if seconds > MAX_RANDOM_DELAY_SECONDS {
        return Err(EngineError::invalid("entry.random_delay_seconds", "at most 86400 (a day)"));
    }
    Ok(())
}

/// An entry's schedule, its occurrences moved by its random delay: an
/// amount in [0, random_delay_seconds) drawn from the entry's name and
/// creation time, so it stays the same across restarts and updates (like
/// systemd's RandomizedDelaySec with FixedRandomDelay) and differs between
/// the entries of a fleet.
pub fn entry_schedule(entry: &EntryRecord) -> EngineResult<CronSchedule> {
    let schedule = check_schedule(&entry.schedule, &entry.time_zone)?;
    if entry.random_delay_seconds == 0 {
        return Ok(schedule);
    }
    let seed = format!("{}\n{}", entry.resource_name(), entry.create_time.to_rfc3339());
    let drawn = u64::from_le_bytes(blake3::hash(seed.as_bytes()).as_bytes()[..8].try_into().expect("8 bytes"));
    let millis = drawn % (u64::from(entry.random_delay_seconds) * 1000);
    Ok(schedule.delayed(std::time::Duration::from_millis(millis)))
}

pub fn check_schedule(schedule: &str, time_zone: &str) -> EngineResult<CronSchedule> {
    CronSchedule::parse(schedule, if time_zone.is_empty() { "UTC" } else { time_zone }).map_err(|error| {
        let field = if error.field == "time_zone" { "entry.time_zone" } else { "entry.schedule" };
        EngineError::invalid(field, error.message)
    })
}

fn check_action(action: &EntryAction) -> EngineResult<()> {
    match action {
        EntryAction::Snapshot { container, alias, expiry_days, export_to, group } => {
            match (container.is_empty(), group.is_empty()) {
                (true, false) => names::container_id("entry.snapshot.group", group)?,
                (false, true) => names::container_id("entry.snapshot.container", container)?,
                _ => return Err(EngineError::invalid("entry.snapshot.group", "set either a container or a group")),
            }
            if !group.is_empty() && !export_to.is_empty() {
                return Err(EngineError::invalid(
                    "entry.snapshot.export_to",
                    "is for a container's snapshots, not a group's",
                ));
            }
            if !export_to.is_empty() {
                crate::remote::config::check_name(export_to)
                    .map_err(|reason| EngineError::invalid("entry.snapshot.export_to", reason))?;
            }
            if !alias.is_empty() {
                names::snapshot_name("entry.snapshot.alias", alias)?;
            }
            names::expiry_days(*expiry_days)
        }
        EntryAction::Command { command, timeout } => {
            if command.trim().is_empty() {
                return Err(EngineError::invalid("entry.command.command", "must not be empty"));
            }
            if command.len() > MAX_COMMAND || command.contains('\0') {
                return Err(EngineError::invalid(
                    "entry.command.command",
                    format!("at most {MAX_COMMAND} bytes, no NUL"),
                ));
            }
            if *timeout > MAX_COMMAND_TIMEOUT || timeout.is_zero() {
                return Err(EngineError::invalid("entry.command.timeout_seconds", "1 s to 24 h"));
            }
            Ok(())
        }
    }
}

impl Engine {
    /// The container an entry with `action` is bound to, as stored: a
    /// command entry's, which must be registered; none for a snapshot entry,
    /// whose action names its container (a `container` given beside it
    /// must be that one).
    fn bound_container(&self, action: &EntryAction, container: &str) -> EngineResult<String> {
        if container.is_empty() {
            return Ok(String::new());
        }
        names::container_id("entry.container", container)?;
        match action {
            EntryAction::Snapshot { container: snapshotted, .. } if snapshotted != container => {
                Err(EngineError::invalid(
                    "entry.container",
                    format!("a snapshot entry takes snapshots of its own container ({snapshotted}), not {container}"),
                ))
            }
            EntryAction::Snapshot { .. } => Ok(String::new()),
            EntryAction::Command { .. } => {
                self.container(container)?;
                Ok(container.to_owned())
            }
        }
    }

    pub fn create_entry(&self, user: &str, spec: EntrySpec, actor: &str) -> EngineResult<EntryRecord> {
        user_name("user", user)?;
        if !spec.id.is_empty() {
            names::container_id("entry.id", &spec.id)?;
        }
        check_schedule(&spec.schedule, &spec.time_zone)?;
        check_random_delay(spec.random_delay_seconds)?;
        check_action(&spec.action)?;
        names::comment(&spec.comment)?;
        check_environment(&spec.environment)?;
        let container = self.bound_container(&spec.action, &spec.container)?;
        let now = self.clock.now();
        let id = if spec.id.is_empty() { format!("e{}", now.format("%Y%m%d%H%M%S%3f")) } else { spec.id };
        let entry = EntryRecord {
            user: user.to_owned(),
            id,
            schedule: spec.schedule,
            time_zone: if spec.time_zone.is_empty() { "UTC".into() } else { spec.time_zone },
            action: spec.action,
            comment: spec.comment,
            enabled: spec.enabled,
            create_time: now,
            last_fire_time: None,
            last_outcome: String::new(),
            cursor: Some(now),
            random_delay_seconds: spec.random_delay_seconds,
            container,
            environment: spec.environment,
        };
        if !self.store.insert_entry(&entry)? {
            return Err(EngineError::AlreadyExists { what: format!("entry {}", entry.resource_name()) });
        }
        self.emit(
            Event::new("schedule.created", "ok")
                .entry(&entry.resource_name())
                .container(entry.container())
                .actor(actor)
                .detail(entry.schedule.clone()),
        );
        self.store.make_durable()?;
        self.entries_changed.notify_one();
        Ok(entry)
    }

    pub fn entry(&self, name: &str) -> EngineResult<EntryRecord> {
        let (user, id) = parse_entry_name(name)?;
        self.store.entry(&user, &id)?.ok_or_else(|| EngineError::not_found(format!("entry {name}")))
    }

    /// Entries of `user` (empty: everyone's) about `container` (empty:
    /// any), one page at a time.
    pub fn list_entries(
        &self,
        user: &str,
        container: &str,
        page_size: i32,
        page_token: &str,
    ) -> EngineResult<Page<EntryRecord>> {
        if !user.is_empty() {
            user_name("user", user)?;
        }
        if !container.is_empty() {
            names::container_id("container", container)?;
        }
        let mut entries = self.store.entries(user)?;
        entries.retain(|entry| container.is_empty() || entry.container() == container);
        paginate(entries, EntryRecord::resource_name, page_size, page_token)
    }

    pub fn update_entry(&self, name: &str, patch: EntryPatch, actor: &str) -> EngineResult<EntryRecord> {
        let mut entry = self.entry(name)?;
        if let Some(schedule) = patch.schedule {
            entry.schedule = schedule;
        }
        if let Some(time_zone) = patch.time_zone {
            entry.time_zone = if time_zone.is_empty() { "UTC".into() } else { time_zone };
        }
        check_schedule(&entry.schedule, &entry.time_zone)?;
        if let Some(seconds) = patch.random_delay_seconds {
            check_random_delay(seconds)?;
            entry.random_delay_seconds = seconds;
        }
        if let Some(action) = patch.action {
            check_action(&action)?;
            entry.action = action;
        }
        if let Some(comment) = patch.comment {
            names::comment(&comment)?;
            entry.comment = comment;
        }
        if let Some(environment) = patch.environment {
            check_environment(&environment)?;
            entry.environment = environment;
        }
        // Unless given, a command entry stays bound where it was; a snapshot
        // entry is about its action's container.
        let container = patch.container.unwrap_or_else(|| entry.container.clone());
        let container = if matches!(entry.action, EntryAction::Snapshot { .. }) && container == entry.container {
            String::new()
        } else {
            container
        };
        entry.container = self.bound_container(&entry.action, &container)?;
        if let Some(enabled) = patch.enabled {
            if enabled && !entry.enabled {
                // Occurrences while it was disabled are not "missed".
                entry.cursor = Some(self.clock.now());
            }
            entry.enabled = enabled;
        }
        self.store.put_entry(&entry)?;
        self.emit(
            Event::new("schedule.updated", "ok")
                .entry(name)
                .container(entry.container())
                .actor(actor)
                .detail(entry.schedule.clone()),
        );
        self.store.make_durable()?;
        self.entries_changed.notify_one();
        Ok(entry)
    }

    pub fn delete_entry(&self, name: &str, actor: &str) -> EngineResult<()> {
        let (user, id) = parse_entry_name(name)?;
        // For the event: a snapshot entry's events name its container.
        let container = self.store.entry(&user, &id)?.map(|entry| entry.container().to_owned()).unwrap_or_default();
        if !self.store.remove_entry(&user, &id)? {
            return Err(EngineError::not_found(format!("entry {name}")));
        }
        self.emit(Event::new("schedule.deleted", "ok").entry(name).container(&container).actor(actor));
        self.store.make_durable()?;
        self.entries_changed.notify_one();
        Ok(())
    }

    /// When an entry fires next, after `after` (none when disabled).
    pub fn next_fire(&self, entry: &EntryRecord, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !entry.enabled {
            return None;
        }
        entry_schedule(entry).ok()?.next_after(after)
    }

    /// Resolves when entries were created, changed or deleted.
    pub async fn entries_changed(&self) {
        self.entries_changed.notified().await
    }
}
