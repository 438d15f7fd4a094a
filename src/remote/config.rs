//! A remote as the daemon's configuration names it:
//!
//! ```toml
//! [remotes.offsite]
//! url = "s3://bucket/some/prefix"      # or "file:///srv/rollpoint-repo"
//! endpoint = "https://s3.example.org"  # S3-compatible services; AWS without it
//! region = "us-east-1"
//! path_style = true                    # bucket in the path, not the host name
//! allow_http = false                   # plain http (a local test server)
//! credentials_file = "/etc/rollpoint/offsite.credentials"   # mode 0600
//! key_file = "/var/lib/rollpoint/keys/offsite.key"          # default
//! ```
//! Without `credentials_file`, credentials come from the environment as the
//! AWS tools read them (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, ...).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    pub url: String,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default = "yes")]
    pub path_style: bool,
    #[serde(default)]
    pub allow_http: bool,
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// The key file that opens this remote's repository; default
    /// `<state_dir>/keys/<name>.key`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// How long a failing request is retried before the operation fails.
    #[serde(default = "default_retry_timeout")]
    pub retry_timeout_seconds: u64,
}

fn yes() -> bool {
    true
}

fn default_retry_timeout() -> u64 {
    20
}

/// Where a remote's objects live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteLocation {
    Directory(PathBuf),
    S3 { bucket: String, prefix: String },
}

/// The credentials file's content.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl RemoteConfig {
    /// A remote with every setting but the url at its default.
    pub fn for_url(url: &str) -> RemoteConfig {
        RemoteConfig {
            url: url.to_owned(),
            endpoint: None,
            region: None,
            path_style: true,
            allow_http: false,
            credentials_file: None,
            key_file: None,
            retry_timeout_seconds: default_retry_timeout(),
        }
    }

    /// Parses the url; the error says what is wrong with it.
    pub fn location(&self) -> Result<RemoteLocation, String> {
        if let Some(path) = self.url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!("url {:?}: a file:// url needs an absolute path (file:///dir)", self.url));
            }
            return Ok(RemoteLocation::Directory(PathBuf::from(path)));
        }
        if let Some(rest) = self.url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("url {:?}: no bucket (s3://bucket/prefix)", self.url));
            }
            return Ok(RemoteLocation::S3 { bucket: bucket.to_owned(), prefix: prefix.trim_matches('/').to_owned() });
        }
        Err(format!("url {:?}: must start with s3:// or file://", self.url))
    }

    /// The credentials file, when one is named; refused when others than
    /// its owner may read it.
    pub fn read_credentials(&self) -> Result<Option<Credentials>, String> {
        let Some(path) = &self.credentials_file else { return Ok(None) };
        let metadata = std::fs::metadata(path).map_err(|e| format!("credentials_file {}: {e}", path.display()))?;
        if metadata.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "credentials_file {}: readable by others than its owner (mode {:o}); chmod 600 it",
                path.display(),
                metadata.permissions().mode() & 0o777
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("credentials_file {}: {e}", path.display()))?;
        toml::from_str(&text).map(Some).map_err(|e| format!("credentials_file {}: {e}", path.display()))
    }

    /// The key file of remote `name`.
    pub fn key_file(&self, name: &str, state_dir: &Path) -> PathBuf {
        self.key_file.clone().unwrap_or_else(|| state_dir.join("keys").join(format!("{name}.key")))
    }
}

/// Checks a remote's name: what a config table key and a file name can be.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?}: a remote's name is 1-63 letters, digits, '-' or '_', starting with a letter or digit"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed_or_named_in_the_error() {
        assert_eq!(
            RemoteConfig::for_url("s3://b/p/q/").location().unwrap(),
            RemoteLocation::S3 { bucket: "b".into(), prefix: "p/q".into() }
        );
        assert_eq!(
            RemoteConfig::for_url("file:///srv/r").location().unwrap(),
            RemoteLocation::Directory("/srv/r".into())
        );
        assert!(RemoteConfig::for_url("file://rel").location().unwrap_err().contains("absolute"));
        assert!(RemoteConfig::for_url("gs://x").location().unwrap_err().contains("s3://"));
        assert!(RemoteConfig::for_url("s3:///x").location().unwrap_err().contains("bucket"));
    }

    #[test]
    fn a_credentials_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds");
        std::fs::write(&path, "access_key_id = \"a\"\nsecret_access_key = \"b\"\n").unwrap();
        let mut config = RemoteConfig::for_url("s3://b");
        config.credentials_file = Some(path.clone());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(config.read_credentials().unwrap_err().contains("chmod 600"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(config.read_credentials().unwrap().unwrap().access_key_id, "a");
    }

    #[test]
    fn names() {
        assert!(check_name("offsite-1").is_ok());
        assert!(check_name("../x").is_err());
        assert!(check_name("").is_err());
    }
}
