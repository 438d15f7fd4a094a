//! Printing for people (aligned tables, "key: value" blocks) and for scripts
//! (one JSON document). Every list goes through `Table`, every single
//! resource through `key_values`.

use std::fmt::Write as _;
use std::io::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::views::{ContainerView, DeletedView, LifecycleView, ListView, RestoreView, SnapshotView, UnregisterView};

/// Text of a view for people; JSON comes from its `Serialize`.
pub trait Human {
    fn human(&self) -> String;
}

/// Prints `view` to stdout as JSON or for people. A reader that went away
/// (`rollpoint ... | head`) is not an error.
pub fn emit<V: Human + Serialize>(view: &V, json: bool) -> std::io::Result<()> {
    let text = if json {
        // Our views hold strings, numbers and maps with string keys only, so
        // this cannot fail; map it anyway rather than panic.
        let mut text = serde_json::to_string_pretty(view).map_err(std::io::Error::other)?;
        text.push('\n');
        text
    } else {
        view.human()
    };
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result,
    }
}

/// Columns separated by two spaces, each as wide as its widest cell; the last
/// column is not padded, so lines carry no trailing blanks.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table { header: header.iter().map(|title| (*title).to_owned()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|title| width(title)).collect();
        for row in &self.rows {
            for (column, cell) in row.iter().enumerate() {
                widths[column] = widths[column].max(width(cell));
            }
        }
        let mut text = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (column, cell) in row.iter().enumerate() {
                if column + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(widths[column] - width(cell) + 2));
                }
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

fn width(text: &str) -> usize {
    text.chars().count()
}

/// `key: value` lines with the values aligned.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let key_width = pairs.iter().map(|(key, _)| width(key)).max().unwrap_or(0);
    let mut text = String::new();
    for (key, value) in pairs {
        let _ = writeln!(text, "{:<w$} {value}", format!("{key}:"), w = key_width + 1);
    }
    text
}

/// UTC, second precision: `2026-05-04T10:00:00Z`; `-` when unknown.
pub fn time(time: Option<DateTime<Utc>>) -> String {
    time.map_or_else(|| "-".to_owned(), |time| time.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// Milliseconds with 2 decimals below 10 ms, 1 above: `3.25 ms`, `120.4 ms`.
pub fn millis(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

/// Milliseconds below a second, else seconds with 2 decimals: `1.52 s`.
pub fn span(ms: f64) -> String {
    if ms < 1000.0 {
        millis(ms)
    } else {
        format!("{:.2} s", ms / 1e3)
    }
}

fn or_dash(text: Option<&str>) -> String {
    text.filter(|text| !text.is_empty()).unwrap_or("-").to_owned()
}

fn expires(snapshot: &SnapshotView) -> String {
    snapshot.expire_time.map_or_else(|| "never".to_owned(), |at| time(Some(at)))
}

fn lifecycle(lifecycle: &LifecycleView) -> String {
    match lifecycle {
        LifecycleView::None => "none".to_owned(),
        LifecycleView::Command { stop, start, timeout_seconds } => {
            format!(
                "command (stop: {}; start: {}; timeout: {})",
                stop.join(" "),
                start.join(" "),
                timeout(*timeout_seconds)
            )
        }
        LifecycleView::Systemd { unit, timeout_seconds } => {
            format!("systemd unit {unit} (timeout: {})", timeout(*timeout_seconds))
        }
    }
}

fn timeout(seconds: u32) -> String {
    if seconds == 0 {
        "default".to_owned()
    } else {
        format!("{seconds} s")
    }
}

fn lifecycle_kind(lifecycle: &LifecycleView) -> &'static str {
    match lifecycle {
        LifecycleView::None => "none",
        LifecycleView::Command { .. } => "command",
        LifecycleView::Systemd { .. } => "systemd",
    }
}

impl Human for SnapshotView {
    fn human(&self) -> String {
        let mut pairs = vec![
            ("name", self.name.clone()),
            ("container", self.container.clone()),
            ("alias", or_dash(self.alias.as_deref())),
            ("created", time(self.create_time)),
            ("expires", expires(self)),
            ("frozen for", millis(self.frozen_for_ms)),
            ("took", span(self.duration_ms)),
            ("state", self.state.to_owned()),
            ("origin", self.origin.to_owned()),
            ("read-only", if self.read_only { "yes" } else { "no" }.to_owned()),
            ("location", or_dash(Some(&self.location))),
            ("uuid", or_dash(Some(&self.uuid))),
        ];
        if !self.comment.is_empty() {
            pairs.push(("comment", self.comment.clone()));
        }
        if self.exclusive_bytes > 0 {
            pairs.push(("exclusive bytes", self.exclusive_bytes.to_string()));
        }
        key_values(&pairs)
    }
}

impl Human for ListView<SnapshotView> {
    fn human(&self) -> String {
        let mut table = Table::new(&["NAME", "ALIAS", "CREATED", "EXPIRES", "FROZEN", "STATE", "ORIGIN"]);
        for snapshot in &self.0 {
            table.row(vec![
                snapshot.name.clone(),
                or_dash(snapshot.alias.as_deref()),
                time(snapshot.create_time),
                expires(snapshot),
                millis(snapshot.frozen_for_ms),
                snapshot.state.to_owned(),
                snapshot.origin.to_owned(),
            ]);
        }
        table.render()
    }
}

impl Human for ContainerView {
    fn human(&self) -> String {
        let labels = self.labels.iter().map(|(key, value)| format!("{key}={value}")).collect::<Vec<_>>().join(", ");
        key_values(&[
            ("id", self.id.clone()),
            ("cgroup", self.cgroup.clone()),
            ("subvolume", self.subvolume.clone()),
            ("backend", self.backend.clone()),
            ("snapshot dir", self.snapshot_dir.clone()),
            ("lifecycle", lifecycle(&self.lifecycle)),
            ("labels", or_dash(Some(&labels))),
            ("created", time(self.create_time)),
            ("snapshots", self.snapshot_count.to_string()),
        ])
    }
}

impl Human for ListView<ContainerView> {
    fn human(&self) -> String {
        let mut table = Table::new(&["ID", "SNAPSHOTS", "LIFECYCLE", "CREATED", "CGROUP", "SUBVOLUME"]);
        for container in &self.0 {
            table.row(vec![
                container.id.clone(),
                container.snapshot_count.to_string(),
                lifecycle_kind(&container.lifecycle).to_owned(),
                time(container.create_time),
                container.cgroup.clone(),
                container.subvolume.clone(),
            ]);
        }
        table.render()
    }
}

impl Human for UnregisterView {
    fn human(&self) -> String {
        format!("unregistered {} ({} snapshots deleted)\n", self.id, self.snapshots_deleted)
    }
}

impl Human for DeletedView {
    fn human(&self) -> String {
        format!("deleted snapshot {} of {}\n", self.0.name, self.0.container)
    }
}

impl Human for RestoreView {
    fn human(&self) -> String {
        let restored = self.restored.as_ref().map_or_else(
            || "-".to_owned(),
            |snapshot| match &snapshot.alias {
                Some(alias) => format!("{} (alias {alias})", snapshot.name),
                None => snapshot.name.clone(),
            },
        );
        let mut text = String::new();
        if self.already_restored {
            let _ = writeln!(text, "{} already runs from {restored}; nothing done", self.container);
        } else {
            let mut steps = Table::new(&["STEP", "TOOK"]);
            for step in &self.steps {
                steps.row(vec![step.name.clone(), span(step.took_ms)]);
            }
            text.push_str(&steps.render());
            text.push('\n');
        }
        text.push_str(&key_values(&[
            ("restored", restored),
            ("pre-restore snapshot", or_dash(self.pre_restore_snapshot.as_deref())),
            ("total", span(self.total_ms)),
            ("downtime", span(self.downtime_ms)),
            ("daemon time", span(self.daemon_time_ms)),
        ]));
        if let Some(pre_restore) = &self.pre_restore_snapshot {
            let _ = writeln!(text, "undo with: rollpoint restore {} {pre_restore}", self.container);
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_without_trailing_blanks() {
        let mut table = Table::new(&["NAME", "ALIAS", "STATE"]);
        table.row(vec!["snap-2026-05-04".into(), "rollback-point".into(), "ready".into()]);
        table.row(vec!["s".into(), "-".into(), "lost".into()]);
        assert_eq!(
            table.render(),
            "NAME             ALIAS           STATE\n\
             snap-2026-05-04  rollback-point  ready\n\
             s                -               lost\n"
        );
    }

    #[test]
    fn empty_table_is_its_header() {
        assert_eq!(Table::new(&["ID", "SNAPSHOTS"]).render(), "ID  SNAPSHOTS\n");
    }

    #[test]
    fn empty_last_cell_leaves_no_trailing_blank() {
        let mut table = Table::new(&["A", "B"]);
        table.row(vec!["x".into(), String::new()]);
        assert_eq!(table.render(), "A  B\nx\n");
    }

    #[test]
    fn key_values_align_values() {
        assert_eq!(key_values(&[("id", "db-1".into()), ("snapshots", "3".into())]), "id:        db-1\nsnapshots: 3\n");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(millis(3.254), "3.25 ms");
        assert_eq!(millis(120.44), "120.4 ms");
        assert_eq!(span(1523.0), "1.52 s");
        assert_eq!(span(0.5), "0.50 ms");
    }

    #[test]
    fn times_are_utc_to_the_second() {
        let at = DateTime::from_timestamp(1_777_888_800, 500_000_000);
        assert_eq!(time(at), "2026-05-04T10:00:00Z");
        assert_eq!(time(None), "-");
    }

    #[test]
    fn snapshot_list_shows_never_and_dashes() {
        let snapshot = SnapshotView {
            name: "snap-1".into(),
            container: "db-1".into(),
            resource_name: String::new(),
            alias: None,
            create_time: DateTime::from_timestamp(1_777_888_800, 0),
            expire_time: None,
            frozen_for_ms: 3.254,
            duration_ms: 40.0,
            state: "ready",
            origin: "api",
            read_only: true,
            location: String::new(),
            uuid: String::new(),
            comment: String::new(),
            exclusive_bytes: 0,
        };
        assert_eq!(
            ListView(vec![snapshot]).human(),
            "NAME    ALIAS  CREATED               EXPIRES  FROZEN   STATE  ORIGIN\n\
             snap-1  -      2026-05-04T10:00:00Z  never    3.25 ms  ready  api\n"
        );
    }
}
