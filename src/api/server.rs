//! Listeners and the tonic server: rollpoint services behind the gate,
//! health (SERVING only after recovery) and reflection (v1 and v1alpha, so
//! that grpcurl 1.8.6 works too).

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Routes;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use super::auth::{Gate, UnixPolicy};
use super::containers::Containers;
use super::events::Events;
use super::proto::container_service_server::ContainerServiceServer;
use super::proto::daemon_service_server::DaemonServiceServer;
use super::proto::event_service_server::EventServiceServer;
use super::proto::remote_service_server::RemoteServiceServer;
use super::proto::schedule_service_server::ScheduleServiceServer;
use super::proto::snapshot_service_server::SnapshotServiceServer;
use super::proto::token_service_server::TokenServiceServer;
use super::proto::FILE_DESCRIPTOR_SET;
use super::remotes::Remotes;
use super::schedules::Schedules;
use super::snapshots::Snapshots;
use super::token_service::Tokens;
use crate::engine::tokens::TokenBook;
use crate::engine::Engine;

/// Names of the services reported by the health service.
pub const SERVICES: [&str; 7] = [
    "rollpoint.v1.ContainerService",
    "rollpoint.v1.SnapshotService",
    "rollpoint.v1.TokenService",
    "rollpoint.v1.EventService",
    "rollpoint.v1.ScheduleService",
    "rollpoint.v1.RemoteService",
    "rollpoint.v1.DaemonService",
];

/// Largest request the daemon decodes.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{what} {path}: {source}")]
    Socket { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("another rollpointd is already listening on {0}")]
    SocketInUse(PathBuf),
    #[error("refusing to listen on {0} without TLS: configure tls_cert and tls_key, use a loopback address, or set insecure_listen = true")]
    NotLoopback(SocketAddr),
    #[error("{what} = {address}: that listener takes loopback addresses only")]
    LoopbackOnly { what: &'static str, address: SocketAddr },
    #[error("reading {path}: {source}")]
    TlsFile { path: PathBuf, source: std::io::Error },
    #[error("listening on {address}: {source}")]
    Tcp { address: SocketAddr, source: std::io::Error },
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("serving: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// What the daemon serves, shared by its listeners.
#[derive(Clone)]
pub struct Services {
    engine: Arc<Engine>,
    gate: Gate,
    health: HealthService,
    metrics: Arc<super::metrics::Metrics>,
    /// When this daemon started, for its status.
    started: chrono::DateTime<chrono::Utc>,
    /// Set at shutdown: ends the live event streams, which graceful
    /// shutdown would otherwise wait for.
    stop: tokio::sync::watch::Receiver<bool>,
    /// How long a REST request may take.
    request_timeout: std::time::Duration,
}

type HealthService = tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>;

impl Services {
    pub async fn new(
        engine: Arc<Engine>,
        policy: UnixPolicy,
        tokens: Arc<TokenBook>,
        ready: Arc<AtomicBool>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> (Services, HealthReporter) {
        let reporter = HealthReporter::new();
        let health = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(reporter.clone()),
        );
        for service in SERVICES {
            reporter.set_service_status(service, ServingStatus::NotServing).await;
        }
        reporter.set_service_status("", ServingStatus::NotServing).await;
        let metrics = super::metrics::Metrics::new();
        {
            let metrics = metrics.clone();
            engine.observe_admissions(Box::new(move |kind, waited| metrics.observe_admission(kind, waited)));
        }
        super::metrics::spawn_recorder(engine.clone(), metrics.clone(), stop.clone());
        let gate = Gate { policy: Arc::new(policy), tokens, ready, runs: engine.run_grants().clone() };
        let services = Services {
            engine,
            gate,
            health,
            metrics,
            started: chrono::Utc::now(),
            stop,
            request_timeout: super::rest::REQUEST_TIMEOUT,
        };
        (services, reporter)
    }

    /// The same, with REST requests limited to `limit` (`rest_request_timeout_ms`).
    pub fn with_request_timeout(mut self, limit: std::time::Duration) -> Services {
        self.request_timeout = limit;
        self
    }

    fn router(&self, tls: Option<ServerTlsConfig>) -> Result<tonic::transport::server::Router, ServerError> {
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;
        let containers = ContainerServiceServer::new(Containers { engine: self.engine.clone() })
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let snapshots = SnapshotServiceServer::new(self.snapshots()).max_decoding_message_size(MAX_MESSAGE_BYTES);
        let tokens = TokenServiceServer::new(Tokens { book: self.gate.tokens.clone() })
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let events = EventServiceServer::new(Events { engine: self.engine.clone(), stop: self.stop.clone() });
        let schedules = ScheduleServiceServer::new(Schedules { engine: self.engine.clone() })
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let remotes = RemoteServiceServer::new(Remotes { engine: self.engine.clone() })
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let daemon = DaemonServiceServer::new(self.daemon());
        let rest = super::rest::router(self.rest_state());
        let grpc = Routes::new(self.health.clone())
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(InterceptedService::new(containers, self.gate.clone()))
            .add_service(InterceptedService::new(snapshots, self.gate.clone()))
            .add_service(InterceptedService::new(tokens, self.gate.clone()))
            .add_service(InterceptedService::new(events, self.gate.clone()))
            .add_service(InterceptedService::new(schedules, self.gate.clone()))
            .add_service(InterceptedService::new(remotes, self.gate.clone()))
            .add_service(InterceptedService::new(daemon, self.gate.clone()));
        // One listener for both: gRPC paths are /package.Service/Method,
        // REST paths /api/v1/... and /healthz; HTTP/1.1 is accepted for curl.
        let routes = Routes::from(grpc.into_axum_router().merge(rest).fallback(super::rest::fallback));
        let mut builder = Server::builder().accept_http1(true);
        if let Some(tls) = tls {
            builder = builder.tls_config(tls)?;
        }
        Ok(builder.add_routes(routes))
    }

    fn daemon(&self) -> super::daemon_service::Daemon {
        super::daemon_service::Daemon {
            engine: self.engine.clone(),
            ready: self.gate.ready.clone(),
            started: self.started,
        }
    }

    fn rest_state(&self) -> super::rest::RestState {
        super::rest::RestState {
            daemon: Arc::new(self.daemon()),
            gate: self.gate.clone(),
            containers: Arc::new(Containers { engine: self.engine.clone() }),
            snapshots: Arc::new(self.snapshots()),
            schedules: Arc::new(Schedules { engine: self.engine.clone() }),
            engine: self.engine.clone(),
            metrics: self.metrics.clone(),
            events: Arc::new(Events { engine: self.engine.clone(), stop: self.stop.clone() }),
            tokens: Arc::new(Tokens { book: self.gate.tokens.clone() }),
            request_timeout: self.request_timeout,
        }
    }

    /// Serves the run listener (HTTP/1.1, REST only: what a command run's
    /// `$SNAP_URL` may do) until `shutdown` resolves.
    pub async fn serve_runs(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        self.serve_loopback(listener, super::rest::run_router(self.rest_state()), shutdown).await
    }

    /// Serves the metrics listener (HTTP/1.1, `/metrics` and `/healthz`
    /// only, no credentials) until `shutdown` resolves.
    pub async fn serve_metrics(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        self.serve_loopback(listener, super::rest::metrics_router(self.rest_state()), shutdown).await
    }

    async fn serve_loopback(
        &self,
        listener: tokio::net::TcpListener,
        routes: axum::Router,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let address = listener
            .local_addr()
            .map_err(|source| ServerError::Tcp { address: SocketAddr::from(([127, 0, 0, 1], 0)), source })?;
        axum::serve(listener, routes.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|source| ServerError::Tcp { address, source })
    }

    fn snapshots(&self) -> Snapshots {
        Snapshots { engine: self.engine.clone(), metrics: self.metrics.clone() }
    }

    /// Serves on a bound Unix listener until `shutdown` resolves.
    pub async fn serve_unix(
        &self,
        listener: tokio::net::UnixListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ServerError> {
        Ok(self.router(None)?.serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown).await?)
    }

    /// Serves on a bound TCP listener, with TLS when `tls` is given, until
    /// `shutdown` resolves.
    pub async fn serve_tcp(
        &self,
        listener: tokio::net::TcpListener,
        tls: Option<ServerTlsConfig>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ServerError> {
        Ok(self.router(tls)?.serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown).await?)
    }
}

/// Binds the Unix socket: creates its folder, removes a stale socket (but
/// not a live one), sets mode 0660 and the group.
pub async fn bind_unix(path: &Path, group: Option<u32>) -> Result<tokio::net::UnixListener, ServerError> {
    let error = |what, source| ServerError::Socket { what, path: path.to_owned(), source };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| error("creating the folder of", e))?;
    }
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(ServerError::SocketInUse(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(|e| error("removing stale socket", e))?;
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(|e| error("binding", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(|e| error("chmod", e))?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(|e| error("chown", e))?;
    }
    Ok(listener)
}

/// Binds the TCP listener. Off loopback, bearer tokens would cross the
/// network: that takes TLS, or `insecure` said explicitly.
pub async fn bind_tcp(address: SocketAddr, tls: bool, insecure: bool) -> Result<tokio::net::TcpListener, ServerError> {
    if !address.ip().is_loopback() && !tls && !insecure {
        return Err(ServerError::NotLoopback(address));
    }
    tokio::net::TcpListener::bind(address).await.map_err(|source| ServerError::Tcp { address, source })
}

/// Binds the run or metrics listener (`what` names its setting): loopback
/// only, whatever the configuration says (a run's credential must not cross
/// a network; the metrics listener asks for none).
pub async fn bind_loopback(what: &'static str, address: SocketAddr) -> Result<tokio::net::TcpListener, ServerError> {
    if !address.ip().is_loopback() {
        return Err(ServerError::LoopbackOnly { what, address });
    }
    tokio::net::TcpListener::bind(address).await.map_err(|source| ServerError::Tcp { address, source })
}

/// Reports every rollpoint service SERVING (called once recovery is done).
pub async fn report_serving(reporter: &HealthReporter) {
    for service in SERVICES {
        reporter.set_service_status(service, ServingStatus::Serving).await;
    }
    reporter.set_service_status("", ServingStatus::Serving).await;
}

/// The TLS configuration of the TCP listener, from PEM files.
pub fn tls_config(cert: &Path, key: &Path) -> Result<ServerTlsConfig, ServerError> {
    super::use_ring_for_tls();
    let read =
        |path: &Path| std::fs::read(path).map_err(|source| ServerError::TlsFile { path: path.to_owned(), source });
    Ok(ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?)))
}
