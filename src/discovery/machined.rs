//! systemd-machined (`org.freedesktop.machine1`) on the system bus: its
//! machines, each with its unit, leader process and root directory.
//!
//! A machine's cgroup is its unit's (the leader's group cut at the unit:
//! `systemd-nspawn@NAME.service`, whose `payload` holds the container's
//! processes), so a freeze holds the whole unit; its volume is its root
//! directory (`/var/lib/machines/NAME`, a btrfs subvolume where systemd
//! made it); it is stopped and started through its unit.

use std::path::PathBuf;

use zbus::zvariant::OwnedObjectPath;

use super::{cgroup_of, suggested_id, DiscoveryConfig, Found, Source};
use crate::store::LifecycleSpec;

#[zbus::proxy(
    interface = "org.freedesktop.machine1.Manager",
    default_service = "org.freedesktop.machine1",
    default_path = "/org/freedesktop/machine1"
)]
trait Manager {
    /// (name, class, service, object path) of each machine.
    fn list_machines(&self) -> zbus::Result<Vec<(String, String, String, OwnedObjectPath)>>;
    #[zbus(signal)]
    fn machine_new(&self, machine: String, path: OwnedObjectPath) -> zbus::Result<()>;
    #[zbus(signal)]
    fn machine_removed(&self, machine: String, path: OwnedObjectPath) -> zbus::Result<()>;
}

/// A stream that yields each time machined says a machine came or went.
pub async fn changes() -> zbus::Result<std::pin::Pin<Box<dyn futures_util::Stream<Item = ()> + Send>>> {
    use futures_util::StreamExt;
    let connection = crate::sys::bus::system_bus().await?;
    let manager = ManagerProxy::new(&connection).await?;
    let added = manager.receive_machine_new().await?.map(|_| ());
    let removed = manager.receive_machine_removed().await?.map(|_| ());
    Ok(Box::pin(futures_util::stream::select(added, removed)))
}

#[zbus::proxy(interface = "org.freedesktop.machine1.Machine", default_service = "org.freedesktop.machine1")]
trait Machine {
    #[zbus(property)]
    fn name(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn class(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn unit(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn leader(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn root_directory(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
}

/// The machines machined knows (all of them: those it lists are running).
pub async fn list(config: &DiscoveryConfig) -> Result<Vec<Found>, String> {
    let connection = crate::sys::bus::system_bus().await.map_err(|e| format!("system bus: {e}"))?;
    let manager = ManagerProxy::new(&connection).await.map_err(|e| format!("machined: {e}"))?;
    let machines = manager.list_machines().await.map_err(|e| format!("machined: ListMachines: {e}"))?;
    let mut found = Vec::with_capacity(machines.len());
    for (name, _, _, path) in machines {
        let machine = MachineProxy::builder(&connection)
            .path(path)
            .map_err(|e| format!("machined: machine {name}: {e}"))?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(|e| format!("machined: machine {name}: {e}"))?;
        // A machine that went away between the list and this is skipped.
        if let Ok(machine) = describe(&name, &machine, config).await {
            found.push(machine);
        }
    }
    Ok(found)
}

async fn describe(name: &str, machine: &MachineProxy<'_>, config: &DiscoveryConfig) -> zbus::Result<Found> {
    let class = machine.class().await?;
    let unit = machine.unit().await?;
    let leader = machine.leader().await?;
    let root = machine.root_directory().await?;
    let state = machine.state().await.unwrap_or_default();
    let mut problem = None;
    if class != "container" {
        problem = Some(format!("a {class}, not a container: its disk is not a host folder"));
    } else if root.is_empty() {
        problem = Some("machined reports no root directory".to_owned());
    } else if !unit.ends_with(".service") {
        problem = Some(format!(
            "runs in {unit}, which systemd cannot start again after a restore; start it as a service (machinectl start {name})"
        ));
    }
    let cgroup = match cgroup_of(leader) {
        Ok(group) => Some(unit_group(&group, &unit)),
        Err(reason) => {
            problem.get_or_insert(reason);
            None
        }
    };
    Ok(Found {
        source: Source::Machined,
        name: name.to_owned(),
        suggested_id: suggested_id(name),
        running: state != "closing",
        cgroup,
        volumes: if root.is_empty() { Vec::new() } else { vec![PathBuf::from(root)] },
        lifecycle: LifecycleSpec::Systemd { unit, timeout: config.lifecycle_timeout },
        problem,
    })
}

/// The leader's group cut after the unit's component
/// (`/machine.slice/systemd-nspawn@a.service/payload` → `.../systemd-nspawn@a.service`);
/// the leader's group itself when the unit is not on its path.
pub fn unit_group(leader_group: &str, unit: &str) -> String {
    let mut kept = Vec::new();
    for component in leader_group.split('/') {
        kept.push(component);
        if component == unit {
            return kept.join("/");
        }
    }
    leader_group.to_owned()
}

#[cfg(test)]
mod tests {
    use super::unit_group;

    #[test]
    fn the_group_is_the_units() {
        let unit = "systemd-nspawn@web.service";
        assert_eq!(
            unit_group("/machine.slice/systemd-nspawn@web.service/payload", unit),
            "/machine.slice/systemd-nspawn@web.service"
        );
        assert_eq!(unit_group("/machine.slice/machine-web.scope", unit), "/machine.slice/machine-web.scope");
        assert_eq!(
            unit_group("/machine.slice/machine-web.scope/payload", "machine-web.scope"),
            "/machine.slice/machine-web.scope"
        );
    }
}
