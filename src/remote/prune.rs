//! `remote prune`: forgets exports by retention, then collects packs that
//! no export references, in two phases with a grace period so that it is
//! safe while other hosts export into the same repository (see
//! docs/repository-format.md, "Garbage collection").

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::crypto::Id;
use super::error::RemoteResult;
use super::manifest::Manifest;
use super::pack::{index_key, pack_key};
use super::read::{list_manifests, read_tree};
use super::repository::Repository;

/// Which exports to keep. With neither rule set, every export is kept and
/// only unreferenced packs are collected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunePolicy {
    /// Keep the newest N exports of each container.
    pub keep_last: Option<u32>,
    /// Keep exports of snapshots taken in the last D days.
    pub keep_within_days: Option<u32>,
    /// Only this container's exports are forgotten (empty: every container).
    pub container: String,
    /// How long a pack stays marked before it may be deleted.
    pub grace: Duration,
    /// Say what would be done, do nothing.
    pub dry_run: bool,
}

impl Default for PrunePolicy {
    fn default() -> Self {
        PrunePolicy {
            keep_last: None,
            keep_within_days: None,
            container: String::new(),
            grace: Duration::from_secs(24 * 3600),
            dry_run: false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// `container/snapshot` of each export forgotten.
    pub forgotten: Vec<String>,
    pub kept: usize,
    /// Packs marked as unreferenced in this run (phase 1).
    pub marked: usize,
    /// Marks removed: their pack is referenced again.
    pub unmarked: usize,
    /// Packs deleted (phase 2), and their bytes.
    pub deleted_packs: usize,
    pub freed_bytes: u64,
    /// Packs marked earlier, still within the grace period.
    pub waiting: usize,
}

impl PruneReport {
    pub fn summary(&self) -> String {
        format!(
            "{} exports forgotten, {} kept; {} packs marked, {} unmarked, {} waiting for the grace period, {} deleted ({} bytes freed)",
            self.forgotten.len(),
            self.kept,
            self.marked,
            self.unmarked,
            self.waiting,
            self.deleted_packs,
            self.freed_bytes
        )
    }
}

/// Which manifests the policy forgets.
pub fn to_forget(manifests: &[(Id, Manifest)], policy: &PrunePolicy, now: DateTime<Utc>) -> Vec<Id> {
    if policy.keep_last.is_none() && policy.keep_within_days.is_none() {
        return Vec::new();
    }
    let mut by_container: BTreeMap<&str, Vec<&(Id, Manifest)>> = BTreeMap::new();
    for item in manifests {
        if policy.container.is_empty() || item.1.container == policy.container {
            by_container.entry(&item.1.container).or_default().push(item);
        }
    }
    let mut forget = Vec::new();
    for (_, mut items) in by_container {
        items.sort_by(|a, b| b.1.snapshot_created.cmp(&a.1.snapshot_created));
        for (rank, (id, manifest)) in items.into_iter().enumerate() {
            let by_count = policy.keep_last.is_some_and(|n| rank < n as usize);
            let by_age = policy.keep_within_days.is_some_and(|days| {
                DateTime::parse_from_rfc3339(&manifest.snapshot_created)
                    .map(|t| now - t.with_timezone(&Utc) <= chrono::Duration::days(i64::from(days)))
                    .unwrap_or(true)
            });
            if !by_count && !by_age {
                forget.push(*id);
            }
        }
    }
    forget
}

pub fn prune(repository: &Repository, policy: &PrunePolicy, now: DateTime<Utc>) -> RemoteResult<PruneReport> {
    let mut report = PruneReport::default();
    let manifests = list_manifests(repository)?;
    let forget: HashSet<Id> = to_forget(&manifests, policy, now).into_iter().collect();
    let index = repository.load_index()?;
    let mut referenced: HashSet<u32> = HashSet::new();
    for (id, manifest) in &manifests {
        if forget.contains(id) {
            report.forgotten.push(format!("{}/{}", manifest.container, manifest.snapshot));
            if !policy.dry_run {
                repository.objects().delete(&Manifest::key(id))?;
            }
            continue;
        }
        report.kept += 1;
        let tree = read_tree(repository, &index, manifest)?;
        let chunks =
            manifest.tree.iter().chain(tree.values().flat_map(|r| r.extents.iter().flat_map(|e| e.chunks.iter())));
        for chunk in chunks {
            if let Some(location) = index.get(&chunk.id) {
                referenced.insert(location.pack);
            }
        }
    }
    let referenced: HashSet<Id> = referenced.into_iter().map(|p| index.packs[p as usize]).collect();
    let sizes: HashMap<Id, u64> = index.packs.iter().copied().zip(index.pack_sizes.iter().copied()).collect();
    // Packs with no index (an interrupted export) are unreferenced too.
    let mut all_packs: HashMap<Id, u64> = sizes.clone();
    for listed in repository.objects().list("data")? {
        if let Some(id) = listed.key.rsplit('/').next().and_then(Id::from_hex) {
            all_packs.entry(id).or_insert(listed.size);
        }
    }
    let marks: HashMap<Id, DateTime<Utc>> = repository
        .objects()
        .list("trash")?
        .into_iter()
        .filter_map(|l| Some((l.key.strip_prefix("trash/").and_then(Id::from_hex)?, l.last_modified)))
        .collect();
    for mark in marks.keys() {
        if referenced.contains(mark) || !all_packs.contains_key(mark) {
            report.unmarked += 1;
            if !policy.dry_run {
                repository.objects().delete(&trash_key(mark))?;
            }
        }
    }
    let grace = chrono::Duration::from_std(policy.grace).unwrap_or(chrono::Duration::days(1));
    for (pack, size) in &all_packs {
        if referenced.contains(pack) {
            continue;
        }
        match marks.get(pack) {
            None => {
                report.marked += 1;
                if !policy.dry_run {
                    repository.objects().put_new(&trash_key(pack), Bytes::new())?;
                }
            }
            Some(marked) if now - *marked >= grace => {
                report.deleted_packs += 1;
                report.freed_bytes += size;
                if !policy.dry_run {
                    repository.objects().delete(&pack_key(pack))?;
                    repository.objects().delete(&index_key(pack))?;
                    repository.objects().delete(&trash_key(pack))?;
                }
            }
            Some(_) => report.waiting += 1,
        }
    }
    Ok(report)
}

fn trash_key(pack: &Id) -> String {
    format!("trash/{}", pack.to_hex())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::manifest::MANIFEST_VERSION;

    fn manifest(container: &str, created: &str) -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            host: "h".into(),
            container: container.into(),
            snapshot: created.into(),
            alias: String::new(),
            snapshot_created: created.into(),
            exported: created.into(),
            backend: "btrfs".into(),
            source_uuid: String::new(),
            source_generation: 0,
            parent: None,
            tree: Vec::new(),
            entries: 0,
            files: 0,
            logical_bytes: 0,
            added_bytes: 0,
            added_blobs: 0,
            read_bytes: 0,
        }
    }

    #[test]
    fn retention_keeps_the_newest_per_container_and_the_recent_ones() {
        let now: DateTime<Utc> = "2026-12-10T00:00:00Z".parse().unwrap();
        let days = ["2026-12-01T00:00:00Z", "2026-12-05T00:00:00Z", "2026-12-08T00:00:00Z", "2026-12-09T00:00:00Z"];
        let mut manifests: Vec<(Id, Manifest)> =
            days.iter().enumerate().map(|(i, d)| (Id([i as u8; 32]), manifest("db", d))).collect();
        manifests.push((Id([9; 32]), manifest("web", "2026-11-01T00:00:00Z")));
        let keep_two = PrunePolicy { keep_last: Some(2), ..Default::default() };
        assert_eq!(to_forget(&manifests, &keep_two, now), vec![Id([1; 32]), Id([0; 32])]);
        let keep_three_days = PrunePolicy { keep_within_days: Some(3), ..Default::default() };
        let forgotten = to_forget(&manifests, &keep_three_days, now);
        assert_eq!(forgotten, vec![Id([1; 32]), Id([0; 32]), Id([9; 32])]);
        let only_web = PrunePolicy { keep_last: Some(0), container: "web".into(), ..Default::default() };
        assert_eq!(to_forget(&manifests, &only_web, now), vec![Id([9; 32])]);
        assert!(to_forget(&manifests, &PrunePolicy::default(), now).is_empty(), "no rule: nothing forgotten");
    }
}
