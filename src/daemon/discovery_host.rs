//! `auto_register`: the daemon follows the configured managers by itself,
//! scanning at start, every interval, and at once when machined says a
//! machine came or went. Each scan registers what can be registered as it
//! is and marks the discovered containers that vanished (or came back).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use crate::discovery::{DiscoveryConfig, Source};
use crate::engine::Engine;

/// Who registrations made by the daemon itself are recorded as.
pub const ACTOR: &str = "discovery";

pub async fn follow(engine: Arc<Engine>, config: DiscoveryConfig, interval: Duration) {
    let mut machine_changes = None;
    loop {
        if machine_changes.is_none() && config.sources.contains(&Source::Machined) {
            // Retried at each pass: the bus or machined may come later.
            machine_changes = crate::discovery::machined::changes()
                .await
                .map_err(|error| tracing::debug!(%error, "not following machined's signals"))
                .ok();
        }
        pass(&engine, &config).await;
        let changed = async {
            match machine_changes.as_mut() {
                Some(changes) => changes.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            change = changed => {
                if change.is_none() {
                    machine_changes = None;
                }
                // A machine being set up registers several times in a row.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

async fn pass(engine: &Arc<Engine>, config: &DiscoveryConfig) {
    let scan = crate::discovery::scan(config).await;
    for (source, reason) in &scan.unavailable {
        tracing::debug!(%source, %reason, "discovery: manager not asked");
    }
    let engine = engine.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let candidates = engine.assess(scan.found.clone())?;
        for registration in engine.register_found(candidates, ACTOR) {
            let name = &registration.candidate.found.name;
            match registration.outcome {
                Ok(record) => tracing::info!(container = %record.id, %name, "discovered and registered"),
                Err(error) => tracing::warn!(%name, %error, "discovered, but registering failed"),
            }
        }
        engine.reconcile_discovered(&scan, ACTOR)
    })
    .await;
    match outcome {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => tracing::error!(%error, "discovery pass"),
        Err(error) => tracing::error!(%error, "discovery pass panicked"),
    }
}
