//! What discovery found, judged by the freezer and the backend: which
//! containers can be registered as they are (and if not, why), registering
//! them, and marking those that vanished from their manager (their
//! snapshots stay).

use std::path::PathBuf;

use super::containers::RegisterRequest;
use super::error::EngineResult;
use super::names;
use super::sidecars::Mirror;
use super::Engine;
use crate::discovery::{Found, Scan};
use crate::events::Event;
use crate::store::{ContainerRecord, Discovered};

/// A found container, judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub found: Found,
    /// The registered container it is, if any (found there before, or on
    /// the same volume).
    pub registered_as: Option<String>,
    /// The volume it would be registered with: the first candidate the
    /// backend can snapshot.
    pub volume: Option<PathBuf>,
    /// Why it cannot be registered as it is.
    pub problem: Option<String>,
}

impl Candidate {
    pub fn registrable(&self) -> bool {
        self.registered_as.is_none() && self.problem.is_none()
    }
}

/// What `register_found` did with one candidate.
#[derive(Debug)]
pub struct Registration {
    pub candidate: Candidate,
    /// The new container, or why its registration failed.
    pub outcome: EngineResult<ContainerRecord>,
}

impl Engine {
    /// Where and how discovery looks.
    pub fn discovery_config(&self) -> &crate::discovery::DiscoveryConfig {
        &self.config.discovery
    }

    /// Judges each found container: already registered, registrable, or not
    /// (with the reason: the manager's, the freezer's or the backend's).
    pub fn assess(&self, found: Vec<Found>) -> EngineResult<Vec<Candidate>> {
        let containers = self.store.containers()?;
        let mut candidates = Vec::with_capacity(found.len());
        for found in found {
            let mut problem = found.problem.clone();
            let mut volume = None;
            let mut refusals = Vec::new();
            for path in &found.volumes {
                match self.backend.inspect(&path.to_string_lossy(), &found.suggested_id) {
                    Ok(info) => {
                        volume = Some(info.path);
                        break;
                    }
                    Err(error) => refusals.push(format!("{}: {error}", path.display())),
                }
            }
            let registered_as = containers
                .iter()
                .find(|c| is_from(c, &found) || volume.as_ref().is_some_and(|v| *v == c.volume))
                .map(|c| c.id.clone());
            if problem.is_none() && registered_as.is_none() {
                problem = self.unregistrable(&found, volume.is_some(), &refusals, &containers);
            }
            candidates.push(Candidate { found, registered_as, volume, problem });
        }
        Ok(candidates)
    }

    /// Why a found container with no problem of its manager's cannot be
    /// registered as it is, if so.
    fn unregistrable(
        &self,
        found: &Found,
        has_volume: bool,
        refusals: &[String],
        containers: &[ContainerRecord],
    ) -> Option<String> {
        if let Some(cgroup) = &found.cgroup {
            if let Err(error) = self.freezer.resolve(cgroup) {
                return Some(format!("its cgroup {cgroup} cannot be frozen: {error}"));
            }
        }
        if !has_volume {
            return Some(if refusals.is_empty() {
                "it has no volume on the host (no bind mount, no named volume, no btrfs storage)".to_owned()
            } else {
                format!("none of its volumes can be snapshotted: {}", refusals.join("; "))
            });
        }
        if names::container_id("id", &found.suggested_id).is_err() {
            return Some(format!("{:?} makes no container id; register it by hand", found.name));
        }
        if containers.iter().any(|c| c.id == found.suggested_id) {
            return Some(format!(
                "the id {} is another container's; register it by hand with another id",
                found.suggested_id
            ));
        }
        None
    }

    /// Registers every registrable candidate, each under its suggested id,
    /// with its manager's lifecycle; one failure does not stop the others.
    pub fn register_found(&self, candidates: Vec<Candidate>, actor: &str) -> Vec<Registration> {
        candidates
            .into_iter()
            .filter(Candidate::registrable)
            .map(|candidate| {
                let found = &candidate.found;
                let outcome = self.register_container(RegisterRequest {
                    id: found.suggested_id.clone(),
                    cgroup: found.cgroup.clone().unwrap_or_default(),
                    subvolume: candidate.volume.as_ref().map(|v| v.to_string_lossy().into_owned()).unwrap_or_default(),
                    lifecycle: found.lifecycle.clone(),
                    labels: Default::default(),
                    hooks: Default::default(),
                    actor: actor.to_owned(),
                    discovered: Some(Discovered {
                        source: found.source.as_str().to_owned(),
                        name: found.name.clone(),
                        vanish_time: None,
                    }),
                });
                Registration { candidate, outcome }
            })
            .collect()
    }

    /// Marks the discovered containers whose manager answered `scan` and no
    /// longer lists them as vanished (`container.vanished`), and those back
    /// again as present (`container.returned`). Returns how many changed.
    pub fn reconcile_discovered(&self, scan: &Scan, actor: &str) -> EngineResult<usize> {
        let mut changed = 0;
        for container in self.store.containers()? {
            let Some(discovered) = &container.discovered else { continue };
            let Some(source) = crate::discovery::Source::parse(&discovered.source) else { continue };
            if !scan.answered(source) {
                continue;
            }
            let found = scan.found.iter().find(|found| is_from(&container, found));
            // Where the manager now runs it (a container made again under
            // the same name has a new cgroup and Podman id).
            let cgroup = found.and_then(|f| f.cgroup.as_deref()).and_then(|c| self.freezer.resolve(c).ok());
            let moved = found.is_some_and(|f| {
                cgroup.as_ref().is_some_and(|c| *c != container.cgroup) || f.lifecycle != container.lifecycle
            });
            if found.is_some() == discovered.vanish_time.is_none() && !moved {
                continue;
            }
            let _guard = self.locks.lock(&container.id, self.config.lock_wait)?;
            let mut record = self.container(&container.id)?;
            if let Some(found) = found.filter(|_| moved) {
                record.cgroup = cgroup.unwrap_or(record.cgroup);
                record.lifecycle = found.lifecycle.clone();
            }
            let Some(discovered) = record.discovered.as_mut() else { continue };
            let (kind, detail) = match (found, discovered.vanish_time) {
                (Some(_), Some(_)) => {
                    discovered.vanish_time = None;
                    ("container.returned", format!("{source} lists {} again", discovered.name))
                }
                (Some(_), None) => ("container.updated", format!("{source} runs {} elsewhere now", discovered.name)),
                (None, _) => {
                    discovered.vanish_time = Some(self.clock.now());
                    (
                        "container.vanished",
                        format!("{source} no longer lists {}; its snapshots are kept", discovered.name),
                    )
                }
            };
            let detail = if moved { format!("{detail}; cgroup {}", record.cgroup.display()) } else { detail };
            self.store.put_container(&record)?;
            self.mirror(&record, Mirror::Container(&record))?;
            self.emit(Event::new(kind, "ok").container(&record.id).actor(actor).detail(detail));
            self.store.make_durable()?;
            changed += 1;
        }
        Ok(changed)
    }
}

/// Whether `container` was registered from this found container.
fn is_from(container: &ContainerRecord, found: &Found) -> bool {
    container.discovered.as_ref().is_some_and(|d| d.source == found.source.as_str() && d.name == found.name)
}
