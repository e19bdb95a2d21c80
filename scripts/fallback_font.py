#!/usr/bin/env python3
"""Writes assets/fonts/Fallback.ttf, the font SVG text falls back to for characters
DejaVu Sans lacks (src/media/svg/draw.rs): colour emoji and CJK.

A browser draws those characters with its emoji and CJK fonts, so a picture laid out in
emoji (one per pixel, say the coloured squares U+1F7E5..) or in CJK characters of
different darkness (text art) shows; without glyphs we drew them as empty boxes. Shipping
the real fonts would cost ~30 MB; what a picture made of them looks like at the model's
224x224 is each glyph's colour and darkness, so each glyph is reduced to that:

- an emoji (Noto Color Emoji, Debian's fonts-noto-color-emoji) becomes a COLR/CPAL colour
  glyph of one square over the box it inks (alpha of one half or more), its average
  colour (alpha-weighted) at its mean opacity there, with Noto's advance;
- a CJK character (Noto Sans CJK JP, fonts-noto-cjk) becomes a frame with a cross, like
  the character for field, whose stroke width gives it the ink of the character as Noto
  draws it (its share of the advance by one em, in 16 levels), with Noto's advance;
- joiners and variation selectors (U+200D, U+FE00..FE0F, tags) draw nothing.

No outline of either font is copied: only average colours, ink shares and advances.
Emoji sequences (ZWJ, flags, skin tones) draw as their parts: no GSUB.

Needs Debian's fonts-noto-color-emoji and fonts-noto-cjk, fontTools, Pillow and numpy
(assets/fonts/LICENSE-Noto.txt: their licence).

usage: python3 scripts/fallback_font.py
"""
import io
import math
from pathlib import Path

from fontTools.fontBuilder import FontBuilder
from fontTools.pens.ttGlyphPen import TTGlyphPen
from fontTools.ttLib import TTFont, newTable
from fontTools.ttLib.tables._c_m_a_p import CmapSubtable
import numpy
from fontTools.colorLib.builder import buildCOLR, buildCPAL
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
DEJAVU = ROOT / "assets/fonts/DejaVuSans.ttf"
OUT = ROOT / "assets/fonts/Fallback.ttf"
EMOJI = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
CJK = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"
UPEM = 2048
LEVELS = 16
# Squares per side of an emoji's colour glyph. One, the emoji's average colour over the
# box it inks: an emoji mosaic of a logo drawn so scored 0.25 Drawing where Chromium's
# screenshot scored 0.22 (2x2 squares: 0.29), and a cat 0.20 against 0.15 (2x2: 0.25),
# at ~40% less CPU to draw.
GRID = 1
# Drawn as nothing, as a browser does: joiners, variation selectors and tag characters
# (parts of emoji sequences).
INVISIBLE = [0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF] + list(range(0xFE00, 0xFE10)) + list(range(0xE0020, 0xE0080))


def rect(pen, x0, y0, x1, y1):
    pen.moveTo((x0, y0))
    pen.lineTo((x0, y1))
    pen.lineTo((x1, y1))
    pen.lineTo((x1, y0))
    pen.closePath()


def glyph(rects):
    pen = TTGlyphPen(None)
    for r in rects:
        rect(pen, *[round(v) for v in r])
    return pen.glyph()


def emoji_glyphs(skip):
    """(codepoint, advance, box, four (r, g, b, a)) for every emoji Noto Color Emoji maps
    alone that DejaVu Sans lacks."""
    font = TTFont(EMOJI)
    ppem = font["CBLC"].strikes[0].bitmapSizeTable.ppemX
    scale = font["head"].unitsPerEm / ppem
    strike = font["CBDT"].strikeData[0]
    for cp, name in sorted(font.getBestCmap().items()):
        if cp in skip or cp in INVISIBLE or cp < 0x80:
            continue
        bitmap = strike.get(name)
        if bitmap is None:
            continue
        m = bitmap.metrics
        image = Image.open(io.BytesIO(bitmap.imageData)).convert("RGBA")
        # The squares cover the box the emoji inks (alpha of one half or more), not its
        # whole bitmap: the margins stay clear, so a mosaic of emoji keeps the light grid
        # between its tiles that a browser shows.
        ink = image.getchannel("A").point(lambda a: 255 if a >= 128 else 0).getbbox()
        if ink is None:
            continue
        left, upper, right, lower = ink
        w, h = right - left, lower - upper
        quarters = []
        for qy in range(GRID):
            for qx in range(GRID):
                part = image.crop(
                    (
                        left + qx * w // GRID,
                        upper + qy * h // GRID,
                        left + (qx + 1) * w // GRID,
                        upper + (qy + 1) * h // GRID,
                    )
                )
                pixels = numpy.asarray(part, dtype=numpy.float64).reshape(-1, 4)
                alpha = pixels[:, 3].sum()
                if alpha == 0:
                    quarters.append((0, 0, 0, 0))
                    continue
                colour = tuple(round(float((pixels[:, i] * pixels[:, 3]).sum() / alpha)) for i in range(3))
                quarters.append(colour + (round(float(pixels[:, 3].mean())),))
        x0 = (m.BearingX + left) * scale
        top = (m.BearingY - upper) * scale
        box = (x0, top - h * scale, x0 + w * scale, top)
        advance = font["hmtx"][name][0] * font_scale(font)
        yield cp, advance, box, quarters


def font_scale(font):
    return UPEM / font["head"].unitsPerEm


def cjk_glyphs(skip):
    """(codepoint, advance in our units, ink share of advance x em) for every character
    Noto Sans CJK maps that DejaVu Sans and the emoji lack."""
    font = TTFont(CJK, fontNumber=0)
    cmap = font.getBestCmap()
    upem = font["head"].unitsPerEm
    size = 64
    pil = ImageFont.truetype(CJK, size, index=0)
    ascent = size * font["OS/2"].sTypoAscender / upem
    for cp, name in sorted(cmap.items()):
        if cp in skip or cp in INVISIBLE or cp < 0x80:
            continue
        advance = font["hmtx"][name][0]
        if advance == 0:
            continue
        width = max(1, round(size * advance / upem))
        canvas = Image.new("L", (width, size))
        ImageDraw.Draw(canvas).text((0, ascent), chr(cp), font=pil, fill=255, anchor="ls")
        ink = float(numpy.asarray(canvas, dtype=numpy.float64).mean()) / 255
        yield cp, advance * UPEM / upem, ink


def field_glyph(advance, ink):
    """A frame with a cross in the ideographic box of `advance`, its strokes as wide as
    gives `ink` of advance x em."""
    margin = 0.06 * advance
    side_x = advance - 2 * margin
    bottom, top = -0.12 * UPEM + margin, 0.88 * UPEM - margin
    side_y = top - bottom
    target = ink * advance * UPEM
    # Three strokes across and three down: 3 w side_x + 3 w side_y - 9 w^2 = target.
    a, b = 9.0, -3.0 * (side_x + side_y)
    disc = b * b - 4 * a * target
    w = (-b - math.sqrt(max(disc, 0.0))) / (2 * a)
    w = max(min(w, min(side_x, side_y) / 3), 1.0)
    x0, x1 = margin, margin + side_x
    xm = (x0 + x1) / 2
    ym = (bottom + top) / 2
    return glyph(
        [
            (x0, top - w, x1, top),
            (x0, ym - w / 2, x1, ym + w / 2),
            (x0, bottom, x1, bottom + w),
            (x0, bottom, x0 + w, top),
            (xm - w / 2, bottom, xm + w / 2, top),
            (x1 - w, bottom, x1, top),
        ]
    )


def main():
    dejavu = set(TTFont(DEJAVU).getBestCmap())
    order = [".notdef", "space0"]
    glyphs = {".notdef": glyph([]), "space0": glyph([])}
    metrics = {".notdef": (UPEM // 2, 0), "space0": (0, 0)}
    cmap = {cp: "space0" for cp in INVISIBLE if cp not in dejavu}

    # Emoji: one base glyph each, its layers the four squares of its box.
    layers, palette, colour_index, colr = {}, [], {}, {}
    emoji = list(emoji_glyphs(dejavu))
    for cp, advance, box, quarters in emoji:
        base = f"u{cp:X}"
        x0, y0, x1, y1 = box
        xs = [x0 + (x1 - x0) * i / GRID for i in range(GRID + 1)]
        ys = [y1 - (y1 - y0) * i / GRID for i in range(GRID + 1)]
        # Row by row from the top, as the quarters were read from the bitmap.
        squares = [(xs[i], ys[j + 1], xs[i + 1], ys[j]) for j in range(GRID) for i in range(GRID)]
        records = []
        for square, colour in zip(squares, quarters):
            if colour[3] == 0:
                continue
            key = tuple(round(v) for v in square)
            if key not in layers:
                name = f"square{len(layers)}"
                layers[key] = name
                order.append(name)
                glyphs[name] = glyph([key])
                metrics[name] = (round(advance), 0)
            if colour not in colour_index:
                colour_index[colour] = len(palette)
                palette.append(tuple(v / 255 for v in colour))
            records.append((layers[key], colour_index[colour]))
        order.append(base)
        glyphs[base] = glyph([])
        metrics[base] = (round(advance), 0)
        cmap[cp] = base
        if records:
            colr[base] = records

    # CJK: one field glyph per (advance, ink level).
    emoji_cps = {cp for cp, *_ in emoji}
    for cp, advance, ink in cjk_glyphs(dejavu | emoji_cps):
        level = min(LEVELS - 1, round(ink * LEVELS * 2))  # ink rarely exceeds one half
        name = f"field{round(advance)}_{level}"
        if name not in glyphs:
            order.append(name)
            glyphs[name] = field_glyph(advance, level / (LEVELS * 2))
            metrics[name] = (round(advance), 0)
        cmap[cp] = name

    builder = FontBuilder(UPEM, isTTF=True)
    builder.setupGlyphOrder(order)
    # Format 12 only: a format 4 table cannot hold this many BMP runs, and skrifa (which
    # usvg asks whether a font has a character) reads formats 4 and 12.
    builder.font["cmap"] = cmap_table = newTable("cmap")
    cmap_table.tableVersion = 0
    cmap_table.tables = []
    for platform, encoding in ((0, 4), (3, 10)):
        subtable = CmapSubtable.newSubtable(12)
        subtable.platformID, subtable.platEncID, subtable.language = platform, encoding, 0
        subtable.cmap = cmap
        cmap_table.tables.append(subtable)
    builder.setupGlyf(glyphs)
    # A left side bearing other than the outline's xMin shifts the outline in TrueType
    # rasterisers (skrifa among them): give each glyph its own.
    glyf = builder.font["glyf"]
    for name, (advance, _) in metrics.items():
        metrics[name] = (advance, getattr(glyf[name], "xMin", 0))
    builder.setupHorizontalMetrics(metrics)
    builder.setupHorizontalHeader(ascent=1900, descent=-500)
    builder.setupNameTable({"familyName": "Edge Moderation Fallback", "styleName": "Regular", "psName": "EdgeModerationFallback-Regular"})
    builder.setupOS2(sTypoAscender=1900, sTypoDescender=-500, usWinAscent=1900, usWinDescent=500)
    builder.setupPost()
    builder.font["COLR"] = buildCOLR(colr, version=0)
    builder.font["CPAL"] = buildCPAL([[(r, g, b, a) for r, g, b, a in palette]])
    builder.save(OUT)
    print(f"{OUT}: {OUT.stat().st_size} bytes, {len(emoji)} emoji, {len(cmap)} characters, {len(palette)} colours")


if __name__ == "__main__":
    main()
