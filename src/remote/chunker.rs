//! Content-defined chunking (FastCDC 2020, the `fastcdc` crate pinned to one
//! exact version in Cargo.toml), seeded per repository.
//!
//! Boundaries depend only on the bytes from a chunk's start up to `max`
//! bytes on, so a file read through a window of any size is cut exactly as
//! if it were read whole: a chunk is cut only once `max` bytes past its
//! start are in the window, or at the end of the data.

use std::io::Read;

use fastcdc::v2020::{FastCDC, Normalization};

/// Chunk sizes; part of the repository format (stored in its config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChunkerParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

/// File data: about 1 MiB chunks.
pub const DATA_CHUNKS: ChunkerParams = ChunkerParams { min: 256 * 1024, avg: 1024 * 1024, max: 4 * 1024 * 1024 };
/// The tree stream of a manifest: smaller chunks, so a few changed entries
/// re-upload little of it.
pub const TREE_CHUNKS: ChunkerParams = ChunkerParams { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 };

/// Bytes read from a file at a time.
const WINDOW: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Chunker {
    params: ChunkerParams,
    seed: u64,
}

impl Chunker {
    pub fn new(params: ChunkerParams, seed: u64) -> Chunker {
        Chunker { params, seed }
    }

    fn cutter<'a>(&self, data: &'a [u8]) -> FastCDC<'a> {
        FastCDC::with_level_and_seed(
            data,
            self.params.min,
            self.params.avg,
            self.params.max,
            Normalization::Level1,
            self.seed,
        )
    }

    /// Cuts a buffer held whole; calls `each` with each chunk in order.
    pub fn chunk_slice<E>(&self, data: &[u8], mut each: impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        if data.len() <= self.params.min as usize {
            return if data.is_empty() { Ok(()) } else { each(data) };
        }
        for chunk in self.cutter(data) {
            each(&data[chunk.offset..chunk.offset + chunk.length])?;
        }
        Ok(())
    }

    /// Cuts up to `len` bytes of `reader` (fewer if it ends first) through a
    /// bounded window; calls `each` with each chunk in order. Returns the
    /// bytes read.
    pub fn chunk_reader<E>(
        &self,
        reader: &mut impl Read,
        len: u64,
        buffer: &mut Vec<u8>,
        read_error: impl Fn(std::io::Error) -> E,
        mut each: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<u64, E> {
        let max = self.params.max as usize;
        let capacity = WINDOW.max(2 * max);
        // Zeroed once per buffer, not per file: callers reuse it.
        if buffer.len() < capacity {
            buffer.resize(capacity, 0);
        }
        let mut filled = 0usize;
        let mut remaining = len;
        let mut total = 0u64;
        loop {
            // Fill the window.
            let mut at_end = false;
            while filled < capacity && remaining > 0 {
                let want = (capacity - filled).min(usize::try_from(remaining).unwrap_or(usize::MAX));
                let got = reader.read(&mut buffer[filled..filled + want]).map_err(&read_error)?;
                if got == 0 {
                    remaining = 0;
                    break;
                }
                filled += got;
                remaining -= got as u64;
                total += got as u64;
            }
            if remaining == 0 {
                at_end = true;
            }
            // Cut what is safe to cut.
            let window = &buffer[..filled];
            let mut start = 0usize;
            if at_end && filled <= self.params.min as usize {
                if filled > 0 {
                    each(window)?;
                }
                return Ok(total);
            }
            let cutter = self.cutter(window);
            while start < filled && (at_end || filled - start >= max) {
                let (_, end) = cutter.cut(start, filled - start);
                each(&window[start..end])?;
                start = end;
            }
            if at_end {
                return Ok(total);
            }
            buffer.copy_within(start..filled, 0);
            filled -= start;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::remote::pseudo_random;

    fn cuts_of_reader(chunker: &Chunker, data: &[u8]) -> Vec<usize> {
        let mut lengths = Vec::new();
        let mut buffer = Vec::new();
        chunker
            .chunk_reader::<std::io::Error>(
                &mut &data[..],
                data.len() as u64,
                &mut buffer,
                |e| e,
                |c| {
                    lengths.push(c.len());
                    Ok(())
                },
            )
            .unwrap();
        lengths
    }

    #[test]
    fn a_window_cuts_as_the_whole_buffer_does() {
        let chunker = Chunker::new(DATA_CHUNKS, 7);
        let data = pseudo_random(37 * 1024 * 1024 + 123, 1);
        let mut whole = Vec::new();
        chunker
            .chunk_slice::<()>(&data, |c| {
                whole.push(c.len());
                Ok(())
            })
            .unwrap();
        assert_eq!(cuts_of_reader(&chunker, &data), whole);
        assert_eq!(whole.iter().sum::<usize>(), data.len());
        let average = data.len() / whole.len();
        assert!((512 * 1024..2 * 1024 * 1024).contains(&average), "average chunk {average}");
    }

    #[test]
    fn an_insertion_moves_few_boundaries() {
        let chunker = Chunker::new(DATA_CHUNKS, 7);
        let data = pseudo_random(20 * 1024 * 1024, 2);
        let mut edited = data.clone();
        edited.splice(5_000_000..5_000_000, b"inserted bytes".iter().copied());
        let set = |d: &[u8]| {
            let mut chunks = std::collections::HashSet::new();
            chunker
                .chunk_slice::<()>(d, |c| {
                    chunks.insert(blake3::hash(c));
                    Ok(())
                })
                .unwrap();
            chunks
        };
        let (before, after) = (set(&data), set(&edited));
        let new = after.difference(&before).count();
        assert!(new <= 3, "{new} new chunks of {}", after.len());
    }

    #[test]
    fn small_and_empty_inputs() {
        let chunker = Chunker::new(DATA_CHUNKS, 7);
        assert!(cuts_of_reader(&chunker, b"").is_empty());
        assert_eq!(cuts_of_reader(&chunker, b"abc"), vec![3]);
        let seeded = Chunker::new(DATA_CHUNKS, 8);
        let data = pseudo_random(16 * 1024 * 1024, 3);
        assert_ne!(cuts_of_reader(&chunker, &data), cuts_of_reader(&seeded, &data), "the seed moves boundaries");
    }
}
