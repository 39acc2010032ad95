//! Media types from content and names.

#![allow(clippy::unwrap_used)]

use media::{mime_type, SNIFF_BYTES};
use proptest::prelude::*;

const DOCX: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
const PPTX: &str = "application/vnd.openxmlformats-officedocument.presentationml.presentation";

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR";
const JPEG: &[u8] = b"\xff\xd8\xff\xe0\0\x10JFIF\0";
const ZIP: &[u8] = b"PK\x03\x04\x14\0\x06\0";
const OLE: &[u8] = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\0\0";
/// Binary content nothing recognises.
const OPAQUE: &[u8] = b"\0\x01\x02\x03\xfe\xff";

#[test]
fn content_is_recognised_by_its_magic_number() {
    let bmp = b"BM\x36\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0\x01\0";
    let cases: &[(&[u8], &str)] = &[
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (b"GIF87a\x01\0", "image/gif"),
        (b"GIF89a\x01\0", "image/gif"),
        (b"RIFF\x24\0\0\0WEBPVP8 ", "image/webp"),
        (bmp, "image/bmp"),
        (b"%PDF-1.7\n%\xe2\xe3", "application/pdf"),
        (ZIP, "application/zip"),
        (b"PK\x05\x06\0\0", "application/zip"),
        (b"\x1f\x8b\x08\0", "application/gzip"),
        (b"7z\xbc\xaf\x27\x1c\0\x04", "application/x-7z-compressed"),
        (b"Rar!\x1a\x07\x01\0", "application/vnd.rar"),
        (b"\0\0\0\x20ftypisom\0\0\x02\0", "video/mp4"),
        (b"\0\0\0\x14ftypqt  \0\0\0\0", "video/quicktime"),
        (b"\0\0\0\x20ftypM4A \0\0\0\0", "audio/mp4"),
        (b"ID3\x04\0\0\0\0\0\0", "audio/mpeg"),
        (b"RIFF\x24\0\0\0WAVEfmt ", "audio/wav"),
        (b"OggS\0\x02\0\0", "audio/ogg"),
        (b"fLaC\0\0\0\x22", "audio/flac"),
        (b"\x1a\x45\xdf\xa3\x9f", "video/x-matroska"),
        (b"BZh91AY&SY", "application/x-bzip2"),
        (b"\xfd7zXZ\0\0", "application/x-xz"),
        (b"\x7fELF\x02\x01\x01", "application/x-executable"),
        (
            b"!<arch>\ndebian-binary",
            "application/vnd.debian.binary-package",
        ),
    ];
    for (head, mime) in cases {
        assert_eq!(mime_type("", head), *mime, "{head:?}");
        assert_eq!(mime_type("file.bin", head), *mime, "{head:?}");
    }
}

#[test]
fn content_wins_over_the_extension() {
    assert_eq!(mime_type("photo.png", JPEG), "image/jpeg");
    assert_eq!(mime_type("photo.jpg", PNG), "image/png");
    assert_eq!(mime_type("notes.txt", b"%PDF-1.4\n"), "application/pdf");
    assert_eq!(mime_type("report.docx", PNG), "image/png");
    // A picture named as a text file.
    assert_eq!(mime_type("readme.txt", PNG), "image/png");
    // Text is not what a .png claims.
    assert_eq!(mime_type("fake.png", b"just some words\n"), "text/plain");
}

#[test]
fn the_extension_picks_the_kind_of_a_container() {
    assert_eq!(mime_type("报告.docx", ZIP), DOCX);
    assert_eq!(mime_type("Budget 2026.XLSX", ZIP), XLSX);
    assert_eq!(mime_type("slides.pptx", ZIP), PPTX);
    assert_eq!(
        mime_type("a.odt", ZIP),
        "application/vnd.oasis.opendocument.text"
    );
    assert_eq!(mime_type("lib.jar", ZIP), "application/java-archive");
    assert_eq!(mime_type("archive.zip", ZIP), "application/zip");
    // ZIP content with a name of another family is a ZIP.
    assert_eq!(mime_type("letter.doc", ZIP), "application/zip");
    assert_eq!(mime_type("image.png", ZIP), "application/zip");
    assert_eq!(mime_type("old.doc", OLE), "application/msword");
    assert_eq!(mime_type("old.xls", OLE), "application/vnd.ms-excel");
    assert_eq!(mime_type("setup.msi", OLE), "application/x-msi");
    assert_eq!(mime_type("unknown", OLE), "application/x-ole-storage");
    assert_eq!(mime_type("new.docx", OLE), "application/x-ole-storage");
    assert_eq!(mime_type("clip.webm", b"\x1a\x45\xdf\xa3"), "video/webm");
    assert_eq!(mime_type("clip.ogv", b"OggS\0"), "video/ogg");
    assert_eq!(
        mime_type("setup.exe", b"MZ\x90\0"),
        "application/vnd.microsoft.portable-executable"
    );
}

#[test]
fn text_is_named_by_its_extension_or_plain() {
    let text = "名字,数量\n苹果,3\n".as_bytes();
    assert_eq!(mime_type("清单.csv", text), "text/csv");
    assert_eq!(mime_type("数据.JSON", b"{\"a\": 1}"), "application/json");
    assert_eq!(mime_type("README.md", b"# Title\n"), "text/markdown");
    assert_eq!(mime_type("main.rs", b"fn main() {}\n"), "text/x-rust");
    assert_eq!(mime_type("笔记", text), "text/plain");
    assert_eq!(
        mime_type("Makefile", b"all:\n\tcc -o x x.c\n"),
        "text/plain"
    );
    assert_eq!(mime_type(".bashrc", b"export A=1\n"), "text/plain");
    assert_eq!(
        mime_type("setup.exe", b"not really a program\n"),
        "text/plain"
    );
    // Markup without a telling name.
    assert_eq!(
        mime_type("drawing", b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>"),
        "image/svg+xml"
    );
    assert_eq!(
        mime_type("x", b"\xef\xbb\xbf<?xml version=\"1.0\"?>\n<svg>"),
        "image/svg+xml"
    );
    assert_eq!(
        mime_type("x", b"<?xml version=\"1.0\"?><a/>"),
        "application/xml"
    );
    assert_eq!(mime_type("page", b"  <!DOCTYPE html><html>"), "text/html");
    assert_eq!(mime_type("icon.svg", b"<svg/>"), "image/svg+xml");
    // A character cut off at the end of the head is still text.
    let cut = &"汉字".as_bytes()[..5];
    assert_eq!(mime_type("a.txt", cut), "text/plain");
    // Control characters and invalid UTF-8 are not text.
    assert_eq!(mime_type("a", b"abc\0def"), "application/octet-stream");
    assert_eq!(
        mime_type("a", b"\xc4\xe3\xba\xc3"),
        "application/octet-stream"
    );
    // GBK text with a text extension: the extension decides.
    assert_eq!(mime_type("旧.txt", b"\xc4\xe3\xba\xc3"), "text/plain");
}

#[test]
fn unknown_content_falls_back_to_the_extension() {
    let cases = [
        ("notes.txt", "text/plain"),
        ("doc.pdf", "application/pdf"),
        ("a.doc", "application/msword"),
        ("a.docx", DOCX),
        ("a.xls", "application/vnd.ms-excel"),
        ("a.xlsx", XLSX),
        ("a.ppt", "application/vnd.ms-powerpoint"),
        ("a.pptx", PPTX),
        ("a.tar", "application/x-tar"),
        ("a.tar.gz", "application/gzip"),
        ("a.7z", "application/x-7z-compressed"),
        ("a.rar", "application/vnd.rar"),
        ("照片.JPG", "image/jpeg"),
        ("a.jpeg", "image/jpeg"),
        ("a.gif", "image/gif"),
        ("a.webp", "image/webp"),
        ("a.bmp", "image/bmp"),
        ("a.svg", "image/svg+xml"),
        ("a.mp3", "audio/mpeg"),
        ("a.wav", "audio/wav"),
        ("a.mp4", "video/mp4"),
        ("a.mov", "video/quicktime"),
        ("a.mkv", "video/x-matroska"),
        ("a.exe", "application/vnd.microsoft.portable-executable"),
        ("a.msi", "application/x-msi"),
        ("a.deb", "application/vnd.debian.binary-package"),
        ("ubuntu.iso", "application/x-iso9660-image"),
        ("dir/sub/a.csv", "text/csv"),
        (
            "C:\\Users\\张三\\文档\\a.ODS",
            "application/vnd.oasis.opendocument.spreadsheet",
        ),
    ];
    for (name, mime) in cases {
        assert_eq!(mime_type(name, OPAQUE), mime, "{name}");
        // An empty file says nothing either.
        assert_eq!(mime_type(name, b""), mime, "{name} (empty)");
    }
}

#[test]
fn without_a_known_extension_unknown_content_is_an_octet_stream() {
    for name in [
        "",
        "README",
        "中文文件名",
        ".hidden",
        "trailing.",
        "a.unknownext",
        "a.verylongextension",
        "dir.d/file",
        "..",
    ] {
        assert_eq!(
            mime_type(name, OPAQUE),
            "application/octet-stream",
            "{name:?}"
        );
    }
}

#[test]
fn only_the_sniffed_prefix_is_read() {
    let mut head = b"plain words ".repeat(SNIFF_BYTES / 12 + 1);
    head.truncate(SNIFF_BYTES);
    head.extend_from_slice(b"\0\0\0 binary beyond the sniffed part");
    assert_eq!(mime_type("x", &head), "text/plain");
}

proptest! {
    #[test]
    fn any_name_and_content_has_a_type(name in ".{0,40}", head in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mime = mime_type(&name, &head);
        prop_assert!(mime.contains('/'));
    }

    #[test]
    fn a_png_is_a_png_whatever_its_name(name in ".{0,40}", tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        prop_assert_eq!(mime_type(&name, &[PNG, &tail].concat()), "image/png");
    }
}
