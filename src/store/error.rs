use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("encoding a record: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("decoding a record: {0}")]
    Decode(#[source] serde_json::Error),
    #[error("an intent key is not 8 bytes")]
    CorruptKey,
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
