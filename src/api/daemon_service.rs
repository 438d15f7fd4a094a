//! `rollpoint.v1.DaemonService`: the daemon's own state, for `rollpoint
//! status` and monitoring scripts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth::authorize;
use super::proto::daemon_service_server::DaemonService;
use super::proto::*;
use crate::engine::tokens::Scope;
use crate::engine::Engine;

pub struct Daemon {
    pub engine: Arc<Engine>,
    pub ready: Arc<AtomicBool>,
    pub started: chrono::DateTime<chrono::Utc>,
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[tonic::async_trait]
impl DaemonService for Daemon {
    async fn get_status(&self, request: Request<GetStatusRequest>) -> Result<Response<GetStatusResponse>, Status> {
        authorize(&request, Scope::Read, None)?;
        let engine = self.engine.clone();
        // Counting reads the store: off the async threads, but without an
        // operation slot, so a daemon with every slot taken still answers.
        let (counts, unrecorded) = tokio::task::spawn_blocking(move || {
            let unrecorded = engine.unrecorded_volumes();
            engine.counts().map(|counts| (counts, unrecorded))
        })
        .await
        .map_err(|join| Status::internal(format!("status task failed: {join}")))?
        .map_err(|error| Status::internal(error.to_string()))?;
        let (max_in_flight, max_queued) = self.engine.admission_limits();
        let admission = self
            .engine
            .admission_load()
            .into_iter()
            .map(|(kind, queued, in_flight)| AdmissionLoad {
                kind: kind.to_owned(),
                queued: count(queued),
                in_flight: count(in_flight),
                max_in_flight: count(max_in_flight),
                max_queued: count(max_queued),
            })
            .collect();
        let status = DaemonStatus {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            start_time: Some(super::convert::timestamp(self.started)),
            ready: self.ready.load(Ordering::Acquire),
            containers: count(counts.containers),
            snapshots: count(counts.snapshots),
            schedule_entries: count(counts.entries),
            admission,
            run_listener: self.engine.run_url_base().unwrap_or_default().to_owned(),
            runs_in_progress: count(self.engine.run_grants().live()),
            host: self.engine.config().host.clone(),
            unrecorded_snapshot_volumes: unrecorded,
        };
        Ok(Response::new(GetStatusResponse { status: Some(status) }))
    }
}
