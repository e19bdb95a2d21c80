#!/usr/bin/env python3
"""Meta's reference PDQ for tests/pdq_reference.rs: hashes raw RGB8 images with the PyPI
package pdqhash (which wraps facebook/ThreatExchange's pdq C++).

Usage: pdq_reference.py DIR
DIR holds NAME_WxH.rgb files (interleaved RGB8, row-major). Prints one line per file:
NAME <tab> hash hex <tab> quality <tab> 8 dihedral hashes, tab-separated <tab> quality
The hex is ThreatExchange's form (Hash256::format(): pdqhash's bit vector packed most
significant bit first).
"""
import sys
from pathlib import Path

import numpy as np
import pdqhash


def hex_of(bits):
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex()


def main():
    for path in sorted(Path(sys.argv[1]).glob("*.rgb")):
        name, size = path.stem.rsplit("_", 1)
        width, height = (int(v) for v in size.split("x"))
        pixels = np.frombuffer(path.read_bytes(), dtype=np.uint8).reshape(height, width, 3)
        bits, quality = pdqhash.compute(pixels)
        variants, dihedral_quality = pdqhash.compute_dihedral(pixels)
        fields = [name, hex_of(bits), str(quality)]
        fields += [hex_of(v) for v in variants] + [str(dihedral_quality)]
        print("\t".join(fields))


if __name__ == "__main__":
    main()
