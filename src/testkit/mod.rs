pub mod cgroup;
pub mod daemon;
pub mod loop_btrfs;
pub mod machined;
pub mod podman;
pub mod remote;
pub mod seaweedfs;
pub mod workload;

/// Set to `1` (CI does) to make root-only tests fail instead of skip.
pub const REQUIRE_ROOT_ENV: &str = "ROLLPOINT_REQUIRE_ROOT_TESTS";

/// True when the effective uid is 0.
pub fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Gate for root-only tests: `if !root_or_skip("name") { return; }`. Without
/// root, prints a skip notice and returns false, or panics when
/// `ROLLPOINT_REQUIRE_ROOT_TESTS=1`.
pub fn root_or_skip(test: &str) -> bool {
    if running_as_root() {
        return true;
    }
    if std::env::var(REQUIRE_ROOT_ENV).is_ok_and(|v| v == "1") {
        panic!("{test}: needs root and {REQUIRE_ROOT_ENV}=1");
    }
    eprintln!("skipping {test}: needs root");
    false
}
