//! Logging: `--log-level`, else `RUST_LOG`, else `info`, to stderr.

use tracing_subscriber::EnvFilter;

pub fn init(level: Option<&str>) {
    let filter = level
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
