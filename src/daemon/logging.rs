//! Logging: to journald when the journal socket exists, to stderr otherwise.
//! In the journal each field of a record is a journal field named
//! `ROLLPOINT_<FIELD>` (`ROLLPOINT_CONTAINER`, `ROLLPOINT_SNAPSHOT`,
//! `ROLLPOINT_ENTRY`, `ROLLPOINT_KIND`...), so `journalctl -u rollpointd
//! ROLLPOINT_CONTAINER=web-1` selects one container's records. The filter
//! comes from `--log-level`, else `RUST_LOG`, else `info` (sled: errors only).

use std::path::Path;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
/// `info`, but sled only its errors: its own info and warnings are about
/// its internals, not the daemon's work.
const DEFAULT_FILTER: &str = "info,sled=error";

/// Prefix of the journal fields carrying a record's fields: keeps them apart
/// from journald's own (`PRIORITY`, `CODE_FILE`...).
const FIELD_PREFIX: &str = "ROLLPOINT";

pub fn init(level: Option<&str>) {
    let filter = level
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    let journald = Path::new(JOURNAL_SOCKET).exists().then(tracing_journald::layer).and_then(Result::ok);
    let registry = tracing_subscriber::registry().with(filter);
    match journald {
        Some(journald) => registry
            .with(journald.with_syslog_identifier("rollpointd".into()).with_field_prefix(Some(FIELD_PREFIX.into())))
            .init(),
        None => registry.with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)).init(),
    }
}
