//! The SVG as a browser draws it in `<img>`, to be judged as one picture: the vector
//! drawing, and the embedded rasters as it shows them (transformed, filtered, masked,
//! clipped, tiled). Judging each embedded raster alone misses what only the drawing shows:
//! a picture traced in paths, one cut into tiles, one stored colour-inverted and turned
//! back by a filter.
//!
//! resvg draws it, text in the typeface we embed ([`FONT`]) and what it lacks (emoji,
//! CJK) in a fallback reduced to colour and ink ([`FALLBACK_FONT`]). Embedded rasters are decoded
//! by our decoders within the policy's limits (every format we read, oriented as shown),
//! reduced to [`RASTER_SIDE`], and handed to resvg as PNG; one we cannot decode is left
//! out of the drawing (it is judged on its own, by `on_undecodable` or `on_oversize`).
//! External references are not loaded, as in `<img>`.
//!
//! `<foreignObject>` HTML is not drawn by resvg: an SVG whose HTML may show a picture
//! (images laid out by CSS, an inline SVG drawing, styled boxes or text runs) is refused as undrawable
//! (the policy's `on_undecodable`), its images still judged one by one (`html`).
//!
//! resvg expands `<use>`, patterns, markers and referenced masks, clips and filters
//! without a bound of its own beyond a million nodes, so a document is measured first:
//! its elements counted with every reference expanded ([`MAX_DRAWN_ELEMENTS`]).

use super::{parse, SvgError};
use crate::media::decode::{decode_reduced, DecodeLimits};
use crate::media::obscure::resize_smoothly;
use crate::media::ImageFormat;
use base64::Engine;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{DynamicImage, GenericImageView, ImageEncoder, RgbaImage};
use resvg::{tiny_skia, usvg};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use usvg::fontdb;

/// The drawing is judged at the SVG's own size, within these bounds: its longer side at
/// most [`DRAWN_MAX_SIDE`] (the model reads 224×224; more only costs), its shorter side at
/// least the model's 224 (a wide banner keeps the rows the model reads), even if that
/// takes the longer side up to [`DRAWN_WIDE_SIDE`].
pub const DRAWN_MAX_SIDE: f32 = 1024.0;
pub const DRAWN_MIN_SIDE: f32 = 224.0;
pub const DRAWN_WIDE_SIDE: f32 = 2048.0;
/// Longest side an embedded raster keeps in the drawing: enough for a part of it shown
/// enlarged to stay legible in the drawing; a larger raster is drawn from a copy
/// reduced to this.
pub const RASTER_SIDE: u32 = 1024;
/// Most elements one document may draw, every `<use>`, pattern, marker, mask, clip and
/// filter reference counted as the copy it draws. What fits an instance's CPU: 13,400
/// rectangles took 33 ms natively to parse, convert and draw (Zen 5); the sibling drawing
/// them in Wasm took 77 ms of CPU, and 51 ms for 7,500 (`examples/requests.rs`).
pub const MAX_DRAWN_ELEMENTS: u64 = 5_000;
/// Most pixels of pattern tiles one drawing renders, every use of a pattern counted (see
/// `costs_within`): four drawings' worth at the largest size drawn (memory: a tile inside
/// a tile is held with it; CPU: each is drawn and tiled). A drawing that needs more, even
/// drawn smaller (see [`draw`]), is refused (`on_oversize`), as one with too many elements
/// is.
pub const MAX_PATTERN_PIXELS: f64 = 4.0 * 1024.0 * 1024.0;
/// Most pixel work one drawing does, in paints of a pixel (see `costs_within`; the
/// weights below): 4 Mi, what fits a sibling's CPU. A translucent paint of a pixel took
/// ~10 ns in Wasm (Zen 3, `examples/svg_bounds.rs`), so the bound is ~40 ms of drawing:
/// four translucent paints over the largest canvas drawn, or one over the model's
/// 224×224 eighty times. A drawing that needs more is drawn smaller, down to the model's
/// 224 on its shorter side, and refused (`on_oversize`) only if it needs more there.
pub const MAX_PIXEL_WORK: f64 = 4.0 * 1024.0 * 1024.0;
/// Most dashes one drawing strokes, every dashed path counted by its length over its dash
/// pattern's (see `costs_within`): ~1 µs each in Wasm (Zen 3, `examples/svg_bounds.rs`),
/// so ~40 ms of stroking; what a drawing of dashed lines needs many times over.
pub const MAX_DASHES: f64 = 40_000.0;
/// What each kind of pixel work weighs, in paints of a pixel (measured in Wasm on a Zen 3,
/// `examples/svg_bounds.rs`: a translucent paint ~10 ns a pixel): a gradient looks its
/// stop up one stop at a time (64 stops cost ~5 paints); a pattern's shader ~25 ns; a
/// layer (a group drawn apart, a clip or mask) is cleared and composited, cheaper than a
/// paint; a filter primitive's pass ~20–40 ns (an offset, a colour matrix), a blur's
/// 160 ns (a box blur) to 400 ns (the IIR blur resvg uses for a small deviation, as in a
/// drawing made smaller), a turbulence octave's ~200 ns; a convolution kernel entry ~24 ns
/// and a morphology window entry ~8 ns a pixel.
const GRADIENT_STOPS_PER_PAINT: f64 = 16.0;
const PATTERN_PAINT: f64 = 3.0;
const LAYER_PIXEL: f64 = 0.5;
const FILTER_PASS: f64 = 4.0;
const FILTER_HEAVY_PASS: f64 = 40.0;
const TURBULENCE_OCTAVE: f64 = 20.0;
const CONVOLUTION_ENTRY: f64 = 3.0;
const MORPHOLOGY_ENTRY: f64 = 1.0;

/// The typeface all text is drawn in: DejaVu Sans (Bitstream Vera licence, which allows
/// shipping it; `assets/fonts`). A Compute instance has no fonts, and a browser draws an
/// SVG's text in `<img>` with its own, so without one a picture made of characters
/// (block glyphs coloured one by one, shades of ASCII art) would pass unseen. Every
/// family, named or generic, resolves to it: a family the browser lacks falls back to
/// its default font, which draws too. Characters it lacks fall back to [`FALLBACK_FONT`].
pub const FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");

/// What text falls back to for characters DejaVu Sans lacks, as a browser falls back to
/// its emoji and CJK fonts: each colour emoji as one square of its average colour over
/// the box it inks (COLR), each CJK character as a frame with a cross carrying its ink
/// (`scripts/fallback_font.py`, from Noto Color Emoji and Noto Sans CJK). A picture laid
/// out in emoji (one coloured square per pixel) or in CJK characters of different
/// darkness is judged as the browser shows it at the model's scale, where each glyph is
/// its colour and darkness. 0.55 MB, where the real fonts would take ~30 MB.
pub const FALLBACK_FONT: &[u8] = include_bytes!("../../../assets/fonts/Fallback.ttf");

/// The font database resvg draws text from: [`FONT`], then [`FALLBACK_FONT`] for the
/// characters it lacks (usvg's fallback asks each font in turn), parsed once per instance, when
/// an SVG is first drawn. Not in the Wizer snapshot: allocated after the model's arena,
/// it landed at the top of memory and made the snapshot's data range sparse (13 MB of
/// data over 96 MB), which would have every instance copy the segments instead of
/// mapping them (`tests/snapshot.rs`).
fn fonts() -> Arc<fontdb::Database> {
    static FONTS: OnceLock<Arc<fontdb::Database>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            let mut database = fontdb::Database::new();
            let dejavu = database.load_font_source(fontdb::Source::Binary(Arc::new(FONT)));
            database.load_font_source(fontdb::Source::Binary(Arc::new(FALLBACK_FONT)));
            let family = dejavu
                .first()
                .and_then(|&id| database.face(id))
                .and_then(|face| face.families.first())
                .map_or_else(|| "DejaVu Sans".to_string(), |(name, _)| name.clone());
            database.set_serif_family(family.clone());
            database.set_sans_serif_family(family.clone());
            database.set_monospace_family(family.clone());
            database.set_cursive_family(family.clone());
            database.set_fantasy_family(family);
            Arc::new(database)
        })
        .clone()
}

/// Options for drawing with our font and `image_href_resolver`.
fn options(image_href_resolver: usvg::ImageHrefResolver<'_>) -> usvg::Options<'_> {
    usvg::Options {
        image_href_resolver,
        fontdb: fonts(),
        ..usvg::Options::default()
    }
}

/// The SVG drawn at the size it is judged at (straight alpha: the page shows through where
/// it draws nothing): its own, within [`DRAWN_MAX_SIDE`], or smaller where drawing it at
/// that size would cost more than the bounds allow; `None` when it draws nothing (no
/// area, or all transparent).
pub fn draw(svg: &[u8], limits: DecodeLimits) -> Result<Option<RgbaImage>, SvgError> {
    let text = std::str::from_utf8(svg).map_err(|e| SvgError::Malformed(e.to_string()))?;
    let document = parse(text)?;
    bounded(&document)?;
    if let Some(why) = super::html::unseen(&document) {
        return Err(SvgError::Undrawable(why));
    }
    let options = options(usvg::ImageHrefResolver {
        resolve_data: Box::new(move |_, data, options| embedded(&data, options, limits)),
        resolve_string: Box::new(|_, _| None),
    });
    let tree = match usvg::Tree::from_xmltree(&document, &options) {
        Ok(tree) => tree,
        Err(usvg::Error::InvalidSize) => return Ok(None),
        Err(
            usvg::Error::ElementsLimitReached
            | usvg::Error::ParsingFailed(roxmltree::Error::NodesLimitReached),
        ) => return Err(SvgError::TooComplex("too many elements to draw")),
        Err(e) => return Err(SvgError::Malformed(e.to_string())),
    };
    let size = tree.size();
    // Drawn at its own size (see `drawn_scale`), or smaller where that costs too much:
    // each try has half the pixels, down to the model's 224 on the shorter side.
    let least = DRAWN_MIN_SIDE / size.width().min(size.height());
    let mut scale = drawn_scale(size.width(), size.height());
    let (width, height) = loop {
        let side = |length: f32| ((length * scale).round() as u32).clamp(1, DRAWN_WIDE_SIDE as u32);
        let (width, height) = (side(size.width()), side(size.height()));
        match costs_within_drawing(&tree, scale, (width as f32, height as f32)) {
            Ok(()) => break (width, height),
            Err(SvgError::TooComplex(why)) if why != TOO_MANY_DASHES && scale > least => {
                scale = (scale * std::f32::consts::FRAC_1_SQRT_2).max(least);
            }
            Err(refused) => return Err(refused),
        }
    };
    let Some(mut pixmap) = tiny_skia::Pixmap::new(width, height) else {
        return Ok(None);
    };
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    if pixmap.pixels().iter().all(|pixel| pixel.alpha() == 0) {
        // Nothing drawn: the page shows through everywhere.
        return Ok(None);
    }
    Ok(RgbaImage::from_raw(
        width,
        height,
        pixmap.take_demultiplied(),
    ))
}

/// Whether the drawing of `tree` at `scale` on a `canvas` of that size is within the
/// bounds on its pattern tiles, pixel work and dashes (see [`costs_within`]).
fn costs_within_drawing(tree: &usvg::Tree, scale: f32, canvas: (f32, f32)) -> Result<(), SvgError> {
    let mut left = Left {
        tile_pixels: MAX_PATTERN_PIXELS,
        pixel_work: MAX_PIXEL_WORK,
        dashes: MAX_DASHES,
    };
    let transform = tiny_skia::Transform::from_scale(scale, scale);
    costs_within(tree.root(), transform, canvas, &mut left)
}

/// Why a drawing with too many dashes is refused: the one bound drawing smaller does not
/// lower (a dash count is the path's length over its pattern's, whatever the scale).
const TOO_MANY_DASHES: &str = "too many dashes to draw";

/// What a drawing costs resvg beyond its elements, counted down as [`costs_within`] walks
/// it: pattern tiles (pixels), pixel work (paints, layers and filters: pixels × weights,
/// in paints of a pixel) and dashes.
struct Left {
    tile_pixels: f64,
    pixel_work: f64,
    dashes: f64,
}

/// Refuses a drawing whose pattern tiles, paints and filters, or dashes would cost more
/// than [`MAX_PATTERN_PIXELS`], [`MAX_PIXEL_WORK`] or [`MAX_DASHES`], walking it as resvg
/// draws it (its transforms; the groups of masks, clips, `feImage`s, text and nested
/// SVGs) on a `canvas` of this size (the drawing's, or a tile's inside a pattern). None is
/// bounded by resvg, and the element bound does not weigh them:
/// - it draws each use of a pattern into a tile of its own, at the scale it is used at
///   (and a pattern inside a tile for every use of that tile): one tile 55,554 user units
///   wide, used on a 30×30 square, asked for 33 GB;
/// - a filter primitive works over its region (at most the canvas) once per pixel, but
///   `feMorphology` once per pixel of its radius's window, `feConvolveMatrix` once per
///   kernel entry, `feTurbulence` once per octave: a radius of 2000 is 16 million steps a
///   pixel;
/// - every paint covers its shape's box once per pixel, a gradient once per stop: 5,000
///   elements are 5,000 full-canvas squares, or a gradient of 4,900 stops over the canvas;
/// - a dashed stroke is cut into up to a million dashes per path, each stroked and filled:
///   five thousand such paths would take hours.
fn costs_within(
    group: &usvg::Group,
    transform: tiny_skia::Transform,
    canvas: (f32, f32),
    left: &mut Left,
) -> Result<(), SvgError> {
    for node in group.children() {
        match node {
            usvg::Node::Group(inner) => {
                let transform = transform.pre_concat(inner.transform());
                // A group drawn apart (opacity, blending, a filter, a clip, a mask) is
                // drawn on a layer of its box within the canvas, then composited; each
                // clip and mask draws on a layer of the whole canvas, and so does each
                // clip or mask a clip or mask is itself clipped or masked by.
                let clips = || std::iter::successors(inner.clip_path(), |c| c.clip_path());
                if inner.should_isolate() {
                    let layer =
                        area_within(inner.layer_bounding_box().to_rect(), transform, canvas);
                    let canvases = f64::from(canvas.0) * f64::from(canvas.1);
                    let masks = std::iter::successors(inner.mask(), |m| m.mask()).count();
                    let clips = clips().count();
                    let layers = 2.0 * layer + canvases * (2 * (masks + clips)) as f64;
                    let work = layers * LAYER_PIXEL;
                    spend(&mut left.pixel_work, work, "too costly to paint")?;
                }
                filters_within(inner, transform, canvas, left)?;
                for clip in clips() {
                    let at = transform.pre_concat(clip.transform());
                    costs_within(clip.root(), at, canvas, left)?;
                }
                let mut mask = inner.mask();
                while let Some(current) = mask {
                    costs_within(current.root(), transform, canvas, left)?;
                    mask = current.mask();
                }
                costs_within(inner, transform, canvas, left)?;
            }
            usvg::Node::Path(path) => {
                if let Some(dashes) = path.stroke().and_then(|s| s.dasharray()) {
                    // tiny-skia cuts the path into its dashes first (up to a million a
                    // path): their count is the path's length over the pattern's. The
                    // length is bounded by the control polygon's.
                    let length: f32 = path
                        .data()
                        .points()
                        .windows(2)
                        .map(|pair| pair[0].distance(pair[1]))
                        .sum();
                    let period: f32 = dashes.iter().sum();
                    let count = f64::from(length / period.max(f32::MIN_POSITIVE)).min(1e6);
                    spend(&mut left.dashes, count, TOO_MANY_DASHES)?;
                }
                let paints = [
                    path.fill().map(|f| f.paint()),
                    path.stroke().map(|s| s.paint()),
                ];
                // Each paint covers the path's box (stroke included) once per pixel; a
                // gradient looks up a pixel's stop one by one, a pattern samples a tile.
                let area = area_within(path.stroke_bounding_box(), transform, canvas);
                for paint in paints.into_iter().flatten() {
                    let stops = |count: usize| 1.0 + count as f64 / GRADIENT_STOPS_PER_PAINT;
                    let weight = match paint {
                        usvg::Paint::LinearGradient(g) => stops(g.stops().len()),
                        usvg::Paint::RadialGradient(g) => stops(g.stops().len()),
                        usvg::Paint::Pattern(_) => PATTERN_PAINT,
                        usvg::Paint::Color(_) => 1.0,
                    };
                    let work = area * weight;
                    spend(&mut left.pixel_work, work, "too costly to paint")?;
                    let usvg::Paint::Pattern(pattern) = paint else {
                        continue;
                    };
                    // As resvg sizes the tile (`render_pattern_pixmap`).
                    let (sx, sy) = transform.pre_concat(pattern.transform()).get_scale();
                    let rect = pattern.rect();
                    let tile = ((rect.width() * sx).round(), (rect.height() * sy).round());
                    let pixels = f64::from(tile.0) * f64::from(tile.1);
                    spend(
                        &mut left.tile_pixels,
                        pixels,
                        "pattern tiles too large to draw",
                    )?;
                    let inside = tiny_skia::Transform::from_scale(sx, sy);
                    costs_within(pattern.root(), inside, tile, left)?;
                }
            }
            usvg::Node::Image(image) => {
                // A raster is drawn over its box; a nested SVG (which a reduced raster is
                // too) on a layer of the whole canvas, then composited.
                let work = match image.kind() {
                    usvg::ImageKind::SVG(_) => {
                        2.0 * f64::from(canvas.0) * f64::from(canvas.1) * LAYER_PIXEL
                    }
                    _ => area_within(image.bounding_box(), transform, canvas) * PATTERN_PAINT,
                };
                spend(&mut left.pixel_work, work, "too costly to paint")?;
                if let usvg::ImageKind::SVG(tree) = image.kind() {
                    costs_within(tree.root(), transform, canvas, left)?;
                }
            }
            usvg::Node::Text(text) => costs_within(text.flattened(), transform, canvas, left)?,
        }
    }
    Ok(())
}

/// The pixels `rect` covers on the canvas once transformed, at most the canvas's.
fn area_within(rect: usvg::Rect, transform: tiny_skia::Transform, canvas: (f32, f32)) -> f64 {
    rect.transform(transform).map_or(0.0, |r| {
        f64::from(r.width().min(canvas.0)) * f64::from(r.height().min(canvas.1))
    })
}

/// Takes `cost` from what is `left`, or refuses the drawing with `why`.
fn spend(left: &mut f64, cost: f64, why: &'static str) -> Result<(), SvgError> {
    if cost.is_nan() || cost > *left {
        return Err(SvgError::TooComplex(why));
    }
    *left -= cost;
    Ok(())
}

/// The work of a group's filters (see [`costs_within`]), and of the drawings its
/// `feImage`s hold.
fn filters_within(
    group: &usvg::Group,
    transform: tiny_skia::Transform,
    canvas: (f32, f32),
    left: &mut Left,
) -> Result<(), SvgError> {
    if group.filters().is_empty() {
        return Ok(());
    }
    // The region a filter works over: the group's layer, within the canvas (as resvg
    // fits it).
    let (width, height) = group
        .layer_bounding_box()
        .transform(transform)
        .map_or(canvas, |r| {
            (r.width().min(canvas.0), r.height().min(canvas.1))
        });
    let pixels = f64::from(width.ceil()) * f64::from(height.ceil());
    let (sx, sy) = transform.get_scale();
    for filter in group.filters() {
        for primitive in filter.primitives() {
            let taps = match primitive.kind() {
                usvg::filter::Kind::Morphology(m) => {
                    // resvg rounds the scaled radius and clamps it to the region.
                    let radius = |r: f32, scale: f32, side: f32| (r * scale).round().min(side);
                    let rx = radius(m.radius_x().get(), sx, width);
                    let ry = radius(m.radius_y().get(), sy, height);
                    f64::from(2.0 * rx + 1.0) * f64::from(2.0 * ry + 1.0) * MORPHOLOGY_ENTRY
                }
                usvg::filter::Kind::ConvolveMatrix(c) => {
                    f64::from(c.matrix().columns())
                        * f64::from(c.matrix().rows())
                        * CONVOLUTION_ENTRY
                }
                usvg::filter::Kind::Turbulence(t) => {
                    f64::from(t.num_octaves().max(1)) * TURBULENCE_OCTAVE
                }
                usvg::filter::Kind::GaussianBlur(_)
                | usvg::filter::Kind::DropShadow(_)
                | usvg::filter::Kind::DiffuseLighting(_)
                | usvg::filter::Kind::SpecularLighting(_)
                | usvg::filter::Kind::DisplacementMap(_) => FILTER_HEAVY_PASS,
                usvg::filter::Kind::Image(image) => {
                    costs_within(image.root(), transform, canvas, left)?;
                    FILTER_PASS
                }
                _ => FILTER_PASS,
            };
            spend(
                &mut left.pixel_work,
                pixels * taps,
                "filters too costly to draw",
            )?;
        }
    }
    Ok(())
}

/// The scale the drawing is judged at (see [`DRAWN_MAX_SIDE`]).
fn drawn_scale(width: f32, height: f32) -> f32 {
    let (longer, shorter) = (width.max(height), width.min(height));
    let scale = (DRAWN_MAX_SIDE / longer).min(1.0);
    if shorter * scale >= DRAWN_MIN_SIDE {
        scale
    } else {
        (DRAWN_MIN_SIDE / shorter).min(DRAWN_WIDE_SIDE / longer)
    }
}

/// What resvg draws for a `data:` URI: a raster we decode (as PNG), a nested SVG (bounded
/// like the outer one), or nothing.
fn embedded(data: &[u8], options: &usvg::Options, limits: DecodeLimits) -> Option<usvg::ImageKind> {
    match ImageFormat::sniff(data) {
        // Decoded only in an isolated instance (edge::model): not drawn here.
        Some(format) if format.decoded_in_isolation() => None,
        Some(format) => raster(data, format, limits),
        None => {
            let text = std::str::from_utf8(data).ok()?;
            let document = parse(text).ok()?;
            bounded(&document).ok()?;
            let nested = self::options(usvg::ImageHrefResolver {
                resolve_data: Box::new(|mime, data, nested| {
                    (options.image_href_resolver.resolve_data)(mime, data, nested)
                }),
                resolve_string: Box::new(|_, _| None),
            });
            usvg::Tree::from_xmltree(&document, &nested)
                .ok()
                .map(usvg::ImageKind::SVG)
        }
    }
}

/// A raster decoded as shown (its first frame, oriented) and handed to resvg as a PNG of
/// at most [`RASTER_SIDE`]; a reduced one inside an SVG of the shown size, so that the
/// drawing lays it out as the original (an `<image>` without a size takes the raster's).
fn raster(data: &[u8], format: ImageFormat, limits: DecodeLimits) -> Option<usvg::ImageKind> {
    let decoded = decode_reduced(data, format, limits).ok()?;
    let (shown_width, shown_height) = (decoded.width, decoded.height);
    let (width, height) = decoded.image.dimensions();
    let fit = (RASTER_SIDE as f32 / width.max(height) as f32).min(1.0);
    let side = |length: u32| ((length as f32 * fit).round() as u32).max(1);
    let (width, height) = (side(width), side(height));
    let image = if (width, height) == decoded.image.dimensions() {
        decoded.image
    } else {
        resize_smoothly(&decoded.image, width, height).ok()?
    };
    let png = fast_png(image)?;
    if (width, height) == (shown_width, shown_height) {
        return Some(usvg::ImageKind::PNG(Arc::new(png)));
    }
    let wrapper = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{shown_width}" height="{shown_height}" viewBox="0 0 {width} {height}" preserveAspectRatio="none"><image width="{width}" height="{height}" href="data:image/png;base64,{}"/></svg>"#,
        base64::engine::general_purpose::STANDARD.encode(png)
    );
    // The default resolver hands the PNG to resvg as it is.
    usvg::Tree::from_str(&wrapper, &usvg::Options::default())
        .ok()
        .map(usvg::ImageKind::SVG)
}

/// RGBA PNG, compressed for speed: it only carries pixels from our decoder to resvg.
fn fast_png(image: DynamicImage) -> Option<Vec<u8>> {
    let rgba = image.into_rgba8();
    let mut png = Vec::new();
    PngEncoder::new_with_quality(&mut png, CompressionType::Fast, FilterType::NoFilter)
        .write_image(
            rgba.as_raw(),
            rgba.width(),
            rgba.height(),
            image::ExtendedColorType::Rgba8,
        )
        .ok()?;
    Some(png)
}

/// Refuses a document that would draw more than [`MAX_DRAWN_ELEMENTS`] elements.
fn bounded(document: &roxmltree::Document) -> Result<(), SvgError> {
    let by_id: HashMap<&str, roxmltree::Node> = document
        .descendants()
        .filter_map(|node| Some((node.attribute("id")?, node)))
        .collect();
    let mut counted = HashMap::new();
    if drawn(document.root(), &by_id, &mut counted) > MAX_DRAWN_ELEMENTS {
        return Err(SvgError::TooComplex("too many elements to draw"));
    }
    Ok(())
}

/// How many elements `node` draws: itself, its children, and every element it references
/// (`href="#id"`, `url(#id)`), each time it references it; a marker once per vertex of
/// the shape (an upper bound: every number of its geometry). A reference cycle counts as
/// nothing more (resvg skips it).
fn drawn<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
    by_id: &HashMap<&str, roxmltree::Node<'a, 'input>>,
    counted: &mut HashMap<roxmltree::NodeId, Option<u64>>,
) -> u64 {
    match counted.get(&node.id()) {
        Some(Some(known)) => return *known,
        // Being counted: a cycle.
        Some(None) => return 0,
        None => {}
    }
    counted.insert(node.id(), None);
    let mut total: u64 = u64::from(node.is_element()).saturating_add(glyphs(node));
    for child in node.children() {
        total = total.saturating_add(drawn(child, by_id, counted));
    }
    let vertices = geometry_numbers(node).max(1);
    for attribute in node.attributes() {
        let copies = if attribute.name().starts_with("marker") {
            vertices
        } else {
            1
        };
        for id in references(attribute.value()) {
            if let Some(&target) = by_id.get(id) {
                let each = drawn(target, by_id, counted);
                total = total.saturating_add(each.saturating_mul(copies));
            }
        }
    }
    counted.insert(node.id(), Some(total));
    total
}

/// What drawing character `c` costs, in elements: 4 for a glyph of [`FONT`]; 10 for one
/// that may come from [`FALLBACK_FONT`] (CJK and beyond, emoji and symbols), which is
/// shaped a second time and, for an emoji, drawn as a colour glyph of its own. Natively
/// (Xeon, family 6 model 207, AVX-512), 950 characters in rows of 30 took 2.2-3.6 ms as
/// full blocks, 6.3-10.5 ms as CJK and 9.1-11.0 ms as emoji.
fn character_cost(c: char) -> u64 {
    // Block elements and geometric shapes (U+2580..25FF, full blocks among them) are
    // DejaVu's; the symbol blocks hold emoji it may lack.
    if matches!(u32::from(c), 0x2600..=0x27BF | 0x2B00..=0x2BFF | 0x2E80..) {
        10
    } else {
        4
    }
}

/// What `node`'s text costs to draw, in elements: [`character_cost`] per character a text
/// node inside a `<text>` draws (shaped, outlined and filled), and 3 per chunk resvg lays out (each
/// `<text>`, and each absolute `x` or `y` on a text element, which starts one), over the
/// element itself. Measured in Wasm through `viceroy serve` (Zen 4), the sibling drawing
/// and judging an SVG used ~20 ms plus ~20 µs per character in a few long lines (2,000:
/// 54-69 ms) and ~35 µs per character placed on its own (990: 47-66 ms), where a
/// rectangle costs ~4.5 µs (4,300: ~40 ms). Other text (a `<style>`, a `<title>`) draws
/// nothing.
fn glyphs(node: roxmltree::Node) -> u64 {
    if node.is_text() {
        return match node.text() {
            Some(text) if node.ancestors().any(|a| a.tag_name().name() == "text") => text
                .chars()
                .filter(|c| !c.is_whitespace())
                .map(character_cost)
                .sum(),
            _ => 0,
        };
    }
    let name = node.tag_name().name();
    if !matches!(name, "text" | "tspan" | "textPath") {
        return 0;
    }
    let positions = |axis: &str| {
        node.attribute(axis).map_or(0, |list| {
            list.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|v| !v.is_empty())
                .count() as u64
        })
    };
    let chunks = positions("x")
        .max(positions("y"))
        .max(u64::from(name == "text"));
    3 * chunks
}

/// The ids an attribute value references: `#id` (an href) and every `url(#id)`.
fn references(value: &str) -> impl Iterator<Item = &str> {
    let href = value.strip_prefix('#').map(str::trim);
    let urls = value.split("url(").skip(1).filter_map(|rest| {
        let inside = rest.split(')').next()?;
        let inside = inside.trim().trim_matches(['"', '\'']);
        inside.strip_prefix('#').map(str::trim)
    });
    href.into_iter().chain(urls)
}

/// An upper bound on a shape's vertices: the numbers in its `d` or `points`.
fn geometry_numbers(node: roxmltree::Node) -> u64 {
    ["d", "points"]
        .iter()
        .filter_map(|name| node.attribute(*name))
        .map(|value| {
            value
                .split(|c: char| !(c.is_ascii_digit() || c == '.'))
                .filter(|part| !part.is_empty())
                .count() as u64
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DecodeLimits = DecodeLimits {
        max_pixels: 50_000_000,
        max_dimension: 20_000,
        max_canvas_bytes: 256 << 20,
        reduce_jpeg: true,
    };

    fn drawing(svg: &str) -> RgbaImage {
        draw(svg.as_bytes(), LIMITS).unwrap().unwrap()
    }

    fn png(image: RgbaImage) -> String {
        let png = fast_png(DynamicImage::ImageRgba8(image)).unwrap();
        base64::engine::general_purpose::STANDARD.encode(png)
    }

    #[test]
    fn vector_shapes_are_drawn_to_fit() {
        let drawn = drawing(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="200" height="100">
                 <rect width="100" height="100" fill="red"/></svg>"#,
        );
        // Its shorter side raised to the model's 224.
        assert_eq!(drawn.dimensions(), (448, 224));
        assert_eq!(drawn.get_pixel(10, 10).0, [255, 0, 0, 255]);
        // Nothing drawn on the right: the page shows through.
        assert_eq!(drawn.get_pixel(440, 10).0[3], 0);
        assert_eq!(drawn_scale(500.0, 300.0), 1.0);
        assert_eq!(drawn_scale(4000.0, 3000.0), 0.256);
        assert_eq!(drawn_scale(10_000.0, 100.0), 0.2048);
        let empty = draw(
            br#"<svg xmlns="http://www.w3.org/2000/svg" width="0" height="10"/>"#,
            LIMITS,
        );
        assert_eq!(empty, Ok(None));
    }

    #[test]
    fn embedded_rasters_are_drawn_as_the_svg_shows_them() {
        // A green raster, shown inverted by a filter: the drawing is magenta.
        let green = png(RgbaImage::from_pixel(40, 20, image::Rgba([0, 255, 0, 255])));
        let drawn = drawing(&format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 40 20">
                 <filter id="invert"><feColorMatrix type="matrix"
                   values="-1 0 0 0 1  0 -1 0 0 1  0 0 -1 0 1  0 0 0 1 0"/></filter>
                 <image filter="url(#invert)" href="data:image/png;base64,{green}"/></svg>"#
        ));
        let [r, g, b, a] = drawn.get_pixel(20, 10).0;
        assert!(
            r > 250 && g < 5 && b > 250 && a == 255,
            "{:?}",
            [r, g, b, a]
        );
    }

    #[test]
    fn a_large_raster_is_drawn_reduced_at_its_own_size() {
        // 3000 wide, no size on <image>: it must fill the 3000-wide canvas, not a third.
        let wide = RgbaImage::from_pixel(3000, 100, image::Rgba([0, 0, 255, 255]));
        let drawn = drawing(&format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="3000" height="100">
                 <image href="data:image/png;base64,{}"/></svg>"#,
            png(wide)
        ));
        assert_eq!(drawn.dimensions(), (2048, 68));
        assert_eq!(drawn.get_pixel(2046, 5).0, [0, 0, 255, 255]);
    }

    #[test]
    fn pattern_tiles_beyond_the_bound_are_refused() {
        // A pattern used as designed is drawn: a red and blue tile repeated.
        let tiled = |tile_width: &str, uses: usize| {
            let squares = r##"<rect width="30" height="30" fill="url(#p)"/>"##.repeat(uses);
            format!(
                r##"<svg xmlns="http://www.w3.org/2000/svg" width="30" height="30">
                  <pattern id="p" width="{tile_width}" height="0.5">
                    <rect width="30" height="8" fill="red"/><rect y="8" width="30" height="7" fill="blue"/>
                  </pattern>{squares}</svg>"##
            )
        };
        let drawn = drawing(&tiled("1", 1));
        assert_eq!(drawn.get_pixel(10, 10).0, [255, 0, 0, 255]);
        assert_eq!(drawn.get_pixel(10, 100).0, [0, 0, 255, 255]);
        // A tile 55,554 times the square's width (the fuzzer's find: 33 GB asked of the
        // allocator) is refused; so is a fair tile used on too many squares (its tiles
        // drawn, and the squares painted with them, cost too much at the least size).
        let refused = Err(SvgError::TooComplex("pattern tiles too large to draw"));
        assert_eq!(draw(tiled("55554", 1).as_bytes(), LIMITS), refused);
        assert_eq!(
            draw(tiled("1", 200).as_bytes(), LIMITS),
            Err(SvgError::TooComplex("too costly to paint"))
        );
        assert!(draw(tiled("1", 20).as_bytes(), LIMITS).is_ok());
        // A tile drawn inside a tile counts at its own scale, for each use.
        let nested = r##"<svg xmlns="http://www.w3.org/2000/svg" width="30" height="30">
            <pattern id="inner" width="0.001" height="0.001" patternTransform="scale(2000)">
              <rect width="10" height="10" fill="red"/></pattern>
            <pattern id="outer" width="1" height="1">
              <rect width="30" height="30" fill="url(#inner)" transform="scale(40)"/></pattern>
            <rect width="30" height="30" fill="url(#outer)"/></svg>"##;
        assert_eq!(draw(nested.as_bytes(), LIMITS), refused);
    }

    #[test]
    fn pixel_work_beyond_the_bound_is_refused() {
        let filtered = |primitive: &str| {
            format!(
                r##"<svg xmlns="http://www.w3.org/2000/svg" width="1024" height="1024">
                  <filter id="f">{primitive}</filter>
                  <rect x="200" y="200" width="600" height="600" fill="red" filter="url(#f)"/></svg>"##
            )
        };
        let refused = Err(SvgError::TooComplex("filters too costly to draw"));
        // What illustrations use is drawn: a blurred shadow, a thin outline, a noise
        // texture, a sharpening kernel. Over 600×600 of a 1024 canvas, each costs more
        // than the bound at that size: the drawing is made smaller, the filtered square still in it.
        for fair in [
            r#"<feGaussianBlur stdDeviation="8"/><feOffset dx="4" dy="4"/><feMerge><feMergeNode/><feMergeNode in="SourceGraphic"/></feMerge>"#,
            r#"<feMorphology operator="dilate" radius="2"/>"#,
            r#"<feTurbulence baseFrequency="0.05" numOctaves="4"/>"#,
            r#"<feConvolveMatrix order="3" kernelMatrix="0 -1 0 -1 5 -1 0 -1 0"/>"#,
        ] {
            let drawn = drawing(&filtered(fair));
            let (width, height) = drawn.dimensions();
            assert!(
                width == height && (224..1024).contains(&width),
                "{fair}: {width}"
            );
            assert!(drawn.get_pixel(width / 2, width / 2).0[3] > 0, "{fair}");
        }
        // A window of 4001 × 4001 pixels per pixel, a million octaves, a 60×60 kernel:
        // hours of CPU, refused before drawing, even at the least size.
        let kernel = format!(
            r#"<feConvolveMatrix order="60" kernelMatrix="{}"/>"#,
            "1 ".repeat(3600)
        );
        for costly in [
            r#"<feMorphology operator="erode" radius="2000"/>"#,
            r#"<feTurbulence baseFrequency="0.05" numOctaves="1000000"/>"#,
            &kernel,
        ] {
            assert_eq!(
                draw(filtered(costly).as_bytes(), LIMITS),
                refused,
                "{costly}"
            );
        }
        // Dashes: a dashed outline is drawn; a million dashes a path, many paths, are not
        // (drawn smaller, a path has as many).
        let dashed = |dash: &str, paths: usize| {
            let path = format!(
                r#"<path d="M10 10 H1000 V1000 H10 Z" stroke="red" fill="none" stroke-dasharray="{dash}"/>"#
            );
            format!(
                r#"<svg xmlns="http://www.w3.org/2000/svg" width="1024" height="1024">{}</svg>"#,
                path.repeat(paths)
            )
        };
        assert_eq!(drawing(&dashed("8 4", 2)).get_pixel(12, 10).0[0], 255);
        let too_many = Err(SvgError::TooComplex("too many dashes to draw"));
        assert_eq!(draw(dashed("0.002", 1).as_bytes(), LIMITS), too_many);
        assert_eq!(draw(dashed("0.5 0.5", 200).as_bytes(), LIMITS), too_many);
        // Paints: a five-stop gradient over the canvas is drawn at its size; 200 stops
        // over it are drawn smaller; 4,000 squares covering it are not drawn at all.
        let painted = |stops: usize, squares: usize| {
            let stops: String = (0..stops)
                .map(|i| {
                    format!(
                        r#"<stop offset="{}" stop-color="rgb({},0,0)"/>"#,
                        i as f32 / stops as f32,
                        i % 256
                    )
                })
                .collect();
            format!(
                r##"<svg xmlns="http://www.w3.org/2000/svg" width="1024" height="1024">
                  <linearGradient id="g">{stops}</linearGradient>
                  <rect width="1024" height="1024" fill="url(#g)"/>{}</svg>"##,
                r#"<rect width="1024" height="1024" fill="blue"/>"#.repeat(squares)
            )
        };
        assert_eq!(drawing(&painted(5, 1)).dimensions(), (1024, 1024));
        let smaller = drawing(&painted(200, 0));
        assert!(smaller.width() < 1024 && smaller.width() >= 224);
        let costly = Err(SvgError::TooComplex("too costly to paint"));
        assert_eq!(draw(painted(2, 4000).as_bytes(), LIMITS), costly);
        // Groups drawn apart: a translucent masked group is drawn; a mask on each of many
        // small squares (a layer of the whole canvas each) is not.
        let masked = |groups: usize| {
            let group = r##"<g mask="url(#m)" opacity="0.5"><rect width="10" height="10" fill="red"/></g>"##;
            format!(
                r##"<svg xmlns="http://www.w3.org/2000/svg" width="1024" height="1024">
                  <mask id="m"><rect width="1024" height="1024" fill="white"/></mask>{}</svg>"##,
                group.repeat(groups)
            )
        };
        assert_eq!(drawing(&masked(1)).get_pixel(5, 5).0[0], 255);
        assert_eq!(draw(masked(200).as_bytes(), LIMITS), costly);
        // A clip path clipped by a clip path, and so on: a layer of the canvas each.
        let chained = |links: usize| {
            let clips: String = (0..links)
                .map(|i| {
                    format!(
                        r##"<clipPath id="c{i}" clip-path="url(#c{})"><rect width="1000" height="1000"/></clipPath>"##,
                        i + 1
                    )
                })
                .collect();
            format!(
                r##"<svg xmlns="http://www.w3.org/2000/svg" width="1024" height="1024">{clips}
                  <clipPath id="c{links}"><rect width="1000" height="1000"/></clipPath>
                  <rect width="1024" height="1024" fill="red" clip-path="url(#c0)"/></svg>"##
            )
        };
        assert_eq!(drawing(&chained(1)).get_pixel(5, 5).0[0], 255);
        assert!(drawing(&chained(20)).width() < 1024);
        assert_eq!(draw(chained(60).as_bytes(), LIMITS), costly);
        // Many fair passes add up.
        let many = r#"<feGaussianBlur stdDeviation="1"/>"#.repeat(100);
        assert_eq!(draw(filtered(&many).as_bytes(), LIMITS), refused);
    }

    #[test]
    fn references_that_multiply_are_refused() {
        // Ten copies of ten copies of ... : a billion rectangles from a few hundred bytes.
        let mut defs = String::from(r#"<g id="l0"><rect width="1" height="1"/></g>"#);
        for level in 1..10 {
            let uses = format!(r##"<use href="#l{}"/>"##, level - 1).repeat(10);
            defs.push_str(&format!(r#"<g id="l{level}">{uses}</g>"#));
        }
        let svg = format!(
            r##"<svg xmlns="http://www.w3.org/2000/svg"><defs>{defs}</defs><use href="#l9"/></svg>"##
        );
        assert_eq!(
            draw(svg.as_bytes(), LIMITS),
            Err(SvgError::TooComplex("too many elements to draw"))
        );
        // A cycle is refused (resvg follows it to its depth limit), not followed forever.
        let cycle = r##"<svg xmlns="http://www.w3.org/2000/svg"><g id="a"><use href="#b"/></g><g id="b"><use href="#a"/></g></svg>"##;
        assert_eq!(
            draw(cycle.as_bytes(), LIMITS),
            Err(SvgError::TooComplex("too many elements to draw"))
        );
        // A marker on every vertex of a long path.
        let points = "1 1 ".repeat(30_000);
        let markers = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg"><marker id="m"><rect/></marker><polyline marker-mid="url(#m)" points="{points}"/></svg>"#
        );
        assert!(draw(markers.as_bytes(), LIMITS).is_err());
    }

    #[test]
    fn text_is_drawn_in_the_embedded_font_whatever_family_it_names() {
        // A picture of coloured full-block glyphs: red on the left, blue on the right.
        for family in [
            "",
            r#" font-family="NoSuchFont, serif""#,
            r#" font-family="monospace""#,
        ] {
            let svg = format!(
                r##"<svg xmlns="http://www.w3.org/2000/svg" width="240" height="240"><text y="200" font-size="240"{family}><tspan fill="#f00">&#x2588;</tspan></text><text x="120" y="200" font-size="240"{family} fill="blue">&#x2588;</text></svg>"##
            );
            let drawn = drawing(&svg);
            assert_eq!(drawn.get_pixel(60, 120).0, [255, 0, 0, 255], "{family}");
            assert_eq!(drawn.get_pixel(180, 120).0, [0, 0, 255, 255], "{family}");
        }
        // Letters too: ink where the text is.
        let words = drawing(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="300" height="60"><text y="45" font-size="40" font-weight="bold" font-style="italic">Hello, SVG</text></svg>"#,
        );
        let inked = words.pixels().filter(|p| p.0[3] > 128).count();
        assert!(inked > 1000, "{inked} pixels inked");
    }

    #[test]
    fn emoji_and_cjk_fall_back_to_their_colour_and_ink() {
        // Coloured-square emoji (U+1F7E5 red, U+1F7E6 blue), which DejaVu Sans lacks, are
        // drawn in their colours, as a browser's emoji font shows them.
        let squares = drawing(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="480" height="240"><text y="190" font-size="200">&#x1F7E5;&#x1F7E6;</text></svg>"#,
        );
        let [r, g, b, a] = squares.get_pixel(100, 100).0;
        assert!(
            r > 200 && g < 100 && b < 100 && a > 200,
            "{:?}",
            [r, g, b, a]
        );
        let [r, g, b, a] = squares.get_pixel(350, 100).0;
        assert!(b > 150 && r < 100 && a > 200, "{:?}", [r, g, b, a]);
        // A dense CJK character inks more than a light one, as in a CJK font.
        let ink = |character: &str| {
            let svg = format!(
                r#"<svg xmlns="http://www.w3.org/2000/svg" width="200" height="200"><text y="170" font-size="200">{character}</text></svg>"#
            );
            let drawn = drawing(&svg);
            drawn.pixels().map(|p| u64::from(p.0[3])).sum::<u64>() / (200 * 200)
        };
        let (dense, light) = (ink("&#x9B31;"), ink("&#x4E00;"));
        assert!(dense > 2 * light && light > 0, "{dense} vs {light}");
        // Joiners and variation selectors draw nothing: one red square either way.
        let joined = drawing(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="480" height="240"><text y="190" font-size="200">&#x200D;&#xFE0F;&#x1F7E5;</text></svg>"#,
        );
        assert!(joined.get_pixel(100, 100).0[0] > 200);
    }

    #[test]
    fn characters_count_toward_the_drawing_bound() {
        let many = "&#x2588;".repeat(MAX_DRAWN_ELEMENTS as usize / 4 + 1);
        let svg =
            format!(r#"<svg xmlns="http://www.w3.org/2000/svg"><text y="10">{many}</text></svg>"#);
        assert_eq!(
            draw(svg.as_bytes(), LIMITS),
            Err(SvgError::TooComplex("too many elements to draw"))
        );
        // Full blocks are the embedded font's: just under the bound, they draw.
        let fewer = "&#x2588;".repeat(MAX_DRAWN_ELEMENTS as usize / 4 - 2);
        let svg =
            format!(r#"<svg xmlns="http://www.w3.org/2000/svg"><text y="10">{fewer}</text></svg>"#);
        assert!(draw(svg.as_bytes(), LIMITS).is_ok());
        // Emoji and CJK cost more: fewer of them reach the bound.
        for character in ["&#x1F7E5;", "&#x9B31;"] {
            let many = character.repeat(MAX_DRAWN_ELEMENTS as usize / 10 + 1);
            let svg = format!(
                r#"<svg xmlns="http://www.w3.org/2000/svg"><text y="10">{many}</text></svg>"#
            );
            assert_eq!(
                draw(svg.as_bytes(), LIMITS),
                Err(SvgError::TooComplex("too many elements to draw")),
                "{character}"
            );
        }
        // Text that draws nothing (a style sheet, a title) does not count.
        let style = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg"><title>{many}</title><style>/*{many}*/</style><rect width="5" height="5"/></svg>"#
        );
        assert!(draw(style.as_bytes(), LIMITS).is_ok());
    }
}
