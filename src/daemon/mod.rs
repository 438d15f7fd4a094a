//! The daemon's life: configuration, start-up recovery, listeners, the
//! expiry timer, shutdown on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub mod args;
mod discovery_host;
pub mod logging;
pub mod notify;
mod schedule_host;

pub use args::Args;

use crate::api::auth::UnixPolicy;
use crate::api::server::{self, Services};
use crate::backend::btrfs::BtrfsBackend;
use crate::backend::host::HostBackends;
use crate::backend::lvm::LvmBackend;
use crate::config::Config;
use crate::discovery::DiscoveryConfig;
use crate::engine::tokens::{KeyError, TokenBook};
use crate::engine::{Engine, SystemClock};
use crate::freezer::CgroupFreezer;
use crate::lifecycle::HostLifecycle;
use crate::scheduler::{Scheduler, SchedulerConfig, SystemWallClock};
use crate::store::Store;

/// Longest sleep of the expiry timer, so that a wall-clock jump is noticed
/// within this time.
const EXPIRY_REPLAN: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(
        "opening the store in {path}: {source}. If it is damaged, run `rollpoint recover` to see what it would \
         rebuild from the disks, then `rollpoint recover --apply` (the damaged store is kept aside)"
    )]
    Store { path: PathBuf, source: crate::store::StoreError },
    #[error("token key: {0}")]
    TokenKey(#[from] KeyError),
    #[error("cgroups: {0}")]
    Freezer(#[from] crate::freezer::FreezerError),
    #[error("start-up recovery: {0}")]
    Recovery(crate::engine::EngineError),
    #[error(transparent)]
    Server(#[from] server::ServerError),
    #[error("configuration: {0}")]
    Config(String),
    #[error("signal handler: {0}")]
    Signal(std::io::Error),
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), DaemonError> {
    let store = Store::open_with_cache(&config.state_dir, config.store_cache_mib << 20)
        .map_err(|source| DaemonError::Store { path: config.state_dir.clone(), source })?;
    let store = Arc::new(store);
    let freezer = CgroupFreezer::from_mountinfo()?;
    let engine = Arc::new(Engine::new(
        store.clone(),
        Arc::new(HostBackends {
            btrfs: BtrfsBackend::new(),
            lvm: LvmBackend::new().with_pool_threshold(config.lvm_pool_threshold_percent),
        }),
        Arc::new(freezer),
        Arc::new(HostLifecycle),
        Arc::new(SystemClock),
        config.engine(),
    ));

    let group = group_id(&config.socket_group);
    let policy = UnixPolicy { group, uids: config.allowed_uids.clone() };
    let ready = Arc::new(AtomicBool::new(false));
    let key_file = config.state_dir.join("token.key");
    let tokens = Arc::new(TokenBook::open(store.clone(), &key_file)?);
    let (stop_sender, stop) = tokio::sync::watch::channel(false);
    let (services, health) = Services::new(engine.clone(), policy, tokens, ready.clone(), stop.clone()).await;
    let services = services.with_request_timeout(Duration::from_millis(config.rest_request_timeout_ms));

    let unix = server::bind_unix(&config.socket, group).await?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(server::tls_config(cert, key)?),
        _ => None,
    };
    let tcp = match config.listen {
        Some(address) => Some(server::bind_tcp(address, tls.is_some(), config.insecure_listen).await?),
        None => None,
    };
    let mut tasks = tokio::task::JoinSet::new();
    {
        let services = services.clone();
        let stop = stopped(stop.clone());
        tasks.spawn(async move { services.serve_unix(unix, stop).await });
    }
    if let Some(tcp) = tcp {
        let services = services.clone();
        let stop = stopped(stop.clone());
        tasks.spawn(async move { services.serve_tcp(tcp, tls, stop).await });
    }
    if let Some(address) = config.run_listener().map_err(DaemonError::Config)? {
        let runs = server::bind_loopback("schedule_listen", address).await?;
        let bound = runs.local_addr().map_err(|source| server::ServerError::Tcp { address, source })?;
        engine.serve_run_urls(format!("http://{bound}"));
        tracing::info!(%bound, "run listener ($SNAP_URL of schedule entries bound to a container)");
        let services = services.clone();
        let stop = stopped(stop.clone());
        tasks.spawn(async move { services.serve_runs(runs, stop).await });
    }
    if let Some(address) = config.metrics_listener().map_err(DaemonError::Config)? {
        let listener = server::bind_loopback("metrics_listen", address).await?;
        let bound = listener.local_addr().map_err(|source| server::ServerError::Tcp { address, source })?;
        tracing::info!(%bound, "metrics listener (/metrics and /healthz, no credentials)");
        let services = services.clone();
        let stop = stopped(stop.clone());
        tasks.spawn(async move { services.serve_metrics(listener, stop).await });
    }
    tracing::info!(socket = %config.socket.display(), listen = ?config.listen.map(|a: SocketAddr| a.to_string()), "listening; recovering");

    let recovering = engine.clone();
    let report = tokio::task::spawn_blocking(move || recovering.recover())
        .await
        .map_err(|e| DaemonError::Recovery(crate::engine::EngineError::Internal { reason: e.to_string() }))?
        .map_err(DaemonError::Recovery)?;
    tracing::info!(?report, "start-up recovery done");
    ready.store(true, Ordering::Release);
    server::report_serving(&health).await;
    notify::notify("READY=1\nSTATUS=serving");
    tracing::info!("serving");
    if let Some(interval) = notify::watchdog_interval() {
        let engine = engine.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            tokio::select! {
                () = notify::watchdog(engine, interval) => {}
                () = stopped(stop) => {}
            }
            Ok(())
        });
    }

    // Background loops that run until the daemon stops.
    let until_stopped = |work: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>| {
        let stop = stop.clone();
        async move {
            tokio::select! {
                () = work => {}
                () = stopped(stop) => {}
            }
            Ok(())
        }
    };
    tasks.spawn(until_stopped(Box::pin(expiry_timer(engine.clone()))));
    tasks.spawn(until_stopped(Box::pin(daily_store_export(store.clone(), config.state_dir.clone()))));
    tasks.spawn(until_stopped(Box::pin(measure_sizes(engine.clone()))));
    tasks.spawn(until_stopped(Box::pin(give_back_memory())));
    let (followed, interval) = config.discovery.following().map_err(DaemonError::Config)?;
    if !followed.is_empty() {
        let scan = DiscoveryConfig { sources: followed, ..engine.discovery_config().clone() };
        tasks.spawn(until_stopped(Box::pin(discovery_host::follow(engine.clone(), scan, interval))));
    }

    {
        let policy = crate::scheduler::Policy {
            grace: chrono::TimeDelta::seconds(i64::try_from(config.schedule_grace_seconds).unwrap_or(i64::MAX)),
            ..Default::default()
        };
        let scheduler = Scheduler::new(
            Arc::new(schedule_host::EngineHost { engine: engine.clone() }),
            Arc::new(SystemWallClock),
            SchedulerConfig { policy, ..SchedulerConfig::default() },
        );
        let handle = scheduler.handle();
        let engine = engine.clone();
        let stop_scheduler = stop.clone();
        tasks.spawn(async move {
            scheduler.run(stopped(stop_scheduler)).await;
            Ok(())
        });
        let stop = stop.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = engine.entries_changed() => handle.entries_changed(),
                    () = stopped(stop.clone()) => return Ok(()),
                }
            }
        });
    }

    if config.event_retention_days > 0 || config.event_limit > 0 {
        let engine = engine.clone();
        let stop = stop.clone();
        let retention =
            (config.event_retention_days > 0).then(|| chrono::Duration::days(i64::from(config.event_retention_days)));
        let limit = (config.event_limit > 0).then_some(config.event_limit);
        tasks.spawn(async move {
            tokio::select! {
                () = prune_events(engine, retention, limit) => {}
                () = stopped(stop) => {}
            }
            Ok(())
        });
    }

    wait_for_signal().await?;
    tracing::info!("shutting down");
    notify::notify("STOPPING=1");
    let _ = stop_sender.send(true);
    while let Some(result) = tasks.join_next().await {
        if let Ok(Err(error)) = result {
            tracing::error!(%error, "listener failed");
        }
    }
    let _ = std::fs::remove_file(&config.socket);
    Ok(())
}

async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn wait_for_signal() -> Result<(), DaemonError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// Sleeps until the earliest expiry (or until it changes), deletes what is
/// due, and starts over. No polling: with nothing to expire it only wakes
/// when a snapshot gets an expiry, or once an hour to notice clock jumps.
/// How often the daemon looks whether today's store export is written.
const DAILY_EXPORT_CHECK: Duration = Duration::from_secs(3600);
/// How often freed heap memory is handed back to the kernel.
const MEMORY_TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// Every [`MEMORY_TRIM_INTERVAL`], hands what the heap freed back to the
/// kernel, so that the daemon's memory falls back after a burst.
async fn give_back_memory() {
    loop {
        tokio::time::sleep(MEMORY_TRIM_INTERVAL).await;
        if let Err(error) = tokio::task::spawn_blocking(crate::sys::memory::give_back_freed).await {
            tracing::error!(%error, "memory trim task failed");
        }
    }
}

/// Keeps a copy of the whole record in the state directory, one a day, the
/// newest 7 (`store::export`); a failure is logged and tried again later.
async fn daily_store_export(store: Arc<Store>, state_dir: PathBuf) {
    loop {
        let (store_now, dir) = (store.clone(), state_dir.clone());
        match tokio::task::spawn_blocking(move || {
            crate::store::export::daily_export(&store_now, &dir, chrono::Utc::now())
        })
        .await
        {
            Ok(Ok(Some(path))) => tracing::info!(file = %path.display(), "daily store export written"),
            Ok(Ok(None)) => {}
            Ok(Err(error)) => tracing::error!(%error, "daily store export failed"),
            Err(error) => tracing::error!(%error, "daily store export task failed"),
        }
        tokio::time::sleep(DAILY_EXPORT_CHECK).await;
    }
}

async fn expiry_timer(engine: Arc<Engine>) {
    loop {
        let next = {
            let engine = engine.clone();
            tokio::task::spawn_blocking(move || engine.next_expiry()).await
        };
        let wait = match next {
            Ok(Ok(Some(time))) => (time - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO).min(EXPIRY_REPLAN),
            Ok(Ok(None)) => EXPIRY_REPLAN,
            Ok(Err(error)) => {
                tracing::error!(%error, "reading expiries");
                Duration::from_secs(60)
            }
            Err(_) => return,
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {
                let engine = engine.clone();
                match tokio::task::spawn_blocking(move || engine.expire_due()).await {
                    Ok(Ok(expired)) if !expired.is_empty() => tracing::info!(count = expired.len(), "expired snapshots deleted"),
                    Ok(Err(error)) => tracing::error!(%error, "expiring snapshots"),
                    _ => {}
                }
                // A busy container leaves due snapshots behind: retry soon,
                // not in a tight loop.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            () = engine.expiry_changed() => {}
        }
    }
}

/// Measures what snapshots cost (their delta, in the background) at start
/// and whenever snapshots were created or deleted.
async fn measure_sizes(engine: Arc<Engine>) {
    loop {
        let measuring = engine.clone();
        match tokio::task::spawn_blocking(move || measuring.measure_sizes()).await {
            Ok(Ok(measured)) if measured > 0 => tracing::debug!(measured, "snapshot sizes measured"),
            Ok(Err(error)) => tracing::error!(%error, "measuring snapshot sizes"),
            _ => {}
        }
        engine.sizes_stale().await;
    }
}

/// Prunes events past their retention or beyond the limit, at start and
/// then every minute (cheap when there is nothing to prune: the oldest
/// event is read and kept).
async fn prune_events(engine: Arc<Engine>, retention: Option<chrono::Duration>, limit: Option<u64>) {
    loop {
        let engine_now = engine.clone();
        let pruned = tokio::task::spawn_blocking(move || {
            let store = engine_now.store();
            let old = match retention {
                Some(retention) => store.prune_events(chrono::Utc::now() - retention)?,
                None => 0,
            };
            let beyond = match limit {
                Some(limit) => store.prune_events_beyond(limit)?,
                None => 0,
            };
            Ok::<_, crate::store::StoreError>((old, beyond))
        })
        .await;
        match pruned {
            Ok(Ok((old, beyond))) if old + beyond > 0 => tracing::info!(old, beyond, "events pruned"),
            Ok(Err(error)) => tracing::error!(%error, "pruning events"),
            _ => {}
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

/// The gid of a group name, from /etc/group; none when it does not exist.
fn group_id(name: &str) -> Option<u32> {
    if name.is_empty() {
        return None;
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(group)) => Some(group.gid.as_raw()),
        _ => {
            tracing::info!(group = name, "socket group does not exist; only root and allowed_uids may use the socket");
            None
        }
    }
}
