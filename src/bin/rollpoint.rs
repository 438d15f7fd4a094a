//! rollpoint: the command-line client of rollpointd. Logic lives in
//! `rollpoint::cli`.

use std::process::ExitCode;

use rollpoint::cli::Cli;

fn main() -> ExitCode {
    rollpoint::cli::run(Cli::parse_command_line())
}
