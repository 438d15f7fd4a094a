//! What to do now: a pure function of the entries, the wall clock and which
//! fires are still running. No I/O and no async, so every rule is tested
//! with plain values.
//!
//! Each entry carries a cursor, `last_due`: the due time of the last
//! occurrence dealt with (fired, skipped or recorded missed), or the time the
//! entry was created or (re-)enabled. Everything the planner decides moves
//! the cursor forward to the newest occurrence it covered, and the host must
//! persist it, so a decision is never taken twice.
//!
//! Rules, for an enabled entry whose next occurrence after its cursor is due
//! (at or before `now`):
//! - only the newest due occurrence (`latest`) may fire, once;
//! - if `now - latest <= grace` it fires: `OnTime` when the lateness is within
//!   `on_time_tolerance`, otherwise `Late` (after a restart, a suspend, or a
//!   forward jump of the clock); older due occurrences are `Missed`;
//! - if `now - latest > grace`, every due occurrence is `Missed`, none fires;
//! - if the entry's previous fire is still running, `latest` is `Skipped`
//!   instead of fired (two fires of one entry never overlap).
//!
//! The wall clock going backwards leaves cursors in the future. A cursor at
//! most `backward_jump_limit` (default 3 h, Vixie cron's threshold) ahead of
//! `now` is kept: the entry fires next at its first occurrence after the
//! cursor, so nothing that already fired fires again and the entry pauses
//! until the clock catches up. A cursor further ahead than that means the
//! clock was wrong when it was written (a bad RTC corrected by NTP, say), and
//! keeping it would silence the entry for that long: the cursor is `Rebased`
//! to `now`, and the entry fires from the next occurrence on.

use std::collections::HashSet;

use chrono::{DateTime, TimeDelta, Utc};

use super::crontab::CronSchedule;

/// Resource name of a schedule entry (`users/{user}/entries/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId(pub String);

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the planner needs to know about one entry.
#[derive(Debug, Clone)]
pub struct EntryState {
    pub id: EntryId,
    pub schedule: CronSchedule,
    pub enabled: bool,
    /// The cursor (see the module docs). A host re-enabling an entry sets it
    /// to that moment, or the occurrences while it was disabled count as
    /// missed.
    pub last_due: DateTime<Utc>,
}

/// Tunables of the rules in the module docs.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// How late an occurrence may still fire (default 1 h).
    pub grace: TimeDelta,
    /// Lateness still reported as on time (default 1 s).
    pub on_time_tolerance: TimeDelta,
    /// How far in the future a cursor may be and still be trusted (default 3 h).
    pub backward_jump_limit: TimeDelta,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            grace: TimeDelta::hours(1),
            on_time_tolerance: TimeDelta::seconds(1),
            backward_jump_limit: TimeDelta::hours(3),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FireKind {
    OnTime,
    Late,
}

/// Run the entry's action for the occurrence due at `due`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fire {
    pub entry: EntryId,
    pub due: DateTime<Utc>,
    /// `now - due` when planned.
    pub lateness: TimeDelta,
    pub kind: FireKind,
}

/// The occurrence due at `due` did not fire: the previous fire still runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub entry: EntryId,
    pub due: DateTime<Utc>,
}

/// The occurrences due from `first_due` to `last_due` (inclusive) did not
/// fire and never will: the daemon was down or the clock jumped past them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missed {
    pub entry: EntryId,
    pub first_due: DateTime<Utc>,
    pub last_due: DateTime<Utc>,
}

/// The cursor was too far in the future (the clock went back): reset to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebased {
    pub entry: EntryId,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// One decision about one entry; each moves the entry's cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Fire(Fire),
    Skip(Skipped),
    Miss(Missed),
    Rebase(Rebased),
}

impl Decision {
    pub fn entry(&self) -> &EntryId {
        match self {
            Decision::Fire(Fire { entry, .. })
            | Decision::Skip(Skipped { entry, .. })
            | Decision::Miss(Missed { entry, .. })
            | Decision::Rebase(Rebased { entry, .. }) => entry,
        }
    }

    /// The entry's `last_due` once this decision is taken.
    pub fn cursor(&self) -> DateTime<Utc> {
        match self {
            Decision::Fire(Fire { due, .. }) | Decision::Skip(Skipped { due, .. }) => *due,
            Decision::Miss(Missed { last_due, .. }) => *last_due,
            Decision::Rebase(Rebased { to, .. }) => *to,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// In entry order; for one entry: rebase, then missed, then fire or skip.
    pub decisions: Vec<Decision>,
    /// The earliest next occurrence over all enabled entries, after applying
    /// the decisions; always after `now`. `None`: nothing will ever fire.
    pub next_wake: Option<DateTime<Utc>>,
}

impl Plan {
    pub fn fires(&self) -> impl Iterator<Item = &Fire> {
        self.decisions.iter().filter_map(|decision| match decision {
            Decision::Fire(fire) => Some(fire),
            _ => None,
        })
    }
}

/// Decides, at `now`, what each entry does; `running` holds the entries
/// whose previous fire has not finished.
pub fn plan(entries: &[EntryState], running: &HashSet<EntryId>, now: DateTime<Utc>, policy: &Policy) -> Plan {
    let mut plan = Plan::default();
    for entry in entries.iter().filter(|entry| entry.enabled) {
        let next = plan_entry(entry, running.contains(&entry.id), now, policy, &mut plan.decisions);
        plan.next_wake = match (plan.next_wake, next) {
            (Some(wake), Some(next)) => Some(wake.min(next)),
            (wake, next) => wake.or(next),
        };
    }
    plan
}

/// Appends the entry's decisions; returns its next occurrence after them.
fn plan_entry(
    entry: &EntryState,
    running: bool,
    now: DateTime<Utc>,
    policy: &Policy,
    decisions: &mut Vec<Decision>,
) -> Option<DateTime<Utc>> {
    let id = || entry.id.clone();
    let schedule = &entry.schedule;
    let mut cursor = entry.last_due;
    if cursor - now > policy.backward_jump_limit {
        decisions.push(Decision::Rebase(Rebased { entry: id(), from: cursor, to: now }));
        cursor = now;
    }
    let first_due = schedule.next_after(cursor)?;
    if first_due > now {
        return Some(first_due);
    }
    let latest = schedule.last_at_or_before(now).map_or(first_due, |latest| latest.max(first_due));
    let lateness = now - latest;
    if lateness > policy.grace {
        decisions.push(Decision::Miss(Missed { entry: id(), first_due, last_due: latest }));
        return schedule.next_after(latest);
    }
    if first_due < latest {
        let before_latest = schedule.last_at_or_before(latest - TimeDelta::nanoseconds(1));
        let last_due = before_latest.map_or(first_due, |before| before.max(first_due));
        decisions.push(Decision::Miss(Missed { entry: id(), first_due, last_due }));
    }
    decisions.push(if running {
        Decision::Skip(Skipped { entry: id(), due: latest })
    } else {
        let kind = if lateness <= policy.on_time_tolerance { FireKind::OnTime } else { FireKind::Late };
        Decision::Fire(Fire { entry: id(), due: latest, lateness, kind })
    });
    schedule.next_after(latest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn entry(id: &str, expression: &str, last_due: &str) -> EntryState {
        EntryState {
            id: EntryId(id.into()),
            schedule: CronSchedule::parse(expression, "UTC").unwrap(),
            enabled: true,
            last_due: utc(last_due),
        }
    }

    fn plan_at(entries: &[EntryState], now: &str) -> Plan {
        plan(entries, &HashSet::new(), utc(now), &Policy::default())
    }

    fn fire(id: &str, due: &str, lateness: TimeDelta, kind: FireKind) -> Decision {
        Decision::Fire(Fire { entry: EntryId(id.into()), due: utc(due), lateness, kind })
    }

    fn missed(id: &str, first_due: &str, last_due: &str) -> Decision {
        Decision::Miss(Missed { entry: EntryId(id.into()), first_due: utc(first_due), last_due: utc(last_due) })
    }

    #[test]
    fn nothing_due_wakes_at_the_earliest_next_occurrence() {
        let entries =
            [entry("a", "55 2 * * *", "2026-05-04T00:00:00Z"), entry("b", "*/15 * * * *", "2026-05-04T00:00:00Z")];
        let plan = plan_at(&entries, "2026-05-04T00:07:00Z");
        assert_eq!(plan, Plan { decisions: vec![], next_wake: Some(utc("2026-05-04T00:15:00Z")) });
    }

    #[test]
    fn a_due_occurrence_fires_on_time() {
        let entries = [entry("a", "55 2 * * *", "2026-05-03T02:55:00Z")];
        let plan = plan_at(&entries, "2026-05-04T02:55:00.005Z");
        assert_eq!(plan.decisions, [fire("a", "2026-05-04T02:55:00Z", TimeDelta::milliseconds(5), FireKind::OnTime)]);
        assert_eq!(plan.next_wake, Some(utc("2026-05-05T02:55:00Z")));
    }

    #[test]
    fn the_newest_miss_within_grace_fires_late_and_older_ones_are_missed() {
        // Down from 00:00 to 00:50: 00:15 and 00:30 are missed, 00:45 fires 5 min late.
        let entries = [entry("a", "*/15 * * * *", "2026-05-04T00:00:00Z")];
        let plan = plan_at(&entries, "2026-05-04T00:50:00Z");
        assert_eq!(
            plan.decisions,
            [
                missed("a", "2026-05-04T00:15:00Z", "2026-05-04T00:30:00Z"),
                fire("a", "2026-05-04T00:45:00Z", TimeDelta::minutes(5), FireKind::Late),
            ]
        );
        assert_eq!(plan.next_wake, Some(utc("2026-05-04T01:00:00Z")));
    }

    #[test]
    fn misses_older_than_grace_are_only_recorded() {
        // Down for three days; the newest occurrence is 7 h old.
        let entries = [entry("a", "55 2 * * *", "2026-05-01T02:55:00Z")];
        let plan = plan_at(&entries, "2026-05-04T10:00:00Z");
        assert_eq!(plan.decisions, [missed("a", "2026-05-02T02:55:00Z", "2026-05-04T02:55:00Z")]);
        assert_eq!(plan.next_wake, Some(utc("2026-05-05T02:55:00Z")));
    }

    #[test]
    fn grace_is_inclusive_and_configurable() {
        let entries = [entry("a", "0 * * * *", "2026-05-04T00:00:00Z")];
        let policy = Policy { grace: TimeDelta::minutes(10), ..Policy::default() };
        let at = |now: &str| plan(&entries, &HashSet::new(), utc(now), &policy).decisions;
        assert_eq!(
            at("2026-05-04T01:10:00Z"),
            [fire("a", "2026-05-04T01:00:00Z", TimeDelta::minutes(10), FireKind::Late)]
        );
        assert_eq!(at("2026-05-04T01:10:00.001Z"), [missed("a", "2026-05-04T01:00:00Z", "2026-05-04T01:00:00Z")]);
    }

    #[test]
    fn a_fire_that_would_overlap_is_skipped() {
        let entries = [entry("a", "* * * * *", "2026-05-04T00:01:00Z")];
        let running = HashSet::from([EntryId("a".into())]);
        let at = |now: &str| plan(&entries, &running, utc(now), &Policy::default());
        let skipped = Skipped { entry: EntryId("a".into()), due: utc("2026-05-04T00:02:00Z") };
        assert_eq!(
            at("2026-05-04T00:02:00Z"),
            Plan { decisions: vec![Decision::Skip(skipped)], next_wake: Some(utc("2026-05-04T00:03:00Z")) }
        );
        // After a long stall the newest occurrence is skipped and older ones missed...
        let skipped = Skipped { entry: EntryId("a".into()), due: utc("2026-05-04T03:00:00Z") };
        assert_eq!(
            at("2026-05-04T03:00:30Z").decisions,
            [missed("a", "2026-05-04T00:02:00Z", "2026-05-04T02:59:00Z"), Decision::Skip(skipped)]
        );
        // ...and beyond grace it is missed too, running or not.
        let policy = Policy { grace: TimeDelta::seconds(10), ..Policy::default() };
        assert_eq!(
            plan(&entries, &running, utc("2026-05-04T03:00:30Z"), &policy).decisions,
            [missed("a", "2026-05-04T00:02:00Z", "2026-05-04T03:00:00Z")]
        );
    }

    #[test]
    fn disabled_entries_do_nothing_and_never_wake() {
        let mut disabled = entry("a", "* * * * *", "2026-05-01T00:00:00Z");
        disabled.enabled = false;
        assert_eq!(plan_at(&[disabled], "2026-05-04T00:00:00Z"), Plan::default());
    }

    #[test]
    fn a_forward_jump_makes_what_it_skipped_late_or_missed() {
        // Planned at 00:05 to wake at 00:15; the clock jumps to 02:07.
        let entries = [entry("a", "*/15 * * * *", "2026-05-04T00:05:00Z")];
        let plan = plan_at(&entries, "2026-05-04T02:07:00Z");
        assert_eq!(
            plan.decisions,
            [
                missed("a", "2026-05-04T00:15:00Z", "2026-05-04T01:45:00Z"),
                fire("a", "2026-05-04T02:00:00Z", TimeDelta::minutes(7), FireKind::Late),
            ]
        );
    }

    #[test]
    fn a_small_backward_jump_never_fires_an_occurrence_again() {
        // Fired at 00:15, then the clock went back to 23:50 the day before.
        let entries = [entry("a", "*/15 * * * *", "2026-05-04T00:15:00Z")];
        let plan = plan_at(&entries, "2026-05-03T23:50:00Z");
        assert_eq!(plan, Plan { decisions: vec![], next_wake: Some(utc("2026-05-04T00:30:00Z")) });
        // Up to the limit (3 h) the cursor stands.
        let plan = plan_at(&entries, "2026-05-03T21:15:00Z");
        assert_eq!(plan.next_wake, Some(utc("2026-05-04T00:30:00Z")));
    }

    #[test]
    fn a_cursor_beyond_the_backward_limit_is_rebased_to_now() {
        // Fired when the clock said 2030; it now says 2026 again.
        let entries = [entry("a", "*/15 * * * *", "2030-01-01T00:15:00Z")];
        let plan = plan_at(&entries, "2026-05-04T10:20:00Z");
        let rebased =
            Rebased { entry: EntryId("a".into()), from: utc("2030-01-01T00:15:00Z"), to: utc("2026-05-04T10:20:00Z") };
        assert_eq!(
            plan,
            Plan { decisions: vec![Decision::Rebase(rebased)], next_wake: Some(utc("2026-05-04T10:30:00Z")) }
        );
        assert_eq!(plan.decisions[0].cursor(), utc("2026-05-04T10:20:00Z"));
    }

    #[test]
    fn a_new_entry_does_not_fire_for_occurrences_before_it_existed() {
        let entries = [entry("a", "0 * * * *", "2026-05-04T10:59:59Z")];
        assert_eq!(plan_at(&entries, "2026-05-04T10:59:59.500Z").decisions, []);
        assert_eq!(
            plan_at(&entries, "2026-05-04T11:00:00Z").decisions,
            [fire("a", "2026-05-04T11:00:00Z", TimeDelta::zero(), FireKind::OnTime)]
        );
    }

    #[test]
    fn each_entry_is_planned_on_its_own() {
        let entries = [
            entry("hourly", "0 * * * *", "2026-05-04T09:00:00Z"),
            entry("daily", "55 2 * * *", "2026-05-04T02:55:00Z"),
            entry("quarterly", "*/15 * * * *", "2026-05-04T09:45:00Z"),
        ];
        let plan = plan_at(&entries, "2026-05-04T10:00:00.002Z");
        let on_time = |id| fire(id, "2026-05-04T10:00:00Z", TimeDelta::milliseconds(2), FireKind::OnTime);
        assert_eq!(plan.decisions, [on_time("hourly"), on_time("quarterly")]);
        assert_eq!(plan.fires().count(), 2);
        assert_eq!(plan.next_wake, Some(utc("2026-05-04T10:15:00Z")));
    }
}
