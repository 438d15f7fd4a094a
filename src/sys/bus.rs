//! The system D-Bus, where systemd and systemd-machined answer; or the bus
//! at `$ROLLPOINT_SYSTEMD_BUS` (a D-Bus address), which tests point at a bus
//! of their own with stand-ins on it.

/// A D-Bus address to use instead of the system bus.
pub const BUS_ENV: &str = "ROLLPOINT_SYSTEMD_BUS";

/// A connection to the system bus (or to the bus `$ROLLPOINT_SYSTEMD_BUS` names).
pub async fn system_bus() -> zbus::Result<zbus::Connection> {
    match std::env::var(BUS_ENV) {
        Ok(address) => zbus::connection::Builder::address(address.as_str())?.build().await,
        Err(_) => zbus::Connection::system().await,
    }
}
