//! A file's manifest: its size, chunk size, whole-file SHA-256 (the file id) and the
//! SHA-256 of every chunk, in a compact versioned binary encoding.
//!
//! Pure: bytes in, values out, no I/O, nothing from the rest of the crate but the
//! constants and digest types of `blobs` — so the transfer layer could take this module
//! as it is if it ever needs it outside `storage`.
//!
//! Encoding, version 1 (all integers big-endian):
//!
//! | offset | bytes | field |
//! | --- | --- | --- |
//! | 0 | 1 | version = 1 |
//! | 1 | 8 | size: the file's length in bytes, at most `MAX_FILE_SIZE` |
//! | 9 | 4 | chunk size, `MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE`, a multiple of 4096 |
//! | 13 | 4 | chunk count = ⌈size / chunk size⌉ |
//! | 17 | 32 | file id: SHA-256 of the whole content |
//! | 49 | 32 × count | SHA-256 of each chunk, in order |
//!
//! Every chunk is `chunk size` long except the last, which holds the rest (an empty
//! file has no chunk). The decoder accepts exactly this and nothing else: no trailing
//! bytes, no count that disagrees with the size, and the two cases where the chunk hashes
//! fix the file id (one chunk: it is the whole file; no chunk: the empty file) must agree.

use sha2::{Digest, Sha256};

use super::{
    sha256, FileId, ManifestHash, Sha256Digest, MAX_CHUNK_SIZE, MAX_FILE_SIZE,
    MAX_MANIFEST_PAGE_HASHES, MIN_CHUNK_SIZE,
};

/// The only version this build writes and reads.
pub const MANIFEST_VERSION: u8 = 1;
/// Bytes before the chunk hashes.
pub const MANIFEST_HEADER_LEN: usize = 49;
const HASH_LEN: usize = 32;

/// Why bytes are not a manifest, or not the one expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is truncated: {found} bytes, at least {needed} needed")]
    Truncated { needed: usize, found: usize },
    #[error("manifest version {0} is not supported (this build reads version 1)")]
    UnsupportedVersion(u8),
    #[error("file size {size} is above the maximum of {max} bytes")]
    TooLarge { size: u64, max: u64 },
    #[error("chunk size {0} is not a multiple of 4096 between 64 KiB and 192 KiB")]
    ChunkSize(u32),
    #[error("manifest declares {declared} chunks but its size needs {expected}")]
    ChunkCount { declared: u32, expected: u64 },
    #[error("manifest has {0} bytes after its last chunk hash")]
    TrailingBytes(usize),
    #[error("manifest is inconsistent: {0}")]
    Inconsistent(&'static str),
    #[error("manifest hash is {found}, the file message says {expected}")]
    HashMismatch {
        expected: ManifestHash,
        found: ManifestHash,
    },
    #[error("manifest describes {field} {found}, the file message says {expected}")]
    Describes {
        field: &'static str,
        expected: String,
        found: String,
    },
    #[error("a manifest page holds 1 to 6144 chunk hashes, not {0}")]
    PageSize(u32),
    #[error("manifest page {index} does not exist (there are {count})")]
    NoSuchPage { index: u32, count: u32 },
    #[error("manifest page {index} must be {expected} bytes, not {found}")]
    PageLength {
        index: u32,
        expected: usize,
        found: usize,
    },
    #[error("manifest is incomplete: {missing} pages missing")]
    Incomplete { missing: u32 },
}

/// Why a chunk was refused: it is not the chunk the manifest describes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkMismatch {
    #[error("chunk {index} does not exist (the file has {count} chunks)")]
    NoSuchChunk { index: u32, count: u32 },
    #[error("chunk {index} is {found} bytes, the manifest says {expected}")]
    Length {
        index: u32,
        expected: u32,
        found: usize,
    },
    #[error("chunk {index} does not match its SHA-256 in the manifest")]
    Hash { index: u32 },
}

impl ChunkMismatch {
    /// The chunk refused.
    pub fn index(&self) -> u32 {
        match self {
            ChunkMismatch::NoSuchChunk { index, .. }
            | ChunkMismatch::Length { index, .. }
            | ChunkMismatch::Hash { index } => *index,
        }
    }
}

/// A valid manifest: every value of this type passed the checks of `decode` (or was
/// computed from content), so its size, chunk size and count agree.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Manifest {
    size: u64,
    chunk_size: u32,
    file_id: FileId,
    chunks: Vec<Sha256Digest>,
    /// [`Manifest::hash`], computed once: a node asks for it on every request it serves
    /// (it is SHA-256 over 32 bytes per chunk, 256 KiB for a 1 GiB file).
    hash: ManifestHash,
}

impl Manifest {
    /// Checks and builds; the one way in besides `decode`.
    pub(crate) fn new(
        size: u64,
        chunk_size: u32,
        file_id: FileId,
        chunks: Vec<Sha256Digest>,
    ) -> Result<Manifest, ManifestError> {
        let expected = check_shape(size, chunk_size)?;
        if chunks.len() as u64 != expected {
            return Err(ManifestError::ChunkCount {
                declared: u32::try_from(chunks.len()).unwrap_or(u32::MAX),
                expected,
            });
        }
        match chunks.as_slice() {
            [] if file_id != FileId::of_content(b"") => {
                return Err(ManifestError::Inconsistent(
                    "an empty file's id must be the SHA-256 of nothing",
                ))
            }
            [only] if only != file_id.as_bytes() => {
                return Err(ManifestError::Inconsistent(
                    "a one-chunk file's chunk hash must be its file id",
                ))
            }
            _ => {}
        }
        let mut manifest = Manifest {
            size,
            chunk_size,
            file_id,
            chunks,
            hash: ManifestHash::from_bytes([0; 32]),
        };
        let mut hasher = Sha256::new();
        hasher.update(manifest.encode());
        manifest.hash = ManifestHash::from_bytes(hasher.finalize().into());
        Ok(manifest)
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    pub fn file_id(&self) -> FileId {
        self.file_id
    }

    pub fn chunk_count(&self) -> u32 {
        // At most MAX_FILE_SIZE / MIN_CHUNK_SIZE = 2^20 (checked at construction).
        u32::try_from(self.chunks.len()).unwrap_or(u32::MAX)
    }

    pub fn chunk_hash(&self, index: u32) -> Option<&Sha256Digest> {
        self.chunks.get(usize::try_from(index).ok()?)
    }

    /// Where chunk `index` starts in the file.
    pub fn chunk_offset(&self, index: u32) -> Option<u64> {
        (index < self.chunk_count()).then(|| u64::from(index) * u64::from(self.chunk_size))
    }

    /// Chunk `index`'s length: the chunk size, or what is left for the last one.
    pub fn chunk_len(&self, index: u32) -> Option<u32> {
        let offset = self.chunk_offset(index)?;
        let len = (self.size - offset).min(u64::from(self.chunk_size));
        // len ≤ chunk_size, a u32.
        u32::try_from(len).ok()
    }

    /// Checks that `bytes` are chunk `index` of this file: length first (cheap), then
    /// SHA-256.
    pub fn verify_chunk(&self, index: u32, bytes: &[u8]) -> Result<(), ChunkMismatch> {
        let (Some(expected), Some(hash)) = (self.chunk_len(index), self.chunk_hash(index)) else {
            return Err(ChunkMismatch::NoSuchChunk {
                index,
                count: self.chunk_count(),
            });
        };
        if bytes.len() != expected as usize {
            return Err(ChunkMismatch::Length {
                index,
                expected,
                found: bytes.len(),
            });
        }
        if &sha256(bytes) != hash {
            return Err(ChunkMismatch::Hash { index });
        }
        Ok(())
    }

    pub fn encoded_len(&self) -> usize {
        MANIFEST_HEADER_LEN + HASH_LEN * self.chunks.len()
    }

    /// The version 1 encoding (module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push(MANIFEST_VERSION);
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.chunk_size.to_be_bytes());
        out.extend_from_slice(&self.chunk_count().to_be_bytes());
        out.extend_from_slice(self.file_id.as_bytes());
        for hash in &self.chunks {
            out.extend_from_slice(hash);
        }
        out
    }

    /// The strict decoder: exactly one valid version 1 manifest, or a typed error.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let Some((&version, rest)) = bytes.split_first() else {
            return Err(ManifestError::Truncated {
                needed: MANIFEST_HEADER_LEN,
                found: 0,
            });
        };
        if version != MANIFEST_VERSION {
            return Err(ManifestError::UnsupportedVersion(version));
        }
        let Some((header, hashes)) = rest.split_first_chunk::<{ MANIFEST_HEADER_LEN - 1 }>() else {
            return Err(ManifestError::Truncated {
                needed: MANIFEST_HEADER_LEN,
                found: bytes.len(),
            });
        };
        let (size, header) = split_array::<8>(header);
        let (chunk_size, header) = split_array::<4>(header);
        let (count, file_id) = split_array::<4>(header);
        let size = u64::from_be_bytes(size);
        let chunk_size = u32::from_be_bytes(chunk_size);
        let declared = u32::from_be_bytes(count);
        let expected = check_shape(size, chunk_size)?;
        if u64::from(declared) != expected {
            return Err(ManifestError::ChunkCount { declared, expected });
        }
        // declared ≤ 2^20 here, so this cannot overflow.
        let needed = HASH_LEN * declared as usize;
        if hashes.len() < needed {
            return Err(ManifestError::Truncated {
                needed: MANIFEST_HEADER_LEN + needed,
                found: bytes.len(),
            });
        }
        if hashes.len() > needed {
            return Err(ManifestError::TrailingBytes(hashes.len() - needed));
        }
        let chunks = hashes
            .chunks_exact(HASH_LEN)
            .map(|h| {
                let mut d = [0u8; HASH_LEN];
                d.copy_from_slice(h);
                d
            })
            .collect();
        let file_id = FileId::from_bytes(split_array::<32>(file_id).0);
        Manifest::new(size, chunk_size, file_id, chunks)
    }

    /// SHA-256 of the encoding: the value the author's signed file message carries.
    pub fn hash(&self) -> ManifestHash {
        self.hash
    }

    /// Checks this manifest against what the author's signed file message says of the
    /// file: its id, size and manifest hash. A manifest that passes is the one the author
    /// described, whoever relayed it.
    pub fn check_describes(
        &self,
        file_id: FileId,
        size: u64,
        manifest_hash: ManifestHash,
    ) -> Result<(), ManifestError> {
        let found = self.hash();
        if found != manifest_hash {
            return Err(ManifestError::HashMismatch {
                expected: manifest_hash,
                found,
            });
        }
        if self.file_id != file_id {
            return Err(ManifestError::Describes {
                field: "file id",
                expected: file_id.to_string(),
                found: self.file_id.to_string(),
            });
        }
        if self.size != size {
            return Err(ManifestError::Describes {
                field: "size",
                expected: size.to_string(),
                found: self.size.to_string(),
            });
        }
        Ok(())
    }

    /// How many pages of `per_page` chunk hashes the chunk list makes (0 for an empty
    /// file: its manifest is all header, which the file message already says).
    pub fn page_count(&self, per_page: u32) -> Result<u32, ManifestError> {
        page_count(self.chunk_count(), per_page)
    }

    /// Page `index`: chunk hashes `index × per_page ..` (at most `per_page` of them),
    /// concatenated. The header is not in any page: its fields are in the signed file
    /// message, and [`ManifestAssembly`] takes them from there.
    pub fn page(&self, index: u32, per_page: u32) -> Result<Vec<u8>, ManifestError> {
        let count = self.page_count(per_page)?;
        if index >= count {
            return Err(ManifestError::NoSuchPage { index, count });
        }
        let range = page_range(self.chunk_count(), index, per_page);
        Ok(self.chunks[range].concat())
    }
}

/// A manifest put together from pages fetched one by one (perhaps from several peers),
/// checked against the manifest hash from the signed file message once every page is in.
/// Until then a page can only be checked for its length: a bad page is found at the end,
/// and the caller starts again (from another peer).
#[derive(Debug)]
pub struct ManifestAssembly {
    expected: ManifestHash,
    size: u64,
    chunk_size: u32,
    file_id: FileId,
    per_page: u32,
    chunks: Vec<Sha256Digest>,
    have: Vec<bool>,
}

impl ManifestAssembly {
    /// For the file the signed message describes. Allocates the chunk list up front
    /// (at most 32 MiB, for a 64 GiB file at the smallest chunk size).
    pub fn new(
        file_id: FileId,
        size: u64,
        chunk_size: u32,
        manifest_hash: ManifestHash,
        per_page: u32,
    ) -> Result<ManifestAssembly, ManifestError> {
        let count = check_shape(size, chunk_size)?;
        // count ≤ 2^20: fits u32 and usize.
        let count = u32::try_from(count).map_err(|_| ManifestError::TooLarge {
            size,
            max: MAX_FILE_SIZE,
        })?;
        let pages = page_count(count, per_page)?;
        Ok(ManifestAssembly {
            expected: manifest_hash,
            size,
            chunk_size,
            file_id,
            per_page,
            chunks: vec![[0u8; HASH_LEN]; count as usize],
            have: vec![false; pages as usize],
        })
    }

    pub fn page_count(&self) -> u32 {
        u32::try_from(self.have.len()).unwrap_or(u32::MAX)
    }

    pub fn missing_pages(&self) -> Vec<u32> {
        (0..self.page_count())
            .filter(|&i| !self.have[i as usize])
            .collect()
    }

    pub fn is_complete(&self) -> bool {
        self.have.iter().all(|&h| h)
    }

    /// Takes page `index` (a page already taken is replaced: the later copy may come from
    /// a peer that is right where the first was not; the hash decides at the end).
    pub fn add_page(&mut self, index: u32, bytes: &[u8]) -> Result<(), ManifestError> {
        let count = self.page_count();
        if index >= count {
            return Err(ManifestError::NoSuchPage { index, count });
        }
        let range = page_range(self.chunks.len() as u32, index, self.per_page);
        let expected = range.len() * HASH_LEN;
        if bytes.len() != expected {
            return Err(ManifestError::PageLength {
                index,
                expected,
                found: bytes.len(),
            });
        }
        for (slot, hash) in self.chunks[range]
            .iter_mut()
            .zip(bytes.chunks_exact(HASH_LEN))
        {
            slot.copy_from_slice(hash);
        }
        self.have[index as usize] = true;
        Ok(())
    }

    /// The manifest, once every page is in and it hashes to the expected manifest hash.
    pub fn finish(self) -> Result<Manifest, ManifestError> {
        let missing = self.have.iter().filter(|&&h| !h).count();
        if missing > 0 {
            return Err(ManifestError::Incomplete {
                missing: u32::try_from(missing).unwrap_or(u32::MAX),
            });
        }
        let manifest = Manifest::new(self.size, self.chunk_size, self.file_id, self.chunks)?;
        let found = manifest.hash();
        if found != self.expected {
            return Err(ManifestError::HashMismatch {
                expected: self.expected,
                found,
            });
        }
        Ok(manifest)
    }
}

/// Checks size and chunk size; returns the chunk count they make.
fn check_shape(size: u64, chunk_size: u32) -> Result<u64, ManifestError> {
    if size > MAX_FILE_SIZE {
        return Err(ManifestError::TooLarge {
            size,
            max: MAX_FILE_SIZE,
        });
    }
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) || !chunk_size.is_multiple_of(4096)
    {
        return Err(ManifestError::ChunkSize(chunk_size));
    }
    Ok(size.div_ceil(u64::from(chunk_size)))
}

fn page_count(chunks: u32, per_page: u32) -> Result<u32, ManifestError> {
    if !(1..=MAX_MANIFEST_PAGE_HASHES).contains(&per_page) {
        return Err(ManifestError::PageSize(per_page));
    }
    Ok(chunks.div_ceil(per_page))
}

/// Chunk indexes of page `index` (which must exist).
fn page_range(chunks: u32, index: u32, per_page: u32) -> std::ops::Range<usize> {
    let start = u64::from(index) * u64::from(per_page);
    let end = (start + u64::from(per_page)).min(u64::from(chunks));
    start as usize..end as usize
}

fn split_array<const N: usize>(bytes: &[u8]) -> ([u8; N], &[u8]) {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    (out, &bytes[N..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobs::CHUNK_SIZE;
    use proptest::prelude::*;

    /// The manifest of `content` cut into `chunk_size` chunks.
    fn manifest_of(content: &[u8], chunk_size: u32) -> Manifest {
        let chunks = content
            .chunks(chunk_size as usize)
            .map(sha256)
            .collect::<Vec<_>>();
        Manifest::new(
            content.len() as u64,
            chunk_size,
            FileId::of_content(content),
            chunks,
        )
        .unwrap()
    }

    /// A manifest of `count` made-up chunks (no content needed; more than one chunk, so
    /// the file id is free).
    fn synthetic(count: u32, chunk_size: u32, seed: u8) -> Manifest {
        assert!(count >= 2);
        let size = u64::from(count - 1) * u64::from(chunk_size) + 1;
        let chunks = (0..count)
            .map(|i| sha256(&[seed, (i >> 16) as u8, (i >> 8) as u8, i as u8]))
            .collect();
        Manifest::new(size, chunk_size, FileId::from_bytes([seed; 32]), chunks).unwrap()
    }

    #[test]
    fn sizes_around_the_chunk_size_cut_as_documented() {
        let c = CHUNK_SIZE as usize;
        for (len, chunks, last) in [
            (0, 0, None),
            (1, 1, Some(1)),
            (c - 1, 1, Some(c - 1)),
            (c, 1, Some(c)),
            (c + 1, 2, Some(1)),
            (3 * c, 3, Some(c)),
        ] {
            let content = vec![7u8; len];
            let m = manifest_of(&content, CHUNK_SIZE);
            assert_eq!(m.chunk_count(), chunks, "{len}");
            assert_eq!(
                m.chunk_count().checked_sub(1).and_then(|i| m.chunk_len(i)),
                last.map(|l| l as u32)
            );
            assert_eq!(m.encoded_len(), 49 + 32 * chunks as usize);
            assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn the_encoding_is_byte_for_byte_as_documented() {
        let content = vec![1u8; CHUNK_SIZE as usize + 5];
        let m = manifest_of(&content, CHUNK_SIZE);
        let bytes = m.encode();
        assert_eq!(bytes[0], 1);
        assert_eq!(bytes[1..9], (CHUNK_SIZE as u64 + 5).to_be_bytes());
        assert_eq!(bytes[9..13], CHUNK_SIZE.to_be_bytes());
        assert_eq!(bytes[13..17], 2u32.to_be_bytes());
        assert_eq!(&bytes[17..49], FileId::of_content(&content).as_bytes());
        assert_eq!(bytes[49..81], sha256(&content[..CHUNK_SIZE as usize]));
        assert_eq!(bytes[81..113], sha256(&content[CHUNK_SIZE as usize..]));
        assert_eq!(bytes.len(), 113);
        assert_eq!(m.hash(), ManifestHash::from_bytes(sha256(&bytes)));
    }

    #[test]
    fn the_decoder_refuses_each_kind_of_malformed_manifest() {
        let good = synthetic(3, CHUNK_SIZE, 9).encode();
        let with = |at: usize, new: &[u8]| {
            let mut b = good.clone();
            b[at..at + new.len()].copy_from_slice(new);
            b
        };
        let cases: Vec<(Vec<u8>, ManifestError)> = vec![
            (
                vec![],
                ManifestError::Truncated {
                    needed: 49,
                    found: 0,
                },
            ),
            (with(0, &[2]), ManifestError::UnsupportedVersion(2)),
            (
                good[..48].to_vec(),
                ManifestError::Truncated {
                    needed: 49,
                    found: 48,
                },
            ),
            (
                good[..good.len() - 1].to_vec(),
                ManifestError::Truncated {
                    needed: good.len(),
                    found: good.len() - 1,
                },
            ),
            (
                [good.as_slice(), &[0]].concat(),
                ManifestError::TrailingBytes(1),
            ),
            (
                with(13, &4u32.to_be_bytes()),
                ManifestError::ChunkCount {
                    declared: 4,
                    expected: 3,
                },
            ),
            (
                with(1, &(MAX_FILE_SIZE + 1).to_be_bytes()),
                ManifestError::TooLarge {
                    size: MAX_FILE_SIZE + 1,
                    max: MAX_FILE_SIZE,
                },
            ),
            (with(9, &1u32.to_be_bytes()), ManifestError::ChunkSize(1)),
            (
                with(9, &(CHUNK_SIZE + 1).to_be_bytes()),
                ManifestError::ChunkSize(CHUNK_SIZE + 1),
            ),
            (
                with(9, &(256 * 1024u32).to_be_bytes()),
                ManifestError::ChunkSize(256 * 1024),
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(Manifest::decode(&bytes), Err(expected));
        }
    }

    #[test]
    fn a_one_chunk_or_empty_manifest_must_name_its_own_content() {
        let one = manifest_of(b"hello", CHUNK_SIZE).encode();
        let mut lying = one.clone();
        lying[17] ^= 1;
        assert!(matches!(
            Manifest::decode(&lying),
            Err(ManifestError::Inconsistent(_))
        ));
        let mut empty = manifest_of(b"", CHUNK_SIZE).encode();
        assert_eq!(empty.len(), 49);
        Manifest::decode(&empty).unwrap();
        empty[20] ^= 1;
        assert!(matches!(
            Manifest::decode(&empty),
            Err(ManifestError::Inconsistent(_))
        ));
    }

    #[test]
    fn chunks_are_verified_by_index_length_and_hash() {
        // Not periodic in the chunk size, so no two chunks are equal.
        let content: Vec<u8> = (0..(2 * CHUNK_SIZE + 10))
            .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let m = manifest_of(&content, CHUNK_SIZE);
        let c = CHUNK_SIZE as usize;
        m.verify_chunk(0, &content[..c]).unwrap();
        m.verify_chunk(2, &content[2 * c..]).unwrap();
        assert_eq!(
            m.verify_chunk(3, b""),
            Err(ChunkMismatch::NoSuchChunk { index: 3, count: 3 })
        );
        assert_eq!(
            m.verify_chunk(2, &content[2 * c - 1..]),
            Err(ChunkMismatch::Length {
                index: 2,
                expected: 10,
                found: 11
            })
        );
        assert_eq!(
            m.verify_chunk(1, &content[..c]),
            Err(ChunkMismatch::Hash { index: 1 })
        );
    }

    #[test]
    fn check_describes_compares_hash_id_and_size() {
        let m = synthetic(5, CHUNK_SIZE, 1);
        let other = synthetic(5, CHUNK_SIZE, 2);
        m.check_describes(m.file_id(), m.size(), m.hash()).unwrap();
        assert!(matches!(
            m.check_describes(m.file_id(), m.size(), other.hash()),
            Err(ManifestError::HashMismatch { .. })
        ));
        assert!(matches!(
            m.check_describes(other.file_id(), m.size(), m.hash()),
            Err(ManifestError::Describes {
                field: "file id",
                ..
            })
        ));
        assert!(matches!(
            m.check_describes(m.file_id(), m.size() + 1, m.hash()),
            Err(ManifestError::Describes { field: "size", .. })
        ));
    }

    #[test]
    fn pages_assemble_in_any_order_and_are_checked_at_the_end() {
        let m = synthetic(10, CHUNK_SIZE, 3);
        let assembly =
            || ManifestAssembly::new(m.file_id(), m.size(), m.chunk_size(), m.hash(), 4).unwrap();
        assert_eq!(m.page_count(4).unwrap(), 3);
        assert_eq!(m.page(2, 4).unwrap().len(), 2 * 32);
        let mut a = assembly();
        assert_eq!(a.missing_pages(), vec![0, 1, 2]);
        for i in [2, 0, 0, 1] {
            a.add_page(i, &m.page(i, 4).unwrap()).unwrap();
        }
        assert!(a.is_complete());
        assert_eq!(a.finish().unwrap(), m);

        // A page of the right length but wrong content: found once all are in.
        let mut a = assembly();
        a.add_page(0, &m.page(0, 4).unwrap()).unwrap();
        a.add_page(1, &[0u8; 4 * 32]).unwrap();
        assert_eq!(
            a.finish().unwrap_err(),
            ManifestError::Incomplete { missing: 1 }
        );
        let mut a = assembly();
        a.add_page(0, &m.page(0, 4).unwrap()).unwrap();
        a.add_page(1, &[0u8; 4 * 32]).unwrap();
        a.add_page(2, &m.page(2, 4).unwrap()).unwrap();
        assert!(matches!(
            a.finish(),
            Err(ManifestError::HashMismatch { .. })
        ));

        let mut a = assembly();
        assert!(matches!(
            a.add_page(2, &[0u8; 4 * 32]),
            Err(ManifestError::PageLength {
                index: 2,
                expected: 64,
                found: 128
            })
        ));
        assert!(matches!(
            a.add_page(3, &[]),
            Err(ManifestError::NoSuchPage { index: 3, count: 3 })
        ));
        assert!(matches!(
            m.page(3, 4),
            Err(ManifestError::NoSuchPage { .. })
        ));
        for bad in [0, MAX_MANIFEST_PAGE_HASHES + 1] {
            assert_eq!(m.page(0, bad), Err(ManifestError::PageSize(bad)));
            assert!(
                ManifestAssembly::new(m.file_id(), m.size(), CHUNK_SIZE, m.hash(), bad).is_err()
            );
        }
    }

    #[test]
    fn an_empty_file_assembles_from_no_pages() {
        let m = manifest_of(b"", CHUNK_SIZE);
        assert_eq!(m.page_count(4096).unwrap(), 0);
        let a = ManifestAssembly::new(m.file_id(), 0, CHUNK_SIZE, m.hash(), 4096).unwrap();
        assert!(a.is_complete());
        assert_eq!(a.finish().unwrap(), m);
    }

    #[test]
    fn an_assembly_refuses_sizes_a_manifest_may_not_have() {
        let id = FileId::from_bytes([0; 32]);
        let h = ManifestHash::from_bytes([0; 32]);
        assert!(matches!(
            ManifestAssembly::new(id, MAX_FILE_SIZE + 1, CHUNK_SIZE, h, 4096),
            Err(ManifestError::TooLarge { .. })
        ));
        assert!(matches!(
            ManifestAssembly::new(id, 10, 1000, h, 4096),
            Err(ManifestError::ChunkSize(1000))
        ));
        // The largest allowed: 2^20 chunks, 256 pages of 4096.
        let a = ManifestAssembly::new(id, MAX_FILE_SIZE, MIN_CHUNK_SIZE, h, 4096).unwrap();
        assert_eq!(a.page_count(), 256);
    }

    fn arb_manifest() -> impl Strategy<Value = Manifest> {
        (
            2u32..300,
            prop_oneof![Just(MIN_CHUNK_SIZE), Just(CHUNK_SIZE), Just(MAX_CHUNK_SIZE)],
            any::<u8>(),
        )
            .prop_map(|(count, chunk_size, seed)| synthetic(count, chunk_size, seed))
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Manifest::decode(&bytes);
            // The same with a plausible header in front, to get past the first checks.
            let mut framed = synthetic(2, CHUNK_SIZE, 0).encode()[..49].to_vec();
            framed.extend_from_slice(&bytes);
            if let Ok(m) = Manifest::decode(&framed) {
                prop_assert_eq!(m.encode(), framed);
            }
        }

        #[test]
        fn encode_then_decode_is_the_identity(m in arb_manifest()) {
            let bytes = m.encode();
            prop_assert_eq!(bytes.len(), m.encoded_len());
            prop_assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        }

        #[test]
        fn any_page_size_reassembles_the_manifest(m in arb_manifest(), per_page in 1u32..70) {
            let mut a = ManifestAssembly::new(m.file_id(), m.size(), m.chunk_size(), m.hash(), per_page).unwrap();
            for i in (0..m.page_count(per_page).unwrap()).rev() {
                a.add_page(i, &m.page(i, per_page).unwrap()).unwrap();
            }
            prop_assert_eq!(a.finish().unwrap(), m);
        }

        #[test]
        fn a_flipped_bit_is_refused_or_changes_the_hash(m in arb_manifest(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut bytes = m.encode();
            let i = at.index(bytes.len());
            bytes[i] ^= 1 << bit;
            if let Ok(other) = Manifest::decode(&bytes) {
                prop_assert_ne!(other.hash(), m.hash());
            }
        }
    }
}
