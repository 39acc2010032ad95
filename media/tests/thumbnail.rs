//! Thumbnails of generated images: sizes, byte limit, decodability, hostile input.

#![allow(clippy::unwrap_used)]

use std::io::Cursor;
use std::time::{Duration, Instant};

use image::codecs::gif::GifEncoder;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::webp::WebPEncoder;
use image::{DynamicImage, ImageEncoder, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use media::{thumbnail, Thumbnail, ThumbnailError, MAX_THUMBNAIL_BYTES, MAX_THUMBNAIL_SIZE};
use proptest::prelude::*;

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn jpeg(image: &RgbImage, quality: u8, exif: Option<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = JpegEncoder::new_with_quality(&mut out, quality);
    if let Some(exif) = exif {
        encoder.set_exif_metadata(exif).unwrap();
    }
    encoder
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

/// Pseudo-random bytes (no entropy needed, only detail that compresses badly).
fn noise(seed: u32) -> impl FnMut() -> u8 {
    let mut state = seed;
    move || {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (state >> 24) as u8
    }
}

/// A photo-like picture: gradients with some noise.
fn photo(width: u32, height: u32) -> RgbImage {
    let mut next = noise(7);
    RgbImage::from_fn(width, height, |x, y| {
        let n = next() / 8;
        Rgb([
            ((x * 255 / width) as u8).saturating_add(n),
            ((y * 255 / height) as u8).saturating_add(n),
            (((x + y) / 16 % 2) as u8 * 120).saturating_add(n),
        ])
    })
}

/// Checks what every thumbnail promises and decodes it.
fn check(thumb: &Thumbnail) -> DynamicImage {
    assert_eq!(thumb.mime, "image/jpeg");
    assert!(
        thumb.bytes.len() <= MAX_THUMBNAIL_BYTES,
        "{} bytes",
        thumb.bytes.len()
    );
    assert!(
        thumb.width >= 1 && thumb.width <= MAX_THUMBNAIL_SIZE,
        "{}",
        thumb.width
    );
    assert!(
        thumb.height >= 1 && thumb.height <= MAX_THUMBNAIL_SIZE,
        "{}",
        thumb.height
    );
    let decoded = image::load_from_memory_with_format(&thumb.bytes, ImageFormat::Jpeg).unwrap();
    assert_eq!(
        (decoded.width(), decoded.height()),
        (thumb.width, thumb.height)
    );
    decoded
}

fn thumb_of(bytes: &[u8]) -> Thumbnail {
    thumbnail(bytes).unwrap().unwrap()
}

#[test]
fn the_limit_is_the_file_messages_limit() {
    assert_eq!(MAX_THUMBNAIL_BYTES, api_types::files::MAX_THUMBNAIL_BYTES);
}

#[test]
fn a_png_with_alpha_is_flattened_onto_white() {
    // Left half transparent (black underneath), right half opaque red.
    let image = |width: u32| {
        RgbaImage::from_fn(width, 100, move |x, _| {
            if x < width / 2 {
                Rgba([0, 0, 0, 0])
            } else {
                Rgba([255, 0, 0, 255])
            }
        })
    };
    let thumb = thumb_of(&encode(
        &DynamicImage::ImageRgba8(image(200)),
        ImageFormat::Png,
    ));
    assert_eq!((thumb.width, thumb.height), (200, 100));
    let decoded = check(&thumb).into_rgb8();
    let white = decoded.get_pixel(20, 50).0;
    let red = decoded.get_pixel(180, 50).0;
    assert!(white.iter().all(|&c| c > 240), "{white:?}");
    assert!(red[0] > 230 && red[1] < 30 && red[2] < 30, "{red:?}");
    // Scaled down (boxes straddle the edge), the hidden black never darkens the edge.
    let thumb = thumb_of(&encode(
        &DynamicImage::ImageRgba8(image(1000)),
        ImageFormat::Png,
    ));
    assert_eq!((thumb.width, thumb.height), (320, 32));
    let decoded = check(&thumb).into_rgb8();
    for x in 0..320 {
        let pixel = decoded.get_pixel(x, 16).0;
        assert!(pixel[0] > 200, "dark edge at {x}: {pixel:?}");
    }
}

#[test]
fn a_large_jpeg_is_fitted_into_the_box() {
    let bytes = jpeg(&photo(4000, 3000), 90, None);
    let started = Instant::now();
    let thumb = thumb_of(&bytes);
    eprintln!(
        "4000×3000 JPEG: {:?}, {} bytes",
        started.elapsed(),
        thumb.bytes.len()
    );
    assert_eq!((thumb.width, thumb.height), (320, 240));
    check(&thumb);
}

#[test]
fn a_gif_gives_its_first_frame() {
    let mut bytes = Vec::new();
    {
        let mut encoder = GifEncoder::new(&mut bytes);
        let frames = [Rgba([0, 0, 255, 255]), Rgba([255, 255, 0, 255])]
            .map(|colour| image::Frame::new(RgbaImage::from_pixel(64, 48, colour)));
        encoder.encode_frames(frames).unwrap();
    }
    let thumb = thumb_of(&bytes);
    assert_eq!((thumb.width, thumb.height), (64, 48));
    let pixel = check(&thumb).into_rgb8().get_pixel(32, 24).0;
    assert!(
        pixel[2] > 200 && pixel[0] < 40,
        "first frame is blue: {pixel:?}"
    );
}

#[test]
fn a_one_pixel_png_stays_one_pixel() {
    let image = RgbImage::from_pixel(1, 1, Rgb([10, 200, 30]));
    let thumb = thumb_of(&encode(&DynamicImage::ImageRgb8(image), ImageFormat::Png));
    assert_eq!((thumb.width, thumb.height), (1, 1));
    check(&thumb);
}

#[test]
fn a_panorama_keeps_its_aspect_and_no_side_is_zero() {
    let image = DynamicImage::ImageRgb8(photo(5000, 10));
    let thumb = thumb_of(&encode(&image, ImageFormat::Png));
    assert_eq!((thumb.width, thumb.height), (320, 1));
    check(&thumb);
    let tall = DynamicImage::ImageRgb8(photo(12, 3000));
    let thumb = thumb_of(&encode(&tall, ImageFormat::Png));
    assert_eq!((thumb.width, thumb.height), (1, 320));
    check(&thumb);
}

#[test]
fn webp_and_bmp_and_gray_and_16_bit_pngs_are_thumbnailed() {
    let rgba = DynamicImage::ImageRgba8(RgbaImage::from_fn(500, 400, |x, y| {
        Rgba([(x % 256) as u8, (y % 256) as u8, 90, ((x + y) % 256) as u8])
    }));
    let mut webp = Vec::new();
    WebPEncoder::new_lossless(&mut webp)
        .write_image(rgba.as_bytes(), 500, 400, image::ExtendedColorType::Rgba8)
        .unwrap();
    let bmp = encode(&DynamicImage::ImageRgb8(rgba.to_rgb8()), ImageFormat::Bmp);
    let gray = encode(&DynamicImage::ImageLuma8(rgba.to_luma8()), ImageFormat::Png);
    let gray_alpha = encode(
        &DynamicImage::ImageLumaA8(rgba.to_luma_alpha8()),
        ImageFormat::Png,
    );
    let deep = encode(
        &DynamicImage::ImageRgba16(rgba.to_rgba16()),
        ImageFormat::Png,
    );
    for bytes in [webp, bmp, gray, gray_alpha, deep] {
        let thumb = thumb_of(&bytes);
        assert_eq!((thumb.width, thumb.height), (320, 256));
        check(&thumb);
    }
}

#[test]
fn noise_steps_down_in_quality_and_size_until_it_fits() {
    let mut next = noise(42);
    let image = RgbImage::from_fn(1000, 1000, |_, _| Rgb([next(), next(), next()]));
    let bytes = encode(&DynamicImage::ImageRgb8(image), ImageFormat::Png);
    let thumb = thumb_of(&bytes);
    assert!(
        thumb.width < 320,
        "noise at 320×320 cannot fit: {}",
        thumb.width
    );
    assert_eq!(thumb.width, thumb.height);
    check(&thumb);
}

/// EXIF (TIFF, big-endian) holding only an orientation.
fn exif_orientation(value: u16) -> Vec<u8> {
    let mut exif = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
    exif.extend_from_slice(&value.to_be_bytes());
    exif.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    exif
}

#[test]
fn jpeg_exif_orientation_is_applied() {
    // 400×200, left half black, right half white; orientation 6 = turn 90° clockwise:
    // shown 200×400, black on top.
    let image = RgbImage::from_fn(400, 200, |x, _| {
        if x < 200 {
            Rgb([0, 0, 0])
        } else {
            Rgb([255, 255, 255])
        }
    });
    let thumb = thumb_of(&jpeg(&image, 90, Some(exif_orientation(6))));
    assert_eq!((thumb.width, thumb.height), (160, 320));
    let decoded = check(&thumb).into_luma8();
    assert!(decoded.get_pixel(80, 40).0[0] < 30);
    assert!(decoded.get_pixel(80, 280).0[0] > 225);
    // A big one is fitted after turning.
    let thumb = thumb_of(&jpeg(&photo(4000, 3000), 80, Some(exif_orientation(8))));
    assert_eq!((thumb.width, thumb.height), (240, 320));
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A valid small PNG whose header then claims `width`×`height` (CRC fixed).
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let image = DynamicImage::ImageRgba8(RgbaImage::from_pixel(8, 8, Rgba([1, 2, 3, 4])));
    let mut bytes = encode(&image, ImageFormat::Png);
    assert_eq!(&bytes[12..16], b"IHDR");
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

fn quickly(bytes: &[u8]) -> Result<Option<Thumbnail>, ThumbnailError> {
    let started = Instant::now();
    let result = thumbnail(bytes);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    result
}

#[test]
fn a_decompression_bomb_is_refused_before_decoding() {
    // Past the side limit, and within it but past the pixel limit.
    for (w, h) in [(100_000, 100_000), (16_000, 16_000), (16_384, 5_000)] {
        let result = quickly(&png_claiming(w, h));
        assert_eq!(
            result,
            Err(ThumbnailError::TooLarge {
                width: w,
                height: h
            })
        );
    }
    // A JPEG whose frame header claims 65500×65500.
    let mut bytes = jpeg(&photo(16, 16), 80, None);
    let sof = bytes.windows(2).position(|m| m == [0xff, 0xc0]).unwrap();
    bytes[sof + 5..sof + 7].copy_from_slice(&65_500u16.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&65_500u16.to_be_bytes());
    assert!(quickly(&bytes).is_err());
    // A GIF whose screen is 65535×65535.
    let mut gif = Vec::new();
    GifEncoder::new(&mut gif)
        .encode(&[0; 16 * 16 * 4], 16, 16, image::ExtendedColorType::Rgba8)
        .unwrap();
    gif[6..10].copy_from_slice(&[0xff; 4]);
    assert!(quickly(&gif).is_err());
}

#[test]
fn what_is_not_a_raster_image_has_no_thumbnail() {
    let svg = br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#;
    for bytes in [
        &b""[..],
        b"hello",
        svg,
        b"%PDF-1.7\n",
        b"PK\x03\x04\x14\0\0\0",
        b"II*\0\x08\0\0\0",
    ] {
        assert_eq!(thumbnail(bytes), Ok(None));
    }
}

#[test]
fn garbage_behind_a_magic_number_is_an_error() {
    for magic in [
        &b"\x89PNG\r\n\x1a\n"[..],
        b"\xff\xd8\xff\xe0",
        b"GIF89a",
        b"RIFF\0\0\0\0WEBPVP8 ",
        b"BM\0\0\0\0\0\0\0\0\0\0\0\0\x28\0\0\0",
    ] {
        let mut bytes = magic.to_vec();
        let mut next = noise(3);
        bytes.extend((0..500).map(|_| next()));
        assert!(thumbnail(&bytes).is_err(), "{magic:?}");
        assert!(thumbnail(magic).is_err(), "{magic:?} alone");
    }
}

fn samples() -> Vec<Vec<u8>> {
    let image = DynamicImage::ImageRgba8(RgbaImage::from_fn(40, 30, |x, y| {
        Rgba([x as u8 * 6, y as u8 * 8, 100, 200])
    }));
    let mut gif = Vec::new();
    GifEncoder::new(&mut gif)
        .encode(image.as_bytes(), 40, 30, image::ExtendedColorType::Rgba8)
        .unwrap();
    vec![
        encode(&image, ImageFormat::Png),
        jpeg(&image.to_rgb8(), 80, Some(exif_orientation(6))),
        gif,
        encode(&DynamicImage::ImageRgb8(image.to_rgb8()), ImageFormat::Bmp),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(Some(thumb)) = thumbnail(&bytes) {
            check(&thumb);
        }
        let _ = media::mime_type("x", &bytes);
    }

    #[test]
    fn random_bytes_behind_each_magic_never_panic(
        which in 0usize..5,
        tail in proptest::collection::vec(any::<u8>(), 0..1024),
    ) {
        let magic: &[u8] = [
            &b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR"[..],
            b"\xff\xd8\xff",
            b"GIF89a",
            b"RIFF\0\0\0\0WEBP",
            b"BM\0\0\0\0\0\0\0\0\0\0\0\0\x28\0\0\0",
        ][which];
        let bytes = [magic, &tail].concat();
        if let Ok(Some(thumb)) = thumbnail(&bytes) {
            check(&thumb);
        }
    }

    #[test]
    fn prefixes_and_mutations_of_valid_images_never_panic(
        which in 0usize..4,
        cut in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let sample = &samples()[which];
        let prefix = &sample[..cut.index(sample.len() + 1)];
        if let Ok(Some(thumb)) = thumbnail(prefix) {
            check(&thumb);
        }
        prop_assert!(!media::mime_type("photo.png", prefix).is_empty());
        let mut mutated = sample.clone();
        for (at, value) in flips {
            let at = at.index(mutated.len());
            mutated[at] = value;
        }
        if let Ok(Some(thumb)) = thumbnail(&mutated) {
            check(&thumb);
        }
    }
}
