//! rollpointd's command line (clap). Lives in the library so the man page
//! generator (`rollpoint-docs`) sees the same arguments as the daemon.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::config::DEFAULT_CONFIG;

/// Consistent copy-on-write snapshots of cgroup-scoped containers, over gRPC.
///
/// Freezes a container's cgroup, snapshots its btrfs subvolume, thaws it, and
/// keeps the snapshots named, aliased and expiring. Runs as root.
#[derive(Parser, Debug)]
#[command(name = "rollpointd", version, about, long_about)]
pub struct Args {
    /// Configuration file (TOML). A missing file means the defaults.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Folder of the daemon's records [config: state_dir; default /var/lib/rollpoint].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Unix socket to listen on [config: socket; default /run/rollpoint/rollpointd.sock].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Also listen on TCP, loopback only [config: listen; default off].
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<SocketAddr>,
    /// Log filter (e.g. info, debug, rollpoint=trace) [env: RUST_LOG].
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
}
