//! rollpointd: the rollpoint daemon. Logic lives in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use rollpoint::config::{Config, DEFAULT_CONFIG};

/// Consistent copy-on-write snapshots of cgroup-scoped containers, over gRPC.
///
/// Freezes a container's cgroup, snapshots its btrfs subvolume, thaws it, and
/// keeps the snapshots named, aliased and expiring. Runs as root.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// Configuration file (TOML). A missing file means the defaults.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Folder of the daemon's records [config: state_dir; default /var/lib/rollpoint].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Unix socket to listen on [config: socket; default /run/rollpoint/rollpointd.sock].
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Also listen on TCP, loopback only [config: listen; default off].
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<SocketAddr>,
    /// Log filter (e.g. info, debug, rollpoint=trace) [env: RUST_LOG].
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    rollpoint::daemon::logging::init(args.log_level.as_deref());
    let mut config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("rollpointd: {error}");
            return ExitCode::from(2);
        }
    };
    if let Some(dir) = args.state_dir {
        config.state_dir = dir;
    }
    if let Some(socket) = args.socket {
        config.socket = socket;
    }
    if args.listen.is_some() {
        config.listen = args.listen;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rollpointd: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(rollpoint::daemon::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "rollpointd stopped");
            eprintln!("rollpointd: {error}");
            ExitCode::FAILURE
        }
    }
}
