//! [`CgroupFreezer`]: the real [`Freezer`], dispatching each cgroup to the v2
//! or the v1 implementation by the mount it lives under.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::{cgroup_v1, cgroup_v2, FreezeState, Freezer, FreezerError};
use crate::sys::mountinfo;

/// Freezes cgroups through the cgroup v2 freezer, or the v1 freezer
/// controller for cgroups under its hierarchy.
#[derive(Debug, Clone)]
pub struct CgroupFreezer {
    v2_mount: Option<PathBuf>,
    v1_freezer_mount: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    V2,
    V1,
}

impl CgroupFreezer {
    /// Finds the cgroup v2 mount and the v1 freezer mount in
    /// `/proc/self/mountinfo`; fails if there is neither.
    pub fn from_mountinfo() -> Result<Self, FreezerError> {
        let mounts = mountinfo::read().map_err(FreezerError::io("read", Path::new("/proc/self/mountinfo")))?;
        Self::new(mountinfo::cgroup2_mount(&mounts), mountinfo::cgroup1_freezer_mount(&mounts))
    }

    /// Uses the given mount roots (tests pass temp-dir fixtures); fails if
    /// both are `None` or one does not exist.
    pub fn new(v2_mount: Option<PathBuf>, v1_freezer_mount: Option<PathBuf>) -> Result<Self, FreezerError> {
        if v2_mount.is_none() && v1_freezer_mount.is_none() {
            return Err(FreezerError::NoHierarchy);
        }
        let canonical = |mount: Option<PathBuf>| {
            mount.map(|m| m.canonicalize().map_err(FreezerError::io("resolve mount", &m))).transpose()
        };
        Ok(Self { v2_mount: canonical(v2_mount)?, v1_freezer_mount: canonical(v1_freezer_mount)? })
    }

    /// Where cgroup v2 is mounted, if it is.
    pub fn v2_mount(&self) -> Option<&Path> {
        self.v2_mount.as_deref()
    }

    /// Where the cgroup v1 hierarchy with the freezer controller is mounted.
    pub fn v1_freezer_mount(&self) -> Option<&Path> {
        self.v1_freezer_mount.as_deref()
    }

    /// Which hierarchy an absolute path without `..` belongs to (the deeper
    /// mount wins, should one ever be mounted inside the other).
    fn flavour_of(&self, path: &Path) -> Option<Flavour> {
        if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
            return None;
        }
        [(Flavour::V2, &self.v2_mount), (Flavour::V1, &self.v1_freezer_mount)]
            .into_iter()
            .filter_map(|(flavour, mount)| Some((flavour, mount.as_deref()?)))
            .filter(|(_, mount)| path.starts_with(mount))
            .max_by_key(|(_, mount)| mount.components().count())
            .map(|(flavour, _)| flavour)
    }

    fn mount(&self, flavour: Flavour) -> Option<&Path> {
        match flavour {
            Flavour::V2 => self.v2_mount(),
            Flavour::V1 => self.v1_freezer_mount(),
        }
    }

    fn outside(&self, cgroup: impl Into<String>) -> FreezerError {
        FreezerError::OutsideHierarchy { cgroup: cgroup.into(), v2_mount: self.v2_mount.clone() }
    }

    /// Runs `op` with the flavour of a path handed to one of the freezing
    /// calls. A cgroup removed meanwhile (its container stopped) is reported
    /// as `NotFound`, not as an I/O error on one of its files.
    fn dispatch<T>(
        &self,
        cgroup: &Path,
        op: impl FnOnce(Flavour) -> Result<T, FreezerError>,
    ) -> Result<T, FreezerError> {
        let flavour = self.flavour_of(cgroup).ok_or_else(|| self.outside(cgroup.display().to_string()))?;
        op(flavour).map_err(|error| match error {
            FreezerError::Io { ref source, .. }
                if source.kind() == std::io::ErrorKind::NotFound && !cgroup.is_dir() =>
            {
                FreezerError::NotFound { cgroup: cgroup.display().to_string() }
            }
            other => other,
        })
    }
}

impl Freezer for CgroupFreezer {
    /// `..` is resolved lexically first (cgroupfs has no symlinks), so a path
    /// outside the mounts is refused without being looked at; the canonical
    /// path is checked again in case a fixture root holds a symlink.
    fn resolve(&self, cgroup: &str) -> Result<PathBuf, FreezerError> {
        let given = Path::new(cgroup);
        let base = || self.v2_mount.as_ref().or(self.v1_freezer_mount.as_ref()).ok_or(FreezerError::NoHierarchy);
        let joined = if !given.is_absolute() {
            base()?.join(given)
        } else if self.flavour_of(&normalize(given)).is_none() {
            // Outside the mounts: as /proc/PID/cgroup prints it
            // ("/machine.slice/db-1.scope"), from the hierarchy's root, when
            // that group exists; otherwise refused as outside below.
            base()
                .ok()
                .map(|base| normalize(&base.join(given.strip_prefix("/").unwrap_or(given))))
                .filter(|candidate| self.flavour_of(candidate).is_some() && candidate.is_dir())
                .unwrap_or_else(|| given.to_path_buf())
        } else {
            given.to_path_buf()
        };
        let lexical = normalize(&joined);
        let flavour = self.flavour_of(&lexical).ok_or_else(|| self.outside(cgroup))?;
        let real = lexical.canonicalize().map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => FreezerError::NotFound { cgroup: cgroup.to_string() },
            _ => FreezerError::io("resolve", &lexical)(source),
        })?;
        if self.flavour_of(&real) != Some(flavour) {
            return Err(self.outside(cgroup));
        }
        if !real.is_dir() {
            return Err(FreezerError::NotFound { cgroup: cgroup.to_string() });
        }
        let control = match flavour {
            Flavour::V2 => cgroup_v2::FREEZE_FILE,
            Flavour::V1 => cgroup_v1::STATE_FILE,
        };
        if !real.join(control).is_file() {
            let reason = if Some(real.as_path()) == self.mount(flavour) {
                "the root cgroup cannot be frozen".to_string()
            } else {
                format!("it has no {control}")
            };
            return Err(FreezerError::NotFreezable { cgroup: cgroup.to_string(), reason });
        }
        Ok(real)
    }

    fn state(&self, cgroup: &Path) -> Result<FreezeState, FreezerError> {
        self.dispatch(cgroup, |flavour| match flavour {
            Flavour::V2 => cgroup_v2::state(cgroup),
            Flavour::V1 => cgroup_v1::state(cgroup),
        })
    }

    fn freeze(&self, cgroup: &Path, timeout: Duration) -> Result<(), FreezerError> {
        self.dispatch(cgroup, |flavour| match flavour {
            Flavour::V2 => cgroup_v2::freeze(cgroup, timeout),
            Flavour::V1 => cgroup_v1::freeze(cgroup, timeout),
        })
    }

    fn thaw(&self, cgroup: &Path) -> Result<(), FreezerError> {
        self.dispatch(cgroup, |flavour| match flavour {
            Flavour::V2 => cgroup_v2::thaw(cgroup),
            Flavour::V1 => cgroup_v1::thaw(cgroup),
        })
    }

    fn kill_all(&self, cgroup: &Path, timeout: Duration) -> Result<(), FreezerError> {
        self.dispatch(cgroup, |flavour| match flavour {
            Flavour::V2 => cgroup_v2::kill_all(cgroup, timeout),
            Flavour::V1 => cgroup_v1::kill_all(cgroup, timeout),
        })
    }

    fn populated(&self, cgroup: &Path) -> Result<bool, FreezerError> {
        if !cgroup.is_dir() {
            return Ok(false);
        }
        self.dispatch(cgroup, |flavour| match flavour {
            Flavour::V2 => cgroup_v2::populated(cgroup),
            Flavour::V1 => cgroup_v1::populated(cgroup),
        })
    }
}

/// Drops `.` and applies `..` without touching the filesystem; `..` at the
/// root stays at the root, as the kernel does.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A fake v2 mount and v1 freezer mount in a temp dir, with an `outside`
    /// directory next to them and a symlink escaping into it.
    struct Fixture {
        _dir: tempfile::TempDir,
        v2: PathBuf,
        v1: PathBuf,
        outside: PathBuf,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical tempdir");
        let (v2, v1, outside) = (root.join("v2"), root.join("v1"), root.join("outside"));
        for d in [v2.join("app/sub"), v2.join("nofreeze"), v1.join("app"), outside.clone()] {
            fs::create_dir_all(d).expect("mkdir");
        }
        fs::write(v2.join("cgroup.procs"), "").expect("write");
        for d in [v2.join("app"), v2.join("app/sub"), outside.clone()] {
            fs::write(d.join("cgroup.freeze"), "0\n").expect("write");
            fs::write(d.join("cgroup.events"), "populated 1\nfrozen 0\n").expect("write");
        }
        fs::write(v1.join("app/freezer.state"), "THAWED\n").expect("write");
        std::os::unix::fs::symlink(&outside, v2.join("link")).expect("symlink");
        Fixture { _dir: dir, v2, v1, outside }
    }

    fn freezer(f: &Fixture) -> CgroupFreezer {
        CgroupFreezer::new(Some(f.v2.clone()), Some(f.v1.clone())).expect("freezer")
    }

    #[test]
    fn resolves_relative_and_absolute_paths() {
        let f = fixture();
        let freezer = freezer(&f);
        assert_eq!(freezer.resolve("app").unwrap(), f.v2.join("app"));
        assert_eq!(freezer.resolve("./app/../app/sub/").unwrap(), f.v2.join("app/sub"));
        assert_eq!(freezer.resolve(f.v2.join("app").to_str().unwrap()).unwrap(), f.v2.join("app"));
        assert_eq!(freezer.resolve(f.v1.join("app").to_str().unwrap()).unwrap(), f.v1.join("app"));
        // As /proc/PID/cgroup prints it: from the v2 root.
        assert_eq!(freezer.resolve("/app/sub").unwrap(), f.v2.join("app/sub"));
    }

    #[test]
    fn relative_paths_go_to_v1_when_there_is_no_v2() {
        let f = fixture();
        let freezer = CgroupFreezer::new(None, Some(f.v1.clone())).unwrap();
        assert_eq!(freezer.resolve("app").unwrap(), f.v1.join("app"));
        assert!(matches!(
            freezer.resolve(f.v2.join("app").to_str().unwrap()),
            Err(FreezerError::OutsideHierarchy { .. })
        ));
    }

    #[test]
    fn refuses_escapes() {
        let f = fixture();
        let freezer = freezer(&f);
        let escapes = [
            "../outside".to_string(),
            "app/../../outside".to_string(),
            "../../../../../../../../etc".to_string(),
            "/etc".to_string(),
            format!("{}/../outside", f.v2.display()),
            f.outside.display().to_string(),
            "link".to_string(),
        ];
        for cgroup in escapes {
            match freezer.resolve(&cgroup) {
                Err(FreezerError::OutsideHierarchy { cgroup: named, v2_mount }) => {
                    assert_eq!(named, cgroup);
                    assert_eq!(v2_mount.as_deref(), Some(f.v2.as_path()));
                }
                other => panic!("{cgroup}: {other:?}"),
            }
        }
    }

    #[test]
    fn missing_cgroups_are_not_found_by_name() {
        let f = fixture();
        let freezer = freezer(&f);
        for cgroup in ["missing", "app/missing", "app/cgroup.freeze"] {
            match freezer.resolve(cgroup) {
                Err(FreezerError::NotFound { cgroup: named }) => assert_eq!(named, cgroup),
                other => panic!("{cgroup}: {other:?}"),
            }
        }
    }

    #[test]
    fn roots_and_groups_without_a_freezer_are_not_freezable() {
        let f = fixture();
        let freezer = freezer(&f);
        for cgroup in [
            "".to_string(),
            ".".to_string(),
            "app/..".to_string(),
            f.v2.display().to_string(),
            f.v1.display().to_string(),
        ] {
            match freezer.resolve(&cgroup) {
                Err(FreezerError::NotFreezable { reason, .. }) => {
                    assert!(reason.contains("root"), "{cgroup}: {reason}")
                }
                other => panic!("{cgroup:?}: {other:?}"),
            }
        }
        assert!(matches!(freezer.resolve("nofreeze"), Err(FreezerError::NotFreezable { .. })));
    }

    #[test]
    fn needs_at_least_one_hierarchy() {
        assert!(matches!(CgroupFreezer::new(None, None), Err(FreezerError::NoHierarchy)));
        let missing = PathBuf::from("/nonexistent/rollpoint/cgroup");
        assert!(matches!(CgroupFreezer::new(Some(missing), None), Err(FreezerError::Io { op: "resolve mount", .. })));
    }

    #[test]
    fn dispatches_by_mount_and_refuses_other_paths() {
        let f = fixture();
        let freezer = freezer(&f);
        fs::write(f.v2.join("app/cgroup.freeze"), "1\n").unwrap();
        assert_eq!(freezer.state(&f.v2.join("app")).unwrap(), FreezeState::Freezing);
        assert_eq!(freezer.state(&f.v1.join("app")).unwrap(), FreezeState::Thawed);
        for path in [f.outside.clone(), f.v2.join("../outside"), PathBuf::from("app")] {
            assert!(matches!(freezer.state(&path), Err(FreezerError::OutsideHierarchy { .. })), "{}", path.display());
            assert!(matches!(freezer.thaw(&path), Err(FreezerError::OutsideHierarchy { .. })), "{}", path.display());
        }
        assert_eq!(fs::read_to_string(f.outside.join("cgroup.freeze")).unwrap(), "0\n", "outside file untouched");
    }

    #[test]
    fn a_vanished_cgroup_is_not_found() {
        let f = fixture();
        let freezer = freezer(&f);
        let gone = f.v2.join("gone");
        assert!(matches!(freezer.state(&gone), Err(FreezerError::NotFound { .. })));
        assert!(matches!(freezer.thaw(&gone), Err(FreezerError::NotFound { .. })));
        assert!(matches!(freezer.freeze(&gone, Duration::ZERO), Err(FreezerError::NotFound { .. })));
    }

    #[test]
    fn io_errors_name_the_operation_and_the_file() {
        let f = fixture();
        let error = freezer(&f).state(&f.v2.join("nofreeze")).unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("read ") && text.contains("nofreeze/cgroup.freeze"), "{text}");
    }
}
