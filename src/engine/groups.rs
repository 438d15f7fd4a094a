//! Groups: containers snapshotted at one instant and restored together (an
//! app and its database; a database whose WAL is on a second volume, as a
//! second member on the same cgroup). A group is its members' membership,
//! kept in each member's record (and so beside its data, in its sidecar);
//! it exists while it has members.

use super::error::{EngineError, EngineResult};
use super::locks::ContainerGuard;
use super::names;
use super::sidecars::Mirror;
use super::snapshots::CreateRequest;
use super::Engine;
use crate::events::Event;
use crate::store::{ContainerRecord, GroupMembership, SnapshotRecord};

/// Most members of one group.
pub const MAX_MEMBERS: usize = 64;

/// The locks of several containers, held together.
pub(super) struct ContainerGuards(#[allow(dead_code, reason = "held, not read")] Vec<ContainerGuard>);

/// A group and its members, in start order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub members: Vec<ContainerRecord>,
}

impl Engine {
    /// Makes `name` the group of exactly `members` (in start order): new
    /// members join, members left out leave. A container may be in one
    /// group only.
    pub fn set_group(&self, name: &str, members: &[String], actor: &str) -> EngineResult<Group> {
        names::container_id("name", name)?;
        if members.is_empty() {
            return Err(EngineError::invalid("members", "name at least one container (DeleteGroup removes a group)"));
        }
        if members.len() > MAX_MEMBERS {
            return Err(EngineError::invalid(
                "members",
                format!("{} containers; at most {MAX_MEMBERS}", members.len()),
            ));
        }
        for (i, member) in members.iter().enumerate() {
            names::container_id("members", member)?;
            if members[..i].contains(member) {
                return Err(EngineError::invalid("members", format!("{member} is named twice")));
            }
        }
        let leaving: Vec<String> = self
            .store
            .containers()?
            .into_iter()
            .filter(|c| c.group.as_ref().is_some_and(|g| g.name == name) && !members.contains(&c.id))
            .map(|c| c.id)
            .collect();
        let everyone: Vec<String> = members.iter().chain(&leaving).cloned().collect();
        let _guards = self.lock_all(&everyone)?;
        let mut records = Vec::with_capacity(members.len());
        for member in members {
            let record = self.container_for("members", member)?;
            if let Some(other) = record.group.as_ref().filter(|g| g.name != name) {
                return Err(EngineError::FailedPrecondition {
                    reason: format!("container {member} is in group {}; take it out of that group first", other.name),
                });
            }
            records.push(record);
        }
        for id in &leaving {
            let mut record = self.container(id)?;
            record.group = None;
            self.save_container(&record)?;
        }
        for (order, record) in records.iter_mut().enumerate() {
            let membership = GroupMembership { name: name.to_owned(), order: u32::try_from(order).unwrap_or(u32::MAX) };
            if record.group.as_ref() != Some(&membership) {
                record.group = Some(membership);
                self.save_container(record)?;
            }
        }
        self.emit(Event::new("group.updated", "ok").actor(actor).detail(format!("{name}: {}", members.join(", "))));
        self.store.make_durable()?;
        Ok(Group { name: name.to_owned(), members: records })
    }

    /// Takes every member out of the group `name` (their snapshots stay).
    pub fn delete_group(&self, name: &str, actor: &str) -> EngineResult<()> {
        let group = self.group(name)?;
        let ids: Vec<String> = group.members.iter().map(|m| m.id.clone()).collect();
        let _guards = self.lock_all(&ids)?;
        for id in &ids {
            let mut record = self.container(id)?;
            record.group = None;
            self.save_container(&record)?;
        }
        self.emit(Event::new("group.deleted", "ok").actor(actor).detail(name.to_owned()));
        self.store.make_durable()?;
        Ok(())
    }

    /// The group `name`, its members in start order.
    pub fn group(&self, name: &str) -> EngineResult<Group> {
        names::container_id("group", name)?;
        self.groups()?
            .into_iter()
            .find(|g| g.name == name)
            .ok_or_else(|| EngineError::not_found(format!("group {name:?}")))
    }

    /// Every group, by name.
    pub fn groups(&self) -> EngineResult<Vec<Group>> {
        let mut groups: std::collections::BTreeMap<String, Vec<ContainerRecord>> = Default::default();
        for container in self.store.containers()? {
            if let Some(group) = container.group.clone() {
                groups.entry(group.name).or_default().push(container);
            }
        }
        Ok(groups
            .into_iter()
            .map(|(name, mut members)| {
                members.sort_by_key(|m| (m.group.as_ref().map_or(u32::MAX, |g| g.order), m.id.clone()));
                Group { name, members }
            })
            .collect())
    }

    /// Snapshots every member of `group` at one instant, under one name,
    /// alias and expiry (`request.container` is ignored). All or nothing.
    pub fn create_group_snapshot(&self, group: &str, request: CreateRequest) -> EngineResult<Vec<SnapshotRecord>> {
        super::create::check_request(&request)?;
        let (_guards, members) = self.lock_group(group)?;
        self.create_at_one_instant(&members, Some(group), request)
    }

    /// Locks every member of `group`; the members as read under the locks.
    pub(super) fn lock_group(&self, group: &str) -> EngineResult<(ContainerGuards, Vec<ContainerRecord>)> {
        let ids: Vec<String> = self.group(group)?.members.into_iter().map(|m| m.id).collect();
        let guards = self.lock_all(&ids)?;
        // Read again under the locks: membership may have changed meanwhile.
        let members = self.group(group)?.members;
        if members.iter().map(|m| &m.id).ne(ids.iter()) {
            return Err(EngineError::FailedPrecondition {
                reason: format!("group {group} changed meanwhile; try again"),
            });
        }
        Ok((guards, members))
    }

    /// Locks the containers `ids` in id order (the same order for every
    /// caller, so two group operations never wait on each other).
    pub(super) fn lock_all(&self, ids: &[String]) -> EngineResult<ContainerGuards> {
        let mut sorted: Vec<&String> = ids.iter().collect();
        sorted.sort();
        sorted.dedup();
        let mut guards = Vec::with_capacity(sorted.len());
        for id in sorted {
            guards.push(self.locks.lock(id, self.config.lock_wait)?);
        }
        Ok(ContainerGuards(guards))
    }

    /// Writes a changed container record and its sidecar.
    fn save_container(&self, record: &ContainerRecord) -> EngineResult<()> {
        self.store.put_container(record)?;
        self.mirror(record, Mirror::Container(record))
    }
}
