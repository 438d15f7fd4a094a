//! `rollpoint recover` and `rollpoint store`: offline, with the daemon
//! stopped (no connection; they open the store themselves).

use std::fmt::Write as _;

use serde::Serialize;

use super::super::args::{OfflineArgs, RecoverArgs, StoreCommand};
use super::super::error::CliError;
use super::super::output::{emit, Human};
use crate::backend::btrfs::BtrfsBackend;
use crate::backend::host::HostBackends;
use crate::backend::lvm::LvmBackend;
use crate::config::Config;
use crate::recover::{recover, RecoverOptions, RecoverReport};
use crate::store::export::{ImportReport, StoreExport};
use crate::store::Store;

fn local(what: &str) -> impl FnOnce(String) -> CliError + '_ {
    move |error| CliError::Local { message: format!("{what}: {error}") }
}

/// The configuration (defaults when the file is absent) and the state dir.
fn offline_config(args: &OfflineArgs) -> Result<(Config, std::path::PathBuf), CliError> {
    let config = if args.config.exists() {
        Config::load(&args.config).map_err(|error| local("configuration")(error.to_string()))?
    } else {
        Config::default()
    };
    let state_dir = args.state_dir.clone().unwrap_or_else(|| config.state_dir.clone());
    Ok((config, state_dir))
}

pub fn run(args: &RecoverArgs, json: bool) -> Result<(), CliError> {
    let (config, state_dir) = offline_config(&args.offline)?;
    let mut filesystems = config.filesystems.clone();
    filesystems.extend(args.filesystem.iter().cloned());
    let mut volume_groups = config.volume_groups.clone();
    volume_groups.extend(args.volume_group.iter().cloned());
    let options = RecoverOptions { state_dir, filesystems, volume_groups, apply: args.apply };
    let backend = HostBackends {
        btrfs: BtrfsBackend::new(),
        lvm: LvmBackend::new().with_pool_threshold(config.lvm_pool_threshold_percent),
    };
    let report = recover(&options, &backend).map_err(|error| local("recover")(error.to_string()))?;
    emit(&report, json).map_err(|source| CliError::Output { source })
}

/// What `rollpoint store export` did.
#[derive(Serialize)]
struct Exported {
    file: String,
    containers: usize,
    snapshots: usize,
    entries: usize,
    tokens: usize,
}

impl Human for Exported {
    fn human(&self) -> String {
        format!(
            "wrote {}: {} containers, {} snapshots, {} schedule entries, {} tokens\n",
            self.file, self.containers, self.snapshots, self.entries, self.tokens
        )
    }
}

impl Human for ImportReport {
    fn human(&self) -> String {
        let mut text = format!(
            "added {} containers, {} snapshots, {} schedule entries, {} tokens\n",
            self.containers, self.snapshots, self.entries, self.tokens
        );
        let _ = writeln!(text, "kept as the store had them: {}", self.kept.len());
        for kept in &self.kept {
            let _ = writeln!(text, "  {kept}");
        }
        text
    }
}

pub fn store(command: &StoreCommand, json: bool) -> Result<(), CliError> {
    let open = |offline: &OfflineArgs| -> Result<Store, CliError> {
        let (_, state_dir) = offline_config(offline)?;
        Store::open(&state_dir).map_err(|error| {
            local("opening the store (is rollpointd running? stop it first)")(format!(
                "{}: {error}",
                state_dir.display()
            ))
        })
    };
    match command {
        StoreCommand::Export { file, with_tokens, offline } => {
            let export =
                open(offline)?.export(*with_tokens, chrono::Utc::now()).map_err(|e| local("export")(e.to_string()))?;
            export.write(file).map_err(|e| local("export")(e.to_string()))?;
            let view = Exported {
                file: file.display().to_string(),
                containers: export.containers.len(),
                snapshots: export.snapshots.len(),
                entries: export.entries.len(),
                tokens: export.tokens.as_ref().map_or(0, Vec::len),
            };
            emit(&view, json).map_err(|source| CliError::Output { source })
        }
        StoreCommand::Import { file, offline } => {
            let export = StoreExport::read(file).map_err(|e| local("import")(e.to_string()))?;
            let report = open(offline)?.import(&export).map_err(|e| local("import")(e.to_string()))?;
            emit(&report, json).map_err(|source| CliError::Output { source })
        }
    }
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
