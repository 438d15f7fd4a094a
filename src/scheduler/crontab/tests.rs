//! Fire times worked out by hand from a calendar (2026-05-01 is a Friday,
//! 2026-06-01 a Monday, 2028 and 2032 are leap years; Europe/Berlin springs
//! forward on 2026-03-29 and falls back on 2026-10-25).

use chrono::{DateTime, Utc};

use super::{CronSchedule, ScheduleError};

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}")).with_timezone(&Utc)
}

/// Every fire after `after`, in order.
fn fires(expression: &str, time_zone: &str, after: &str) -> impl Iterator<Item = DateTime<Utc>> {
    let schedule = CronSchedule::parse(expression, time_zone).unwrap_or_else(|e| panic!("{expression}: {e}"));
    std::iter::successors(schedule.next_after(utc(after)), move |fire| schedule.next_after(*fire))
}

fn check(expression: &str, time_zone: &str, after: &str, expected: &[&str]) {
    let actual: Vec<DateTime<Utc>> = fires(expression, time_zone, after).take(expected.len()).collect();
    let expected: Vec<DateTime<Utc>> = expected.iter().map(|text| utc(text)).collect();
    assert_eq!(actual, expected, "`{expression}` in {time_zone} after {after}");
}

#[test]
fn daily_at_a_fixed_time_is_strictly_after() {
    check("55 2 * * *", "UTC", "2026-05-04T02:54:59Z", &["2026-05-04T02:55:00Z", "2026-05-05T02:55:00Z"]);
    check("55 2 * * *", "UTC", "2026-05-04T02:55:00Z", &["2026-05-05T02:55:00Z"]);
    check("55 2 * * *", "", "2026-05-04T02:54:59.999Z", &["2026-05-04T02:55:00Z"]);
}

#[test]
fn minute_steps_and_ranges() {
    check(
        "*/15 * * * *",
        "UTC",
        "2026-05-04T10:07:30Z",
        &["2026-05-04T10:15:00Z", "2026-05-04T10:30:00Z", "2026-05-04T10:45:00Z", "2026-05-04T11:00:00Z"],
    );
    check(
        "1-30/5 3 * * *",
        "UTC",
        "2026-05-04T03:00:00Z",
        &[
            "2026-05-04T03:01:00Z",
            "2026-05-04T03:06:00Z",
            "2026-05-04T03:11:00Z",
            "2026-05-04T03:16:00Z",
            "2026-05-04T03:21:00Z",
            "2026-05-04T03:26:00Z",
            "2026-05-05T03:01:00Z",
        ],
    );
}

#[test]
fn restricted_day_of_month_and_day_of_week_fire_on_either() {
    // The 1st of each month OR any Monday.
    check(
        "0 0 1 * mon",
        "UTC",
        "2026-04-28T00:00:00Z",
        &[
            "2026-05-01T00:00:00Z",
            "2026-05-04T00:00:00Z",
            "2026-05-11T00:00:00Z",
            "2026-05-18T00:00:00Z",
            "2026-05-25T00:00:00Z",
            "2026-06-01T00:00:00Z",
            "2026-06-08T00:00:00Z",
        ],
    );
    // The 1st, the 15th OR any Friday.
    check(
        "30 4 1,15 * 5",
        "UTC",
        "2026-05-01T00:00:00Z",
        &[
            "2026-05-01T04:30:00Z",
            "2026-05-08T04:30:00Z",
            "2026-05-15T04:30:00Z",
            "2026-05-22T04:30:00Z",
            "2026-05-29T04:30:00Z",
            "2026-06-01T04:30:00Z",
            "2026-06-05T04:30:00Z",
        ],
    );
}

#[test]
fn a_day_field_starting_with_star_keeps_and_semantics() {
    // Odd days of the month that are Mondays (Vixie cron and cronie agree).
    check(
        "0 0 */2 * mon",
        "UTC",
        "2026-05-01T00:00:00Z",
        &["2026-05-11T00:00:00Z", "2026-05-25T00:00:00Z", "2026-06-01T00:00:00Z", "2026-06-15T00:00:00Z"],
    );
}

#[test]
fn sunday_is_both_0_and_7() {
    for expression in ["0 0 * * 0", "0 0 * * 7", "0 0 * * sun", "@weekly"] {
        check(expression, "UTC", "2026-05-01T00:00:00Z", &["2026-05-03T00:00:00Z", "2026-05-10T00:00:00Z"]);
    }
}

#[test]
fn weekday_ranges_lists_and_steps_keep_their_meaning() {
    check(
        "0 9-17/2 * * 1-5",
        "UTC",
        "2026-05-01T16:00:00Z",
        &[
            "2026-05-01T17:00:00Z",
            "2026-05-04T09:00:00Z",
            "2026-05-04T11:00:00Z",
            "2026-05-04T13:00:00Z",
            "2026-05-04T15:00:00Z",
            "2026-05-04T17:00:00Z",
            "2026-05-05T09:00:00Z",
        ],
    );
    // Friday, Saturday, Sunday (7).
    check(
        "0 12 * * 5-7",
        "UTC",
        "2026-05-07T12:00:00Z",
        &["2026-05-08T12:00:00Z", "2026-05-09T12:00:00Z", "2026-05-10T12:00:00Z", "2026-05-15T12:00:00Z"],
    );
    check("0 0 * * sun-sat", "UTC", "2026-05-04T12:00:00Z", &["2026-05-05T00:00:00Z", "2026-05-06T00:00:00Z"]);
    // Sunday, Tuesday, Thursday, Saturday.
    check(
        "0 0 * * */2",
        "UTC",
        "2026-05-03T00:00:00Z",
        &["2026-05-05T00:00:00Z", "2026-05-07T00:00:00Z", "2026-05-09T00:00:00Z", "2026-05-10T00:00:00Z"],
    );
}

#[test]
fn month_names_in_any_case() {
    check("0 12 1 jan,JUL *", "UTC", "2026-02-01T00:00:00Z", &["2026-07-01T12:00:00Z", "2027-01-01T12:00:00Z"]);
    check(
        "0 0 1 Mar-MAY *",
        "UTC",
        "2026-01-01T00:00:00Z",
        &["2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z", "2026-05-01T00:00:00Z", "2027-03-01T00:00:00Z"],
    );
}

#[test]
fn february_29_fires_in_leap_years_only() {
    check("0 0 29 2 *", "UTC", "2026-01-01T00:00:00Z", &["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"]);
}

#[test]
fn macros() {
    let after = "2026-05-04T10:30:00Z";
    check("@hourly", "UTC", after, &["2026-05-04T11:00:00Z", "2026-05-04T12:00:00Z"]);
    check("@daily", "UTC", after, &["2026-05-05T00:00:00Z"]);
    check("@midnight", "UTC", after, &["2026-05-05T00:00:00Z"]);
    check("@monthly", "UTC", after, &["2026-06-01T00:00:00Z"]);
    check("@yearly", "UTC", after, &["2027-01-01T00:00:00Z"]);
    check("@ANNUALLY", "UTC", after, &["2027-01-01T00:00:00Z"]);
}

#[test]
fn fire_times_are_local_to_the_time_zone() {
    // New York is UTC-4 in May; Kolkata is UTC+5:30 all year.
    check("0 9 * * *", "America/New_York", "2026-05-04T00:00:00Z", &["2026-05-04T13:00:00Z"]);
    check("0 0 * * *", "Asia/Kolkata", "2026-05-04T00:00:00Z", &["2026-05-04T18:30:00Z", "2026-05-05T18:30:00Z"]);
}

#[test]
fn a_local_time_skipped_by_spring_forward_does_not_fire_that_day() {
    // 02:30 does not exist in Berlin on 2026-03-29: CET (+1) before, CEST (+2) after.
    check(
        "30 2 * * *",
        "Europe/Berlin",
        "2026-03-28T00:00:00Z",
        &["2026-03-28T01:30:00Z", "2026-03-30T00:30:00Z", "2026-03-31T00:30:00Z"],
    );
}

#[test]
fn a_local_time_repeated_by_fall_back_fires_once() {
    // 02:00-03:00 happens twice in Berlin on 2026-10-25: 00:00-01:00Z (CEST) then 01:00-02:00Z (CET).
    check("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", &["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]);
    // The second pass through the repeated hour fires nothing...
    check(
        "*/15 * * * *",
        "Europe/Berlin",
        "2026-10-25T00:40:00Z",
        &["2026-10-25T00:45:00Z", "2026-10-25T02:00:00Z", "2026-10-25T02:15:00Z"],
    );
    // ...unless we start inside it (an entry created then, say).
    check("30 2 * * *", "Europe/Berlin", "2026-10-25T01:00:00Z", &["2026-10-25T01:30:00Z"]);
}

#[test]
fn last_at_or_before_includes_the_instant_itself() {
    let daily = CronSchedule::parse("55 2 * * *", "UTC").unwrap();
    assert_eq!(daily.last_at_or_before(utc("2026-05-04T02:55:00Z")), Some(utc("2026-05-04T02:55:00Z")));
    assert_eq!(daily.last_at_or_before(utc("2026-05-04T02:54:59.999Z")), Some(utc("2026-05-03T02:55:00Z")));
    let either = CronSchedule::parse("0 0 1 * mon", "UTC").unwrap();
    assert_eq!(either.last_at_or_before(utc("2026-05-03T12:00:00Z")), Some(utc("2026-05-01T00:00:00Z")));
    assert_eq!(either.last_at_or_before(utc("2026-05-31T12:00:00Z")), Some(utc("2026-05-25T00:00:00Z")));
    let berlin = CronSchedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
    assert_eq!(berlin.last_at_or_before(utc("2026-03-29T12:00:00Z")), Some(utc("2026-03-28T01:30:00Z")));
}

#[test]
fn expression_and_time_zone_are_kept() {
    let schedule = CronSchedule::parse("  @daily ", "Europe/Berlin").unwrap();
    assert_eq!(schedule.expression(), "@daily");
    assert_eq!(schedule.time_zone(), "Europe/Berlin");
    assert_eq!(CronSchedule::parse("@daily", "").unwrap().time_zone(), "UTC");
}

fn error(expression: &str, time_zone: &str) -> ScheduleError {
    match CronSchedule::parse(expression, time_zone) {
        Ok(schedule) => panic!("`{expression}` parsed as {schedule:?}"),
        Err(error) => error,
    }
}

#[test]
fn errors_name_the_field_and_the_reason() {
    let fields = "minute hour day-of-month month day-of-week";
    let cases: &[(&str, String)] = &[
        ("", format!("empty; expected 5 fields ({fields}) or a macro such as @daily")),
        ("* * * *", format!("expected 5 fields ({fields}), got 4")),
        ("0 0 * * * *", format!("expected 5 fields ({fields}), got 6 (seconds and years are not supported)")),
        ("0 0 * * 8", "day-of-week: 8 is out of range 0-7".into()),
        ("60 * * * *", "minute: 60 is out of range 0-59".into()),
        ("0 24 * * *", "hour: 24 is out of range 0-23".into()),
        ("0 0 32 * *", "day-of-month: 32 is out of range 1-31".into()),
        ("0 0 * 13 *", "month: 13 is out of range 1-12".into()),
        ("0 0 * foo *", "month: `foo` is not a number or a month name (jan-dec)".into()),
        ("*/0 * * * *", "minute: step 0 in `*/0` is out of range 1-60".into()),
        ("0 0 * * fri-mon", "day-of-week: range fri-mon runs backwards (the start must not be after the end)".into()),
        (
            "0 0 30 2 *",
            "day-of-month: never matches a date in the given months (like 30 feb), so this would never fire".into(),
        ),
        ("@reboot", "@reboot is not supported: entries fire on the clock, not at start-up".into()),
        (
            "@often",
            "unknown macro `@often` (known: @hourly @daily @midnight @weekly @monthly @yearly @annually)".into(),
        ),
    ];
    for (expression, message) in cases {
        let error = error(expression, "UTC");
        assert_eq!((error.field, &error.message), ("schedule", message), "`{expression}`");
    }
    assert_eq!(error("0 0 * * 8", "UTC").to_string(), "schedule: day-of-week: 8 is out of range 0-7");
}

#[test]
fn an_unknown_time_zone_is_a_time_zone_error() {
    let error = error("@daily", "Mars/Olympus_Mons");
    assert_eq!(error.field, "time_zone");
    assert_eq!(
        error.message,
        "unknown time zone `Mars/Olympus_Mons` (expected an IANA name such as UTC or Europe/Berlin)"
    );
}
