//! File content, stored by its SHA-256 (issue 17): the first building block of file
//! transfer. A file's id is the SHA-256 of its whole content; the content is cut into
//! fixed-size chunks, each with its own SHA-256 in a [`Manifest`], so a receiver can
//! check every chunk as it arrives, resume from the chunks it already checked, and take
//! chunks from any member that has them.
//!
//! - [`manifest`]: the manifest, its versioned binary encoding, its hash and its pages
//!   (pure: bytes in, bytes out; no I/O).
//! - [`BlobStore`] (`store`): `<data_dir>/blobs/`: import, downloads, serving chunks,
//!   reading complete content.
//! - [`PartialBlob`] (`partial`): one download in progress, with its log of verified
//!   chunks (`chunk_log`).
//! - [`file_name`]: turning a name a peer sent into one that is safe to save under.
//!
//! Every function here does blocking file I/O and hashing (a 1 GiB file is hashed at
//! least once more at the end of a download): callers on tokio run them with
//! `tokio::task::spawn_blocking`. The format and the crash-safety argument are in
//! docs/STORAGE.md, "Files (blobs)".

mod chunk_log;
mod error;
pub mod file_name;
mod fs_util;
pub mod manifest;
mod partial;
mod store;

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

pub use error::BlobError;
pub use file_name::{create_unique, sanitize_file_name, unique_path, NameError};
pub use manifest::{ChunkMismatch, Manifest, ManifestAssembly, ManifestError};
pub use partial::PartialBlob;
pub use store::{BlobState, BlobStatus, BlobStore, Download, BLOBS_DIR};

/// The size of every chunk but a file's last: 128 KiB.
///
/// - It travels in one link frame (at most 256 KiB, docs/PROTOCOL.md): half the frame is
///   left for the transfer's header (file id, index, manifest hash) and for growth.
/// - Text never waits long behind it: at 100 Mbit/s a chunk takes about 10 ms on the wire,
///   so a chat message queued behind file data waits one chunk, not one file.
/// - A power of two, so chunks line up with pages and file-system blocks (sparse partial
///   files allocate exactly the chunks written).
/// - Per-chunk costs stay small: 32 bytes of hash per 128 KiB (0.024 %), 8192 chunks and a
///   256 KiB manifest per GiB; a corrupt chunk costs 128 KiB to fetch again.
pub const CHUNK_SIZE: u32 = 128 * 1024;

/// The smallest chunk size a manifest may declare. Readers accept a range (not only
/// [`CHUNK_SIZE`]) so a later build may choose another size without a new manifest
/// version; the lower bound caps the chunk count of a file (and so its manifest) at
/// [`MAX_FILE_SIZE`] / 64 KiB = 1 Mi chunks, 32 MiB of hashes.
pub const MIN_CHUNK_SIZE: u32 = 64 * 1024;

/// The largest chunk size a manifest may declare: still one link frame with 64 KiB to
/// spare for the header.
pub const MAX_CHUNK_SIZE: u32 = 192 * 1024;

/// The largest file: 64 GiB. Far above what an office shares over a LAN, and it bounds
/// what a manifest may make a receiver allocate (at most 32 MiB of chunk hashes).
pub const MAX_FILE_SIZE: u64 = 64 << 30;

/// Chunk hashes per manifest page ([`Manifest::page`]): 4096 × 32 bytes = 128 KiB, one
/// frame like a chunk. A manifest of up to 512 MiB of content (at [`CHUNK_SIZE`]) fits in
/// one page; 64 GiB needs 128.
pub const MANIFEST_PAGE_HASHES: u32 = 4096;

/// The largest page [`ManifestAssembly`] accepts: 6144 hashes, 192 KiB, so a page always
/// fits in one frame.
pub const MAX_MANIFEST_PAGE_HASHES: u32 = 6144;

/// A link frame's limit (docs/PROTOCOL.md, "Sealed messages"): chunks and manifest pages
/// must each fit in one frame with room for a header, which the build checks here.
const LINK_FRAME_MAX: u32 = 256 * 1024;
const _: () = {
    assert!(MIN_CHUNK_SIZE <= CHUNK_SIZE && CHUNK_SIZE <= MAX_CHUNK_SIZE);
    assert!(
        MIN_CHUNK_SIZE.is_multiple_of(4096)
            && CHUNK_SIZE.is_multiple_of(4096)
            && MAX_CHUNK_SIZE.is_multiple_of(4096)
    );
    assert!(MAX_CHUNK_SIZE + 16 * 1024 <= LINK_FRAME_MAX);
    assert!(MANIFEST_PAGE_HASHES <= MAX_MANIFEST_PAGE_HASHES);
    assert!(MAX_MANIFEST_PAGE_HASHES * 32 + 16 * 1024 <= LINK_FRAME_MAX);
    // Chunk indexes are u32.
    assert!(MAX_FILE_SIZE / MIN_CHUNK_SIZE as u64 <= u32::MAX as u64);
};

/// A SHA-256 digest, as manifests hold them.
pub type Sha256Digest = [u8; 32];

pub(crate) fn sha256(bytes: &[u8]) -> Sha256Digest {
    Sha256::digest(bytes).into()
}

/// Why a text is not a 64-digit hex SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a SHA-256 in hex (64 hex digits): {0:?}")]
pub struct HexDigestError(pub String);

macro_rules! digest_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Sha256Digest);

        impl $name {
            pub const fn from_bytes(bytes: Sha256Digest) -> Self {
                Self(bytes)
            }

            pub const fn as_bytes(&self) -> &Sha256Digest {
                &self.0
            }
        }

        /// Lowercase hex, 64 digits: the form in paths, the API and file names.
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for b in self.0 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }

        /// 64 hex digits, either case (a user may paste an id in capitals).
        impl FromStr for $name {
            type Err = HexDigestError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                parse_hex_digest(text).map(Self)
            }
        }
    };
}

digest_newtype!(
    /// A file's id: the SHA-256 of its whole content.
    FileId
);

digest_newtype!(
    /// The SHA-256 of a manifest's encoding: what the author's signed file message
    /// carries, so a manifest fetched from anyone can be checked on arrival.
    ManifestHash
);

impl FileId {
    /// The id of `content` (for content already in memory; the store hashes as it reads).
    pub fn of_content(content: &[u8]) -> FileId {
        FileId(sha256(content))
    }

    /// The id of everything `reader` yields, read in 64 KiB pieces (blocking): whether
    /// a file outside the store holds exactly this content.
    pub fn of_reader(mut reader: impl std::io::Read) -> std::io::Result<FileId> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => hasher.update(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(FileId(hasher.finalize().into()))
    }
}

fn parse_hex_digest(text: &str) -> Result<Sha256Digest, HexDigestError> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return Err(HexDigestError(text.chars().take(80).collect()));
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let (Some(hi), Some(lo)) = (hex_value(pair[0]), hex_value(pair[1])) else {
            return Err(HexDigestError(text.to_string()));
        };
        out[i] = hi << 4 | lo;
    }
    Ok(out)
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_ids_print_as_lowercase_hex_and_parse_back_in_either_case() {
        let id = FileId::of_content(b"");
        let text = id.to_string();
        assert_eq!(
            text,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(text.parse::<FileId>().unwrap(), id);
        assert_eq!(FileId::of_reader(&b""[..]).unwrap(), id);
        let big = vec![7u8; 200_000];
        assert_eq!(
            FileId::of_reader(&big[..]).unwrap(),
            FileId::of_content(&big)
        );
        assert_eq!(text.to_uppercase().parse::<FileId>().unwrap(), id);
        for bad in [
            "",
            "e3b0",
            &text[1..],
            &format!("{text}0"),
            &text.replace('e', "g"),
        ] {
            assert!(bad.parse::<FileId>().is_err(), "{bad:?}");
        }
        // Not a char boundary problem: multi-byte text of the right byte length.
        assert!("é".repeat(32).parse::<FileId>().is_err());
    }
}
