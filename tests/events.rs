//! The timeline under concurrent appends: a WatchEvents stream opened
//! before a burst of concurrent calls that each append an event delivers
//! every one of them, in sequence order, exactly like ListEvents; and a
//! reconnect from any sequence of the burst delivers exactly the later ones.
//!
//! Root only: a real `rollpointd` (no container needed: CreateEntry of a
//! snapshot entry appends `schedule.created` without touching one).

mod common;

use std::time::Duration;

use common::*;
use rollpoint::api::proto;
use rollpoint::testkit::daemon::TestDaemon;
use rollpoint::testkit::root_or_skip;

/// Concurrent CreateEntry calls in the burst.
const BURST: usize = 200;
/// How long a stream must stay silent to count as drained.
const QUIET: Duration = Duration::from_secs(1);

/// Everything the stream sends until it stays silent for [`QUIET`].
async fn drain(stream: &mut tonic::Streaming<proto::Event>) -> Vec<u64> {
    let mut got = Vec::new();
    while let Ok(next) = tokio::time::timeout(QUIET, stream.message()).await {
        match next {
            Ok(Some(event)) => got.push(event.sequence),
            Ok(None) => panic!("the stream ended after {} events", got.len()),
            Err(status) => panic!("the stream failed after {} events: {status:?}", got.len()),
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_see_every_event_of_a_concurrent_burst_in_order() {
    if !root_or_skip("watchers_see_every_event_of_a_concurrent_burst_in_order") {
        return;
    }
    let daemon = TestDaemon::start(daemon_binary()).await.expect("start rollpointd");
    let mut clients = daemon.clients().await.expect("connect");
    let mut stream =
        clients.events.watch_events(proto::WatchEventsRequest::default()).await.expect("WatchEvents").into_inner();

    let mut calls = tokio::task::JoinSet::new();
    for n in 0..BURST {
        // One connection each, so the calls really run side by side.
        let mut clients = daemon.clients().await.expect("connect");
        calls.spawn(async move {
            let entry = proto::Entry {
                id: format!("burst-{n}"),
                schedule: "0 0 1 1 *".into(),
                action: Some(proto::entry::Action::Snapshot(proto::SnapshotAction {
                    container: "app".into(),
                    ..Default::default()
                })),
                enabled: Some(true),
                ..Default::default()
            };
            let request = proto::CreateEntryRequest { user: "root".into(), entry: Some(entry) };
            // More than max_concurrent_operations at once are refused; retry.
            loop {
                match clients.schedules.create_entry(request.clone()).await {
                    Ok(_) => return,
                    Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                        tokio::time::sleep(Duration::from_millis(5)).await
                    }
                    Err(status) => panic!("CreateEntry: {status:?}"),
                }
            }
        });
    }
    while let Some(joined) = calls.join_next().await {
        joined.expect("a CreateEntry task");
    }

    let listed: Vec<u64> = list_events(&mut clients, "", "").await.iter().map(|e| e.sequence).collect();
    assert_eq!(listed.len(), BURST, "one schedule.created per call");
    assert!(listed.windows(2).all(|w| w[0] < w[1]), "ListEvents in sequence order");
    let streamed = drain(&mut stream).await;
    let missing: Vec<&u64> = listed.iter().filter(|s| !streamed.contains(s)).collect();
    assert!(missing.is_empty(), "the live stream missed {} of {BURST} events: {missing:?}", missing.len());
    assert_eq!(streamed, listed, "the live stream vs ListEvents");

    // Reconnects from a few points of the burst get exactly what follows.
    for cut in [0, BURST / 3, BURST / 2, BURST - 1] {
        let after = listed[cut];
        let mut again = clients
            .events
            .watch_events(proto::WatchEventsRequest { after_sequence: after, ..Default::default() })
            .await
            .expect("WatchEvents")
            .into_inner();
        let expected: Vec<u64> = listed.iter().copied().filter(|&s| s > after).collect();
        assert_eq!(drain(&mut again).await, expected, "after sequence {after}");
    }
}
