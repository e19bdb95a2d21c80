#!/usr/bin/env python3
"""libjxl's decode (through Pillow and pillow-jxl-plugin) of JPEG XL stills, for
tests/jxl_reference.rs.

Usage: jxl_reference.py SOURCES OUT
Writes JPEG XLs made from the PNGs in SOURCES with libjxl's encoder: lossy (XYB) at
several qualities and efforts, lossless, with alpha, grey, in the ISO-BMFF container, at
odd sizes, and a JPEG recompressed losslessly (JPEG reconstruction data kept), each as
NAME.jxl beside NAME_WxH.rgba: what libjxl decodes from it, as RGBA8.
"""
import io
import sys
from pathlib import Path

import pillow_jxl  # noqa: F401  (registers the JPEG XL plugin)
from PIL import Image


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
            (f"{stem}_q90", rgb, {"quality": 90}),
            (f"{stem}_q60_fast", rgb, {"quality": 60, "effort": 3}),
            (f"{stem}_lossless", rgb, {"lossless": True, "effort": 3}),
            (f"{stem}_alpha", small, {"quality": 85}),
            (f"{stem}_grey", rgb.convert("L"), {"quality": 85}),
            (f"{stem}_container", rgb, {"quality": 80, "use_container": True}),
            (f"{stem}_full", image.convert("RGB"), {"quality": 75}),
        ]
    for name, image, options in cases:
        path = out / f"{name}.jxl"
        image.save(path, format="JXL", **options)
        write_reference(out, name, path)
    # A JPEG recompressed into JPEG XL, as cjxl does by default with a JPEG.
    for stem in names[:2]:
        jpeg = out / f"{stem}_source.jpg"
        Image.open(sources / f"{stem}.png").convert("RGB").save(jpeg, quality=88)
        name = f"{stem}_from_jpeg"
        path = out / f"{name}.jxl"
        Image.open(jpeg).save(path, format="JXL", lossless_jpeg=True)
        jpeg.unlink()
        write_reference(out, name, path)


def write_reference(out, name, path):
    decoded = Image.open(io.BytesIO(path.read_bytes()))
    decoded.load()
    rgba = decoded.convert("RGBA")
    (out / f"{name}_{rgba.width}x{rgba.height}.rgba").write_bytes(rgba.tobytes())


if __name__ == "__main__":
    main()
