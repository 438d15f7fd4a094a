//! crontab(5) schedules in an IANA time zone.
//!
//! Users paste crontab lines, so the syntax and meaning are crontab's: five
//! fields `minute hour day-of-month month day-of-week`, `*`, ranges, lists,
//! steps, month and weekday names (case-insensitive), weekday 0 and 7 both
//! Sunday, and the `@hourly`... macros. When both day-of-month and
//! day-of-week are restricted the entry fires when EITHER matches; a field
//! counts as unrestricted when it starts with `*` (so `*/2` is unrestricted,
//! as in Vixie cron and cronie, and `0 0 */2 * mon` means "odd days that are
//! Mondays").
//!
//! We validate every field ourselves, so an error names the field, then hand
//! the `cron` crate explicit value lists (its syntax has seconds first,
//! weekdays 1-7 from Sunday, and AND semantics). The OR case becomes two
//! `cron` schedules, one per day field, and the earlier fire wins.
//!
//! Daylight saving time (the `cron` crate's behaviour, pinned by tests):
//! - a local time that does not exist (spring forward: 02:30 in
//!   Europe/Berlin on 2026-03-29) is skipped: `30 2 * * *` does not fire that
//!   day at all (unlike Vixie cron, which fires it just after the jump);
//! - a local time that happens twice (fall back) fires once, at its first
//!   occurrence; the second pass through the repeated hour fires nothing, so
//!   `*/15 * * * *` has a one-hour pause on that night.

mod field;

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;

use field::{FieldSpec, ValueSet, DAY_OF_MONTH, DAY_OF_WEEK, HOUR, MINUTE, MONTH};

/// A schedule or time zone that cannot be used; `field` is the request field
/// at fault (`schedule` or `time_zone`), and the message starts with the
/// crontab field when there is one (`day-of-week: 8 is out of range 0-7`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ScheduleError {
    pub field: &'static str,
    pub message: String,
}

impl ScheduleError {
    fn schedule(message: impl Into<String>) -> Self {
        ScheduleError { field: "schedule", message: message.into() }
    }
}

const FIELD_LIST: &str = "minute hour day-of-month month day-of-week";

/// `@name` shorthands, as in crontab(5).
const MACROS: &[(&str, &str)] = &[
    ("@hourly", "0 * * * *"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"),
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
];

/// A parsed crontab expression and its time zone. Cheap to clone.
#[derive(Clone)]
pub struct CronSchedule {
    expression: String,
    time_zone: Tz,
    /// One schedule, or two for the day-of-month OR day-of-week case.
    schedules: Arc<[cron::Schedule]>,
    /// Every occurrence comes this much after the expression's time (an
    /// entry's random delay, spreading a fleet's entries of one minute).
    delay: chrono::TimeDelta,
}

impl std::fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CronSchedule({:?} in {})", self.expression, self.time_zone.name())
    }
}

impl CronSchedule {
    /// Parses a 5-field crontab expression or an `@macro`. `time_zone` is an
    /// IANA name (`Europe/Berlin`); empty means UTC.
    pub fn parse(expression: &str, time_zone: &str) -> Result<CronSchedule, ScheduleError> {
        let time_zone = parse_time_zone(time_zone)?;
        let expression = expression.trim();
        let fields = expand_macro(expression)?;
        let fields: Vec<&str> = fields.split_whitespace().collect();
        let [minute, hour, day_of_month, month, day_of_week] = fields[..] else {
            return Err(ScheduleError::schedule(field_count_message(fields.len())));
        };
        let minutes = parse_field(&MINUTE, minute)?;
        let hours = parse_field(&HOUR, hour)?;
        let days_of_month = parse_field(&DAY_OF_MONTH, day_of_month)?;
        let months = parse_field(&MONTH, month)?;
        let mut days_of_week = parse_field(&DAY_OF_WEEK, day_of_week)?;
        if days_of_week.contains(7) {
            days_of_week.remove(7);
            days_of_week.insert(0);
        }

        let common = format!("0 {} {}", cron_list(minutes, &MINUTE, 0), cron_list(hours, &HOUR, 0));
        let months = cron_list(months, &MONTH, 0);
        let dom = cron_list(days_of_month, &DAY_OF_MONTH, 0);
        // Sunday is 0 only now; the cron crate numbers weekdays 1-7 from Sunday.
        let dow = cron_list(days_of_week, &FieldSpec { max: 6, ..DAY_OF_WEEK }, 1);
        let either_day = !day_of_month.starts_with('*') && !day_of_week.starts_with('*');
        let sources = if either_day {
            vec![format!("{common} {dom} {months} *"), format!("{common} * {months} {dow}")]
        } else {
            vec![format!("{common} {dom} {months} {dow}")]
        };
        let schedules = sources
            .iter()
            .map(|source| source.parse::<cron::Schedule>())
            .collect::<Result<Vec<_>, _>>()
            // Our own validation should make this unreachable; say so if not.
            .map_err(|error| ScheduleError::schedule(format!("internal translation error: {error}")))?;
        let schedule = CronSchedule {
            expression: expression.to_owned(),
            time_zone,
            schedules: schedules.into(),
            delay: chrono::TimeDelta::zero(),
        };
        let since = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap();
        if schedule.next_after(since).is_none() {
            return Err(ScheduleError::schedule(
                "day-of-month: never matches a date in the given months (like 30 feb), so this would never fire",
            ));
        }
        Ok(schedule)
    }

    /// The expression as given (trimmed).
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The canonical IANA name of the time zone.
    pub fn time_zone(&self) -> &'static str {
        self.time_zone.name()
    }

    /// The same schedule, each occurrence `delay` later.
    pub fn delayed(mut self, delay: std::time::Duration) -> CronSchedule {
        self.delay = chrono::TimeDelta::from_std(delay).unwrap_or(chrono::TimeDelta::zero());
        self
    }

    /// The first fire time strictly after `after`, or `None` if there is none
    /// (the `cron` crate stops at the year 2100).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.next_undelayed_after(after - self.delay).map(|fire| fire + self.delay)
    }

    fn next_undelayed_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.time_zone);
        self.schedules
            .iter()
            // `find` because around a repeated local hour the crate may
            // return the first occurrence of a time we are already past.
            .filter_map(|schedule| schedule.after(&local).find(|fire| *fire > local))
            .min()
            .map(|fire| fire.with_timezone(&Utc))
    }

    /// The last fire time at or before `at`, or `None`.
    pub fn last_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.last_undelayed_at_or_before(at - self.delay).map(|fire| fire + self.delay)
    }

    fn last_undelayed_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // The crate looks strictly before whole seconds; one nanosecond
        // later includes `at` itself.
        let local = (at + chrono::TimeDelta::nanoseconds(1)).with_timezone(&self.time_zone);
        self.schedules
            .iter()
            .filter_map(|schedule| schedule.after(&local).rev().find(|fire| fire.with_timezone(&Utc) <= at))
            .max()
            .map(|fire| fire.with_timezone(&Utc))
    }
}

fn parse_time_zone(name: &str) -> Result<Tz, ScheduleError> {
    if name.is_empty() {
        return Ok(Tz::UTC);
    }
    name.parse::<Tz>().map_err(|_| ScheduleError {
        field: "time_zone",
        message: format!("unknown time zone `{name}` (expected an IANA name such as UTC or Europe/Berlin)"),
    })
}

fn expand_macro(expression: &str) -> Result<&str, ScheduleError> {
    if !expression.starts_with('@') {
        return Ok(expression);
    }
    if let Some((_, fields)) = MACROS.iter().find(|(name, _)| name.eq_ignore_ascii_case(expression)) {
        return Ok(fields);
    }
    let known: Vec<&str> = MACROS.iter().map(|(name, _)| *name).collect();
    if expression.eq_ignore_ascii_case("@reboot") {
        return Err(ScheduleError::schedule("@reboot is not supported: entries fire on the clock, not at start-up"));
    }
    Err(ScheduleError::schedule(format!("unknown macro `{expression}` (known: {})", known.join(" "))))
}

fn field_count_message(count: usize) -> String {
    let hint = match count {
        0 => return format!("empty; expected 5 fields ({FIELD_LIST}) or a macro such as @daily"),
        6 | 7 => " (seconds and years are not supported)",
        _ => "",
    };
    format!("expected 5 fields ({FIELD_LIST}), got {count}{hint}")
}

fn parse_field(spec: &FieldSpec, text: &str) -> Result<ValueSet, ScheduleError> {
    field::parse(spec, text).map_err(|message| ScheduleError::schedule(format!("{}: {message}", spec.name)))
}

/// The field in the `cron` crate's syntax: `*` when every value matches,
/// otherwise the explicit list, each value shifted by `offset`.
fn cron_list(set: ValueSet, spec: &FieldSpec, offset: u32) -> String {
    if (spec.min..=spec.max).all(|value| set.contains(value)) {
        return "*".to_owned();
    }
    let values: Vec<String> = set.values().map(|value| (value + offset).to_string()).collect();
    values.join(",")
}

#[cfg(test)]
mod tests;
