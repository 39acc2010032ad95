//! Thumbnails of raster images, small enough to travel inside a signed file message.

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

use crate::mime::{raster, Raster};

/// The largest thumbnail, in encoded bytes. Equal to
/// `api_types::files::MAX_THUMBNAIL_BYTES`, which the file message enforces.
pub const MAX_THUMBNAIL_BYTES: usize = 16 * 1024;
/// A thumbnail fits in a square of this many pixels on a side.
pub const MAX_THUMBNAIL_SIZE: u32 = 320;
/// Images wider or taller than this are refused before anything is decoded.
pub const MAX_SOURCE_SIDE: u32 = 16_384;
/// Images with more pixels than this (64 megapixels) are refused before anything is
/// decoded.
pub const MAX_SOURCE_PIXELS: u64 = 64 * 1024 * 1024;
/// The most the decoder may allocate.
const MAX_DECODE_ALLOC: u64 = 256 * 1024 * 1024;
/// JPEG qualities tried at each size, best first.
const QUALITIES: [u8; 5] = [80, 70, 60, 50, 40];
/// Below this box a thumbnail is not worth sending.
const MIN_BOX: u32 = 16;

/// A small preview of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbnail {
    /// `"image/jpeg"` (the only format made today) or `"image/png"`.
    pub mime: &'static str,
    pub width: u32,
    pub height: u32,
    /// The encoded image, at most [`MAX_THUMBNAIL_BYTES`].
    pub bytes: Vec<u8>,
}

/// Why an image's thumbnail could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThumbnailError {
    /// Too many pixels to decode within the limits (a decompression bomb looks like this).
    #[error("the image is {width}×{height} pixels, more than a thumbnail is made from")]
    TooLarge { width: u32, height: u32 },
    /// The image claims no pixels at all.
    #[error("the image has no pixels")]
    Empty,
    /// The content looks like an image but does not decode (truncated, corrupt,
    /// unsupported variant, or past the decoder's memory limit).
    #[error("the image does not decode: {0}")]
    Decode(String),
    /// Encoding the thumbnail failed, or no size and quality fitted the byte limit.
    #[error("the thumbnail could not be encoded: {0}")]
    Encode(String),
}

/// A thumbnail of `bytes` when they are a raster image this crate decodes (PNG, JPEG,
/// the first frame of a GIF, WebP, BMP — recognised by content, never by name); `Ok(None)`
/// for anything else, SVG included.
///
/// The thumbnail keeps the image's aspect ratio within a [`MAX_THUMBNAIL_SIZE`] square
/// (smaller images keep their size; no side is ever 0), transparency is flattened onto
/// white, JPEG's EXIF orientation is applied, and it is a JPEG of quality 80 stepping
/// down to 40, then of smaller sizes (3/4 each step), until it fits in
/// [`MAX_THUMBNAIL_BYTES`].
///
/// Untrusted input is safe: sizes are checked from the header before any pixel is
/// decoded ([`MAX_SOURCE_SIDE`], [`MAX_SOURCE_PIXELS`], and a 256 MiB limit on the
/// decoder's allocations), so a small file claiming a huge image is refused at once;
/// every decoder error is a [`ThumbnailError`], and a decoder that panics is reported as
/// one too. Peak memory is the decoded image (at most 256 MiB; a 12 MP photo takes
/// 36 MiB), flattened in place — only a 16-bit or float image with alpha is copied, to
/// 8 bits — and then only the thumbnail.
pub fn thumbnail(bytes: &[u8]) -> Result<Option<Thumbnail>, ThumbnailError> {
    let Some(format) = raster(bytes) else {
        return Ok(None);
    };
    match catch_unwind(AssertUnwindSafe(|| make(bytes, format))) {
        Ok(result) => result.map(Some),
        Err(_) => Err(ThumbnailError::Decode("the decoder panicked".to_owned())),
    }
}

fn make(bytes: &[u8], format: Raster) -> Result<Thumbnail, ThumbnailError> {
    let (image, orientation) = decode(bytes, format)?;
    // A box fits a quarter-turned image as well: `fit` is symmetric in its sides.
    let (box_w, box_h) = fit(image.width(), image.height(), MAX_THUMBNAIL_SIZE);
    // Flattened before it is averaged down, so transparent pixels' hidden colours do not
    // bleed into the edges; the small image is turned, not the large one.
    let mut small = flatten_onto_white(image).thumbnail_exact(box_w, box_h);
    small.apply_orientation(orientation);
    encode_within_limit(&small.into_rgb8())
}

fn decode(bytes: &[u8], format: Raster) -> Result<(DynamicImage, Orientation), ThumbnailError> {
    let format = match format {
        Raster::Png => ImageFormat::Png,
        Raster::Jpeg => ImageFormat::Jpeg,
        Raster::Gif => ImageFormat::Gif,
        Raster::WebP => ImageFormat::WebP,
        Raster::Bmp => ImageFormat::Bmp,
    };
    let decode_error = |e: image::ImageError| ThumbnailError::Decode(e.to_string());
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SOURCE_SIDE);
    limits.max_image_height = Some(MAX_SOURCE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits.clone());
    // Reads the header only; PNG checks the limits here, the others when they are set.
    let mut decoder = reader.into_decoder().map_err(|e| match e {
        image::ImageError::Limits(_) => too_large_from_header(bytes, format),
        e => decode_error(e),
    })?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(ThumbnailError::Empty);
    }
    if width > MAX_SOURCE_SIDE
        || height > MAX_SOURCE_SIDE
        || u64::from(width) * u64::from(height) > MAX_SOURCE_PIXELS
    {
        return Err(ThumbnailError::TooLarge { width, height });
    }
    // What `ImageReader::decode` does: the whole buffer counts against the limit.
    limits
        .reserve(decoder.total_bytes())
        .map_err(|_| ThumbnailError::TooLarge { width, height })?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let image = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    Ok((image, orientation))
}

/// The size a header claims, for the error when the decoder refused it (PNG refuses an
/// oversized header before it says the size).
fn too_large_from_header(bytes: &[u8], format: ImageFormat) -> ThumbnailError {
    let be = |at: usize| {
        bytes
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
    };
    match (format, be(16), be(20)) {
        (ImageFormat::Png, Some(width), Some(height)) => ThumbnailError::TooLarge { width, height },
        _ => ThumbnailError::Decode("the image is larger than the decoder's limits".to_owned()),
    }
}

/// The largest size within a `max` square with the aspect ratio of `width`×`height`,
/// never larger than the image and never 0 on a side.
fn fit(width: u32, height: u32, max: u32) -> (u32, u32) {
    if width <= max && height <= max {
        return (width.max(1), height.max(1));
    }
    let (w, h, m) = (u64::from(width), u64::from(height), u64::from(max));
    let scaled = |side: u64, long: u64| ((side * m + long / 2) / long).clamp(1, m);
    let (w, h) = if w >= h {
        (m, scaled(h, w))
    } else {
        (scaled(w, h), m)
    };
    // Both are at most `max`, a u32.
    (
        u32::try_from(w).unwrap_or(max),
        u32::try_from(h).unwrap_or(max),
    )
}

/// The image composited onto white, in place for 8-bit images (deeper ones with alpha
/// are converted to 8 bits first, a copy no larger than the original).
fn flatten_onto_white(image: DynamicImage) -> DynamicImage {
    match image {
        DynamicImage::ImageRgba8(mut buffer) => {
            flatten_in_place(&mut buffer, 4);
            DynamicImage::ImageRgba8(buffer)
        }
        DynamicImage::ImageLumaA8(mut buffer) => {
            flatten_in_place(&mut buffer, 2);
            DynamicImage::ImageLumaA8(buffer)
        }
        other if other.has_alpha() => {
            let mut buffer = other.into_rgba8();
            flatten_in_place(&mut buffer, 4);
            DynamicImage::ImageRgba8(buffer)
        }
        opaque => opaque,
    }
}

/// Pixels of `channels` 8-bit samples, alpha last, composited onto white (alpha 255).
fn flatten_in_place(samples: &mut [u8], channels: usize) {
    for pixel in samples.chunks_exact_mut(channels) {
        if let Some((alpha, colour)) = pixel.split_last_mut() {
            if *alpha != u8::MAX {
                for c in colour {
                    *c = over_white(*c, *alpha);
                }
                *alpha = u8::MAX;
            }
        }
    }
}

/// A sample of opacity `alpha` over white: (c·a + 255·(255 − a)) / 255, rounded.
fn over_white(c: u8, alpha: u8) -> u8 {
    let (c, a) = (u32::from(c), u32::from(alpha));
    u8::try_from((c * a + 255 * (255 - a) + 127) / 255).unwrap_or(u8::MAX)
}

/// JPEG at falling qualities, then at smaller sizes, until it fits in
/// [`MAX_THUMBNAIL_BYTES`].
fn encode_within_limit(first: &RgbImage) -> Result<Thumbnail, ThumbnailError> {
    let mut resized;
    let mut image = first;
    loop {
        for quality in QUALITIES {
            let mut bytes = Vec::new();
            JpegEncoder::new_with_quality(&mut bytes, quality)
                .encode_image(image)
                .map_err(|e| ThumbnailError::Encode(e.to_string()))?;
            if bytes.len() <= MAX_THUMBNAIL_BYTES {
                return Ok(Thumbnail {
                    mime: "image/jpeg",
                    width: image.width(),
                    height: image.height(),
                    bytes,
                });
            }
        }
        let longest = image.width().max(image.height());
        if longest <= MIN_BOX {
            return Err(ThumbnailError::Encode(format!(
                "larger than {MAX_THUMBNAIL_BYTES} bytes even at {}×{}",
                image.width(),
                image.height()
            )));
        }
        let (w, h) = fit(
            first.width(),
            first.height(),
            (longest * 3 / 4).max(MIN_BOX),
        );
        resized = image::imageops::resize(first, w, h, FilterType::Triangle);
        image = &resized;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_keeps_the_aspect_ratio_and_never_upscales() {
        assert_eq!(fit(1, 1, 320), (1, 1));
        assert_eq!(fit(320, 200, 320), (320, 200));
        assert_eq!(fit(4000, 3000, 320), (320, 240));
        assert_eq!(fit(3000, 4000, 320), (240, 320));
        assert_eq!(fit(5000, 10, 320), (320, 1));
        assert_eq!(fit(10, 16384, 320), (1, 320));
        assert_eq!(fit(u32::MAX, u32::MAX - 1, 320), (320, 320));
        assert_eq!(fit(0, 0, 320), (1, 1));
        for (w, h) in [(4000, 3000), (5000, 10), (321, 320), (333, 999), (7, 7000)] {
            let (a, b) = fit(w, h, 320);
            assert_eq!(fit(h, w, 320), (b, a), "{w}×{h}");
        }
    }

    #[test]
    fn flatten_composites_onto_white() {
        let mut rgba = [0, 0, 0, 0, 0, 0, 0, 255, 255, 0, 0, 128, 1, 2, 3, 255];
        flatten_in_place(&mut rgba, 4);
        assert_eq!(
            rgba,
            [255, 255, 255, 255, 0, 0, 0, 255, 255, 127, 127, 255, 1, 2, 3, 255]
        );
        let mut gray_alpha = [10, 255, 0, 0];
        flatten_in_place(&mut gray_alpha, 2);
        assert_eq!(gray_alpha, [10, 255, 255, 255]);
    }
}
