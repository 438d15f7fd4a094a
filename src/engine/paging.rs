//! Page tokens: the sort key of the last item of the previous page, so a
//! page stays correct when items are added or removed between calls.

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

/// Cuts one page out of `items`, which must be sorted by `key`.
pub fn paginate<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> String,
    page_size: i32,
    page_token: &str,
) -> EngineResult<Page<T>> {
    let size = match page_size {
        0 => DEFAULT_PAGE_SIZE,
        n if n < 0 => return Err(EngineError::invalid("page_size", format!("{n} is negative"))),
        n => usize::try_from(n).unwrap_or(MAX_PAGE_SIZE).min(MAX_PAGE_SIZE),
    };
    if page_token.len() > 512 {
        return Err(EngineError::invalid("page_token", "is not a token this daemon issued"));
    }
    let start = if page_token.is_empty() { 0 } else { items.partition_point(|item| key(item).as_str() <= page_token) };
    let mut rest = items.into_iter().skip(start);
    let page: Vec<T> = rest.by_ref().take(size).collect();
    let next_page_token = match (rest.next(), page.last()) {
        (Some(_), Some(last)) => key(last),
        _ => String::new(),
    };
    Ok(Page { items: page, next_page_token })
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
    fn negative_page_size_names_the_field() {
        let err = paginate(vec![1], |i| i.to_string(), -1, "").unwrap_err();
        assert!(matches!(err, EngineError::InvalidArgument { field: "page_size", .. }));
    }
}
