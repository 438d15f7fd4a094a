//! `rollpoint recover`: offline, with the daemon stopped (no connection).

use std::fmt::Write as _;

use super::super::args::RecoverArgs;
use super::super::error::CliError;
use super::super::output::{emit, Human};
use crate::backend::btrfs::BtrfsBackend;
use crate::config::Config;
use crate::recover::{recover, RecoverOptions, RecoverReport};

pub fn run(args: &RecoverArgs, json: bool) -> Result<(), CliError> {
    let config = if args.config.exists() {
        Config::load(&args.config).map_err(|error| CliError::Local { message: error.to_string() })?
    } else {
        Config::default()
    };
    let mut filesystems = config.filesystems.clone();
    filesystems.extend(args.filesystem.iter().cloned());
    let options = RecoverOptions {
        state_dir: args.state_dir.clone().unwrap_or(config.state_dir),
        filesystems,
        apply: args.apply,
    };
    let report = recover(&options, &BtrfsBackend::new())
        .map_err(|error| CliError::Local { message: format!("recover: {error}") })?;
    emit(&report, json).map_err(|source| CliError::Output { source })
}

impl Human for RecoverReport {
    fn human(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "store: {}", self.store);
        let sections: [(&str, &Vec<String>); 6] = [
            ("folders read", &self.folders),
            ("containers re-created", &self.containers),
            ("snapshots re-created", &self.snapshots),
            ("records brought up to the disks", &self.updated),
            ("conflicts (left for you)", &self.conflicts),
            ("left alone", &self.skipped),
        ];
        for (title, items) in sections {
            let _ = writeln!(text, "{title}: {}", items.len());
            for item in items {
                let _ = writeln!(text, "  {item}");
            }
        }
        if self.applied {
            text.push_str("applied; start rollpointd again\n");
        } else {
            text.push_str("dry run: nothing changed; run with --apply to write the above\n");
        }
        text
    }
}
