"""Writes the demo images into demo/site from the fidelity set (images from the
scikit-image wheel). Run with the model pipeline's Python:
    models/pipeline/.venv/bin/python demo/make_site.py
"""

from pathlib import Path

from PIL import Image

here = Path(__file__).parent
fidelity = here.parent / "models" / "fidelity" / "images"
site = here / "site"

SOURCES = {
    "astronaut": "photo_astronaut.png",  # a photo: passes
    "cat": "photo_cat.png",  # a photo: passes
    "rocket": "photo_rocket.png",  # Drawing ~0.81: the demo policy pixelates it
    "street": "panorama_wide.png",  # Drawing ~0.97: the demo policy blocks it
    "logo": "flat_logo_alpha.png",  # flat graphic with alpha
}


def main():
    for name, source in SOURCES.items():
        image = Image.open(fidelity / source)
        rgb = image.convert("RGB")
        rgb.save(site / f"{name}.jpg", quality=88)
        image.save(site / f"{name}.png")
        image.save(site / f"{name}.webp", lossless=False, quality=85)
        image.convert("RGBA").save(site / f"{name}.gif")
    # The same JPEG bytes under a text/plain type (see demo/origin.py).
    (site / "street.jpg.as-text").write_bytes((site / "street.jpg").read_bytes())
    (site / "broken.jpg").write_bytes((site / "astronaut.jpg").read_bytes()[:5000])


if __name__ == "__main__":
    main()
