//! File-transfer frames (docs/PROTOCOL.md, "File transfer"): binary, not JSON — a chunk
//! is 128 KiB of raw bytes and its header is fixed-size, so a JSON body would cost a
//! third more on the wire and an allocation per field. Every frame starts with the
//! file id; decoders are strict (exact lengths, bounded and ordered ranges) because
//! every byte here comes from a peer.

use std::fmt;

use crate::transport::frame::FrameError;

pub const TAG_FILE_WANT: u8 = 6;
pub const TAG_FILE_CHUNK: u8 = 7;
pub const TAG_FILE_HAVE: u8 = 8;
pub const TAG_FILE_NONE: u8 = 9;
pub const TAG_FILE_CANCEL: u8 = 10;
pub const TAG_MANIFEST_PAGE: u8 = 11;

/// The largest chunk a frame may carry: storage's largest declarable chunk size
/// (`storage::blobs::MAX_CHUNK_SIZE`), which leaves 64 KiB of the 256 KiB frame limit
/// for the header.
pub const MAX_CHUNK_BYTES: usize = 192 * 1024;
/// The largest manifest page: 6144 hashes (`MAX_MANIFEST_PAGE_HASHES` × 32 bytes).
pub const MAX_PAGE_BYTES: usize = 192 * 1024;
/// Ranges in one frame. A `FileHave` of a download with more holes than this lists the
/// first ones only (the requester asks again as it goes); 256 ranges are 2 KiB.
pub const MAX_RANGES: usize = 256;
/// Chunks one `FileWant` may ask for: 8 MiB at 128 KiB, far above the requester's
/// window, so an honest request always fits and a hostile one stays small.
pub const MAX_WANT_CHUNKS: u64 = 64;
/// The largest chunk index plus one: 64 GiB at the smallest chunk size (64 KiB).
pub const MAX_CHUNK_COUNT: u32 = 1 << 20;

const ID_LEN: usize = 32;

macro_rules! digest_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for b in self.0 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            // The first 8 bytes name a file well enough in logs.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(", stringify!($name))?;
                for b in &self.0[..8] {
                    write!(f, "{b:02x}")?;
                }
                write!(f, "…)")
            }
        }
    };
}

digest_newtype!(
    /// A file's id: the SHA-256 of its whole content (storage's `FileId`, as bytes).
    FileId
);
digest_newtype!(
    /// SHA-256 of a file's encoded manifest, as the signed file message carries it.
    ManifestHash
);

/// Chunks (or manifest pages) `start .. start + len`; `len` ≥ 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRange {
    pub start: u32,
    pub len: u32,
}

impl ChunkRange {
    pub fn one(index: u32) -> ChunkRange {
        ChunkRange {
            start: index,
            len: 1,
        }
    }

    pub fn end(&self) -> u64 {
        u64::from(self.start) + u64::from(self.len)
    }

    pub fn contains(&self, index: u32) -> bool {
        index >= self.start && u64::from(index) < self.end()
    }

    pub fn indices(&self) -> impl Iterator<Item = u32> {
        let end = u32::try_from(self.end()).unwrap_or(u32::MAX);
        self.start..end
    }
}

/// Sorted indices as ranges (consecutive ones merged), at most `max` of them. The
/// caller sorts: unsorted indices make ranges a receiver refuses.
pub fn ranges_of(indices: impl IntoIterator<Item = u32>, max: usize) -> Vec<ChunkRange> {
    let mut out: Vec<ChunkRange> = Vec::new();
    for index in indices {
        let full = out.len() == max;
        match out.last_mut() {
            Some(last) if last.end() == u64::from(index) => last.len += 1,
            _ if full => break,
            _ => out.push(ChunkRange::one(index)),
        }
    }
    out
}

/// What a `FileWant` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WantKind {
    /// Chunks; with no ranges, "which chunks do you have?" (answered by `FileHave`).
    Chunks = 0,
    /// Pages of the manifest's chunk hashes.
    ManifestPages = 1,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileWant {
    pub file_id: FileId,
    /// The manifest the requester counts chunks by: a server holding the same content
    /// under another manifest (another chunk size) answers `FileNone`.
    pub manifest_hash: ManifestHash,
    pub kind: WantKind,
    pub ranges: Vec<ChunkRange>,
}

impl FileWant {
    /// "Which chunks of this file do you have?"
    pub fn query(file_id: FileId, manifest_hash: ManifestHash) -> FileWant {
        FileWant {
            file_id,
            manifest_hash,
            kind: WantKind::Chunks,
            ranges: Vec::new(),
        }
    }

    pub fn is_query(&self) -> bool {
        self.kind == WantKind::Chunks && self.ranges.is_empty()
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct FileChunk {
    pub file_id: FileId,
    pub index: u32,
    pub bytes: Vec<u8>,
}

impl fmt::Debug for FileChunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FileChunk({:?} #{} {} bytes)",
            self.file_id,
            self.index,
            self.bytes.len()
        )
    }
}

/// The answer to a query: the chunks the sender can serve now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHave {
    pub file_id: FileId,
    /// Every chunk (the ranges are then empty).
    pub complete: bool,
    pub ranges: Vec<ChunkRange>,
}

/// Why a request is not (or not wholly) served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoneReason {
    /// Nothing of this file here (or not those chunks).
    Absent = 0,
    /// Over this peer's request quota: ask again later.
    Busy = 1,
    /// The file is here under another manifest.
    OtherManifest = 2,
    /// This node sent these chunks to another peer that is asking for the file too a
    /// moment ago: ask that peer (after its next `FileHave`), or this node again in a
    /// second.
    Elsewhere = 3,
    /// Its user stopped sending this file (the sender's "cancel"): nothing of it is
    /// served here until they offer it again. Asked again after a while.
    Withdrawn = 4,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileNone {
    pub file_id: FileId,
    pub reason: NoneReason,
    /// The chunks refused (empty: the whole request).
    pub ranges: Vec<ChunkRange>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct ManifestPage {
    pub file_id: FileId,
    pub page: u32,
    pub page_count: u32,
    pub bytes: Vec<u8>,
}

impl fmt::Debug for ManifestPage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ManifestPage({:?} {}/{} {} bytes)",
            self.file_id,
            self.page,
            self.page_count,
            self.bytes.len()
        )
    }
}

/// A file-transfer frame (tags 6 to 11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileFrame {
    Want(FileWant),
    Chunk(FileChunk),
    Have(FileHave),
    None(FileNone),
    /// The requester gave the file up: drop its queued requests.
    Cancel(FileId),
    ManifestPage(ManifestPage),
}

impl FileFrame {
    pub fn file_id(&self) -> FileId {
        match self {
            FileFrame::Want(w) => w.file_id,
            FileFrame::Chunk(c) => c.file_id,
            FileFrame::Have(h) => h.file_id,
            FileFrame::None(n) => n.file_id,
            FileFrame::Cancel(id) => *id,
            FileFrame::ManifestPage(p) => p.file_id,
        }
    }

    /// Content (chunks, manifest pages) rather than a small request or answer.
    pub fn is_content(&self) -> bool {
        matches!(self, FileFrame::Chunk(_) | FileFrame::ManifestPage(_))
    }

    pub fn is_tag(tag: u8) -> bool {
        (TAG_FILE_WANT..=TAG_MANIFEST_PAGE).contains(&tag)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            FileFrame::Want(w) => {
                out.push(TAG_FILE_WANT);
                out.extend_from_slice(&w.file_id.0);
                out.extend_from_slice(&w.manifest_hash.0);
                out.push(w.kind as u8);
                put_ranges(&mut out, &w.ranges);
            }
            FileFrame::Chunk(c) => {
                out.reserve(1 + ID_LEN + 4 + c.bytes.len());
                out.push(TAG_FILE_CHUNK);
                out.extend_from_slice(&c.file_id.0);
                out.extend_from_slice(&c.index.to_be_bytes());
                out.extend_from_slice(&c.bytes);
            }
            FileFrame::Have(h) => {
                out.push(TAG_FILE_HAVE);
                out.extend_from_slice(&h.file_id.0);
                out.push(u8::from(h.complete));
                put_ranges(&mut out, &h.ranges);
            }
            FileFrame::None(n) => {
                out.push(TAG_FILE_NONE);
                out.extend_from_slice(&n.file_id.0);
                out.push(n.reason as u8);
                put_ranges(&mut out, &n.ranges);
            }
            FileFrame::Cancel(id) => {
                out.push(TAG_FILE_CANCEL);
                out.extend_from_slice(&id.0);
            }
            FileFrame::ManifestPage(p) => {
                out.reserve(1 + ID_LEN + 8 + p.bytes.len());
                out.push(TAG_MANIFEST_PAGE);
                out.extend_from_slice(&p.file_id.0);
                out.extend_from_slice(&p.page.to_be_bytes());
                out.extend_from_slice(&p.page_count.to_be_bytes());
                out.extend_from_slice(&p.bytes);
            }
        }
        out
    }

    /// Decodes the frame with tag `tag` and body `body` (the bytes after the tag).
    pub fn decode(tag: u8, body: &[u8]) -> Result<FileFrame, FrameError> {
        let mut r = Reader { rest: body };
        let frame = match tag {
            TAG_FILE_WANT => {
                const WHAT: &str = "file want";
                let file_id = FileId(r.id(WHAT)?);
                let manifest_hash = ManifestHash(r.id(WHAT)?);
                let kind = match r.u8(WHAT)? {
                    0 => WantKind::Chunks,
                    1 => WantKind::ManifestPages,
                    _ => return Err(FrameError::Malformed(WHAT)),
                };
                let ranges = r.ranges(WHAT)?;
                let total: u64 = ranges.iter().map(|r| u64::from(r.len)).sum();
                if total > MAX_WANT_CHUNKS {
                    return Err(FrameError::Malformed(WHAT));
                }
                FileFrame::Want(FileWant {
                    file_id,
                    manifest_hash,
                    kind,
                    ranges,
                })
            }
            TAG_FILE_CHUNK => {
                const WHAT: &str = "file chunk";
                let file_id = FileId(r.id(WHAT)?);
                let index = r.u32(WHAT)?;
                let bytes = r.take_rest();
                if index >= MAX_CHUNK_COUNT || bytes.is_empty() || bytes.len() > MAX_CHUNK_BYTES {
                    return Err(FrameError::Malformed(WHAT));
                }
                return Ok(FileFrame::Chunk(FileChunk {
                    file_id,
                    index,
                    bytes: bytes.to_vec(),
                }));
            }
            TAG_FILE_HAVE => {
                const WHAT: &str = "file have";
                let file_id = FileId(r.id(WHAT)?);
                let complete = match r.u8(WHAT)? {
                    0 => false,
                    1 => true,
                    _ => return Err(FrameError::Malformed(WHAT)),
                };
                let ranges = r.ranges(WHAT)?;
                if complete && !ranges.is_empty() {
                    return Err(FrameError::Malformed(WHAT));
                }
                FileFrame::Have(FileHave {
                    file_id,
                    complete,
                    ranges,
                })
            }
            TAG_FILE_NONE => {
                const WHAT: &str = "file none";
                let file_id = FileId(r.id(WHAT)?);
                let reason = match r.u8(WHAT)? {
                    0 => NoneReason::Absent,
                    1 => NoneReason::Busy,
                    2 => NoneReason::OtherManifest,
                    3 => NoneReason::Elsewhere,
                    4 => NoneReason::Withdrawn,
                    _ => return Err(FrameError::Malformed(WHAT)),
                };
                let ranges = r.ranges(WHAT)?;
                FileFrame::None(FileNone {
                    file_id,
                    reason,
                    ranges,
                })
            }
            TAG_FILE_CANCEL => FileFrame::Cancel(FileId(r.id("file cancel")?)),
            TAG_MANIFEST_PAGE => {
                const WHAT: &str = "manifest page";
                let file_id = FileId(r.id(WHAT)?);
                let page = r.u32(WHAT)?;
                let page_count = r.u32(WHAT)?;
                let bytes = r.take_rest();
                if page >= page_count
                    || page_count > MAX_CHUNK_COUNT
                    || bytes.is_empty()
                    || bytes.len() > MAX_PAGE_BYTES
                    || !bytes.len().is_multiple_of(ID_LEN)
                {
                    return Err(FrameError::Malformed(WHAT));
                }
                return Ok(FileFrame::ManifestPage(ManifestPage {
                    file_id,
                    page,
                    page_count,
                    bytes: bytes.to_vec(),
                }));
            }
            other => return Err(FrameError::UnknownType(other)),
        };
        if !r.rest.is_empty() {
            return Err(FrameError::Malformed("file frame with trailing bytes"));
        }
        Ok(frame)
    }
}

fn put_ranges(out: &mut Vec<u8>, ranges: &[ChunkRange]) {
    // Encoders are fed by this node's own code, which never exceeds the bound; the
    // cut keeps a bug here from producing a frame every peer refuses.
    let ranges = &ranges[..ranges.len().min(MAX_RANGES)];
    out.extend_from_slice(&(ranges.len() as u16).to_be_bytes());
    for r in ranges {
        out.extend_from_slice(&r.start.to_be_bytes());
        out.extend_from_slice(&r.len.to_be_bytes());
    }
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FrameError> {
        if self.rest.len() < n {
            return Err(FrameError::Malformed(what));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn take_rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    fn id(&mut self, what: &'static str) -> Result<[u8; 32], FrameError> {
        self.take(ID_LEN, what)?
            .try_into()
            .map_err(|_| FrameError::Malformed(what))
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, FrameError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, FrameError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, FrameError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Ranges: a count ≤ [`MAX_RANGES`], each non-empty, below [`MAX_CHUNK_COUNT`],
    /// ascending and apart (a range starts after the previous one ends), so a peer
    /// cannot make us walk one index twice.
    fn ranges(&mut self, what: &'static str) -> Result<Vec<ChunkRange>, FrameError> {
        let count = usize::from(self.u16(what)?);
        if count > MAX_RANGES {
            return Err(FrameError::Malformed(what));
        }
        let mut out = Vec::with_capacity(count);
        let mut floor = 0u64;
        for _ in 0..count {
            let range = ChunkRange {
                start: self.u32(what)?,
                len: self.u32(what)?,
            };
            if range.len == 0
                || u64::from(range.start) < floor
                || range.end() > u64::from(MAX_CHUNK_COUNT)
            {
                return Err(FrameError::Malformed(what));
            }
            floor = range.end();
            out.push(range);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: u8) -> FileId {
        FileId([n; 32])
    }

    fn round_trip(frame: FileFrame) {
        let bytes = frame.encode();
        assert_eq!(FileFrame::decode(bytes[0], &bytes[1..]), Ok(frame));
    }

    #[test]
    fn every_file_frame_round_trips() {
        round_trip(FileFrame::Want(FileWant::query(
            id(1),
            ManifestHash([2; 32]),
        )));
        round_trip(FileFrame::Want(FileWant {
            file_id: id(1),
            manifest_hash: ManifestHash([2; 32]),
            kind: WantKind::Chunks,
            ranges: vec![
                ChunkRange { start: 0, len: 4 },
                ChunkRange { start: 9, len: 4 },
            ],
        }));
        round_trip(FileFrame::Want(FileWant {
            file_id: id(1),
            manifest_hash: ManifestHash([2; 32]),
            kind: WantKind::ManifestPages,
            ranges: vec![ChunkRange::one(0)],
        }));
        round_trip(FileFrame::Chunk(FileChunk {
            file_id: id(3),
            index: 7,
            bytes: vec![9; MAX_CHUNK_BYTES],
        }));
        round_trip(FileFrame::Have(FileHave {
            file_id: id(4),
            complete: true,
            ranges: vec![],
        }));
        round_trip(FileFrame::Have(FileHave {
            file_id: id(4),
            complete: false,
            ranges: vec![ChunkRange { start: 1, len: 2 }],
        }));
        for reason in [
            NoneReason::Absent,
            NoneReason::Busy,
            NoneReason::OtherManifest,
            NoneReason::Elsewhere,
            NoneReason::Withdrawn,
        ] {
            round_trip(FileFrame::None(FileNone {
                file_id: id(5),
                reason,
                ranges: vec![ChunkRange::one(3)],
            }));
        }
        round_trip(FileFrame::Cancel(id(6)));
        round_trip(FileFrame::ManifestPage(ManifestPage {
            file_id: id(7),
            page: 0,
            page_count: 1,
            bytes: vec![1; 64],
        }));
    }

    fn decode(bytes: &[u8]) -> Result<FileFrame, FrameError> {
        FileFrame::decode(bytes[0], &bytes[1..])
    }

    #[test]
    fn strict_decoders_refuse_what_is_out_of_bounds() {
        let chunk = |len: usize| {
            FileFrame::Chunk(FileChunk {
                file_id: id(1),
                index: 0,
                bytes: vec![0; len],
            })
            .encode()
        };
        assert!(decode(&chunk(MAX_CHUNK_BYTES + 1)).is_err());
        assert!(decode(&chunk(0)).is_err());
        // Overlapping, unordered, empty and too many ranges.
        let want = |ranges: Vec<ChunkRange>| {
            FileFrame::Want(FileWant {
                file_id: id(1),
                manifest_hash: ManifestHash([0; 32]),
                kind: WantKind::Chunks,
                ranges,
            })
            .encode()
        };
        let r = |start, len| ChunkRange { start, len };
        assert!(decode(&want(vec![r(0, 4), r(3, 1)])).is_err());
        assert!(decode(&want(vec![r(5, 1), r(0, 1)])).is_err());
        assert!(decode(&want(vec![r(0, 0)])).is_err());
        assert!(decode(&want(vec![r(0, 65)])).is_err());
        assert!(decode(&want(vec![r(0, 64)])).is_ok());
        assert!(decode(&want(vec![r(u32::MAX, 1)])).is_err());
        // A count above the bound, whatever follows.
        let mut many = vec![TAG_FILE_HAVE];
        many.extend_from_slice(&[0; 32]);
        many.push(0);
        many.extend_from_slice(&((MAX_RANGES + 1) as u16).to_be_bytes());
        assert!(decode(&many).is_err());
        // Trailing bytes, a truncated header, unknown enum values.
        let mut cancel = FileFrame::Cancel(id(1)).encode();
        cancel.push(0);
        assert!(decode(&cancel).is_err());
        assert!(decode(&[TAG_FILE_CHUNK, 1, 2, 3]).is_err());
        let mut none = FileFrame::None(FileNone {
            file_id: id(1),
            reason: NoneReason::Absent,
            ranges: vec![],
        })
        .encode();
        none[33] = 9;
        assert!(decode(&none).is_err());
    }

    #[test]
    fn ranges_merge_consecutive_indices_up_to_a_bound() {
        let r = ranges_of([0, 1, 2, 5, 7, 8], 10);
        assert_eq!(
            r,
            vec![
                ChunkRange { start: 0, len: 3 },
                ChunkRange { start: 5, len: 1 },
                ChunkRange { start: 7, len: 2 }
            ]
        );
        assert_eq!(ranges_of([0, 2, 4, 6], 2).len(), 2);
    }

    proptest! {
        #[test]
        fn arbitrary_file_frames_never_panic(tag in 6u8..=11, body in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = FileFrame::decode(tag, &body);
        }
    }
}
