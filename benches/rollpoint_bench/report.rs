//! The results: a table on the terminal (a row per case, with its floor and
//! its target) and the same data as JSON, with the machine it ran on, so two
//! runs can be compared (`--compare`).

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use crate::stats::Summary;

/// Version of the JSON layout; bump on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Ms,
    MiB,
    Ratio,
    Count,
    /// Throughput, decimal megabytes per second (as restic and S3 count).
    MBps,
    /// A byte count, shown in decimal units (B, kB, MB, GB).
    Bytes,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Ms => "ms",
            Unit::MiB => "MiB",
            Unit::Ratio => "ratio",
            Unit::Count => "count",
            Unit::MBps => "MB/s",
            Unit::Bytes => "bytes",
        }
    }

    pub fn format(self, value: f64) -> String {
        if value.is_nan() {
            return "-".into();
        }
        match self {
            Unit::Ms if value >= 10_000.0 => format!("{:.1} s", value / 1e3),
            Unit::Ms if value >= 100.0 => format!("{value:.0} ms"),
            Unit::Ms if value >= 10.0 => format!("{value:.1} ms"),
            Unit::Ms => format!("{value:.2} ms"),
            Unit::MiB => format!("{value:.1} MiB"),
            Unit::Ratio if value > 0.0 && value < 0.1 => format!("1/{:.0}", 1.0 / value),
            Unit::Ratio => format!("{value:.2}x"),
            Unit::Count => format!("{value:.0}"),
            Unit::MBps => format!("{:.1} MB/s", value),
            Unit::Bytes if value >= 1e9 => format!("{:.2} GB", value / 1e9),
            Unit::Bytes if value >= 1e6 => format!("{:.1} MB", value / 1e6),
            Unit::Bytes if value >= 1e3 => format!("{:.1} kB", value / 1e3),
            Unit::Bytes => format!("{value:.0} B"),
        }
    }
}

/// What a goal bounds, and the most it may be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    P99(f64),
    Max(f64),
    Median(f64),
}

impl Goal {
    fn parts(self) -> (&'static str, f64) {
        match self {
            Goal::P99(limit) => ("p99", limit),
            Goal::Max(limit) => ("max", limit),
            Goal::Median(limit) => ("median", limit),
        }
    }

    fn measured(self, summary: &Summary) -> f64 {
        match self {
            Goal::P99(_) => summary.p99,
            Goal::Max(_) => summary.max,
            Goal::Median(_) => summary.median,
        }
    }
}

/// The `target` column: text for the reader, and the goal checked, if any.
#[derive(Debug, Clone)]
pub struct Target {
    pub text: String,
    pub goal: Option<Goal>,
}

impl Target {
    pub fn goal(text: impl Into<String>, goal: Goal) -> Target {
        Target { text: text.into(), goal: Some(goal) }
    }

    pub fn info() -> Target {
        Target { text: "-".into(), goal: None }
    }

    pub fn text(text: impl Into<String>) -> Target {
        Target { text: text.into(), goal: None }
    }
}

#[derive(Debug, Clone)]
pub struct Row {
    /// Stable key for comparing runs (`freeze.p100-w10`).
    pub id: String,
    /// Section of the issue it answers (`1 freeze window`).
    pub section: &'static str,
    pub case: String,
    pub unit: Unit,
    pub samples: Vec<f64>,
    pub summary: Summary,
    /// The same measurement taken by the minimal program in the same run.
    pub floor: Option<Summary>,
    pub target: Target,
    pub note: String,
}

impl Row {
    /// `None` when there is no goal; else whether it was met and, if not, by
    /// how much it was missed.
    pub fn verdict(&self) -> Option<(bool, String)> {
        let goal = self.target.goal?;
        let (what, limit) = goal.parts();
        let value = goal.measured(&self.summary);
        if value <= limit {
            return Some((true, "met".into()));
        }
        let over = value - limit;
        Some((false, format!("MISSED: {what} +{} (+{:.0}%)", self.unit.format(over), over / limit * 100.0)))
    }

    /// Median over the floor's median.
    pub fn times_floor(&self) -> Option<f64> {
        let floor = self.floor?;
        (floor.median > 0.0).then(|| self.summary.median / floor.median)
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub rows: Vec<Row>,
    /// Lines printed under the table and kept in the JSON.
    pub notes: Vec<String>,
}

impl Report {
    /// Adds a row of samples (no row when there are none).
    #[allow(clippy::too_many_arguments, reason = "a row has that many parts")]
    pub fn add(
        &mut self,
        section: &'static str,
        id: impl Into<String>,
        case: impl Into<String>,
        unit: Unit,
        samples: Vec<f64>,
        floor: Option<&[f64]>,
        target: Target,
        note: impl Into<String>,
    ) {
        let Some(summary) = Summary::of(&samples) else { return };
        let row = Row {
            id: id.into(),
            section,
            case: case.into(),
            unit,
            samples,
            summary,
            floor: floor.and_then(Summary::of),
            target,
            note: note.into(),
        };
        eprintln!(
            "  = {:<48} median {:>10}  p99 {:>10}",
            row.case,
            unit.format(summary.median),
            unit.format(summary.p99)
        );
        self.rows.push(row);
    }

    pub fn note(&mut self, line: impl Into<String>) {
        let line = line.into();
        eprintln!("  note: {line}");
        self.notes.push(line);
    }

    pub fn row(&self, id: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.id == id)
    }

    /// The terminal table.
    pub fn table(&self) -> String {
        let header = ["case", "n", "median", "p95", "p99", "max", "floor p50", "x floor", "target", "verdict"];
        let mut lines: Vec<(Option<&str>, Vec<String>)> = Vec::new();
        let mut section = "";
        for row in &self.rows {
            if row.section != section {
                section = row.section;
                lines.push((Some(section), Vec::new()));
            }
            let s = &row.summary;
            let single = row.unit == Unit::Ratio || s.n == 1;
            let cell = |v: f64| if single { "-".to_string() } else { row.unit.format(v) };
            lines.push((
                None,
                vec![
                    row.case.clone(),
                    if single { "-".into() } else { s.n.to_string() },
                    row.unit.format(s.median),
                    cell(s.p95),
                    cell(s.p99),
                    cell(s.max),
                    row.floor.map_or("-".into(), |f| row.unit.format(f.median)),
                    row.times_floor().map_or("-".into(), |x| format!("{x:.2}x")),
                    row.target.text.clone(),
                    row.verdict().map_or(String::new(), |(_, text)| text),
                ],
            ));
        }
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for (_, cells) in &lines {
            for (i, cell) in cells.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let render = |cells: &[String]| {
            let mut line = String::new();
            for (i, cell) in cells.iter().enumerate() {
                let pad = widths[i] - cell.chars().count();
                // Text columns left-aligned, figures right-aligned.
                if matches!(i, 0 | 8 | 9) {
                    let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
                } else {
                    let _ = write!(line, "{}{cell}  ", " ".repeat(pad));
                }
            }
            line.trim_end().to_string() + "\n"
        };
        let mut out = render(&header.map(String::from));
        out += &(widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  ") + "\n");
        for (section, cells) in &lines {
            match section {
                Some(title) => out += &format!("[{title}]\n"),
                None => out += &render(cells),
            }
        }
        out
    }

    /// The same table in Markdown, for the README.
    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "| case | n | median | p95 | p99 | max | floor p50 | x floor | target | verdict |\n|---|--:|--:|--:|--:|--:|--:|--:|---|---|\n",
        );
        let mut section = "";
        for row in &self.rows {
            if row.section != section {
                section = row.section;
                out += &format!("| **{section}** | | | | | | | | | |\n");
            }
            let s = &row.summary;
            let single = row.unit == Unit::Ratio || s.n == 1;
            let cell = |v: f64| if single { "-".to_string() } else { row.unit.format(v) };
            out += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                row.case,
                if single { "-".into() } else { s.n.to_string() },
                row.unit.format(s.median),
                cell(s.p95),
                cell(s.p99),
                cell(s.max),
                row.floor.map_or("-".into(), |f| row.unit.format(f.median)),
                row.times_floor().map_or("-".into(), |x| format!("{x:.2}x")),
                row.target.text,
                row.verdict().map_or(String::new(), |(_, text)| text),
            );
        }
        out
    }

    pub fn json(&self, header: Value) -> Value {
        let summary = |s: &Summary| json!({"n": s.n, "min": s.min, "median": s.median, "p95": s.p95, "p99": s.p99, "max": s.max, "mean": s.mean});
        let cases: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                let verdict = row.verdict();
                json!({
                    "id": row.id,
                    "section": row.section,
                    "case": row.case,
                    "unit": row.unit.name(),
                    "n": row.summary.n,
                    "median": row.summary.median,
                    "p95": row.summary.p95,
                    "p99": row.summary.p99,
                    "max": row.summary.max,
                    "min": row.summary.min,
                    "mean": row.summary.mean,
                    "samples": row.samples,
                    "floor": row.floor.as_ref().map(summary),
                    "times_floor": row.times_floor(),
                    "target": row.target.text,
                    "goal": row.target.goal.map(|g| { let (on, limit) = g.parts(); json!({"on": on, "at_most": limit}) }),
                    "met": verdict.as_ref().map(|v| v.0),
                    "verdict": verdict.map(|v| v.1),
                    "note": row.note,
                })
            })
            .collect();
        let mut value = header;
        value["schema_version"] = json!(SCHEMA_VERSION);
        value["cases"] = Value::Array(cases);
        value["notes"] = json!(self.notes);
        value
    }

    /// Each case's median and p99 against an earlier JSON report.
    pub fn compare(&self, old_path: &Path) -> Result<String, String> {
        let text = std::fs::read_to_string(old_path).map_err(|e| format!("{}: {e}", old_path.display()))?;
        let old: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", old_path.display()))?;
        if old["schema_version"] != json!(SCHEMA_VERSION) {
            return Err(format!(
                "{}: schema_version {} (this suite writes {SCHEMA_VERSION})",
                old_path.display(),
                old["schema_version"]
            ));
        }
        let empty = Vec::new();
        let old_cases = old["cases"].as_array().unwrap_or(&empty);
        let mut out = format!("Compared with {} ({})\n", old_path.display(), old["started_at"].as_str().unwrap_or("?"));
        for row in &self.rows {
            let Some(before) = old_cases.iter().find(|c| c["id"] == json!(row.id)) else {
                let _ = writeln!(out, "  {:<48} new", row.case);
                continue;
            };
            let change = |key: &str, now: f64| match before[key].as_f64() {
                Some(then) if then > 0.0 => format!(
                    "{key} {} -> {} ({:+.0}%)",
                    row.unit.format(then),
                    row.unit.format(now),
                    (now - then) / then * 100.0
                ),
                _ => format!("{key} ? -> {}", row.unit.format(now)),
            };
            let _ = writeln!(
                out,
                "  {:<48} {}   {}",
                row.case,
                change("median", row.summary.median),
                change("p99", row.summary.p99)
            );
        }
        Ok(out)
    }
}
