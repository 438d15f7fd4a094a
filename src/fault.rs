//! Fault injection for crash and watchdog tests. `ROLLPOINT_FAULT=<point>`
//! makes the daemon kill itself with SIGKILL when it reaches that point, so
//! tests can check what start-up recovery makes of every step;
//! `ROLLPOINT_FAULT=<point>:sleep=<ms>` makes it stall there instead (a
//! backend call that hangs). Unset, it costs one comparison against a value
//! read once.
//!
//! It sits beside the layers, not in one: the engine and the backends (LVM
//! thin has fault points of its own) both call it, and neither reaches into
//! the other for it.

use std::sync::OnceLock;
use std::time::Duration;

#[derive(Debug, PartialEq, Eq)]
enum Fault {
    Kill(String),
    Sleep(String, Duration),
}

fn parse(spec: &str) -> Option<Fault> {
    if spec.is_empty() {
        return None;
    }
    match spec.split_once(":sleep=") {
        Some((point, ms)) => Some(Fault::Sleep(point.to_owned(), Duration::from_millis(ms.parse().ok()?))),
        None => Some(Fault::Kill(spec.to_owned())),
    }
}

fn armed() -> Option<&'static Fault> {
    static FAULT: OnceLock<Option<Fault>> = OnceLock::new();
    FAULT.get_or_init(|| std::env::var("ROLLPOINT_FAULT").ok().as_deref().and_then(parse)).as_ref()
}

/// Dies on the spot (SIGKILL, no clean-up, like a power cut for the daemon)
/// or stalls, when `point` is the one armed by `ROLLPOINT_FAULT`.
pub fn point(point: &str) {
    match armed() {
        Some(Fault::Kill(armed)) if armed == point => {
            tracing::error!(point, "fault injection: killing the daemon");
            // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
        Some(Fault::Sleep(armed, duration)) if armed == point => {
            tracing::error!(point, ?duration, "fault injection: stalling");
            std::thread::sleep(*duration);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!(parse("create.frozen"), Some(Fault::Kill("create.frozen".into())));
        assert_eq!(
            parse("create.frozen:sleep=1500"),
            Some(Fault::Sleep("create.frozen".into(), Duration::from_millis(1500)))
        );
        assert_eq!(parse(""), None);
        assert_eq!(parse("x:sleep=soon"), None);
    }
}
