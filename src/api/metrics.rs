//! `GET /metrics` in the Prometheus text format. Durations are observed as
//! they happen, from the events the engine appends (snapshot duration,
//! freeze window, schedule lateness, failures by kind) and from the restore
//! replies of the service layer (downtime, which no event carries as a
//! number); per-container state and the expiry backlog come from the
//! store's records at each scrape, so they are never stale: the summary of
//! each container's snapshots is kept between scrapes and made again only
//! after a snapshot record changed (the store counts the changes).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::engine::views::{EventRecord, SnapshotState};
use crate::engine::{Engine, EngineResult};

type Labels = Vec<(&'static str, String)>;

/// What the daemon has observed since it started.
pub struct Metrics {
    registry: Registry,
    snapshot_duration: Histogram,
    freeze_window: Histogram,
    restore_downtime: Histogram,
    schedule_lateness: Histogram,
    failures: Family<Labels, Counter>,
    /// By kind of call (read, change).
    admission_wait: Family<Labels, Histogram, fn() -> Histogram>,
    /// Its two series, looked up once: every admitted call observes one, so
    /// no label is built per call.
    admission_wait_by_kind: Vec<(&'static str, Histogram)>,
    /// Each container's snapshots summed up, and the store's count of
    /// snapshot changes they were read at.
    tallies: parking_lot::Mutex<(u64, std::collections::HashMap<String, Tally>)>,
}

/// What a scrape says of one container's ready snapshots.
#[derive(Debug, Default)]
struct Tally {
    count: usize,
    newest: Option<chrono::DateTime<chrono::Utc>>,
    delta_bytes: u64,
    exclusive_bytes: Option<u64>,
    /// Expiry times, sorted: the backlog at a moment is a binary search.
    expiries: Vec<chrono::DateTime<chrono::Utc>>,
}

impl Tally {
    fn of(records: &[crate::engine::views::SnapshotRecord]) -> Tally {
        let mut tally = Tally { count: records.len(), ..Tally::default() };
        for record in records.iter().filter(|record| record.state == SnapshotState::Ready) {
            tally.newest = tally.newest.max(Some(record.create_time));
            tally.expiries.extend(record.expire_time);
            if let Some(sizes) = &record.sizes {
                tally.delta_bytes = tally.delta_bytes.saturating_add(sizes.delta_bytes);
                if let Some(bytes) = sizes.exclusive_bytes {
                    tally.exclusive_bytes = Some(tally.exclusive_bytes.unwrap_or(0).saturating_add(bytes));
                }
            }
        }
        tally.expiries.sort_unstable();
        tally
    }

    /// Ready snapshots past their expiry at `now`.
    fn expired(&self, now: chrono::DateTime<chrono::Utc>) -> usize {
        self.expiries.partition_point(|expire| *expire <= now)
    }
}

/// Buckets from 100 µs to about 100 s: a COW snapshot takes milliseconds,
/// a restore with a lifecycle seconds.
fn seconds_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 4.0, 11))
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("rollpoint");
        let metrics = Metrics {
            snapshot_duration: seconds_buckets(),
            freeze_window: seconds_buckets(),
            restore_downtime: seconds_buckets(),
            schedule_lateness: seconds_buckets(),
            failures: Family::default(),
            admission_wait: Family::new_with_constructor(seconds_buckets),
            admission_wait_by_kind: Vec::new(),
            registry: Registry::default(),
            tallies: parking_lot::Mutex::new((u64::MAX, std::collections::HashMap::new())),
        };
        for (name, help, histogram) in [
            ("snapshot_duration_seconds", "Time to take a snapshot, freeze to reply", &metrics.snapshot_duration),
            ("freeze_window_seconds", "How long a container was frozen for a snapshot", &metrics.freeze_window),
            (
                "restore_downtime_seconds",
                "From the stop of a container to its start again, per restore",
                &metrics.restore_downtime,
            ),
            (
                "schedule_fire_lateness_seconds",
                "How late a schedule entry fired after it was due",
                &metrics.schedule_lateness,
            ),
        ] {
            registry.register(name, help, histogram.clone());
        }
        registry.register("failures", "Failed operations, by event kind", metrics.failures.clone());
        registry.register(
            "admission_wait_seconds",
            "How long calls waited for an operation slot, by kind of call (read, change)",
            metrics.admission_wait.clone(),
        );
        let admission_wait_by_kind = crate::engine::CallKind::NAMES
            .into_iter()
            .map(|kind| (kind, metrics.admission_wait.get_or_create(&vec![("kind", kind.to_owned())]).clone()))
            .collect();
        Arc::new(Metrics { registry, admission_wait_by_kind, ..metrics })
    }

    /// Takes in one event of the timeline.
    pub fn observe(&self, event: &EventRecord) {
        if event.outcome == "failed" {
            self.failures.get_or_create(&vec![("kind", event.kind.clone())]).inc();
        }
        match event.kind.as_str() {
            "snapshot.created" => {
                if let Some(duration) = event.duration {
                    self.snapshot_duration.observe(duration.as_secs_f64());
                }
                if let Some(frozen_for) = event.frozen_for {
                    self.freeze_window.observe(frozen_for.as_secs_f64());
                }
            }
            "schedule.fired" | "schedule.late" => {
                if let Some(lateness) = event.duration {
                    self.schedule_lateness.observe(lateness.as_secs_f64());
                }
            }
            _ => {}
        }
    }

    /// Takes in the wait of one admitted call.
    pub fn observe_admission(&self, kind: &'static str, waited: std::time::Duration) {
        if let Some((_, histogram)) = self.admission_wait_by_kind.iter().find(|(known, _)| *known == kind) {
            histogram.observe(waited.as_secs_f64());
        }
    }

    /// Takes in the downtime of one restore.
    pub fn observe_restore_downtime(&self, downtime: std::time::Duration) {
        self.restore_downtime.observe(downtime.as_secs_f64());
    }

    /// The text of a scrape: what was observed, then the state of every
    /// container and the expiry backlog as the store has them now.
    pub fn render(&self, engine: &Engine) -> EngineResult<String> {
        let mut now_registry = Registry::with_prefix("rollpoint");
        let last_snapshot = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        let snapshots = Family::<Labels, Gauge>::default();
        let delta_bytes = Family::<Labels, Gauge>::default();
        let exclusive_bytes = Family::<Labels, Gauge>::default();
        let expiry_backlog = Gauge::<i64>::default();
        let free_ratio = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        let now = chrono::Utc::now();
        let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        let mut tallies = self.tallies.lock();
        // Read before the records: a change made while they are read makes
        // the next scrape read them again.
        let changes = engine.snapshot_changes();
        if tallies.0 != changes {
            tallies.1.clear();
            tallies.0 = changes;
        }
        let containers = engine.all_containers()?;
        tallies.1.retain(|id, _| containers.iter().any(|container| &container.id == id));
        for container in containers {
            let labels = vec![("container", container.id.clone())];
            if let Some(free) = engine.free_space(&container) {
                free_ratio.get_or_create(&labels).set(free.percent() / 100.0);
            }
            if !tallies.1.contains_key(&container.id) {
                let tally = Tally::of(&engine.all_snapshots_of(&container.id)?);
                tallies.1.insert(container.id.clone(), tally);
            }
            let tally = &tallies.1[&container.id];
            snapshots.get_or_create(&labels).set(gauge(tally.count as u64));
            expiry_backlog.inc_by(gauge(tally.expired(now) as u64));
            delta_bytes.get_or_create(&labels).set(gauge(tally.delta_bytes));
            if let Some(exclusive) = tally.exclusive_bytes {
                exclusive_bytes.get_or_create(&labels).set(gauge(exclusive));
            }
            if let Some(last) = tally.newest {
                #[allow(clippy::cast_precision_loss, reason = "seconds since 1970 fit an f64's mantissa")]
                let seconds = last.timestamp_millis() as f64 / 1000.0;
                last_snapshot.get_or_create(&labels).set(seconds);
            }
        }
        now_registry.register(
            "container_last_snapshot_timestamp_seconds",
            "When the newest ready snapshot of a container was taken (Unix time)",
            last_snapshot,
        );
        now_registry.register("container_snapshots", "Snapshots a container has", snapshots);
        now_registry.register(
            "container_snapshot_delta_bytes",
            "Sum of the deltas of a container's measured snapshots: file data each wrote since the one before (the page's \"412 MB delta\")",
            delta_bytes,
        );
        now_registry.register(
            "container_snapshot_exclusive_bytes",
            "Sum of the bytes only each snapshot holds (what deleting them gives back), where the filesystem tells (btrfs simple quotas)",
            exclusive_bytes,
        );
        let store_bytes = Gauge::<i64>::default();
        store_bytes.set(i64::try_from(engine.store_bytes()?).unwrap_or(i64::MAX));
        now_registry.register("store_bytes", "Bytes the daemon's store (its record) takes on disk", store_bytes);
        now_registry.register(
            "container_free_space_ratio",
            "Free space of the filesystem holding a container's volume (0-1)",
            free_ratio,
        );
        let floor = Gauge::<f64, AtomicU64>::default();
        floor.set(engine.space_floor_percent() / 100.0);
        now_registry.register(
            "space_floor_ratio",
            "Free space the daemon keeps on each filesystem (space_floor_percent, 0-1); 0: no guard",
            floor,
        );
        let queued = Family::<Labels, Gauge>::default();
        let in_flight = Family::<Labels, Gauge>::default();
        for (kind, waiting, running) in engine.admission_load() {
            let labels = vec![("kind", kind.to_owned())];
            queued.get_or_create(&labels).set(i64::try_from(waiting).unwrap_or(i64::MAX));
            in_flight.get_or_create(&labels).set(i64::try_from(running).unwrap_or(i64::MAX));
        }
        now_registry.register("admission_queued_calls", "Calls waiting for an operation slot, by kind", queued);
        now_registry.register("admission_in_flight_calls", "Calls holding an operation slot, by kind", in_flight);
        now_registry.register(
            "expiry_backlog_snapshots",
            "Snapshots past their expiry time, not yet deleted",
            expiry_backlog,
        );
        let unrecorded = Gauge::<i64>::default();
        unrecorded.set(i64::try_from(engine.unrecorded_volumes().len()).unwrap_or(i64::MAX));
        now_registry.register(
            "unrecorded_snapshot_volumes",
            "Snapshot volumes found on disk at start that no record knows (left in place; `rollpoint recover` re-creates their records)",
            unrecorded,
        );
        let mut text = String::new();
        let written = encode_registry(&mut text, &self.registry)
            .and_then(|()| encode_registry(&mut text, &now_registry))
            .and_then(|()| encode_eof(&mut text));
        written.map_err(|_| crate::engine::EngineError::Internal { reason: "encoding the metrics".into() })?;
        Ok(text)
    }
}

/// Feeds every event the engine appends to `metrics` until `stop`.
pub fn spawn_recorder(engine: Arc<Engine>, metrics: Arc<Metrics>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut events = engine.events().subscribe();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(event) => metrics.observe(&event),
                    // Missed some under load: the histograms lose those, the
                    // scrape's state read from the store does not.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                _ = stop.wait_for(|stopping| *stopping) => return,
            }
        }
    });
}
