//! Remote layer: off-host copies of snapshots in S3-compatible object
//! storage (or a plain directory), as a content-addressed, encrypted,
//! deduplicated repository. The format is documented in
//! docs/repository-format.md; this layer knows nothing of the engine.
//!
//! - `config`: a remote as the daemon's configuration names it;
//! - `objects`: the object store (the `object_store` crate) behind one
//!   small blocking interface, the same for `file://` and `s3://`;
//! - `crypto`: key file, master key, keyed ids, seals;
//! - `chunker`: content-defined chunks (FastCDC, pinned);
//! - `pack`: blobs gathered into packs, with their indexes;
//! - `repository`: init / open, the blob index, reading blobs and packs;
//! - `manifest`: one per exported snapshot, and its tree stream;
//! - `export` / `import`: a snapshot's tree into a repository and back;
//! - `verify` / `prune`: checking everything, retention and collection.

pub mod chunker;
pub mod config;
pub mod crypto;
mod error;
pub mod export;
pub mod import;
pub mod manifest;
pub mod objects;
pub mod pack;
pub mod prune;
pub mod read;
pub mod repository;
mod upload;
pub mod verify;

pub use config::RemoteConfig;
pub use crypto::Id;
pub use error::{ErrorClass, RemoteError, RemoteResult};
pub use objects::Objects;
pub use repository::Repository;
