//! A D-Bus of a test's own (`dbus-daemon`, killed by pid on drop) and a
//! stand-in systemd-machined on it: the part discovery uses (ListMachines,
//! MachineNew/MachineRemoved, each machine's Name, Class, Unit, Leader,
//! RootDirectory, State). The daemon under test is pointed at the bus with
//! `ROLLPOINT_SYSTEMD_BUS`. Leaders and roots are real: a test gives a real
//! process and a real subvolume.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{ObjectPath, OwnedObjectPath};

/// A dbus-daemon of the caller's own.
pub struct PrivateBus {
    child: Child,
    /// Its D-Bus address (`unix:path=...`).
    pub address: String,
    dir: PathBuf,
}

impl PrivateBus {
    pub fn start() -> std::io::Result<PrivateBus> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!("rollpoint-bus-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir)?;
        let address = format!("unix:path={}", dir.join("bus").display());
        let child = Command::new("/usr/bin/dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", &format!("--address={address}")])
            .stdout(Stdio::null())
            .spawn()
            .inspect_err(|_| {
                let _ = std::fs::remove_dir_all(&dir);
            })?;
        let bus = PrivateBus { child, address, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !bus.dir.join("bus").exists() {
            if Instant::now() > deadline {
                return Err(std::io::Error::other("dbus-daemon did not create its socket"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(bus)
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A machine as machined describes it.
#[derive(Debug, Clone)]
pub struct Machine {
    pub name: String,
    /// "container" or "vm".
    pub class: String,
    pub unit: String,
    pub leader: u32,
    pub root: String,
}

/// The stand-in machined, serving on a bus until dropped.
pub struct StandInMachined {
    connection: zbus::Connection,
    machines: Arc<Mutex<Vec<(String, String)>>>,
}

impl StandInMachined {
    /// Takes the name `org.freedesktop.machine1` on the bus at `address`.
    pub async fn start(address: &str) -> zbus::Result<StandInMachined> {
        let machines = Arc::new(Mutex::new(Vec::new()));
        let connection = zbus::connection::Builder::address(address)?
            .name("org.freedesktop.machine1")?
            .serve_at("/org/freedesktop/machine1", Manager { machines: machines.clone() })?
            .build()
            .await?;
        Ok(StandInMachined { connection, machines })
    }

    /// Lists `machine` from now on, and says so (MachineNew).
    pub async fn add(&self, machine: Machine) -> zbus::Result<()> {
        let path = machine_path(&machine.name);
        let name = machine.name.clone();
        self.machines.lock().push((name.clone(), machine.class.clone()));
        self.connection.object_server().at(path.clone(), machine).await?;
        Manager::machine_new(&self.emitter()?, &name, path.as_ref()).await
    }

    /// Lists `name` no more, and says so (MachineRemoved).
    pub async fn remove(&self, name: &str) -> zbus::Result<()> {
        self.machines.lock().retain(|(listed, _)| listed != name);
        self.connection.object_server().remove::<Machine, _>(machine_path(name)).await?;
        Manager::machine_removed(&self.emitter()?, name, machine_path(name).as_ref()).await
    }

    fn emitter(&self) -> zbus::Result<SignalEmitter<'_>> {
        SignalEmitter::new(&self.connection, "/org/freedesktop/machine1")
    }
}

struct Manager {
    machines: Arc<Mutex<Vec<(String, String)>>>,
}

#[zbus::interface(name = "org.freedesktop.machine1.Manager")]
impl Manager {
    async fn list_machines(&self) -> Vec<(String, String, String, OwnedObjectPath)> {
        self.machines
            .lock()
            .iter()
            .map(|(name, class)| (name.clone(), class.clone(), "rollpoint-test".into(), machine_path(name)))
            .collect()
    }

    #[zbus(signal)]
    async fn machine_new(emitter: &SignalEmitter<'_>, machine: &str, path: ObjectPath<'_>) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn machine_removed(emitter: &SignalEmitter<'_>, machine: &str, path: ObjectPath<'_>) -> zbus::Result<()>;
}

#[zbus::interface(name = "org.freedesktop.machine1.Machine")]
impl Machine {
    #[zbus(property)]
    async fn name(&self) -> String {
        self.name.clone()
    }
    #[zbus(property)]
    async fn class(&self) -> String {
        self.class.clone()
    }
    #[zbus(property)]
    async fn unit(&self) -> String {
        self.unit.clone()
    }
    #[zbus(property)]
    async fn leader(&self) -> u32 {
        self.leader
    }
    #[zbus(property)]
    async fn root_directory(&self) -> String {
        self.root.clone()
    }
    #[zbus(property)]
    async fn state(&self) -> String {
        "running".into()
    }
}

/// machined's object path of a machine (what object paths cannot hold
/// escaped as `_XX`).
fn machine_path(name: &str) -> OwnedObjectPath {
    let escaped: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_string() } else { format!("_{:02x}", c as u32) })
        .collect();
    ObjectPath::try_from(format!("/org/freedesktop/machine1/machine/{escaped}"))
        .expect("an escaped name makes a valid object path")
        .into()
}
