//! Media types: from the content's magic numbers first, then the name's extension.

/// How many leading bytes [`mime_type`] looks at: every magic number it knows lies in
/// them, and the UTF-8 text check reads at most this much. Passing fewer works (a short
/// file is its whole content); passing more costs time for nothing.
pub const SNIFF_BYTES: usize = 4096;

const OCTET_STREAM: &str = "application/octet-stream";
const TEXT_PLAIN: &str = "text/plain";

/// Container formats whose magic number alone does not say which kind of file it is: the
/// extension picks among the kinds of the family, else the family's generic type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// ZIP: OOXML (docx, xlsx, pptx), OpenDocument, EPUB, JAR, APK, …
    Zip,
    /// OLE compound files: old Office documents, MSI.
    Ole,
    /// Ogg: audio, or video (ogv).
    Ogg,
    /// EBML: Matroska or WebM.
    Ebml,
    /// Windows executables.
    Pe,
    /// UTF-8 text with no magic: plain text, source code, CSV, JSON, SVG, …
    Text,
}

/// What the first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sniffed {
    /// The type, whatever the name says.
    Is(&'static str),
    /// One of a family: the extension may say which.
    Family(Family, &'static str),
    /// Nothing known: the extension decides.
    Unknown,
}

/// The media type of a file named `name` whose content begins with `head` (its first
/// [`SNIFF_BYTES`] bytes, or all of it when shorter).
///
/// The content wins over the name: a `photo.png` that holds a JPEG is `image/jpeg`, a
/// `report.txt` that is a PDF is `application/pdf`. The extension (case-insensitive,
/// after the last dot of the name's last path component) refines a container (`.docx`
/// for ZIP content, `.msi` for an OLE file, `.webm` for Matroska) and a text file
/// (`.csv`, `.json`, `.svg`, …), and decides alone when the content is not recognised.
/// Text that is not UTF-8 and unknown binaries without a known extension are
/// `application/octet-stream`.
///
/// SVG is `image/svg+xml`; [`crate::thumbnail`] never decodes it (it may hold scripts).
pub fn mime_type(name: &str, head: &[u8]) -> &'static str {
    let head = &head[..head.len().min(SNIFF_BYTES)];
    let ext = by_extension(name);
    match sniff(head) {
        Sniffed::Is(mime) => mime,
        Sniffed::Family(family, generic) => match ext {
            Some((mime, Some(f))) if f == family => mime,
            _ => generic,
        },
        Sniffed::Unknown if looks_like_text(head) => match ext {
            Some((mime, Some(Family::Text))) => mime,
            _ => markup(head).unwrap_or(TEXT_PLAIN),
        },
        Sniffed::Unknown => ext.map_or(OCTET_STREAM, |(mime, _)| mime),
    }
}

/// The raster formats [`crate::thumbnail`] decodes, recognised by content only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Raster {
    Png,
    Jpeg,
    Gif,
    WebP,
    Bmp,
}

pub(crate) fn raster(head: &[u8]) -> Option<Raster> {
    match sniff(head) {
        Sniffed::Is("image/png") => Some(Raster::Png),
        Sniffed::Is("image/jpeg") => Some(Raster::Jpeg),
        Sniffed::Is("image/gif") => Some(Raster::Gif),
        Sniffed::Is("image/webp") => Some(Raster::WebP),
        Sniffed::Is("image/bmp") => Some(Raster::Bmp),
        _ => None,
    }
}

fn sniff(head: &[u8]) -> Sniffed {
    use Sniffed::{Family as F, Is};
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if at(0, b"\x89PNG\r\n\x1a\n") {
        Is("image/png")
    } else if at(0, b"\xff\xd8\xff") {
        Is("image/jpeg")
    } else if at(0, b"GIF87a") || at(0, b"GIF89a") {
        Is("image/gif")
    } else if at(0, b"RIFF") && at(8, b"WEBP") {
        Is("image/webp")
    } else if at(0, b"RIFF") && at(8, b"WAVE") {
        Is("audio/wav")
    } else if at(0, b"RIFF") && at(8, b"AVI ") {
        Is("video/x-msvideo")
    } else if is_bmp(head) {
        Is("image/bmp")
    } else if at(0, b"II*\0") || at(0, b"MM\0*") {
        Is("image/tiff")
    } else if at(0, b"%PDF-") {
        Is("application/pdf")
    } else if at(0, b"PK\x03\x04") || at(0, b"PK\x05\x06") || at(0, b"PK\x07\x08") {
        F(Family::Zip, "application/zip")
    } else if at(0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1") {
        F(Family::Ole, "application/x-ole-storage")
    } else if at(0, b"\x1f\x8b") {
        Is("application/gzip")
    } else if at(0, b"7z\xbc\xaf\x27\x1c") {
        Is("application/x-7z-compressed")
    } else if at(0, b"Rar!\x1a\x07") {
        Is("application/vnd.rar")
    } else if at(0, b"BZh") && head.get(3).is_some_and(|b| (b'1'..=b'9').contains(b)) {
        Is("application/x-bzip2")
    } else if at(0, b"\xfd7zXZ\0") {
        Is("application/x-xz")
    } else if at(0, b"\x28\xb5\x2f\xfd") {
        Is("application/zstd")
    } else if at(4, b"ftyp") {
        Is(ftyp(head.get(8..12).unwrap_or_default()))
    } else if at(0, b"ID3") {
        Is("audio/mpeg")
    } else if at(0, b"fLaC") {
        Is("audio/flac")
    } else if at(0, b"OggS") {
        F(Family::Ogg, "audio/ogg")
    } else if at(0, b"\x1a\x45\xdf\xa3") {
        F(Family::Ebml, "video/x-matroska")
    } else if at(0, b"!<arch>\ndebian") {
        Is("application/vnd.debian.binary-package")
    } else if at(0, b"\xed\xab\xee\xdb") {
        Is("application/x-rpm")
    } else if at(0, b"\x7fELF") {
        Is("application/x-executable")
    } else if at(0, b"MZ") {
        F(Family::Pe, "application/vnd.microsoft.portable-executable")
    } else if at(0, b"\0asm") {
        Is("application/wasm")
    } else {
        Sniffed::Unknown
    }
}

/// `BM`, a file size, and a DIB header of a size some BMP version uses: `BM` alone
/// begins too many other files (and texts).
fn is_bmp(head: &[u8]) -> bool {
    head.starts_with(b"BM")
        && head
            .get(14..18)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .is_some_and(|b| {
                matches!(
                    u32::from_le_bytes(b),
                    12 | 16 | 40 | 52 | 56 | 64 | 108 | 124
                )
            })
}

/// ISO base media files (`ftyp` box) by major brand.
fn ftyp(brand: &[u8]) -> &'static str {
    match brand {
        b"qt  " => "video/quicktime",
        b"M4A " | b"M4B " => "audio/mp4",
        b"heic" | b"heix" | b"heim" | b"heis" | b"mif1" | b"msf1" => "image/heic",
        b"avif" | b"avis" => "image/avif",
        b"3gp4" | b"3gp5" | b"3gp6" | b"3g2a" => "video/3gpp",
        _ => "video/mp4",
    }
}

/// Valid UTF-8 (a character cut off at the end of `head` is allowed) without control
/// characters other than tab, line breaks, form feed and escape (coloured logs).
fn looks_like_text(head: &[u8]) -> bool {
    if head.is_empty() {
        return false;
    }
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        // Cut inside a character: only the last (at most 3) bytes may be incomplete.
        Err(e) if e.error_len().is_none() && head.len() - e.valid_up_to() < 4 => {
            match std::str::from_utf8(&head[..e.valid_up_to()]) {
                Ok(text) => text,
                Err(_) => return false,
            }
        }
        Err(_) => return false,
    };
    text.chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r' | '\x0c' | '\x1b'))
}

/// Markup recognised in text whose extension does not say what it is.
fn markup(head: &[u8]) -> Option<&'static str> {
    let text = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    let text = &text[start..];
    let starts = |prefix: &[u8]| {
        text.get(..prefix.len())
            .is_some_and(|t| t.eq_ignore_ascii_case(prefix))
    };
    let contains = |needle: &[u8]| text.windows(needle.len()).any(|w| w == needle);
    if starts(b"<svg") || (starts(b"<?xml") && contains(b"<svg")) {
        Some("image/svg+xml")
    } else if starts(b"<?xml") {
        Some("application/xml")
    } else if starts(b"<!doctype html") || starts(b"<html") {
        Some("text/html")
    } else {
        None
    }
}

/// The type a name's extension stands for, and the content family it belongs to.
fn by_extension(name: &str) -> Option<(&'static str, Option<Family>)> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let (stem, ext) = base.rsplit_once('.')?;
    // ".bashrc" is a name without an extension.
    if stem.is_empty() || ext.is_empty() || ext.len() > 8 {
        return None;
    }
    let ext = ext.to_ascii_lowercase();
    EXTENSIONS
        .iter()
        .find(|(e, _, _)| *e == ext)
        .map(|&(_, mime, family)| (mime, family))
}

const TEXT: Option<Family> = Some(Family::Text);
const ZIP: Option<Family> = Some(Family::Zip);
const OLE: Option<Family> = Some(Family::Ole);
const OGG: Option<Family> = Some(Family::Ogg);
const EBML: Option<Family> = Some(Family::Ebml);
const PE: Option<Family> = Some(Family::Pe);

/// Extension (lowercase), media type, and the content family it is one kind of.
#[rustfmt::skip]
const EXTENSIONS: &[(&str, &str, Option<Family>)] = &[
    // Text and documents
    ("txt", "text/plain", TEXT),
    ("text", "text/plain", TEXT),
    ("log", "text/plain", TEXT),
    ("ini", "text/plain", TEXT),
    ("cfg", "text/plain", TEXT),
    ("conf", "text/plain", TEXT),
    ("md", "text/markdown", TEXT),
    ("markdown", "text/markdown", TEXT),
    ("csv", "text/csv", TEXT),
    ("tsv", "text/tab-separated-values", TEXT),
    ("json", "application/json", TEXT),
    ("xml", "application/xml", TEXT),
    ("html", "text/html", TEXT),
    ("htm", "text/html", TEXT),
    ("css", "text/css", TEXT),
    ("js", "text/javascript", TEXT),
    ("mjs", "text/javascript", TEXT),
    ("ts", "text/x-typescript", TEXT),
    ("rs", "text/x-rust", TEXT),
    ("py", "text/x-python", TEXT),
    ("c", "text/x-c", TEXT),
    ("h", "text/x-c", TEXT),
    ("cpp", "text/x-c++", TEXT),
    ("cc", "text/x-c++", TEXT),
    ("hpp", "text/x-c++", TEXT),
    ("java", "text/x-java", TEXT),
    ("go", "text/x-go", TEXT),
    ("sh", "application/x-sh", TEXT),
    ("bat", "text/plain", TEXT),
    ("ps1", "text/plain", TEXT),
    ("sql", "application/sql", TEXT),
    ("yaml", "application/yaml", TEXT),
    ("yml", "application/yaml", TEXT),
    ("toml", "application/toml", TEXT),
    ("rtf", "application/rtf", TEXT),
    ("svg", "image/svg+xml", TEXT),
    ("pdf", "application/pdf", None),
    ("doc", "application/msword", OLE),
    ("docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", ZIP),
    ("xls", "application/vnd.ms-excel", OLE),
    ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", ZIP),
    ("ppt", "application/vnd.ms-powerpoint", OLE),
    ("pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation", ZIP),
    ("msg", "application/vnd.ms-outlook", OLE),
    ("odt", "application/vnd.oasis.opendocument.text", ZIP),
    ("ods", "application/vnd.oasis.opendocument.spreadsheet", ZIP),
    ("odp", "application/vnd.oasis.opendocument.presentation", ZIP),
    ("epub", "application/epub+zip", ZIP),
    ("wps", "application/vnd.ms-works", OLE),
    // Archives and packages
    ("zip", "application/zip", ZIP),
    ("jar", "application/java-archive", ZIP),
    ("apk", "application/vnd.android.package-archive", ZIP),
    ("tar", "application/x-tar", None),
    ("gz", "application/gzip", None),
    ("tgz", "application/gzip", None),
    ("bz2", "application/x-bzip2", None),
    ("xz", "application/x-xz", None),
    ("zst", "application/zstd", None),
    ("7z", "application/x-7z-compressed", None),
    ("rar", "application/vnd.rar", None),
    ("exe", "application/vnd.microsoft.portable-executable", PE),
    ("dll", "application/vnd.microsoft.portable-executable", PE),
    ("msi", "application/x-msi", OLE),
    ("deb", "application/vnd.debian.binary-package", None),
    ("rpm", "application/x-rpm", None),
    ("iso", "application/x-iso9660-image", None),
    ("img", "application/octet-stream", None),
    ("dmg", "application/x-apple-diskimage", None),
    ("wasm", "application/wasm", None),
    // Images
    ("png", "image/png", None),
    ("jpg", "image/jpeg", None),
    ("jpeg", "image/jpeg", None),
    ("gif", "image/gif", None),
    ("webp", "image/webp", None),
    ("bmp", "image/bmp", None),
    ("ico", "image/vnd.microsoft.icon", None),
    ("tif", "image/tiff", None),
    ("tiff", "image/tiff", None),
    ("heic", "image/heic", None),
    ("avif", "image/avif", None),
    ("psd", "image/vnd.adobe.photoshop", None),
    // Audio and video
    ("mp3", "audio/mpeg", None),
    ("wav", "audio/wav", None),
    ("flac", "audio/flac", None),
    ("ogg", "audio/ogg", OGG),
    ("oga", "audio/ogg", OGG),
    ("opus", "audio/ogg", OGG),
    ("ogv", "video/ogg", OGG),
    ("m4a", "audio/mp4", None),
    ("aac", "audio/aac", None),
    ("amr", "audio/amr", None),
    ("mp4", "video/mp4", None),
    ("m4v", "video/mp4", None),
    ("mov", "video/quicktime", None),
    ("mkv", "video/x-matroska", EBML),
    ("webm", "video/webm", EBML),
    ("avi", "video/x-msvideo", None),
    ("wmv", "video/x-ms-wmv", None),
    ("3gp", "video/3gpp", None),
    // Fonts
    ("ttf", "font/ttf", None),
    ("otf", "font/otf", None),
    ("woff", "font/woff", None),
    ("woff2", "font/woff2", None),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_are_lowercase_and_unique() {
        for (i, (ext, mime, _)) in EXTENSIONS.iter().enumerate() {
            assert_eq!(*ext, ext.to_ascii_lowercase(), "{ext}");
            assert!(ext.len() <= 8, "{ext}");
            assert!(mime.contains('/'), "{mime}");
            assert!(
                EXTENSIONS[i + 1..].iter().all(|(other, _, _)| other != ext),
                "{ext} twice"
            );
        }
    }

    #[test]
    fn raster_is_only_the_decoded_formats() {
        assert_eq!(raster(b"\x89PNG\r\n\x1a\n...."), Some(Raster::Png));
        assert_eq!(raster(b"\xff\xd8\xff\xe0"), Some(Raster::Jpeg));
        assert_eq!(raster(b"<svg xmlns='http://www.w3.org/2000/svg'/>"), None);
        assert_eq!(raster(b"II*\0...."), None);
        assert_eq!(raster(b""), None);
    }
}
