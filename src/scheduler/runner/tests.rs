//! The loop under tokio's paused time, with a wall clock that follows tokio's
//! clock plus an offset the test can jump.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::*;
use crate::scheduler::crontab::CronSchedule;
use crate::scheduler::planner::{FireKind, Missed, Rebased, Skipped};

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

struct TestClock {
    base: DateTime<Utc>,
    start: Instant,
    offset: Mutex<TimeDelta>,
}

impl TestClock {
    fn at(base: &str) -> Arc<TestClock> {
        Arc::new(TestClock { base: utc(base), start: Instant::now(), offset: Mutex::new(TimeDelta::zero()) })
    }

    fn jump(&self, by: TimeDelta) {
        *self.offset.lock() += by;
    }
}

impl WallClock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        self.base + TimeDelta::from_std(self.start.elapsed()).unwrap() + *self.offset.lock()
    }
}

/// A fire as the host saw it: wall-clock start and end.
#[derive(Debug, Clone)]
struct Ran {
    fire: Fire,
    started: DateTime<Utc>,
    finished: Option<DateTime<Utc>>,
}

struct FakeHost {
    clock: Arc<TestClock>,
    entries: Mutex<Vec<EntryState>>,
    /// Whether `record` persists cursors (a failing store does not).
    persists: bool,
    fire_takes: Duration,
    decisions: Mutex<Vec<Decision>>,
    ran: Arc<Mutex<Vec<Ran>>>,
    plans: AtomicUsize,
}

impl FakeHost {
    fn new(clock: &Arc<TestClock>, fire_takes: Duration) -> Arc<FakeHost> {
        Arc::new(FakeHost {
            clock: clock.clone(),
            entries: Mutex::default(),
            persists: true,
            fire_takes,
            decisions: Mutex::default(),
            ran: Arc::default(),
            plans: AtomicUsize::new(0),
        })
    }

    fn add(&self, id: &str, expression: &str, last_due: DateTime<Utc>) {
        let schedule = CronSchedule::parse(expression, "UTC").unwrap();
        self.entries.lock().push(EntryState { id: EntryId(id.into()), schedule, enabled: true, last_due });
    }

    fn decisions(&self) -> Vec<Decision> {
        self.decisions.lock().clone()
    }

    fn ran(&self) -> Vec<Ran> {
        self.ran.lock().clone()
    }
}

impl SchedulerHost for FakeHost {
    fn entries(&self) -> Vec<EntryState> {
        self.plans.fetch_add(1, Ordering::Relaxed);
        self.entries.lock().clone()
    }

    fn record(&self, decision: &Decision) {
        self.decisions.lock().push(decision.clone());
        if self.persists {
            for entry in self.entries.lock().iter_mut().filter(|entry| &entry.id == decision.entry()) {
                entry.last_due = decision.cursor();
            }
        }
    }

    fn fire(&self, fire: &Fire) -> FireFuture {
        let (clock, ran, takes) = (self.clock.clone(), self.ran.clone(), self.fire_takes);
        let index = {
            let mut ran = ran.lock();
            ran.push(Ran { fire: fire.clone(), started: clock.now(), finished: None });
            ran.len() - 1
        };
        Box::pin(async move {
            tokio::time::sleep(takes).await;
            ran.lock()[index].finished = Some(clock.now());
        })
    }
}

/// Runs the scheduler for `run_for` of tokio time while `script` runs, then
/// shuts it down and waits for it.
async fn run_scheduler<F: Future<Output = ()>>(
    host: &Arc<FakeHost>,
    config: SchedulerConfig,
    run_for: Duration,
    script: impl FnOnce(SchedulerHandle) -> F,
) {
    let scheduler = Scheduler::new(host.clone(), host.clock.clone(), config);
    let handle = scheduler.handle();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(scheduler.run(async move {
        let _ = stopped.await;
    }));
    tokio::join!(script(handle), tokio::time::sleep(run_for));
    stop.send(()).unwrap();
    task.await.unwrap();
}

fn id(name: &str) -> EntryId {
    EntryId(name.into())
}

fn assert_on_time(ran: &Ran) {
    let late = ran.started - ran.fire.due;
    assert!(late >= TimeDelta::zero() && late < TimeDelta::milliseconds(100), "{ran:?} started {late} late");
    assert_eq!(ran.fire.kind, FireKind::OnTime, "{ran:?}");
}

#[tokio::test(start_paused = true)]
async fn fires_on_time_without_polling() {
    let clock = TestClock::at("2026-05-04T00:05:00Z");
    let host = FakeHost::new(&clock, Duration::from_secs(1));
    host.add("quarterly", "*/15 * * * *", clock.now());
    run_scheduler(&host, SchedulerConfig::default(), Duration::from_secs(3600), |_| async {}).await;

    let ran = host.ran();
    let dues: Vec<_> = ran.iter().map(|ran| ran.fire.due).collect();
    let expected = ["00:15", "00:30", "00:45", "01:00"].map(|hm| utc(&format!("2026-05-04T{hm}:00Z")));
    assert_eq!(dues, expected);
    ran.iter().for_each(assert_on_time);
    // One plan per wake: at most one a minute (the cap) plus one per fire.
    let plans = host.plans.load(Ordering::Relaxed);
    assert!(plans <= 70, "{plans} plans in an hour");
}

#[tokio::test(start_paused = true)]
async fn at_start_up_a_recent_miss_fires_late_and_older_ones_are_missed() {
    let clock = TestClock::at("2026-05-04T05:20:00Z");
    let host = FakeHost::new(&clock, Duration::from_secs(1));
    host.add("hourly", "0 * * * *", utc("2026-05-04T03:00:00Z"));
    host.add("daily", "55 2 * * *", utc("2026-05-01T02:55:00Z"));
    run_scheduler(&host, SchedulerConfig::default(), Duration::from_secs(45 * 60), |_| async {}).await;

    let decisions = host.decisions();
    assert_eq!(
        decisions[..3],
        [
            Decision::Miss(Missed {
                entry: id("hourly"),
                first_due: utc("2026-05-04T04:00:00Z"),
                last_due: utc("2026-05-04T04:00:00Z")
            }),
            Decision::Fire(Fire {
                entry: id("hourly"),
                due: utc("2026-05-04T05:00:00Z"),
                lateness: TimeDelta::minutes(20),
                kind: FireKind::Late
            }),
            Decision::Miss(Missed {
                entry: id("daily"),
                first_due: utc("2026-05-02T02:55:00Z"),
                last_due: utc("2026-05-04T02:55:00Z")
            }),
        ]
    );
    let ran = host.ran();
    assert_eq!(ran.len(), 2, "{ran:?}");
    assert_eq!(ran[0].started, utc("2026-05-04T05:20:00Z"));
    assert_on_time(&ran[1]);
    assert_eq!(ran[1].fire.due, utc("2026-05-04T06:00:00Z"));
}

#[tokio::test(start_paused = true)]
async fn a_fire_that_would_overlap_is_skipped() {
    let clock = TestClock::at("2026-05-04T00:00:30Z");
    // Each fire takes 2.5 minutes.
    let host = FakeHost::new(&clock, Duration::from_secs(150));
    host.add("minutely", "* * * * *", clock.now());
    run_scheduler(&host, SchedulerConfig::default(), Duration::from_secs(7 * 60), |_| async {}).await;

    let minute = |m: u32| utc(&format!("2026-05-04T00:0{m}:00Z"));
    let skipped = |m| Decision::Skip(Skipped { entry: id("minutely"), due: minute(m) });
    let decisions = host.decisions();
    assert!(matches!(&decisions[0], Decision::Fire(fire) if fire.due == minute(1)));
    assert_eq!(decisions[1..3], [skipped(2), skipped(3)]);
    assert!(matches!(&decisions[3], Decision::Fire(fire) if fire.due == minute(4)));
    assert_eq!(decisions[4..6], [skipped(5), skipped(6)]);
    assert!(matches!(&decisions[6], Decision::Fire(fire) if fire.due == minute(7)));
    let ran = host.ran();
    ran.iter().for_each(assert_on_time);
    for pair in ran.windows(2) {
        assert!(pair[0].finished.unwrap() <= pair[1].started, "{pair:?} overlap");
    }
}

#[tokio::test(start_paused = true)]
async fn a_forward_jump_is_noticed_within_the_sleep_cap() {
    let clock = TestClock::at("2026-05-04T00:05:00Z");
    let host = FakeHost::new(&clock, Duration::from_secs(1));
    host.add("quarterly", "*/15 * * * *", clock.now());
    let jumped_at = Arc::new(Mutex::new(None));
    run_scheduler(&host, SchedulerConfig::default(), Duration::from_secs(20 * 60), |_| {
        let (clock, jumped_at) = (clock.clone(), jumped_at.clone());
        async move {
            tokio::time::sleep(Duration::from_secs(90)).await;
            clock.jump(TimeDelta::hours(2));
            *jumped_at.lock() = Some(clock.now());
        }
    })
    .await;

    // Jumped from 00:06:30 to 02:06:30; noticed at the next wake, at 02:07:00.
    let jumped_at = jumped_at.lock().unwrap();
    let decisions = host.decisions();
    assert_eq!(
        decisions[..2],
        [
            Decision::Miss(Missed {
                entry: id("quarterly"),
                first_due: utc("2026-05-04T00:15:00Z"),
                last_due: utc("2026-05-04T01:45:00Z")
            }),
            Decision::Fire(Fire {
                entry: id("quarterly"),
                due: utc("2026-05-04T02:00:00Z"),
                lateness: TimeDelta::minutes(7),
                kind: FireKind::Late
            }),
        ]
    );
    let ran = host.ran();
    assert!(ran[0].started - jumped_at <= TimeDelta::seconds(60), "{ran:?} after a jump at {jumped_at}");
    assert_eq!(ran[1].fire.due, utc("2026-05-04T02:15:00Z"));
    assert_on_time(&ran[1]);
}

#[tokio::test(start_paused = true)]
async fn a_backward_jump_fires_nothing_twice() {
    let clock = TestClock::at("2026-05-04T00:14:00Z");
    let host = FakeHost::new(&clock, Duration::from_secs(1));
    host.add("quarterly", "*/15 * * * *", clock.now());
    // Fires at 00:15, then at 00:15:30 the clock goes back to 23:45:30.
    run_scheduler(&host, SchedulerConfig::default(), Duration::from_secs(47 * 60), |_| {
        let clock = clock.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(90)).await;
            clock.jump(TimeDelta::minutes(-30));
        }
    })
    .await;

    // 23:45, 00:00 and 00:15 come round again but do not fire; 00:30 does, on time.
    let ran = host.ran();
    let dues: Vec<_> = ran.iter().map(|ran| ran.fire.due).collect();
    assert_eq!(dues, [utc("2026-05-04T00:15:00Z"), utc("2026-05-04T00:30:00Z")]);
    ran.iter().for_each(assert_on_time);
    assert_eq!(host.decisions().len(), 2);
}

async fn rebase_after_a_long_backward_jump(persists: bool) {
    let clock = TestClock::at("2030-01-01T00:14:00Z");
    let mut host = FakeHost::new(&clock, Duration::from_secs(1));
    Arc::get_mut(&mut host).unwrap().persists = persists;
    host.add("quarterly", "*/15 * * * *", clock.now());
    // Fires at 2030-01-01 00:15, then the clock is corrected to 2026-05-04 00:15:30.
    let correction = utc("2026-05-04T00:15:30Z") - utc("2030-01-01T00:15:30Z");
    run_scheduler(&host, SchedulerConfig::default(), Duration::from_secs(33 * 60), |_| {
        let clock = clock.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(90)).await;
            clock.jump(correction);
        }
    })
    .await;

    let decisions = host.decisions();
    assert!(
        matches!(&decisions[1], Decision::Rebase(Rebased { from, to, .. })
            if *from == utc("2030-01-01T00:15:00Z") && *to - utc("2026-05-04T00:15:30Z") <= TimeDelta::seconds(60)),
        "{decisions:?}"
    );
    let ran = host.ran();
    let dues: Vec<_> = ran.iter().map(|ran| ran.fire.due).collect();
    let expected = ["2030-01-01T00:15:00Z", "2026-05-04T00:30:00Z", "2026-05-04T00:45:00Z"].map(utc);
    assert_eq!(dues, expected, "{decisions:?}");
    ran.iter().for_each(assert_on_time);
    assert_eq!(decisions.len(), 4, "{decisions:?}");
}

#[tokio::test(start_paused = true)]
async fn a_long_backward_jump_rebases_and_fires_from_now() {
    rebase_after_a_long_backward_jump(true).await;
}

#[tokio::test(start_paused = true)]
async fn a_host_that_loses_cursors_still_fires_each_occurrence_once() {
    rebase_after_a_long_backward_jump(false).await;
}

#[tokio::test(start_paused = true)]
async fn a_new_entry_wakes_the_scheduler() {
    let clock = TestClock::at("2026-05-04T00:05:00Z");
    let host = FakeHost::new(&clock, Duration::from_secs(1));
    // Without the wake-up it would sleep for an hour.
    let config = SchedulerConfig { max_sleep: Duration::from_secs(3600), ..SchedulerConfig::default() };
    run_scheduler(&host, config, Duration::from_secs(15 * 60), |handle| {
        let host = host.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            host.add("quarterly", "*/15 * * * *", host.clock.now());
            handle.entries_changed();
        }
    })
    .await;

    let ran = host.ran();
    assert_eq!(ran.len(), 1, "{ran:?}");
    assert_eq!(ran[0].fire.due, utc("2026-05-04T00:15:00Z"));
    assert_on_time(&ran[0]);
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_running_fires() {
    let clock = TestClock::at("2026-05-04T00:14:50Z");
    let host = FakeHost::new(&clock, Duration::from_secs(30));
    host.add("quarterly", "*/15 * * * *", clock.now());
    // Stops at 00:15:05, while the 00:15 fire runs until 00:15:30.
    run_scheduler(&host, SchedulerConfig::default(), Duration::from_secs(15), |_| async {}).await;

    let ran = host.ran();
    assert_eq!(ran.len(), 1);
    assert!(ran[0].finished.is_some(), "{ran:?}");
}
