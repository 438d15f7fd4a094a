//! Printing for people (aligned tables, "key: value" blocks) and for scripts
//! (one JSON document). Every list goes through `Table`, every single
//! resource through `key_values`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::views::{
    ActionView, ContainerView, DeletedEntryView, DeletedView, DiscoverView, DiscoveryView, EntryView, EventView,
    FilesRestoredView, GroupRestoreView, GroupSnapshotView, GroupView, HookView, LifecycleView, ListView, MountView,
    PathDiffView, PruneView, RestoreView, RevokedTokenView, RunView, SnapshotView, StatusView, TokenCreatedView,
    TokenView, UnmountView, UnregisterView,
};

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
    write_out(&text).map(|_| ())
}

/// Writes `text` to stdout now; `Ok(false)` when the reader went away, so
/// that a command that keeps printing (`events --follow | head`) can stop.
pub fn write_out(text: &str) -> std::io::Result<bool> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        result => result.map(|()| true),
    }
}

/// One line of JSON Lines: `view` compact, then a newline.
pub fn json_line<V: Serialize>(view: &V) -> std::io::Result<String> {
    let mut line = serde_json::to_string(view).map_err(std::io::Error::other)?;
    line.push('\n');
    Ok(line)
}

/// Columns separated by two spaces, each as wide as its widest cell; the last
/// column is not padded, so lines carry no trailing blanks.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    min_widths: Vec<usize>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|title| (*title).to_owned()).collect(),
            rows: Vec::new(),
            min_widths: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    /// Makes the columns at least this wide: rows printed later line up with
    /// those printed before (see `widths`).
    pub fn min_widths(&mut self, widths: &[usize]) {
        self.min_widths = widths.to_vec();
    }

    /// Each column's width: its widest cell, header included.
    pub fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.header.iter().map(|title| width(title)).collect();
        for (column, min) in self.min_widths.iter().enumerate().take(widths.len()) {
            widths[column] = widths[column].max(*min);
        }
        for row in &self.rows {
            for (column, cell) in row.iter().enumerate() {
                widths[column] = widths[column].max(width(cell));
            }
        }
        widths
    }

    pub fn render(&self) -> String {
        self.lines(std::iter::once(&self.header).chain(&self.rows))
    }

    /// The rows without the header, for more rows of a table already printed.
    pub fn render_rows(&self) -> String {
        self.lines(self.rows.iter())
    }

    fn lines<'a>(&self, rows: impl Iterator<Item = &'a Vec<String>>) -> String {
        let widths = self.widths();
        let mut text = String::new();
        for row in rows {
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

pub use crate::units::bytes;

/// One line of at most `max` characters: runs of white space (newlines
/// included) become one space, and a cut is marked with `…`.
pub fn shorten(text: &str, max: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if width(&line) <= max {
        return line;
    }
    let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn or_dash(text: Option<&str>) -> String {
    text.filter(|text| !text.is_empty()).unwrap_or("-").to_owned()
}

fn expires(snapshot: &SnapshotView) -> String {
    if snapshot.hold.is_some() {
        return "held".to_owned();
    }
    snapshot.expire_time.map_or_else(|| "never".to_owned(), |at| time(Some(at)))
}

/// `412.0 MiB since snap-1`, or `… (all of it)` for a first snapshot.
fn delta(snapshot: &SnapshotView) -> String {
    let size = snapshot.delta_bytes.map_or_else(|| "-".to_owned(), bytes);
    match &snapshot.delta_parent {
        Some(parent) => format!("{size} since {parent}"),
        None => format!("{size} (all of its data)"),
    }
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
        LifecycleView::Podman { container, command, timeout_seconds } => {
            format!("podman container {container} ({}; timeout: {})", command.join(" "), timeout(*timeout_seconds))
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
        LifecycleView::Podman { .. } => "podman",
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
        if let Some(group) = &self.group {
            pairs.push(("group", group.clone()));
        }
        if let Some(hold) = &self.hold {
            pairs.push(("held", format!("{} (by {}, {})", hold.reason, hold.actor, time(hold.time))));
        }
        if let Some(exclusive) = self.exclusive_bytes {
            pairs.push(("exclusive", bytes(exclusive)));
        }
        if self.delta_bytes.is_some() {
            pairs.push(("delta", delta(self)));
        }
        key_values(&pairs)
    }
}

impl Human for ListView<SnapshotView> {
    fn human(&self) -> String {
        let mut table = Table::new(&["NAME", "ALIAS", "CREATED", "EXPIRES", "FROZEN", "STATE", "ORIGIN", "DELTA"]);
        for snapshot in &self.0 {
            table.row(vec![
                snapshot.name.clone(),
                or_dash(snapshot.alias.as_deref()),
                time(snapshot.create_time),
                expires(snapshot),
                millis(snapshot.frozen_for_ms),
                snapshot.state.to_owned(),
                snapshot.origin.to_owned(),
                snapshot.delta_bytes.map_or_else(|| "-".to_owned(), bytes),
            ]);
        }
        table.render()
    }
}

impl Human for StatusView {
    fn human(&self) -> String {
        let mut pairs = vec![
            ("version", self.version.clone()),
            ("host", self.host.clone()),
            ("started", time(self.start_time)),
            ("serving", yes_no(self.ready)),
            ("containers", self.containers.to_string()),
            ("snapshots", self.snapshots.to_string()),
            ("schedule entries", self.schedule_entries.to_string()),
            ("run listener", or_dash(self.run_listener.as_deref())),
            ("runs in progress", self.runs_in_progress.to_string()),
        ];
        let loads: Vec<(String, String)> = self
            .admission
            .iter()
            .map(|load| {
                (
                    format!("{} calls", load.kind),
                    format!(
                        "{} running of {}, {} waiting of {}",
                        load.in_flight, load.max_in_flight, load.queued, load.max_queued
                    ),
                )
            })
            .collect();
        pairs.extend(loads.iter().map(|(key, value)| (key.as_str(), value.clone())));
        if !self.unrecorded_snapshot_volumes.is_empty() {
            pairs.push((
                "unrecorded snapshots",
                format!(
                    "{} on disk without a record (`rollpoint recover` shows them): {}",
                    self.unrecorded_snapshot_volumes.len(),
                    self.unrecorded_snapshot_volumes.join(", ")
                ),
            ));
        }
        key_values(&pairs)
    }
}

impl Human for FilesRestoredView {
    fn human(&self) -> String {
        key_values(&[
            ("restored", self.paths.join(" ")),
            ("written to", self.written_to.clone()),
            (
                "undo",
                self.pre_restore_snapshot
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |pre| format!("the previous state is snapshot {pre}")),
            ),
        ])
    }
}

impl Human for ListView<PathDiffView> {
    fn human(&self) -> String {
        if self.0.is_empty() {
            return "no differences\n".to_owned();
        }
        let mut table = Table::new(&["CHANGE", "PATH", "SIZE", "WRITTEN"]);
        for diff in &self.0 {
            let mut path = diff.path.clone();
            if let Some(from) = &diff.renamed_from {
                let _ = write!(path, " <- {from}");
            }
            if let Some(other) = &diff.link_to {
                let _ = write!(path, " = {other}");
            }
            let written = if diff.changed_bytes > 0 { bytes(diff.changed_bytes) } else { "-".to_owned() };
            table.row(vec![diff.change.clone(), path, diff.size.map_or_else(|| "-".to_owned(), bytes), written]);
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
            ("hooks", or_dash(Some(&hooks(&self.hooks)))),
            ("retention", format!("{} ({})", self.retention, if self.own_retention { "its own" } else { "default" })),
            ("pre-restore retention", self.pre_restore_retention.clone()),
            ("group", or_dash(self.group.as_deref())),
            ("discovered", self.discovered.as_ref().map_or_else(|| "-".to_owned(), discovery)),
        ])
    }
}

/// `podman rp-db (vanished 2026-12-05 10:00:00 UTC)`.
fn discovery(discovered: &DiscoveryView) -> String {
    match discovered.vanish_time {
        Some(at) => format!("{} {} (vanished {})", discovered.source, discovered.name, time(Some(at))),
        None => format!("{} {}", discovered.source, discovered.name),
    }
}

impl Human for GroupView {
    fn human(&self) -> String {
        key_values(&[("group", self.name.clone()), ("members", self.members.join(", "))])
    }
}

impl Human for ListView<GroupView> {
    fn human(&self) -> String {
        let mut table = Table::new(&["GROUP", "MEMBERS (start order)"]);
        for group in &self.0 {
            table.row(vec![group.name.clone(), group.members.join(", ")]);
        }
        table.render()
    }
}

impl Human for GroupSnapshotView {
    fn human(&self) -> String {
        let mut table = Table::new(&["CONTAINER", "NAME", "ALIAS", "CREATED", "FROZEN", "LOCATION"]);
        for snapshot in &self.snapshots {
            table.row(vec![
                snapshot.container.clone(),
                snapshot.name.clone(),
                or_dash(snapshot.alias.as_deref()),
                time(snapshot.create_time),
                millis(snapshot.frozen_for_ms),
                snapshot.location.clone(),
            ]);
        }
        format!("group {}: one instant, every member\n{}", self.group, table.render())
    }
}

impl Human for GroupRestoreView {
    fn human(&self) -> String {
        key_values(&[
            ("group", self.group.clone()),
            ("restored", self.snapshot.clone()),
            ("members", self.members.join(", ")),
            ("undo", format!("rollpoint group restore {} {}", self.group, self.pre_restore_snapshot)),
            ("down", span(self.downtime_ms)),
            ("took", span(self.total_ms)),
        ])
    }
}

impl Human for DiscoverView {
    fn human(&self) -> String {
        let mut table = Table::new(&["SOURCE", "NAME", "ID", "VOLUME", "STATUS"]);
        for found in &self.containers {
            let status = match (&found.registered_as, &found.problem, &found.register_error) {
                (Some(id), _, _) if found.registered_now => format!("registered now as {id}"),
                (Some(id), _, _) => format!("registered as {id}"),
                (None, _, Some(error)) => format!("registering failed: {error}"),
                (None, Some(problem), _) => format!("cannot register: {problem}"),
                (None, None, None) if self.register => "not registered".to_owned(),
                (None, None, None) => "can register (rollpoint discover --register)".to_owned(),
            };
            table.row(vec![
                found.source.clone(),
                found.name.clone(),
                found.suggested_id.clone(),
                or_dash(found.volume.as_deref()),
                status,
            ]);
        }
        let mut text = if self.containers.is_empty() { "no containers found\n".to_owned() } else { table.render() };
        for unavailable in &self.unavailable {
            text.push_str(&format!("{} not asked: {}\n", unavailable.source, unavailable.reason));
        }
        text
    }
}

/// `pre_freeze: psql -c CHECKPOINT (as postgres, 30 s, abort); ...`
fn hooks(hooks: &BTreeMap<String, HookView>) -> String {
    hooks
        .iter()
        .map(|(point, hook)| {
            let user = if hook.user.is_empty() { "root" } else { &hook.user };
            format!("{point}: {} (as {user}, {} s, {})", hook.command.join(" "), hook.timeout_seconds, hook.on_failure)
        })
        .collect::<Vec<_>>()
        .join("; ")
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
        } else if !self.steps_shown_live {
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

fn token_pairs(token: &TokenView) -> Vec<(&'static str, String)> {
    vec![
        ("name", token.name.clone()),
        ("scopes", token.scopes.join(", ")),
        ("containers", token_containers(token)),
        ("created", time(token.create_time)),
    ]
}

fn token_containers(token: &TokenView) -> String {
    if token.containers.is_empty() {
        "every container".to_owned()
    } else {
        token.containers.join(", ")
    }
}

/// Where `token create` points its usage lines when the daemon was reached
/// over its socket: the example address of the `listen` setting.
const EXAMPLE_ENDPOINT: &str = "http://127.0.0.1:7443";

impl Human for TokenCreatedView {
    fn human(&self) -> String {
        let endpoint = self.endpoint.as_deref().unwrap_or(EXAMPLE_ENDPOINT);
        let (scheme, authority) = endpoint.split_once("://").unwrap_or(("http", endpoint));
        let plaintext = if scheme == "https" { "" } else { "-plaintext " };
        let mut pairs = token_pairs(&self.token);
        pairs.push(("secret", self.secret.clone()));
        let mut text = key_values(&pairs);
        let _ = write!(
            text,
            "\nThe secret is shown this once and cannot be shown again: the daemon keeps only\n\
             a hash of it. Store it now; if it is lost, revoke the token and create another.\n\n\
             Use it over TCP (the daemon's `listen` address), preferably from the environment:\n  \
             ROLLPOINT_TOKEN=<secret> rollpoint --endpoint {endpoint} container list\n  \
             rollpoint --endpoint {endpoint} --token <secret> container list\n  \
             grpcurl {plaintext}-H \"authorization: Bearer <secret>\" {} list\n",
            authority.trim_end_matches('/')
        );
        text
    }
}

impl Human for ListView<TokenView> {
    fn human(&self) -> String {
        let mut table = Table::new(&["NAME", "SCOPES", "CONTAINERS", "CREATED"]);
        for token in &self.0 {
            table.row(vec![
                token.name.clone(),
                token.scopes.join(","),
                token_containers(token),
                time(token.create_time),
            ]);
        }
        table.render()
    }
}

impl Human for RevokedTokenView {
    fn human(&self) -> String {
        format!("revoked token {}\n", self.name)
    }
}

// ------------------------------------------------------------------ timeline

const TIMELINE: [&str; 8] = ["TIME (UTC)", "KIND", "CONTAINER", "SNAPSHOT", "OUTCOME", "DURATION", "FROZEN", "DETAIL"];
/// Longest DETAIL shown; --json has it whole.
const DETAIL_WIDTH: usize = 100;

/// The audit timeline, oldest at the top: one line per event, the time to
/// the millisecond, and the date on the first line and wherever it changes.
/// Keeps what it printed so that `more` lines up with it (`events --follow`).
#[derive(Default)]
pub struct Timeline {
    widths: Vec<usize>,
    date: Option<chrono::NaiveDate>,
}

impl Timeline {
    /// The header and a line per event.
    pub fn start(&mut self, events: &[EventView]) -> String {
        let table = self.table(events);
        table.render()
    }

    /// A line per event, aligned with the lines before where they fit.
    pub fn more(&mut self, events: &[EventView]) -> String {
        self.table(events).render_rows()
    }

    fn table(&mut self, events: &[EventView]) -> Table {
        let mut table = Table::new(&TIMELINE);
        table.min_widths(&self.widths);
        for event in events {
            let row = self.row(event);
            table.row(row);
        }
        self.widths = table.widths();
        table
    }

    fn row(&mut self, event: &EventView) -> Vec<String> {
        let clock = event.time.map_or_else(|| "-".to_owned(), |at| at.format("%H:%M:%S%.3f").to_string());
        let date = event.time.map(|at| at.date_naive());
        // The date where it changes; else blanks, so the clocks line up.
        let when = match date {
            Some(day) if self.date != Some(day) => format!("{} {clock}", day.format("%Y-%m-%d")),
            _ => format!("{:>23}", clock),
        };
        if date.is_some() {
            self.date = date;
        }
        let detail = match (&event.entry, &event.detail) {
            (Some(entry), Some(detail)) => format!("{entry}: {detail}"),
            (entry, detail) => entry.clone().or_else(|| detail.clone()).unwrap_or_default(),
        };
        vec![
            when,
            event.kind.clone(),
            or_dash(event.container.as_deref()),
            or_dash(event.snapshot.as_deref()),
            or_dash(Some(&event.outcome)),
            event.duration_ms.map_or_else(|| "-".to_owned(), span),
            event.frozen_for_ms.map_or_else(|| "-".to_owned(), millis),
            shorten(&detail, DETAIL_WIDTH),
        ]
    }
}

impl Human for ListView<EventView> {
    fn human(&self) -> String {
        Timeline::default().start(&self.0)
    }
}

// ----------------------------------------------------------------- schedules

/// Longest command shown in a table.
const COMMAND_WIDTH: usize = 40;
/// Longest outcome shown in a table.
const OUTCOME_WIDTH: usize = 40;

/// `snapshot db-1 alias=rollback-point expire=7d` or `command: ...`.
fn action(action: &ActionView, command_width: usize) -> String {
    match action {
        ActionView::None => "none".to_owned(),
        ActionView::Snapshot { container, alias, expiry_days, export_to, group } => {
            let mut text = match group {
                Some(group) => format!("snapshot group {group}"),
                None => format!("snapshot {container}"),
            };
            if let Some(alias) = alias {
                let _ = write!(text, " alias={alias}");
            }
            if *expiry_days > 0 {
                let _ = write!(text, " expire={expiry_days}d");
            }
            if let Some(remote) = export_to {
                let _ = write!(text, " export-to={remote}");
            }
            text
        }
        ActionView::Command { command, .. } => format!("command: {}", shorten(command, command_width)),
    }
}

fn yes_no(yes: bool) -> String {
    if yes { "yes" } else { "no" }.to_owned()
}

impl Human for EntryView {
    fn human(&self) -> String {
        let mut pairs = vec![
            ("name", self.name.clone()),
            ("schedule", self.schedule.clone()),
            ("time zone", or_dash(Some(&self.time_zone))),
            ("action", action(&self.action, usize::MAX)),
        ];
        if let ActionView::Command { timeout_seconds, .. } = &self.action {
            pairs.push(("timeout", timeout(*timeout_seconds)));
            if let Some(container) = &self.container {
                pairs.push(("container", format!("{container} (each run gets its SNAP_URL)")));
            }
        }
        if !self.environment.is_empty() {
            let variables: Vec<String> =
                self.environment.iter().map(|(name, value)| format!("{name}={value}")).collect();
            pairs.push(("environment", variables.join(" ")));
        }
        if self.random_delay_seconds > 0 {
            pairs.push(("random delay", format!("up to {} s (fixed per entry)", self.random_delay_seconds)));
        }
        pairs.extend([
            ("comment", or_dash(self.comment.as_deref())),
            ("enabled", yes_no(self.enabled)),
            ("last fire", time(self.last_fire_time)),
            ("next fire", time(self.next_fire_time)),
            ("last outcome", or_dash(self.last_outcome.as_deref())),
        ]);
        key_values(&pairs)
    }
}

impl Human for ListView<EntryView> {
    fn human(&self) -> String {
        let mut table =
            Table::new(&["NAME", "SCHEDULE", "TZ", "ACTION", "ENABLED", "LAST FIRE", "NEXT FIRE", "LAST OUTCOME"]);
        for entry in &self.0 {
            table.row(vec![
                entry.name.clone(),
                entry.schedule.clone(),
                or_dash(Some(&entry.time_zone)),
                action(&entry.action, COMMAND_WIDTH),
                yes_no(entry.enabled),
                time(entry.last_fire_time),
                time(entry.next_fire_time),
                shorten(entry.last_outcome.as_deref().unwrap_or("-"), OUTCOME_WIDTH),
            ]);
        }
        table.render()
    }
}

impl Human for RunView {
    fn human(&self) -> String {
        let mut pairs = vec![("entry", self.entry.name.clone()), ("outcome", self.outcome.clone())];
        // A command's output comes after the first line of the detail.
        let (detail, output) = match self.detail.as_deref().map(|detail| detail.split_once('\n')) {
            Some(Some((first, rest))) => (Some(first), Some(rest)),
            Some(None) => (self.detail.as_deref(), None),
            None => (None, None),
        };
        if let Some(detail) = detail {
            pairs.push(("detail", detail.to_owned()));
        }
        if let Some(snapshot) = &self.snapshot {
            let name = match &snapshot.alias {
                Some(alias) => format!("{} of {} (alias {alias})", snapshot.name, snapshot.container),
                None => format!("{} of {}", snapshot.name, snapshot.container),
            };
            pairs.extend([
                ("snapshot", name),
                ("frozen for", millis(snapshot.frozen_for_ms)),
                ("took", span(snapshot.duration_ms)),
                ("expires", expires(snapshot)),
            ]);
        }
        pairs.push(("next fire", time(self.entry.next_fire_time)));
        let mut text = key_values(&pairs);
        if let Some(output) = output {
            text.push('\n');
            for line in output.lines() {
                let _ = writeln!(text, "  {line}");
            }
        }
        text
    }
}

impl Human for DeletedEntryView {
    fn human(&self) -> String {
        format!("deleted schedule entry {}\n", self.name)
    }
}

impl Human for PruneView {
    fn human(&self) -> String {
        let mut table = Table::new(&["CONTAINER", "SNAPSHOT", "CREATED", "VERDICT", "WHY"]);
        for decision in &self.decisions {
            let verdict = match (decision.verdict, decision.deleted, &decision.error) {
                (_, _, Some(_)) => "delete failed",
                (_, true, _) => "deleted",
                ("delete", false, _) if self.dry_run => "would delete",
                (verdict, _, _) => verdict,
            };
            let mut why = decision.reasons.join(", ");
            if let Some(error) = &decision.error {
                why = format!("{why}: {error}");
            }
            table.row(vec![
                decision.container.clone(),
                decision.snapshot.clone(),
                time(decision.create_time),
                verdict.to_owned(),
                why,
            ]);
        }
        let going = self.decisions.iter().filter(|d| d.verdict == "delete").count();
        let summary = if self.dry_run {
            format!("{going} of {} would be deleted (dry run: nothing changed)\n", self.decisions.len())
        } else {
            let deleted = self.decisions.iter().filter(|d| d.deleted).count();
            format!("{deleted} deleted, {} kept\n", self.decisions.len() - going)
        };
        table.render() + &summary
    }
}

impl Human for MountView {
    fn human(&self) -> String {
        format!(
            "{}/{} mounted read-only at {}\n(rollpoint snapshot unmount {} {} when done)\n",
            self.snapshot.container, self.snapshot.name, self.path, self.snapshot.container, self.path
        )
    }
}

impl Human for UnmountView {
    fn human(&self) -> String {
        format!("unmounted {} from {}\n", self.snapshot, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::views::HoldView;

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
    fn sizes_read_well() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(4 << 20), "4.0 MiB");
        assert_eq!(bytes(3 << 29), "1.5 GiB");
        assert_eq!(bytes((1 << 30) - 1), "1.0 GiB");
        assert_eq!(bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn times_are_utc_to_the_second() {
        let at = DateTime::from_timestamp(1_777_888_800, 500_000_000);
        assert_eq!(time(at), "2026-05-04T10:00:00Z");
        assert_eq!(time(None), "-");
    }

    fn event(sequence: u64, at: &str, kind: &str, container: &str, snapshot: &str) -> crate::api::proto::Event {
        let at = DateTime::parse_from_rfc3339(at).unwrap().with_timezone(&Utc);
        crate::api::proto::Event {
            sequence,
            time: Some(crate::api::convert::timestamp(at)),
            kind: kind.into(),
            container: container.into(),
            snapshot: snapshot.into(),
            outcome: "ok".into(),
            ..Default::default()
        }
    }

    fn ms(ms: u64) -> Option<prost_types::Duration> {
        Some(crate::api::convert::duration(std::time::Duration::from_millis(ms)))
    }

    /// The seed page's "Anatomy of last night", as `rollpoint events` shows it.
    fn last_night() -> Vec<EventView> {
        let entry = "users/root/entries/pre-migration";
        vec![
            crate::api::proto::Event {
                entry: entry.into(),
                actor: "schedule".into(),
                detail: "55 2 * * *".into(),
                ..event(41, "2026-05-04T02:55:00.002Z", "schedule.fired", "db-1", "")
            },
            crate::api::proto::Event {
                entry: entry.into(),
                duration: ms(8102),
                frozen_for: Some(prost_types::Duration { seconds: 0, nanos: 3_250_000 }),
                detail: "alias rollback-point".into(),
                ..event(42, "2026-05-04T02:55:08.104Z", "snapshot.created", "db-1", "snap-2026-05-04")
            },
            crate::api::proto::Event {
                outcome: "failed".into(),
                duration: ms(1500),
                detail: "exit status: 1 after 1.5 s\nstderr:\nALTER TABLE invoices: lock timeout".into(),
                ..event(43, "2026-05-04T03:00:01.5Z", "schedule.command", "", "")
            },
            crate::api::proto::Event {
                duration: ms(28_100),
                detail: "previous state kept as pre-restore-1; daemon 310.0 ms, down 27.4 s".into(),
                ..event(44, "2026-05-04T03:01:42Z", "restore.finished", "db-1", "snap-2026-05-04")
            },
            event(45, "2026-05-05T00:00:00Z", "snapshot.expired", "db-1", "snap-2026-04-27"),
        ]
        .into_iter()
        .map(EventView::from)
        .collect()
    }

    #[test]
    fn timeline_shows_the_date_on_the_first_line_and_where_it_changes() {
        assert_eq!(
            ListView(last_night()).human(),
            "\
TIME (UTC)               KIND              CONTAINER  SNAPSHOT         OUTCOME  DURATION  FROZEN   DETAIL
2026-05-04 02:55:00.002  schedule.fired    db-1       -                ok       -         -        users/root/entries/pre-migration: 55 2 * * *
           02:55:08.104  snapshot.created  db-1       snap-2026-05-04  ok       8.10 s    3.25 ms  users/root/entries/pre-migration: alias rollback-point
           03:00:01.500  schedule.command  -          -                failed   1.50 s    -        exit status: 1 after 1.5 s stderr: ALTER TABLE invoices: lock timeout
           03:01:42.000  restore.finished  db-1       snap-2026-05-04  ok       28.10 s   -        previous state kept as pre-restore-1; daemon 310.0 ms, down 27.4 s
2026-05-05 00:00:00.000  snapshot.expired  db-1       snap-2026-04-27  ok       -         -
"
        );
    }

    #[test]
    fn followed_lines_keep_the_columns_and_the_date() {
        let mut events = last_night();
        let later = events.split_off(2);
        let mut timeline = Timeline::default();
        let first = timeline.start(&events);
        assert_eq!(
            first,
            "\
TIME (UTC)               KIND              CONTAINER  SNAPSHOT         OUTCOME  DURATION  FROZEN   DETAIL
2026-05-04 02:55:00.002  schedule.fired    db-1       -                ok       -         -        users/root/entries/pre-migration: 55 2 * * *
           02:55:08.104  snapshot.created  db-1       snap-2026-05-04  ok       8.10 s    3.25 ms  users/root/entries/pre-migration: alias rollback-point
"
        );
        assert_eq!(
            timeline.more(&later[..1]),
            "           03:00:01.500  schedule.command  -          -                failed   1.50 s    -        exit status: 1 after 1.5 s stderr: ALTER TABLE invoices: lock timeout\n"
        );
        assert_eq!(
            timeline.more(&later[2..]),
            "2026-05-05 00:00:00.000  snapshot.expired  db-1       snap-2026-04-27  ok       -         -\n"
        );
        assert_eq!(
            Timeline::default().start(&[]),
            "TIME (UTC)  KIND  CONTAINER  SNAPSHOT  OUTCOME  DURATION  FROZEN  DETAIL\n"
        );
    }

    #[test]
    fn long_details_become_one_short_line() {
        assert_eq!(shorten("a\n  b\tc", 10), "a b c");
        assert_eq!(shorten("abcdefghijk", 5), "abcd…");
        assert_eq!(shorten("abcde", 5), "abcde");
    }

    fn entry(action: crate::api::proto::entry::Action) -> EntryView {
        EntryView::from(crate::api::proto::Entry {
            name: "users/root/entries/pre-migration".into(),
            id: "pre-migration".into(),
            schedule: "55 2 * * *".into(),
            time_zone: "UTC".into(),
            action: Some(action),
            comment: "pre-migration snapshot".into(),
            enabled: Some(true),
            last_fire_time: Some(prost_types::Timestamp { seconds: 1_777_863_300, nanos: 0 }),
            next_fire_time: Some(prost_types::Timestamp { seconds: 1_777_949_700, nanos: 0 }),
            last_outcome: "ok".into(),
            ..Default::default()
        })
    }

    fn snapshot_action() -> crate::api::proto::entry::Action {
        crate::api::proto::entry::Action::Snapshot(crate::api::proto::SnapshotAction {
            container: "db-1".into(),
            alias: "rollback-point".into(),
            expiry_days: 7,
            export_to: String::new(),
            group: String::new(),
        })
    }

    #[test]
    fn schedule_list_shows_the_action_in_short() {
        use crate::api::proto::{entry::Action, CommandAction};
        let command = Action::Command(CommandAction {
            command: "pg_dumpall --clean --if-exists | zstd -T0 > /srv/backup/all.sql.zst".into(),
            timeout_seconds: 0,
        });
        let mut disabled = entry(command);
        disabled.name = "users/backup/entries/dump".into();
        disabled.time_zone = "Europe/Berlin".into();
        disabled.enabled = false;
        disabled.next_fire_time = None;
        disabled.last_fire_time = None;
        disabled.last_outcome = None;
        assert_eq!(
            ListView(vec![entry(snapshot_action()), disabled]).human(),
            "\
NAME                              SCHEDULE    TZ             ACTION                                             ENABLED  LAST FIRE             NEXT FIRE             LAST OUTCOME
users/root/entries/pre-migration  55 2 * * *  UTC            snapshot db-1 alias=rollback-point expire=7d       yes      2026-05-04T02:55:00Z  2026-05-05T02:55:00Z  ok
users/backup/entries/dump         55 2 * * *  Europe/Berlin  command: pg_dumpall --clean --if-exists | zstd -…  no       -                     -                     -
"
        );
    }

    #[test]
    fn entry_shows_every_field() {
        assert_eq!(
            entry(snapshot_action()).human(),
            "\
name:         users/root/entries/pre-migration
schedule:     55 2 * * *
time zone:    UTC
action:       snapshot db-1 alias=rollback-point expire=7d
comment:      pre-migration snapshot
enabled:      yes
last fire:    2026-05-04T02:55:00Z
next fire:    2026-05-05T02:55:00Z
last outcome: ok
"
        );
    }

    #[test]
    fn run_shows_the_outcome_and_the_snapshot_taken() {
        let response = crate::api::proto::RunEntryResponse {
            entry: Some(crate::api::proto::Entry {
                name: "users/root/entries/pre-migration".into(),
                next_fire_time: Some(prost_types::Timestamp { seconds: 1_777_949_700, nanos: 0 }),
                ..Default::default()
            }),
            outcome: "ok".into(),
            detail: String::new(),
            snapshot: Some(crate::api::proto::Snapshot {
                name: "snap-2026-05-04".into(),
                container: "db-1".into(),
                alias: "rollback-point".into(),
                frozen_for: Some(prost_types::Duration { seconds: 0, nanos: 3_250_000 }),
                duration: ms(8102),
                expire_time: Some(prost_types::Timestamp { seconds: 1_778_468_108, nanos: 0 }),
                ..Default::default()
            }),
        };
        assert_eq!(
            RunView::new("users/root/entries/pre-migration", response).human(),
            "\
entry:      users/root/entries/pre-migration
outcome:    ok
snapshot:   snap-2026-05-04 of db-1 (alias rollback-point)
frozen for: 3.25 ms
took:       8.10 s
expires:    2026-05-11T02:55:08Z
next fire:  2026-05-05T02:55:00Z
"
        );
        let command = crate::api::proto::RunEntryResponse {
            outcome: "failed".into(),
            detail: "exit status: 1 after 0.0 s\nstderr:\nno such table".into(),
            ..Default::default()
        };
        assert_eq!(
            RunView::new("users/root/entries/check", command).human(),
            "\
entry:     users/root/entries/check
outcome:   failed
detail:    exit status: 1 after 0.0 s
next fire: -

  stderr:
  no such table
"
        );
    }

    #[test]
    fn token_secret_is_printed_with_a_warning_and_usage() {
        let created = TokenCreatedView {
            token: TokenView {
                name: "ci".into(),
                scopes: vec!["snapshot".into()],
                containers: vec!["db-1".into()],
                create_time: DateTime::from_timestamp(1_777_888_800, 0),
            },
            secret: "rpt.ci.0123".into(),
            endpoint: None,
        };
        assert_eq!(
            created.human(),
            "\
name:       ci
scopes:     snapshot
containers: db-1
created:    2026-05-04T10:00:00Z
secret:     rpt.ci.0123

The secret is shown this once and cannot be shown again: the daemon keeps only
a hash of it. Store it now; if it is lost, revoke the token and create another.

Use it over TCP (the daemon's `listen` address), preferably from the environment:
  ROLLPOINT_TOKEN=<secret> rollpoint --endpoint http://127.0.0.1:7443 container list
  rollpoint --endpoint http://127.0.0.1:7443 --token <secret> container list
  grpcurl -plaintext -H \"authorization: Bearer <secret>\" 127.0.0.1:7443 list
"
        );
        let over_tls = TokenCreatedView { endpoint: Some("https://rp.example:7443".into()), ..created };
        assert!(over_tls.human().contains("  grpcurl -H \"authorization: Bearer <secret>\" rp.example:7443 list\n"));
        let json = serde_json::to_value(&over_tls).unwrap();
        assert_eq!(json["secret"], "rpt.ci.0123");
        assert_eq!(json["name"], "ci");
        assert!(json.get("endpoint").is_none());
    }

    #[test]
    fn token_list_says_every_container_for_none() {
        let token = |name: &str, containers: &[&str]| TokenView {
            name: name.into(),
            scopes: vec!["read".into(), "restore".into()],
            containers: containers.iter().map(|c| (*c).to_owned()).collect(),
            create_time: None,
        };
        assert_eq!(
            ListView(vec![token("ops", &[]), token("ci", &["db-1", "db-2"])]).human(),
            "\
NAME  SCOPES        CONTAINERS       CREATED
ops   read,restore  every container  -
ci    read,restore  db-1, db-2       -
"
        );
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
            exclusive_bytes: None,
            delta_bytes: None,
            delta_parent: None,
            hold: None,
            group: None,
        };
        assert_eq!(
            ListView(vec![snapshot.clone()]).human(),
            "NAME    ALIAS  CREATED               EXPIRES  FROZEN   STATE  ORIGIN  DELTA\n\
             snap-1  -      2026-05-04T10:00:00Z  never    3.25 ms  ready  api     -\n"
        );
        assert!(!snapshot.human().contains("exclusive"), "not known, not shown");
        let known = SnapshotView { exclusive_bytes: Some(6 << 20), ..snapshot.clone() };
        assert!(known.human().ends_with("uuid:       -\nexclusive:  6.0 MiB\n"), "{}", known.human());
        let held = SnapshotView {
            hold: Some(HoldView { reason: "audit".into(), actor: "uid:0".into(), time: snapshot.create_time }),
            ..snapshot.clone()
        };
        assert!(ListView(vec![held.clone()]).human().contains("  held  "), "{}", ListView(vec![held]).human());
        let measured = SnapshotView { delta_bytes: Some(412 << 20), delta_parent: Some("snap-0".into()), ..snapshot };
        assert!(measured.human().ends_with("delta:      412.0 MiB since snap-0\n"), "{}", measured.human());
        assert!(ListView(vec![measured]).human().contains("api     412.0 MiB\n"));
    }

    fn restored() -> RestoreView {
        RestoreView {
            container: "db-1".into(),
            restored: None,
            pre_restore_snapshot: Some("pre-restore-2026-05-04".into()),
            already_restored: false,
            total_ms: 2_150.0,
            downtime_ms: 1_900.0,
            daemon_time_ms: 310.0,
            steps: ["prepare", "stop", "swap", "start", "record"]
                .iter()
                .zip([4.0, 1_500.0, 12.5, 380.0, 3.0])
                .map(|(name, took_ms)| crate::cli::views::StepView { name: (*name).into(), took_ms })
                .collect(),
            steps_shown_live: false,
        }
    }

    #[test]
    fn restore_lists_the_steps_unless_they_were_shown_live() {
        let result = "\
restored:             -
pre-restore snapshot: pre-restore-2026-05-04
total:                2.15 s
downtime:             1.90 s
daemon time:          310.0 ms
undo with: rollpoint restore db-1 pre-restore-2026-05-04
";
        let view = restored();
        let steps = "\
STEP     TOOK
prepare  4.00 ms
stop     1.50 s
swap     12.5 ms
start    380.0 ms
record   3.00 ms

";
        assert_eq!(view.human(), format!("{steps}{result}"));
        let live = RestoreView { steps_shown_live: true, ..view.clone() };
        assert_eq!(live.human(), result);
        // JSON is complete either way, and says nothing of stderr.
        let json = serde_json::to_value(&live).unwrap();
        assert_eq!(json, serde_json::to_value(&view).unwrap());
        assert_eq!(json["steps"].as_array().map(Vec::len), Some(5));
        assert_eq!(json["steps"][1], serde_json::json!({"name": "stop", "took_ms": 1500.0}));
        assert!(json.get("steps_shown_live").is_none());
    }
}
