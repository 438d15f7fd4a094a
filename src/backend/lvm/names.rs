//! LVM names: parsing `vg/lv`, and the names rollpoint gives its own LVs.
//!
//! A snapshot of container `db-1` called `snap-2026-05-04` in VG `vg0` is the
//! LV `vg0/rp-db-1.snap-2026-05-04`. The `rp-<container>.` prefix cannot be a
//! prefix of another container's LVs (container ids hold no `.`), and every
//! LV rollpoint makes also carries the tag `rollpoint`: an LV of the user's
//! that happens to share the name is never listed, renamed over or deleted.
//! Names that would not fit LVM's limits, or hold characters LVM refuses,
//! are replaced by a hash (`rp-db-1..<hash>.<readable prefix>`): `..` never
//! occurs in the plain form, so the two forms cannot collide.

use crate::backend::BackendError;

/// Prefix of every LV rollpoint names.
pub const PREFIX: &str = "rp-";
/// Tag on every LV that is a rollpoint snapshot.
pub const OURS_TAG: &str = "rollpoint";
/// Longest device-mapper name (DM_NAME_LEN 128, with its NUL).
const DM_NAME_MAX: usize = 127;
/// Longest LV or VG name LVM takes (NAME_LEN 128, with its NUL).
const NAME_MAX: usize = 127;
/// LV names that are reserved in full, or as prefixes, or as substrings (lvm2
/// `apply_lvname_restrictions`).
const RESERVED_PREFIXES: [&str; 2] = ["snapshot", "pvmove"];
const RESERVED_SUBSTRINGS: [&str; 16] = [
    "_cdata", "_cmeta", "_corig", "_cpool", "_cvol", "_imeta", "_iorig", "_mimage", "_mlog", "_pmspare", "_rimage",
    "_rmeta", "_tdata", "_tmeta", "_vdata", "_vorigin",
];

/// A `vg/lv` pair, checked against LVM's name rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvName {
    pub vg: String,
    pub lv: String,
}

impl LvName {
    /// Parses `vg/lv` (a leading `/dev/` is not accepted: the volume is named
    /// the way LVM names it).
    pub fn parse(text: &str) -> Result<LvName, BackendError> {
        let invalid = |reason| BackendError::InvalidName { name: text.to_string(), reason };
        let (vg, lv) = text.split_once('/').ok_or_else(|| invalid("must be vg/lv"))?;
        if !valid_vg(vg) {
            return Err(invalid("the VG name must be 1-127 of A-Z a-z 0-9 + _ . -, not starting with -"));
        }
        if !valid_lv(lv) {
            return Err(invalid(
                "the LV name must be 1-127 of A-Z a-z 0-9 + _ . -, not starting with -, and not reserved by LVM",
            ));
        }
        Ok(LvName { vg: vg.to_string(), lv: lv.to_string() })
    }

    pub fn full(&self) -> String {
        format!("{}/{}", self.vg, self.lv)
    }

    /// Another LV of the same VG.
    pub fn sibling(&self, lv: &str) -> LvName {
        LvName { vg: self.vg.clone(), lv: lv.to_string() }
    }
}

impl std::fmt::Display for LvName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.vg, self.lv)
    }
}

fn lvm_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '_' | '.' | '-')
}

fn valid_common(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_MAX
        && name != "."
        && name != ".."
        && !name.starts_with('-')
        && name.chars().all(lvm_char)
}

pub fn valid_vg(name: &str) -> bool {
    valid_common(name)
}

pub fn valid_lv(name: &str) -> bool {
    valid_common(name)
        && !RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
        && !RESERVED_SUBSTRINGS.iter().any(|s| name.contains(s))
}

/// Length of the device-mapper name `vg-lv`, in which each `-` of either
/// name is doubled.
pub fn dm_name_len(vg: &str, lv: &str) -> usize {
    let escaped = |s: &str| s.len() + s.matches('-').count();
    escaped(vg) + 1 + escaped(lv)
}

/// The device-mapper name of `vg/lv` (`/dev/mapper/<this>`).
pub fn dm_name(vg: &str, lv: &str) -> String {
    format!("{}-{}", vg.replace('-', "--"), lv.replace('-', "--"))
}

/// Checks a container id for use in LV names: `[a-z0-9-]`, no `.` (the
/// prefix separator), not empty.
pub fn check_container(container: &str) -> Result<(), BackendError> {
    let ok = !container.is_empty()
        && container.len() <= 63
        && !container.starts_with('-')
        && container.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(BackendError::InvalidName {
            name: container.to_string(),
            reason: "a container id must be 1-63 of a-z 0-9 -, not starting with -",
        })
    }
}

/// The prefix of the LV names of `container`'s snapshots: `rp-<container>.`.
pub fn snapshot_prefix(container: &str) -> String {
    format!("{PREFIX}{container}.")
}

/// The LV name of the snapshot `name` of the container whose prefix is
/// `prefix`, in VG `vg`. Deterministic; always a valid LV name whose
/// device-mapper name fits.
pub fn snapshot_lv(vg: &str, prefix: &str, name: &str) -> String {
    // `_` is the one character of snapshot names that can build a reserved
    // substring (`_tmeta`...); `+` never occurs in them, so swapping it in
    // keeps names apart.
    let plain = format!("{prefix}{}", name.replace('_', "+"));
    let readable = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !name.contains("..")
        && plain.len() <= NAME_MAX
        && dm_name_len(vg, &plain) <= DM_NAME_MAX
        && valid_lv(&plain);
    if readable {
        return plain;
    }
    let hash = blake3::hash(name.as_bytes()).to_hex();
    let mut hashed = format!("{prefix}.{}", &hash[..24]);
    // Keep as much of the name as fits, for the humans reading `lvs`.
    let readable_part: String = name.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-')).collect();
    let readable_part = readable_part.replace("..", ".");
    let mut candidate = hashed.clone() + ".";
    for c in readable_part.chars() {
        candidate.push(c);
        if candidate.len() > NAME_MAX || dm_name_len(vg, &candidate) > DM_NAME_MAX {
            candidate.pop();
            break;
        }
    }
    if candidate.len() > hashed.len() + 1 && valid_lv(&candidate) {
        hashed = candidate;
    }
    hashed
}

/// The temporary name the volume `lv` takes while an exchange moves it aside.
/// `rp--` can never begin a container's prefix (ids do not start with `-`).
pub fn swap_aside_lv(lv: &str) -> String {
    let hash = blake3::hash(lv.as_bytes()).to_hex();
    format!("{PREFIX}-swap-{}", &hash[..24])
}

/// Tags that record an exchange in progress on the volume being swapped out,
/// so that one interrupted half-way is finished at the next call. LVM tags
/// take `A-Z a-z 0-9 _ + . -` (and a few more), so free text is hex-encoded.
pub mod swap_tags {
    pub const VOLUME: &str = "rp-swap-volume.";
    pub const WITH: &str = "rp-swap-with.";
    pub const MOUNT_POINT: &str = "rp-swap-mnt.";
    pub const FS_TYPE: &str = "rp-swap-fs.";
    pub const FLAGS: &str = "rp-swap-flags.";
    pub const DATA: &str = "rp-swap-data.";
    /// Longest tag LVM takes.
    pub const TAG_MAX: usize = 1024;

    pub fn is_swap_tag(tag: &str) -> bool {
        tag.starts_with("rp-swap-")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_parse_as_vg_slash_lv() {
        assert_eq!(LvName::parse("vg0/db-1").expect("ok"), LvName { vg: "vg0".into(), lv: "db-1".into() });
        for bad in ["vg0", "/dev/vg0/db", "vg0/", "/db", "vg0/a/b", "vg 0/db", "vg0/-x", "vg0/..", "vg0/snapshot1"] {
            assert!(matches!(LvName::parse(bad), Err(BackendError::InvalidName { .. })), "{bad}");
        }
        assert!(LvName::parse("vg0/x_tmeta").is_err(), "reserved substring");
        assert!(LvName::parse(&format!("vg0/{}", "x".repeat(128))).is_err());
    }

    #[test]
    fn device_mapper_names_double_dashes() {
        assert_eq!(dm_name("vg-0", "db-1"), "vg--0-db--1");
        assert_eq!(dm_name_len("vg-0", "db-1"), "vg--0-db--1".len());
    }

    #[test]
    fn snapshot_names_are_readable_when_they_fit() {
        let prefix = snapshot_prefix("db-1");
        assert_eq!(snapshot_lv("vg0", &prefix, "snap-2026-05-04"), "rp-db-1.snap-2026-05-04");
        assert_eq!(snapshot_lv("vg0", &prefix, "pre-restore-2026-05-04-2"), "rp-db-1.pre-restore-2026-05-04-2");
        // `_tmeta` would be reserved; `+` stands in for `_`.
        assert_eq!(snapshot_lv("vg0", &prefix, "a_tmeta"), "rp-db-1.a+tmeta");
    }

    #[test]
    fn long_or_odd_names_are_hashed_and_still_valid() {
        let prefix = snapshot_prefix("db-1");
        let long = "a-".repeat(64);
        for name in [long.as_str(), "x/y", ".hidden", "sp ace", "ü", "a..b"] {
            let lv = snapshot_lv("vg-with-dashes", &prefix, name);
            assert!(lv.starts_with("rp-db-1.."), "{name}: {lv}");
            assert!(valid_lv(&lv), "{name}: {lv}");
            assert!(dm_name_len("vg-with-dashes", &lv) <= DM_NAME_MAX, "{name}: {lv}");
            assert_eq!(lv, snapshot_lv("vg-with-dashes", &prefix, name), "deterministic");
        }
        assert_ne!(snapshot_lv("vg0", &prefix, &"b".repeat(128)), snapshot_lv("vg0", &prefix, &"b".repeat(127)));
        // A plain name never holds `..`, so it never looks like a hashed one.
        assert!(!snapshot_lv("vg0", &prefix, "snap.1").starts_with("rp-db-1.."));
    }

    #[test]
    fn prefixes_of_containers_do_not_overlap() {
        // `db` must not claim `db-1`'s snapshots.
        let db = snapshot_prefix("db");
        let lv = snapshot_lv("vg0", &snapshot_prefix("db-1"), "snap");
        assert!(!lv.starts_with(&db));
        assert!(!swap_aside_lv("db-1").starts_with(&snapshot_prefix("x")));
        assert!(valid_lv(&swap_aside_lv("db-1")));
    }

    #[test]
    fn containers_must_not_hold_dots() {
        assert!(check_container("db-1").is_ok());
        for bad in ["", "db.1", "-db", "DB", &"x".repeat(64)] {
            assert!(check_container(bad).is_err(), "{bad}");
        }
    }
}
