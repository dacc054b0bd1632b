#!/usr/bin/env python3
"""make_test_bmps.py OUT N_ARTISTS PER_ARTIST - a synthetic collection for the
index tests: OUT/artist_A/img_I.bmp, small 24-bit BMPs (stdlib only, no PIL),
each different, deterministic in (A, I)."""
import struct, sys, random, os
def bmp(path, w, h, seed):
    r = random.Random(seed)
    base = [r.randrange(256) for _ in range(3)]
    rows = []
    pad = (4 - (w * 3) % 4) % 4
    for y in range(h):
        row = bytearray()
        for x in range(w):
            v = ((x // 8 + y // 8 + seed) % 3)
            row += bytes(((base[0] + v * 60 + x) % 256, (base[1] + y * 2) % 256, (base[2] + v * 90) % 256))
        rows.append(bytes(row) + b"\0" * pad)
    data = b"".join(rows)
    hdr = struct.pack("<2sIHHI", b"BM", 54 + len(data), 0, 0, 54)
    dib = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(data), 2835, 2835, 0, 0)
    with open(path, "wb") as f:
        f.write(hdr + dib + data)
out, n_art, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for a in range(n_art):
    d = os.path.join(out, "artist_%d" % a)
    os.makedirs(d, exist_ok=True)
    for i in range(per):
        bmp(os.path.join(d, "img_%d.bmp" % i), 40 + (i % 5) * 3, 36 + (a % 4) * 5, a * 1000 + i)
