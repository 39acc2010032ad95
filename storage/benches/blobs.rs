//! Blob store benchmark: `cargo bench -p storage --bench blobs`.
//!
//! Imports a file streamed from a generator (never in memory), downloads it chunk by
//! chunk into a second store (each chunk read back and verified from the first, as when
//! serving a peer, then verified and stored, 16 chunks per fsync), and finishes it (the
//! whole file read back and hashed). Prints the time of each step beside a baseline
//! measured in the same run — the same bytes written to a plain file and fsynced, and
//! SHA-256 alone over them — and the process's peak resident memory (VmHWM) after each
//! step, which shows that memory does not grow with the file.
//! `LANCHAT_BENCH_BLOB_MIB` sets the size (default 1024).

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::{self, Read, Write};
use std::time::Instant;

use sha2::{Digest, Sha256};
use storage::blobs::{BlobStore, Download};

/// Chunks per `put_chunks` call: one fsync per 2 MiB.
const BATCH: usize = 16;

/// Pseudo-random bytes (xorshift64), generated as they are read.
struct Generator {
    state: u64,
    left: u64,
}

impl Read for Generator {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for word in buf[..n].chunks_mut(8) {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            word.copy_from_slice(&self.state.to_le_bytes()[..word.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn generator(bytes: u64) -> Generator {
    Generator {
        state: 0x9e37_79b9_7f4a_7c15,
        left: bytes,
    }
}

fn peak_rss_kib() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn report(what: &str, bytes: u64, start: Instant) {
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{what:<44} {secs:>7.2} s  {:>7.1} MiB/s  peak RSS {:>6} KiB",
        bytes as f64 / secs / (1 << 20) as f64,
        peak_rss_kib()
    );
}

fn main() {
    let mib: u64 = std::env::var("LANCHAT_BENCH_BLOB_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let size = mib << 20;
    let dir = tempfile::tempdir().unwrap();
    println!("blob store, {mib} MiB, in {}", dir.path().display());
    println!("{:<44} peak RSS {:>6} KiB", "at start", peak_rss_kib());

    // Baselines: the same bytes to a plain file (fsynced), and SHA-256 alone.
    let start = Instant::now();
    let mut plain = fs::File::create(dir.path().join("plain")).unwrap();
    io::copy(&mut generator(size), &mut plain).unwrap();
    plain.sync_all().unwrap();
    drop(plain);
    report("baseline: write + fsync a plain file", size, start);
    let start = Instant::now();
    let mut hasher = Sha256::new();
    let mut gen = generator(size);
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        let n = gen.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let _ = hasher.finalize();
    report("baseline: SHA-256 alone", size, start);
    fs::remove_file(dir.path().join("plain")).unwrap();

    let source = BlobStore::open(&dir.path().join("source")).unwrap();
    let start = Instant::now();
    let (id, manifest) = source.import(generator(size)).unwrap();
    report("import (hash chunks and whole, write, fsync)", size, start);

    let dest = BlobStore::open(&dir.path().join("dest")).unwrap();
    let Download::Partial(mut partial) = dest.begin_download(manifest.clone()).unwrap() else {
        panic!("already complete")
    };
    let start = Instant::now();
    let indexes: Vec<u32> = (0..manifest.chunk_count()).collect();
    for batch in indexes.chunks(BATCH) {
        let chunks: Vec<(u32, Vec<u8>)> = batch
            .iter()
            .map(|&i| (i, source.read_chunk(id, i).unwrap().unwrap()))
            .collect();
        let refs: Vec<(u32, &[u8])> = chunks.iter().map(|(i, c)| (*i, c.as_slice())).collect();
        partial.put_chunks(&refs).unwrap();
    }
    report("download: read_chunk + put_chunks (16/fsync)", size, start);
    let start = Instant::now();
    partial.finish().unwrap();
    report("finish (read back, SHA-256, rename)", size, start);
    io::stdout().flush().unwrap();
}
