//! rollpointd: the rollpoint daemon. Logic lives in the library.

use std::process::ExitCode;

use clap::Parser;
use rollpoint::config::Config;
use rollpoint::daemon::Args;

fn main() -> ExitCode {
    rollpoint::sys::memory::limit_arenas();
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
