//! File-level restore: chosen paths of a snapshot brought back into the live
//! container (or written to a folder of the caller's choice), ownership,
//! modes, times and xattrs kept. Into the container, a pre-restore snapshot
//! is taken first, so it is undone like a full restore (restore that one,
//! or restore the same paths from it).
//!
//! Each path is copied beside its destination under a temporary name
//! (`cp -a --reflink=auto`: on btrfs the data is shared, not copied), then
//! moved into place with one rename; a folder that was there is moved aside
//! first and removed after. A destination whose folder resolves outside the
//! container's volume (a symlink planted in the container) is refused.

use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use super::error::{EngineError, EngineResult};
use super::snapshots::{ensure_ready, CreateRequest};
use super::Engine;
use crate::events::Event;
use crate::store::SnapshotOrigin;

/// Most paths one call brings back.
pub const MAX_PATHS: usize = 1000;

/// What a file-level restore did.
#[derive(Debug, Clone)]
pub struct FilesRestored {
    /// The paths brought back, as given.
    pub paths: Vec<String>,
    /// The snapshot of the container taken just before (undo); none with
    /// a target folder.
    pub pre_restore_snapshot: Option<String>,
    /// Where the paths were written: the volume, or the target folder.
    pub written_to: PathBuf,
}

/// A path inside a volume: relative, without `..`, not the root itself.
fn check_path(index: usize, path: &str) -> EngineResult<PathBuf> {
    let relative = Path::new(path.trim_start_matches('/'));
    let plain = relative.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if path.is_empty() || relative.as_os_str().is_empty() || !plain || path.contains('\0') {
        return Err(EngineError::invalid(
            "paths",
            format!("paths[{index}] = {path:?}: a path inside the container's volume, without .."),
        ));
    }
    Ok(relative.components().filter(|c| matches!(c, Component::Normal(_))).collect())
}

fn io_error(what: &str, path: &Path, error: std::io::Error) -> EngineError {
    EngineError::Internal { reason: format!("{what} {}: {error}", path.display()) }
}

/// Refuses a destination whose folder leads outside `root` through a
/// symlink: the deepest folder of it that exists, resolved, must be inside.
fn check_destination(root: &Path, relative: &Path) -> EngineResult<()> {
    let root = root.canonicalize().map_err(|e| io_error("resolving", root, e))?;
    let mut folder = root.join(relative);
    folder.pop();
    let existing = folder.ancestors().find(|a| std::fs::symlink_metadata(a).is_ok()).unwrap_or(&root);
    let resolved = existing.canonicalize().map_err(|e| io_error("resolving", existing, e))?;
    if resolved.starts_with(&root) {
        Ok(())
    } else {
        Err(EngineError::FailedPrecondition {
            reason: format!("{} leads outside {} (through a symlink): not written", relative.display(), root.display()),
        })
    }
}

/// The destination of `relative` under `root`, its missing folders created
/// (as root, mode 0755); checked again once they exist.
fn destination(root: &Path, relative: &Path) -> EngineResult<PathBuf> {
    check_destination(root, relative)?;
    let root = root.canonicalize().map_err(|e| io_error("resolving", root, e))?;
    let target = root.join(relative);
    let parent = target.parent().unwrap_or(&root);
    std::fs::create_dir_all(parent).map_err(|e| io_error("creating", parent, e))?;
    check_destination(&root, relative)?;
    let resolved = parent.canonicalize().map_err(|e| io_error("resolving", parent, e))?;
    Ok(resolved.join(target.file_name().expect("a checked path has a last component")))
}

/// Copies `source` to `target` through a temporary sibling and one rename.
fn put_in_place(source: &Path, target: &Path, tag: &str) -> EngineResult<()> {
    let name = target.file_name().expect("checked").to_string_lossy();
    let staged = target.with_file_name(format!(".{name}.rollpoint-{tag}"));
    let aside = target.with_file_name(format!(".{name}.rollpoint-{tag}-old"));
    let copied = Command::new("cp")
        .args(["-a", "--reflink=auto", "--no-target-directory"])
        .arg(source)
        .arg(&staged)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| EngineError::Internal { reason: format!("running cp: {e}") })?;
    if !copied.status.success() {
        let _ = std::fs::remove_dir_all(&staged).or_else(|_| std::fs::remove_file(&staged));
        return Err(EngineError::Internal {
            reason: format!(
                "copying {} to {}: {}",
                source.display(),
                staged.display(),
                String::from_utf8_lossy(&copied.stderr).trim()
            ),
        });
    }
    let io = |what: &str, error: std::io::Error| io_error(what, target, error);
    let existing = std::fs::symlink_metadata(target).ok();
    match existing {
        // A folder cannot be renamed over: move it aside, then remove it.
        Some(meta) if meta.is_dir() => {
            std::fs::rename(target, &aside).map_err(|e| io("moving aside", e))?;
            std::fs::rename(&staged, target).map_err(|e| io("moving into place", e))?;
            std::fs::remove_dir_all(&aside).map_err(|e| io("removing the replaced folder", e))?;
        }
        _ => std::fs::rename(&staged, target).map_err(|e| io("moving into place", e))?,
    }
    Ok(())
}

impl Engine {
    /// Brings `paths` of `snapshot` back into `container`, after a
    /// pre-restore snapshot; with `to`, writes them under that absolute
    /// folder instead (created if missing) and leaves the container alone.
    pub fn restore_files(
        &self,
        container: &str,
        snapshot: &str,
        paths: &[String],
        to: Option<&Path>,
        actor: &str,
    ) -> EngineResult<FilesRestored> {
        let record = self.container_for("container", container)?;
        let source = self.snapshot(container, snapshot)?;
        ensure_ready(&source, "nothing to bring back")?;
        if paths.is_empty() || paths.len() > MAX_PATHS {
            return Err(EngineError::invalid("paths", format!("1 to {MAX_PATHS} paths")));
        }
        let relative: Vec<PathBuf> =
            paths.iter().enumerate().map(|(index, path)| check_path(index, path)).collect::<EngineResult<_>>()?;
        if let Some(to) = to {
            if !to.is_absolute() {
                return Err(EngineError::invalid("to", format!("{} is not an absolute path", to.display())));
            }
        }
        let _pin = self.pin_snapshot(&source.location)?;
        let root = self.backend.readable_root(&source.location)?;
        for (index, path) in relative.iter().enumerate() {
            if std::fs::symlink_metadata(root.join(path)).is_err() {
                return Err(EngineError::not_found(format!(
                    "paths[{index}] = {:?} in snapshot {}",
                    paths[index], source.name
                )));
            }
        }

        // The container's files are looked for only when written there.
        let written_to = match to {
            Some(to) => to.to_owned(),
            None => self.backend.live_root(&super::snapshots::volume_of(&record))?,
        };
        if to.is_none() {
            for path in &relative {
                check_destination(&written_to, path)?;
            }
        }
        let pre_restore_snapshot = match to {
            Some(_) => None,
            None => {
                let now = self.clock.now();
                let name = self.pre_restore_name(&record, now)?;
                let taken = self.create_snapshot(CreateRequest {
                    container: container.to_owned(),
                    name,
                    alias: String::new(),
                    expiry_days: self.config.pre_restore_expiry_days,
                    comment: format!("before restoring {} path(s) from {}", paths.len(), source.name),
                    origin: SnapshotOrigin::PreRestore,
                    actor: actor.to_owned(),
                })?;
                Some(taken.name)
            }
        };
        if let Some(to) = to {
            std::fs::create_dir_all(to)
                .map_err(|e| EngineError::Internal { reason: format!("creating {}: {e}", to.display()) })?;
        }
        let _guard = self.locks.lock(&record.id, self.config.lock_wait)?;
        let tag = self.clock.now().timestamp_millis().to_string();
        let copied = relative.iter().try_for_each(|path| {
            let target = destination(&written_to, path)?;
            put_in_place(&root.join(path), &target, &tag)
        });
        let mut event = Event::new("restore.files", if copied.is_ok() { "ok" } else { "failed" })
            .container(container)
            .snapshot(&source.name)
            .actor(actor);
        event = match (&copied, &pre_restore_snapshot) {
            (Err(error), _) => event.detail(format!("{error}")),
            (Ok(()), Some(pre)) => event.detail(format!("{}; previous state kept as {pre}", paths.join(", "))),
            (Ok(()), None) => event.detail(format!("{} written under {}", paths.join(", "), written_to.display())),
        };
        self.emit(event);
        copied?;
        Ok(FilesRestored { paths: paths.to_vec(), pre_restore_snapshot, written_to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_volume() {
        assert_eq!(check_path(0, "etc/app.conf").unwrap(), PathBuf::from("etc/app.conf"));
        assert_eq!(check_path(0, "/etc/./app.conf").unwrap(), PathBuf::from("etc/app.conf"));
        for bad in ["", "/", "..", "etc/../../x", "a\0b"] {
            let error = check_path(3, bad).unwrap_err();
            assert!(error.to_string().starts_with("paths: paths[3]"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn a_destination_through_a_symlink_out_of_the_volume_is_refused() {
        let volume = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), volume.path().join("escape")).unwrap();
        assert!(matches!(
            destination(volume.path(), Path::new("escape/passwd")),
            Err(EngineError::FailedPrecondition { .. })
        ));
        let inside = destination(volume.path(), Path::new("etc/app.conf")).unwrap();
        assert_eq!(inside, volume.path().canonicalize().unwrap().join("etc/app.conf"));
    }

    #[test]
    fn files_and_folders_are_replaced_in_one_rename() {
        let dir = tempfile::tempdir().unwrap();
        let (source, target) = (dir.path().join("source"), dir.path().join("target"));
        std::fs::create_dir_all(source.join("sub")).unwrap();
        std::fs::write(source.join("sub/file"), "from the snapshot").unwrap();
        std::fs::create_dir_all(target.join("sub")).unwrap();
        std::fs::write(target.join("sub/extra"), "written since").unwrap();
        put_in_place(&source.join("sub"), &target.join("sub"), "t").unwrap();
        assert_eq!(std::fs::read_to_string(target.join("sub/file")).unwrap(), "from the snapshot");
        assert!(!target.join("sub/extra").exists(), "the folder is the snapshot's, whole");
        std::fs::write(source.join("one"), "one").unwrap();
        std::fs::write(target.join("one"), "changed").unwrap();
        put_in_place(&source.join("one"), &target.join("one"), "t").unwrap();
        assert_eq!(std::fs::read_to_string(target.join("one")).unwrap(), "one");
        let left: Vec<_> = std::fs::read_dir(&target).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2, "no temporary names left: {left:?}");
    }
}
