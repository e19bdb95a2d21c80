#!/usr/bin/env python3
"""libavif's decode (through Pillow) of AVIF stills, for tests/avif_reference.rs.

Usage: avif_reference.py SOURCES OUT
Writes AVIFs made from the PNGs in SOURCES with Pillow's libavif encoder: 4:2:0, 4:2:2,
4:4:4 and 4:0:0, full and limited range, with alpha, odd sizes, and with an EXIF
orientation (written as irot/imir), each as NAME.avif beside NAME_WxH.rgba: what Pillow
decodes from it, orientation applied, as RGBA8.
"""
import sys
from pathlib import Path

from PIL import Image, ImageOps


def main():
    sources, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    names = ["photo_cat", "drawing_stick_figure", "flat_logo_alpha", "gray_coins", "noise_rgb"]
    cases = []
    for stem in names:
        image = Image.open(sources / f"{stem}.png").convert("RGBA")
        small = image.resize((max(3, image.width // 3) | 1, max(3, image.height // 3) | 1))
        rgb = small.convert("RGB")
        cases += [
            (f"{stem}_420", rgb, {"quality": 80}),
            (f"{stem}_422", rgb, {"quality": 80, "subsampling": "4:2:2"}),
            (f"{stem}_444_limited", rgb, {"quality": 90, "subsampling": "4:4:4", "range": "limited"}),
            (f"{stem}_400", rgb.convert("L"), {"subsampling": "4:0:0"}),
            (f"{stem}_alpha", small, {"quality": 85}),
            (f"{stem}_full", image.convert("RGB"), {"quality": 70}),
        ]
        for orientation in (3, 5, 6, 8):
            exif = Image.Exif()
            exif[0x0112] = orientation
            cases.append((f"{stem}_orient{orientation}", rgb, {"exif": exif.tobytes()}))
    for name, image, options in cases:
        path = out / f"{name}.avif"
        try:
            image.save(path, **options)
        except (OSError, ValueError, TypeError) as e:
            print(f"skipped {name}: {e}", file=sys.stderr)
            continue
        decoded = Image.open(path)
        decoded.load()
        rgba = ImageOps.exif_transpose(decoded).convert("RGBA")
        (out / f"{name}_{rgba.width}x{rgba.height}.rgba").write_bytes(rgba.tobytes())


if __name__ == "__main__":
    main()
