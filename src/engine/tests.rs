//! The engine's logic against the in-memory fakes (no root needed).

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeZone;

use super::fakes::{FakeBackend, FakeClock, FakeFreezer, FakeLifecycle, FakeVolume};
use super::*;
use crate::backend::BackendError;
use crate::freezer::FreezeState;
use crate::store::{Intent, SnapshotOrigin, SnapshotState, Store};

const VOLUME: &str = "/fake/db-1";
const CGROUP: &str = "/cg/db-1";

struct Fixture {
    _dir: tempfile::TempDir,
    engine: Engine,
    backend: Arc<FakeBackend>,
    freezer: Arc<FakeFreezer>,
    lifecycle: Arc<FakeLifecycle>,
    clock: Arc<FakeClock>,
}

fn fixture() -> Fixture {
    fixture_with(EngineConfig { lock_wait: Duration::from_millis(50), ..EngineConfig::default() })
}

/// A fresh engine over the fakes, with container db-1 registered.
fn fixture_with(config: EngineConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let backend = FakeBackend::with_volume(VOLUME);
    let freezer = FakeFreezer::with_cgroup(CGROUP);
    let clock = FakeClock::at(chrono::Utc.with_ymd_and_hms(2026, 5, 4, 2, 55, 0).unwrap());
    let lifecycle = Arc::new(FakeLifecycle::default());
    let engine = Engine::new(store, backend.clone(), freezer.clone(), lifecycle.clone(), clock.clone(), config);
    engine
        .register_container(RegisterRequest {
            id: "db-1".into(),
            cgroup: CGROUP.into(),
            subvolume: VOLUME.into(),
            ..Default::default()
        })
        .unwrap();
    Fixture { _dir: dir, engine, backend, freezer, lifecycle, clock }
}

impl Fixture {
    /// A new engine over the same store and fakes: the daemon started again.
    fn restart(&self) -> Engine {
        let Fixture { engine, backend, freezer, lifecycle, clock, .. } = self;
        let config = engine.config.clone();
        Engine::new(engine.store.clone(), backend.clone(), freezer.clone(), lifecycle.clone(), clock.clone(), config)
    }
}

fn create(engine: &Engine, name: &str, alias: &str, expiry_days: u32) -> EngineResult<crate::store::SnapshotRecord> {
    engine.create_snapshot(CreateRequest {
        container: "db-1".into(),
        name: name.into(),
        alias: alias.into(),
        expiry_days,
        comment: String::new(),
        origin: SnapshotOrigin::Api,
        actor: "test".into(),
    })
}

#[test]
fn create_flushes_then_freezes_snapshots_and_thaws() {
    let f = fixture();
    let snapshot = create(&f.engine, "", "rollback-point", 7).unwrap();
    assert_eq!(snapshot.name, "snap-2026-05-04");
    assert_eq!(snapshot.alias.as_deref(), Some("rollback-point"));
    assert_eq!(snapshot.expire_time, Some(f.clock.now() + chrono::Duration::days(7)));
    assert!(snapshot.read_only);
    assert_eq!(
        *f.backend.calls.lock(),
        ["flush".to_string(), format!("prepare {}", snapshot.location), format!("snapshot {}", snapshot.location)]
    );
    assert_eq!(*f.freezer.calls.lock(), vec![format!("freeze {CGROUP}"), format!("thaw {CGROUP}")]);
    assert_eq!(f.freezer.state_of(CGROUP), FreezeState::Thawed);
    assert!(f.engine.store().intents().unwrap().is_empty());
}

#[test]
fn a_snapshot_refused_in_preparation_never_freezes_the_container() {
    let f = fixture();
    *f.backend.pool_full.lock() = true;
    let error = create(&f.engine, "v1", "", 0).unwrap_err();
    assert!(matches!(error, EngineError::Backend(BackendError::PoolFull { .. })), "{error:?}");
    assert!(f.freezer.calls.lock().is_empty(), "froze for a snapshot refused up front: {:?}", f.freezer.calls.lock());
    assert!(!f.backend.calls.lock().iter().any(|c| c.starts_with("snapshot")));
    assert!(f.engine.store().intents().unwrap().is_empty());
    assert!(f.engine.snapshot("db-1", "v1").is_err());
}

#[test]
fn default_names_count_up_and_aliases_move() {
    let f = fixture();
    let first = create(&f.engine, "", "rollback-point", 0).unwrap();
    let second = create(&f.engine, "", "rollback-point", 0).unwrap();
    assert_eq!(second.name, "snap-2026-05-04-2");
    assert_eq!(f.engine.snapshot("db-1", "rollback-point").unwrap().name, second.name);
    assert_eq!(f.engine.snapshot("db-1", &first.name).unwrap().alias, None);
}

#[test]
fn a_cgroup_frozen_by_someone_else_is_left_frozen() {
    let f = fixture();
    f.freezer.set(CGROUP, FreezeState::Frozen);
    let snapshot = create(&f.engine, "", "", 0).unwrap();
    assert!(f.freezer.calls.lock().is_empty(), "the daemon froze or thawed a cgroup it did not freeze");
    assert_eq!(f.freezer.state_of(CGROUP), FreezeState::Frozen);
    assert_eq!(snapshot.frozen_for, Duration::ZERO);
}

#[test]
fn names_aliases_and_containers_are_checked() {
    let f = fixture();
    create(&f.engine, "before", "", 0).unwrap();
    assert!(matches!(create(&f.engine, "before", "", 0), Err(EngineError::AlreadyExists { .. })));
    assert!(matches!(create(&f.engine, "x", "before", 0), Err(EngineError::InvalidArgument { field: "alias", .. })));
    assert!(matches!(create(&f.engine, "../etc", "", 0), Err(EngineError::InvalidArgument { field: "name", .. })));
    assert!(matches!(f.engine.snapshot("db-2", "before"), Err(EngineError::NotFound { .. })));
    assert!(matches!(f.engine.snapshot("db-1", "nope"), Err(EngineError::NotFound { .. })));
}

#[test]
fn get_snapshot_reads_exclusive_bytes_and_survives_a_failure_to() {
    let f = fixture();
    let snapshot = create(&f.engine, "snap-1", "rollback-point", 0).unwrap();
    f.backend.exclusive.lock().insert(snapshot.location.clone(), 4 << 20);
    f.backend.calls.lock().clear();

    // By alias, as GetSnapshot is asked; the reply carries the figure.
    let (record, bytes) = f.engine.snapshot_with_exclusive_bytes("db-1", "rollback-point").unwrap();
    assert_eq!((record.name.as_str(), bytes), ("snap-1", Some(4 << 20)));
    let message = crate::api::convert::snapshot_with_exclusive_bytes(&record, bytes);
    assert_eq!(message.exclusive_bytes, 4 << 20);
    assert_eq!(*f.backend.calls.lock(), vec![format!("exclusive {}", snapshot.location)]);

    // A backend that cannot tell: the lookup still answers, with 0 in the reply.
    *f.backend.fail_exclusive.lock() = true;
    let (record, bytes) = f.engine.snapshot_with_exclusive_bytes("db-1", "snap-1").unwrap();
    assert_eq!((record.name.as_str(), bytes), ("snap-1", None));
    assert_eq!(crate::api::convert::snapshot_with_exclusive_bytes(&record, bytes).exclusive_bytes, 0);
    assert!(matches!(f.engine.snapshot_with_exclusive_bytes("db-1", "nope"), Err(EngineError::NotFound { .. })));

    // Listings stay cheap: the backend is not asked; nor is it about a
    // snapshot whose volume is gone.
    f.backend.calls.lock().clear();
    let lost = crate::store::SnapshotRecord { state: SnapshotState::Lost, ..record };
    f.engine.store().put_snapshots(&[&lost]).unwrap();
    assert_eq!(f.engine.snapshot_with_exclusive_bytes("db-1", "snap-1").unwrap().1, None);
    assert_eq!(f.engine.list_snapshots("db-1", 0, "").unwrap().items.len(), 1);
    f.engine.snapshot("db-1", "snap-1").unwrap();
    assert!(f.backend.calls.lock().is_empty(), "{:?}", f.backend.calls.lock());
}

#[test]
fn the_freeze_budget_thaws_a_container_whose_backend_hangs() {
    let f = fixture_with(EngineConfig { freeze_budget: Duration::from_millis(100), ..EngineConfig::default() });
    *f.backend.snapshot_delay.lock() = Some(Duration::from_millis(600));
    let engine = &f.engine;
    let error = create(engine, "slow", "", 0).unwrap_err();
    assert!(matches!(error, EngineError::DeadlineExceeded { .. }), "{error:?}");
    assert_eq!(f.freezer.state_of(CGROUP), FreezeState::Thawed, "the watchdog did not thaw");
    assert!(engine.list_snapshots("db-1", 0, "").unwrap().items.is_empty());
    // The worker deletes the snapshot its backend call made after all.
    std::thread::sleep(Duration::from_millis(800));
    assert!(!f.backend.exists("/fake/.rollpoint/db-1/slow"), "the abandoned snapshot was left behind");
}

#[test]
fn expiry_deletes_due_snapshots_only() {
    let f = fixture();
    let short = create(&f.engine, "short", "", 1).unwrap();
    let long = create(&f.engine, "long", "", 7).unwrap();
    create(&f.engine, "forever", "", 0).unwrap();
    assert_eq!(f.engine.next_expiry().unwrap(), short.expire_time);
    f.clock.advance(chrono::Duration::days(2));
    let expired = f.engine.expire_due().unwrap();
    assert_eq!(expired.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["short"]);
    assert!(!f.backend.exists(&short.location));
    assert_eq!(f.engine.next_expiry().unwrap(), long.expire_time);
}

#[test]
fn update_moves_the_alias_and_resets_expiry() {
    let f = fixture();
    create(&f.engine, "a", "rollback-point", 0).unwrap();
    create(&f.engine, "b", "", 0).unwrap();
    let b = f
        .engine
        .update_snapshot(
            "db-1",
            "b",
            UpdateRequest { alias: Some("rollback-point".into()), expiry_days: Some(3), ..Default::default() },
        )
        .unwrap();
    assert_eq!(b.expire_time, Some(f.clock.now() + chrono::Duration::days(3)));
    assert_eq!(f.engine.snapshot("db-1", "rollback-point").unwrap().name, "b");
    assert_eq!(f.engine.snapshot("db-1", "a").unwrap().alias, None);
}

#[test]
fn listing_pages_follow_creation_and_tokens_are_sort_keys() {
    let f = fixture();
    // Names against the order of creation; d and c at the same instant.
    for (name, minutes) in [("e", 1), ("d", 1), ("c", 0), ("b", 1), ("a", 1)] {
        f.clock.advance(chrono::Duration::minutes(minutes));
        create(&f.engine, name, "", 0).unwrap();
    }
    let first = f.engine.list_snapshots("db-1", 2, "").unwrap();
    let names =
        |page: &Page<crate::store::SnapshotRecord>| page.items.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&first), ["e", "c"]);
    // The token format of every release so far: nanoseconds, '|', name.
    let nanos = first.items[1].create_time.timestamp_nanos_opt().unwrap();
    assert_eq!(first.next_page_token, format!("{nanos:020}|c"));
    // Deleting the snapshot a token points at does not break the listing.
    f.engine.delete_snapshot("db-1", "c", "test").unwrap();
    let second = f.engine.list_snapshots("db-1", 2, &first.next_page_token).unwrap();
    assert_eq!(names(&second), ["d", "b"]);
    let third = f.restart().list_snapshots("db-1", 2, &second.next_page_token).unwrap();
    assert_eq!(names(&third), ["a"]);
    assert!(third.next_page_token.is_empty());
    assert_eq!(f.engine.snapshot_count("db-1").unwrap(), 4);
    assert!(matches!(
        f.engine.list_snapshots("db-1", -1, ""),
        Err(EngineError::InvalidArgument { field: "page_size", .. })
    ));
    assert!(matches!(
        f.engine.list_snapshots("db-1", 2, &"9".repeat(513)),
        Err(EngineError::InvalidArgument { field: "page_token", .. })
    ));
}

#[test]
fn an_alias_cannot_be_another_snapshots_name() {
    let f = fixture();
    create(&f.engine, "a", "", 0).unwrap();
    create(&f.engine, "b", "", 0).unwrap();
    let update = UpdateRequest { alias: Some("a".into()), ..Default::default() };
    assert!(matches!(
        f.engine.update_snapshot("db-1", "b", update),
        Err(EngineError::InvalidArgument { field: "alias", .. })
    ));
    assert!(matches!(create(&f.engine, "c", "b", 0), Err(EngineError::InvalidArgument { field: "alias", .. })));
    // Nor a snapshot be named like an alias.
    f.engine.update_snapshot("db-1", "b", UpdateRequest { alias: Some("keep".into()), ..Default::default() }).unwrap();
    assert!(matches!(create(&f.engine, "keep", "", 0), Err(EngineError::AlreadyExists { .. })));
    assert_eq!(f.engine.snapshot("db-1", "keep").unwrap().name, "b");
}

#[test]
fn recovery_thaws_rolls_back_and_reconciles() {
    let f = fixture();
    let kept = create(&f.engine, "kept", "", 0).unwrap();
    let gone = create(&f.engine, "gone", "", 0).unwrap();
    f.backend.volumes.lock().remove(&gone.location);
    // A crash inside a create: the cgroup is frozen and the volume made.
    f.freezer.set(CGROUP, FreezeState::Frozen);
    let half = "/fake/.rollpoint/db-1/half".to_string();
    f.backend.add(&half, FakeVolume { read_only: true, ..FakeVolume::default() });
    f.engine
        .store()
        .begin_intent(&Intent::Create {
            container: "db-1".into(),
            name: "half".into(),
            location: half.clone(),
            cgroup: CGROUP.into(),
            freezes: true,
        })
        .unwrap();
    f.backend.add("/fake/.rollpoint/db-1/stray", FakeVolume { read_only: true, ..FakeVolume::default() });

    let report = f.engine.recover().unwrap();
    assert_eq!(report.thawed, vec![CGROUP.to_string()]);
    assert_eq!(report.rolled_back, vec!["db-1/half".to_string()]);
    assert_eq!(report.lost, vec![gone.resource_name()]);
    assert_eq!(report.unknown, vec!["/fake/.rollpoint/db-1/stray".to_string()]);
    assert_eq!(f.freezer.state_of(CGROUP), FreezeState::Thawed);
    assert!(!f.backend.exists(&half));
    assert_eq!(f.engine.snapshot("db-1", "gone").unwrap().state, SnapshotState::Lost);
    assert_eq!(f.engine.snapshot("db-1", &kept.name).unwrap().state, SnapshotState::Ready);
    assert!(f.engine.store().intents().unwrap().is_empty());
}

#[test]
fn an_intent_recovery_cannot_settle_holds_its_container_not_the_daemon() {
    let f = fixture();
    let half = "/fake/.rollpoint/db-1/half".to_string();
    f.backend.add(&half, FakeVolume { read_only: true, ..FakeVolume::default() });
    f.backend.busy.lock().insert(half.clone());
    let intent = Intent::Create {
        container: "db-1".into(),
        name: "half".into(),
        location: half.clone(),
        cgroup: CGROUP.into(),
        freezes: false,
    };
    f.engine.store().begin_intent(&intent).unwrap();

    let report = f.engine.recover().expect("recovery goes on");
    assert_eq!(report.unsettled.len(), 1, "{report:?}");
    assert!(report.unsettled[0].starts_with("db-1: ") && report.unsettled[0].contains("in use"), "{report:?}");
    assert_eq!(f.engine.store().intents().unwrap().len(), 1, "kept for the next start");
    let refused = create(&f.engine, "next", "", 0).unwrap_err();
    assert!(matches!(&refused, EngineError::FailedPrecondition { reason } if reason.contains("in use")), "{refused}");
    let events = f.engine.store().events_before(u64::MAX, 10).unwrap();
    assert!(
        events.iter().any(|e| e.kind == "recovery" && e.outcome == "failed" && e.container == "db-1"),
        "{events:?}"
    );

    // Once the cause is gone, the next start settles it.
    f.backend.busy.lock().clear();
    let again = f.restart();
    let report = again.recover().unwrap();
    assert!(report.unsettled.is_empty() && report.rolled_back == ["db-1/half"], "{report:?}");
    assert!(create(&again, "next", "", 0).is_ok());
}

#[test]
fn unregister_asks_what_to_do_with_snapshots() {
    let f = fixture();
    let snapshot = create(&f.engine, "s", "", 0).unwrap();
    assert!(matches!(
        f.engine.unregister_container("db-1", false, false, "test"),
        Err(EngineError::FailedPrecondition { .. })
    ));
    assert_eq!(f.engine.unregister_container("db-1", true, false, "test").unwrap(), 1);
    assert!(!f.backend.exists(&snapshot.location));
    assert!(matches!(f.engine.container("db-1"), Err(EngineError::NotFound { .. })));
}

// ------------------------------------------------------------------ restore

#[test]
fn restore_brings_back_the_snapshot_and_keeps_the_present() {
    let f = fixture();
    f.backend.write(VOLUME, "v1");
    create(&f.engine, "", "rollback-point", 7).unwrap();
    f.backend.write(VOLUME, "v2 broken by the migration");
    f.clock.advance(chrono::Duration::minutes(5));
    let outcome = f.engine.restore_snapshot("db-1", "rollback-point", "", "test").unwrap();
    assert_eq!(f.backend.content(VOLUME), "v1");
    assert!(!f.backend.volumes.lock()[VOLUME].read_only, "the restored volume must be writable");
    assert_eq!(outcome.pre_restore_snapshot, "pre-restore-2026-05-04");
    let pre = f.engine.snapshot("db-1", &outcome.pre_restore_snapshot).unwrap();
    assert_eq!(pre.origin, SnapshotOrigin::PreRestore);
    assert!(pre.read_only);
    assert_eq!(f.backend.content(&pre.location), "v2 broken by the migration");
    assert_eq!(pre.expire_time, Some(f.clock.now() + chrono::Duration::days(7)));
    assert_eq!(*f.lifecycle.calls.lock(), ["stop db-1", "start db-1"]);
    assert_eq!(f.freezer.calls.lock().last().unwrap(), &format!("kill {CGROUP}"));
    assert!(f.engine.store().intents().unwrap().is_empty());
    // Newer snapshots stay; no staging copy is left behind.
    let names: Vec<_> = f.engine.list_snapshots("db-1", 0, "").unwrap().items.into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["snap-2026-05-04", "pre-restore-2026-05-04"]);
    assert!(!f.backend.volumes.lock().keys().any(|k| k.contains("staging")));

    // Undo: restore the pre-restore snapshot.
    f.engine.restore_snapshot("db-1", &outcome.pre_restore_snapshot, "", "test").unwrap();
    assert_eq!(f.backend.content(VOLUME), "v2 broken by the migration");
}

#[test]
fn repeating_a_restore_changes_nothing() {
    let f = fixture();
    create(&f.engine, "s", "", 0).unwrap();
    let first = f.engine.restore_snapshot("db-1", "s", "", "test").unwrap();
    let again = f.engine.restore_snapshot("db-1", "s", "", "test").unwrap();
    assert!(again.already_restored);
    assert_eq!(f.engine.list_snapshots("db-1", 0, "").unwrap().items.len(), 2, "a second swap was made");
    // After a write it is a real restore again.
    f.backend.write(VOLUME, "changed");
    let third = f.engine.restore_snapshot("db-1", "s", "", "test").unwrap();
    assert!(!third.already_restored);
    assert_ne!(third.pre_restore_snapshot, first.pre_restore_snapshot);
}

#[test]
fn a_request_id_repeat_returns_the_first_answer() {
    let f = fixture();
    create(&f.engine, "s", "", 0).unwrap();
    let first = f.engine.restore_snapshot("db-1", "s", "req-1", "test").unwrap();
    f.backend.write(VOLUME, "changed");
    let repeat = f.engine.restore_snapshot("db-1", "s", "req-1", "test").unwrap();
    assert_eq!(repeat, first);
    assert_eq!(f.backend.content(VOLUME), "changed", "a repeated request id restored again");
}

#[test]
fn a_failed_stop_leaves_everything_as_it_was() {
    let f = fixture();
    f.backend.write(VOLUME, "present");
    create(&f.engine, "s", "", 0).unwrap();
    f.backend.write(VOLUME, "present 2");
    *f.lifecycle.fail_stop.lock() = true;
    let error = f.engine.restore_snapshot("db-1", "s", "", "test").unwrap_err();
    assert!(matches!(error, EngineError::FailedPrecondition { .. }), "{error:?}");
    assert_eq!(f.backend.content(VOLUME), "present 2");
    assert!(f.engine.store().intents().unwrap().is_empty());
    assert_eq!(f.lifecycle.calls.lock().last().unwrap(), "start db-1", "the container was not started again");
}

#[test]
fn restore_refuses_unknown_and_foreign_snapshots() {
    let f = fixture();
    assert!(matches!(f.engine.restore_snapshot("db-1", "nope", "", "test"), Err(EngineError::NotFound { .. })));
    assert!(matches!(f.engine.restore_snapshot("db-2", "s", "", "test"), Err(EngineError::NotFound { .. })));
    assert!(matches!(
        f.engine.restore_snapshot("db-1", "s", &"x".repeat(200), "test"),
        Err(EngineError::InvalidArgument { field: "request_id", .. })
    ));
}

/// Builds the state a crash leaves at each restore step, then checks that
/// recovery ends with the old state or the restored one, and the container
/// started, never without a volume.
#[test]
fn recovery_finishes_or_rolls_back_a_restore_at_every_step() {
    use crate::store::RestoreStep;
    for step in [
        RestoreStep::Stopping,
        RestoreStep::Cloning,
        RestoreStep::Exchanging,
        RestoreStep::Recording,
        RestoreStep::Starting,
    ] {
        for exchanged in [false, true] {
            if matches!(step, RestoreStep::Stopping | RestoreStep::Cloning) && exchanged {
                continue;
            }
            if matches!(step, RestoreStep::Recording | RestoreStep::Starting) && !exchanged {
                continue;
            }
            let f = fixture();
            f.backend.write(VOLUME, "old");
            let target = create(&f.engine, "s", "", 0).unwrap();
            f.backend.write(VOLUME, "present");
            let staging = "/fake/.rollpoint/db-1/restore-staging-1".to_string();
            let staged = if step == RestoreStep::Stopping {
                String::new()
            } else {
                use crate::backend::Backend;
                f.backend.create_snapshot(&target.location, &staging, false).unwrap().uuid
            };
            if exchanged {
                use crate::backend::Backend;
                f.backend.exchange(&staging, VOLUME).unwrap();
            }
            let intent = restore_intent(step, &staging, staged);
            f.engine.store().begin_intent(&Intent::Restore(intent)).unwrap();
            let report = f.engine.recover().unwrap();
            let content = f.backend.content(VOLUME);
            if exchanged {
                assert_eq!(content, "old", "{step:?}: finished restore");
                assert_eq!(report.restores_finished.len(), 1);
                let pre = f.engine.snapshot("db-1", "pre-restore-x").unwrap();
                assert_eq!(f.backend.content(&pre.location), "present");
                assert!(f.backend.volumes.lock()[&pre.location].read_only);
            } else {
                assert_eq!(content, "present", "{step:?}: rolled back");
                assert_eq!(report.restores_rolled_back.len(), 1);
            }
            assert!(!f.backend.exists(&staging), "{step:?}: staging left");
            assert_eq!(f.lifecycle.calls.lock().last().map(String::as_str), Some("start db-1"), "{step:?}");
            assert!(f.engine.store().intents().unwrap().is_empty());
            assert!(report.unknown.is_empty(), "{step:?}: {:?}", report.unknown);
        }
    }
}

/// The intent of a restore of db-1 to `s`, killed at `step`.
fn restore_intent(step: crate::store::RestoreStep, staging: &str, staging_uuid: String) -> crate::store::RestoreIntent {
    crate::store::RestoreIntent {
        container: "db-1".into(),
        target: "s".into(),
        pre_restore_name: "pre-restore-x".into(),
        volume: VOLUME.into(),
        staging: staging.into(),
        staging_uuid,
        aside: "/fake/.rollpoint/db-1/pre-restore-x".into(),
        cgroup: CGROUP.into(),
        step,
        request_id: String::new(),
        generation: None,
        restore_id: "db-1-1".into(),
        post_restore_ran: false,
    }
}

/// Killed after the start command ran (the container runs again), recovery
/// finishes the record and does not run the start a second time.
#[test]
fn a_finished_restore_does_not_start_a_container_started_already() {
    use crate::backend::Backend;
    use crate::store::RestoreStep;
    for step in [RestoreStep::Starting, RestoreStep::Recording] {
        let f = fixture();
        f.backend.write(VOLUME, "old");
        let target = create(&f.engine, "s", "", 0).unwrap();
        f.backend.write(VOLUME, "present");
        let staging = "/fake/.rollpoint/db-1/restore-staging-1";
        let staged = f.backend.create_snapshot(&target.location, staging, false).unwrap().uuid;
        f.backend.exchange(staging, VOLUME).unwrap();
        f.freezer.running.lock().insert(CGROUP.into());
        f.engine.store().begin_intent(&Intent::Restore(restore_intent(step, staging, staged))).unwrap();
        let report = f.engine.recover().unwrap();
        assert_eq!(report.restores_finished.len(), 1, "{step:?}");
        assert_eq!(f.backend.content(VOLUME), "old", "{step:?}");
        assert!(f.engine.snapshot("db-1", "pre-restore-x").is_ok(), "{step:?}: the pre-restore snapshot is recorded");
        assert!(f.lifecycle.calls.lock().is_empty(), "{step:?}: started twice: {:?}", f.lifecycle.calls.lock());
    }
}

#[test]
fn a_rolled_back_restore_does_not_start_a_container_that_still_runs() {
    use crate::store::RestoreStep;
    // Killed while stopping, before the stop ran: the container still runs.
    let f = fixture();
    create(&f.engine, "s", "", 0).unwrap();
    f.freezer.running.lock().insert(CGROUP.into());
    let intent = restore_intent(RestoreStep::Stopping, "/fake/.rollpoint/db-1/restore-staging-1", String::new());
    f.engine.store().begin_intent(&Intent::Restore(intent)).unwrap();
    let report = f.engine.recover().unwrap();
    assert_eq!(report.restores_rolled_back.len(), 1);
    assert!(f.lifecycle.calls.lock().is_empty(), "started a second copy: {:?}", f.lifecycle.calls.lock());

    // A stop that fails leaves it running too: the failed restore does not start it.
    let f = fixture();
    create(&f.engine, "s", "", 0).unwrap();
    f.freezer.running.lock().insert(CGROUP.into());
    *f.lifecycle.fail_stop.lock() = true;
    assert!(f.engine.restore_snapshot("db-1", "s", "", "uid:0").is_err());
    assert_eq!(*f.lifecycle.calls.lock(), ["stop db-1"]);
}

#[test]
fn the_timeline_records_each_action_in_order() {
    let f = fixture();
    create(&f.engine, "s", "rollback-point", 1).unwrap();
    f.engine.restore_snapshot("db-1", "rollback-point", "", "uid:0").unwrap();
    f.clock.advance(chrono::Duration::days(2));
    f.engine.expire_due().unwrap();
    let events = f.engine.store().events_after(0, 100).unwrap();
    let steps: Vec<_> = events.iter().filter(|e| e.kind == "restore.step").map(|e| e.detail.as_str()).collect();
    assert_eq!(steps, ["prepare", "stop", "swap", "start", "record"]);
    let events: Vec<_> = events.into_iter().filter(|e| e.kind != "restore.step").collect();
    let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["container.registered", "snapshot.created", "restore.started", "restore.finished", "snapshot.expired"]
    );
    assert!(events.windows(2).all(|w| w[0].sequence < w[1].sequence));
    let events: Vec<_> = events.into_iter().filter(|e| e.kind != "restore.step").collect();
    assert_eq!(events[1].snapshot, "s");
    assert!(events[1].frozen_for.is_some());
    assert_eq!(events[3].actor, "uid:0");
    assert_eq!(events[4].actor, "daemon");
}

#[test]
fn names_held_by_volumes_without_records_are_skipped() {
    let f = fixture();
    // A subvolume left from a forgotten registration, with today's name.
    f.backend.add("/fake/.rollpoint/db-1/snap-2026-05-04", FakeVolume { read_only: true, ..FakeVolume::default() });
    assert_eq!(create(&f.engine, "", "", 0).unwrap().name, "snap-2026-05-04-2");
    assert!(matches!(create(&f.engine, "snap-2026-05-04", "", 0), Err(EngineError::AlreadyExists { .. })));
}

// ------------------------------------------------------------------ entries

fn snapshot_entry(schedule: &str) -> super::entries::EntrySpec {
    super::entries::EntrySpec {
        id: "nightly".into(),
        schedule: schedule.into(),
        time_zone: String::new(),
        action: crate::store::EntryAction::Snapshot {
            container: "db-1".into(),
            alias: "rollback-point".into(),
            expiry_days: 7,
            export_to: String::new(),
            group: String::new(),
        },
        comment: "pre-migration snapshot".into(),
        enabled: true,
        random_delay_seconds: 0,
        container: String::new(),
        environment: Default::default(),
    }
}

fn command_entry(container: &str) -> super::entries::EntrySpec {
    super::entries::EntrySpec {
        id: "pre-migration".into(),
        action: crate::store::EntryAction::Command {
            command: "curl -X POST $SNAP_URL".into(),
            timeout: std::time::Duration::from_secs(60),
        },
        container: container.into(),
        ..snapshot_entry("55 2 * * *")
    }
}

#[test]
fn a_command_entry_is_bound_to_a_registered_container_and_listed_with_it() {
    let f = fixture();
    let bound = f.engine.create_entry("root", command_entry("db-1"), "test").unwrap();
    assert_eq!(bound.container(), "db-1");
    assert!(matches!(
        f.engine.create_entry("root", super::entries::EntrySpec { id: "x".into(), ..command_entry("db-9") }, "test"),
        Err(EngineError::NotFound { .. })
    ));
    // A snapshot entry's container is its action's; another one is refused.
    let other = super::entries::EntrySpec { container: "db-2".into(), ..snapshot_entry("55 2 * * *") };
    assert!(matches!(
        f.engine.create_entry("root", other, "test"),
        Err(EngineError::InvalidArgument { field: "entry.container", .. })
    ));
    let same = super::entries::EntrySpec { container: "db-1".into(), ..snapshot_entry("55 2 * * *") };
    let snapshot_entry = f.engine.create_entry("root", same, "test").unwrap();
    assert_eq!((snapshot_entry.container.as_str(), snapshot_entry.container()), ("", "db-1"));
    let listed = f.engine.list_entries("", "db-1", 0, "").unwrap().items;
    assert_eq!(listed.len(), 2);
    assert!(f.engine.list_entries("", "db-2", 0, "").unwrap().items.is_empty());
    // Unbinding, and the action turned into a snapshot: bound to nothing.
    let patch = super::entries::EntryPatch { container: Some(String::new()), ..Default::default() };
    assert_eq!(f.engine.update_entry(&bound.resource_name(), patch, "test").unwrap().container(), "");
}

#[test]
fn an_entry_environment_is_checked_and_kept() {
    let f = fixture();
    let mut spec = command_entry("");
    spec.environment.insert("PGHOST".into(), "/run/postgresql".into());
    let entry = f.engine.create_entry("root", spec.clone(), "test").unwrap();
    assert_eq!(f.engine.entry(&entry.resource_name()).unwrap().environment, spec.environment);
    spec.environment.insert("ROLLPOINT_CONTAINER".into(), "db-2".into());
    spec.id = "other".into();
    assert!(matches!(
        f.engine.create_entry("root", spec, "test"),
        Err(EngineError::InvalidArgument { field: "entry.environment", .. })
    ));
}

#[test]
fn a_random_delay_moves_each_entry_by_its_own_fixed_amount_within_the_bound() {
    let f = fixture();
    // The fixture's clock is 2026-05-04 02:55:00, today's due time: each
    // entry fires later today, by its own delay.
    let due = f.clock.now();
    let mut delays = std::collections::BTreeSet::new();
    for id in ["a", "b", "c", "d"] {
        let spec =
            super::entries::EntrySpec { id: id.into(), random_delay_seconds: 600, ..snapshot_entry("55 2 * * *") };
        let entry = f.engine.create_entry("root", spec, "uid:0").unwrap();
        let next = f.engine.next_fire(&entry, f.clock.now()).unwrap();
        assert!(next >= due && next < due + chrono::TimeDelta::seconds(600), "{id}: {next}");
        // The same after a restart (read back from the store) and the day after.
        let again = f.engine.entry(&entry.resource_name()).unwrap();
        assert_eq!(f.engine.next_fire(&again, f.clock.now()), Some(next));
        let day_after = f.engine.next_fire(&again, next).unwrap();
        assert_eq!(day_after - next, chrono::TimeDelta::days(1), "{id}");
        delays.insert(next);
    }
    assert_eq!(delays.len(), 4, "entries of one minute are spread: {delays:?}");
    let too_long =
        super::entries::EntrySpec { id: "e".into(), random_delay_seconds: 86_401, ..snapshot_entry("55 2 * * *") };
    let refused = f.engine.create_entry("root", too_long, "uid:0").unwrap_err();
    assert!(
        matches!(&refused, EngineError::InvalidArgument { field, .. } if *field == "entry.random_delay_seconds"),
        "{refused:?}"
    );
}

#[test]
fn entries_are_checked_stored_and_fired() {
    let f = fixture();
    let entry = f.engine.create_entry("root", snapshot_entry("55 2 * * *"), "uid:0").unwrap();
    assert_eq!(entry.resource_name(), "users/root/entries/nightly");
    assert_eq!(entry.time_zone, "UTC");
    // The fixture's clock is 2026-05-04 02:55:00: the next fire is tomorrow.
    assert_eq!(
        f.engine.next_fire(&entry, f.clock.now()),
        Some(chrono::Utc.with_ymd_and_hms(2026, 5, 5, 2, 55, 0).unwrap())
    );
    let fired = f.engine.run_entry_now("users/root/entries/nightly", "uid:0").unwrap();
    assert_eq!(fired.outcome, "ok");
    let snapshot = fired.snapshot.unwrap();
    assert_eq!(snapshot.alias.as_deref(), Some("rollback-point"));
    assert_eq!(snapshot.origin, SnapshotOrigin::Schedule { entry: "users/root/entries/nightly".into() });
    assert_eq!(snapshot.comment, "pre-migration snapshot");
    let entry = f.engine.entry("users/root/entries/nightly").unwrap();
    assert_eq!(entry.last_outcome, "ok");
    let kinds: Vec<_> = f.engine.store().events_after(0, 100).unwrap().into_iter().map(|e| e.kind).collect();
    assert!(
        kinds.ends_with(&["schedule.created".to_string(), "schedule.fired".into(), "snapshot.created".into()]),
        "{kinds:?}"
    );
}

#[test]
fn bad_entries_name_the_field() {
    let f = fixture();
    let field = |result: EngineResult<crate::store::EntryRecord>| match result {
        Err(EngineError::InvalidArgument { field, reason }) => (field, reason),
        other => panic!("expected InvalidArgument, got {other:?}"),
    };
    let (name, reason) = field(f.engine.create_entry("root", snapshot_entry("61 * * * *"), "t"));
    assert_eq!(name, "entry.schedule");
    assert!(reason.contains("minute"), "{reason}");
    let mut spec = snapshot_entry("* * * * *");
    spec.time_zone = "Mars/Olympus".into();
    assert_eq!(field(f.engine.create_entry("root", spec, "t")).0, "entry.time_zone");
    assert_eq!(field(f.engine.create_entry("Root!", snapshot_entry("@daily"), "t")).0, "user");
    assert!(matches!(f.engine.entry("users/root/nope"), Err(EngineError::InvalidArgument { field: "name", .. })));
    f.engine.create_entry("root", snapshot_entry("@daily"), "t").unwrap();
    assert!(matches!(
        f.engine.create_entry("root", snapshot_entry("@daily"), "t"),
        Err(EngineError::AlreadyExists { .. })
    ));
}

/// An engine whose changes run one at a time, so that a second one queues.
fn one_change_at_a_time() -> Fixture {
    fixture_with(EngineConfig {
        max_concurrent_operations: 1,
        max_queued_operations: 1,
        admission_wait: Duration::from_secs(60),
        ..EngineConfig::default()
    })
}

#[tokio::test(start_paused = true)]
async fn a_create_whose_deadline_passes_in_the_queue_never_runs() {
    let f = one_change_at_a_time();
    let running = f.engine.admit(CallKind::Change { container: Some("db-1") }, None).await.unwrap();
    let late = f.engine.admit(CallKind::Change { container: Some("db-1") }, Some(Duration::from_millis(50))).await;
    assert!(matches!(late, Err(EngineError::DeadlineExceeded { .. })), "{:?}", late.err());
    drop(running);
    assert_eq!(f.engine.queued_calls(), (0, 0));
    // The next call is admitted at once and is the only one that lands.
    let _next = f.engine.admit(CallKind::Change { container: Some("db-1") }, None).await.unwrap();
    create(&f.engine, "after", "", 0).unwrap();
    assert_eq!(f.engine.snapshot_count("db-1").unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn reads_are_answered_while_changes_queue() {
    let f = one_change_at_a_time();
    let _running = f.engine.admit(CallKind::Change { container: Some("db-1") }, None).await.unwrap();
    let change = f.engine.admit(CallKind::Change { container: None }, Some(Duration::from_secs(5)));
    let read = async {
        let admitted = f.engine.admit(CallKind::Read, None).await.unwrap();
        assert_eq!(admitted.waited, Duration::ZERO, "a read does not queue behind changes");
        f.engine.container("db-1").unwrap()
    };
    let (change, read) = tokio::join!(change, read);
    assert_eq!(read.id, "db-1");
    assert!(matches!(change, Err(EngineError::DeadlineExceeded { .. })), "the change still waited");
}

#[test]
fn retention_keeps_by_policy_and_holds_and_goes_on_past_a_failed_delete() {
    let f = fixture();
    let policy = retention::Policy { last: 2, ..Default::default() };
    let update = ContainerUpdate { retention: Some(policy), ..Default::default() };
    f.engine.update_container("db-1", update, "test").unwrap();
    let mut taken = Vec::new();
    for i in 0..6 {
        taken.push(create(&f.engine, &format!("s{i}"), "", 0).unwrap());
        f.clock.advance(chrono::Duration::hours(1));
    }
    let hold = UpdateRequest { hold: Some("audit".into()), actor: "uid:0".into(), ..Default::default() };
    let held = f.engine.update_snapshot("db-1", "s1", hold).unwrap();
    assert_eq!(held.hold.as_ref().map(|h| h.reason.as_str()), Some("audit"));
    f.backend.busy.lock().insert(taken[2].location.clone());

    let dry = f.engine.prune(Some("db-1"), true, "test").unwrap();
    let going: Vec<_> = dry.iter().filter(|p| !p.decision.keeps()).map(|p| p.decision.name.as_str()).collect();
    assert_eq!(going, ["s3", "s2", "s0"]);
    assert!(dry.iter().all(|p| p.deleted.is_none()), "a dry run deletes nothing");
    assert!(f.backend.exists(&taken[0].location));
    assert_eq!(f.engine.next_expiry().unwrap(), Some(f.clock.now()), "a pass is due");

    let deleted = f.engine.expire_due().unwrap();
    assert_eq!(deleted.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["s3", "s0"]);
    let left: Vec<_> = f.engine.store().snapshots_of("db-1").unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(left, ["s1", "s2", "s4", "s5"]);
    let events = f.engine.store().events_after(0, 1000).unwrap();
    assert!(events.iter().any(|e| e.kind == "snapshot.prune_failed" && e.snapshot == "s2"), "{events:?}");
    assert!(events.iter().any(|e| e.kind == "snapshot.pruned" && e.snapshot == "s0" && e.detail.contains("last=2")));
    // The failed one is tried again after a pause, not in a tight loop.
    let next = f.engine.next_expiry().unwrap().unwrap();
    assert!(next > f.clock.now() + chrono::Duration::seconds(50), "{next}");

    // A held snapshot is not deleted by hand either, until released.
    let refused = f.engine.delete_snapshot("db-1", "s1", "test").unwrap_err();
    assert!(matches!(refused, EngineError::FailedPrecondition { .. }) && refused.to_string().contains("audit"));
    let release = UpdateRequest { hold: Some(String::new()), ..Default::default() };
    assert!(f.engine.update_snapshot("db-1", "s1", release).unwrap().hold.is_none());
    f.engine.delete_snapshot("db-1", "s1", "test").unwrap();
}

#[test]
fn expiry_never_goes_below_the_minimum() {
    let f = fixture_with(EngineConfig {
        retention: retention::Policy { min: 1, ..Default::default() },
        ..EngineConfig::default()
    });
    let only = create(&f.engine, "only", "", 1).unwrap();
    f.clock.advance(chrono::Duration::days(2));
    assert!(f.engine.expire_due().unwrap().is_empty());
    assert!(f.backend.exists(&only.location));
    // Kept by the minimum, it is not due again and again.
    assert_eq!(f.engine.next_expiry().unwrap(), None);
    let newer = create(&f.engine, "newer", "", 0).unwrap();
    let expired: Vec<_> = f.engine.expire_due().unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(expired, ["only"]);
    assert!(f.backend.exists(&newer.location));
}

#[test]
fn under_the_space_floor_a_snapshot_prunes_beyond_the_policy_then_is_refused() {
    let f = fixture();
    let policy = retention::Policy { min: 2, ..Default::default() };
    f.engine.update_container("db-1", ContainerUpdate { retention: Some(policy), ..Default::default() }, "t").unwrap();
    for name in ["s0", "s1", "s2"] {
        create(&f.engine, name, "", 0).unwrap();
        f.clock.advance(chrono::Duration::hours(1));
    }
    // 5% free of the default 10% floor; each delete gives back 3%.
    *f.backend.free_space.lock() = crate::backend::FreeSpace { free_bytes: 50, total_bytes: 1000 };
    *f.backend.freed_per_delete.lock() = 30;
    let freezer_calls = f.freezer.calls.lock().len();
    let refused = create(&f.engine, "s3", "", 0).unwrap_err();
    assert!(matches!(refused, EngineError::ResourceExhausted { .. }), "{refused}");
    assert!(refused.to_string().contains("floor of 10%"), "{refused}");
    // Only the oldest could go: the policy's minimum stays.
    let left: Vec<_> = f.engine.store().snapshots_of("db-1").unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(left, ["s1", "s2"]);
    assert_eq!(f.freezer.calls.lock().len(), freezer_calls, "refused before any freeze");
    // With room for it after one more prune, the snapshot lands.
    f.engine
        .update_container(
            "db-1",
            ContainerUpdate { retention: Some(retention::Policy { min: 1, ..policy }), ..Default::default() },
            "t",
        )
        .unwrap();
    create(&f.engine, "s3", "", 0).unwrap();
    let left: Vec<_> = f.engine.store().snapshots_of("db-1").unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(left, ["s2", "s3"]);
    let events = f.engine.store().events_after(0, 1000).unwrap();
    assert!(events.iter().any(|e| e.kind == "space.low"));
    assert!(events.iter().any(|e| e.kind == "space.exhausted"));
}

/// db-1 plus wal-1, a second volume of the same container (same cgroup),
/// grouped as `db`.
fn grouped_volumes() -> Fixture {
    let f = fixture();
    f.backend.volumes.lock().insert("/fake/wal-1".into(), FakeVolume::default());
    f.engine
        .register_container(RegisterRequest {
            id: "wal-1".into(),
            cgroup: CGROUP.into(),
            subvolume: "/fake/wal-1".into(),
            ..Default::default()
        })
        .unwrap();
    f.engine.set_group("db", &["db-1".into(), "wal-1".into()], "test").unwrap();
    f
}

fn group_request(name: &str) -> CreateRequest {
    CreateRequest {
        container: String::new(),
        name: name.into(),
        alias: "good".into(),
        expiry_days: 0,
        comment: String::new(),
        origin: SnapshotOrigin::Api,
        actor: "test".into(),
    }
}

#[test]
fn a_group_snapshot_freezes_a_shared_cgroup_once_and_snapshots_every_volume() {
    let f = grouped_volumes();
    let taken = f.engine.create_group_snapshot("db", group_request("v1")).unwrap();
    let members: Vec<&str> = taken.iter().map(|s| s.container.as_str()).collect();
    assert_eq!(members, ["db-1", "wal-1"]);
    assert!(taken.iter().all(|s| s.group.as_deref() == Some("db") && s.create_time == taken[0].create_time));
    assert_eq!(*f.freezer.calls.lock(), [format!("freeze {CGROUP}"), format!("thaw {CGROUP}")]);
    assert!(f.backend.exists("/fake/.rollpoint/db-1/v1") && f.backend.exists("/fake/.rollpoint/wal-1/v1"));
    // The alias is in both.
    assert_eq!(f.engine.snapshot("wal-1", "good").unwrap().name, "v1");
}

#[test]
fn a_group_snapshot_that_fails_in_one_member_leaves_none() {
    let f = grouped_volumes();
    // wal-1's volume vanishes: its snapshot fails inside the window.
    f.backend.volumes.lock().remove("/fake/wal-1");
    let error = f.engine.create_group_snapshot("db", group_request("v1")).unwrap_err();
    assert!(error.to_string().contains("wal-1"), "{error}");
    assert!(!f.backend.exists("/fake/.rollpoint/db-1/v1"), "db-1's half of the instant was kept");
    assert_eq!(f.engine.snapshot_count("db-1").unwrap(), 0);
    assert_eq!(f.freezer.state_of(CGROUP), FreezeState::Thawed);
    assert!(f.engine.store.intents().unwrap().is_empty());
}

#[test]
fn a_group_restore_whose_stop_fails_rolls_every_member_back() {
    let f = grouped_volumes();
    f.engine.create_group_snapshot("db", group_request("v1")).unwrap();
    // Only a snapshot taken with the group restores it.
    create(&f.engine, "solo", "", 0).unwrap();
    let refused = f.engine.restore_group("db", "solo", "test").unwrap_err();
    assert!(refused.to_string().contains("not taken with group db"), "{refused}");
    *f.lifecycle.fail_stop.lock() = true;
    let error = f.engine.restore_group("db", "v1", "test").unwrap_err();
    assert!(error.to_string().contains("stopping member"), "{error}");
    assert!(f.engine.store.intents().unwrap().is_empty());
    for member in ["db-1", "wal-1"] {
        let names: Vec<String> = f.engine.store.snapshots_of(member).unwrap().into_iter().map(|s| s.name).collect();
        assert!(!names.iter().any(|n| n.starts_with("pre-restore")), "{member}: {names:?}");
    }
}
