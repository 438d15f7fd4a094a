//! Connecting to the daemon, over its Unix socket or TCP. Used by the CLI,
//! the tests and the benchmarks.

use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use super::proto::container_service_client::ContainerServiceClient;
use super::proto::snapshot_service_client::SnapshotServiceClient;

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
            let endpoint = Endpoint::from_shared(address.clone())
                .map_err(|source| ConnectError::Transport { target: address.clone(), source })?;
            endpoint.connect().await.map_err(|source| ConnectError::Transport { target: address.clone(), source })
        }
    }
}

/// Clients of every rollpoint service over one channel.
#[derive(Clone)]
pub struct Clients {
    pub containers: ContainerServiceClient<Channel>,
    pub snapshots: SnapshotServiceClient<Channel>,
    pub channel: Channel,
}

impl Clients {
    pub async fn connect(target: &Target) -> Result<Clients, ConnectError> {
        let channel = connect(target).await?;
        Ok(Clients {
            containers: ContainerServiceClient::new(channel.clone()),
            snapshots: SnapshotServiceClient::new(channel.clone()),
            channel,
        })
    }
}
