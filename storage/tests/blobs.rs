//! The blob store on real files in temporary directories (docs/STORAGE.md, "Files
//! (blobs)"): imports read back byte for byte, one copy per content, downloads in any
//! order with duplicates and bad chunks, resuming after a dropped handle, a torn log and
//! a SIGKILL, a lying manifest, serving chunks from a partial download, manifest pages,
//! and — as root, on a small tmpfs — a full disk.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use storage::blobs::{
    BlobError, BlobState, BlobStore, ChunkMismatch, Download, FileId, Manifest, ManifestAssembly,
    PartialBlob, CHUNK_SIZE,
};

const C: usize = CHUNK_SIZE as usize;

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut bytes);
    bytes
}

fn store_in(dir: &Path) -> BlobStore {
    BlobStore::open(&dir.join("blobs")).unwrap()
}

fn content_of(store: &BlobStore, id: FileId) -> Vec<u8> {
    let mut out = Vec::new();
    store
        .open_content(id)
        .unwrap()
        .expect("complete")
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn begin(store: &BlobStore, manifest: &Manifest) -> PartialBlob {
    match store.begin_download(manifest.clone()).unwrap() {
        Download::Partial(partial) => partial,
        Download::Complete => panic!("{} is already complete", manifest.file_id()),
    }
}

/// A source store holding `content`, and its manifest as a receiver gets it: encoded,
/// sent, decoded.
fn source(dir: &Path, content: &[u8]) -> (BlobStore, Manifest) {
    let store = BlobStore::open(&dir.join("source")).unwrap();
    let (id, manifest) = store.import(content).unwrap();
    assert_eq!(id, FileId::of_content(content));
    assert_eq!(manifest.file_id(), id);
    (store, Manifest::decode(&manifest.encode()).unwrap())
}

fn chunk(content: &[u8], index: u32) -> &[u8] {
    let start = index as usize * C;
    &content[start..(start + C).min(content.len())]
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn imports_read_back_byte_for_byte_at_every_size_around_a_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    for (seed, len) in [0, 1, C - 1, C, C + 1, 5 * 1024 * 1024 + 17]
        .into_iter()
        .enumerate()
    {
        let content = random_bytes(len, seed as u64);
        let (id, manifest) = store.import(content.as_slice()).unwrap();
        assert_eq!(id, FileId::of_content(&content), "{len}");
        assert_eq!(manifest.size(), len as u64);
        assert_eq!(manifest.chunk_count() as usize, len.div_ceil(C));
        assert_eq!(content_of(&store, id), content, "{len}");
        let status = store.status(id).unwrap();
        assert_eq!(status.state, BlobState::Complete);
        assert_eq!(
            (status.have_bytes, status.size),
            (len as u64, Some(len as u64))
        );
        for i in 0..manifest.chunk_count() {
            assert_eq!(
                store.read_chunk(id, i).unwrap().unwrap(),
                chunk(&content, i),
                "{len}/{i}"
            );
        }
        assert!(matches!(
            store.read_chunk(id, manifest.chunk_count()),
            Err(BlobError::NoSuchChunk { .. })
        ));
        assert_eq!(*store.manifest(id).unwrap().unwrap(), manifest);
    }
    assert!(names_in(&dir.path().join("blobs/tmp")).is_empty());
}

#[test]
fn identical_content_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let content = random_bytes(3 * C + 5, 1);
    let first = store.import(content.as_slice()).unwrap();
    let path = dir.path().join("upload.bin");
    fs::write(&path, &content).unwrap();
    let second = store.import_file(&path).unwrap();
    assert_eq!(first, second);
    let id = first.0.to_string();
    assert_eq!(
        names_in(&dir.path().join("blobs/complete")),
        [id.clone(), format!("{id}.manifest")]
    );
    assert!(names_in(&dir.path().join("blobs/tmp")).is_empty());
    // Downloading it again finds it complete.
    assert!(matches!(
        store.begin_download(first.1).unwrap(),
        Download::Complete
    ));
}

#[test]
fn a_download_takes_chunks_in_any_order_with_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let content = random_bytes(24 * C + 999, 2);
    let (src, manifest) = source(dir.path(), &content);
    let dst = store_in(dir.path());
    let id = manifest.file_id();
    assert_eq!(dst.status(id).unwrap().state, BlobState::Absent);
    let mut partial = begin(&dst, &manifest);
    assert_eq!(partial.missing_chunks(), (0..25).collect::<Vec<_>>());
    let mut order: Vec<u32> = (0..25).chain([3, 3, 17, 24, 0]).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(7));
    let mut have = 0u64;
    for i in order {
        let bytes = src.read_chunk(id, i).unwrap().unwrap();
        let new = partial.put_chunk(i, &bytes).unwrap();
        if new {
            have += bytes.len() as u64;
        }
        assert_eq!(partial.have_bytes(), have);
        let status = dst.status(id).unwrap();
        assert_eq!(
            (status.state, status.have_bytes),
            (BlobState::Partial, have)
        );
    }
    assert!(partial.is_complete() && partial.missing_chunks().is_empty());
    assert_eq!(partial.finish().unwrap(), id);
    assert_eq!(content_of(&dst, id), content);
    assert!(names_in(&dir.path().join("blobs/partial")).is_empty());
    assert_eq!(dst.status(id).unwrap().state, BlobState::Complete);
}

/// The whole-file hash is fed as chunks are stored in order; chunks stored ahead of it
/// are read back (and checked again) when it reaches them, a bounded number per batch,
/// and `finish` reads back the rest. A chunk damaged on disk before the hash read it
/// is caught, and the download discarded.
#[test]
fn the_whole_hash_reads_back_only_chunks_stored_out_of_order_and_catches_damage() {
    let dir = tempfile::tempdir().unwrap();
    // More chunks than one batch reads back: stored last to first, every one but
    // chunk 0 is read back, over several batches and then at `finish`.
    let content = random_bytes(150 * C + 7, 12);
    let (_src, manifest) = source(dir.path(), &content);
    let id = manifest.file_id();
    let dst = store_in(dir.path());
    let mut partial = begin(&dst, &manifest);
    for i in (1..151).rev() {
        partial.put_chunk(i, chunk(&content, i)).unwrap();
    }
    partial.put_chunk(0, chunk(&content, 0)).unwrap();
    partial.put_chunk(0, chunk(&content, 0)).unwrap();
    assert_eq!(partial.finish().unwrap(), id);
    assert_eq!(content_of(&dst, id), content);

    let content = random_bytes(4 * C, 13);
    let (_src, manifest) = source(dir.path(), &content);
    let id = manifest.file_id();
    let mut partial = begin(&dst, &manifest);
    partial.put_chunk(1, chunk(&content, 1)).unwrap();
    let data = dir.path().join(format!("blobs/partial/{id}.data"));
    let f = fs::OpenOptions::new().write(true).open(&data).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"rot", C as u64 + 10).unwrap();
    for i in [0, 2, 3] {
        // Stored: the damage is the hash's business, found at `finish`.
        partial.put_chunk(i, chunk(&content, i)).unwrap();
    }
    assert!(matches!(partial.finish(), Err(BlobError::Corrupt { .. })));
    assert!(names_in(&dir.path().join("blobs/partial")).is_empty());
    assert_eq!(dst.status(id).unwrap().state, BlobState::Absent);
}

#[test]
fn an_empty_file_is_complete_as_soon_as_its_download_begins() {
    let dir = tempfile::tempdir().unwrap();
    let (_src, manifest) = source(dir.path(), b"");
    assert_eq!(manifest.chunk_count(), 0);
    let dst = store_in(dir.path());
    let partial = begin(&dst, &manifest);
    assert!(partial.is_complete() && partial.missing_chunks().is_empty());
    assert_eq!(partial.finish().unwrap(), FileId::of_content(b""));
    assert_eq!(content_of(&dst, manifest.file_id()), b"");
}

#[test]
fn a_batch_of_chunks_is_stored_with_one_call_and_a_bad_one_refuses_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let content = random_bytes(6 * C, 3);
    let (_src, manifest) = source(dir.path(), &content);
    let dst = store_in(dir.path());
    let mut partial = begin(&dst, &manifest);
    let mut bad = chunk(&content, 4).to_vec();
    bad[0] ^= 1;
    let err = partial
        .put_chunks(&[(0, chunk(&content, 0)), (4, &bad)])
        .unwrap_err();
    assert!(matches!(
        err,
        BlobError::ChunkMismatch(ChunkMismatch::Hash { index: 4 })
    ));
    assert_eq!(
        partial.have_bytes(),
        0,
        "nothing of a refused batch is stored"
    );
    let batch: Vec<(u32, &[u8])> = (0..6).map(|i| (i, chunk(&content, i))).collect();
    assert_eq!(partial.put_chunks(&batch[..3]).unwrap(), 3);
    assert_eq!(partial.put_chunks(&batch).unwrap(), 3, "only the new ones");
    partial.finish().unwrap();
    assert_eq!(content_of(&dst, manifest.file_id()), content);
}

#[test]
fn a_corrupt_chunk_is_refused_and_the_right_one_then_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let content = random_bytes(2 * C + 10, 4);
    let (_src, manifest) = source(dir.path(), &content);
    let dst = store_in(dir.path());
    let mut partial = begin(&dst, &manifest);
    let mut flipped = chunk(&content, 1).to_vec();
    flipped[C / 2] ^= 0x80;
    for (bytes, want) in [
        (flipped.as_slice(), ChunkMismatch::Hash { index: 1 }),
        (
            &chunk(&content, 1)[1..],
            ChunkMismatch::Length {
                index: 1,
                expected: CHUNK_SIZE,
                found: C - 1,
            },
        ),
    ] {
        match partial.put_chunk(1, bytes) {
            Err(BlobError::ChunkMismatch(got)) => assert_eq!(got, want),
            other => panic!("{other:?}"),
        }
        assert_eq!(partial.missing_chunks(), [0, 1, 2]);
        assert_eq!(dst.read_chunk(manifest.file_id(), 1).unwrap(), None);
    }
    assert!(matches!(
        partial.put_chunk(3, b"x"),
        Err(BlobError::ChunkMismatch(ChunkMismatch::NoSuchChunk {
            index: 3,
            count: 3
        }))
    ));
    assert!(partial.put_chunk(1, chunk(&content, 1)).unwrap());
    assert_eq!(partial.missing_chunks(), [0, 2]);
    assert!(matches!(
        partial.finish(),
        Err(BlobError::Incomplete { missing: 2, .. })
    ));
    // `finish` before the end keeps what was verified.
    let mut partial = begin(&dst, &manifest);
    assert_eq!(partial.missing_chunks(), [0, 2]);
    partial.put_chunk(0, chunk(&content, 0)).unwrap();
    partial.put_chunk(2, chunk(&content, 2)).unwrap();
    partial.finish().unwrap();
    assert_eq!(content_of(&dst, manifest.file_id()), content);
}

#[test]
fn a_dropped_download_resumes_with_only_verified_chunks_even_after_a_torn_log() {
    let dir = tempfile::tempdir().unwrap();
    let content = random_bytes(10 * C + 3, 5);
    let (_src, manifest) = source(dir.path(), &content);
    let id = manifest.file_id();
    let dst = store_in(dir.path());
    let mut partial = begin(&dst, &manifest);
    for i in [9, 2, 5, 10] {
        partial.put_chunk(i, chunk(&content, i)).unwrap();
    }
    drop(partial);
    // What a crash can leave at the end of the log: half a record, then (after a power
    // cut on some file systems) zeros. Neither may claim a chunk.
    let log = dir.path().join(format!("blobs/partial/{id}.chunks"));
    let mut f = fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(&[0, 0, 0, 7, 1, 2, 3]).unwrap();
    drop(f);
    let reopened = store_in(dir.path());
    let status = reopened.status(id).unwrap();
    assert_eq!(
        (status.state, status.have_bytes, status.size),
        (
            BlobState::Partial,
            3 * C as u64 + 3,
            Some(content.len() as u64)
        )
    );
    let mut partial = begin(&reopened, &manifest);
    assert_eq!(partial.missing_chunks(), [0, 1, 3, 4, 6, 7, 8]);
    // The next record overwrites the torn one; a zeroed tail after it is ignored too.
    partial.put_chunk(7, chunk(&content, 7)).unwrap();
    drop(partial);
    let mut f = fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(&[0u8; 32]).unwrap();
    drop(f);
    let mut partial = begin(&reopened, &manifest);
    assert_eq!(partial.missing_chunks(), [0, 1, 3, 4, 6, 8]);
    for i in partial.missing_chunks() {
        partial.put_chunk(i, chunk(&content, i)).unwrap();
    }
    partial.finish().unwrap();
    assert_eq!(content_of(&reopened, id), content);
}

/// The format of docs/STORAGE.md and PROTOCOL.md, written by hand: the same file cut
/// into 64 KiB chunks has another manifest (and hash) than the 128 KiB one.
fn manifest_with_chunk_size(content: &[u8], chunk_size: usize) -> Manifest {
    let mut bytes = vec![1u8];
    bytes.extend_from_slice(&(content.len() as u64).to_be_bytes());
    bytes.extend_from_slice(&(chunk_size as u32).to_be_bytes());
    bytes.extend_from_slice(&(content.len().div_ceil(chunk_size) as u32).to_be_bytes());
    bytes.extend_from_slice(&Sha256::digest(content));
    for c in content.chunks(chunk_size) {
        bytes.extend_from_slice(&Sha256::digest(c));
    }
    Manifest::decode(&bytes).unwrap()
}

#[test]
fn a_download_under_another_manifest_of_the_same_file_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let content = random_bytes(4 * C, 6);
    let (_src, manifest) = source(dir.path(), &content);
    let dst = store_in(dir.path());
    let mut partial = begin(&dst, &manifest);
    partial.put_chunk(0, chunk(&content, 0)).unwrap();
    drop(partial);
    let small = manifest_with_chunk_size(&content, 64 * 1024);
    assert_eq!(small.file_id(), manifest.file_id());
    assert_ne!(small.hash(), manifest.hash());
    let mut partial = begin(&dst, &small);
    assert_eq!(partial.missing_chunks().len(), 8, "nothing carried over");
    for (i, c) in content.chunks(64 * 1024).enumerate() {
        partial.put_chunk(i as u32, c).unwrap();
    }
    partial.finish().unwrap();
    assert_eq!(content_of(&dst, small.file_id()), content);
    assert_eq!(*dst.manifest(small.file_id()).unwrap().unwrap(), small);
}

#[test]
fn a_manifest_whose_chunks_match_but_whole_hash_does_not_is_discarded_at_finish() {
    let dir = tempfile::tempdir().unwrap();
    let content = random_bytes(3 * C + 1, 7);
    let (_src, manifest) = source(dir.path(), &content);
    let mut bytes = manifest.encode();
    let claimed = FileId::of_content(b"something else entirely");
    bytes[17..49].copy_from_slice(claimed.as_bytes());
    let lying = Manifest::decode(&bytes).unwrap();
    let dst = store_in(dir.path());
    let mut partial = begin(&dst, &lying);
    for i in 0..lying.chunk_count() {
        partial.put_chunk(i, chunk(&content, i)).unwrap();
    }
    assert!(partial.is_complete());
    match partial.finish() {
        Err(BlobError::WholeHashMismatch { file_id, found }) => {
            assert_eq!(file_id, claimed);
            assert_eq!(found, manifest.file_id());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(dst.status(claimed).unwrap().state, BlobState::Absent);
    assert!(dst.open_content(claimed).unwrap().is_none());
    assert!(dst.read_chunk(claimed, 0).unwrap().is_none());
    assert!(names_in(&dir.path().join("blobs/partial")).is_empty());
    assert!(names_in(&dir.path().join("blobs/complete")).is_empty());
}

#[test]
fn a_partial_download_serves_only_its_verified_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let content = random_bytes(4 * C, 8);
    let (_src, manifest) = source(dir.path(), &content);
    let id = manifest.file_id();
    let dst = store_in(dir.path());
    let mut partial = begin(&dst, &manifest);
    partial.put_chunk(0, chunk(&content, 0)).unwrap();
    partial.put_chunk(2, chunk(&content, 2)).unwrap();
    let check = |store: &BlobStore| {
        assert_eq!(
            store.read_chunk(id, 0).unwrap().unwrap(),
            chunk(&content, 0)
        );
        assert_eq!(
            store.read_chunk(id, 2).unwrap().unwrap(),
            chunk(&content, 2)
        );
        assert_eq!(store.read_chunk(id, 1).unwrap(), None);
        assert_eq!(store.read_chunk(id, 3).unwrap(), None);
        assert!(matches!(
            store.read_chunk(id, 4),
            Err(BlobError::NoSuchChunk { count: 4, .. })
        ));
        assert_eq!(*store.manifest(id).unwrap().unwrap(), manifest);
        assert!(store.open_content(id).unwrap().is_none(), "not complete");
    };
    check(&dst); // while the download is open
    drop(partial);
    check(&dst); // from its files
    check(&store_in(dir.path())); // after a restart

    // A chunk damaged on disk after it was verified is read as it is now (serving does
    // not hash it again), and a receiver's store refuses it.
    let data = dir.path().join(format!("blobs/partial/{id}.data"));
    let f = fs::OpenOptions::new().write(true).open(&data).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"rot", 10).unwrap();
    let damaged = dst.read_chunk(id, 0).unwrap().unwrap();
    assert_eq!(&damaged[10..13], b"rot");
    let receiver = store_in(&dir.path().join("receiver"));
    let mut download = begin(&receiver, &manifest);
    assert!(matches!(
        download.put_chunk(0, &damaged),
        Err(BlobError::ChunkMismatch(_))
    ));
    assert_eq!(download.missing_chunks(), [0, 1, 2, 3]);
    let unknown = FileId::of_content(b"never seen");
    assert_eq!(dst.read_chunk(unknown, 0).unwrap(), None);
    assert!(dst.manifest(unknown).unwrap().is_none());
}

#[test]
fn a_large_manifest_travels_in_pages_and_is_checked_against_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let content = random_bytes(10 * C + 1, 9);
    let (src, manifest) = source(dir.path(), &content);
    let id = manifest.file_id();
    // What the signed file message carries: id, size, chunk size, manifest hash.
    let (size, chunk_size, hash) = (manifest.size(), manifest.chunk_size(), manifest.hash());
    let served = src.manifest(id).unwrap().unwrap();
    let per_page = 4;
    let mut assembly = ManifestAssembly::new(id, size, chunk_size, hash, per_page).unwrap();
    assert_eq!(assembly.page_count(), 3);
    for page in assembly.missing_pages() {
        assembly
            .add_page(page, &served.page(page, per_page).unwrap())
            .unwrap();
    }
    let received = assembly.finish().unwrap();
    received.check_describes(id, size, hash).unwrap();
    let dst = store_in(dir.path());
    let mut partial = begin(&dst, &received);
    for i in 0..received.chunk_count() {
        partial
            .put_chunk(i, &src.read_chunk(id, i).unwrap().unwrap())
            .unwrap();
    }
    partial.finish().unwrap();
    assert_eq!(content_of(&dst, id), content);
}

#[test]
fn one_download_per_file_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let content = random_bytes(2 * C, 10);
    let (_src, manifest) = source(dir.path(), &content);
    let dst = store_in(dir.path());
    let partial = begin(&dst, &manifest);
    assert!(matches!(
        dst.clone().begin_download(manifest.clone()),
        Err(BlobError::InUse { .. })
    ));
    drop(partial);
    let partial = begin(&dst, &manifest);
    partial.discard().unwrap();
    assert_eq!(
        dst.status(manifest.file_id()).unwrap().state,
        BlobState::Absent
    );
    assert!(names_in(&dir.path().join("blobs/partial")).is_empty());
    // Imported meanwhile: the download's finish keeps the one copy.
    let mut partial = begin(&dst, &manifest);
    dst.import(content.as_slice()).unwrap();
    for i in 0..2 {
        partial.put_chunk(i, chunk(&content, i)).unwrap();
    }
    partial.finish().unwrap();
    assert_eq!(content_of(&dst, manifest.file_id()), content);
    assert!(names_in(&dir.path().join("blobs/partial")).is_empty());
}

#[test]
fn everything_is_private_and_open_clears_what_a_crash_left() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let content = random_bytes(C + 1, 11);
    let (id, manifest) = store.import(content.as_slice()).unwrap();
    let other = random_bytes(2 * C, 12);
    let (_src, other_manifest) = source(dir.path(), &other);
    let mut partial = begin(&store, &other_manifest);
    partial.put_chunk(1, chunk(&other, 1)).unwrap();
    let blobs = dir.path().join("blobs");
    let mut seen = 0;
    for sub in ["", "complete", "partial", "tmp"] {
        let d = blobs.join(sub);
        assert_eq!(
            fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
        for name in names_in(&d) {
            let meta = fs::metadata(d.join(&name)).unwrap();
            if meta.is_file() {
                assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
                seen += 1;
            }
        }
    }
    assert_eq!(seen, 5, "content and manifest; data, manifest and log");
    drop(partial);
    drop(store);

    // Leftovers: an import cut short, an atomic write's temporary file, and a finished
    // download's log and manifest copy (the crash came after the rename).
    fs::write(blobs.join("tmp/0123456789abcdef.import"), "half").unwrap();
    fs::write(blobs.join(format!("complete/.{id}.manifest.tmp-42")), "x").unwrap();
    fs::write(blobs.join(format!("partial/{id}.chunks")), "x").unwrap();
    fs::write(blobs.join(format!("partial/{id}.manifest")), "x").unwrap();
    fs::set_permissions(&blobs, fs::Permissions::from_mode(0o755)).unwrap();
    let store = store_in(dir.path());
    assert_eq!(
        fs::metadata(&blobs).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert!(names_in(&blobs.join("tmp")).is_empty());
    assert_eq!(
        names_in(&blobs.join("complete")),
        [id.to_string(), format!("{id}.manifest")]
    );
    let other_id = other_manifest.file_id();
    assert_eq!(
        names_in(&blobs.join("partial")),
        [
            format!("{other_id}.chunks"),
            format!("{other_id}.data"),
            format!("{other_id}.manifest")
        ],
        "a download still going is kept"
    );
    assert_eq!(*store.manifest(id).unwrap().unwrap(), manifest);
}

// --- SIGKILL at any point ------------------------------------------------------------

const CHILD_ENV: &str = "LANCHAT_BLOBS_CRASH_CHILD_DIR";
const CRASH_CHUNKS: u32 = 256;
/// Chunks acknowledged before the kill: the child is then well inside the download.
const ACKS_BEFORE_KILL: usize = 12;

/// Not a test of its own: the body of the child process that
/// `a_killed_download_keeps_every_acknowledged_chunk_and_no_other` starts.
#[test]
fn download_child_process() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let src = BlobStore::open(&dir.join("source")).unwrap();
    let manifest = Manifest::decode(&fs::read(dir.join("manifest")).unwrap()).unwrap();
    let id = manifest.file_id();
    let dst = store_in(&dir);
    let mut partial = begin(&dst, &manifest);
    let mut order: Vec<u32> = (0..manifest.chunk_count()).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(99));
    let mut out = std::io::stdout().lock();
    for (n, i) in order.into_iter().enumerate() {
        let bytes = src.read_chunk(id, i).unwrap().unwrap();
        // Every fourth call a batch of two, so the kill also lands inside batches.
        if n % 4 == 0 && i + 1 < manifest.chunk_count() {
            let next = src.read_chunk(id, i + 1).unwrap().unwrap();
            partial.put_chunks(&[(i, &bytes), (i + 1, &next)]).unwrap();
            writeln!(out, "ACK {i}\nACK {}", i + 1).unwrap();
        } else {
            partial.put_chunk(i, &bytes).unwrap();
            writeln!(out, "ACK {i}").unwrap();
        }
        out.flush().unwrap();
    }
}

#[test]
fn a_killed_download_keeps_every_acknowledged_chunk_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let content = random_bytes(CRASH_CHUNKS as usize * C - 5, 13);
    let (src, manifest) = source(dir.path(), &content);
    fs::write(dir.path().join("manifest"), manifest.encode()).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "download_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let mut killed = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let Ok(line) = line else { break };
        if let Some(i) = line.strip_prefix("ACK ") {
            acked.push(i.parse::<u32>().unwrap());
        }
        if acked.len() >= ACKS_BEFORE_KILL && !killed {
            // Only the child this test started, by its own handle: SIGKILL on Unix.
            child.kill().unwrap();
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(killed, "the child ended before the kill: {status:?}");
    eprintln!("{} chunks acknowledged before SIGKILL", acked.len());

    let dst = store_in(dir.path());
    let id = manifest.file_id();
    let mut partial = begin(&dst, &manifest);
    let missing = partial.missing_chunks();
    for i in &acked {
        assert!(!missing.contains(i), "acknowledged chunk {i} was lost");
    }
    // Every chunk reported (acknowledged or stored just before the kill) is right.
    for i in (0..manifest.chunk_count()).filter(|i| !missing.contains(i)) {
        assert_eq!(dst.read_chunk(id, i).unwrap().unwrap(), chunk(&content, i));
    }
    assert!(
        (missing.len() as u32) < CRASH_CHUNKS,
        "something was recorded"
    );
    for i in missing {
        partial
            .put_chunk(i, &src.read_chunk(id, i).unwrap().unwrap())
            .unwrap();
    }
    partial.finish().unwrap();
    assert_eq!(content_of(&dst, id), content);
}

// --- a full disk (root only: a small tmpfs) -------------------------------------------

fn effective_uid() -> Option<u32> {
    fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
}

/// A tmpfs mounted at `path`, unmounted on drop (also when the test panics).
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mount -t tmpfs on {} failed",
            path.display()
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Fills the file system of `dir` to the last byte; returns the filler's path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = fs::File::create(&path).unwrap();
    let block = vec![0x5a_u8; 64 * 1024];
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    while let Ok(1..) = file.write(&[0]) {}
    let _ = file.sync_all();
    path
}

#[test]
fn a_full_disk_marks_nothing_and_the_same_chunk_goes_in_once_space_returns() {
    if effective_uid() != Some(0) {
        eprintln!(
            "SKIPPED: this test mounts a small tmpfs for the blob store, which needs root; \
             run it as root (e.g. in the CI container) to prove the disk-full behaviour"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let content = random_bytes(16 * C, 14);
    let (_src, manifest) = source(dir.path(), &content);
    let id = manifest.file_id();
    let mount = dir.path().join("fs");
    let _tmpfs = Tmpfs::mount(&mount, "4m");
    let dst = BlobStore::open(&mount.join("blobs")).unwrap();
    let mut partial = begin(&dst, &manifest);
    partial.put_chunk(0, chunk(&content, 0)).unwrap();
    let filler = fill(&mount);

    let err = partial.put_chunk(1, chunk(&content, 1)).unwrap_err();
    assert!(matches!(err, BlobError::DiskFull { .. }), "{err:?}");
    assert_eq!(err.fault_kind(), Some(storage::WriteFaultKind::DiskFull));
    assert_eq!(partial.have_bytes(), C as u64);
    assert!(partial.missing_chunks().contains(&1));
    assert_eq!(dst.read_chunk(id, 1).unwrap(), None);
    // An import fails the same way and leaves nothing behind.
    let err = dst.import(random_bytes(2 * C, 15).as_slice()).unwrap_err();
    assert!(matches!(err, BlobError::DiskFull { .. }), "{err:?}");
    assert!(names_in(&mount.join("blobs/tmp")).is_empty());
    // Nothing on disk claims the chunk either.
    drop(partial);
    assert_eq!(dst.status(id).unwrap().have_bytes, C as u64);

    fs::remove_file(filler).unwrap();
    let mut partial = begin(&dst, &manifest);
    assert_eq!(partial.missing_chunks(), (1..16).collect::<Vec<_>>());
    for i in partial.missing_chunks() {
        partial.put_chunk(i, chunk(&content, i)).unwrap();
    }
    partial.finish().unwrap();
    assert_eq!(content_of(&dst, id), content);
}
