//! `file_message`: what a node parses from peers about a file (issue 17), beyond the
//! file-transfer frames themselves (`link_frame` decodes those, `FileFrame` included):
//!
//! - the text of a file message, through `api_types::FileContent::parse` (the reserved
//!   prefix, the JSON `FileContent`, its names, folder paths, hashes, media types and
//!   thumbnails), then what a receiver makes of each file it names: the descriptor
//!   (the hashes parsed as `storage::blobs` ids), the name it would save under
//!   (`sanitize_file_name`) and the manifest assembly it begins for a download
//!   (`ManifestAssembly::new`, before anything is fetched);
//! - a manifest put together from pages peers send, through `ManifestAssembly`
//!   (`add_page`, `missing_pages`, `finish`: lengths, indexes, the check against the
//!   signed manifest hash), and a manifest's encoding, through `Manifest::decode`.
//!
//! The first byte picks a mode (modulo 3). 0: the rest is a message's text (lossy
//! UTF-8), parsed as it is and after the reserved prefix. 1: the rest is an encoded
//! manifest. 2: the rest describes a file (chunk size, size, chunk hashes, file id),
//! a page size and the pages peers send, honest or not. The manifest hash a signed
//! file message would carry is one the fuzzer cannot guess, so the harness computes
//! it, from its own encoder of the documented format (`storage/src/blobs/manifest.rs`),
//! and models what the assembly must accept and answer.

use std::path::{Component, Path};

use api_types::files::{
    is_file_message, FileContentError, FileRef, FILE_MESSAGE_PREFIX, MAX_FILES_PER_MESSAGE,
    MAX_PATH_DEPTH, MAX_THUMBNAIL_BYTES,
};
use api_types::FileContent;
use lan_mesh::files::FileDescriptor;
use sha2::{Digest, Sha256};
use storage::blobs::{
    sanitize_file_name, FileId, Manifest, ManifestAssembly, ManifestError, ManifestHash,
    CHUNK_SIZE, MANIFEST_PAGE_HASHES, MAX_CHUNK_SIZE, MAX_FILE_SIZE, MAX_MANIFEST_PAGE_HASHES,
    MIN_CHUNK_SIZE,
};

use crate::Choices;

/// The longest name a file message may carry (`api_types::files`).
const MAX_NAME_BYTES: usize = 255;
/// Mode 2 models the pages of files of at most this many chunks (larger ones: only
/// the assembly's shape).
const MODEL_CHUNKS: u64 = 64;

/// Never a panic, and for what is accepted: a file message re-encodes to a text that
/// parses equal; its names and folders are plain relative components; its descriptor
/// and manifest assembly are what the signed fields say; a manifest decodes from one
/// encoding only and reassembles from its pages; an assembly takes exactly the pages
/// that fit, and finishes exactly when every page is in and the result hashes to the
/// signed manifest hash.
pub fn file_message(data: &[u8]) {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let text = String::from_utf8_lossy(rest);
            file_text(&text);
            file_text(&format!("{FILE_MESSAGE_PREFIX}{text}"));
        }
        1 => manifest_bytes(rest),
        _ => drop(assembled(rest)),
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A message's text, as the store and the files service parse it on receipt.
fn file_text(text: &str) {
    let parsed = FileContent::parse(text);
    if !is_file_message(text) {
        assert_eq!(parsed, Err(FileContentError::NotAFileMessage));
    }
    let Ok(content) = parsed else {
        return;
    };
    assert!(
        (1..=MAX_FILES_PER_MESSAGE).contains(&content.files.len()),
        "{} files",
        content.files.len()
    );
    content.files.iter().for_each(accepted_file);
    // Parsing and encoding apply the same checks: only the size of a message can
    // keep accepted content from encoding again.
    match content.to_text() {
        Ok(again) => {
            assert!(is_file_message(&again));
            match FileContent::parse(&again) {
                Ok(reparsed) => assert_eq!(reparsed, content),
                Err(e) => panic!("an encoded file message does not parse: {e} ({again:?})"),
            }
            // One encoding per content.
            assert_eq!(content.to_text().as_deref(), Ok(again.as_str()));
        }
        Err(e) => assert_eq!(
            e,
            FileContentError::Invalid("too large for one message"),
            "accepted content does not encode: {content:?}"
        ),
    }
}

/// `name` is exactly one plain path component: joined under any folder it names a file
/// in that folder, nothing above it, no hidden or special entry.
fn one_plain_component(name: &str) {
    assert!(!name.is_empty() && name.len() <= MAX_NAME_BYTES, "{name:?}");
    assert!(!name.contains(['/', '\\']), "{name:?}");
    assert!(!name.chars().any(char::is_control), "{name:?}");
    let components: Vec<Component<'_>> = Path::new(name).components().collect();
    assert_eq!(
        components,
        [Component::Normal(name.as_ref())],
        "not one plain component: {name:?}"
    );
}

/// A file an accepted message names, and what a receiver makes of it.
fn accepted_file(file: &FileRef) {
    one_plain_component(&file.name);
    let mut depth = 1;
    if let Some(path) = &file.path {
        let parts: Vec<&str> = path.split('/').collect();
        assert!(parts.len() <= MAX_PATH_DEPTH, "{path:?}");
        parts.iter().for_each(|part| one_plain_component(part));
        depth += parts.len();
    }
    // What is shown and saved under: only plain components, below wherever it goes.
    let shown = file.display_path();
    let components: Vec<Component<'_>> = Path::new(&shown).components().collect();
    assert_eq!(components.len(), depth, "{shown:?}");
    assert!(
        components.iter().all(|c| matches!(c, Component::Normal(_))),
        "{shown:?}"
    );
    assert_eq!(
        components.last(),
        Some(&Component::Normal(file.name.as_ref()))
    );
    assert!(!file.mime.is_empty() && !file.mime.chars().any(char::is_control));
    if let Some(t) = &file.thumbnail {
        assert!(matches!(t.mime.as_str(), "image/jpeg" | "image/png"));
        assert!(t.width > 0 && t.height > 0);
        assert!(t.data.len() <= MAX_THUMBNAIL_BYTES.div_ceil(3) * 4);
    }
    // The name a copy is saved under, made safe again on this side.
    if let Ok(clean) = sanitize_file_name(&file.name) {
        one_plain_component(&clean);
        assert!(
            !clean.starts_with('.') && !clean.ends_with('.'),
            "{clean:?}"
        );
        assert_eq!(sanitize_file_name(&clean).ok().as_deref(), Some(&*clean));
    }
    // The descriptor the files service makes (`src-tauri/src/files/service.rs`): both
    // hashes parse, and print back as the message wrote them.
    let (file_id, manifest_hash) = match (
        file.file_id.parse::<FileId>(),
        file.manifest.parse::<ManifestHash>(),
    ) {
        (Ok(id), Ok(hash)) => (id, hash),
        (id, hash) => panic!("an accepted file's hashes do not parse: {id:?} {hash:?}"),
    };
    assert_eq!(file_id.to_string(), file.file_id);
    assert_eq!(manifest_hash.to_string(), file.manifest);
    let descriptor = FileDescriptor {
        file_id: lan_mesh::files::FileId(*file_id.as_bytes()),
        manifest_hash: lan_mesh::files::ManifestHash(*manifest_hash.as_bytes()),
        size: file.size,
        chunk_size: file.chunk_size,
    };
    // The assembly a download begins with: refused, or the shape the message says.
    let new = ManifestAssembly::new(
        file_id,
        file.size,
        file.chunk_size,
        manifest_hash,
        MANIFEST_PAGE_HASHES,
    );
    match (new, shape(file.size, file.chunk_size, MANIFEST_PAGE_HASHES)) {
        (Ok(assembly), Ok(count)) => {
            assert_eq!(descriptor.chunk_count().map(u64::from), Some(count));
            assert_eq!(
                u64::from(assembly.page_count()),
                count.div_ceil(u64::from(MANIFEST_PAGE_HASHES))
            );
            assert_eq!(assembly.is_complete(), count == 0);
        }
        (Err(e), Err(expected)) => assert_eq!(e, expected),
        (new, expected) => panic!(
            "an assembly for size {} and chunk size {}: {new:?}, expected {expected:?}",
            file.size, file.chunk_size
        ),
    }
}

/// The chunk count of a file of `size` in chunks of `chunk_size` assembled from pages
/// of `per_page` hashes, or the error `ManifestAssembly::new` must give — from the
/// documented bounds, not from storage's own checks.
fn shape(size: u64, chunk_size: u32, per_page: u32) -> Result<u64, ManifestError> {
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
    if per_page == 0 || per_page > MAX_MANIFEST_PAGE_HASHES {
        return Err(ManifestError::PageSize(per_page));
    }
    Ok(size.div_ceil(u64::from(chunk_size)))
}

/// The version 1 encoding (`storage/src/blobs/manifest.rs`, module docs), written
/// here from the documentation.
pub fn encode_manifest(size: u64, chunk_size: u32, file_id: &[u8; 32], chunks: &[u8]) -> Vec<u8> {
    let count = u32::try_from(chunks.len() / 32).unwrap_or(u32::MAX);
    let mut out = vec![1u8];
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&chunk_size.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(file_id);
    out.extend_from_slice(chunks);
    out
}

/// Where the chunks' hashes fix the file id: an empty file is the SHA-256 of nothing,
/// a one-chunk file's chunk is the whole file.
fn consistent(file_id: &[u8; 32], chunks: &[u8]) -> bool {
    match chunks.len() / 32 {
        0 => *file_id == sha256(b""),
        1 => chunks == file_id,
        _ => true,
    }
}

/// Bytes as a manifest: what decodes is the only encoding of itself, and checks out
/// against itself and its pages.
fn manifest_bytes(bytes: &[u8]) {
    let Ok(m) = Manifest::decode(bytes) else {
        return;
    };
    assert_eq!(m.encode(), bytes, "a manifest with two encodings");
    assert_eq!(m.encoded_len(), bytes.len());
    assert_eq!(m.hash().as_bytes(), &sha256(bytes));
    let count = match shape(m.size(), m.chunk_size(), MANIFEST_PAGE_HASHES) {
        Ok(count) => count,
        Err(e) => panic!("a decoded manifest has a shape no manifest may have: {e}"),
    };
    assert_eq!(u64::from(m.chunk_count()), count);
    let hashes = &bytes[49..];
    assert!(consistent(m.file_id().as_bytes(), hashes));
    // The chunks tile the file: every one full but the last, which is not empty.
    let mut total = 0u64;
    for index in 0..m.chunk_count() {
        let (Some(offset), Some(len), Some(hash)) = (
            m.chunk_offset(index),
            m.chunk_len(index),
            m.chunk_hash(index),
        ) else {
            panic!("chunk {index} of {count} is missing");
        };
        assert_eq!(offset, total);
        assert!(len > 0 && len <= m.chunk_size());
        if index + 1 < m.chunk_count() {
            assert_eq!(len, m.chunk_size());
        }
        let at = 32 * index as usize;
        assert_eq!(&hashes[at..at + 32], hash);
        total += u64::from(len);
    }
    assert_eq!(total, m.size());
    assert_eq!(m.chunk_len(m.chunk_count()), None);
    assert!(m.verify_chunk(m.chunk_count(), b"").is_err());
    assert_eq!(m.check_describes(m.file_id(), m.size(), m.hash()), Ok(()));
    // Served as pages and assembled again (backwards), it is the same manifest.
    for per_page in [1, 3, MANIFEST_PAGE_HASHES] {
        let Ok(pages) = m.page_count(per_page) else {
            panic!("{per_page} hashes per page refused");
        };
        let mut assembly = match ManifestAssembly::new(
            m.file_id(),
            m.size(),
            m.chunk_size(),
            m.hash(),
            per_page,
        ) {
            Ok(a) => a,
            Err(e) => panic!("no assembly for a valid manifest: {e}"),
        };
        assert_eq!(assembly.page_count(), pages);
        for index in (0..pages).rev() {
            match m.page(index, per_page) {
                Ok(page) => assert_eq!(assembly.add_page(index, &page), Ok(())),
                Err(e) => panic!("page {index} of {pages}: {e}"),
            }
        }
        assert_eq!(assembly.finish().as_ref(), Ok(&m));
    }
}

/// Mode 2: the file the fuzzer describes, the pages peers send for it, and the outcome
/// of the assembly (`None` when it was refused before any page, or the file is too
/// large to model). Checks the assembly against a model of it on every step.
pub fn assembled(rest: &[u8]) -> Option<Result<Manifest, ManifestError>> {
    let mut c = Choices::new(rest);
    let chunk_size = match c.below(5) {
        0 => MIN_CHUNK_SIZE,
        1 => CHUNK_SIZE,
        2 => MAX_CHUNK_SIZE,
        // 16 to 48 are valid.
        3 => u32::from(c.byte()) * 4096,
        _ => u32::from_be_bytes([c.byte(), c.byte(), c.byte(), c.byte()]),
    };
    let chunks = u64::from(c.below(24));
    let step = u64::from(chunk_size);
    let size = match c.below(4) {
        0 => chunks * step,
        1 => chunks.saturating_sub(1) * step + u64::from(chunks > 0),
        2 if chunks > 0 && step > 0 => {
            let r = u64::from(u16::from_be_bytes([c.byte(), c.byte()]));
            (chunks - 1) * step + 1 + r % step
        }
        _ => u64::from_be_bytes(std::array::from_fn(|_| c.byte())),
    };
    let per_page = match c.below(4) {
        0 => 1,
        1 => 2 + u32::from(c.below(7)),
        2 => MANIFEST_PAGE_HASHES,
        // Above 6144 sometimes, and 0.
        _ => u32::from(u16::from_be_bytes([c.byte(), c.byte()])),
    };
    let honest_id = c.below(4) != 0;
    let odd_id = [c.byte(); 32];
    let honest_hash = c.below(8) != 0;
    let odd_hash = [c.byte(); 32];
    let seed = c.byte();

    let model = shape(size, chunk_size, per_page);
    // Any id and hash: the assembly is refused (or not) for its shape alone.
    let new = ManifestAssembly::new(
        FileId::from_bytes(odd_id),
        size,
        chunk_size,
        ManifestHash::from_bytes(odd_hash),
        per_page,
    );
    let count = match (new, model) {
        (Ok(assembly), Ok(count)) => {
            assert_eq!(
                u64::from(assembly.page_count()),
                count.div_ceil(u64::from(per_page))
            );
            count
        }
        (Err(e), Err(expected)) => {
            assert_eq!(e, expected);
            return None;
        }
        (new, model) => panic!("size {size}, chunk size {chunk_size}, {per_page} per page: {new:?}, expected {model:?}"),
    };
    if count > MODEL_CHUNKS {
        return None;
    }
    let descriptor_count = FileDescriptor {
        file_id: lan_mesh::files::FileId(odd_id),
        manifest_hash: lan_mesh::files::ManifestHash(odd_hash),
        size,
        chunk_size,
    }
    .chunk_count();
    assert_eq!(descriptor_count.map(u64::from), Some(count));

    // The file as its author has it: chunk hashes, file id, manifest hash.
    let count = count as usize; // ≤ MODEL_CHUNKS
    let per_page = per_page as usize; // ≤ MAX_MANIFEST_PAGE_HASHES
    let true_chunks: Vec<u8> = (0..count).flat_map(|i| sha256(&[seed, i as u8])).collect();
    let file_id = match (honest_id, count) {
        (false, _) => odd_id,
        (true, 0) => sha256(b""),
        (true, 1) => sha256(&[seed, 0]),
        (true, _) => sha256(&[seed, 0xff, 0xff]),
    };
    let expected = if honest_hash {
        sha256(&encode_manifest(size, chunk_size, &file_id, &true_chunks))
    } else {
        odd_hash
    };
    let assembly = match ManifestAssembly::new(
        FileId::from_bytes(file_id),
        size,
        chunk_size,
        ManifestHash::from_bytes(expected),
        per_page as u32,
    ) {
        Ok(a) => a,
        Err(e) => panic!("the same shape is refused with another id or hash: {e}"),
    };
    let pages = count.div_ceil(per_page);
    let honest = |index: usize| -> Vec<u8> {
        let start = (index * per_page).min(count);
        let end = (start + per_page).min(count);
        true_chunks[32 * start..32 * end].to_vec()
    };

    // The pages peers send, in any order, right or wrong; then, mostly, the rest right.
    let mut model = Pages {
        assembly,
        page_len: (0..pages).map(|i| honest(i).len()).collect(),
        held: vec![None; pages],
    };
    for _ in 0..c.below(12) {
        let index = usize::from(c.byte()) % (pages + 2);
        let mut bytes = honest(index.min(pages.saturating_sub(1)));
        match c.below(5) {
            0 => {}
            1 if !bytes.is_empty() => {
                let at = usize::from(c.byte()) % bytes.len();
                bytes[at] ^= 1 << c.below(8);
            }
            2 => bytes.extend_from_slice(&[c.byte(); 32]),
            3 => bytes.truncate(bytes.len().saturating_sub(usize::from(c.below(33)))),
            _ => bytes = vec![c.byte(); usize::from(c.below(8)) * 32 + usize::from(c.below(2))],
        }
        model.add(index, bytes);
    }
    if c.below(4) != 0 {
        for index in 0..pages {
            if model.held[index].is_none() {
                model.add(index, honest(index));
            }
        }
    }

    let Pages { assembly, held, .. } = model;
    let outcome = assembly.finish();
    let missing = held.iter().filter(|p| p.is_none()).count();
    if missing > 0 {
        assert_eq!(
            outcome,
            Err(ManifestError::Incomplete {
                missing: missing as u32
            })
        );
        return Some(outcome);
    }
    let got: Vec<u8> = held.into_iter().flatten().flatten().collect();
    let encoding = encode_manifest(size, chunk_size, &file_id, &got);
    let found = sha256(&encoding);
    match &outcome {
        Ok(m) => {
            assert!(consistent(&file_id, &got));
            assert_eq!(found, expected, "a manifest that does not hash right");
            assert_eq!(m.encode(), encoding);
            assert_eq!(Manifest::decode(&encoding).as_ref(), Ok(m));
            assert_eq!(
                m.check_describes(
                    FileId::from_bytes(file_id),
                    size,
                    ManifestHash::from_bytes(expected)
                ),
                Ok(())
            );
            assert_eq!(m.chunk_size(), chunk_size);
        }
        Err(ManifestError::Inconsistent(_)) => assert!(!consistent(&file_id, &got)),
        Err(e) => {
            assert!(consistent(&file_id, &got), "{e}");
            assert_eq!(
                e,
                &ManifestError::HashMismatch {
                    expected: ManifestHash::from_bytes(expected),
                    found: ManifestHash::from_bytes(found),
                }
            );
        }
    }
    Some(outcome)
}

/// An assembly and the pages it must hold: the last of each page that fit.
struct Pages {
    assembly: ManifestAssembly,
    /// Each page's length, in bytes.
    page_len: Vec<usize>,
    held: Vec<Option<Vec<u8>>>,
}

impl Pages {
    /// A peer's page `index`: taken exactly when the page exists and the length fits,
    /// replacing an earlier copy; the missing pages are then those never taken.
    fn add(&mut self, index: usize, bytes: Vec<u8>) {
        let pages = self.page_len.len();
        let index32 = index as u32; // < pages + 2 ≤ 66
        let result = self.assembly.add_page(index32, &bytes);
        match self.page_len.get(index) {
            None => assert_eq!(
                result,
                Err(ManifestError::NoSuchPage {
                    index: index32,
                    count: pages as u32
                })
            ),
            Some(&expected) if expected != bytes.len() => assert_eq!(
                result,
                Err(ManifestError::PageLength {
                    index: index32,
                    expected,
                    found: bytes.len()
                })
            ),
            Some(_) => {
                assert_eq!(result, Ok(()));
                self.held[index] = Some(bytes);
            }
        }
        let missing: Vec<u32> = (0..pages)
            .filter(|&i| self.held[i].is_none())
            .map(|i| i as u32)
            .collect();
        assert_eq!(self.assembly.missing_pages(), missing);
        assert_eq!(self.assembly.is_complete(), missing.is_empty());
    }
}
