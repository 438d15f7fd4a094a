//! Test and benchmark workload run inside containers; not shipped.
//! The logic lives in `rollpoint::testkit::workload`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use rollpoint::testkit::workload::{self, BusyKind};

const HELP: &str = "\
rollpoint-workload: processes for rollpoint's snapshot tests and benchmarks

USAGE:
  rollpoint-workload write --data FILE --progress FILE --id N [--max N] [--pause-us N]
      Append self-checking records to FILE (one write(2) each) and, after each,
      store the last completed counter in the progress file. Runs until killed,
      or until N records are written with --max.
  rollpoint-workload verify --data FILE --id N [--completed-before N]
      Check FILE holds records 0,1,2,... of writer N, whole and intact, and at
      least up to --completed-before. Prints the report; exit 1 on failure.
  rollpoint-workload sleep
      Sleep until killed.
  rollpoint-workload spin
      Busy-loop on one CPU until killed.
  rollpoint-workload serve --watch FILE --status FILE
      Every 50 ms copy the watched file's contents to the status file.
  rollpoint-workload stream --dir DIR --mib-per-second N
      Write N MiB/s (buffered, never synced) into two 64 MiB files in DIR, in
      turn, until killed: a busy neighbour.
  rollpoint-workload --help
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("rollpoint-workload: {message}");
            ExitCode::from(2)
        }
    }
}

/// `Err` is a usage or runtime error message; a failed verification is
/// `Ok(ExitCode::FAILURE)` so scripts can tell the two apart (1 vs 2).
fn run(args: &[String]) -> Result<ExitCode, String> {
    let Some((command, rest)) = args.split_first() else {
        return Err(format!("missing command\n\n{HELP}"));
    };
    if matches!(command.as_str(), "-h" | "--help" | "help") || rest.iter().any(|a| a == "--help") {
        print!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut flags = Flags::parse(rest)?;
    match command.as_str() {
        "write" => {
            let data = flags.path("--data")?;
            let progress = flags.path("--progress")?;
            let id = flags.number("--id")?;
            let max = flags.optional_number("--max")?;
            let pause = flags.optional_number("--pause-us")?.map(Duration::from_micros);
            flags.finish()?;
            workload::run_writer(&data, &progress, id, max, pause).map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        "verify" => {
            let data = flags.path("--data")?;
            let id = flags.number("--id")?;
            let completed_before = flags.optional_number("--completed-before")?;
            flags.finish()?;
            match workload::verify(&data, id, completed_before) {
                Ok(report) => {
                    println!("{report}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("FAILED: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        "sleep" => {
            flags.finish()?;
            busy(&BusyKind::Sleep)
        }
        "spin" => {
            flags.finish()?;
            busy(&BusyKind::Spin)
        }
        "serve" => {
            let watch = flags.path("--watch")?;
            let status = flags.path("--status")?;
            flags.finish()?;
            busy(&BusyKind::Serve { watch, status })
        }
        "stream" => {
            let dir = flags.path("--dir")?;
            let mib_per_second = flags.number("--mib-per-second")?;
            flags.finish()?;
            busy(&BusyKind::Stream { dir, mib_per_second })
        }
        other => Err(format!("unknown command {other:?}\n\n{HELP}")),
    }
}

fn busy(kind: &BusyKind) -> Result<ExitCode, String> {
    match workload::run_busy(kind) {
        Ok(never) => match never {},
        Err(e) => Err(format!("{kind:?}: {e}")),
    }
}

/// `--name value` pairs, each taken once; leftovers are an error.
struct Flags(Vec<(String, String)>);

impl Flags {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut pairs = Vec::new();
        let mut iter = args.iter();
        while let Some(name) = iter.next() {
            if !name.starts_with("--") {
                return Err(format!("unexpected argument {name:?}"));
            }
            let value = iter.next().ok_or_else(|| format!("{name} needs a value"))?;
            if pairs.iter().any(|(n, _)| n == name) {
                return Err(format!("{name} given twice"));
            }
            pairs.push((name.clone(), value.clone()));
        }
        Ok(Flags(pairs))
    }

    fn take(&mut self, name: &str) -> Option<String> {
        let pos = self.0.iter().position(|(n, _)| n == name)?;
        Some(self.0.remove(pos).1)
    }

    fn path(&mut self, name: &str) -> Result<PathBuf, String> {
        self.take(name).map(PathBuf::from).ok_or_else(|| format!("missing {name}"))
    }

    fn optional_number<T: std::str::FromStr>(&mut self, name: &str) -> Result<Option<T>, String> {
        self.take(name).map(|v| v.parse().map_err(|_| format!("{name}: not a valid number: {v:?}"))).transpose()
    }

    fn number<T: std::str::FromStr>(&mut self, name: &str) -> Result<T, String> {
        self.optional_number(name)?.ok_or_else(|| format!("missing {name}"))
    }

    fn finish(self) -> Result<(), String> {
        match self.0.first() {
            None => Ok(()),
            Some((name, _)) => Err(format!("unknown option {name}")),
        }
    }
}
