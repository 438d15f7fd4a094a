//! What changed between two read-only snapshots of one subvolume, asked of
//! btrfs itself: `BTRFS_IOC_SEND` with the older one as parent and no file
//! data, the stream read from a pipe and parsed in-process (no btrfs-progs),
//! reduced to path changes in stream order.
//!
//! The stream creates new inodes under orphan names (`o<ino>-<gen>-0`) and
//! renames them into place later, renames and unlinks paths of the parent,
//! and reports data changes as UPDATE_EXTENT (or WRITE/CLONE/TRUNCATE):
//! the consumer applies the changes in order to the parent's tree.

pub mod stream;

use std::io::Read as _;
use std::path::Path;

use stream::{attr, cmd, Command, StreamError};

use super::subvol;
use crate::backend::{BackendError, PathChange};

fn change_of(command: &Command) -> Result<Option<PathChange>, StreamError> {
    let path = || command.path(attr::PATH);
    let touched =
        |data, bytes| -> Result<PathChange, StreamError> { Ok(PathChange::Touched { path: path()?, data, bytes }) };
    Ok(Some(match command.cmd {
        cmd::SUBVOL | cmd::SNAPSHOT | cmd::END => return Ok(None),
        cmd::MKFILE | cmd::MKDIR | cmd::MKNOD | cmd::MKFIFO | cmd::MKSOCK | cmd::SYMLINK | cmd::TRUNCATE => {
            touched(true, 0)?
        }
        // Without file data (the only way this module asks), a changed
        // extent is an UPDATE_EXTENT with its length; the others carry
        // their bytes or a length.
        cmd::UPDATE_EXTENT | cmd::FALLOCATE => touched(true, command.u64(attr::SIZE))?,
        cmd::CLONE => touched(true, command.u64(attr::CLONE_LEN))?,
        cmd::WRITE | cmd::ENCODED_WRITE => {
            touched(true, command.attrs.get(&attr::DATA).map_or(0, |data| data.len() as u64))?
        }
        cmd::UTIMES => PathChange::Times { path: path()? },
        cmd::CHMOD | cmd::CHOWN | cmd::SET_XATTR | cmd::REMOVE_XATTR | cmd::FILEATTR | cmd::ENABLE_VERITY => {
            touched(false, 0)?
        }
        cmd::RENAME => PathChange::Rename { from: path()?, to: command.path(attr::PATH_TO)? },
        cmd::LINK => PathChange::Link { path: path()?, target: command.path(attr::PATH_LINK)? },
        cmd::UNLINK | cmd::RMDIR => PathChange::Remove { path: path()? },
        other => return Err(StreamError::MissingAttribute { cmd: other, attribute: 0 }),
    }))
}

/// The stream's commands reduced to path changes, in order.
pub fn changes_of_stream(bytes: &[u8]) -> Result<Vec<PathChange>, StreamError> {
    let (_, commands) = stream::parse(bytes)?;
    let mut changes = Vec::new();
    for command in &commands {
        if let Some(change) = change_of(command)? {
            changes.push(change);
        }
    }
    Ok(changes)
}

/// The send stream of `snapshot` against `parent` (both read-only
/// subvolumes of one filesystem), without file data; without a parent, the
/// whole of `snapshot` as new.
pub fn send_stream(parent: Option<&Path>, snapshot: &Path) -> Result<Vec<u8>, BackendError> {
    let parent_root = match parent {
        Some(parent) => {
            let parent_fd = subvol::open_dir(parent).map_err(|err| BackendError::io("open", parent, err))?;
            Some(subvol::subvol_info(&parent_fd).map_err(|err| BackendError::io("get subvolume info", parent, err))?.id)
        }
        None => None,
    };
    let snapshot_fd = subvol::open_dir(snapshot).map_err(|err| BackendError::io("open", snapshot, err))?;
    let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|errno| BackendError::io("pipe", snapshot, errno.into()))?;
    // The kernel writes the stream while this thread reads it; the writer
    // end is closed when the ioctl returns, which ends the read.
    let sender = std::thread::spawn(move || subvol::send_without_data(&snapshot_fd, &writer, parent_root));
    let mut stream = Vec::new();
    let read = std::fs::File::from(reader).read_to_end(&mut stream);
    let sent = sender.join().map_err(|_| BackendError::Io {
        op: "send",
        path: snapshot.to_owned(),
        source: std::io::Error::other("the send thread panicked"),
    })?;
    sent.map_err(|err| BackendError::io("send (BTRFS_IOC_SEND)", snapshot, err))?;
    read.map_err(|err| BackendError::io("read the send stream of", snapshot, err))?;
    Ok(stream)
}

/// What turned `parent` (or nothing) into `snapshot`, as path changes in
/// order.
pub fn path_changes(parent: Option<&Path>, snapshot: &Path) -> Result<Vec<PathChange>, BackendError> {
    let stream = send_stream(parent, snapshot)?;
    changes_of_stream(&stream).map_err(|error| BackendError::Io {
        op: "parse the send stream of",
        path: snapshot.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, error),
    })
}

#[cfg(test)]
mod tests {
    use super::stream::tests::stream;
    use super::*;

    #[test]
    fn commands_become_path_changes_in_order() {
        let bytes = stream(&[
            (cmd::SNAPSHOT, vec![(attr::PATH, b"s2")]),
            (cmd::MKFILE, vec![(attr::PATH, b"o300-9-0")]),
            (cmd::RENAME, vec![(attr::PATH, b"o300-9-0"), (attr::PATH_TO, b"dir/new")]),
            (cmd::UPDATE_EXTENT, vec![(attr::PATH, b"dir/old"), (attr::SIZE, &4096u64.to_le_bytes())]),
            (cmd::LINK, vec![(attr::PATH, b"dir/link"), (attr::PATH_LINK, b"dir/new")]),
            (cmd::UNLINK, vec![(attr::PATH, b"gone")]),
            (cmd::UTIMES, vec![(attr::PATH, b"dir")]),
            (cmd::END, vec![]),
        ]);
        assert_eq!(
            changes_of_stream(&bytes).unwrap(),
            vec![
                PathChange::Touched { path: b"o300-9-0".to_vec(), data: true, bytes: 0 },
                PathChange::Rename { from: b"o300-9-0".to_vec(), to: b"dir/new".to_vec() },
                PathChange::Touched { path: b"dir/old".to_vec(), data: true, bytes: 4096 },
                PathChange::Link { path: b"dir/link".to_vec(), target: b"dir/new".to_vec() },
                PathChange::Remove { path: b"gone".to_vec() },
                PathChange::Times { path: b"dir".to_vec() },
            ]
        );
        let unknown = stream(&[(99, vec![])]);
        assert!(changes_of_stream(&unknown).is_err(), "an unknown command is not skipped silently");
    }
}
