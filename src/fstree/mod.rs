//! TEMPORARY STUB (replaced by the fstree branch).
#![allow(unused)]
use std::fs::File;
use std::path::Path;
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Metadata {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime_ns: i64,
    pub mtime_ns: i64,
    pub size: u64,
    pub rdev: u64,
    pub symlink_target: Option<Vec<u8>>,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub ino: u64,
    pub nlink: u64,
    pub ctime_ns: i64,
}
#[derive(Debug, thiserror::Error)]
#[error("stub")]
pub struct FsTreeError;
pub fn read_metadata(root: &Path, rel: &[u8]) -> Result<Metadata, FsTreeError> {
    unimplemented!()
}
pub fn walk(root: &Path) -> Result<Vec<(Vec<u8>, Metadata)>, FsTreeError> {
    unimplemented!()
}
pub fn data_ranges(file: &File, size: u64) -> Result<Vec<(u64, u64)>, FsTreeError> {
    unimplemented!()
}
pub struct Materializer;
impl Materializer {
    pub fn new(root: &Path) -> Result<Materializer, FsTreeError> {
        unimplemented!()
    }
    pub fn create(
        &mut self,
        rel: &[u8],
        meta: &Metadata,
        hardlink_to: Option<&[u8]>,
    ) -> Result<Option<File>, FsTreeError> {
        unimplemented!()
    }
    pub fn finish_file(&mut self, rel: &[u8], file: File, meta: &Metadata) -> Result<(), FsTreeError> {
        unimplemented!()
    }
    pub fn finish(self) -> Result<(), FsTreeError> {
        unimplemented!()
    }
}
pub fn compare_trees(a: &Path, b: &Path) -> Result<Vec<String>, FsTreeError> {
    unimplemented!()
}
