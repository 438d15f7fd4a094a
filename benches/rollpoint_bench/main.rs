//! rollpoint's benchmark suite: the real `rollpointd`, driven through its
//! public gRPC API over its Unix socket, against real btrfs filesystems on
//! loop devices and real cgroups full of real processes.
//!
//! ```sh
//! sudo scripts/bench [--quick] [--json FILE] [--compare OLD.json] [--only freeze,sizes,burst,metadata,remote,diff,hosts]
//! ```
//!
//! Every case is reported with n, median, p95, p99 and max, next to the raw
//! floor measured by a minimal program in the same run (`floor.rs`: syncfs,
//! freeze, snapshot ioctl, thaw; clone and exchange for a revert) and to its
//! target. The goals are reported, never asserted.
//!
//! `cargo test --all-targets` builds and runs this binary too, without
//! `--bench` among its arguments: then it only says it is skipped.

mod args;
mod cases;
mod floor;
mod http;
mod report;
mod setup;
mod stats;

use std::process::ExitCode;
use std::time::Instant;

use rollpoint::testkit::running_as_root;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if !argv.iter().any(|a| a == "--bench") {
        println!("rollpoint_bench: skipped (not run by `cargo bench`; run it with `sudo scripts/bench`)");
        return ExitCode::SUCCESS;
    }
    let options = match args::Options::parse(&argv) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("rollpoint_bench: {message}\n\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    if options.help {
        println!("{}", args::USAGE);
        return ExitCode::SUCCESS;
    }
    if !running_as_root() {
        // `cargo bench` as a user (for the criterion benches) must not fail here.
        println!("rollpoint_bench: skipped (needs root: loop devices, btrfs, cgroups; run `sudo scripts/bench`)");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rollpoint_bench: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    match runtime.block_on(cases::run_suite(options)) {
        Ok(()) => {
            eprintln!("rollpoint_bench: done in {:.1} min", started.elapsed().as_secs_f64() / 60.0);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("rollpoint_bench: {error}");
            ExitCode::FAILURE
        }
    }
}
