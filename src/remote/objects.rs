//! The object store under a repository: one small blocking interface over
//! the `object_store` crate, so `file://` and `s3://` remotes share every
//! code path above it. Keys are relative to the remote's prefix.
//!
//! The engine is blocking; these calls run the crate's futures on one
//! runtime of the remote layer's own (never the caller's), which also
//! carries the concurrent uploads of an export.

use std::ops::Range;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload};

use super::config::{RemoteConfig, RemoteLocation};
use super::error::{RemoteError, RemoteResult};

/// One object as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Key relative to the remote's prefix.
    pub key: String,
    pub size: u64,
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

/// Whether a conditional create wrote the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Written,
    /// Something was there already (a content-addressed object: the same).
    AlreadyThere,
}

/// The remote layer's runtime: two workers are enough to keep a handful of
/// requests in flight.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rollpoint-remote")
            .enable_all()
            .build()
            .expect("cannot start the remote layer's runtime")
    })
}

/// The objects of one remote.
#[derive(Clone)]
pub struct Objects {
    remote: String,
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Objects({}: {})", self.remote, self.store)
    }
}

impl Objects {
    /// The object store a remote's configuration names. Nothing is contacted.
    pub fn open(name: &str, config: &RemoteConfig) -> RemoteResult<Objects> {
        let config_error = |message: String| RemoteError::Config { remote: name.to_owned(), message };
        let (store, prefix): (Arc<dyn ObjectStore>, String) = match config.location().map_err(config_error)? {
            RemoteLocation::Directory(dir) => {
                std::fs::create_dir_all(&dir).map_err(|source| RemoteError::Io { path: dir.clone(), source })?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| config_error(format!("{}: {e}", dir.display())))?
                    .with_automatic_cleanup(true);
                (Arc::new(store), String::new())
            }
            RemoteLocation::S3 { bucket, prefix } => {
                // Client options first: setting them replaces the whole set,
                // allow_http included, which the builder's setters change.
                let mut builder = object_store::aws::AmazonS3Builder::from_env()
                    .with_client_options(
                        object_store::ClientOptions::new()
                            .with_connect_timeout(Duration::from_secs(5))
                            .with_timeout(Duration::from_secs(120)),
                    )
                    .with_bucket_name(&bucket)
                    .with_region(config.region.clone().unwrap_or_else(|| "us-east-1".into()))
                    .with_allow_http(config.allow_http)
                    .with_virtual_hosted_style_request(!config.path_style)
                    .with_retry(object_store::RetryConfig {
                        max_retries: 3,
                        retry_timeout: Duration::from_secs(config.retry_timeout_seconds),
                        ..Default::default()
                    });
                if let Some(endpoint) = &config.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if let Some(credentials) = config.read_credentials().map_err(config_error)? {
                    builder = builder
                        .with_access_key_id(credentials.access_key_id)
                        .with_secret_access_key(credentials.secret_access_key);
                }
                let store = builder.build().map_err(|e| config_error(e.to_string()))?;
                (Arc::new(store), prefix)
            }
        };
        Ok(Objects { remote: name.to_owned(), store, prefix })
    }

    /// Objects over any store (tests use the in-memory one).
    pub fn over(remote: &str, store: Arc<dyn ObjectStore>) -> Objects {
        Objects { remote: remote.to_owned(), store, prefix: String::new() }
    }

    pub fn remote(&self) -> &str {
        &self.remote
    }

    fn path(&self, key: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }

    fn key_of(&self, path: &ObjectPath) -> String {
        let full = path.as_ref();
        if self.prefix.is_empty() {
            full.to_owned()
        } else {
            full.strip_prefix(&self.prefix).map(|k| k.trim_start_matches('/')).unwrap_or(full).to_owned()
        }
    }

    /// Turns the crate's error into ours, naming the remote and the key.
    pub(crate) fn error(&self, key: &str, error: object_store::Error) -> RemoteError {
        let remote = self.remote.clone();
        match error {
            object_store::Error::NotFound { .. } => RemoteError::NotFound { remote, object: key.to_owned() },
            object_store::Error::PermissionDenied { source, .. }
            | object_store::Error::Unauthenticated { source, .. } => {
                RemoteError::AccessDenied { remote, message: source.to_string() }
            }
            other => {
                let message = other.to_string();
                if message.contains("NoSuchBucket") || message.contains("does not exist") && message.contains("ucket") {
                    RemoteError::NoSuchBucket { remote, message: format!("the bucket does not exist ({message})") }
                } else if message.contains("AccessDenied")
                    || message.contains("InvalidAccessKeyId")
                    || message.contains("SignatureDoesNotMatch")
                    || message.contains("403 Forbidden")
                {
                    RemoteError::AccessDenied { remote, message }
                } else {
                    RemoteError::Unavailable { remote, message: format!("{key}: {message}") }
                }
            }
        }
    }

    /// Writes `bytes` at `key` unless something is there already (a
    /// conditional create): two hosts never overwrite each other's objects.
    pub async fn put_new_async(&self, key: &str, bytes: Bytes) -> RemoteResult<Created> {
        let options = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.store.put_opts(&self.path(key), PutPayload::from_bytes(bytes), options).await {
            Ok(_) => Ok(Created::Written),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                Ok(Created::AlreadyThere)
            }
            // A write finds nothing missing but its bucket.
            Err(object_store::Error::NotFound { .. }) => Err(RemoteError::NoSuchBucket {
                remote: self.remote.clone(),
                message: format!("writing {key}: the bucket does not exist"),
            }),
            Err(error) => Err(self.error(key, error)),
        }
    }

    pub fn put_new(&self, key: &str, bytes: Bytes) -> RemoteResult<Created> {
        runtime().block_on(self.put_new_async(key, bytes))
    }

    pub async fn get_async(&self, key: &str) -> RemoteResult<Bytes> {
        let result = self.store.get(&self.path(key)).await.map_err(|e| self.error(key, e))?;
        result.bytes().await.map_err(|e| self.error(key, e))
    }

    pub fn get(&self, key: &str) -> RemoteResult<Bytes> {
        runtime().block_on(self.get_async(key))
    }

    pub fn get_range(&self, key: &str, range: Range<u64>) -> RemoteResult<Bytes> {
        runtime().block_on(async { self.store.get_range(&self.path(key), range).await.map_err(|e| self.error(key, e)) })
    }

    /// Whether `key` exists.
    pub fn exists(&self, key: &str) -> RemoteResult<bool> {
        match runtime().block_on(self.store.head(&self.path(key))) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(self.error(key, error)),
        }
    }

    /// Every object under `dir` (a key prefix ending without '/').
    pub fn list(&self, dir: &str) -> RemoteResult<Vec<Listed>> {
        runtime().block_on(async {
            let prefix = self.path(dir);
            let mut stream = self.store.list(Some(&prefix));
            let mut listed = Vec::new();
            while let Some(item) = stream.next().await {
                let meta = item.map_err(|e| self.error(dir, e))?;
                listed.push(Listed {
                    key: self.key_of(&meta.location),
                    size: meta.size,
                    last_modified: meta.last_modified,
                });
            }
            listed.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(listed)
        })
    }

    pub fn delete(&self, key: &str) -> RemoteResult<()> {
        match runtime().block_on(self.store.delete(&self.path(key))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(self.error(key, error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conditional_create_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let config = RemoteConfig::for_url(&format!("file://{}", dir.path().display()));
        let objects = Objects::open("here", &config).unwrap();
        assert_eq!(objects.put_new("a/b", Bytes::from_static(b"one")).unwrap(), Created::Written);
        assert_eq!(objects.put_new("a/b", Bytes::from_static(b"two")).unwrap(), Created::AlreadyThere);
        assert_eq!(&objects.get("a/b").unwrap()[..], b"one");
        assert_eq!(&objects.get_range("a/b", 1..3).unwrap()[..], b"ne");
        assert_eq!(objects.list("a").unwrap().iter().map(|l| l.key.as_str()).collect::<Vec<_>>(), ["a/b"]);
        assert!(objects.list("nothing").unwrap().is_empty());
        assert!(matches!(objects.get("a/c"), Err(RemoteError::NotFound { .. })));
        objects.delete("a/b").unwrap();
        objects.delete("a/b").unwrap();
        assert!(!objects.exists("a/b").unwrap());
    }
}
