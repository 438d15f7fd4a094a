//! Connecting to the daemon, over its Unix socket or TCP. Used by the CLI,
//! the tests and the benchmarks.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Uri};

use super::proto::container_service_client::ContainerServiceClient;
use super::proto::daemon_service_client::DaemonServiceClient;
use super::proto::event_service_client::EventServiceClient;
use super::proto::remote_service_client::RemoteServiceClient;
use super::proto::schedule_service_client::ScheduleServiceClient;
use super::proto::snapshot_service_client::SnapshotServiceClient;
use super::proto::token_service_client::TokenServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;

use super::retry::{OnRetry, RetryPolicy, Retrying};

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
    #[error("cannot read the CA certificate {path}: {source}")]
    CaCert { path: PathBuf, source: std::io::Error },
    #[error("the CA certificate {path} is not PEM: no \"-----BEGIN CERTIFICATE-----\" block")]
    CaCertNotPem { path: PathBuf },
    #[error("the token holds characters that cannot be sent in a header")]
    BadToken,
}

/// Connects to `target`. `ca_cert` is a PEM file of the CA that signed the
/// daemon's certificate, read for an `https://` endpoint and ignored for
/// any other target; the caller gets it from its user (`--ca-cert`).
pub async fn connect(target: &Target, ca_cert: Option<&Path>) -> Result<Channel, ConnectError> {
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
                super::use_ring_for_tls();
                let mut tls = ClientTlsConfig::new();
                if let Some(path) = ca_cert {
                    tls = tls.ca_certificate(read_ca_cert(path)?);
                }
                endpoint = endpoint.tls_config(tls).map_err(transport)?;
            }
            endpoint.connect().await.map_err(|source| ConnectError::Transport { target: address.clone(), source })
        }
    }
}

/// Reads a PEM CA certificate. tonic would take any bytes and trust nothing
/// of them, so the handshake would fail far from the cause: check for a
/// certificate block here and name the file.
fn read_ca_cert(path: &Path) -> Result<Certificate, ConnectError> {
    let pem = std::fs::read(path).map_err(|source| ConnectError::CaCert { path: path.to_owned(), source })?;
    if !has_pem_certificate(&pem) {
        return Err(ConnectError::CaCertNotPem { path: path.to_owned() });
    }
    Ok(Certificate::from_pem(pem))
}

/// Whether `pem` holds a BEGIN CERTIFICATE line with an END line after it.
fn has_pem_certificate(pem: &[u8]) -> bool {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let position = |haystack: &[u8], needle: &[u8]| haystack.windows(needle.len()).position(|window| window == needle);
    position(pem, BEGIN).is_some_and(|begin| position(&pem[begin + BEGIN.len()..], END).is_some())
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

/// A channel with the caller's bearer token, if any, retrying calls the
/// daemon was too busy to take (see `retry`; off unless asked).
pub type AuthedChannel = InterceptedService<Retrying<Channel>, Bearer>;

/// Clients of every rollpoint service over one channel.
#[derive(Clone)]
pub struct Clients {
    pub containers: ContainerServiceClient<AuthedChannel>,
    pub snapshots: SnapshotServiceClient<AuthedChannel>,
    pub tokens: TokenServiceClient<AuthedChannel>,
    pub events: EventServiceClient<AuthedChannel>,
    pub schedules: ScheduleServiceClient<AuthedChannel>,
    pub remotes: RemoteServiceClient<AuthedChannel>,
    pub daemon: DaemonServiceClient<AuthedChannel>,
    pub channel: Channel,
}

impl Clients {
    pub async fn connect(target: &Target) -> Result<Clients, ConnectError> {
        Clients::connect_with_token(target, None).await
    }

    /// Connects and sends `token` as a bearer token with every call.
    pub async fn connect_with_token(target: &Target, token: Option<&str>) -> Result<Clients, ConnectError> {
        Clients::connect_with(target, token, None).await
    }

    /// Connects, trusting the CA in the PEM file `ca_cert` for an `https://`
    /// endpoint (see `connect`), and sends `token` as a bearer token with
    /// every call.
    pub async fn connect_with(
        target: &Target,
        token: Option<&str>,
        ca_cert: Option<&Path>,
    ) -> Result<Clients, ConnectError> {
        Clients::connect_retrying(target, token, ca_cert, RetryPolicy::NONE, None).await
    }

    /// As `connect_with`, and calls refused because the daemon was busy are
    /// sent again as `policy` says, `on_retry` told before each pause.
    pub async fn connect_retrying(
        target: &Target,
        token: Option<&str>,
        ca_cert: Option<&Path>,
        policy: RetryPolicy,
        on_retry: Option<OnRetry>,
    ) -> Result<Clients, ConnectError> {
        let channel = connect(target, ca_cert).await?;
        let retrying = Retrying::new(channel.clone(), policy, on_retry);
        let bearer = match token {
            Some(token) => Bearer(Some(format!("Bearer {token}").parse().map_err(|_| ConnectError::BadToken)?)),
            None => Bearer(None),
        };
        Ok(Clients {
            containers: ContainerServiceClient::with_interceptor(retrying.clone(), bearer.clone()),
            snapshots: SnapshotServiceClient::with_interceptor(retrying.clone(), bearer.clone()),
            tokens: TokenServiceClient::with_interceptor(retrying.clone(), bearer.clone()),
            events: EventServiceClient::with_interceptor(retrying.clone(), bearer.clone()),
            schedules: ScheduleServiceClient::with_interceptor(retrying.clone(), bearer.clone()),
            remotes: RemoteServiceClient::with_interceptor(retrying.clone(), bearer.clone()),
            daemon: DaemonServiceClient::with_interceptor(retrying, bearer),
            channel,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn file_with(contents: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, contents).unwrap();
        file
    }

    #[test]
    fn a_ca_certificate_must_be_pem() {
        let pem = file_with(PEM.as_bytes());
        assert!(read_ca_cert(pem.path()).is_ok());
        // DER, a private key, a truncated file: named, not handed to rustls.
        for contents in
            [&b"\x30\x82\x01\x0a"[..], b"-----BEGIN PRIVATE KEY-----\nMII\n", b"-----BEGIN CERTIFICATE-----\nMII"]
        {
            let file = file_with(contents);
            let error = read_ca_cert(file.path()).unwrap_err();
            assert!(matches!(error, ConnectError::CaCertNotPem { .. }), "{error:?}");
            assert!(error.to_string().contains(&file.path().display().to_string()), "{error}");
        }
    }

    #[test]
    fn an_unreadable_ca_certificate_is_named() {
        let error = read_ca_cert(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot read the CA certificate /nonexistent/ca.pem: No such file or directory (os error 2)"
        );
    }
}
