#!/usr/bin/env python3
"""libjpeg-turbo's decode (through Pillow) for tests/jpeg_reference.rs.

Usage: jpeg_reference.py SOURCES OUT
Writes JPEGs made from the PNGs in SOURCES with Pillow's encoder, in the variants the
sampled decoder must read exactly (sizes up to 12 MP, odd sizes, 4:4:4, 4:2:2, 4:2:0,
greyscale, restart intervals, qualities 20 to 100, progressive), each as NAME.jpg beside
NAME_WxH.rgb: Pillow's decode of it (interleaved RGB8). JPEGs another encoder wrote into
OUT beforehand (enc_*.jpg) get their decode too.
"""
import sys
from pathlib import Path

from PIL import Image, features

VARIANTS = [
    # name, scale, crop to odd, save options, mode
    ("420_q90", 1.0, False, dict(quality=90, subsampling=2), "RGB"),
    ("444_q75", 1.0, True, dict(quality=75, subsampling=0), "RGB"),
    ("422_q95", 1.5, True, dict(quality=95, subsampling=1), "RGB"),
    ("420_q20_restart", 1.3, True, dict(quality=20, subsampling=2, restart_marker_blocks=3), "RGB"),
    ("grey_q85", 2.2, True, dict(quality=85), "L"),
    ("420_q100", 0.5, True, dict(quality=100, subsampling=2), "RGB"),
    ("420_q80_photo", 3.0, False, dict(quality=80, subsampling=2), "RGB"),
    ("420_q90_progressive", 1.0, False, dict(quality=90, subsampling=2, progressive=True), "RGB"),
    ("444_q70_progressive_restart", 1.2, True,
     dict(quality=70, subsampling=0, progressive=True, restart_marker_blocks=5), "RGB"),
    ("422_q95_progressive", 0.8, True, dict(quality=95, subsampling=1, progressive=True), "RGB"),
    ("grey_q50_progressive", 1.7, True, dict(quality=50, progressive=True, optimize=True), "L"),
]


def main():
    sources, out = Path(sys.argv[1]), Path(sys.argv[2])
    assert features.check_feature("libjpeg_turbo"), "Pillow is not built with libjpeg-turbo"
    out.mkdir(parents=True, exist_ok=True)
    pngs = sorted(sources.glob("*.png"))
    cases = []
    for index, png in enumerate(pngs):
        image = Image.open(png).convert("RGB")
        # Each image in two of the variants, so every variant meets several images.
        count = len(VARIANTS)
        for name, scale, odd, options, mode in (VARIANTS[index % count], VARIANTS[(index + 3) % count]):
            width = max(3, round(image.width * scale))
            height = max(3, round(image.height * scale))
            if odd:
                width, height = width | 1, height | 1
            variant = image.resize((width, height), Image.BICUBIC).convert(mode)
            cases.append((f"{png.stem}_{name}", variant, options))
    photo = Image.open(sources / "photo_coffee.png").convert("RGB")
    cases.append(("photo_12mp_420_q92", photo.resize((4000, 3000), Image.BICUBIC), dict(quality=92)))
    cases.append(("photo_1024_422_restart", photo.resize((1024, 768), Image.BICUBIC),
                  dict(quality=80, subsampling=1, restart_marker_rows=2)))
    cases.append(("photo_12mp_progressive_q88", photo.resize((4000, 3000), Image.BICUBIC),
                  dict(quality=88, progressive=True)))
    cases.append(("photo_801_progressive_restart", photo.resize((801, 601), Image.BICUBIC),
                  dict(quality=85, progressive=True, restart_marker_rows=1)))
    for name, image, options in cases:
        image.save(out / f"{name}.jpg", "JPEG", **options)
    for jpeg in sorted(out.glob("*.jpg")):
        decoded = Image.open(jpeg).convert("RGB")
        (out / f"{jpeg.stem}_{decoded.width}x{decoded.height}.rgb").write_bytes(decoded.tobytes())


if __name__ == "__main__":
    main()
