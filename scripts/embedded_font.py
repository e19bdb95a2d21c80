#!/usr/bin/env python3
"""Writes assets/fonts/DejaVuSans.ttf, the one typeface SVG text is drawn in
(src/media/svg/draw.rs), from Debian's fonts-dejavu-core 2.37.

The shaping and layout tables (GSUB, GPOS, GDEF, kern) and two tables nothing here reads
(MATH, FFTM) are dropped: harfrust builds its lookup accelerators from GSUB and GPOS
for every chunk of text it shapes, which made a glyph placed on its own cost ~50 us
natively instead of ~10. Without them text is laid out by the plain advances (no
kerning, no ligatures, no Arabic joining), which moves glyphs by a fraction of their
width. Every other table is copied byte for byte (checksums unchanged).

usage: python3 scripts/embedded_font.py [SOURCE.ttf]
"""
import math
import struct
import sys
from pathlib import Path

SOURCE = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
DROPPED = {b"GSUB", b"GPOS", b"GDEF", b"kern", b"MATH", b"FFTM"}


def without_tables(font: bytes, dropped: set) -> bytes:
    version, count = struct.unpack(">IH", font[:6])
    records = [struct.unpack(">4sIII", font[12 + 16 * i : 28 + 16 * i]) for i in range(count)]
    kept = [r for r in records if r[0] not in dropped]
    n = len(kept)
    power = 1 << int(math.log2(n))
    header = struct.pack(">IHHHH", version, n, power * 16, int(math.log2(power)), n * 16 - power * 16)
    start = 12 + 16 * n
    directory, body = bytearray(), bytearray()
    for tag, checksum, offset, length in kept:
        while (start + len(body)) % 4:
            body.append(0)
        directory += struct.pack(">4sIII", tag, checksum, start + len(body), length)
        body += font[offset : offset + length]
    return bytes(header + directory + body)


def main() -> None:
    source = sys.argv[1] if len(sys.argv) > 1 else SOURCE
    out = Path(__file__).resolve().parent.parent / "assets/fonts/DejaVuSans.ttf"
    written = without_tables(Path(source).read_bytes(), DROPPED)
    out.write_bytes(written)
    print(f"{out}: {len(written)} bytes")


if __name__ == "__main__":
    main()
