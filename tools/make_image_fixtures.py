#!/usr/bin/python3
"""Generates the image fixtures of tests/test_image.c, tests/test_preprocess.c
and tests/test_bad_images.sh into tests/data/images/.

Every picture is synthetic. Most come from proc_image(), an integer-only
formula that tests/test_preprocess.c re-implements, so large inputs need no
file: only torchvision's output for them is stored.

Expected preprocessing outputs are the uint8 PIL image after Resize +
CenterCrop (normalisation is affine, the test applies it), written as PNG.

Run: /usr/bin/python3 tools/make_image_fixtures.py [outdir]
"""
import io
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image, ImageOps
from torchvision import transforms

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "images")
M32 = 0xFFFFFFFF


def proc_image(w, h):
    """Gradients + a circle + a block + stripes + hash noise; uint8 HxWx3.
    Keep in sync with proc_image() in tests/test_preprocess.c."""
    x = np.arange(w, dtype=np.int64)[None, :, None]
    y = np.arange(h, dtype=np.int64)[:, None, None]
    c = np.arange(3, dtype=np.int64)[None, None, :]
    t = ((x * (c + 1) * 1024) // w + (y * (3 - c) * 512) // h) % 512
    v = np.where(t < 256, t, 511 - t)
    cx, cy, r = w // 3, h // 2, min(w, h) // 4
    inside = (x - cx) ** 2 + (y - cy) ** 2 < r * r
    v = np.where(inside, 255 - v, v)
    block = (x >= w // 2) & (x < w * 3 // 4) & (y >= h // 5) & (y < h * 2 // 5)
    v = np.where(block, np.where(c == 0, 240, 20), v)
    period = max(1, min(w, h) // 10)
    stripe = ((x + y) // period) % 5 == 0
    v = np.where(stripe, v // 2, v)
    hsh = (x * 374761393 + y * 668265263 + c * 2246822519) & M32
    hsh = ((hsh ^ (hsh >> 13)) * 1274126177) & M32
    hsh = hsh ^ (hsh >> 16)
    v = v + (hsh % 9) - 4
    return np.clip(v, 0, 255).astype(np.uint8)


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def png_bytes(img, **kw):
    b = io.BytesIO()
    img.save(b, "PNG", optimize=True, **kw)
    return b.getvalue()


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png16(arr):
    """A 16-bit PNG (gray HxW or RGB HxWx3 of uint16), which PIL cannot write for RGB."""
    h, w = arr.shape[:2]
    color = 0 if arr.ndim == 2 else 2
    rows = arr.astype(">u2").reshape(h, -1).view(np.uint8)
    raw = b"".join(b"\x00" + rows[i].tobytes() for i in range(h))
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b""))


def exif_app1(orientation, little):
    """An APP1 Exif segment whose IFD0 holds ImageWidth, Orientation and
    XResolution (so the parser has to step over entries and offsets).
    Returns (segment, offset of the orientation value inside the segment)."""
    e = "<" if little else ">"
    n = 3
    data_off = 8 + 2 + n * 12 + 4
    ifd = struct.pack(e + "H", n)
    ifd += struct.pack(e + "HHII", 0x0100, 4, 1, 640)
    orient_at = 8 + len(ifd) + 8
    ifd += struct.pack(e + "HHIHH", 0x0112, 3, 1, orientation, 0)
    ifd += struct.pack(e + "HHII", 0x011A, 5, 1, data_off)
    ifd += struct.pack(e + "I", 0)
    tiff = (b"II*\x00" if little else b"MM\x00*") + struct.pack(e + "I", 8) + ifd
    tiff += struct.pack(e + "II", 72, 1)
    body = b"Exif\x00\x00" + tiff
    seg = b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body
    return seg, 4 + 6 + orient_at


def jpeg_bytes(img, quality=92):
    b = io.BytesIO()
    img.save(b, "JPEG", quality=quality)
    return b.getvalue()


def with_exif(jpeg, orientation, little):
    seg, at = exif_app1(orientation, little)
    return jpeg[:2] + seg + jpeg[2:], 2 + at


def eval_crop(img, resize, crop):
    """torchvision's eval transform up to the crop, as uint8 RGB."""
    t = transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(crop)])
    return t(img.convert("RGB"))


def squash(img, size):
    return transforms.Resize((size, size))(img.convert("RGB"))


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    manifest = []  # test_image.c: file width height reference(.rgb or -)

    def lossless(name, data, ref):
        write(name, data)
        h, w = ref.shape[:2]
        write(name + ".rgb", np.ascontiguousarray(ref).tobytes())
        manifest.append(f"{name} {w} {h} {name}.rgb")

    # --- formats --------------------------------------------------------------
    # Reference "proc": the pixels are proc_image(w, h), which the test computes.
    grad = proc_image(300, 180)
    write("grad_300x180.png", png_bytes(Image.fromarray(grad)))
    manifest.append("grad_300x180.png 300 180 proc")

    tall = proc_image(181, 401)[:, :, 1]
    gray_img = Image.fromarray(tall, "L")
    write("gray_181x401.png", png_bytes(gray_img))
    manifest.append("gray_181x401.png 181 401 procg")  # proc_image's green channel

    small = proc_image(75, 50)
    alpha = (np.arange(75)[None, :] * 3 + np.arange(50)[:, None]).astype(np.uint8)
    rgba = Image.fromarray(np.dstack([small, alpha]), "RGBA")
    lossless("rgba_75x50.png", png_bytes(rgba), np.asarray(rgba.convert("RGB")))
    for fmt in ("bmp", "tga"):
        write(f"small_75x50.{fmt}", _save(Image.fromarray(small), fmt.upper()))
        manifest.append(f"small_75x50.{fmt} 75 50 proc")
    la = Image.fromarray(np.dstack([small[:, :, 0], alpha]), "LA")
    lossless("la_75x50.png", png_bytes(la), np.asarray(la.convert("RGB")))

    deep = (proc_image(64, 48).astype(np.uint16) * 257 + np.arange(64, dtype=np.uint16)[None, :, None])
    rgb16 = png16(deep)
    write("rgb16_64x48.png", rgb16)
    pil16 = np.asarray(Image.open(io.BytesIO(rgb16)).convert("RGB"))
    assert (pil16 == (deep >> 8)).all(), "PIL reduces 16-bit RGB by its high byte"
    write("rgb16_64x48.png.rgb", pil16.tobytes())
    manifest.append("rgb16_64x48.png 64 48 rgb16_64x48.png.rgb")
    # PIL clips 16-bit gray to 0..255 instead of scaling it; we take the high
    # byte like every other 16-bit input, so the reference is computed here.
    g16 = deep[:, :, 0]
    write("gray16_64x48.png", png16(g16))
    write("gray16_64x48.png.rgb", np.repeat((g16 >> 8)[:, :, None], 3, 2).astype(np.uint8).tobytes())
    manifest.append("gray16_64x48.png 64 48 gray16_64x48.png.rgb")

    f1 = Image.fromarray(proc_image(97, 61)).quantize(64, dither=Image.Dither.NONE)
    f2 = Image.fromarray(proc_image(97, 61)[::-1].copy()).quantize(64, dither=Image.Dither.NONE)
    b = io.BytesIO()
    f1.save(b, "GIF", save_all=True, append_images=[f2], duration=100, loop=0)
    gif = b.getvalue()
    write("anim_97x61.gif", gif)
    first = Image.open(io.BytesIO(gif))
    assert first.n_frames == 2
    write("anim_97x61.gif.rgb", np.asarray(first.convert("RGB")).tobytes())
    manifest.append("anim_97x61.gif 97 61 anim_97x61.gif.rgb")

    one = np.array([[[200, 30, 90]]], dtype=np.uint8)
    lossless("1x1.png", png_bytes(Image.fromarray(one)), one)

    photo = proc_image(480, 360)
    photo_jpg = jpeg_bytes(Image.fromarray(photo))
    write("photo_480x360.jpg", photo_jpg)
    manifest.append("photo_480x360.jpg 480 360 -")
    gray_jpg = jpeg_bytes(Image.fromarray(proc_image(90, 70)[:, :, 0], "L"))
    write("gray_90x70.jpg", gray_jpg)
    manifest.append("gray_90x70.jpg 90 70 -")

    # --- EXIF orientation ------------------------------------------------------
    side = proc_image(200, 120)
    exif6, _ = with_exif(jpeg_bytes(Image.fromarray(side)), 6, False)
    write("exif6_200x120.jpg", exif6)
    manifest.append("exif6_200x120.jpg 120 200 -")
    exif3, _ = with_exif(jpeg_bytes(Image.fromarray(proc_image(160, 100))), 3, True)
    write("exif3_160x100.jpg", exif3)
    manifest.append("exif3_160x100.jpg 160 100 -")

    # Quadrants: red, green / blue, white. The test patches the orientation
    # value at the given offset and checks the corners against PIL's transpose.
    quad = np.zeros((32, 48, 3), np.uint8)
    quad[:16, :24] = (255, 0, 0)
    quad[:16, 24:] = (0, 255, 0)
    quad[16:, :24] = (0, 0, 255)
    quad[16:, 24:] = (255, 255, 255)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]
    base = jpeg_bytes(Image.fromarray(quad), 95)
    lines = []
    for little, name in ((False, "orient_be.jpg"), (True, "orient_le.jpg")):
        data, at = with_exif(base, 1, little)
        write(name, data)
        lines.append(f"file {name} {at}")
    for o in range(1, 9):
        data, at = with_exif(base, o, False)
        im = ImageOps.exif_transpose(Image.open(io.BytesIO(data)).convert("RGB"))
        a = np.asarray(im).astype(int)
        w, h = im.size
        corners = [a[4, 4], a[4, w - 5], a[h - 5, 4], a[h - 5, w - 5]]
        idx = [int(np.argmin([np.abs(p - np.array(c)).sum() for c in colours])) for p in corners]
        lines.append(f"orientation {o} {w} {h} " + " ".join(map(str, idx)))
    write("orient_expect.txt", ("\n".join(lines) + "\n").encode())

    # --- bad files ---------------------------------------------------------------
    write("truncated.jpg", photo_jpg[: len(photo_jpg) // 2])
    write("zero.jpg", b"")
    write("text.jpg", b"This is a text file, not a JPEG.\n")
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    write("huge_header.png", b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b""))

    # --- torchvision outputs -------------------------------------------------------
    # test_preprocess.c: source policy resize crop expected [jpeg]
    #   source "proc WxH" is proc_image(W, H); "file NAME" is a fixture above.
    cases = []

    def expect(src, img, policy, resize, crop, jpeg=False):
        out = eval_crop(img, resize, crop) if policy == "crop" else squash(img, crop)
        assert out.size == (crop, crop)
        tag = src.replace(" ", "_").replace(".", "_")
        name = f"expect_{tag}_{policy}{resize}_{crop}.png"
        data = png_bytes(out)
        for f in os.listdir(OUT):  # the same picture from a file and from proc
            if f.startswith("expect_") and open(os.path.join(OUT, f), "rb").read() == data:
                name = f
        write(name, data)
        cases.append(f"{src} {policy} {resize} {crop} {name}" + (" jpeg" if jpeg else ""))

    def proc(w, h):
        return f"proc {w}x{h}", Image.fromarray(proc_image(w, h))

    expect(*proc(1200, 900), "crop", 256, 224)   # downscale 3.5x
    expect(*proc(300, 180), "crop", 256, 224)    # upscale
    expect(*proc(1200, 900), "crop", 64, 56)     # downscale 14x
    expect(*proc(181, 401), "crop", 64, 56)
    expect(*proc(57, 33), "crop", 64, 56)        # upscale
    expect(*proc(100, 102), "crop", 64, 56)      # crop offset 4.5 -> 4 (half to even)
    expect(*proc(102, 100), "crop", 64, 56)
    expect(*proc(100, 105), "crop", 64, 56)      # crop offset 5.5 -> 6
    expect(*proc(80, 60), "crop", 48, 56)        # crop larger than the image: zero padding
    expect(*proc(300, 180), "squash", 0, 56)
    expect(*proc(33, 57), "squash", 0, 56)       # squash upscale
    expect(*proc(1, 1), "crop", 256, 224)
    expect(*proc(2, 3), "squash", 0, 56)
    expect("file grad_300x180.png", Image.open(os.path.join(OUT, "grad_300x180.png")), "crop", 256, 224)
    expect("file gray_181x401.png", gray_img, "crop", 64, 56)
    expect("file photo_480x360.jpg", Image.open(io.BytesIO(photo_jpg)), "crop", 256, 224, True)
    expect("file exif6_200x120.jpg", ImageOps.exif_transpose(Image.open(io.BytesIO(exif6))),
           "crop", 64, 56, True)
    expect("file exif3_160x100.jpg", ImageOps.exif_transpose(Image.open(io.BytesIO(exif3))),
           "crop", 64, 56, True)
    write("preprocess.txt", ("\n".join(cases) + "\n").encode())
    write("manifest.txt", ("\n".join(manifest) + "\n").encode())

    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"{len(os.listdir(OUT))} files, {total} bytes in {OUT}")


def _save(img, fmt):
    b = io.BytesIO()
    img.save(b, fmt)
    return b.getvalue()


if __name__ == "__main__":
    main()
