//! Workloads that run inside test and benchmark containers.
//!
//! The writer is how the tests prove a snapshot is consistent: it appends
//! self-checking fixed-size records to a file on the snapshotted volume and,
//! after each `write(2)` returns, publishes the counter of that record in a
//! progress file that lives *outside* the volume. A record whose counter the
//! test read from the progress file after the freeze completed had been
//! written before the freeze, so the snapshot must contain it, whole, and
//! every record before it.
//!
//! Record layout (`RECORD_SIZE` = 64 bytes, integers little-endian):
//!
//! | bytes  | field                                                  |
//! |--------|--------------------------------------------------------|
//! | 0..8   | magic `b"RPWLREC1"`                                    |
//! | 8..12  | writer id (u32)                                        |
//! | 12..16 | record size (u32, always 64), catches mixed formats    |
//! | 16..24 | counter (u64)                                          |
//! | 24..56 | filler: four u64 derived from (writer id, counter)     |
//! | 56..64 | FNV-1a 64 checksum of bytes 0..56                      |
//!
//! 64 divides the page size, so a record never straddles a page and one
//! `write(2)` of one record is never split across pages by the kernel.
//!
//! The small "busy" workloads (`sleep_forever`, `spin`, `serve_file`) give
//! benchmarks and restore tests a process to put in a cgroup.

use std::convert::Infallible;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Size of one record on disk.
pub const RECORD_SIZE: usize = 64;
/// First bytes of every record.
pub const RECORD_MAGIC: [u8; 8] = *b"RPWLREC1";

const RECORD_SIZE_U64: u64 = RECORD_SIZE as u64;
const RECORD_SIZE_U32: u32 = 64;
const _: () = assert!(RECORD_SIZE_U32 as usize == RECORD_SIZE);
const CHECKSUM_OFFSET: usize = RECORD_SIZE - 8;
const FILLER_RANGE: std::ops::Range<usize> = 24..CHECKSUM_OFFSET;

/// How often `serve_file` re-reads the watched file.
pub const SERVE_INTERVAL: Duration = Duration::from_millis(50);

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn u64_at(record: &[u8; RECORD_SIZE], offset: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&record[offset..offset + 8]);
    u64::from_le_bytes(bytes)
}

fn u32_at(record: &[u8; RECORD_SIZE], offset: usize) -> u32 {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&record[offset..offset + 4]);
    u32::from_le_bytes(bytes)
}

/// The record `writer_id` writes as its `counter`-th record. Deterministic, so
/// the verifier can compare whole records byte for byte.
#[must_use]
pub fn encode_record(writer_id: u32, counter: u64) -> [u8; RECORD_SIZE] {
    let mut record = [0u8; RECORD_SIZE];
    record[0..8].copy_from_slice(&RECORD_MAGIC);
    record[8..12].copy_from_slice(&writer_id.to_le_bytes());
    record[12..16].copy_from_slice(&RECORD_SIZE_U32.to_le_bytes());
    record[16..24].copy_from_slice(&counter.to_le_bytes());
    let seed = counter.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(writer_id);
    for (i, chunk) in record[FILLER_RANGE].chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&splitmix64(seed.wrapping_add(i as u64)).to_le_bytes());
    }
    let checksum = fnv1a64(&record[..CHECKSUM_OFFSET]);
    record[CHECKSUM_OFFSET..].copy_from_slice(&checksum.to_le_bytes());
    record
}

/// What a clean data file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyReport {
    /// Number of whole, valid records.
    pub records: u64,
    /// Counter of the last record, `None` for an empty file.
    pub last_counter: Option<u64>,
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.last_counter {
            Some(last) => write!(f, "ok: {} records, last counter {last}", self.records),
            None => write!(f, "ok: 0 records"),
        }
    }
}

/// Why a data file is not a consistent prefix of what the writer wrote.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{path}: torn tail: {partial_len} stray bytes at offset {offset} \
         (file length {file_len} is not a multiple of {RECORD_SIZE})"
    )]
    TornTail { path: PathBuf, offset: u64, partial_len: u64, file_len: u64 },
    #[error("{path}: record {index} at offset {offset}: bad magic {found:02x?}")]
    BadMagic { path: PathBuf, index: u64, offset: u64, found: [u8; 8] },
    #[error(
        "{path}: record {index} at offset {offset}: checksum {found:#018x}, \
         contents hash to {computed:#018x}"
    )]
    BadChecksum { path: PathBuf, index: u64, offset: u64, found: u64, computed: u64 },
    #[error("{path}: record {index} at offset {offset}: header says record size {found}, expected {RECORD_SIZE}")]
    BadRecordSize { path: PathBuf, index: u64, offset: u64, found: u32 },
    #[error("{path}: record {index} at offset {offset}: writer id {found}, expected {expected}")]
    WrongWriter { path: PathBuf, index: u64, offset: u64, expected: u32, found: u32 },
    #[error(
        "{path}: record {index} at offset {offset}: counter {found}, expected {expected} \
         (records missing, duplicated or reordered)"
    )]
    CounterMismatch { path: PathBuf, index: u64, offset: u64, expected: u64, found: u64 },
    #[error("{path}: record {index} at offset {offset}: filler differs from what counter {counter} derives")]
    BadFiller { path: PathBuf, index: u64, offset: u64, counter: u64 },
    #[error(
        "{path}: record {completed_before} had completed but the file ends after \
         {records} records (last counter {last_counter:?})"
    )]
    MissingCompleted { path: PathBuf, completed_before: u64, records: u64, last_counter: Option<u64> },
}

/// Checks that `data_file` holds exactly records 0, 1, 2, ... of `writer_id`,
/// each whole and intact, and, given `completed_before = Some(c)`, that it
/// holds at least records `0..=c`. Records beyond `c` are fine: a write can
/// complete before the freeze while its progress update did not.
///
/// Meant for a file nobody is appending to (a snapshot, or a frozen writer);
/// the length is taken once at the start.
pub fn verify(data_file: &Path, writer_id: u32, completed_before: Option<u64>) -> Result<VerifyReport, VerifyError> {
    let io_err = |source| VerifyError::Io { path: data_file.to_path_buf(), source };
    let file = File::open(data_file).map_err(io_err)?;
    let file_len = file.metadata().map_err(io_err)?.len();
    let partial_len = file_len % RECORD_SIZE_U64;
    if partial_len != 0 {
        return Err(VerifyError::TornTail {
            path: data_file.to_path_buf(),
            offset: file_len - partial_len,
            partial_len,
            file_len,
        });
    }
    let records = file_len / RECORD_SIZE_U64;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut record = [0u8; RECORD_SIZE];
    for index in 0..records {
        let offset = index * RECORD_SIZE_U64;
        reader.read_exact(&mut record).map_err(io_err)?;
        check_record(data_file, &record, writer_id, index, offset)?;
    }
    let last_counter = records.checked_sub(1);
    if let Some(completed) = completed_before {
        if last_counter.is_none_or(|last| last < completed) {
            return Err(VerifyError::MissingCompleted {
                path: data_file.to_path_buf(),
                completed_before: completed,
                records,
                last_counter,
            });
        }
    }
    Ok(VerifyReport { records, last_counter })
}

fn check_record(
    path: &Path,
    record: &[u8; RECORD_SIZE],
    writer_id: u32,
    index: u64,
    offset: u64,
) -> Result<(), VerifyError> {
    let path = || path.to_path_buf();
    if record[0..8] != RECORD_MAGIC {
        let mut found = [0u8; 8];
        found.copy_from_slice(&record[0..8]);
        return Err(VerifyError::BadMagic { path: path(), index, offset, found });
    }
    let found = u64_at(record, CHECKSUM_OFFSET);
    let computed = fnv1a64(&record[..CHECKSUM_OFFSET]);
    if found != computed {
        return Err(VerifyError::BadChecksum { path: path(), index, offset, found, computed });
    }
    let size = u32_at(record, 12);
    if size != RECORD_SIZE_U32 {
        return Err(VerifyError::BadRecordSize { path: path(), index, offset, found: size });
    }
    let found_writer = u32_at(record, 8);
    if found_writer != writer_id {
        return Err(VerifyError::WrongWriter { path: path(), index, offset, expected: writer_id, found: found_writer });
    }
    let counter = u64_at(record, 16);
    if counter != index {
        return Err(VerifyError::CounterMismatch { path: path(), index, offset, expected: index, found: counter });
    }
    if *record != encode_record(writer_id, counter) {
        return Err(VerifyError::BadFiller { path: path(), index, offset, counter });
    }
    Ok(())
}

/// Why the writer stopped before its `max_records`.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("opening {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("writing record {counter} to {path}: {source}")]
    Write { path: PathBuf, counter: u64, source: io::Error },
    #[error(
        "short write of record {counter} to {path}: {written} of {RECORD_SIZE} bytes; the file now has a torn record"
    )]
    ShortWrite { path: PathBuf, counter: u64, written: usize },
    #[error("recording progress {counter} in {path}: {source}")]
    Progress { path: PathBuf, counter: u64, source: io::Error },
    #[error("existing data file cannot be appended to: {0}")]
    Resume(#[from] VerifyError),
}

/// Appends records to `data_file` (opened `O_APPEND|O_CREAT`), one `write(2)`
/// per record, and after each completed write stores its counter in
/// `progress_file` (8 bytes, little-endian, `pwrite` at offset 0).
///
/// Counters start at 0 for a new or empty file. An existing file is verified
/// first and the writer continues after its last record, so a writer restarted
/// on restored data keeps the file verifiable; a file that fails verification
/// is an error rather than something to append garbage after. The progress
/// file is truncated at start, so `read_progress` says `None` until the first
/// record of this run completes.
///
/// Writes `max_records` records (this run), or forever when `None`, sleeping
/// `pause` between records. A short write stops the writer with
/// [`WriterError::ShortWrite`]: the data file is then torn and the run is void.
pub fn run_writer(
    data_file: &Path,
    progress_file: &Path,
    writer_id: u32,
    max_records: Option<u64>,
    pause: Option<Duration>,
) -> Result<(), WriterError> {
    let first_counter = match fs::metadata(data_file) {
        Ok(meta) if meta.len() > 0 => verify(data_file, writer_id, None)?.records,
        _ => 0,
    };
    let data = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(data_file)
        .map_err(|source| WriterError::Open { path: data_file.to_path_buf(), source })?;
    let progress = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(progress_file)
        .map_err(|source| WriterError::Open { path: progress_file.to_path_buf(), source })?;

    let mut counter = first_counter;
    loop {
        if max_records.is_some_and(|max| counter - first_counter >= max) {
            return Ok(());
        }
        write_record(&data, data_file, writer_id, counter)?;
        store_progress(&progress, progress_file, counter)?;
        counter += 1;
        if let Some(pause) = pause {
            std::thread::sleep(pause);
        }
    }
}

fn write_record(data: &File, path: &Path, writer_id: u32, counter: u64) -> Result<(), WriterError> {
    let record = encode_record(writer_id, counter);
    loop {
        // One write(2) per record: a record is either in the file or not,
        // which is what lets `verify` call any partial record a bug.
        match (&*data).write(&record) {
            Ok(RECORD_SIZE) => return Ok(()),
            Ok(written) => return Err(WriterError::ShortWrite { path: path.to_path_buf(), counter, written }),
            // EINTR before any byte was written: nothing landed, try again.
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(source) => return Err(WriterError::Write { path: path.to_path_buf(), counter, source }),
        }
    }
}

fn store_progress(progress: &File, path: &Path, counter: u64) -> Result<(), WriterError> {
    let err = |source| WriterError::Progress { path: path.to_path_buf(), counter, source };
    loop {
        match progress.write_at(&counter.to_le_bytes(), 0) {
            Ok(8) => return Ok(()),
            Ok(n) => return Err(err(io::Error::new(ErrorKind::WriteZero, format!("short pwrite: {n} of 8 bytes")))),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(err(e)),
        }
    }
}

/// Counter of the last record the writer completed, or `None` when the
/// progress file does not exist yet or no record has completed.
pub fn read_progress(progress_file: &Path) -> io::Result<Option<u64>> {
    let file = match File::open(progress_file) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = [0u8; 8];
    let mut filled = 0;
    while filled < bytes.len() {
        match file.read_at(&mut bytes[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    match filled {
        0 => Ok(None),
        8 => Ok(Some(u64::from_le_bytes(bytes))),
        n => Err(io::Error::new(
            ErrorKind::InvalidData,
            format!("{}: progress file holds {n} bytes, expected 0 or 8", progress_file.display()),
        )),
    }
}

/// A process for a container that only has to exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusyKind {
    /// Sleeps forever: freezes instantly, costs nothing.
    Sleep,
    /// Burns one CPU: the worst case for freeze latency accounting.
    Spin,
    /// See [`serve_file`].
    Serve { watch: PathBuf, status: PathBuf },
    /// See [`stream_into`].
    Stream { dir: PathBuf, mib_per_second: u64 },
}

/// Runs a busy workload until killed. Returns only on error.
pub fn run_busy(kind: &BusyKind) -> io::Result<Infallible> {
    match kind {
        BusyKind::Sleep => sleep_forever(),
        BusyKind::Spin => spin(),
        BusyKind::Serve { watch, status } => serve_file(watch, status),
        BusyKind::Stream { dir, mib_per_second } => stream_into(dir, *mib_per_second),
    }
}

/// Size of each file [`stream_into`] writes before it starts the next.
const STREAM_FILE_BYTES: u64 = 64 << 20;

/// A busy neighbour: buffered writes (never synced: the kernel writes them
/// back when it will) of 1 MiB blocks into `dir`, paced to `mib_per_second`,
/// into two files in turn, each truncated when it is taken up again, so
/// that the filesystem never holds more than 128 MiB of it.
pub fn stream_into(dir: &Path, mib_per_second: u64) -> io::Result<Infallible> {
    let block = vec![0x5au8; 1 << 20];
    let pace = Duration::from_secs(1) / u32::try_from(mib_per_second.max(1)).unwrap_or(u32::MAX);
    let started = Instant::now();
    let mut written: u32 = 0;
    let mut turn = 0u64;
    loop {
        let mut file = File::create(dir.join(format!("stream-{}", turn % 2)))?;
        turn += 1;
        for _ in 0..STREAM_FILE_BYTES >> 20 {
            file.write_all(&block)?;
            written += 1;
            if let Some(wait) = (pace * written).checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
}

pub fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

pub fn spin() -> ! {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

/// Every [`SERVE_INTERVAL`], reads `watch` (on the container's volume) and
/// replaces `status` (outside it) with exactly the bytes read, or with
/// `"!ERR <error>\n"` if the read failed. The replacement is a rename, so a
/// reader never sees half a status. Tests show the process is alive after a
/// restore by deleting `status` and waiting for it to come back with the
/// restored contents. Returns only when the status file cannot be written.
pub fn serve_file(watch: &Path, status: &Path) -> io::Result<Infallible> {
    let mut tmp_name = status.as_os_str().to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp_name);
    loop {
        let contents = match fs::read(watch) {
            Ok(bytes) => bytes,
            Err(e) => format!("!ERR {e}\n").into_bytes(),
        };
        fs::write(&tmp, &contents)?;
        fs::rename(&tmp, status)?;
        std::thread::sleep(SERVE_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn write_records(path: &Path, writer_id: u32, counters: impl IntoIterator<Item = u64>) {
        let mut bytes = Vec::new();
        for c in counters {
            bytes.extend_from_slice(&encode_record(writer_id, c));
        }
        fs::write(path, bytes).unwrap();
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        write_records(&data, 7, 0..100);
        let report = verify(&data, 7, Some(99)).unwrap();
        assert_eq!(report, VerifyReport { records: 100, last_counter: Some(99) });
        assert_eq!(verify(&data, 7, None).unwrap().records, 100);
        let record = encode_record(7, 42);
        assert_eq!(record[0..8], RECORD_MAGIC);
        assert_eq!(u32_at(&record, 8), 7);
        assert_eq!(u64_at(&record, 16), 42);
        assert_ne!(encode_record(7, 42), encode_record(8, 42));
    }

    #[test]
    fn empty_file_is_clean_unless_a_record_completed() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        fs::write(&data, b"").unwrap();
        assert_eq!(verify(&data, 1, None).unwrap(), VerifyReport { records: 0, last_counter: None });
        let err = verify(&data, 1, Some(0)).unwrap_err();
        assert!(matches!(err, VerifyError::MissingCompleted { records: 0, .. }), "{err}");
    }

    #[test]
    fn detects_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        write_records(&data, 1, 0..10);
        let cut = 9 * RECORD_SIZE_U64 + 17;
        File::options().write(true).open(&data).unwrap().set_len(cut).unwrap();
        match verify(&data, 1, None).unwrap_err() {
            VerifyError::TornTail { offset, partial_len, file_len, .. } => {
                assert_eq!((offset, partial_len, file_len), (9 * RECORD_SIZE_U64, 17, cut));
            }
            other => panic!("expected TornTail, got {other}"),
        }
    }

    #[test]
    fn detects_flipped_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        // A flip anywhere in any field of record 5 must be caught.
        for byte in 0..RECORD_SIZE {
            write_records(&data, 1, 0..10);
            let mut bytes = fs::read(&data).unwrap();
            bytes[5 * RECORD_SIZE + byte] ^= 0x01;
            fs::write(&data, bytes).unwrap();
            let err = verify(&data, 1, None).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("record 5 at offset 320"), "byte {byte}: {msg}");
        }
    }

    #[test]
    fn detects_missing_middle_record() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        write_records(&data, 1, (0..10).filter(|&c| c != 4));
        match verify(&data, 1, None).unwrap_err() {
            VerifyError::CounterMismatch { index, expected, found, .. } => {
                assert_eq!((index, expected, found), (4, 4, 5));
            }
            other => panic!("expected CounterMismatch, got {other}"),
        }
    }

    #[test]
    fn detects_other_writers_records() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        write_records(&data, 2, 0..3);
        let err = verify(&data, 1, None).unwrap_err();
        assert!(matches!(err, VerifyError::WrongWriter { expected: 1, found: 2, .. }), "{err}");
    }

    #[test]
    fn detects_missing_completed_record() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        write_records(&data, 1, 0..10);
        assert!(verify(&data, 1, Some(9)).is_ok());
        let err = verify(&data, 1, Some(10)).unwrap_err();
        assert!(
            matches!(
                err,
                VerifyError::MissingCompleted { completed_before: 10, records: 10, last_counter: Some(9), .. }
            ),
            "{err}"
        );
    }

    #[test]
    fn progress_missing_or_empty_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let progress = dir.path().join("progress");
        assert_eq!(read_progress(&progress).unwrap(), None);
        fs::write(&progress, b"").unwrap();
        assert_eq!(read_progress(&progress).unwrap(), None);
        fs::write(&progress, b"abc").unwrap();
        assert!(read_progress(&progress).is_err());
    }

    #[test]
    fn writer_output_verifies_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let (data, progress) = (dir.path().join("data"), dir.path().join("progress"));
        run_writer(&data, &progress, 3, Some(500), None).unwrap();
        assert_eq!(read_progress(&progress).unwrap(), Some(499));
        assert_eq!(verify(&data, 3, Some(499)).unwrap().records, 500);
        // A restarted writer continues the sequence instead of restarting at 0.
        run_writer(&data, &progress, 3, Some(10), None).unwrap();
        assert_eq!(read_progress(&progress).unwrap(), Some(509));
        assert_eq!(verify(&data, 3, Some(509)).unwrap().last_counter, Some(509));
        // It refuses to append after a torn tail.
        fs::OpenOptions::new().append(true).open(&data).unwrap().write_all(b"xx").unwrap();
        let err = run_writer(&data, &progress, 3, Some(1), None).unwrap_err();
        assert!(matches!(err, WriterError::Resume(VerifyError::TornTail { .. })), "{err}");
    }

    /// The property the snapshot tests rely on, without root: read progress
    /// first, copy the file while the writer keeps going, and the copy holds
    /// every record the progress said had completed.
    #[test]
    fn copy_taken_while_writing_holds_every_completed_record() {
        let dir = tempfile::tempdir().unwrap();
        let (data, progress) = (dir.path().join("data"), dir.path().join("progress"));
        let writer = {
            let (data, progress) = (data.clone(), progress.clone());
            std::thread::spawn(move || run_writer(&data, &progress, 9, Some(200_000), None))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut checked = 0;
        while checked < 20 && Instant::now() < deadline {
            let Some(completed) = read_progress(&progress).unwrap() else {
                continue;
            };
            let copy = dir.path().join("copy");
            fs::copy(&data, &copy).unwrap();
            // A plain copy may catch the tail of an in-flight write; a frozen
            // snapshot would not. Trim to whole records for this check only.
            let len = fs::metadata(&copy).unwrap().len();
            File::options().write(true).open(&copy).unwrap().set_len(len - len % RECORD_SIZE_U64).unwrap();
            let report = verify(&copy, 9, Some(completed)).unwrap();
            assert!(report.last_counter.unwrap() >= completed);
            checked += 1;
        }
        writer.join().unwrap().unwrap();
        assert!(checked > 0, "writer made no progress in 10 s");
        assert_eq!(verify(&data, 9, read_progress(&progress).unwrap()).unwrap().records, 200_000);
    }

    #[test]
    fn serve_file_mirrors_the_watched_file() {
        let dir = tempfile::tempdir().unwrap();
        let (watch, status) = (dir.path().join("watch"), dir.path().join("status"));
        fs::write(&watch, b"before").unwrap();
        {
            let (watch, status) = (watch.clone(), status.clone());
            // Detached: the thread dies with the test process.
            std::thread::spawn(move || serve_file(&watch, &status));
        }
        let wait_for = |want: &[u8]| {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if fs::read(&status).ok().as_deref() == Some(want) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            panic!("status never became {:?}", String::from_utf8_lossy(want));
        };
        wait_for(b"before");
        fs::write(&watch, b"after").unwrap();
        wait_for(b"after");
    }
}
