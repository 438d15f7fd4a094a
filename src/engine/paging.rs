//! Page tokens: the sort key of the last item of the previous page, so a
//! page stays correct when items are added or removed between calls.
//!
//! A listing either has all its items in memory ([`paginate`]) or reads one
//! page from an index of the store ([`PageRequest`] then [`page_of`]); both
//! check `page_size` and `page_token` the same way, in [`PageRequest::new`].

use super::error::{EngineError, EngineResult};

pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 1000;

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Empty on the last page.
    pub next_page_token: String,
}

/// A caller's `page_size` and `page_token`, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest<'t> {
    /// How many items the page holds at most (1..=[`MAX_PAGE_SIZE`]).
    pub size: usize,
    /// The page starts after the item with this key; empty: at the first.
    pub after: &'t str,
}

impl<'t> PageRequest<'t> {
    pub fn new(page_size: i32, page_token: &'t str) -> EngineResult<Self> {
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n < 0 => return Err(EngineError::invalid("page_size", format!("{n} is negative"))),
            n => usize::try_from(n).unwrap_or(MAX_PAGE_SIZE).min(MAX_PAGE_SIZE),
        };
        if page_token.len() > 512 {
            return Err(EngineError::invalid("page_token", "is not a token this daemon issued"));
        }
        Ok(PageRequest { size, after: page_token })
    }

    /// How many items to read after the token: one more than the page
    /// holds, which says whether another page follows.
    pub fn read_ahead(&self) -> usize {
        self.size + 1
    }
}

/// Makes the page out of the items that follow the token, in order, at most
/// [`PageRequest::read_ahead`] of them.
pub fn page_of<T>(mut items: Vec<T>, request: &PageRequest<'_>, key: impl Fn(&T) -> String) -> Page<T> {
    let more = items.len() > request.size;
    items.truncate(request.size);
    let next_page_token = match (more, items.last()) {
        (true, Some(last)) => key(last),
        _ => String::new(),
    };
    Page { items, next_page_token }
}

/// Cuts one page out of `items`, which must be sorted by `key`.
pub fn paginate<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> String,
    page_size: i32,
    page_token: &str,
) -> EngineResult<Page<T>> {
    let request = PageRequest::new(page_size, page_token)?;
    let start =
        if request.after.is_empty() { 0 } else { items.partition_point(|item| key(item).as_str() <= request.after) };
    let items: Vec<T> = items.into_iter().skip(start).take(request.read_ahead()).collect();
    Ok(page_of(items, &request, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_each_other_without_gaps() {
        let items: Vec<String> = (0..25).map(|i| format!("{i:03}")).collect();
        let first = paginate(items.clone(), Clone::clone, 10, "").unwrap();
        assert_eq!(first.items.len(), 10);
        let second = paginate(items.clone(), Clone::clone, 10, &first.next_page_token).unwrap();
        assert_eq!(second.items[0], "010");
        let third = paginate(items, Clone::clone, 10, &second.next_page_token).unwrap();
        assert_eq!(third.items.len(), 5);
        assert!(third.next_page_token.is_empty());
    }

    #[test]
    fn a_full_last_page_has_no_token() {
        let items: Vec<String> = (0..20).map(|i| format!("{i:03}")).collect();
        let second = paginate(items.clone(), Clone::clone, 10, "009").unwrap();
        assert_eq!(second.items.len(), 10);
        assert!(second.next_page_token.is_empty());
    }

    #[test]
    fn negative_page_size_names_the_field() {
        let err = paginate(vec![1], |i| i.to_string(), -1, "").unwrap_err();
        assert!(matches!(err, EngineError::InvalidArgument { field: "page_size", .. }));
    }

    #[test]
    fn sizes_default_and_are_capped() {
        assert_eq!(PageRequest::new(0, "").unwrap().size, DEFAULT_PAGE_SIZE);
        assert_eq!(PageRequest::new(i32::MAX, "").unwrap().size, MAX_PAGE_SIZE);
        let err = PageRequest::new(10, &"x".repeat(513)).unwrap_err();
        assert!(matches!(err, EngineError::InvalidArgument { field: "page_token", .. }));
    }
}
