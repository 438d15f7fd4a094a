//! Fault injection for crash tests: `ROLLPOINT_FAULT=<point>` makes the
//! daemon kill itself with SIGKILL when it reaches that point, so tests can
//! check what start-up recovery makes of every step. Unset, it costs one
//! comparison against a value read once.

use std::sync::OnceLock;

fn armed_point() -> Option<&'static str> {
    static POINT: OnceLock<Option<String>> = OnceLock::new();
    POINT.get_or_init(|| std::env::var("ROLLPOINT_FAULT").ok().filter(|p| !p.is_empty())).as_deref()
}

/// Dies on the spot (SIGKILL, no clean-up, like a power cut for the daemon)
/// when `point` is the one armed by `ROLLPOINT_FAULT`.
pub fn point(point: &str) {
    if armed_point() == Some(point) {
        tracing::error!(point, "fault injection: killing the daemon");
        // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
