#!/usr/bin/env python3
"""Pillow's decode of the still formats browsers sniff, for tests/raster_reference.rs.

Usage: raster_reference.py SOURCES OUT
Writes files made from the PNGs in SOURCES with Pillow's encoders: BMP (24-bit, 32-bit
with alpha, 8-bit palette, 1-bit), ICO (several entry sizes; PNG and BMP entries),
TIFF (raw, LZW, deflate, PackBits, with alpha, greyscale), each as NAME.EXT beside
NAME_WxH.rgba: what Pillow decodes from it (for ICO, the largest entry), as RGBA8.
"""
import sys
from pathlib import Path

from PIL import Image


def main():
    sources, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    names = ["photo_cat", "drawing_stick_figure", "flat_logo_alpha", "gray_coins", "noise_rgb"]
    cases = []
    for stem in names:
        image = Image.open(sources / f"{stem}.png").convert("RGBA")
        small = image.resize((max(3, image.width // 3) | 1, max(3, image.height // 3) | 1))
        cases += [
            (f"{stem}_bmp24", small.convert("RGB"), "bmp", {}),
            (f"{stem}_bmp32", small, "bmp", {}),
            (f"{stem}_bmp8", small.convert("RGB").quantize(256), "bmp", {}),
            (f"{stem}_bmp1", small.convert("1"), "bmp", {}),
            (f"{stem}_tiff_raw", small.convert("RGB"), "tiff", {}),
            (f"{stem}_tiff_lzw", small, "tiff", {"compression": "tiff_lzw"}),
            (f"{stem}_tiff_deflate", small.convert("RGB"), "tiff", {"compression": "tiff_adobe_deflate"}),
            (f"{stem}_tiff_packbits", small.convert("L"), "tiff", {"compression": "packbits"}),
            (f"{stem}_ico", image, "ico", {"sizes": [(16, 16), (32, 32), (64, 64)]}),
            (f"{stem}_ico_bmp", image, "ico", {"sizes": [(16, 16), (48, 48)], "bitmap_format": "bmp"}),
        ]
    for name, image, ext, options in cases:
        path = out / f"{name}.{ext}"
        try:
            image.save(path, **options)
        except (OSError, ValueError, TypeError):
            continue  # an option this Pillow does not write
        decoded = Image.open(path)
        decoded.load()
        rgba = decoded.convert("RGBA")
        (out / f"{name}_{rgba.width}x{rgba.height}.rgba").write_bytes(rgba.tobytes())


if __name__ == "__main__":
    main()
