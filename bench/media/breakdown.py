#!/usr/bin/env python3
"""Where a media call setup spends its time, from one run's pcap (bench/media/run.py keeps them).

Usage: bench/media/breakdown.py RUN.pcap [...]

Per call, from the caller's INVITE to the INVITE leaving towards the callee, split at the ng
offer leaving sipmesh and rtpengine's reply: in->offer (sipmesh), offer->reply (rtpengine),
reply->out (sipmesh). Prints p50/p99/max of each segment and the slowest calls.
"""

import re
import struct
import sys
from pathlib import Path

NG_PORT = 22290
UAS_PORT_MIN = 19500


def packets(path: Path):
    data = path.read_bytes()
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    link_len = {1: 14, 113: 16, 276: 20}[struct.unpack(endian + "I", data[20:24])[0]]
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack(endian + "IIII", data[pos:pos + 16])
        ip = data[pos + 16 + link_len:pos + 16 + incl]
        pos += 16 + incl
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 0x0F) * 4
        sport, dport = struct.unpack(">HH", ip[ihl:ihl + 4])
        yield sec + frac / (1e9 if nano else 1e6), sport, dport, ip[ihl + 8:]


CALL_ID = re.compile(rb"\r\n(?:Call-ID|i)\s*:\s*([^\r\n]+)", re.I)


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def analyse(path: Path) -> None:
    ev: dict[bytes, dict[str, float]] = {}
    cookies: dict[bytes, bytes] = {}
    for ts, sport, dport, p in packets(path):
        if dport == NG_PORT:
            cookie, _, body = p.partition(b" ")
            m = re.search(rb"7:call-id(\d+):", body)
            if m and b"5:offer" in body:
                n = int(m.group(1))
                cid = body[m.end():m.end() + n]
                cookies[cookie] = cid
                ev.setdefault(cid, {}).setdefault("offer", ts)
            continue
        if sport == NG_PORT:
            cookie = p.partition(b" ")[0]
            cid = cookies.get(cookie)
            if cid is not None:
                ev.setdefault(cid, {}).setdefault("reply", ts)
            continue
        if not p.startswith(b"INVITE "):
            continue
        m = CALL_ID.search(p)
        if not m:
            continue
        cid = m.group(1).strip()
        key = "out" if dport >= UAS_PORT_MIN and dport < UAS_PORT_MIN + 100 else "in"
        ev.setdefault(cid, {}).setdefault(key, ts)
    segs = {"in->offer": [], "rtpengine": [], "reply->out": [], "total": []}
    rows = []
    for cid, e in ev.items():
        if len(e) != 4:
            continue
        a = (e["offer"] - e["in"]) * 1e3
        b = (e["reply"] - e["offer"]) * 1e3
        c = (e["out"] - e["reply"]) * 1e3
        segs["in->offer"].append(a)
        segs["rtpengine"].append(b)
        segs["reply->out"].append(c)
        segs["total"].append(a + b + c)
        rows.append((a + b + c, a, b, c, e["in"], cid))
    print(f"{path}: {len(rows)} calls")
    for k, xs in segs.items():
        print(f"  {k:11} p50={pct(xs, .5):6.3f} p99={pct(xs, .99):6.3f} max={max(xs):7.3f} ms"
              f"  >2ms={sum(x > 2 for x in xs)}")
    t0 = min(r[4] for r in rows)
    for tot, a, b, c, t, cid in sorted(rows, reverse=True)[:8]:
        print(f"  slow t={t - t0:7.3f}s total={tot:6.2f} in->offer={a:6.2f} rtpe={b:5.2f} "
              f"reply->out={c:6.2f}")


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        analyse(Path(arg))
