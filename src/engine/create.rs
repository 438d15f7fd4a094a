//! CreateSnapshot, of one container or of a group's members at one
//! instant: write back dirty data, freeze every cgroup, snapshot every
//! volume read-only, thaw (one window, one freeze budget), record. The
//! reply's records are durable; a group's snapshot is all or nothing.

use std::time::Instant;

use chrono::{DateTime, Utc};

use super::error::{EngineError, EngineResult};
use super::freeze_window::{Freeze, Window};
use super::names;
use super::snapshots::{expiry_from, origin_entry, volume_of, CreateRequest};
use super::Engine;
use crate::backend::VolumeInfo;
use crate::events::Event;
use crate::fault;
use crate::freezer::FreezeState;
use crate::hooks::HookPoint;
use crate::store::{ContainerRecord, CreateMember, GroupCreateIntent, Intent, SnapshotRecord, SnapshotState};

impl Engine {
    /// Takes a consistent snapshot of one container.
    pub fn create_snapshot(&self, request: CreateRequest) -> EngineResult<SnapshotRecord> {
        let container = self.container_for("container", &request.container)?;
        check_request(&request)?;
        let _guard = self.locks.lock(&container.id, self.config.lock_wait)?;
        let mut records = self.create_at_one_instant(&[container], None, request)?;
        Ok(records.remove(0))
    }

    /// Snapshots every container of `members` at one instant, under one
    /// name, alias and expiry; their locks must be held, `request` checked.
    /// A member that fails fails them all, and leaves no snapshot behind.
    pub(super) fn create_at_one_instant(
        &self,
        members: &[ContainerRecord],
        group: Option<&str>,
        request: CreateRequest,
    ) -> EngineResult<Vec<SnapshotRecord>> {
        let started = Instant::now();
        let volumes: Vec<VolumeInfo> = members.iter().map(volume_of).collect();
        let name = self.free_name(members, &volumes, &request)?;
        for member in members {
            self.make_room(member, &request.actor)?;
        }
        for member in members {
            self.run_hook(member, HookPoint::PreFreeze, &name, &request.actor)?;
        }
        let mut holds = Vec::with_capacity(members.len());
        for member in members {
            holds.push(self.start_hold(member, &name, &request.actor)?);
        }
        // The instant the data is from: after the hooks, at the freeze.
        let now = self.clock.now();
        let mut plan = Vec::with_capacity(members.len());
        for (member, volume) in members.iter().zip(&volumes) {
            plan.push(CreateMember {
                container: member.id.clone(),
                location: self.backend.location(volume, &name),
                cgroup: member.cgroup.clone(),
                freezes: self.freezer.state(&member.cgroup)? == FreezeState::Thawed,
            });
        }
        let intent = match (group, plan.as_slice()) {
            (None, [one]) => Intent::Create {
                container: one.container.clone(),
                name: name.clone(),
                location: one.location.clone(),
                cgroup: one.cgroup.clone(),
                freezes: one.freezes,
            },
            _ => Intent::GroupCreate(GroupCreateIntent {
                group: group.unwrap_or_default().to_owned(),
                name: name.clone(),
                members: plan.clone(),
            }),
        };
        let intent_id = self.store.begin_intent(&intent)?;
        fault::point("create.intent");

        let flushed = self.flush_all(&volumes);
        let taken = flushed.map_err(EngineError::from).and_then(|()| {
            fault::point("create.flushed");
            Window {
                freezer: self.freezer.clone(),
                backend: self.backend.clone(),
                cgroups: freeze_order(&plan),
                snapshots: members
                    .iter()
                    .zip(&plan)
                    .map(|(member, part)| (member.volume.to_string_lossy().into_owned(), part.location.clone()))
                    .collect(),
                budget: self.config.freeze_budget,
            }
            .run()
        });
        // A hold that ended before it was released did not span the
        // snapshot: with policy abort, no snapshot of the instant is kept.
        let taken = taken.and_then(|taken| {
            let mut released = Ok(());
            for (member, held) in members.iter().zip(holds) {
                released = released.and(self.release_hold(member, held, &name, &request.actor));
            }
            released.map(|()| taken).inspect_err(|_| {
                for part in &plan {
                    if let Err(error) = self.backend.delete_snapshot(&part.location) {
                        tracing::warn!(location = %part.location, %error, "removing a snapshot whose hold hook failed");
                    }
                }
            })
        });
        let taken = match taken {
            Ok(taken) => taken,
            Err(error) => {
                self.store.end_intent(intent_id)?;
                self.store.make_durable()?;
                for member in members {
                    tracing::warn!(container = %member.id, snapshot = %name, %error, "snapshot failed");
                    self.emit(
                        Event::new("snapshot.failed", "failed")
                            .container(&member.id)
                            .snapshot(&name)
                            .entry(origin_entry(&request.origin))
                            .actor(&request.actor)
                            .duration(started.elapsed())
                            .detail(error.to_string()),
                    );
                }
                self.store.make_durable()?;
                return Err(error);
            }
        };
        fault::point("create.snapshotted");

        let mut records = Vec::with_capacity(members.len());
        for ((member, part), details) in members.iter().zip(plan).zip(taken.details) {
            let record = SnapshotRecord {
                container: member.id.clone(),
                name: name.clone(),
                alias: Some(request.alias.clone()).filter(|a| !a.is_empty()),
                create_time: now,
                expire_time: expiry_from(now, request.expiry_days),
                frozen_for: taken.frozen_for,
                duration: started.elapsed(),
                state: SnapshotState::Ready,
                origin: request.origin.clone(),
                read_only: details.read_only,
                location: part.location,
                uuid: details.uuid,
                generation: details.generation,
                comment: request.comment.clone(),
                sizes: None,
                hold: None,
                group: group.map(str::to_owned),
            };
            self.save_with_alias(&record)?;
            fault::point("create.recorded-one");
            records.push(record);
        }
        self.store.end_intent(intent_id)?;
        for record in &records {
            self.emit(
                Event::new("snapshot.created", "ok")
                    .container(&record.container)
                    .snapshot(&record.name)
                    .entry(origin_entry(&record.origin))
                    .actor(&request.actor)
                    .duration(record.duration)
                    .frozen_for(record.frozen_for)
                    .detail(created_detail(record)),
            );
        }
        self.store.make_durable()?;
        fault::point("create.recorded");
        self.expiry_changed.notify_one();
        self.sizes_stale.notify_one();
        for (member, record) in members.iter().zip(&records) {
            self.run_hook(member, HookPoint::PostThaw, &record.name, &request.actor)?;
            tracing::info!(
                container = %record.container, snapshot = %record.name, alias = ?record.alias, group = ?record.group,
                frozen_for_us = record.frozen_for.as_micros() as u64, "snapshot created"
            );
        }
        Ok(records)
    }

    /// Writes back the dirty data of every volume (each its own).
    fn flush_all(&self, volumes: &[VolumeInfo]) -> Result<(), crate::backend::BackendError> {
        volumes.iter().try_for_each(|volume| self.backend.flush(volume))
    }

    /// The snapshot's name: the one asked for, free in every member (store
    /// and disk), or the first free default `snap-YYYY-MM-DD[-N]`; and an
    /// alias that is no member's snapshot name.
    fn free_name(
        &self,
        members: &[ContainerRecord],
        volumes: &[VolumeInfo],
        request: &CreateRequest,
    ) -> EngineResult<String> {
        let now: DateTime<Utc> = self.clock.now();
        let name = if request.name.is_empty() {
            self.free_default_name("snap", members, now)?
        } else {
            for (member, volume) in members.iter().zip(volumes) {
                if self.store.snapshot_name_in_use(&member.id, &request.name)?
                    || self.location_in_use(volume, &request.name)
                {
                    return Err(EngineError::AlreadyExists {
                        what: format!("snapshot {:?} of container {}", request.name, member.id),
                    });
                }
            }
            request.name.clone()
        };
        if !request.alias.is_empty() {
            for member in members {
                if request.alias == name || self.store.has_snapshot(&member.id, &request.alias)? {
                    return Err(EngineError::invalid(
                        "alias",
                        format!("{:?} is the name of a snapshot; an alias must differ from every name", request.alias),
                    ));
                }
            }
        }
        Ok(name)
    }
}

/// The fields of a create request that can be checked without the store.
pub(super) fn check_request(request: &CreateRequest) -> EngineResult<()> {
    if !request.name.is_empty() {
        names::snapshot_name("name", &request.name)?;
    }
    if !request.alias.is_empty() {
        names::snapshot_name("alias", &request.alias)?;
    }
    names::expiry_days(request.expiry_days)?;
    names::comment(&request.comment)
}

/// The cgroups of a window: each once (members may share one: a container
/// with several volumes is one member per volume on the same cgroup), in
/// path order, so two windows always freeze in the same order.
fn freeze_order(plan: &[CreateMember]) -> Vec<Freeze> {
    let mut cgroups: Vec<Freeze> =
        plan.iter().map(|part| Freeze { cgroup: part.cgroup.clone(), freeze: part.freezes }).collect();
    cgroups.sort_by(|a, b| a.cgroup.cmp(&b.cgroup));
    cgroups.dedup_by(|a, b| a.cgroup == b.cgroup);
    cgroups
}

fn created_detail(record: &SnapshotRecord) -> String {
    let alias = record.alias.as_ref().map(|alias| format!("alias {alias}"));
    let group = record.group.as_ref().map(|group| format!("group {group}"));
    [alias, group].into_iter().flatten().collect::<Vec<_>>().join(", ")
}
