//! The `systemd` lifecycle: stop and start a unit through systemd's D-Bus API
//! (`org.freedesktop.systemd1.Manager.StopUnit`/`StartUnit` in mode
//! `replace`), waiting for the job to finish (`JobRemoved` with its result).
//!
//! The bus is the system bus, or `$ROLLPOINT_SYSTEMD_BUS` (a D-Bus address),
//! which tests point at a bus of their own with a stand-in systemd on it.

use std::time::Duration;

use futures_util::StreamExt;
use zbus::zvariant::OwnedObjectPath;

use super::LifecycleError;

pub use crate::sys::bus::BUS_ENV;

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Manager {
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn subscribe(&self) -> zbus::Result<()>;
    #[zbus(signal)]
    fn job_removed(&self, id: u32, job: OwnedObjectPath, unit: String, result: String) -> zbus::Result<()>;
}

#[derive(Debug, Clone, Copy)]
pub enum Verb {
    Start,
    Stop,
}

/// Starts or stops `unit` and waits up to `timeout` for its job to finish.
/// Blocking: runs the D-Bus exchange on the caller's runtime, or on a small
/// one of its own outside of any.
pub fn run_unit_job(verb: Verb, unit: &str, timeout: Duration) -> Result<(), LifecycleError> {
    let job = unit_job(verb, unit);
    let outcome = match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(tokio::time::timeout(timeout, job)),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| failure(unit, format!("starting a runtime: {e}")))?
            .block_on(async { tokio::time::timeout(timeout, job).await }),
    };
    match outcome {
        Ok(result) => result,
        Err(_) => Err(failure(unit, format!("the {verb:?} job did not finish within {timeout:?}"))),
    }
}

async fn unit_job(verb: Verb, unit: &str) -> Result<(), LifecycleError> {
    let dbus = |e: zbus::Error| failure(unit, format!("D-Bus: {e}"));
    let connection = crate::sys::bus::system_bus().await.map_err(dbus)?;
    let manager = ManagerProxy::new(&connection).await.map_err(dbus)?;
    // Listen before asking, so a job that finishes at once is not missed.
    let mut removed = manager.receive_job_removed().await.map_err(dbus)?;
    manager.subscribe().await.map_err(dbus)?;
    let job = match verb {
        Verb::Start => manager.start_unit(unit, "replace").await,
        Verb::Stop => manager.stop_unit(unit, "replace").await,
    }
    .map_err(dbus)?;
    while let Some(signal) = removed.next().await {
        let args = signal.args().map_err(dbus)?;
        if args.job == job {
            return match args.result.as_str() {
                "done" => Ok(()),
                other => Err(failure(unit, format!("the {verb:?} job ended with {other:?}"))),
            };
        }
    }
    Err(failure(unit, "the bus closed before the job finished".into()))
}

fn failure(unit: &str, reason: String) -> LifecycleError {
    LifecycleError::Systemd { unit: unit.to_owned(), reason }
}
