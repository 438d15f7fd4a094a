//! Listing the timeline: filters, newest or oldest first, pages whose token
//! is the sequence number of the last event given.

use chrono::{DateTime, Utc};

use super::{EngineError, EngineResult};
use crate::store::{EventRecord, Store};

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;
/// Events read from the store at a time while filtering.
const SCAN_CHUNK: usize = 512;

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub container: String,
    pub entry: String,
    pub kind: String,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
}

impl EventFilter {
    pub fn matches(&self, event: &EventRecord) -> bool {
        (self.container.is_empty() || event.container == self.container)
            && (self.entry.is_empty() || event.entry == self.entry)
            && (self.kind.is_empty() || event.kind == self.kind || event.kind.starts_with(&format!("{}.", self.kind)))
            && self.start_time.is_none_or(|t| event.time >= t)
            && self.end_time.is_none_or(|t| event.time < t)
    }
}

/// One page of events and the token of the next (empty on the last).
pub fn list(
    store: &Store,
    filter: &EventFilter,
    page_size: i32,
    page_token: &str,
    oldest_first: bool,
) -> EngineResult<(Vec<EventRecord>, String)> {
    let size = match page_size {
        0 => DEFAULT_PAGE,
        n if n < 0 => return Err(EngineError::invalid("page_size", format!("{n} is negative"))),
        n => usize::try_from(n).unwrap_or(MAX_PAGE).min(MAX_PAGE),
    };
    let mut cursor: u64 = if page_token.is_empty() {
        if oldest_first {
            0
        } else {
            u64::MAX
        }
    } else {
        page_token.parse().map_err(|_| EngineError::invalid("page_token", "is not a token this daemon issued"))?
    };
    let mut page = Vec::new();
    let mut more = false;
    'scan: loop {
        let chunk = if oldest_first {
            store.events_after(cursor, SCAN_CHUNK)?
        } else {
            store.events_before(cursor, SCAN_CHUNK)?
        };
        let exhausted = chunk.len() < SCAN_CHUNK;
        for event in chunk {
            cursor = event.sequence;
            if filter.matches(&event) {
                if page.len() == size {
                    more = true;
                    break 'scan;
                }
                page.push(event);
            }
        }
        if exhausted {
            break;
        }
    }
    let next = match (more, page.last()) {
        (true, Some(last)) => last.sequence.to_string(),
        _ => String::new(),
    };
    Ok((page, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(kinds: &[(&str, &str)]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for (kind, container) in kinds {
            let mut event = EventRecord { kind: (*kind).into(), container: (*container).into(), ..Default::default() };
            store.append_event(&mut event).unwrap();
        }
        (dir, store)
    }

    #[test]
    fn pages_newest_first_and_filters() {
        let kinds: Vec<(&str, &str)> = (0..25)
            .map(|i| if i % 2 == 0 { ("snapshot.created", "db-1") } else { ("restore.finished", "db-2") })
            .collect();
        let (_dir, store) = store_with(&kinds);
        let filter = EventFilter { container: "db-1".into(), ..Default::default() };
        let (first, token) = list(&store, &filter, 5, "", false).unwrap();
        assert_eq!(first.len(), 5);
        assert!(first.windows(2).all(|w| w[0].sequence > w[1].sequence));
        assert!(first.iter().all(|e| e.container == "db-1"));
        let (second, _) = list(&store, &filter, 5, &token, false).unwrap();
        assert!(second[0].sequence < first[4].sequence);
        let by_kind = EventFilter { kind: "restore".into(), ..Default::default() };
        let (all, token) = list(&store, &by_kind, 100, "", true).unwrap();
        assert_eq!(all.len(), 12);
        assert!(token.is_empty());
    }
}
