#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/README.md) into OUT/<target>/.

    python3 fuzz/make_seeds.py OUT

Standard library only (no numpy, no torch), deterministic, a few hundred kB
in all: seeds are generated at CI time into the build folder, not committed.
Small files of tests/data are copied in as well.
"""
import json
import os
import shutil
import struct
import sys
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")


def put(out, target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def copy_small(out, target, folder, names):
    for n in names:
        p = os.path.join(DATA, folder, n)
        if os.path.exists(p) and os.path.getsize(p) <= 16384:
            d = os.path.join(out, target)
            os.makedirs(d, exist_ok=True)
            shutil.copyfile(p, os.path.join(d, "data_" + n))


# ---- images -------------------------------------------------------------------

def pixel(x, y, c):
    return (x * 37 + y * 91 + c * 53) % 256


def png(w, h, color_type, bits=8, interlace=0, palette=None, trns=None, empty_idat=False):
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    bpp = max(1, channels * bits // 8)

    def row(y, xs):
        if bits == 16:
            return b"".join(struct.pack(">H", pixel(x, y, c) * 257) for x in xs for c in range(channels))
        if bits < 8:  # packed samples, one channel
            vals = [pixel(x, y, 0) % (1 << bits) for x in xs]
            out, acc, n = bytearray(), 0, 0
            for v in vals:
                acc = acc << bits | v
                n += bits
                if n == 8:
                    out.append(acc)
                    acc, n = 0, 0
            if n:
                out.append(acc << (8 - n))
            return bytes(out)
        return bytes(pixel(x, y, c) % (len(palette) // 3 if palette else 256)
                     for x in xs for c in range(channels))

    def filtered(rows):
        raw = bytearray()
        for i, r in enumerate(rows):
            ftype = i % 5  # every PNG filter type once in a while
            prev = rows[i - 1] if i else bytes(len(r))
            out = bytearray()
            for j, v in enumerate(r):
                a = r[j - bpp] if j >= bpp else 0
                b = prev[j]
                c = prev[j - bpp] if j >= bpp else 0
                if ftype == 0:
                    p = 0
                elif ftype == 1:
                    p = a
                elif ftype == 2:
                    p = b
                elif ftype == 3:
                    p = (a + b) // 2
                else:
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    p = a if pa <= pb and pa <= pc else b if pb <= pc else c
                out.append((v - p) % 256)
            raw += bytes([ftype]) + out
        return bytes(raw)

    if interlace:
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        raw = b""
        for x0, y0, dx, dy in passes:
            xs = list(range(x0, w, dx))
            ys = list(range(y0, h, dy))
            if xs and ys:
                raw += filtered([row(y, xs) for y in ys])
    else:
        raw = filtered([row(y, range(w)) for y in range(h)])

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    s = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bits, color_type, 0, 0, interlace))
    if palette:
        s += chunk(b"PLTE", bytes(palette))
    if trns:
        s += chunk(b"tRNS", trns)
    if empty_idat:  # legal; stb_image 2.27 computed NULL + 0 on it (image.c drops it)
        s += chunk(b"IDAT", b"")
    return s + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def bmp(w, h, bits):
    palette = b""
    if bits == 8:
        palette = b"".join(bytes([i, 255 - i, (i * 7) % 256, 0]) for i in range(256))
    stride = (w * bits // 8 + 3) & ~3
    rows = b""
    for y in range(h):
        if bits == 8:
            r = bytes(pixel(x, y, 0) for x in range(w))
        else:
            r = b"".join(bytes(pixel(x, y, c) for c in range(bits // 8)) for x in range(w))
        rows += r + bytes(stride - len(r))
    off = 14 + 40 + len(palette)
    head = b"BM" + struct.pack("<IHHI", off + len(rows), 0, 0, off)
    info = struct.pack("<IiiHHIIiiII", 40, w, -h if bits == 32 else h, 1, bits, 0, len(rows), 2835, 2835,
                       256 if bits == 8 else 0, 0)
    return head + info + palette + rows


def tga(w, h, rle):
    head = struct.pack("<BBBHHBHHHHBB", 0, 0, 10 if rle else 2, 0, 0, 0, 0, 0, w, h, 24, 0x20)
    body = b""
    for y in range(h):
        px = [bytes(pixel(x, y, c) for c in range(3)) for x in range(w)]
        if rle:  # one run packet and raw packets alternately
            x = 0
            while x < w:
                n = min(4, w - x)
                if x % 8 == 0:
                    body += bytes([0x80 | (n - 1)]) + px[x]
                else:
                    body += bytes([n - 1]) + b"".join(px[x:x + n])
                x += n
        else:
            body += b"".join(px)
    return head + body


def gif(w, h):
    """A 4-colour GIF, LZW-coded without ever growing the code size (clear often)."""
    palette = bytes([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    clear, end, bits = 4, 5, 3
    codes = []
    pixels = [pixel(x, y, 0) % 4 for y in range(h) for x in range(w)]
    for i, p in enumerate(pixels):
        if i % 2 == 0:
            codes.append(clear)
        codes.append(p)
    codes += [clear, end]
    acc = n = 0
    data = bytearray()
    for c in codes:
        acc |= c << n
        n += bits
        while n >= 8:
            data.append(acc & 255)
            acc >>= 8
            n -= 8
    if n:
        data.append(acc)
    blocks = b"".join(bytes([len(data[i:i + 255])]) + bytes(data[i:i + 255]) for i in range(0, len(data), 255))
    return (b"GIF89a" + struct.pack("<HHBBB", w, h, 0xF1, 0, 0) + palette +
            b"\x2c" + struct.pack("<HHHHB", 0, 0, w, h, 0) + bytes([2]) + blocks + b"\x00\x3b")


def image_seeds(out):
    t = "fuzz_image"
    put(out, t, "rgb_7x5.png", png(7, 5, 2))
    put(out, t, "empty_idat_3x2.png", png(3, 2, 2, empty_idat=True))
    put(out, t, "gray_9x4.png", png(9, 4, 0))
    put(out, t, "gray2_11x3.png", png(11, 3, 0, bits=2))
    put(out, t, "rgba_6x6.png", png(6, 6, 6))
    put(out, t, "ga_5x3.png", png(5, 3, 4))
    put(out, t, "rgb16_4x4.png", png(4, 4, 2, bits=16))
    put(out, t, "interlaced_10x9.png", png(10, 9, 2, interlace=1))
    put(out, t, "palette_8x3.png", png(8, 3, 3, palette=[i * 40 % 256 for i in range(12)], trns=b"\x00\x80"))
    put(out, t, "rgb24_5x3.bmp", bmp(5, 3, 24))
    put(out, t, "pal8_6x2.bmp", bmp(6, 2, 8))
    put(out, t, "rgb32_3x3_topdown.bmp", bmp(3, 3, 32))
    put(out, t, "raw_5x4.tga", tga(5, 4, 0))
    put(out, t, "rle_9x2.tga", tga(9, 2, 1))
    put(out, t, "4col_6x4.gif", gif(6, 4))
    copy_small(out, t, "images", ["1x1.png", "huge_header.png", "orient_be.jpg", "orient_le.jpg",
                                  "gray_90x70.jpg", "la_75x50.png", "anim_97x61.gif", "gray16_64x48.png",
                                  "exif3_160x100.jpg", "exif6_200x120.jpg"])


# ---- CSV --------------------------------------------------------------------------

CSVS = {
    "plain.csv": b"filename,artist,title\na.jpg,Monet,Water lilies\nb.jpg,Manet,\n",
    "quoted.csv": b'filename,artist\n"x, y.jpg","Doe, ""J"""\n"multi\nline.jpg",A\n',
    "crlf_bom.csv": b"\xef\xbb\xbfFileName , ARTIST\r\nsub/../c.png,Kahlo\r\n\r\n./d.png,Kahlo\r",
    "cr_only.csv": b"new_filename,artist,style,genre,date\r1.jpg,A,s,g,1900\r2.jpg,B,,,\r",
    "utf8.csv": "filename,artist\nn\u00e9.jpg,D\u00fcrer\n\u6f22.jpg,\u00c9\n".encode() + b"bad\xff.jpg,X\n",
    "issues.csv": b'filename,artist\n,empty\nonly_one\n"unterminated,A\nq"uote,B\n"a"x,C\na.jpg,A\na.jpg,A\n',
    "nul.csv": b"filename,artist\nx\x00y,A\nz,B\n",
    "pairs.csv": b"index,image1,image2\n0,a.jpg,b.jpg\n1,\"c,d.jpg\",e.jpg\n2,,f.jpg\n",
    "pairs_extra.csv": b"x,image2,index,image1\r\n1,b,0,a\r\n",
    "abs_paths.csv": b"filename,artist\n/abs/./p/../q.jpg,A\n../../../up.jpg,B\n//double//slash.jpg,C\n",
}


def csv_seeds(out):
    for t in ("fuzz_csv", "fuzz_collection"):
        for name, data in CSVS.items():
            put(out, t, name, data)
        copy_small(out, t, "csv", ["all_data_info.csv", "bad_header.csv", "bom_crlf.csv", "issues.csv",
                                   "no_artist.csv", "no_filename.csv", "pairs.csv", "pairs_bad.csv",
                                   "pairs_no_image2.csv", "train_info.csv"])


# ---- models (safetensors) -------------------------------------------------------------

def f16(v):
    return struct.pack("<e", v)


def bf16(v):
    return struct.pack("<f", v)[2:]


def safetensors(tensors, meta, dtype="F32", pad=True):
    """tensors: [(name, shape, values)]; values are Python floats."""
    header, data = {"__metadata__": meta}, b""
    pack = {"F32": lambda v: struct.pack("<f", v), "F16": f16, "BF16": bf16}[dtype]
    for name, shape, vals in tensors:
        b = b"".join(pack(v) for v in vals)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(b)]}
        data += b
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def values(n, seed):
    x, out = seed * 2654435761 % 2**32 or 1, []
    for _ in range(n):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        out.append(((x >> 8) / (1 << 24) - 0.5) * 0.5)
    return out


def conv_bn(tensors, name, bn, cout, cin, k, folded):
    seed = len(tensors) + 1
    tensors.append((name + ".weight", [cout, cin, k, k], values(cout * cin * k * k, seed)))
    if folded:
        tensors.append((name + ".bias", [cout], values(cout, seed + 1)))
        return
    tensors.append((bn + ".weight", [cout], [1.0 + v for v in values(cout, seed + 2)]))
    tensors.append((bn + ".bias", [cout], values(cout, seed + 3)))
    tensors.append((bn + ".running_mean", [cout], values(cout, seed + 4)))
    tensors.append((bn + ".running_var", [cout], [1.0 + abs(v) for v in values(cout, seed + 5)]))


def resnet(arch, stages, widths, folded=False, fc=0):
    """A torchvision-named ResNet with the given stage widths (BasicBlock or Bottleneck)."""
    blocks = {"resnet18": [2, 2, 2, 2], "resnet50": [3, 4, 6, 3]}[arch]
    bottleneck = arch == "resnet50"
    t = []
    stem = widths[0]
    conv_bn(t, "conv1", "bn1", stem, 3, 7, folded)
    cin = stem
    for s in range(stages):
        width = widths[s]
        cout = width * 4 if bottleneck else width
        for i in range(blocks[s]):
            p = "layer%d.%d" % (s + 1, i)
            stride = 2 if s > 0 and i == 0 else 1
            if bottleneck:
                conv_bn(t, p + ".conv1", p + ".bn1", width, cin, 1, folded)
                conv_bn(t, p + ".conv2", p + ".bn2", width, width, 3, folded)
                conv_bn(t, p + ".conv3", p + ".bn3", cout, width, 1, folded)
            else:
                conv_bn(t, p + ".conv1", p + ".bn1", width, cin, 3, folded)
                conv_bn(t, p + ".conv2", p + ".bn2", width, width, 3, folded)
            if stride != 1 or cin != cout:
                conv_bn(t, p + ".downsample.0", p + ".downsample.1", cout, cin, 1, folded)
            cin = cout
    if fc:
        t.append(("fc.weight", [fc, cin], values(fc * cin, 99)))
        t.append(("fc.bias", [fc], values(fc, 98)))
    return t, cin


def model_meta(arch, stages, dim, pooling="avg", classes=None, extra=None):
    m = {"format": "siamidx", "format_version": "1", "arch": arch, "stages": str(stages),
         "input_size": "32", "resize": "32", "resize_policy": "shorter_center_crop",
         "mean": "0.485,0.456,0.406", "std": "0.229,0.224,0.225", "pooling": pooling,
         "embedding_dim": str(dim)}
    if classes is not None:
        m["num_classes"] = str(classes)
    m.update(extra or {})
    return m


def model_seeds(out):
    t = "fuzz_model"
    tensors, dim = resnet("resnet18", 1, [2])
    put(out, t, "r18_1stage_f32.safetensors", safetensors(tensors, model_meta("resnet18", 1, dim)))
    put(out, t, "r18_1stage_f16.safetensors", safetensors(tensors, model_meta("resnet18", 1, dim), "F16"))
    put(out, t, "r18_1stage_bf16_nopad.safetensors",
        safetensors(tensors, model_meta("resnet18", 1, dim, "gem", extra={"gem_p": "2.5"}), "BF16", pad=False))
    tensors, dim = resnet("resnet18", 2, [1, 2], folded=True)
    put(out, t, "r18_2stage_folded.safetensors",
        safetensors(tensors, model_meta("resnet18", 2, dim, "max", extra={"resize_policy": "squash"})))
    tensors, dim = resnet("resnet18", 4, [1, 1, 1, 2], fc=3)
    put(out, t, "r18_4stage_fc.safetensors", safetensors(tensors, model_meta("resnet18", 4, dim, classes=3), "F16"))
    tensors, dim = resnet("resnet50", 1, [1])
    style = 2 * dim
    put(out, t, "r50_1stage_style.safetensors",
        safetensors(tensors, model_meta("resnet50", 1, style, "style", extra={"style_stages": "1"}), "F16"))
    # A default head: head.mean/std [dim], head.w [n_feat], head.params [6].
    tensors, dim = resnet("resnet18", 1, [2])
    head = [("head.mean", [dim], values(dim, 7)), ("head.std", [dim], [1.0] * dim),
            ("head.w", [dim + 1], values(dim + 1, 8)), ("head.params", [6], [0.1, 1.0, 0.0, 0.5, 1.0, 0.0])]
    put(out, t, "r18_1stage_head.safetensors",
        safetensors(tensors + head, model_meta("resnet18", 1, dim, extra={"head.features": "abs,cos"})))
    put(out, t, "empty_header.safetensors", struct.pack("<Q", 2) + b"{}")
    put(out, t, "meta_only.safetensors", safetensors([], {"a": "\\u00e9\\ud83d\\ude00 \"q\""}))


# ---- head blobs (head.c: sx_head_to_blob) ----------------------------------------

def head_blob(dim, features, n_feat, extra=b""):
    text = ("SIAMIDX-HEAD 1\ndim=%d\nfeatures=%s\nbias=0.25\nplatt_a=1.5\nplatt_b=-0.5\nthreshold=0.5\n"
            "attr_scale=2\nattr_unknown=1\nval_auc=0.9\nval_acc=0.8\nval_ece=0.05\nepochs_run=3\n"
            "best_epoch=2\nn_train=10\nn_val=2\nn_test=2\nn_unseen=0\n" % (dim, features)).encode()
    floats = values(dim, 1) + [1.0 + abs(v) for v in values(dim, 2)] + values(n_feat, 3)
    return text + extra + b"data\n" + b"".join(struct.pack("<f", v) for v in floats)


def head_seeds(out):
    t = "fuzz_head"
    put(out, t, "abs_cos_8.blob", head_blob(8, "abs,cos", 9, b"seed=1\nsplit=image\n"))
    put(out, t, "sq_cos_4.blob", head_blob(4, "sq,cos", 5))
    put(out, t, "all_3.blob", head_blob(3, "abs,sq,prod,cos", 10, b"held_out=A\tB\n"))
    put(out, t, "prod_1.blob", head_blob(1, "prod", 1))


# ---- store records (store.c: encode_record) ----------------------------------------

def record(dim, strings, artist=7):
    strings = [s.encode() for s in strings]
    head = struct.pack("<IIQq", 0x31525853, artist, 12345, 1700000000123456789) + bytes(range(32))
    head += struct.pack("<I", dim) + b"".join(struct.pack("<H", len(s)) for s in strings)
    emb = b"".join(struct.pack("<f", v) for v in values(dim, dim))
    return head + emb + b"".join(s + b"\0" for s in strings)


def record_seeds(out):
    t = "fuzz_record"
    put(out, t, "dim4.rec", record(4, ["a.jpg", "/x/a.jpg", "Title", "", "genre", "1900"]))
    put(out, t, "dim0.rec", record(0, ["", "", "", "", "", ""]))
    put(out, t, "dim32.rec", record(32, ["p\u00e9.png", "/r/p\u00e9.png", "", "s", "", ""]))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    image_seeds(out)
    csv_seeds(out)
    model_seeds(out)
    head_seeds(out)
    record_seeds(out)


if __name__ == "__main__":
    main()
