//! Colour descriptions on arbitrary input: the bytes as an ICC profile (moxcms's parser and
//! transform builder) and as a PNG whose colour chunks are read, each conversion applied to
//! small RGB, RGBA and grey images; as a BMP whose header embeds a profile or calibrates
//! its RGB; its first two bytes as code points (an AVIF's `nclx`). No panic, and a
//! conversion keeps the image's size.
#![no_main]

use edge_moderation::media::decode::colour::{
    bmp_calibrated, cicp_shown, description_of, Description, ToSrgb,
};
use edge_moderation::media::ImageFormat;
use image::{DynamicImage, GrayAlphaImage, RgbImage, RgbaImage};
use libfuzzer_sys::fuzz_target;

fn apply_all(conversion: &ToSrgb) {
    let images = [
        DynamicImage::ImageRgb8(RgbImage::from_fn(3, 2, |x, y| image::Rgb([x as u8 * 90, y as u8 * 200, 17]))),
        DynamicImage::ImageRgba8(RgbaImage::from_pixel(2, 2, image::Rgba([200, 10, 90, 128]))),
        DynamicImage::ImageLumaA8(GrayAlphaImage::from_pixel(2, 1, image::LumaA([77, 255]))),
    ];
    for image in images {
        let size = (image.width(), image.height());
        let shown = conversion.apply(image);
        assert_eq!((shown.width(), shown.height()), size);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some(conversion) = ToSrgb::new(&Description::Icc(data.to_vec())) {
        apply_all(&conversion);
    }
    let described = [
        description_of(data, ImageFormat::Png),
        description_of(data, ImageFormat::Bmp),
        bmp_calibrated(data),
        data.get(..2).and_then(|points| cicp_shown(points[0], points[1])),
    ];
    for description in described {
        if let Some(conversion) = description.as_ref().and_then(ToSrgb::new) {
            apply_all(&conversion);
        }
    }
});
