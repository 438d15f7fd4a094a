//! The daemon's heap, kept small after a burst: glibc's malloc gives each
//! thread that contends for the heap an arena of its own (up to eight per
//! CPU) and keeps what was freed in them. A burst of calls runs on many
//! blocking threads at once, and the memory they freed stayed with the
//! daemon (148 MiB after a burst and 10,000 snapshots, with 13 MiB at start).

/// Arenas the daemon's threads share. glibc's default is eight per CPU; with
/// two, the soak of 50 clients kept about 3 MiB more resident than with one
/// (free memory stranded in the second arena), at the same call latency.
const MAX_ARENAS: i32 = 1;

/// Caps the number of malloc arenas; call once, first thing in `main`,
/// before any thread starts. A no-op where the C library is not glibc, and
/// where the administrator set the count with glibc's own environment
/// (`MALLOC_ARENA_MAX`, or `glibc.malloc.arena_max` in `GLIBC_TUNABLES`).
pub fn limit_arenas() {
    let var = |name: &str| std::env::var_os(name).map(|value| value.to_string_lossy().into_owned());
    if arena_count_set_by_environment(var) {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of the allocator; M_ARENA_MAX takes
    // any positive count. Called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MAX_ARENAS);
    }
}

/// Gives the memory freed in every arena back to the kernel (the tops of the
/// heaps and whole free pages inside them). Takes a few milliseconds; run it
/// off the async threads, now and then.
pub fn give_back_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists under
    // its locks; 0 keeps no padding at the top of the heap.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Whether glibc was told the arena count through its environment.
fn arena_count_set_by_environment(var: impl Fn(&str) -> Option<String>) -> bool {
    var("MALLOC_ARENA_MAX").is_some()
        || var("GLIBC_TUNABLES").is_some_and(|tunables| tunables.contains("glibc.malloc.arena_max="))
}

#[cfg(test)]
mod tests {
    use super::arena_count_set_by_environment;

    #[test]
    fn the_environment_overrides_the_arena_cap() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        assert!(!arena_count_set_by_environment(env(&[])));
        assert!(arena_count_set_by_environment(env(&[("MALLOC_ARENA_MAX", "1")])));
        assert!(arena_count_set_by_environment(env(&[("GLIBC_TUNABLES", "glibc.malloc.arena_max=4")])));
        assert!(!arena_count_set_by_environment(env(&[("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0")])));
    }
}
