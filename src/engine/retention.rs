//! Retention: which snapshots a policy keeps, and why. Pure logic, no I/O.
//!
//! The rules (the README copies them):
//! - periods are UTC: hour `YYYY-MM-DD HH`, day, ISO 8601 week
//!   (`2026-W18`), month, year;
//! - `last = N` keeps the N newest snapshots;
//! - a period rule (`daily = 7`) keeps, going from the newest snapshot to
//!   the oldest, the newest snapshot of each period, for the 7 most recent
//!   periods that have a snapshot (periods without one do not count);
//! - the rules are applied independently; a snapshot is kept if any rule
//!   keeps it, and every rule that keeps it is its reason;
//! - a held snapshot is always kept;
//! - an explicit expiry is honoured: a snapshot whose `expire_time` is
//!   still to come is kept; one whose time has passed goes, even if a rule
//!   would keep it;
//! - with no rule at all (an empty policy) a snapshot without expiry is
//!   kept: only expiry removes snapshots, as before policies existed;
//! - `min = N`: if fewer than N would remain, the newest of those that
//!   would go are kept instead until N remain.
//!
//! Example: hourly snapshots from 2026-05-01 00:00 to 2026-05-04 23:00 and
//! `last=2,daily=3,min=3` keep 23:00 and 22:00 of May 4 (last 2; 23:00 is
//! also daily 2026-05-04) and 23:00 of May 3 and of May 2 (daily); the
//! other 92 go.

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Serialize;

pub use crate::store::RetentionPolicy as Policy;

impl Policy {
    /// No keep rule: only explicit expiry removes snapshots.
    pub fn is_empty(&self) -> bool {
        self.last == 0 && Period::ALL.iter().all(|p| self.count(*p) == 0)
    }

    fn count(&self, period: Period) -> u32 {
        match period {
            Period::Hourly => self.hourly,
            Period::Daily => self.daily,
            Period::Weekly => self.weekly,
            Period::Monthly => self.monthly,
            Period::Yearly => self.yearly,
        }
    }

    /// Parses `last=3,hourly=24,daily=7,weekly=4,monthly=12,yearly=1,min=3`
    /// (any subset, any order; `none` or empty for no rule).
    pub fn parse(text: &str) -> Result<Policy, String> {
        let mut policy = Policy::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty() && *p != "none") {
            let (key, value) = part.split_once('=').ok_or_else(|| format!("{part:?}: expected RULE=COUNT"))?;
            let value: u32 = value.trim().parse().map_err(|_| format!("{key}: {value:?} is not a count"))?;
            let slot = match key.trim() {
                "last" => &mut policy.last,
                "hourly" => &mut policy.hourly,
                "daily" => &mut policy.daily,
                "weekly" => &mut policy.weekly,
                "monthly" => &mut policy.monthly,
                "yearly" => &mut policy.yearly,
                "min" => &mut policy.min,
                other => {
                    return Err(format!("unknown rule {other:?} (last, hourly, daily, weekly, monthly, yearly, min)"))
                }
            };
            *slot = value;
        }
        Ok(policy)
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rules: Vec<String> = [("last", self.last)]
            .into_iter()
            .chain(Period::ALL.iter().map(|p| (p.name(), self.count(*p))))
            .chain([("min", self.min)])
            .filter(|(_, n)| *n > 0)
            .map(|(rule, n)| format!("{rule}={n}"))
            .collect();
        if rules.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&rules.join(","))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Period {
    pub const ALL: [Period; 5] = [Period::Hourly, Period::Daily, Period::Weekly, Period::Monthly, Period::Yearly];

    pub fn name(self) -> &'static str {
        match self {
            Period::Hourly => "hourly",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Yearly => "yearly",
        }
    }

    /// The period `time` falls in, as a label that sorts like time.
    pub fn label(self, time: DateTime<Utc>) -> String {
        match self {
            Period::Hourly => format!("{} {:02}", time.date_naive(), time.hour()),
            Period::Daily => time.date_naive().to_string(),
            Period::Weekly => {
                let week = time.iso_week();
                format!("{}-W{:02}", week.year(), week.week())
            }
            Period::Monthly => format!("{}-{:02}", time.year(), time.month()),
            Period::Yearly => time.year().to_string(),
        }
    }
}

/// A snapshot as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub create_time: DateTime<Utc>,
    pub expire_time: Option<DateTime<Utc>>,
    pub held: bool,
}

/// Why a snapshot stays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Keep {
    Held,
    Last {
        count: u32,
    },
    Period {
        period: Period,
        label: String,
    },
    ExpiresLater {
        time: DateTime<Utc>,
    },
    NoPolicy,
    Minimum {
        count: u32,
    },
    /// A part of a group snapshot another member's policy keeps: the parts
    /// go together or not at all.
    WithGroup {
        group: String,
        member: String,
    },
}

impl fmt::Display for Keep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Keep::Held => f.write_str("held"),
            Keep::Last { count } => write!(f, "last {count}"),
            Keep::Period { period, label } => write!(f, "{} {label}", period.name()),
            Keep::ExpiresLater { time } => write!(f, "expires {}", time.to_rfc3339()),
            Keep::NoPolicy => f.write_str("no policy"),
            Keep::Minimum { count } => write!(f, "minimum {count}"),
            Keep::WithGroup { group, member } => write!(f, "with group {group} (member {member} keeps its part)"),
        }
    }
}

/// Why a snapshot goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Drop {
    Expired {
        time: DateTime<Utc>,
    },
    NotKept,
    /// Its delete began and failed: it is finished.
    Unfinished,
}

impl fmt::Display for Drop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drop::Expired { time } => write!(f, "expired {}", time.to_rfc3339()),
            Drop::NotKept => f.write_str("kept by no rule"),
            Drop::Unfinished => f.write_str("its delete failed before; tried again"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Keep(Vec<Keep>),
    Drop(Drop),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub name: String,
    pub create_time: DateTime<Utc>,
    pub verdict: Verdict,
}

impl Decision {
    pub fn keeps(&self) -> bool {
        matches!(self.verdict, Verdict::Keep(_))
    }
}

/// What `policy` does to `candidates` at `now`, newest first.
pub fn plan(policy: &Policy, candidates: &[Candidate], now: DateTime<Utc>) -> Vec<Decision> {
    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    sorted.sort_by(|a, b| (b.create_time, &b.name).cmp(&(a.create_time, &a.name)));
    let mut reasons: Vec<Vec<Keep>> = vec![Vec::new(); sorted.len()];
    for (index, candidate) in sorted.iter().enumerate() {
        if candidate.held {
            reasons[index].push(Keep::Held);
        }
        if index < policy.last as usize {
            reasons[index].push(Keep::Last { count: policy.last });
        }
    }
    for period in Period::ALL {
        let wanted = policy.count(period) as usize;
        let mut seen = HashSet::new();
        for (index, candidate) in sorted.iter().enumerate() {
            if seen.len() == wanted {
                break;
            }
            let label = period.label(candidate.create_time);
            // Newest first: the first of a period met is its newest.
            if seen.insert(label.clone()) {
                reasons[index].push(Keep::Period { period, label });
            }
        }
    }
    let mut verdicts: Vec<Verdict> = sorted
        .iter()
        .zip(reasons)
        .map(|(candidate, mut keep)| match candidate.expire_time {
            _ if candidate.held => Verdict::Keep(keep),
            Some(time) if time <= now => Verdict::Drop(Drop::Expired { time }),
            Some(time) => {
                keep.push(Keep::ExpiresLater { time });
                Verdict::Keep(keep)
            }
            None if policy.is_empty() => Verdict::Keep(vec![Keep::NoPolicy]),
            None if keep.is_empty() => Verdict::Drop(Drop::NotKept),
            None => Verdict::Keep(keep),
        })
        .collect();
    let mut kept = verdicts.iter().filter(|v| matches!(v, Verdict::Keep(_))).count();
    for verdict in verdicts.iter_mut() {
        if kept >= policy.min as usize {
            break;
        }
        if matches!(verdict, Verdict::Drop(_)) {
            *verdict = Verdict::Keep(vec![Keep::Minimum { count: policy.min }]);
            kept += 1;
        }
    }
    sorted
        .into_iter()
        .zip(verdicts)
        .map(|(candidate, verdict)| Decision {
            name: candidate.name.clone(),
            create_time: candidate.create_time,
            verdict,
        })
        .collect()
}

/// Under space pressure: the kept snapshots that may go beyond what `plan`
/// drops, oldest first, never a held one and never below `policy.min`.
pub fn space_candidates(policy: &Policy, decisions: &[Decision]) -> Vec<String> {
    let kept: Vec<&Decision> = decisions.iter().filter(|d| d.keeps()).collect();
    let spare = kept.len().saturating_sub(policy.min as usize);
    kept.iter()
        .rev()
        .filter(|d| !matches!(&d.verdict, Verdict::Keep(reasons) if reasons.contains(&Keep::Held)))
        .take(spare)
        .map(|d| d.name.clone())
        .collect()
}

#[cfg(test)]
mod tests;
