//! The space guard: a filesystem keeps `space_floor_percent` free. Before a
//! snapshot, if its container's filesystem is under the floor, retention
//! prunes the snapshots of every container on that filesystem beyond what
//! their policies require (oldest first across them, never a held one,
//! never below a policy's minimum; another container's only while its lock
//! is free), and if that is not enough the snapshot is refused with
//! RESOURCE_EXHAUSTED: a full disk is never reached by a snapshot the
//! daemon takes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::error::{EngineError, EngineResult};
use super::locks::ContainerGuard;
use super::retention::{self, Verdict};
use super::snapshots::volume_of;
use super::Engine;
use crate::backend::FreeSpace;
use crate::events::Event;
use crate::store::{ContainerRecord, SnapshotRecord};

/// A container's part of what the guard may prune: (container, snapshot).
type Part = (String, String);

/// How long a delete is given to show as free space (btrfs frees a deleted
/// snapshot's extents in the background, after a commit).
const SPACE_SETTLE: Duration = Duration::from_secs(5);
/// Within this factor of the floor, the floor is near (a warning event).
const NEAR_FLOOR: f64 = 1.5;
/// How long the guard waits for another container's lock to prune its
/// snapshots (it holds its own: a short wait never deadlocks two guards).
const NEIGHBOUR_LOCK_WAIT: Duration = Duration::from_millis(200);

/// Whether two containers' snapshots take their space from one filesystem:
/// their snapshot folders share `<filesystem>/.rollpoint` (btrfs). LVM thin
/// volumes have their pool's own floor and never meet here.
fn share_filesystem(a: &ContainerRecord, b: &ContainerRecord) -> bool {
    a.backend == b.backend && a.snapshot_dir.parent().is_some_and(|dir| Some(dir) == b.snapshot_dir.parent())
}

impl Engine {
    /// Makes sure the container's filesystem is above the free-space floor
    /// before a snapshot, pruning what its policies allow; the container's
    /// lock is held.
    pub(super) fn make_room(&self, container: &ContainerRecord, actor: &str) -> EngineResult<()> {
        let floor = self.config.space_floor_percent;
        if floor <= 0.0 {
            return Ok(());
        }
        let path = container.volume.clone();
        let volume = volume_of(container);
        let space = || self.backend.free_space(&volume).map_err(EngineError::from);
        let mut free = space()?;
        self.warn_when_near(container, free, floor, actor)?;
        if free.percent() >= floor {
            return Ok(());
        }
        // What was deleted since the last commit (files, snapshots) may not
        // show as free yet: commit, then look again.
        self.backend.reclaim(&volume)?;
        free = space()?;
        if free.percent() >= floor {
            return Ok(());
        }
        for (_, parts) in self.space_units(container)? {
            let Some(_neighbour_guards) = self.lock_owners(container, &parts)? else { continue };
            let mut deleted = false;
            for (owner, name) in &parts {
                let owner = if *owner == container.id {
                    container.clone()
                } else {
                    let Some(record) = self.store.container(owner)? else { continue };
                    record
                };
                let Some(snapshot) = self.store.snapshot(&owner.id, name)? else { continue };
                let mut detail = format!(
                    "{:.1}% free on {}, under the floor of {floor}%: the oldest snapshot retention may spare",
                    free.percent(),
                    path.display()
                );
                if owner.id != container.id {
                    detail.push_str(&format!(" on the filesystem (room for a snapshot of container {})", container.id));
                }
                if let Some(group) = &snapshot.group {
                    detail.push_str(&format!("; a group snapshot of {group}: every member's part goes"));
                }
                let event = Event::new("snapshot.pruned", "ok").actor(actor).detail(detail);
                match self.delete_locked(&owner, snapshot, event) {
                    Ok(_) => deleted = true,
                    Err(error) => {
                        tracing::warn!(container = %owner.id, snapshot = %name, %error, "space guard could not delete")
                    }
                }
            }
            if !deleted {
                continue;
            }
            // Each commit lets btrfs's cleaner free more of what was deleted.
            let before = free;
            let waited = Instant::now();
            while free.free_bytes <= before.free_bytes && waited.elapsed() < SPACE_SETTLE {
                self.backend.reclaim(&volume)?;
                std::thread::sleep(Duration::from_millis(200));
                free = space()?;
            }
            if free.percent() >= floor {
                return Ok(());
            }
        }
        let reason = format!(
            "{} has {} free of {} ({:.1}%), under the floor of {floor}% (space_floor_percent), and retention may prune \
             nothing more of container {} or the others on the filesystem (held snapshots and each policy's minimum \
             stay): free space, release or delete snapshots, or lower the floor",
            path.display(),
            crate::units::bytes(free.free_bytes),
            crate::units::bytes(free.total_bytes),
            free.percent(),
            container.id
        );
        self.emit(Event::new("space.exhausted", "failed").container(&container.id).actor(actor).detail(reason.clone()));
        self.store.make_durable()?;
        Err(EngineError::ResourceExhausted { reason })
    }

    /// A `space.low` warning on the timeline when the filesystem comes
    /// within half the floor again above it (once, until it is clear).
    fn warn_when_near(
        &self,
        container: &ContainerRecord,
        free: FreeSpace,
        floor: f64,
        actor: &str,
    ) -> EngineResult<()> {
        let near = free.percent() < floor * NEAR_FLOOR;
        let mut warned = self.space_warned.lock();
        if !near {
            warned.remove(&container.id);
            return Ok(());
        }
        if !warned.insert(container.id.clone()) {
            return Ok(());
        }
        drop(warned);
        self.emit(Event::new("space.low", "warning").container(&container.id).actor(actor).detail(format!(
            "{:.1}% free on {} ({} of {}); the floor is {floor}%",
            free.percent(),
            container.volume.display(),
            crate::units::bytes(free.free_bytes),
            crate::units::bytes(free.total_bytes)
        )));
        self.store.make_durable()?;
        Ok(())
    }

    /// The free space of a container's filesystem, for the metrics.
    pub fn free_space(&self, container: &ContainerRecord) -> Option<FreeSpace> {
        self.backend.free_space(&volume_of(container)).ok().filter(|free| free.total_bytes > 0)
    }

    /// The configured floor, in percent (0: no guard).
    pub fn space_floor_percent(&self) -> f64 {
        self.config.space_floor_percent
    }

    /// What may go for space on the container's filesystem, oldest first:
    /// units of parts (container, snapshot), each one snapshot of the
    /// container or of another on the filesystem, or every member's part of
    /// a group snapshot (kept or pruned as a unit, like retention does: only
    /// when each member's retention spares its part).
    fn space_units(&self, container: &ContainerRecord) -> EngineResult<Vec<(DateTime<Utc>, Vec<Part>)>> {
        let everyone = self.store.containers()?;
        let on_filesystem = everyone.iter().filter(|c| c.id == container.id || share_filesystem(c, container));
        let mut units = BTreeMap::new();
        for owner in on_filesystem {
            let snapshots = self.store.snapshots_of(&owner.id)?;
            for (time, name) in self.space_candidates(owner, &snapshots) {
                let group = snapshots.iter().find(|s| s.name == name).and_then(|s| s.group.clone());
                let parts = match group {
                    None => vec![(owner.id.clone(), name)],
                    Some(group) => match self.group_parts_spared(&everyone, &group, &name)? {
                        Some(parts) => parts,
                        None => continue,
                    },
                };
                let earliest = units.entry(parts).or_insert(time);
                *earliest = time.min(*earliest);
            }
        }
        let mut units: Vec<(DateTime<Utc>, Vec<Part>)> = units.into_iter().map(|(parts, time)| (time, parts)).collect();
        units.sort();
        Ok(units)
    }

    /// Every part of group snapshot `name` of `group` (container, name),
    /// when each container holding one may spare it for space; none when
    /// one keeps it.
    fn group_parts_spared(
        &self,
        everyone: &[ContainerRecord],
        group: &str,
        name: &str,
    ) -> EngineResult<Option<Vec<Part>>> {
        let mut parts = Vec::new();
        for member in everyone {
            let snapshots = self.store.snapshots_of(&member.id)?;
            if !snapshots.iter().any(|s| s.name == name && s.group.as_deref() == Some(group)) {
                continue;
            }
            if !self.space_candidates(member, &snapshots).iter().any(|(_, spared)| spared == name) {
                return Ok(None);
            }
            parts.push((member.id.clone(), name.to_owned()));
        }
        Ok(Some(parts))
    }

    /// The locks of the other containers owning `parts` (the container's
    /// own is held), each waited for briefly; none when one is busy (the
    /// unit is skipped: two guards never wait on each other for long).
    fn lock_owners(&self, container: &ContainerRecord, parts: &[Part]) -> EngineResult<Option<Vec<ContainerGuard>>> {
        let mut guards = Vec::new();
        for (owner, _) in parts {
            if *owner == container.id || guards.iter().any(|(held, _)| held == owner) {
                continue;
            }
            match self.locks.lock(owner, NEIGHBOUR_LOCK_WAIT) {
                Ok(guard) => guards.push((owner.clone(), guard)),
                Err(_) => return Ok(None),
            }
        }
        Ok(Some(guards.into_iter().map(|(_, guard)| guard).collect()))
    }

    /// The container's snapshots that may go for space (time, name), oldest
    /// first: for each class, what its policy keeps beyond its minimum, not
    /// held.
    fn space_candidates(
        &self,
        container: &ContainerRecord,
        snapshots: &[SnapshotRecord],
    ) -> Vec<(DateTime<Utc>, String)> {
        let now = self.clock.now();
        let (policy, pre_restore_policy) = self.policies(container);
        let mut candidates = Vec::new();
        for (policy, pre_restore) in [(policy, false), (pre_restore_policy, true)] {
            let decisions = retention::plan(&policy, &super::prune::candidates(snapshots, pre_restore), now);
            // What the plan drops goes first (the timer had not got to it).
            candidates.extend(
                decisions
                    .iter()
                    .rev()
                    .filter(|d| matches!(d.verdict, Verdict::Drop(_)))
                    .map(|d| (d.create_time, d.name.clone())),
            );
            let spare = retention::space_candidates(&policy, &decisions);
            candidates
                .extend(decisions.iter().filter(|d| spare.contains(&d.name)).map(|d| (d.create_time, d.name.clone())));
        }
        candidates.sort();
        candidates.dedup();
        candidates
    }
}
