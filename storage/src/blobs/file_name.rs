//! Names for received files. A file's name arrives in its message from a colleague's
//! node, so it is untrusted text: it must never reach outside the folder it is saved in,
//! hide itself, pass for another type, or overwrite a file already there. The blob store
//! keeps no names (content is stored by hash); these are for whoever saves a copy.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// The longest name most file systems take (ext4, NTFS, APFS count 255 bytes or units).
pub const MAX_NAME_BYTES: usize = 255;
/// An extension up to this long (with its dot) is kept when a long name is cut.
const MAX_KEPT_EXTENSION: usize = 33;
/// `unique_path` gives up after "name (9999)".
pub const MAX_COPIES: u32 = 9999;

/// Device names Windows reserves in any folder, with any extension, in any case.
const WINDOWS_RESERVED: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "COM0", "COM1", "COM2", "COM3", "COM4",
    "COM5", "COM6", "COM7", "COM8", "COM9", "COM¹", "COM²", "COM³", "LPT0", "LPT1", "LPT2", "LPT3",
    "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9", "LPT¹", "LPT²", "LPT³",
];

#[derive(Debug, thiserror::Error)]
pub enum NameError {
    #[error("the file name is empty once unsafe characters are removed")]
    Empty,
    #[error("no free name for {name} in {dir} up to \"({MAX_COPIES})\"")]
    NoFreeName { dir: PathBuf, name: String },
    #[error("cannot check or create {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// A name that is safe to save under in any folder, made from `raw` (a name a peer sent):
///
/// - path separators (`/`, `\`), the characters Windows forbids (`<>:"|?*`), control
///   characters (NUL, newlines, DEL, C1) and the bidirectional-text controls that can
///   make `exe.pdf` read as `fdp.exe` are each replaced by `_`;
/// - whitespace and dots are trimmed from both ends: no `.`/`..`, no hidden dot-file, no
///   name Windows would silently change (trailing dot or space);
/// - a Windows device name (`CON`, `nul.txt`, `COM1`, …) gets a leading `_`;
/// - a name over 255 bytes of UTF-8 is cut on a character boundary, keeping a short
///   extension;
/// - nothing left → [`NameError::Empty`].
///
/// A name that is already clean comes back unchanged, and sanitizing twice changes
/// nothing more than once (property tests below).
pub fn sanitize_file_name(raw: &str) -> Result<String, NameError> {
    let mapped: String = trim(raw)
        .chars()
        .map(|c| if is_unsafe(c) { '_' } else { c })
        .collect();
    let name = trim(&mapped);
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    let mut name = cut(name, MAX_NAME_BYTES);
    if is_reserved(&name) {
        name = cut(&format!("_{name}"), MAX_NAME_BYTES);
    }
    Ok(name)
}

/// A path in `dir` for a file called `name` (sanitized here) that does not exist yet:
/// `a.txt`, else `a (1).txt`, `a (2).txt`, … Only a check: another process may take
/// the name before it is created; [`create_unique`] creates it in the same step.
pub fn unique_path(dir: &Path, name: &str) -> Result<PathBuf, NameError> {
    let name = sanitize_file_name(name)?;
    for copy in 0..=MAX_COPIES {
        let path = dir.join(candidate(&name, copy));
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(path),
            Err(source) => return Err(NameError::Io { path, source }),
            Ok(_) => {}
        }
    }
    Err(NameError::NoFreeName {
        dir: dir.to_path_buf(),
        name,
    })
}

/// Creates a new file in `dir` for `name` like [`unique_path`], but atomically
/// (`O_CREAT | O_EXCL`): an existing file — or a symbolic link — is never opened, even
/// if it appears between the check and the creation. The mode is the user's default
/// (umask): a saved copy is the user's document, not the node's private data.
pub fn create_unique(dir: &Path, name: &str) -> Result<(PathBuf, File), NameError> {
    let name = sanitize_file_name(name)?;
    for copy in 0..=MAX_COPIES {
        let path = dir.join(candidate(&name, copy));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(NameError::Io { path, source }),
        }
    }
    Err(NameError::NoFreeName {
        dir: dir.to_path_buf(),
        name,
    })
}

/// `name` itself for copy 0, else `stem (copy).ext`, cut to fit: the names
/// [`unique_path`] tries, in its order, for a caller that looks at each one itself
/// (`name` sanitized already).
pub fn candidate(name: &str, copy: u32) -> String {
    if copy == 0 {
        return name.to_string();
    }
    let (stem, ext) = split_extension(name);
    let suffix = format!(" ({copy}){ext}");
    let stem = trim_end(floor_char_boundary(stem, MAX_NAME_BYTES - suffix.len()));
    format!("{stem}{suffix}")
}

fn is_unsafe(c: char) -> bool {
    matches!(
        c,
        '/' | '\\' | '<' | '>' | ':' | '"' | '|' | '?' | '*'
            // Bidirectional controls: marks, embeddings, overrides, isolates.
            | '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    ) || c.is_control()
}

fn trim(s: &str) -> &str {
    s.trim_start_matches(|c: char| c.is_whitespace() || c == '.')
        .trim_end_matches(|c: char| c.is_whitespace() || c == '.')
}

fn trim_end(s: &str) -> &str {
    s.trim_end_matches(|c: char| c.is_whitespace() || c == '.')
}

/// Windows looks at the part before the first dot, trailing spaces ignored.
fn is_reserved(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name).trim_end();
    // ASCII case only: Windows folds `com¹` like `COM¹`, and the superscripts have no case.
    WINDOWS_RESERVED
        .iter()
        .any(|reserved| stem.eq_ignore_ascii_case(reserved))
}

/// `("report", ".pdf")`; no extension when there is no dot after the first character or
/// the extension is too long to be one.
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(dot) if dot > 0 && name.len() - dot <= MAX_KEPT_EXTENSION => name.split_at(dot),
        _ => (name, ""),
    }
}

/// `name` (trimmed) cut to at most `max` bytes, keeping its extension when it has one.
fn cut(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let (stem, ext) = split_extension(name);
    let stem = trim_end(floor_char_boundary(stem, max - ext.len()));
    format!("{stem}{ext}")
}

fn floor_char_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn clean(raw: &str) -> String {
        sanitize_file_name(raw).unwrap()
    }

    #[test]
    fn separators_and_traversal_never_survive() {
        assert_eq!(clean("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(clean("..\\..\\boot.ini"), "_.._boot.ini");
        assert_eq!(clean("/abs/path.txt"), "_abs_path.txt");
        assert_eq!(clean("C:\\x.txt"), "C__x.txt");
        for dots in [".", "..", "...", " . . ", "", "   ", "\n\t"] {
            assert!(
                matches!(sanitize_file_name(dots), Err(NameError::Empty)),
                "{dots:?}"
            );
        }
    }

    #[test]
    fn hidden_control_and_bidi_characters_are_replaced() {
        assert_eq!(clean(".bashrc"), "bashrc");
        assert_eq!(clean("a\0b\u{7f}c\u{85}d"), "a_b_c_d");
        assert_eq!(clean("line\nbreak.txt"), "line_break.txt");
        assert_eq!(clean("invoice\u{202E}fdp.exe"), "invoice_fdp.exe");
        assert_eq!(clean("  report.pdf .. "), "report.pdf");
        assert_eq!(clean("what?<>|*\".txt"), "what______.txt");
        // Letters of every script, emoji with joiners: kept.
        for kept in [
            "Отчёт 2024.docx",
            "報告書.pdf",
            "👨‍👩‍👧 photo.jpg",
            "naïve café.txt",
        ] {
            assert_eq!(clean(kept), kept);
        }
    }

    #[test]
    fn windows_device_names_get_a_leading_underscore() {
        for (raw, want) in [
            ("CON", "_CON"),
            ("nul.txt", "_nul.txt"),
            ("Com1.tar.gz", "_Com1.tar.gz"),
            ("LPT9 .log", "_LPT9 .log"),
            ("com¹", "_com¹"),
            ("CONOUT$", "_CONOUT$"),
        ] {
            assert_eq!(clean(raw), want);
        }
        for fine in ["CONSOLE.txt", "nullable", "COM10", "aux-notes.md"] {
            assert_eq!(clean(fine), fine);
        }
    }

    #[test]
    fn long_names_are_cut_on_a_char_boundary_keeping_the_extension() {
        let long = format!("{}.pdf", "é".repeat(200)); // 400 bytes of stem
        let cut = clean(&long);
        assert!(cut.len() <= 255 && cut.ends_with(".pdf"), "{cut}");
        assert_eq!(cut.len(), 254, "125 whole é (2 bytes each) and .pdf");
        let no_ext = "x".repeat(300);
        assert_eq!(clean(&no_ext).len(), 255);
        let long_ext = format!("a.{}", "b".repeat(300));
        assert_eq!(clean(&long_ext).len(), 255);
        // A cut that ends in spaces or dots is trimmed again.
        let spaced = format!("a{}.txt", " ".repeat(300));
        assert_eq!(clean(&spaced), "a.txt");
    }

    #[test]
    fn unique_paths_never_name_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut made = Vec::new();
        for _ in 0..3 {
            let path = unique_path(d, "a.txt").unwrap();
            fs::write(&path, "x").unwrap();
            made.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
        assert_eq!(made, ["a.txt", "a (1).txt", "a (2).txt"]);
        // A dangling symbolic link is a name in use too.
        std::os::unix::fs::symlink(d.join("nowhere"), d.join("b")).unwrap();
        assert_eq!(unique_path(d, "b").unwrap(), d.join("b (1)"));
        assert_eq!(unique_path(d, "../a.txt").unwrap(), d.join("_a.txt"));
        let long = format!("{}.txt", "z".repeat(300));
        let first = create_unique(d, &long).unwrap().0;
        let second = create_unique(d, &long).unwrap().0;
        assert_ne!(first, second);
        let name = second.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.len() <= 255 && name.ends_with(" (1).txt"), "{name}");
        let (path, _file) = create_unique(d, "a.txt").unwrap();
        assert_eq!(path, d.join("a (3).txt"));
    }

    proptest! {
        #[test]
        fn sanitized_names_are_safe_and_stable(raw in "\\PC{0,300}|[./\\\\ \\x00-\\x1f\u{202e}a-zA-Z]{0,40}") {
            if let Ok(name) = sanitize_file_name(&raw) {
                prop_assert!(!name.is_empty() && name.len() <= MAX_NAME_BYTES);
                prop_assert!(!name.contains(['/', '\\', '\0']));
                prop_assert!(name != "." && name != "..");
                prop_assert!(!name.starts_with('.') && !name.ends_with('.'));
                prop_assert!(!name.chars().any(|c| c.is_control()));
                prop_assert!(!is_reserved(&name));
                prop_assert_eq!(sanitize_file_name(&name).unwrap(), name.clone());
                for copy in [1, 42, MAX_COPIES] {
                    let c = candidate(&name, copy);
                    prop_assert!(c.len() <= MAX_NAME_BYTES);
                    prop_assert_eq!(sanitize_file_name(&c).unwrap(), c);
                }
            }
        }

        #[test]
        fn clean_names_come_back_unchanged(name in "[a-zA-Z0-9_\\-é報][a-zA-Z0-9 _\\-().é報]{0,60}[a-zA-Z0-9_é報](\\.[a-z0-9]{1,5})?") {
            prop_assume!(!is_reserved(&name));
            prop_assert_eq!(sanitize_file_name(&name).unwrap(), name);
        }
    }
}
