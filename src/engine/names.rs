//! Validation of every name a caller gives, and the default snapshot names.
//!
//! Names end up in paths (`<fs>/.rollpoint/<container>/<snapshot>`), so the
//! character set leaves no way out of the daemon's folders: no `/`, no NUL,
//! never `.` or `..`, nothing starting with a dot or a dash.

use chrono::{DateTime, Utc};

use super::error::{EngineError, EngineResult};

/// Longest container id (a DNS label).
pub const MAX_CONTAINER_ID: usize = 63;
/// Longest snapshot name or alias.
pub const MAX_SNAPSHOT_NAME: usize = 128;
pub const MAX_COMMENT: usize = 1024;
pub const MAX_LABELS: usize = 64;
pub const MAX_LABEL_KEY: usize = 63;
pub const MAX_LABEL_VALUE: usize = 256;
/// Longest expiry: 100 years.
pub const MAX_EXPIRY_DAYS: u32 = 36_500;

/// A container id: 1-63 of `[a-z0-9-]`, starting and ending alphanumeric.
pub fn container_id(field: &'static str, id: &str) -> EngineResult<()> {
    if id.is_empty() {
        return Err(EngineError::invalid(field, "must not be empty"));
    }
    if id.len() > MAX_CONTAINER_ID {
        return Err(EngineError::invalid(
            field,
            format!("is {} characters long; at most {MAX_CONTAINER_ID}", id.len()),
        ));
    }
    if let Some(bad) = id.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
        return Err(EngineError::invalid(field, format!("{id:?} holds {bad:?}; only a-z, 0-9 and '-' are allowed")));
    }
    if id.starts_with('-') || id.ends_with('-') {
        return Err(EngineError::invalid(field, format!("{id:?} must start and end with a letter or digit")));
    }
    Ok(())
}

/// A snapshot name or alias: 1-128 of `[A-Za-z0-9._-]`, starting with a
/// letter or digit.
pub fn snapshot_name(field: &'static str, name: &str) -> EngineResult<()> {
    if name.is_empty() {
        return Err(EngineError::invalid(field, "must not be empty"));
    }
    if name.len() > MAX_SNAPSHOT_NAME {
        return Err(EngineError::invalid(
            field,
            format!("is {} characters long; at most {MAX_SNAPSHOT_NAME}", name.len()),
        ));
    }
    if name.contains('/') || name.contains("..") || name.contains('\0') {
        return Err(EngineError::invalid(
            field,
            format!("{:?} must not contain '/', '..' or NUL", name.escape_debug().to_string()),
        ));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(EngineError::invalid(
            field,
            format!("{name:?} holds {bad:?}; only A-Z, a-z, 0-9, '.', '_' and '-' are allowed"),
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(EngineError::invalid(field, format!("{name:?} must start with a letter or digit")));
    }
    Ok(())
}

/// Label keys follow the container-id rules loosely; values are free text
/// without control characters.
pub fn labels<'a>(labels: impl ExactSizeIterator<Item = (&'a String, &'a String)>) -> EngineResult<()> {
    if labels.len() > MAX_LABELS {
        return Err(EngineError::invalid("labels", format!("{} labels; at most {MAX_LABELS}", labels.len())));
    }
    for (key, value) in labels {
        if key.is_empty()
            || key.len() > MAX_LABEL_KEY
            || !key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
        {
            return Err(EngineError::invalid(
                "labels",
                format!("key {key:?}: 1-{MAX_LABEL_KEY} of A-Z a-z 0-9 . _ - /"),
            ));
        }
        if value.len() > MAX_LABEL_VALUE || value.chars().any(char::is_control) {
            return Err(EngineError::invalid(
                "labels",
                format!("value of {key:?}: at most {MAX_LABEL_VALUE} characters, no control characters"),
            ));
        }
    }
    Ok(())
}

pub fn comment(comment: &str) -> EngineResult<()> {
    free_text("comment", comment)
}

/// A free text field (a comment, a hold's reason): bounded.
pub fn free_text(field: &'static str, text: &str) -> EngineResult<()> {
    if text.len() > MAX_COMMENT {
        return Err(EngineError::invalid(field, format!("is {} bytes long; at most {MAX_COMMENT}", text.len())));
    }
    Ok(())
}

pub fn expiry_days(days: u32) -> EngineResult<()> {
    if days > MAX_EXPIRY_DAYS {
        return Err(EngineError::invalid("expiry_days", format!("{days} days; at most {MAX_EXPIRY_DAYS}")));
    }
    Ok(())
}

/// The default name for a snapshot taken at `now`: `snap-YYYY-MM-DD` (UTC),
/// then `-2`, `-3`... for the ones after it the same day.
pub fn default_snapshot_name(now: DateTime<Utc>, taken: impl Fn(&str) -> bool) -> String {
    default_name_with_prefix("snap", now, taken)
}

/// `<prefix>-YYYY-MM-DD`: the first default name of the day, and the
/// beginning of every later one (so the names to avoid are found by prefix).
pub fn default_name_base(prefix: &str, now: DateTime<Utc>) -> String {
    format!("{prefix}-{}", now.format("%Y-%m-%d"))
}

/// Like [`default_snapshot_name`] with another prefix (`pre-restore`).
pub fn default_name_with_prefix(prefix: &str, now: DateTime<Utc>, taken: impl Fn(&str) -> bool) -> String {
    let base = default_name_base(prefix, now);
    if !taken(&base) {
        return base;
    }
    (2u64..)
        .map(|n| format!("{base}-{n}"))
        .find(|candidate| !taken(candidate))
        .expect("an unbounded range always yields a free name")
}

/// Name prefix of a restore's writable copy of its target, swapped in.
pub const RESTORE_STAGING_PREFIX: &str = "restore-staging-";
/// Name prefix of the read-only view of a live volume that a diff reads.
pub const LIVE_VIEW_PREFIX: &str = "diff-live-";

/// Whether a volume in a snapshot folder is one the daemon makes for the
/// length of one operation (never a snapshot with a record).
pub fn is_temporary_volume(name: &str) -> bool {
    name.starts_with(RESTORE_STAGING_PREFIX) || is_disposable_volume(name)
}

/// Whether a temporary volume is one nothing else needs once the operation
/// that made it is gone (a diff's view of a live volume, a write-back's
/// snapshot): one left by a stop half-way is deleted at the next start.
/// (A restore's staging copy is its intent's to finish or undo.)
pub fn is_disposable_volume(name: &str) -> bool {
    name.starts_with(LIVE_VIEW_PREFIX) || name.starts_with(crate::backend::WRITE_BACK_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn field_of(result: EngineResult<()>) -> &'static str {
        match result {
            Err(EngineError::InvalidArgument { field, .. }) => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn snapshot_names_cannot_leave_the_folder() {
        for bad in ["", "a/b", "..", "a..b", ".hidden", "-x", "a\0b", "a b", "ü", &"x".repeat(300)] {
            assert_eq!(field_of(snapshot_name("name", bad)), "name", "{bad:?} was accepted");
        }
        for good in ["snap-2026-05-04", "rollback-point", "v1.2_x", "A"] {
            snapshot_name("name", good).unwrap();
        }
    }

    #[test]
    fn container_ids_are_dns_labels() {
        for bad in ["", "Db", "db_1", "-db", "db-", "a/b", &"a".repeat(64)] {
            assert_eq!(field_of(container_id("id", bad)), "id", "{bad:?} was accepted");
        }
        container_id("id", "db-1").unwrap();
    }

    #[test]
    fn default_names_count_up_within_a_day() {
        let now = Utc.with_ymd_and_hms(2026, 5, 4, 2, 55, 0).unwrap();
        assert_eq!(default_snapshot_name(now, |_| false), "snap-2026-05-04");
        let taken = ["snap-2026-05-04", "snap-2026-05-04-2"];
        assert_eq!(default_snapshot_name(now, |n| taken.contains(&n)), "snap-2026-05-04-3");
    }

    #[test]
    fn limits_name_the_field() {
        assert_eq!(field_of(expiry_days(MAX_EXPIRY_DAYS + 1)), "expiry_days");
        assert_eq!(field_of(comment(&"c".repeat(MAX_COMMENT + 1))), "comment");
    }
}
