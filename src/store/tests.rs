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
        sizes: None,
        hold: None,
        group: None,
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

/// `record` as a snapshot of another container (`db-10`: `db-1` is a
/// prefix of its id, the case key prefixes must not confuse).
fn in_container(container: &str, mut record: SnapshotRecord) -> SnapshotRecord {
    record.container = container.into();
    record
}

#[test]
fn snapshot_prefixes_do_not_leak_between_containers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let other = in_container("db-10", snapshot("a", None));
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

fn at(name: &str, alias: Option<&str>, second: i64) -> SnapshotRecord {
    use chrono::TimeZone;
    let mut record = snapshot(name, alias);
    record.create_time = Utc.timestamp_opt(1_780_000_000 + second, 0).unwrap();
    record
}

fn names(records: &[SnapshotRecord]) -> Vec<&str> {
    records.iter().map(|s| s.name.as_str()).collect()
}

/// The indexes hold exactly what a rebuild from the records would write.
fn assert_indexes_in_step(store: &Store) {
    assert!(!store.check_snapshot_indexes().unwrap(), "the indexes were out of step and had to be rebuilt");
}

#[test]
fn pages_come_oldest_first_from_the_time_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // Names out of time order, and two at the same second (the name decides).
    let records = [at("c", None, 1), at("a", None, 3), at("b", None, 2), at("e", None, 2), at("d", None, 0)];
    store.put_snapshots(&records.iter().collect::<Vec<_>>()).unwrap();
    let other = in_container("db-10", at("0", None, 0));
    store.put_snapshots(&[&other]).unwrap();

    assert_eq!(names(&store.snapshots_after("db-1", "", 10).unwrap()), ["d", "c", "b", "e", "a"]);
    let first = store.snapshots_after("db-1", "", 2).unwrap();
    assert_eq!(names(&first), ["d", "c"]);
    let second = store.snapshots_after("db-1", &first[1].sort_key(), 2).unwrap();
    assert_eq!(names(&second), ["b", "e"]);
    assert_eq!(names(&store.snapshots_after("db-1", &second[1].sort_key(), 2).unwrap()), ["a"]);
    // A token is a position, not a record: it works after its record is gone.
    store.remove_snapshot("db-1", "c").unwrap();
    assert_eq!(names(&store.snapshots_after("db-1", &first[1].sort_key(), 2).unwrap()), ["b", "e"]);
    assert_eq!(names(&store.snapshots_after("db-10", "", 10).unwrap()), ["0"]);
    assert!(store.snapshots_after("db-2", "", 10).unwrap().is_empty());
    assert_eq!(store.snapshot_count("db-1").unwrap(), 4);
    assert_indexes_in_step(&store);
}

#[test]
fn aliases_follow_moves_renames_and_removals() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut a = at("a", Some("rollback-point"), 0);
    let mut b = at("b", None, 1);
    store.put_snapshots(&[&a, &b]).unwrap();
    assert_eq!(store.snapshot_by_alias("db-1", "rollback-point").unwrap().unwrap().name, "a");

    // Moved to b, the old holder written after the new one in the batch.
    b.alias = Some("rollback-point".into());
    a.alias = None;
    store.put_snapshots(&[&b, &a]).unwrap();
    assert_eq!(store.snapshot_by_alias("db-1", "rollback-point").unwrap().unwrap().name, "b");
    assert_indexes_in_step(&store);

    // Moved back, the old holder first.
    b.alias = None;
    a.alias = Some("rollback-point".into());
    store.put_snapshots(&[&b, &a]).unwrap();
    assert_eq!(store.snapshot_by_alias("db-1", "rollback-point").unwrap().unwrap().name, "a");
    assert_indexes_in_step(&store);

    // Renamed: the old alias answers no more.
    a.alias = Some("before-migration".into());
    store.put_snapshots(&[&a]).unwrap();
    assert!(store.snapshot_by_alias("db-1", "rollback-point").unwrap().is_none());
    assert_eq!(store.snapshot_by_alias("db-1", "before-migration").unwrap().unwrap().name, "a");
    assert!(store.snapshot_name_in_use("db-1", "before-migration").unwrap());
    assert!(!store.snapshot_name_in_use("db-1", "rollback-point").unwrap());
    assert_indexes_in_step(&store);

    // A new create time moves the record in the time index.
    a.create_time += chrono::Duration::seconds(10);
    store.put_snapshots(&[&a]).unwrap();
    assert_eq!(names(&store.snapshots_after("db-1", "", 10).unwrap()), ["b", "a"]);
    assert_indexes_in_step(&store);

    store.remove_snapshot("db-1", "a").unwrap();
    store.remove_snapshot("db-1", "a").unwrap();
    assert!(store.snapshot_by_alias("db-1", "before-migration").unwrap().is_none());
    assert_eq!(names(&store.snapshots_after("db-1", "", 10).unwrap()), ["b"]);
    assert_indexes_in_step(&store);
}

#[test]
fn names_of_the_day_are_read_by_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let other = in_container("db-10", snapshot("snap-2026-05-04-9", None));
    store
        .put_snapshots(&[
            &snapshot("snap-2026-05-04", None),
            &snapshot("snap-2026-05-04-2", Some("snap-2026-05-04-3")),
            &snapshot("snap-2026-05-03", Some("rollback-point")),
            &other,
        ])
        .unwrap();
    let mut taken: Vec<String> =
        store.snapshot_names_starting_with("db-1", "snap-2026-05-04").unwrap().into_iter().collect();
    taken.sort();
    assert_eq!(taken, ["snap-2026-05-04", "snap-2026-05-04-2", "snap-2026-05-04-3"]);
}

#[test]
fn indexes_missing_or_stale_are_rebuilt_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let records: Vec<SnapshotRecord> =
            (0..50).map(|i| at(&format!("s-{i:02}"), (i == 7).then_some("rollback-point"), 100 - i)).collect();
        store.put_snapshots(&records.iter().collect::<Vec<_>>()).unwrap();
        // As a database written before the indexes existed.
        store.snapshots_by_time.clear().unwrap();
        store.snapshot_aliases.clear().unwrap();
        store.make_durable().unwrap();
    }
    {
        let store = reopen(dir.path());
        let listed = store.snapshots_after("db-1", "", 100).unwrap();
        assert_eq!(listed.len(), 50);
        assert_eq!((listed[0].name.as_str(), listed[49].name.as_str()), ("s-49", "s-00"));
        assert_eq!(store.snapshot_by_alias("db-1", "rollback-point").unwrap().unwrap().name, "s-07");
        assert_indexes_in_step(&store);
        // As an older daemon would leave them: the alias moved, a record
        // gone, with the same number of index entries as records.
        store.snapshot_aliases.insert(index_key("db-1", "rollback-point"), "s-08").unwrap();
        store.snapshots_by_time.insert(index_key("db-1", "00000000000000000001|s-99"), "s-99").unwrap();
        store.snapshots_by_time.remove(index_key("db-1", &listed[0].sort_key())).unwrap();
        store.make_durable().unwrap();
    }
    let store = reopen(dir.path());
    assert_indexes_in_step(&store);
    assert_eq!(store.snapshot_by_alias("db-1", "rollback-point").unwrap().unwrap().name, "s-07");
    assert_eq!(store.snapshots_after("db-1", "", 1).unwrap()[0].name, "s-49");
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// Writes a record as the engine does: a snapshot that takes an alias
        /// takes it from its holder in the same batch (in either order).
        Put {
            container: usize,
            name: usize,
            alias: Option<usize>,
            second: i64,
            holder_last: bool,
        },
        Remove {
            container: usize,
            name: usize,
        },
    }

    const CONTAINERS: [&str; 2] = ["db-1", "db-10"];
    const NAMES: [&str; 4] = ["a", "b", "c", "d"];
    const ALIASES: [&str; 2] = ["rollback-point", "x"];

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..2usize, 0..4usize, proptest::option::of(0..2usize), 0..3i64, any::<bool>()).prop_map(
                |(container, name, alias, second, holder_last)| Op::Put { container, name, alias, second, holder_last }
            ),
            1 => (0..2usize, 0..4usize).prop_map(|(container, name)| Op::Remove { container, name }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn indexes_stay_in_step_with_the_records(ops in proptest::collection::vec(op(), 1..24)) {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            for op in ops {
                match op {
                    Op::Put { container, name, alias, second, holder_last } => {
                        let mut record = at(NAMES[name], alias.map(|a| ALIASES[a]), second);
                        record.container = CONTAINERS[container].into();
                        let holder = match &record.alias {
                            Some(alias) => store
                                .snapshot_by_alias(&record.container, alias)
                                .unwrap()
                                .filter(|holder| holder.name != record.name)
                                .map(|mut holder| { holder.alias = None; holder }),
                            None => None,
                        };
                        let mut batch: Vec<&SnapshotRecord> = vec![&record];
                        if let Some(holder) = &holder {
                            if holder_last { batch.push(holder) } else { batch.insert(0, holder) }
                        }
                        store.put_snapshots(&batch).unwrap();
                    }
                    Op::Remove { container, name } => store.remove_snapshot(CONTAINERS[container], NAMES[name]).unwrap(),
                }
            }
            prop_assert!(!store.check_snapshot_indexes().unwrap(), "out of step");
            for container in CONTAINERS {
                let mut expected = store.snapshots_of(container).unwrap();
                expected.sort_by_key(SnapshotRecord::sort_key);
                let mut paged = Vec::new();
                let mut after = String::new();
                loop {
                    let page = store.snapshots_after(container, &after, 2).unwrap();
                    let Some(last) = page.last() else { break };
                    after = last.sort_key();
                    paged.extend(page);
                }
                prop_assert_eq!(&paged, &expected);
                for alias in ALIASES {
                    let scanned = expected.iter().find(|s| s.alias.as_deref() == Some(alias)).cloned();
                    prop_assert_eq!(store.snapshot_by_alias(container, alias).unwrap(), scanned);
                }
            }
        }
    }
}

#[test]
fn events_beyond_the_limit_go_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut sequences = Vec::new();
    for i in 0..50 {
        let mut event = EventRecord { kind: "snapshot.created".into(), detail: format!("{i}"), ..Default::default() };
        store.append_event(&mut event).unwrap();
        sequences.push(event.sequence);
    }
    assert_eq!(store.prune_events_beyond(100).unwrap(), 0, "under the limit");
    let removed = store.prune_events_beyond(20).unwrap();
    let kept = store.events_after(0, 100).unwrap();
    assert_eq!(removed + kept.len(), 50);
    assert!(kept.len() >= 20, "at least the limit stays: {}", kept.len());
    assert_eq!(kept.last().unwrap().detail, "49", "the newest stay");
    let kept_details: Vec<usize> = kept.iter().map(|e| e.detail.parse().unwrap()).collect();
    assert!(kept_details.windows(2).all(|w| w[1] == w[0] + 1), "a contiguous newest run: {kept_details:?}");
    assert_eq!(store.prune_events_beyond(kept.len() as u64).unwrap(), 0);

    // After a reopen the sequence numbers jump (sled reserves ids in large
    // steps): the limit counts events, not numbers.
    drop(store);
    let store = reopen(dir.path());
    for i in 50..60 {
        let mut event = EventRecord { kind: "snapshot.created".into(), detail: format!("{i}"), ..Default::default() };
        store.append_event(&mut event).unwrap();
    }
    let before = store.events_after(0, 100).unwrap();
    eprintln!("sequences around the reopen: {:?}", before.iter().map(|e| e.sequence).collect::<Vec<_>>());
    assert_eq!(store.prune_events_beyond(25).unwrap(), before.len() - 25);
    let kept: Vec<String> = store.events_after(0, 100).unwrap().into_iter().map(|e| e.detail).collect();
    assert_eq!(kept, (35..60).map(|i| i.to_string()).collect::<Vec<_>>());
}
