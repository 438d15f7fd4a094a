use std::time::Duration;

use chrono::Utc;

use super::*;

fn snapshot(name: &str, alias: Option<&str>) -> SnapshotRecord {
    SnapshotRecord {
        container: "db-1".into(),
        name: name.into(),
        alias: alias.map(Into::into),
        create_time: Utc::now(),
        expire_time: None,
        frozen_for: Duration::from_millis(3),
        duration: Duration::from_millis(9),
        state: SnapshotState::Ready,
        origin: SnapshotOrigin::Api,
        read_only: true,
        location: format!("/x/{name}"),
        uuid: String::new(),
        generation: 7,
        comment: String::new(),
    }
}

#[test]
fn records_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.put_snapshots(&[&snapshot("a", Some("rollback-point")), &snapshot("b", None)]).unwrap();
        store
            .begin_intent(&Intent::Delete { container: "db-1".into(), name: "b".into(), location: "/x/b".into() })
            .unwrap();
        store.make_durable().unwrap();
    }
    let store = reopen(dir.path());
    let names: Vec<_> = store.snapshots_of("db-1").unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(store.snapshot("db-1", "a").unwrap().unwrap().alias.as_deref(), Some("rollback-point"));
    assert_eq!(store.intents().unwrap().len(), 1);
}

#[test]
fn snapshot_prefixes_do_not_leak_between_containers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut other = snapshot("a", None);
    other.container = "db-10".into();
    store.put_snapshots(&[&snapshot("a", None), &other]).unwrap();
    assert_eq!(store.snapshots_of("db-1").unwrap().len(), 1);
}

/// Opens the store again after a drop. sled's flusher thread holds the
/// database (and its file lock) a moment after the last handle is dropped.
fn reopen(dir: &std::path::Path) -> Store {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Store::open(dir) {
            Ok(store) => return store,
            Err(error)
                if std::time::Instant::now() < deadline && error.to_string().contains("could not acquire lock") =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => panic!("reopening the store: {error}"),
        }
    }
}
