#!/usr/bin/env python3
"""html_check.py - checks of the --html reports for tests/test_html_report.sh (stdlib only).

  png SHOT.png                 the screenshot is not blank: many colours, enough non-white
  netlog NET.json              no request started by the page (Chromium's --log-net-log)
  static PAGE.html             every src/href/url() is a data: URI or a #fragment
  thumbs PAGE.html DIR         the inlined JPEGs, written to DIR (0.jpg ...): prints how many
  query DOM.html QUERY.json    the page names --json's top artist and its probability
  pair DOM.html PAIR.json      the page shows --json's probability and verdict
  eval DOM.html EVAL.json      the page's figures are --json's; recall sorted worst first
Each prints what it found and exits 1 on a failed check.
"""
import base64
import html.parser
import json
import os
import re
import struct
import sys
import zlib


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


# ---- PNG, decoded by hand (no PIL in Debian's python3 by default) ----

def png_pixels(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        fail(f"{path}: not a PNG")
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            if depth != 8 or ctype not in (2, 6):
                fail(f"{path}: PNG colour type {ctype} depth {depth} not handled")
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * bpp
    prev = bytearray(stride)
    rows = []
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif f == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif f == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif f == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, bpp, rows


def check_png(path):
    w, h, bpp, rows = png_pixels(path)
    colours, nonwhite, total = set(), 0, 0
    for row in rows[::4]:
        for x in range(0, w * bpp, 4 * bpp):
            px = row[x:x + 3]
            colours.add(px)
            total += 1
            nonwhite += sum(px) < 3 * 235
    share = nonwhite / max(total, 1)
    print(f"{path}: {w}x{h}, {len(colours)} colours sampled, {share:.1%} not white")
    if len(colours) < 50 or share < 0.02:
        fail(f"{path} looks blank")


# ---- Chromium's net log ----

def netlog_events(path):
    raw = open(path).read()
    i = raw.index('"events"')
    j = raw.index("[", i) + 1
    dec = json.JSONDecoder()
    events = []
    while True:  # Chromium may leave the array unterminated when it exits
        while j < len(raw) and raw[j] in " \r\n\t,":
            j += 1
        if j >= len(raw) or raw[j] == "]":
            break
        try:
            ev, j = dec.raw_decode(raw, j)
        except ValueError:
            break
        events.append(ev)
    return events


def check_netlog(path):
    """Requests a document started carry its origin as initiator ('null' for file://);
    the browser's own (updates, accounts) say 'not an origin' and are not the page's."""
    page = set()
    for ev in netlog_events(path):
        p = ev.get("params", {})
        url, init = p.get("url"), p.get("initiator")
        if url and init is not None and init != "not an origin" and not url.startswith("data:"):
            page.add(url)
    for u in sorted(page):
        print("page requested:", u)
    if page:
        fail(f"{path}: the page requested {len(page)} resource(s)")
    print(f"{path}: no request from the page")


# ---- the HTML ----

class Refs(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs = []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("src", "href", "srcset", "action", "poster", "data") and v is not None:
                self.refs.append((tag, k, v))


def check_static(path):
    text = open(path, encoding="utf-8").read()
    r = Refs()
    r.feed(text)
    bad = [x for x in r.refs if not (x[2].startswith("data:") or x[2].startswith("#"))]
    bad += [("css", "url", u) for u in re.findall(r"url\(\s*['\"]?([^'\")]*)", text)
            if not u.startswith("data:") and not u.startswith("#")]
    bad += [("css", "@import", m) for m in re.findall(r"@import[^;]*", text)]
    bad += [("script", "", "") for _ in re.findall(r"<script", text, re.I)]
    for b in bad:
        print("external:", b)
    if bad:
        fail(f"{path}: {len(bad)} reference(s) that are not data: or #")
    print(f"{path}: {len(r.refs)} references, all data: or #")


def check_thumbs(path, outdir):
    text = open(path, encoding="utf-8").read()
    uris = re.findall(r'src="data:image/jpeg;base64,([A-Za-z0-9+/=]*)"', text)
    os.makedirs(outdir, exist_ok=True)
    for i, b in enumerate(uris):
        jpeg = base64.b64decode(b, validate=True)
        if jpeg[:3] != b"\xff\xd8\xff" or jpeg[-2:] != b"\xff\xd9":
            fail(f"{path}: picture {i} is not a complete JPEG")
        open(os.path.join(outdir, f"{i}.jpg"), "wb").write(jpeg)
    print(len(uris))


class Attrs(html.parser.HTMLParser):
    """Every element's attributes, and the text of elements with an id."""

    def __init__(self):
        super().__init__()
        self.elems, self.text, self.stack = [], {}, []

    def handle_starttag(self, tag, attrs):
        d = dict(attrs)
        self.elems.append((tag, d))
        if tag not in ("img", "br", "meta", "line", "rect", "circle", "polyline", "i"):
            self.stack.append(d.get("id"))

    def handle_endtag(self, tag):
        if self.stack and tag not in ("img", "br", "meta"):
            self.stack.pop()

    def handle_data(self, data):
        for i in self.stack:
            if i:
                self.text[i] = self.text.get(i, "") + data


def parse(path):
    a = Attrs()
    a.feed(open(path, encoding="utf-8").read())
    return a


def check_query(dom, js):
    q, page = json.load(open(js, encoding="utf-8")), parse(dom)
    bars = [d for t, d in page.elems if "data-artist" in d]
    top = q["artists"][0]
    if not bars:
        fail("no artist on the page")
    if bars[0]["data-artist"] != top["artist"] or bars[0]["data-probability"] != "%.6f" % top["probability"]:
        fail(f"page's first artist {bars[0]} is not --json's {top}")
    shown = page.text.get("top", "")
    if top["artist"] not in shown or "%.1f%%" % (100 * top["probability"]) not in shown:
        fail(f"the headline '{shown}' does not name {top}")
    if [b["data-artist"] for b in bars] != [a["artist"] for a in q["artists"]]:
        fail("the page's artists are not --json's, in its order")
    unk = [d for t, d in page.elems if "data-unknown" in d]
    if not unk or abs(float(unk[0]["data-unknown"]) - q["unknown"]) > 1e-6:
        fail("no 'unknown' bar with --json's share")
    print(f"query: top {top['artist']!r} {shown.strip()!r}, {len(bars)} artists + unknown, as --json")


def check_pair(dom, js):
    p, page = json.load(open(js, encoding="utf-8")), parse(dom)
    v = [d for t, d in page.elems if d.get("id") == "verdict"]
    if not v or v[0]["data-probability"] != "%.6f" % p["probability"]:
        fail(f"verdict {v} is not --json's probability {p['probability']}")
    if v[0]["data-same-artist"] != ("true" if p["same_artist"] else "false"):
        fail("verdict differs from --json")
    cal = page.text.get("calibration", "")
    if "were by the same artist" not in cal:
        fail(f"no calibration context: {cal!r}")
    print(f"pair: {page.text.get('verdict', '').strip()} ({p['probability']}), {cal.strip()!r}")


def check_eval(dom, js):
    e, page = json.load(open(js, encoding="utf-8")), parse(dom)
    shown = {d["data-metric"]: d["data-value"] for t, d in page.elems if "data-metric" in d}
    o = e["overall"]
    want = {"seen.same_source.auc": o["seen"]["pairs"]["same_source"]["auc"],
            "unseen.same_style.auc": o["unseen"]["pairs"]["same_style"]["auc"],
            "top1": o["seen"]["attribution"]["top1"],
            "open_set_auroc": o["open_set"]["auroc"]}
    for k, v in want.items():
        if k not in shown or (v is not None and abs(float(shown[k]) - v) > 1e-5):
            fail(f"{k}: page {shown.get(k)} vs --json {v}")
    text = open(dom, encoding="utf-8").read()
    if text.count("<polyline") < 5:  # 4 ROC curves and at least one calibration line
        fail("charts missing")
    rows = re.findall(r'<tr><td>[^<]*</td><td class="n">(\d+)</td><td class="n">([0-9.]+)%', text)
    rec = [float(r[1]) for r in rows]
    if not rec or rec != sorted(rec):
        fail(f"recall table not worst first: {rec}")
    print(f"eval: {len(want)} figures as --json, {len(rec)} artists worst first")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"png": check_png, "netlog": check_netlog, "static": check_static, "thumbs": check_thumbs,
     "query": check_query, "pair": check_pair, "eval": check_eval}[cmd](*args)
