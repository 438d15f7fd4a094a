//! The btrfs send stream, as the kernel writes it (fs/btrfs/send.h):
//! a header (`btrfs-stream\0`, le32 version), then commands, each a header
//! (le32 payload length, le16 command, le32 crc32c) and a payload of TLV
//! attributes (le16 type, le16 length, value). Parsed from bytes; anything
//! cut short, unknown in version or with a bad checksum is an error.

use std::collections::HashMap;

const MAGIC: &[u8; 13] = b"btrfs-stream\0";
const HEADER_LEN: usize = MAGIC.len() + 4;
const COMMAND_HEADER_LEN: usize = 10;

/// Command numbers (`enum btrfs_send_cmd`).
pub mod cmd {
    pub const SUBVOL: u16 = 1;
    pub const SNAPSHOT: u16 = 2;
    pub const MKFILE: u16 = 3;
    pub const MKDIR: u16 = 4;
    pub const MKNOD: u16 = 5;
    pub const MKFIFO: u16 = 6;
    pub const MKSOCK: u16 = 7;
    pub const SYMLINK: u16 = 8;
    pub const RENAME: u16 = 9;
    pub const LINK: u16 = 10;
    pub const UNLINK: u16 = 11;
    pub const RMDIR: u16 = 12;
    pub const SET_XATTR: u16 = 13;
    pub const REMOVE_XATTR: u16 = 14;
    pub const WRITE: u16 = 15;
    pub const CLONE: u16 = 16;
    pub const TRUNCATE: u16 = 17;
    pub const CHMOD: u16 = 18;
    pub const CHOWN: u16 = 19;
    pub const UTIMES: u16 = 20;
    pub const END: u16 = 21;
    pub const UPDATE_EXTENT: u16 = 22;
    pub const FALLOCATE: u16 = 23;
    pub const FILEATTR: u16 = 24;
    pub const ENCODED_WRITE: u16 = 25;
    pub const ENABLE_VERITY: u16 = 26;
}

/// Attribute numbers (`enum btrfs_send_attr`) this parser reads.
pub mod attr {
    /// le64: a length (UPDATE_EXTENT, TRUNCATE, FALLOCATE).
    pub const SIZE: u16 = 4;
    pub const PATH: u16 = 15;
    pub const PATH_TO: u16 = 16;
    pub const PATH_LINK: u16 = 17;
    /// Version 2 and later: a DATA attribute has no length and runs to the
    /// end of its command.
    pub const DATA: u16 = 19;
    /// le64: how many bytes a CLONE copies.
    pub const CLONE_LEN: u16 = 24;
}

/// One command and its attributes (each type once; the last one wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub cmd: u16,
    pub attrs: HashMap<u16, Vec<u8>>,
}

impl Command {
    pub fn path(&self, attribute: u16) -> Result<Vec<u8>, StreamError> {
        self.attrs.get(&attribute).cloned().ok_or(StreamError::MissingAttribute { cmd: self.cmd, attribute })
    }

    /// A le64 attribute (a size or a length); 0 when it is absent or not
    /// eight bytes long.
    pub fn u64(&self, attribute: u16) -> u64 {
        self.attrs
            .get(&attribute)
            .and_then(|value| <[u8; 8]>::try_from(value.as_slice()).ok())
            .map_or(0, u64::from_le_bytes)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("not a btrfs send stream (bad magic)")]
    BadMagic,
    #[error("send stream version {0} (this parser reads 1 to 3)")]
    Version(u32),
    #[error("the send stream is cut short at byte {0}")]
    Truncated(usize),
    #[error("command {cmd} at byte {at}: checksum mismatch")]
    Checksum { cmd: u16, at: usize },
    #[error("command {cmd}: an attribute is cut short")]
    BadAttribute { cmd: u16 },
    #[error("command {cmd}: attribute {attribute} is missing")]
    MissingAttribute { cmd: u16, attribute: u16 },
}

/// crc32c (Castagnoli) as btrfs computes it for the stream: seeded with 0,
/// no final inversion.
fn crc32c(mut crc: u32, data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [0u32; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut value = i as u32;
            for _ in 0..8 {
                value = if value & 1 != 0 { (value >> 1) ^ 0x82F6_3B78 } else { value >> 1 };
            }
            *slot = value;
        }
        table
    });
    for byte in data {
        crc = table[((crc ^ u32::from(*byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

fn le16(bytes: &[u8]) -> u16 {
    u16::from_le_bytes([bytes[0], bytes[1]])
}

fn le32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// Parses a whole stream; returns its version and commands.
pub fn parse(stream: &[u8]) -> Result<(u32, Vec<Command>), StreamError> {
    if stream.len() < HEADER_LEN {
        return Err(if stream.len() >= MAGIC.len() && &stream[..MAGIC.len()] != MAGIC {
            StreamError::BadMagic
        } else {
            StreamError::Truncated(stream.len())
        });
    }
    if &stream[..MAGIC.len()] != MAGIC {
        return Err(StreamError::BadMagic);
    }
    let version = le32(&stream[MAGIC.len()..]);
    if !(1..=3).contains(&version) {
        return Err(StreamError::Version(version));
    }
    let mut commands = Vec::new();
    let mut at = HEADER_LEN;
    while at < stream.len() {
        let header = stream.get(at..at + COMMAND_HEADER_LEN).ok_or(StreamError::Truncated(at))?;
        let len = le32(header) as usize;
        let cmd = le16(&header[4..]);
        let crc = le32(&header[6..]);
        let end = at.checked_add(COMMAND_HEADER_LEN + len).ok_or(StreamError::Truncated(at))?;
        let payload = stream.get(at + COMMAND_HEADER_LEN..end).ok_or(StreamError::Truncated(at))?;
        let mut zeroed = [0u8; COMMAND_HEADER_LEN];
        zeroed[..6].copy_from_slice(&header[..6]);
        if crc32c(crc32c(0, &zeroed), payload) != crc {
            return Err(StreamError::Checksum { cmd, at });
        }
        commands.push(Command { cmd, attrs: attributes(cmd, payload, version)? });
        at = end;
        if cmd == cmd::END {
            break;
        }
    }
    Ok((version, commands))
}

fn attributes(cmd: u16, mut payload: &[u8], version: u32) -> Result<HashMap<u16, Vec<u8>>, StreamError> {
    let mut attrs = HashMap::new();
    while !payload.is_empty() {
        let kind = le16(payload.get(..2).ok_or(StreamError::BadAttribute { cmd })?);
        if version >= 2 && kind == attr::DATA {
            attrs.insert(kind, payload[2..].to_vec());
            break;
        }
        let header = payload.get(..4).ok_or(StreamError::BadAttribute { cmd })?;
        let len = le16(&header[2..]) as usize;
        let value = payload.get(4..4 + len).ok_or(StreamError::BadAttribute { cmd })?;
        attrs.insert(kind, value.to_vec());
        payload = &payload[4 + len..];
    }
    Ok(attrs)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a stream the way the kernel does, for the parser's tests.
    /// A command number and its attributes (type, value).
    pub(crate) type TestCommand<'a> = (u16, Vec<(u16, &'a [u8])>);

    pub(crate) fn stream(commands: &[TestCommand<'_>]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&1u32.to_le_bytes());
        for (cmd, attrs) in commands {
            let mut payload = Vec::new();
            for (kind, value) in attrs {
                payload.extend_from_slice(&kind.to_le_bytes());
                payload.extend_from_slice(&(value.len() as u16).to_le_bytes());
                payload.extend_from_slice(value);
            }
            let mut header = Vec::new();
            header.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            header.extend_from_slice(&cmd.to_le_bytes());
            header.extend_from_slice(&[0; 4]);
            let crc = crc32c(crc32c(0, &header), &payload);
            header[6..].copy_from_slice(&crc.to_le_bytes());
            out.extend_from_slice(&header);
            out.extend_from_slice(&payload);
        }
        out
    }

    #[test]
    fn the_checksum_is_crc32c_without_inversion() {
        // The standard check value of CRC-32C is for init and xorout ~0.
        assert_eq!(!crc32c(!0, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn commands_and_attributes_are_read_and_damage_is_an_error() {
        let bytes = stream(&[
            (cmd::MKFILE, vec![(attr::PATH, b"o257-7-0")]),
            (cmd::RENAME, vec![(attr::PATH, b"o257-7-0"), (attr::PATH_TO, b"a/b")]),
            (cmd::END, vec![]),
        ]);
        let (version, commands) = parse(&bytes).unwrap();
        assert_eq!(version, 1);
        assert_eq!(commands.len(), 3);
        assert_eq!(commands[1].path(attr::PATH_TO).unwrap(), b"a/b");
        assert!(commands[0].path(attr::PATH_TO).is_err());
        for cut in [5, HEADER_LEN + 3, bytes.len() - 1] {
            assert!(parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[HEADER_LEN + COMMAND_HEADER_LEN + 5] ^= 1;
        assert!(matches!(parse(&flipped), Err(StreamError::Checksum { .. })));
        let mut magic = bytes;
        magic[0] = b'x';
        assert_eq!(parse(&magic), Err(StreamError::BadMagic));
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&1u32.to_le_bytes());
            with_magic.extend_from_slice(&bytes);
            let _ = parse(&with_magic);
            let _ = parse(&bytes);
        }
    }
}
