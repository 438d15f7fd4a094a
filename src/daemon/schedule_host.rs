//! Plugs the scheduler into the engine: entries come from the store, each
//! decision moves the entry's cursor and is recorded on the timeline, and
//! fires run the entry's action on the blocking pool.

use std::sync::Arc;

use crate::engine::entries::entry_schedule;
use crate::engine::Engine;
use crate::events::Event;
use crate::scheduler::{Decision, EntryId, EntryState, Fire, FireKind};
use crate::scheduler::{FireFuture, SchedulerHost};

pub struct EngineHost {
    pub engine: Arc<Engine>,
}

impl SchedulerHost for EngineHost {
    fn entries(&self) -> Vec<EntryState> {
        let entries = match self.engine.store().entries("") {
            Ok(entries) => entries,
            Err(error) => {
                tracing::error!(%error, "reading schedule entries");
                return Vec::new();
            }
        };
        entries
            .into_iter()
            .filter_map(|entry| {
                let schedule = entry_schedule(&entry)
                    .map_err(|error| tracing::error!(entry = %entry.resource_name(), %error, "unusable schedule"))
                    .ok()?;
                Some(EntryState {
                    id: EntryId(entry.resource_name()),
                    schedule,
                    enabled: entry.enabled,
                    last_due: entry.cursor.unwrap_or(entry.create_time),
                })
            })
            .collect()
    }

    fn record(&self, decision: &Decision) {
        let name = decision.entry().0.clone();
        let (event, outcome) = match decision {
            // The duration of a fire is its lateness (the fire lateness metric).
            Decision::Fire(Fire { kind: FireKind::OnTime, due, lateness, .. }) => (
                Event::new("schedule.fired", "ok")
                    .duration(lateness.to_std().unwrap_or_default())
                    .detail(format!("due {}", due.format("%H:%M:%SZ"))),
                None,
            ),
            Decision::Fire(Fire { kind: FireKind::Late, due, lateness, .. }) => {
                let late = format!("late by {:.1} s", lateness.as_seconds_f64());
                (
                    Event::new("schedule.late", "late")
                        .duration(lateness.to_std().unwrap_or_default())
                        .detail(format!("due {due}; {late}")),
                    Some(late),
                )
            }
            Decision::Skip(skipped) => (
                Event::new("schedule.skipped", "skipped")
                    .detail(format!("due {}; the previous fire still runs", skipped.due)),
                Some("skipped: the previous fire still ran".to_owned()),
            ),
            Decision::Miss(missed) => (
                Event::new("schedule.missed", "missed")
                    .detail(format!("due {} to {}; past the grace period", missed.first_due, missed.last_due)),
                Some(format!("missed {}", missed.last_due)),
            ),
            Decision::Rebase(rebased) => {
                tracing::warn!(entry = %name, from = %rebased.from, to = %rebased.to, "schedule cursor reset after a clock jump back");
                (
                    Event::new("schedule.rebased", "ok").detail(format!("cursor {} -> {}", rebased.from, rebased.to)),
                    None,
                )
            }
        };
        let engine = &self.engine;
        let mut container = String::new();
        let saved = engine.entry(&name).and_then(|mut entry| {
            container = entry.container().to_owned();
            entry.cursor = Some(decision.cursor());
            if let Some(outcome) = outcome {
                entry.last_outcome = outcome;
            }
            engine.store().put_entry(&entry)?;
            Ok(())
        });
        engine.emit(event.entry(&name).container(&container).actor("schedule"));
        if let Err(error) = saved.and_then(|()| Ok(engine.store().make_durable()?)) {
            tracing::error!(entry = %name, %error, "recording a schedule decision");
        }
    }

    fn fire(&self, fire: &Fire) -> FireFuture {
        let engine = self.engine.clone();
        let name = fire.entry.0.clone();
        let due = fire.due;
        Box::pin(async move {
            let ran = tokio::task::spawn_blocking(move || engine.run_action(&name, due, "schedule")).await;
            match ran {
                Ok(Ok(result)) => {
                    tracing::info!(outcome = %result.outcome, detail = %result.detail, "schedule fire done")
                }
                Ok(Err(error)) => tracing::error!(%error, "schedule fire failed"),
                Err(error) => tracing::error!(%error, "schedule fire task failed"),
            }
        })
    }
}
