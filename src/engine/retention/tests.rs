use std::collections::{BTreeMap, BTreeSet};

use chrono::{Duration, TimeZone};
use proptest::prelude::*;

use super::*;

fn at(y: i32, mo: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, 0, 0).unwrap()
}

fn hourly(from: DateTime<Utc>, hours: i64) -> Vec<Candidate> {
    (0..hours)
        .map(|h| {
            let time = from + Duration::hours(h);
            Candidate {
                name: format!("s-{}", time.format("%Y%m%d%H")),
                create_time: time,
                expire_time: None,
                held: false,
            }
        })
        .collect()
}

fn kept(decisions: &[Decision]) -> Vec<&str> {
    decisions.iter().filter(|d| d.keeps()).map(|d| d.name.as_str()).collect()
}

#[test]
fn the_readme_example() {
    let snapshots = hourly(at(2026, 5, 1, 0), 96);
    let policy = Policy::parse("last=2,daily=3,min=3").unwrap();
    let decisions = plan(&policy, &snapshots, at(2026, 5, 5, 0));
    assert_eq!(kept(&decisions), ["s-2026050423", "s-2026050422", "s-2026050323", "s-2026050223"]);
    assert_eq!(decisions.len(), 96);
    let Verdict::Keep(reasons) = &decisions[0].verdict else { panic!() };
    let text: Vec<String> = reasons.iter().map(ToString::to_string).collect();
    assert_eq!(text, ["last 2", "daily 2026-05-04"]);
    assert_eq!(decisions[2].verdict, Verdict::Drop(Drop::NotKept));
}

#[test]
fn weeks_are_iso_weeks_across_the_year_end() {
    assert_eq!(Period::Weekly.label(at(2026, 12, 31, 12)), "2026-W53");
    assert_eq!(Period::Weekly.label(at(2027, 1, 3, 12)), "2026-W53");
    assert_eq!(Period::Weekly.label(at(2027, 1, 4, 0)), "2027-W01");
    let snapshots = hourly(at(2026, 12, 28, 0), 24 * 14);
    let decisions = plan(&Policy { weekly: 2, ..Policy::default() }, &snapshots, at(2027, 2, 1, 0));
    assert_eq!(kept(&decisions), ["s-2027011023", "s-2027010323"]);
}

#[test]
fn expiry_holds_and_the_minimum() {
    let now = at(2026, 5, 10, 0);
    let mut snapshots = hourly(at(2026, 5, 1, 0), 5);
    // The newest expired: it goes although `last` would keep it.
    snapshots[4].expire_time = Some(now - Duration::hours(1));
    // An expired one that is held stays.
    snapshots[3].expire_time = Some(now - Duration::hours(1));
    snapshots[3].held = true;
    // One to expire later stays.
    snapshots[0].expire_time = Some(now + Duration::days(1));
    let policy = Policy { last: 1, min: 2, ..Policy::default() };
    let decisions = plan(&policy, &snapshots, now);
    let verdict = |name: &str| decisions.iter().find(|d| d.name == name).unwrap().verdict.clone();
    assert!(matches!(verdict("s-2026050104"), Verdict::Drop(Drop::Expired { .. })));
    assert_eq!(verdict("s-2026050103"), Verdict::Keep(vec![Keep::Held]));
    assert_eq!(verdict("s-2026050102"), Verdict::Drop(Drop::NotKept));
    assert_eq!(verdict("s-2026050101"), Verdict::Drop(Drop::NotKept));
    assert!(matches!(verdict("s-2026050100"), Verdict::Keep(ref r) if matches!(r[..], [Keep::ExpiresLater { .. }])));
    // Space pressure may not go below the minimum, nor take the held one.
    assert_eq!(space_candidates(&policy, &decisions), Vec::<String>::new());
    let relaxed = Policy { min: 1, ..policy };
    assert_eq!(space_candidates(&relaxed, &plan(&relaxed, &snapshots, now)), ["s-2026050100"]);

    // The minimum goes below no expiry either: the newest that would go stay.
    let strict = Policy { min: 4, ..policy };
    let decisions = plan(&strict, &snapshots, now);
    let verdict = |name: &str| decisions.iter().find(|d| d.name == name).unwrap().verdict.clone();
    assert_eq!(verdict("s-2026050104"), Verdict::Keep(vec![Keep::Minimum { count: 4 }]));
    assert_eq!(verdict("s-2026050102"), Verdict::Keep(vec![Keep::Minimum { count: 4 }]));
    assert_eq!(verdict("s-2026050101"), Verdict::Drop(Drop::NotKept));
}

#[test]
fn no_policy_keeps_all_but_the_expired() {
    let now = at(2026, 5, 10, 0);
    let mut snapshots = hourly(at(2026, 5, 1, 0), 3);
    snapshots[1].expire_time = Some(now);
    let decisions = plan(&Policy::default(), &snapshots, now);
    assert_eq!(kept(&decisions), ["s-2026050102", "s-2026050100"]);
}

#[test]
fn policies_parse_and_print_back() {
    let policy = Policy::parse("daily=7, last=3,min=2,weekly=4").unwrap();
    assert_eq!(policy, Policy { last: 3, daily: 7, weekly: 4, min: 2, ..Policy::default() });
    assert_eq!(policy.to_string(), "last=3,daily=7,weekly=4,min=2");
    assert_eq!(Policy::parse("none").unwrap(), Policy::default());
    assert_eq!(Policy::default().to_string(), "none");
    assert!(Policy::parse("dayly=7").unwrap_err().contains("dayly"));
    assert!(Policy::parse("daily=x").unwrap_err().contains("daily"));
    assert!(Policy::parse("daily").is_err());
}

/// The rules written again another way: per period, group every snapshot
/// by its period in a sorted map and take the newest of the last n groups.
fn model(policy: &Policy, candidates: &[Candidate], now: DateTime<Utc>) -> BTreeSet<String> {
    let key = |c: &Candidate| (c.create_time, c.name.clone());
    let mut by_age: Vec<&Candidate> = candidates.iter().collect();
    by_age.sort_by_key(|c| key(c));
    let mut ruled: BTreeSet<String> = by_age.iter().rev().take(policy.last as usize).map(|c| c.name.clone()).collect();
    for period in Period::ALL {
        let mut groups: BTreeMap<String, (DateTime<Utc>, String)> = BTreeMap::new();
        for c in candidates {
            let newest = groups.entry(period.label(c.create_time)).or_insert_with(|| key(c));
            *newest = newest.clone().max(key(c));
        }
        ruled.extend(groups.values().rev().take(policy.count(period) as usize).map(|(_, name)| name.clone()));
    }
    let keeps = |c: &Candidate| match c.expire_time {
        _ if c.held => true,
        Some(time) => time > now,
        None => policy.is_empty() || ruled.contains(&c.name),
    };
    let mut kept: BTreeSet<String> = candidates.iter().filter(|c| keeps(c)).map(|c| c.name.clone()).collect();
    for c in by_age.iter().rev() {
        if kept.len() >= policy.min as usize {
            break;
        }
        kept.insert(c.name.clone());
    }
    kept
}

fn policies() -> impl Strategy<Value = Policy> {
    (0u32..4, 0u32..30, 0u32..10, 0u32..6, 0u32..14, 0u32..3, 0u32..8).prop_map(
        |(last, hourly, daily, weekly, monthly, yearly, min)| Policy {
            last,
            hourly,
            daily,
            weekly,
            monthly,
            yearly,
            min,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Up to about two years of snapshots, an hour to half a day apart,
    /// some held, some with an expiry, against the model and the invariants.
    #[test]
    fn plans_agree_with_the_model(policy in policies(), steps in prop::collection::vec((1i64..12, any::<u8>()), 1..1500)) {
        let mut time = at(2026, 1, 1, 0);
        let candidates: Vec<Candidate> = steps.iter().enumerate().map(|(i, (gap, dice))| {
            time += Duration::hours(*gap);
            Candidate {
                name: format!("s-{i:05}"),
                create_time: time,
                expire_time: (dice % 7 == 0).then(|| time + Duration::days(i64::from(dice % 5) * 30)),
                held: dice % 17 == 0,
            }
        }).collect();
        let now = time + Duration::hours(1);
        let decisions = plan(&policy, &candidates, now);

        let planned: BTreeSet<String> = kept(&decisions).into_iter().map(str::to_owned).collect();
        prop_assert_eq!(&planned, &model(&policy, &candidates, now));
        prop_assert_eq!(decisions.len(), candidates.len());
        prop_assert!(decisions.windows(2).all(|w| w[0].create_time >= w[1].create_time), "newest first");
        prop_assert!(planned.len() >= (policy.min as usize).min(candidates.len()));
        for candidate in candidates.iter().filter(|c| c.held) {
            prop_assert!(planned.contains(&candidate.name), "held {} dropped", candidate.name);
        }
        let spare = space_candidates(&policy, &decisions);
        prop_assert!(planned.len() - spare.len() >= (policy.min as usize).min(planned.len()));
        for name in &spare {
            prop_assert!(planned.contains(name));
            prop_assert!(!candidates.iter().any(|c| &c.name == name && c.held));
        }
    }
}
