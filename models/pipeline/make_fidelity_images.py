"""Writes the fidelity set: benign PNG images, varied in content, size, colour and alpha.

Photos and scans come from the images that ship inside the scikit-image wheel; drawings,
screenshots and flat graphics are drawn here with Pillow. Everything is deterministic
(no randomness without a fixed seed, no fonts from the system), and stored as 8-bit PNG
so that every decoder sees the same pixels.
"""

import sys
from pathlib import Path

import numpy as np
import skimage
from PIL import Image, ImageDraw, ImageFilter

DATA = Path(skimage.__file__).parent / "data"


def shipped(name):
    return Image.open(DATA / name)


def drawing():
    img = Image.new("RGB", (640, 480), (250, 248, 240))
    d = ImageDraw.Draw(img)
    d.ellipse((220, 80, 420, 280), outline=(20, 20, 20), width=6, fill=(255, 220, 120))
    d.ellipse((270, 140, 300, 170), fill=(20, 20, 20))
    d.ellipse((340, 140, 370, 170), fill=(20, 20, 20))
    d.arc((270, 170, 370, 240), 20, 160, fill=(20, 20, 20), width=6)
    d.line((320, 280, 320, 420), fill=(20, 20, 20), width=6)
    d.line((320, 320, 230, 260), fill=(20, 20, 20), width=6)
    d.line((320, 320, 410, 260), fill=(20, 20, 20), width=6)
    d.line((320, 420, 250, 470), fill=(20, 20, 20), width=6)
    d.line((320, 420, 390, 470), fill=(20, 20, 20), width=6)
    d.polygon([(40, 460), (120, 330), (200, 460)], outline=(30, 90, 30), fill=(120, 200, 120))
    return img


def screenshot():
    img = Image.new("RGB", (1024, 640), (236, 239, 244))
    d = ImageDraw.Draw(img)
    d.rectangle((0, 0, 1024, 36), fill=(45, 52, 64))
    for i, c in enumerate([(235, 87, 87), (242, 201, 76), (111, 207, 151)]):
        d.ellipse((12 + 22 * i, 11, 26 + 22 * i, 25), fill=c)
    d.rectangle((0, 36, 220, 640), fill=(250, 250, 252))
    for row in range(12):
        d.rectangle((20, 60 + row * 40, 180, 76 + row * 40), fill=(200, 205, 215))
    for row in range(18):
        width = 300 + (row * 137) % 420
        d.rectangle((250, 70 + row * 30, 250 + width, 82 + row * 30), fill=(120, 128, 140))
    d.rounded_rectangle((760, 560, 990, 610), radius=8, fill=(47, 128, 237))
    return img


def bar_chart():
    img = Image.new("RGB", (800, 500), (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.line((60, 440, 760, 440), fill=(0, 0, 0), width=3)
    d.line((60, 40, 60, 440), fill=(0, 0, 0), width=3)
    for i, h in enumerate([120, 260, 190, 340, 80, 300]):
        d.rectangle((100 + i * 105, 440 - h, 170 + i * 105, 440), fill=(52, 101, 164))
    return img


def flat_logo_with_alpha():
    img = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.ellipse((20, 20, 280, 280), fill=(220, 60, 60, 255))
    d.rectangle((110, 60, 190, 240), fill=(255, 255, 255, 255))
    return img


def gradient():
    x = np.linspace(0, 255, 640, dtype=np.float64)
    y = np.linspace(0, 255, 360, dtype=np.float64)[:, None]
    rgb = np.stack([np.broadcast_to(x, (360, 640)), np.broadcast_to(y, (360, 640)),
                    np.broadcast_to(255 - x, (360, 640))], axis=-1)
    return Image.fromarray(rgb.round().astype(np.uint8), "RGB")


def noise():
    rng = np.random.default_rng(20261124)
    return Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), "RGB")


def photo_with_alpha():
    img = shipped("astronaut.png").convert("RGBA")
    w, h = img.size
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(xx - w / 2, yy - h / 2) / (w / 2)
    alpha = np.clip((1.2 - r) * 255, 0, 255).astype(np.uint8)
    img.putalpha(Image.fromarray(alpha, "L"))
    return img


def images():
    yield "photo_astronaut", shipped("astronaut.png").convert("RGB")
    yield "photo_cat", shipped("chelsea.png").convert("RGB")
    yield "photo_coffee", shipped("coffee.png").convert("RGB")
    yield "photo_rocket", shipped("rocket.jpg").convert("RGB")
    yield "photo_motorcycle", shipped("motorcycle_left.png").convert("RGB")
    yield "photo_space", shipped("hubble_deep_field.jpg").convert("RGB").crop((0, 0, 640, 480))
    yield "photo_retina", shipped("retina.jpg").convert("RGB").resize((700, 700), Image.BILINEAR)
    yield "microscopy_ihc", shipped("ihc.png").convert("RGB")
    yield "gray_camera", shipped("camera.png").convert("L")
    yield "gray_moon", shipped("moon.png").convert("L")
    yield "gray_coins", shipped("coins.png").convert("L")
    yield "gray_text_scan", shipped("page.png").convert("L")
    yield "texture_brick", shipped("brick.png").convert("L")
    yield "silhouette_horse", shipped("horse.png").convert("L")
    yield "logo_scikit_alpha", shipped("logo.png").convert("RGBA")
    yield "photo_alpha_vignette", photo_with_alpha()
    yield "drawing_stick_figure", drawing()
    yield "drawing_blurred", drawing().filter(ImageFilter.GaussianBlur(3))
    yield "screenshot_app", screenshot()
    yield "chart_bars", bar_chart()
    yield "flat_logo_alpha", flat_logo_with_alpha()
    yield "flat_gradient", gradient()
    yield "noise_rgb", noise()
    yield "exact_model_size_224", shipped("chelsea.png").convert("RGB").resize((224, 224), Image.BILINEAR)
    yield "tiny_16", shipped("coffee.png").convert("RGB").resize((16, 16), Image.BILINEAR)
    yield "panorama_wide", shipped("motorcycle_left.png").convert("RGB").crop((0, 200, 1400, 360))
    yield "portrait_tall", shipped("astronaut.png").convert("RGB").crop((150, 0, 330, 512))


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    for name, img in images():
        # No timestamps or text chunks: the same pixels always give the same bytes.
        img.save(out / f"{name}.png", optimize=False, compress_level=9)
    print(f"wrote {len(list(out.glob('*.png')))} images to {out}")


if __name__ == "__main__":
    main()
