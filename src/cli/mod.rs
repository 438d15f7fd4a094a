//! The `rollpoint` command-line client: parses the command line (`args`),
//! connects to rollpointd, runs one command (`commands`) and prints its result
//! for people or as JSON (`views`, `output`). Failures are reported in one
//! place (`error`), with the exit codes documented in `--help`.

mod args;
mod commands;
mod error;
mod output;
mod remote_views;
// Public: the REST API (api::rest) answers with the same views.
pub mod views;

use std::process::ExitCode;
use std::sync::Arc;

pub use args::Cli;
pub use error::{EXIT_SERVER, EXIT_UNREACHABLE, EXIT_USAGE};

use crate::api::client::{Clients, Target};
use crate::api::retry::{OnRetry, RetryNotice, RetryPolicy};
use commands::Context;
use error::CliError;

/// Runs a parsed command line to its exit code. Never panics on daemon errors.
pub fn run(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rollpoint: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_SERVER);
        }
    };
    match runtime.block_on(run_async(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => error.exit(),
    }
}

async fn run_async(cli: Cli) -> Result<(), CliError> {
    match &cli.command {
        args::Command::Recover(args) => return commands::recover::run(args, cli.global.json),
        args::Command::Store(command) => return commands::recover::store(command, cli.global.json),
        _ => {}
    }
    let target = target(&cli.global);
    let on_retry: OnRetry = Arc::new(|notice: &RetryNotice| {
        eprintln!(
            "rollpoint: {}; retrying in {:.1} s (retry {} of {}, --retries)",
            notice.reason,
            notice.delay.as_secs_f64(),
            notice.attempt,
            notice.of
        );
    });
    let policy = RetryPolicy::with_retries(cli.global.retries);
    let (token, ca_cert) = (cli.global.token.as_deref(), cli.global.ca_cert.as_deref());
    let clients = Clients::connect_retrying(&target, token, ca_cert, policy, Some(on_retry))
        .await
        .map_err(|source| CliError::Connect { target: target.clone(), source })?;
    let mut context = Context { clients, target, json: cli.global.json };
    commands::dispatch(&mut context, cli.command).await
}

/// `--endpoint` (TCP) when given, else the Unix socket.
fn target(global: &args::GlobalArgs) -> Target {
    match &global.endpoint {
        Some(url) => Target::Tcp(url.clone()),
        None => Target::Unix(global.socket.clone()),
    }
}
