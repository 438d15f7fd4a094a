//! The whole record as one versioned JSON document: `rollpoint store export`
//! and `import`, and the daily copy the daemon keeps in its state directory
//! (`<state dir>/store-exports/store-YYYY-MM-DD.json`, the newest 7 kept),
//! which belongs in a host backup.
//!
//! Format (`"format": "rollpoint-store", "version": 1`): the store's
//! generation, the time of the export, and the containers, snapshots,
//! schedule entries and (only when asked) tokens as the store keeps them.
//! Token records hold only a keyed hash of each secret, but they are left
//! out by default: whoever holds the file and the daemon's key could
//! otherwise check guesses against them. Events are not exported.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ContainerRecord, EntryRecord, SnapshotRecord, Store, StoreError, TokenRecord};

pub const EXPORT_FORMAT: &str = "rollpoint-store";
pub const EXPORT_VERSION: u32 = 1;
/// Daily exports kept in the state directory.
pub const DAILY_EXPORTS_KEPT: usize = 7;
/// Where the daily exports go, inside the state directory.
pub const DAILY_EXPORT_FOLDER: &str = "store-exports";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreExport {
    pub format: String,
    pub version: u32,
    pub generation: u64,
    pub exported: DateTime<Utc>,
    pub containers: Vec<ContainerRecord>,
    pub snapshots: Vec<SnapshotRecord>,
    pub entries: Vec<EntryRecord>,
    /// Present only when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Vec<TokenRecord>>,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ImportReport {
    pub containers: usize,
    pub snapshots: usize,
    pub entries: usize,
    pub tokens: usize,
    /// Records the store already held (by key): left as they are.
    pub kept: Vec<String>,
}

impl Store {
    /// The whole record (tokens only with `with_tokens`).
    pub fn export(&self, with_tokens: bool, now: DateTime<Utc>) -> Result<StoreExport, StoreError> {
        Ok(StoreExport {
            format: EXPORT_FORMAT.into(),
            version: EXPORT_VERSION,
            generation: self.generation()?,
            exported: now,
            containers: self.containers()?,
            snapshots: self.all_snapshots()?,
            entries: self.entries("")?,
            tokens: if with_tokens { Some(self.tokens()?) } else { None },
        })
    }

    /// Adds what `export` holds and the store lacks; a record the store
    /// holds already is kept as it is and listed. Durable on return.
    pub fn import(&self, export: &StoreExport) -> Result<ImportReport, StoreError> {
        let mut report = ImportReport::default();
        for container in &export.containers {
            if self.insert_container(container)? {
                report.containers += 1;
            } else {
                report.kept.push(format!("containers/{}", container.id));
            }
        }
        for snapshot in &export.snapshots {
            if self.snapshot(&snapshot.container, &snapshot.name)?.is_some() {
                report.kept.push(snapshot.resource_name());
            } else {
                self.put_snapshots(&[snapshot])?;
                report.snapshots += 1;
            }
        }
        for entry in &export.entries {
            if self.insert_entry(entry)? {
                report.entries += 1;
            } else {
                report.kept.push(entry.resource_name());
            }
        }
        for token in export.tokens.iter().flatten() {
            if self.insert_token(token)? {
                report.tokens += 1;
            } else {
                report.kept.push(format!("tokens/{}", token.name));
            }
        }
        self.raise_generation(export.generation)?;
        self.make_durable()?;
        Ok(report)
    }
}

impl StoreExport {
    /// Reads and checks an export file.
    pub fn read(path: &Path) -> Result<StoreExport, StoreError> {
        let bytes =
            std::fs::read(path).map_err(|source| StoreError::Io { op: "read", path: path.to_owned(), source })?;
        let export: StoreExport = serde_json::from_slice(&bytes).map_err(StoreError::Decode)?;
        if export.format != EXPORT_FORMAT || export.version != EXPORT_VERSION {
            return Err(StoreError::Io {
                op: "read",
                path: path.to_owned(),
                source: std::io::Error::other(format!(
                    "format {:?} version {}; this rollpoint reads {EXPORT_FORMAT:?} version {EXPORT_VERSION}",
                    export.format, export.version
                )),
            });
        }
        Ok(export)
    }

    /// Writes the export to `path` atomically (mode 0600).
    pub fn write(&self, path: &Path) -> Result<(), StoreError> {
        let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("store.json");
        super::sidecar::write(folder, name, self)?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| StoreError::Io {
            op: "chmod",
            path: path.to_owned(),
            source,
        })
    }
}

/// Writes today's export into `<state_dir>/store-exports/` unless there is
/// one already, and keeps the newest [`DAILY_EXPORTS_KEPT`]. Returns the
/// file written, if any.
pub fn daily_export(store: &Store, state_dir: &Path, now: DateTime<Utc>) -> Result<Option<PathBuf>, StoreError> {
    let folder = state_dir.join(DAILY_EXPORT_FOLDER);
    let path = folder.join(format!("store-{}.json", now.format("%Y-%m-%d")));
    let written = if path.exists() {
        None
    } else {
        store.export(false, now)?.write(&path)?;
        Some(path)
    };
    let mut exports: Vec<PathBuf> = std::fs::read_dir(&folder)
        .map_err(|source| StoreError::Io { op: "list", path: folder.clone(), source })?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("store-") && n.ends_with(".json"))
        })
        .collect();
    // Names sort by date.
    exports.sort();
    let surplus = exports.len().saturating_sub(DAILY_EXPORTS_KEPT);
    for old in &exports[..surplus] {
        std::fs::remove_file(old).map_err(|source| StoreError::Io { op: "remove", path: old.clone(), source })?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SnapshotOrigin, SnapshotState};

    fn snapshot(container: &str, name: &str) -> SnapshotRecord {
        SnapshotRecord {
            container: container.into(),
            name: name.into(),
            alias: Some("rollback-point".into()),
            create_time: Utc::now(),
            expire_time: Some(Utc::now()),
            frozen_for: std::time::Duration::from_millis(2),
            duration: std::time::Duration::from_millis(5),
            state: SnapshotState::Ready,
            origin: SnapshotOrigin::Api,
            read_only: true,
            location: format!("/fs/.rollpoint/{container}/{name}"),
            uuid: "u".into(),
            generation: 3,
            comment: String::new(),
            sizes: None,
            hold: None,
            group: None,
        }
    }

    #[test]
    fn an_export_imports_into_an_empty_store_and_never_overwrites() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = Store::open(&dir.path().join("a")).expect("open");
        let container = ContainerRecord {
            id: "db-1".into(),
            cgroup: "/sys/fs/cgroup/db-1".into(),
            volume: "/fs/db-1".into(),
            backend: "btrfs".into(),
            snapshot_dir: "/fs/.rollpoint/db-1".into(),
            lifecycle: Default::default(),
            labels: Default::default(),
            create_time: Utc::now(),
            last_restore: None,
            hooks: Default::default(),
            retention: Default::default(),
            discovered: None,
            group: None,
        };
        assert!(first.insert_container(&container).expect("insert"));
        first.put_snapshots(&[&snapshot("db-1", "snap-1")]).expect("put");
        first.next_generation().expect("generation");
        let file = dir.path().join("export.json");
        first.export(false, Utc::now()).expect("export").write(&file).expect("write");
        let read = StoreExport::read(&file).expect("read");
        assert!(read.tokens.is_none());

        let second = Store::open(&dir.path().join("b")).expect("open");
        let report = second.import(&read).expect("import");
        assert_eq!((report.containers, report.snapshots), (1, 1));
        assert_eq!(second.containers().expect("containers"), vec![container]);
        assert_eq!(second.snapshot_by_alias("db-1", "rollback-point").expect("alias").expect("found").name, "snap-1");
        assert_eq!(second.generation().expect("generation"), 1);
        let again = second.import(&read).expect("import again");
        assert_eq!(again.kept.len(), 2, "{:?}", again.kept);
    }

    #[test]
    fn daily_exports_keep_the_newest_seven() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("state")).expect("open");
        let start = DateTime::parse_from_rfc3339("2026-05-01T02:00:00Z").expect("time").with_timezone(&Utc);
        for day in 0..10 {
            let now = start + chrono::Duration::days(day);
            assert!(daily_export(&store, dir.path(), now).expect("export").is_some());
            assert!(daily_export(&store, dir.path(), now).expect("export").is_none(), "one a day");
        }
        let mut left: Vec<String> = std::fs::read_dir(dir.path().join(DAILY_EXPORT_FOLDER))
            .expect("list")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        left.sort();
        assert_eq!(left.len(), DAILY_EXPORTS_KEPT);
        assert_eq!(left[0], "store-2026-05-04.json");
    }
}
