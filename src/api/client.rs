//! Connecting to the daemon, over its Unix socket or TCP. Used by the CLI,
//! the tests and the benchmarks.

use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Uri};

/// PEM file of the CA that signed the daemon's certificate, for `https://`
/// endpoints.
pub const CA_CERT_ENV: &str = "ROLLPOINT_CA_CERT";

use super::proto::container_service_client::ContainerServiceClient;
use super::proto::event_service_client::EventServiceClient;
use super::proto::schedule_service_client::ScheduleServiceClient;
use super::proto::snapshot_service_client::SnapshotServiceClient;
use super::proto::token_service_client::TokenServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;

/// Where the daemon is.
#[derive(Debug, Clone)]
pub enum Target {
    Unix(PathBuf),
    /// `http://host:port`.
    Tcp(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to rollpointd at {target}: {source}")]
    Transport { target: String, source: tonic::transport::Error },
    #[error("reading the CA certificate {path}: {source}")]
    CaCert { path: PathBuf, source: std::io::Error },
    #[error("the token holds characters that cannot be sent in a header")]
    BadToken,
}

pub async fn connect(target: &Target) -> Result<Channel, ConnectError> {
    match target {
        Target::Unix(path) => {
            let path = path.clone();
            let shown = path.display().to_string();
            // The URI is required by the API but unused: the connector decides.
            Endpoint::from_static("http://localhost")
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
                }))
                .await
                .map_err(|source| ConnectError::Transport { target: shown, source })
        }
        Target::Tcp(address) => {
            let transport = |source| ConnectError::Transport { target: address.clone(), source };
            let mut endpoint = Endpoint::from_shared(address.clone()).map_err(transport)?;
            if address.starts_with("https://") {
                let mut tls = ClientTlsConfig::new();
                if let Some(path) = std::env::var_os(CA_CERT_ENV) {
                    let pem =
                        std::fs::read(&path).map_err(|source| ConnectError::CaCert { path: path.into(), source })?;
                    tls = tls.ca_certificate(Certificate::from_pem(pem));
                }
                endpoint = endpoint.tls_config(tls).map_err(transport)?;
            }
            endpoint.connect().await.map_err(|source| ConnectError::Transport { target: address.clone(), source })
        }
    }
}

/// Adds `authorization: Bearer <token>` to every call when a token is set
/// (TCP); the Unix socket needs none.
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel with the caller's bearer token, if any.
pub type AuthedChannel = InterceptedService<Channel, Bearer>;

/// Clients of every rollpoint service over one channel.
#[derive(Clone)]
pub struct Clients {
    pub containers: ContainerServiceClient<AuthedChannel>,
    pub snapshots: SnapshotServiceClient<AuthedChannel>,
    pub tokens: TokenServiceClient<AuthedChannel>,
    pub events: EventServiceClient<AuthedChannel>,
    pub schedules: ScheduleServiceClient<AuthedChannel>,
    pub channel: Channel,
}

impl Clients {
    pub async fn connect(target: &Target) -> Result<Clients, ConnectError> {
        Clients::connect_with_token(target, None).await
    }

    /// Connects and sends `token` as a bearer token with every call.
    pub async fn connect_with_token(target: &Target, token: Option<&str>) -> Result<Clients, ConnectError> {
        let channel = connect(target).await?;
        let bearer = match token {
            Some(token) => Bearer(Some(format!("Bearer {token}").parse().map_err(|_| ConnectError::BadToken)?)),
            None => Bearer(None),
        };
        Ok(Clients {
            containers: ContainerServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            snapshots: SnapshotServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            tokens: TokenServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            events: EventServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            schedules: ScheduleServiceClient::with_interceptor(channel.clone(), bearer),
            channel,
        })
    }
}
