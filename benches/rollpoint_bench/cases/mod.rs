//! The cases, in the order of the issue: freeze window (1), snapshot latency,
//! revert, raw tool and copy per data size (2-4), burst (5), metadata scale
//! and memory (6), off-host copies against restic (7), diff (8), container
//! hosts (9), restores and snapshots under pressure (10). One daemon serves
//! cases 1-6, so its memory is measured idle, after the burst and with every
//! snapshot recorded; case 7 starts a second one, configured with its remote.

mod burst;
mod busy;
mod diff;
mod freeze;
mod hosts;
mod metadata;
mod remote;
mod sizes;
mod soak;

use std::path::Path;
use std::time::Instant;

use rollpoint::api::client::Clients;
use rollpoint::testkit::daemon::{DaemonOptions, TestDaemon};
use serde_json::json;

use crate::args::{Group, Options};
use crate::floor::Floor;
use crate::report::{Report, Target, Unit};
use crate::setup::{self, progress, Fallible, DAEMON};

pub const FREEZE: &str = "1 freeze window (Snapshot.frozen_for)";
pub const SNAPSHOT: &str = "2 snapshot latency (CreateSnapshot sent to reply)";
pub const REVERT: &str = "3 revert (RestoreSnapshot)";
pub const SIDE_BY_SIDE: &str = "4 side by side: raw tool and copy";
pub const BURST: &str = "5 burst: containers at once";
pub const METADATA: &str = "6 metadata scale and daemon memory";
pub const REMOTE: &str = "7 off-host copies (export/import vs restic 0.14, same SeaweedFS)";
pub const DIFF: &str = "8 diff of two snapshots (DiffSnapshots vs diff -rq)";
pub const HOSTS: &str = "9 container hosts: group snapshots and discovery";
pub const BUSY: &str = "10 under pressure: a restore with dirty data, a snapshot beside busy neighbours";
pub const SOAK: &str = "11 soak: 50 clients, the daemon's memory over time";

/// The daemon's configuration for the suite: 256 in flight, so that the
/// burst of 100 runs all at once, as in the runs before calls past the limit
/// queued; what the defaults do (64 in flight, the rest queued) is measured
/// separately in the burst case, on a second daemon.
pub const DAEMON_CONFIG: &str = "max_concurrent_operations = 256\n";

/// What every case gets.
pub struct Bench {
    pub options: Options,
    pub daemon: TestDaemon,
    pub clients: Clients,
    pub floor: Floor,
    pub report: Report,
}

impl Bench {
    pub fn daemon_pid(&self) -> Fallible<u32> {
        Ok(self.daemon.pid().ok_or("the daemon is not running")?)
    }

    /// A row for the daemon's resident memory now.
    pub fn record_rss(&mut self, id: &str, case: &str) -> Fallible<()> {
        let rss = setup::rss_mib(self.daemon_pid()?)?;
        self.report.add(METADATA, id, case, Unit::MiB, vec![rss], None, Target::info(), "VmRSS of /proc/<pid>/status");
        Ok(())
    }
}

pub async fn run_suite(options: Options) -> Fallible<()> {
    setup::watch_signals();
    let started_at = chrono::Utc::now();
    let started = Instant::now();
    let machine = setup::machine();
    progress(format!("{} run on {machine}", options.mode()));
    let daemon = TestDaemon::start_with(Path::new(DAEMON), DaemonOptions::default().config(DAEMON_CONFIG)).await?;
    let clients = daemon.clients().await?;
    let mut bench =
        Bench { options: options.clone(), daemon, clients, floor: Floor::new()?, report: Report::default() };
    bench.report.note(format!(
        "one rollpointd (release build) serves every case, on its own socket, configured with {:?}; clients call it over that Unix socket",
        DAEMON_CONFIG.trim()
    ));
    bench.record_rss("rss.idle", "daemon RSS, idle (started, nothing registered)")?;

    let mut failures = Vec::new();
    for group in Group::ALL {
        if !options.runs(group) {
            continue;
        }
        if let Err(error) = setup::check_interrupted() {
            failures.push(error.to_string());
            break;
        }
        let result = match group {
            Group::Freeze => freeze::run(&mut bench).await,
            Group::Sizes => sizes::run(&mut bench).await,
            Group::Burst => burst::run(&mut bench).await,
            Group::Metadata => metadata::run(&mut bench).await,
            Group::Remote => remote::run(&mut bench).await,
            Group::Diff => diff::run(&mut bench).await,
            Group::Hosts => hosts::run(&mut bench).await,
            Group::Busy => busy::run(&mut bench).await,
            Group::Soak => soak::run(&mut bench).await,
        };
        if let Err(error) = result {
            let line = format!("{group:?} failed: {error}");
            progress(&line);
            bench.report.note(line.clone());
            failures.push(line);
        }
    }
    if bench.daemon.is_running() {
        bench.record_rss("rss.end", "daemon RSS, at the end of the run")?;
    } else {
        failures.push("the daemon died during the run".into());
        bench.daemon.print_log();
    }

    // Rows in the order of the sections, each section in run order.
    bench.report.rows.sort_by_key(|row| row.section);
    let duration = started.elapsed();
    println!();
    println!(
        "rollpoint benchmarks, {} run, {} ({:.1} min)",
        options.mode(),
        started_at.format("%Y-%m-%d %H:%M UTC"),
        duration.as_secs_f64() / 60.0
    );
    println!(
        "machine: {} CPUs ({}), {} GiB RAM, kernel {}, loop images on {}",
        machine["cpus"],
        machine["cpu_model"].as_str().unwrap_or("?"),
        machine["memory_gib"],
        machine["kernel"].as_str().unwrap_or("?"),
        machine["temp_dir_filesystem"].as_str().unwrap_or("?")
    );
    println!("floor = the same operation by the minimal program (see benches/rollpoint_bench/floor.rs); x floor = median / floor median");
    println!();
    print!("{}", bench.report.table());
    for note in &bench.report.notes {
        println!("- {note}");
    }
    if let Some(path) = &options.compare {
        match bench.report.compare(path) {
            Ok(text) => print!("\n{text}"),
            Err(error) => eprintln!("rollpoint_bench: --compare: {error}"),
        }
    }
    if let Some(path) = &options.json {
        let header = json!({
            "suite": "rollpoint_bench",
            "mode": options.mode(),
            "started_at": started_at.to_rfc3339(),
            "duration_seconds": duration.as_secs_f64(),
            "command": std::env::args().collect::<Vec<_>>(),
            "daemon_config": DAEMON_CONFIG,
            "machine": machine,
            "failures": failures,
        });
        let text = serde_json::to_string_pretty(&bench.report.json(header))?;
        std::fs::write(path, text + "\n").map_err(|e| format!("write {}: {e}", path.display()))?;
        progress(format!("JSON written to {}", path.display()));
    }
    if let Some(path) = &options.markdown {
        std::fs::write(path, bench.report.markdown()).map_err(|e| format!("write {}: {e}", path.display()))?;
        progress(format!("Markdown written to {}", path.display()));
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} part(s) failed: {}", failures.len(), failures.join("; ")).into())
    }
}
