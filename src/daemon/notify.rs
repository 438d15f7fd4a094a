//! sd_notify(3) without libsystemd: `READY=1` once start-up recovery is done
//! (the unit is `Type=notify`), `WATCHDOG=1` from a task that proves the
//! engine answers (a store read on the blocking pool), `STOPPING=1` at
//! shutdown. Without `$NOTIFY_SOCKET` (not under systemd) every call is a
//! no-op.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::Duration;

use crate::engine::Engine;

/// Sends one notification; errors are logged, never fatal.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let bytes = path.as_encoded_bytes();
    let address = match bytes.strip_prefix(b"@") {
        // An abstract socket name.
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(&path),
    };
    let sent = address.and_then(|address| UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &address));
    if let Err(error) = sent {
        tracing::warn!(%error, state, "sd_notify failed");
    }
}

/// How often to ping the watchdog: half of `$WATCHDOG_USEC`, if set for us.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Some(pid) = std::env::var("WATCHDOG_PID").ok().and_then(|p| p.parse::<u32>().ok()) {
        if pid != std::process::id() {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2))
}

/// Pings the watchdog as long as the engine answers within the interval.
pub async fn watchdog(engine: Arc<Engine>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let probe = engine.clone();
        let alive =
            tokio::time::timeout(interval, tokio::task::spawn_blocking(move || probe.store().containers().is_ok()))
                .await
                .is_ok_and(|answer| answer.is_ok_and(|ok| ok));
        if alive {
            notify("WATCHDOG=1");
        } else {
            tracing::error!("engine did not answer the watchdog probe; not pinging systemd");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_reaches_the_notify_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        // SAFETY: set_var is unsafe because another thread may read the
        // environment at the same time; no other test touches NOTIFY_SOCKET,
        // and reads of other variables do not race with this one in glibc's
        // setenv beyond what Rust's env lock already serializes.
        unsafe { std::env::set_var("NOTIFY_SOCKET", &path) };
        notify("READY=1");
        // SAFETY: as above.
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        let mut buffer = [0u8; 64];
        let n = socket.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"READY=1");
    }
}
