//! What the remote commands show (`remote ...`, `export`, `import`): views
//! serialized as they are for --json, and their text for people.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::output::{bytes, key_values, span, time, Human, Table};
use super::views::{ListView, SnapshotView};
use crate::api::proto;

fn utc(timestamp: Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    timestamp.and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
}

fn millis(duration: Option<prost_types::Duration>) -> f64 {
    duration.map_or(0.0, |d| d.seconds as f64 * 1e3 + f64::from(d.nanos) / 1e6)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemoteView {
    pub name: String,
    pub url: String,
    pub key_file: String,
    pub key_file_present: bool,
}

impl From<proto::Remote> for RemoteView {
    fn from(remote: proto::Remote) -> RemoteView {
        RemoteView {
            name: remote.name,
            url: remote.url,
            key_file: remote.key_file,
            key_file_present: remote.key_file_present,
        }
    }
}

impl Human for ListView<RemoteView> {
    fn human(&self) -> String {
        if self.0.is_empty() {
            return "no remotes configured: add a [remotes.NAME] table to the daemon's configuration \
                    (/etc/rollpoint/rollpointd.toml) and restart it\n"
                .into();
        }
        let mut table = Table::new(&["NAME", "URL", "KEY FILE"]);
        for remote in &self.0 {
            let key = if remote.key_file_present {
                remote.key_file.clone()
            } else {
                format!("{} (missing)", remote.key_file)
            };
            table.row(vec![remote.name.clone(), remote.url.clone(), key]);
        }
        table.render()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemoteInitView {
    pub remote: String,
    pub repository_id: String,
    pub key_file: String,
    pub key_file_created: bool,
}

impl Human for RemoteInitView {
    fn human(&self) -> String {
        let mut text = key_values(&[
            ("remote", self.remote.clone()),
            ("repository", self.repository_id.clone()),
            (
                "key file",
                format!("{} ({})", self.key_file, if self.key_file_created { "new" } else { "already there, used" }),
            ),
        ]);
        text.push_str(
            "\nThe key file opens this repository. Copy it to every host that is to restore from\n\
             this remote, and keep a copy off the hosts: losing every copy of it loses the data.\n",
        );
        text
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemoteCheckView {
    pub remote: String,
    pub repository_id: String,
    pub snapshots: u32,
    pub packs: u32,
    pub stored_bytes: u64,
    pub blobs: u64,
}

impl Human for RemoteCheckView {
    fn human(&self) -> String {
        key_values(&[
            ("remote", format!("{} (reached, repository opened with its key)", self.remote)),
            ("repository", self.repository_id.clone()),
            ("snapshots", self.snapshots.to_string()),
            ("packs", format!("{} ({} stored, {} chunks)", self.packs, bytes(self.stored_bytes), self.blobs)),
        ])
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemoteSnapshotView {
    pub id: String,
    pub container: String,
    pub snapshot: String,
    pub alias: Option<String>,
    pub host: String,
    pub create_time: Option<DateTime<Utc>>,
    pub export_time: Option<DateTime<Utc>>,
    /// Sum of the files' sizes.
    pub logical_bytes: u64,
    /// What the export added to the remote (its delta).
    pub added_bytes: u64,
    pub files: u64,
    pub entries: u64,
    /// Null for a first export.
    pub parent_id: Option<String>,
}

impl From<proto::RemoteSnapshot> for RemoteSnapshotView {
    fn from(s: proto::RemoteSnapshot) -> RemoteSnapshotView {
        RemoteSnapshotView {
            id: s.id,
            container: s.container,
            snapshot: s.snapshot,
            alias: Some(s.alias).filter(|a| !a.is_empty()),
            host: s.host,
            create_time: utc(s.create_time),
            export_time: utc(s.export_time),
            logical_bytes: s.logical_bytes,
            added_bytes: s.added_bytes,
            files: s.files,
            entries: s.entries,
            parent_id: Some(s.parent_id).filter(|p| !p.is_empty()),
        }
    }
}

impl RemoteSnapshotView {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("container", self.container.clone()),
            ("snapshot", self.snapshot.clone()),
            ("alias", self.alias.clone().unwrap_or_else(|| "-".into())),
            ("created", time(self.create_time)),
            ("exported", format!("{} by {}", time(self.export_time), self.host)),
            ("size", format!("{} in {} files", bytes(self.logical_bytes), self.files)),
            ("added", format!("{} (what this export stored)", bytes(self.added_bytes))),
            ("id", self.id.clone()),
        ]
    }
}

impl Human for ListView<RemoteSnapshotView> {
    fn human(&self) -> String {
        let mut table =
            Table::new(&["CONTAINER", "SNAPSHOT", "CREATED", "EXPORTED", "SIZE", "ADDED", "FILES", "HOST", "ID"]);
        for s in &self.0 {
            table.row(vec![
                s.container.clone(),
                s.snapshot.clone(),
                time(s.create_time),
                time(s.export_time),
                bytes(s.logical_bytes),
                bytes(s.added_bytes),
                s.files.to_string(),
                s.host.clone(),
                s.id.chars().take(12).collect(),
            ]);
        }
        table.render()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportView {
    pub remote: String,
    pub snapshot: RemoteSnapshotView,
    pub method: String,
    pub already_exported: bool,
    pub duration_ms: f64,
    pub bytes_read: u64,
}

impl ExportView {
    pub fn new(remote: &str, result: proto::ExportResult) -> ExportView {
        ExportView {
            remote: remote.to_owned(),
            snapshot: result.snapshot.unwrap_or_default().into(),
            method: result.method,
            already_exported: result.already_exported,
            duration_ms: millis(result.duration),
            bytes_read: result.bytes_read,
        }
    }
}

impl Human for ExportView {
    fn human(&self) -> String {
        let mut pairs = vec![("remote", self.remote.clone())];
        pairs.extend(self.snapshot.pairs());
        if self.already_exported {
            pairs.push(("note", "exported before: nothing to do".into()));
        } else {
            pairs.push(("read", format!("{} ({})", bytes(self.bytes_read), self.method)));
            pairs.push(("took", span(self.duration_ms)));
        }
        key_values(&pairs)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportView {
    pub remote: String,
    pub source: RemoteSnapshotView,
    /// The snapshot recorded; null when imported to a path.
    pub snapshot: Option<SnapshotView>,
    pub path: String,
    pub entries: u64,
    pub bytes_written: u64,
    pub bytes_downloaded: u64,
    pub duration_ms: f64,
}

impl ImportView {
    pub fn new(remote: &str, result: proto::ImportResult) -> ImportView {
        ImportView {
            remote: remote.to_owned(),
            source: result.source.unwrap_or_default().into(),
            snapshot: result.snapshot.map(SnapshotView::from),
            path: result.path,
            entries: result.entries,
            bytes_written: result.bytes_written,
            bytes_downloaded: result.bytes_downloaded,
            duration_ms: millis(result.duration),
        }
    }
}

impl Human for ImportView {
    fn human(&self) -> String {
        let mut pairs = vec![
            ("remote", self.remote.clone()),
            (
                "from",
                format!(
                    "{}/{} (exported {} by {})",
                    self.source.container,
                    self.source.snapshot,
                    time(self.source.export_time),
                    self.source.host
                ),
            ),
            ("to", self.path.clone()),
        ];
        if let Some(snapshot) = &self.snapshot {
            pairs.push((
                "snapshot",
                format!(
                    "{} (origin import; restore it with `rollpoint restore {} {}`)",
                    snapshot.name, snapshot.container, snapshot.name
                ),
            ));
        }
        pairs.push(("entries", self.entries.to_string()));
        pairs.push(("written", bytes(self.bytes_written)));
        pairs.push(("downloaded", bytes(self.bytes_downloaded)));
        pairs.push(("took", span(self.duration_ms)));
        key_values(&pairs)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyView {
    pub remote: String,
    pub packs: u64,
    pub blobs: u64,
    pub bytes: u64,
    pub snapshots: u64,
    pub problems: Vec<String>,
    pub damaged_snapshots: Vec<String>,
    pub unindexed_packs: u64,
}

impl VerifyView {
    pub fn new(remote: &str, r: proto::VerifyRemoteResponse) -> VerifyView {
        VerifyView {
            remote: remote.to_owned(),
            packs: r.packs,
            blobs: r.blobs,
            bytes: r.bytes,
            snapshots: r.snapshots,
            problems: r.problems,
            damaged_snapshots: r.damaged_snapshots,
            unindexed_packs: r.unindexed_packs,
        }
    }
}

impl Human for VerifyView {
    fn human(&self) -> String {
        let mut text = key_values(&[
            ("remote", self.remote.clone()),
            (
                "checked",
                format!(
                    "{} packs ({}), {} chunks, {} snapshots",
                    self.packs,
                    bytes(self.bytes),
                    self.blobs,
                    self.snapshots
                ),
            ),
            (
                "result",
                if self.problems.is_empty() {
                    "every seal and id checks out".into()
                } else {
                    format!("{} problems", self.problems.len())
                },
            ),
        ]);
        if self.unindexed_packs > 0 {
            text.push_str(&format!(
                "note: {} packs from interrupted exports; `rollpoint remote prune` collects them\n",
                self.unindexed_packs
            ));
        }
        for problem in &self.problems {
            text.push_str(&format!("problem: {problem}\n"));
        }
        for snapshot in &self.damaged_snapshots {
            text.push_str(&format!("damaged: {snapshot}\n"));
        }
        text
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PruneView {
    pub remote: String,
    pub dry_run: bool,
    pub forgotten: Vec<String>,
    pub kept: u32,
    pub marked: u32,
    pub unmarked: u32,
    pub waiting: u32,
    pub deleted_packs: u32,
    pub freed_bytes: u64,
}

impl PruneView {
    pub fn new(remote: &str, dry_run: bool, r: proto::PruneRemoteResponse) -> PruneView {
        PruneView {
            remote: remote.to_owned(),
            dry_run,
            forgotten: r.forgotten,
            kept: r.kept,
            marked: r.marked,
            unmarked: r.unmarked,
            waiting: r.waiting,
            deleted_packs: r.deleted_packs,
            freed_bytes: r.freed_bytes,
        }
    }
}

impl Human for PruneView {
    fn human(&self) -> String {
        let forgotten = if self.forgotten.is_empty() { "-".to_owned() } else { self.forgotten.join(", ") };
        let mut text = key_values(&[
            ("remote", format!("{}{}", self.remote, if self.dry_run { " (dry run: nothing changed)" } else { "" })),
            ("forgotten", forgotten),
            ("kept", format!("{} exports", self.kept)),
            (
                "packs",
                format!(
                "{} newly marked unreferenced, {} waiting for the grace period, {} deleted ({} freed), {} marks lifted",
                self.marked, self.waiting, self.deleted_packs, bytes(self.freed_bytes), self.unmarked
            ),
            ),
        ]);
        if self.marked > 0 {
            text.push_str("note: marked packs are deleted by a later prune, once their mark is older than --grace\n");
        }
        text
    }
}
