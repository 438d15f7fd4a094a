//! Packs on their way to the remote: a few uploads in flight on the remote
//! layer's runtime while the exporter goes on reading, bounded so memory
//! stays a few packs whatever the size of the export.

use std::collections::VecDeque;

use bytes::Bytes;

use super::crypto::MasterKey;
use super::error::{RemoteError, RemoteResult};
use super::objects::{runtime, Objects};
use super::pack::{index_key, pack_key, FinishedPack};

/// Packs uploaded at once: enough to keep the link busy, few enough that
/// an export's memory stays a few packs.
const IN_FLIGHT: usize = 2;

pub struct Uploader {
    objects: Objects,
    pending: VecDeque<tokio::task::JoinHandle<RemoteResult<u64>>>,
    uploaded_bytes: u64,
}

impl Uploader {
    pub fn new(objects: Objects) -> Uploader {
        Uploader { objects, pending: VecDeque::new(), uploaded_bytes: 0 }
    }

    /// Sends a pack, then its index (a pack is never indexed before it is
    /// stored); waits for the oldest upload when enough are in flight.
    pub fn submit(&mut self, pack: FinishedPack, key: &MasterKey) -> RemoteResult<()> {
        while self.pending.len() >= IN_FLIGHT {
            self.wait_oldest()?;
        }
        let objects = self.objects.clone();
        let sealed_index = Bytes::from(pack.index.seal(key));
        let size = pack.bytes.len() as u64;
        let bytes = Bytes::from(pack.bytes);
        let id = pack.id;
        self.pending.push_back(runtime().spawn(async move {
            objects.put_new_async(&pack_key(&id), bytes).await?;
            objects.put_new_async(&index_key(&id), sealed_index).await?;
            Ok(size)
        }));
        Ok(())
    }

    fn wait_oldest(&mut self) -> RemoteResult<()> {
        let Some(handle) = self.pending.pop_front() else { return Ok(()) };
        let size = runtime().block_on(handle).map_err(|e| RemoteError::Unavailable {
            remote: self.objects.remote().to_owned(),
            message: format!("an upload task failed: {e}"),
        })??;
        self.uploaded_bytes += size;
        Ok(())
    }

    /// Bytes of packs stored so far.
    pub fn uploaded_bytes(&self) -> u64 {
        self.uploaded_bytes
    }

    /// Waits for every upload; the first failure is the result.
    pub fn finish(&mut self) -> RemoteResult<u64> {
        let mut first_error = None;
        while !self.pending.is_empty() {
            if let Err(error) = self.wait_oldest() {
                first_error.get_or_insert(error);
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(self.uploaded_bytes),
        }
    }
}

impl Drop for Uploader {
    fn drop(&mut self) {
        for handle in self.pending.drain(..) {
            handle.abort();
        }
    }
}
