//! The scheduler: schedule entries fire their actions on time.
//!
//! - `crontab`: crontab(5) expressions in an IANA time zone, validated field
//!   by field (errors name the field), translated for the `cron` crate;
//!   DST behaviour is documented there.
//! - `planner`: the rules, as a pure function of the entries, the wall clock
//!   and which fires are running: on time, late within grace, missed,
//!   skipped on overlap, and what a jump of the clock does.
//! - `runner`: the tokio loop that sleeps until the next due entry, records
//!   every decision through `SchedulerHost` and spawns the fires.
//! - `command`: the "run a command as the entry's user" action.
//!
//! Wiring it into the daemon: implement `SchedulerHost` over the store (the
//! entries with their `last_due` cursor; `record` persists the cursor and
//! appends the event), the engine (`fire` takes the snapshot, or runs
//! `run_as_user` in `spawn_blocking`) and the event log; then
//! `tokio::spawn(Scheduler::new(host, clock, config).run(shutdown))`, and call
//! `SchedulerHandle::entries_changed` whenever the API changes an entry.

mod command;
mod crontab;
mod planner;
mod runner;

pub use command::{run_as_user, CapturedOutput, CommandAction, CommandError, CommandLimits, CommandOutcome};
pub use crontab::{CronSchedule, ScheduleError};
pub use planner::{plan, Decision, EntryId, EntryState, Fire, FireKind, Missed, Plan, Policy, Rebased, Skipped};
pub use runner::{FireFuture, Scheduler, SchedulerConfig, SchedulerHandle, SchedulerHost, SystemWallClock, WallClock};
