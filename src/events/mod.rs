//! The audit timeline: every engine action appends an event to the store
//! (durable with the action it records) and broadcasts it to live watchers.
//! Each event is also a structured log record.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::store::{EventRecord, Store, StoreError};

/// How many live events a slow watcher may fall behind before it re-reads
/// from the store.
const LIVE_BUFFER: usize = 1024;

pub struct EventLog {
    store: Arc<Store>,
    live: broadcast::Sender<EventRecord>,
    /// Held from taking a sequence number to broadcasting the event, so
    /// events are stored and sent in sequence order: a watcher drops what is
    /// not newer than the last sequence it sent, and reconnects after it.
    appending: parking_lot::Mutex<()>,
}

/// Builds an event; the log fills in the sequence and, when unset, the time.
#[derive(Debug, Clone, Default)]
pub struct Event(pub EventRecord);

impl Event {
    pub fn new(kind: &str, outcome: &str) -> Event {
        Event(EventRecord { kind: kind.into(), outcome: outcome.into(), ..EventRecord::default() })
    }

    pub fn container(mut self, container: &str) -> Self {
        self.0.container = container.into();
        self
    }

    pub fn snapshot(mut self, snapshot: &str) -> Self {
        self.0.snapshot = snapshot.into();
        self
    }

    pub fn entry(mut self, entry: &str) -> Self {
        self.0.entry = entry.into();
        self
    }

    pub fn actor(mut self, actor: &str) -> Self {
        self.0.actor = actor.into();
        self
    }

    pub fn duration(mut self, duration: std::time::Duration) -> Self {
        self.0.duration = Some(duration);
        self
    }

    pub fn frozen_for(mut self, frozen_for: std::time::Duration) -> Self {
        self.0.frozen_for = Some(frozen_for);
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.0.detail = detail.into();
        self
    }
}

impl EventLog {
    pub fn new(store: Arc<Store>) -> EventLog {
        EventLog { store, live: broadcast::channel(LIVE_BUFFER).0, appending: parking_lot::Mutex::new(()) }
    }

    /// Appends an event (not flushed: see [`Store::append_event`]), logs it,
    /// and sends it to live watchers. Returns the stored record.
    pub fn append(&self, event: Event, now: chrono::DateTime<chrono::Utc>) -> Result<EventRecord, StoreError> {
        let mut record = event.0;
        if record.time == chrono::DateTime::<chrono::Utc>::default() {
            record.time = now;
        }
        let appending = self.appending.lock();
        self.store.append_event(&mut record)?;
        let _ = self.live.send(record.clone());
        drop(appending);
        tracing::info!(
            target: "rollpoint::event",
            sequence = record.sequence,
            kind = %record.kind,
            container = %record.container,
            snapshot = %record.snapshot,
            entry = %record.entry,
            actor = %record.actor,
            outcome = %record.outcome,
            duration_ms = record.duration.map(|d| d.as_secs_f64() * 1e3),
            frozen_for_ms = record.frozen_for.map(|d| d.as_secs_f64() * 1e3),
            detail = %record.detail,
            "{} {}",
            record.kind,
            subject(&record),
        );
        Ok(record)
    }

    /// A receiver of the events appended from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<EventRecord> {
        self.live.subscribe()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// What an event is about, for the log line: `web-1/v1`, `web-1`, `nightly`.
fn subject(record: &EventRecord) -> String {
    let parts = [&record.container, &record.snapshot, &record.entry];
    parts.iter().filter(|p| !p.is_empty()).map(|p| p.as_str()).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_line_names_what_the_event_is_about() {
        let mut record = EventRecord { container: "web-1".into(), snapshot: "v1".into(), ..EventRecord::default() };
        assert_eq!(subject(&record), "web-1/v1");
        record.snapshot.clear();
        assert_eq!(subject(&record), "web-1");
        record.container.clear();
        record.entry = "nightly".into();
        assert_eq!(subject(&record), "nightly");
    }
}
