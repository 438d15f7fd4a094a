//! `/proc/meminfo` (proc(5)): how much file data waits to be written back.

/// Dirty and under-writeback page cache of the whole host, in bytes; none
/// when /proc/meminfo cannot be read.
pub fn unwritten_bytes() -> Option<u64> {
    parse_unwritten(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

/// `Dirty` + `Writeback` of meminfo text (kB there).
pub fn parse_unwritten(text: &str) -> Option<u64> {
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|line| line.starts_with(name))?;
        let kib = line[name.len()..].split_whitespace().next()?.parse::<u64>().ok()?;
        Some(kib * 1024)
    };
    Some(field("Dirty:")? + field("Writeback:")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirty_and_writeback_add_up() {
        let text = "MemTotal:       24579396 kB\nDirty:               120 kB\nWriteback:             8 kB\nWritebackTmp:          0 kB\n";
        assert_eq!(parse_unwritten(text), Some(128 * 1024));
        assert_eq!(parse_unwritten("MemTotal: 1 kB\n"), None);
    }
}
