//! The persistent record of which chunks of a download are verified and on disk: an
//! append-only log, `<file id>.chunks` beside the partial content.
//!
//! Layout: a 40-byte header — `LCCHUNK1` (8 bytes) ‖ the manifest hash (32) — written
//! atomically when the download begins, then 16-byte records, one per chunk stored:
//! `index` (u32, big-endian) ‖ the first 12 bytes of that chunk's SHA-256.
//!
//! Why it can only under-report (docs/STORAGE.md, "Files (blobs)"): a record is written
//! only after the chunk it names was verified, written and fsynced, so no crash can leave
//! a record before its data. A crash can leave a record half written or, after a power
//! cut on some file systems, a tail of zeros: a record counts only if its index is in
//! range and its 12 bytes equal the manifest's hash of that chunk, which zeros or a torn
//! record do not (but with probability 2^-96). Records are always written at offsets
//! `40 + 16k`, so a torn one never shifts the ones after it. The log itself is not
//! fsynced: losing its tail only forgets chunks, which are fetched again.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::{Manifest, ManifestHash};

const MAGIC: &[u8; 8] = b"LCCHUNK1";
pub(crate) const HEADER_LEN: u64 = 40;
pub(crate) const RECORD_LEN: u64 = 16;
/// Records read per system call when loading: 64 KiB.
const RECORDS_PER_READ: u64 = 4096;

pub(crate) fn header(manifest_hash: &ManifestHash) -> [u8; HEADER_LEN as usize] {
    let mut out = [0u8; HEADER_LEN as usize];
    out[..8].copy_from_slice(MAGIC);
    out[8..].copy_from_slice(manifest_hash.as_bytes());
    out
}

/// The record saying chunk `index` (of `manifest`, which has it) is stored.
pub(crate) fn record(manifest: &Manifest, index: u32) -> [u8; RECORD_LEN as usize] {
    let mut out = [0u8; RECORD_LEN as usize];
    out[..4].copy_from_slice(&index.to_be_bytes());
    if let Some(hash) = manifest.chunk_hash(index) {
        out[4..].copy_from_slice(&hash[..12]);
    }
    out
}

/// Which chunks are stored, and how many bytes they make.
#[derive(Debug, Clone)]
pub(crate) struct ChunkSet {
    bits: Vec<u64>,
    count: u32,
    present: u32,
    have_bytes: u64,
}

impl ChunkSet {
    pub(crate) fn empty(count: u32) -> ChunkSet {
        ChunkSet {
            bits: vec![0; count.div_ceil(64) as usize],
            count,
            present: 0,
            have_bytes: 0,
        }
    }

    pub(crate) fn contains(&self, index: u32) -> bool {
        index < self.count && self.bits[(index / 64) as usize] & (1 << (index % 64)) != 0
    }

    /// Marks `index` (of `len` bytes); false if it was already marked or is out of range.
    pub(crate) fn insert(&mut self, index: u32, len: u32) -> bool {
        if index >= self.count || self.contains(index) {
            return false;
        }
        self.bits[(index / 64) as usize] |= 1 << (index % 64);
        self.present += 1;
        self.have_bytes += u64::from(len);
        true
    }

    pub(crate) fn is_full(&self) -> bool {
        self.present == self.count
    }

    pub(crate) fn missing_count(&self) -> u32 {
        self.count - self.present
    }

    pub(crate) fn have_bytes(&self) -> u64 {
        self.have_bytes
    }

    pub(crate) fn missing(&self) -> Vec<u32> {
        (0..self.count).filter(|&i| !self.contains(i)).collect()
    }
}

/// What a log on disk says.
#[derive(Debug)]
pub(crate) enum Loaded {
    /// The log of this manifest: the chunks it records, and where the next record goes.
    Chunks { set: ChunkSet, end: u64 },
    /// Not a log of this manifest (another manifest of the same file, or not a log at
    /// all): the download must start over.
    Unusable(String),
}

/// Reads the log in `file` for `manifest`, keeping only records that name one of its
/// chunks by index and hash.
pub(crate) fn load(
    file: &File,
    manifest: &Manifest,
    manifest_hash: &ManifestHash,
) -> io::Result<Loaded> {
    let len = file.metadata()?.len();
    let mut head = [0u8; HEADER_LEN as usize];
    if len < HEADER_LEN {
        return Ok(Loaded::Unusable(format!(
            "{len} bytes, shorter than a header"
        )));
    }
    file.read_exact_at(&mut head, 0)?;
    if head != header(manifest_hash) {
        return Ok(Loaded::Unusable(
            "written for another manifest, or not a chunk log".into(),
        ));
    }
    let records = (len - HEADER_LEN) / RECORD_LEN;
    let mut set = ChunkSet::empty(manifest.chunk_count());
    let mut buf = vec![0u8; (RECORDS_PER_READ * RECORD_LEN) as usize];
    let mut done = 0;
    while done < records {
        let n = (records - done).min(RECORDS_PER_READ);
        let block = &mut buf[..(n * RECORD_LEN) as usize];
        file.read_exact_at(block, HEADER_LEN + done * RECORD_LEN)?;
        for rec in block.chunks_exact(RECORD_LEN as usize) {
            let mut index = [0u8; 4];
            index.copy_from_slice(&rec[..4]);
            let index = u32::from_be_bytes(index);
            let matches = manifest
                .chunk_hash(index)
                .is_some_and(|hash| hash[..12] == rec[4..]);
            if let (true, Some(len)) = (matches, manifest.chunk_len(index)) {
                set.insert(index, len);
            }
        }
        done += n;
    }
    Ok(Loaded::Chunks {
        set,
        end: HEADER_LEN + records * RECORD_LEN,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobs::{sha256, FileId, CHUNK_SIZE};
    use std::fs::OpenOptions;

    fn manifest(count: u32) -> Manifest {
        let chunks = (0..count).map(|i| sha256(&i.to_be_bytes())).collect();
        let size = u64::from(count - 1) * u64::from(CHUNK_SIZE) + 7;
        Manifest::new(size, CHUNK_SIZE, FileId::from_bytes([5; 32]), chunks).unwrap()
    }

    fn log_with(bytes: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.chunks");
        std::fs::write(&path, bytes).unwrap();
        let file = OpenOptions::new().read(true).open(&path).unwrap();
        (dir, file)
    }

    fn chunks(loaded: Loaded) -> (Vec<u32>, u64, u64) {
        match loaded {
            Loaded::Chunks { set, end } => {
                let have = (0..set.count).filter(|&i| set.contains(i)).collect();
                (have, set.have_bytes(), end)
            }
            Loaded::Unusable(why) => panic!("unusable: {why}"),
        }
    }

    #[test]
    fn only_whole_records_naming_a_chunk_by_its_hash_count() {
        let m = manifest(5);
        let h = m.hash();
        let mut bytes = header(&h).to_vec();
        bytes.extend_from_slice(&record(&m, 3));
        bytes.extend_from_slice(&record(&m, 4)); // the short last chunk: 7 bytes
        bytes.extend_from_slice(&record(&m, 3)); // a repeat counts once
        let mut wrong_hash = record(&m, 1);
        wrong_hash[15] ^= 1;
        bytes.extend_from_slice(&wrong_hash);
        let mut out_of_range = record(&m, 0);
        out_of_range[..4].copy_from_slice(&5u32.to_be_bytes());
        bytes.extend_from_slice(&out_of_range);
        bytes.extend_from_slice(&[0u8; 16]); // a zeroed tail after a power cut
        bytes.extend_from_slice(&record(&m, 0)[..9]); // a torn last record
        let (_dir, file) = log_with(&bytes);
        let (have, have_bytes, end) = chunks(load(&file, &m, &h).unwrap());
        assert_eq!(have, vec![3, 4]);
        assert_eq!(have_bytes, u64::from(CHUNK_SIZE) + 7);
        assert_eq!(
            end,
            HEADER_LEN + 6 * RECORD_LEN,
            "the torn record is overwritten next"
        );
    }

    #[test]
    fn a_log_of_another_manifest_or_a_short_one_is_unusable() {
        let m = manifest(3);
        let other = manifest(4);
        let mut bytes = header(&other.hash()).to_vec();
        bytes.extend_from_slice(&record(&m, 0));
        let (_dir, file) = log_with(&bytes);
        assert!(matches!(
            load(&file, &m, &m.hash()).unwrap(),
            Loaded::Unusable(_)
        ));
        let (_dir, file) = log_with(&header(&m.hash())[..39]);
        assert!(matches!(
            load(&file, &m, &m.hash()).unwrap(),
            Loaded::Unusable(_)
        ));
        let (_dir, file) = log_with(&header(&m.hash()));
        assert_eq!(
            chunks(load(&file, &m, &m.hash()).unwrap()).0,
            Vec::<u32>::new()
        );
    }

    #[test]
    fn a_long_log_is_read_in_blocks() {
        let m = manifest(10_000);
        let mut bytes = header(&m.hash()).to_vec();
        for i in (0..10_000).rev().step_by(3) {
            bytes.extend_from_slice(&record(&m, i));
        }
        let (_dir, file) = log_with(&bytes);
        let (have, _, _) = chunks(load(&file, &m, &m.hash()).unwrap());
        assert_eq!(have.len(), 3334);
        assert!(have.iter().all(|i| (9999 - i) % 3 == 0));
    }

    #[test]
    fn the_chunk_set_counts_bytes_and_missing_chunks() {
        let mut set = ChunkSet::empty(130);
        assert!(set.insert(129, 5));
        assert!(!set.insert(129, 5));
        assert!(!set.insert(130, 5));
        assert!(set.insert(0, 10));
        assert_eq!(set.have_bytes(), 15);
        assert_eq!(set.missing_count(), 128);
        assert_eq!(set.missing().len(), 128);
        assert!(!set.is_full());
        assert!(ChunkSet::empty(0).is_full());
    }
}
