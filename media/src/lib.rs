//! What a sent file is, and what it looks like (issue 17).
//!
//! - [`mime_type`] names a file's media type from its first bytes (magic numbers, a
//!   UTF-8 text check), refined or, failing that, decided by its name's extension.
//! - [`thumbnail`] makes the small JPEG preview of a raster image (PNG, JPEG, GIF's first
//!   frame, WebP, BMP) that the sender puts inside the signed file message: at most
//!   [`MAX_THUMBNAIL_SIZE`] pixels on a side and at most [`MAX_THUMBNAIL_BYTES`] bytes.
//!
//! Pure functions over the bytes they are given: no files, no network. Both are meant
//! for untrusted content — whatever the bytes, they answer with a value or an error,
//! within bounded memory and time (see [`thumbnail`] for the limits).

mod mime;
mod thumb;

pub use mime::{mime_type, SNIFF_BYTES};
pub use thumb::{
    thumbnail, Thumbnail, ThumbnailError, MAX_SOURCE_PIXELS, MAX_SOURCE_SIDE, MAX_THUMBNAIL_BYTES,
    MAX_THUMBNAIL_SIZE,
};
