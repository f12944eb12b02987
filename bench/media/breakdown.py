#!/usr/bin/env python3
"""Where a media call setup spends its time, from one run's pcap (bench/media/run.py keeps them).

Usage: bench/media/breakdown.py [--slow N] [--sched RUN.sched.txt] RUN.pcap [...]

Works for any proxy between the SIPp UAC (127.0.0.2) and UAS (127.0.0.3) that drives rtpengine
(ng on port 22290): sipmesh or Kamailio. Per call, both hops the setup time crosses are split at
the ng exchange:

* offer hop:  INVITE in -> ng offer out (proxy), offer -> reply (rtpengine),
              reply -> INVITE out (proxy);
* answer hop: 200 in -> ng answer out (proxy), answer -> reply (rtpengine),
              reply -> 200 out (proxy).

The four proxy segments plus the two rtpengine segments add up to the setup time the bench
reports (minus nothing: the callee's own time is outside both hops). Prints p50/p99/max of every
segment, which segment carries the slowest 1 % / 2 % of calls, and the slowest calls.

With ``--sched`` (the ``perf sched timehist`` text run.py writes with ``--perf-sched``), every
slow proxy segment is split by what the proxy's thread did meanwhile: running, runnable but
waiting for a CPU (run-queue delay), or sleeping; and which tasks held the CPUs instead.
"""

from __future__ import annotations

import argparse
import re
import struct
import sys
from collections import defaultdict
from pathlib import Path

NG_PORT = 22290
UAC_IP = bytes([127, 0, 0, 2])
UAS_IP = bytes([127, 0, 0, 3])

SEGMENTS = ("inv->offer", "offer rtpe", "offer->inv", "ok->answer", "answer rtpe", "answer->ok")
PROXY_SEGMENTS = ("inv->offer", "offer->inv", "ok->answer", "answer->ok")
# (segment, event it starts at, event it ends at)
BOUNDS = (
    ("inv->offer", "inv_in", "offer"),
    ("offer rtpe", "offer", "offer_reply"),
    ("offer->inv", "offer_reply", "inv_out"),
    ("ok->answer", "ok_in", "answer"),
    ("answer rtpe", "answer", "answer_reply"),
    ("answer->ok", "answer_reply", "ok_out"),
)


def packets(path: Path):
    """(timestamp s, src ip, dst ip, src port, dst port, payload) of every UDP packet."""
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
        yield (sec + frac / (1e9 if nano else 1e6), ip[12:16], ip[16:20], sport, dport,
               ip[ihl + 8:])


CALL_ID = re.compile(rb"\r\n(?:Call-ID|i)\s*:\s*([^\r\n]+)", re.I)
CSEQ = re.compile(rb"\r\nCSeq\s*:\s*\d+\s+(\w+)", re.I)
NG_CALL_ID = re.compile(rb"7:call-id(\d+):")
NG_COMMAND = re.compile(rb"7:command(\d+):")


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def events(path: Path) -> dict[bytes, dict[str, float]]:
    """Per Call-ID, the first time of each event (see BOUNDS)."""
    ev: dict[bytes, dict[str, float]] = defaultdict(dict)
    cookies: dict[bytes, tuple[bytes, str]] = {}
    for ts, src, dst, sport, dport, p in packets(path):
        if dport == NG_PORT:
            cookie, _, body = p.partition(b" ")
            m, c = NG_CALL_ID.search(body), NG_COMMAND.search(body)
            if m and c:
                cid = body[m.end():m.end() + int(m.group(1))]
                command = body[c.end():c.end() + int(c.group(1))].decode(errors="replace")
                if command in ("offer", "answer"):
                    cookies[cookie] = (cid, command)
                    ev[cid].setdefault(command, ts)
            continue
        if sport == NG_PORT:
            hit = cookies.get(p.partition(b" ")[0])
            if hit is not None:
                ev[hit[0]].setdefault(hit[1] + "_reply", ts)
            continue
        m, cseq = CALL_ID.search(p), CSEQ.search(p)
        if not m or not cseq or cseq.group(1) != b"INVITE":
            continue
        cid = m.group(1).strip()
        if p.startswith(b"INVITE "):
            key = "inv_in" if src == UAC_IP else "inv_out" if dst == UAS_IP else None
        elif p.startswith(b"SIP/2.0 200"):
            key = "ok_in" if src == UAS_IP else "ok_out" if dst == UAC_IP else None
        else:
            key = None
        if key is not None:
            ev[cid].setdefault(key, ts)
    return ev


# ------------------------------------------------------------------------- perf sched


TIMEHIST = re.compile(
    r"^\s*(\d+\.\d+)\s+\[(\d+)\]\s+(.+?)\[(\d+)(?:/(\d+))?\]\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)"
    r"(?:\s+(\S)\s+(.*))?")


class Sched:
    """Thread timelines from `perf sched timehist` text (times shifted to the pcap's clock)."""

    def __init__(self, path: Path) -> None:
        lines = path.read_text().splitlines()
        # First line written by run.py: "offset <realtime - monotonic seconds>".
        self.offset = float(lines[0].split()[1])
        # Per tid: list of (start, end, state) with state in run / queue / sleep.
        self.states: dict[int, list[tuple[float, float, str]]] = defaultdict(list)
        self.comm: dict[int, str] = {}
        # Every running interval on any CPU: (start, end, comm).
        self.running: list[tuple[float, float, str]] = []
        # Per tid: (switch-out time, state, kernel stack) when recorded with -g --state.
        self.switches: dict[int, list[tuple[float, str, str]]] = defaultdict(list)
        for line in lines[1:]:
            m = TIMEHIST.match(line)
            if not m:
                continue
            end = float(m.group(1)) + self.offset
            name, tid = m.group(3).strip(), int(m.group(4))
            wait, delay, run = (float(m.group(i)) / 1e3 for i in (6, 7, 8))
            self.comm[tid] = name
            start_run = end - run
            start_queue = start_run - delay
            tl = self.states[tid]
            if wait > 0:
                tl.append((start_queue - wait, start_queue, "sleep"))
            if delay > 0:
                tl.append((start_queue, start_run, "queue"))
            tl.append((start_run, end, "run"))
            if not name.startswith("<idle>") and run > 0:
                self.running.append((start_run, end, name))
            if m.group(10):
                self.switches[tid].append((end, m.group(9), m.group(10)))
        self.running.sort()

    def tids(self, prefix: str) -> list[int]:
        return [t for t, c in self.comm.items() if c.startswith(prefix)]

    def split(self, tids: list[int], t0: float, t1: float) -> dict[str, float]:
        """ms spent running / queued / sleeping by the threads within [t0, t1] (summed)."""
        out = {"run": 0.0, "queue": 0.0, "sleep": 0.0}
        for tid in tids:
            for a, b, state in self.states.get(tid, ()):
                lo, hi = max(a, t0), min(b, t1)
                if hi > lo:
                    out[state] += (hi - lo) * 1e3
        return out

    def stacks(self, tids: list[int], t0: float, t1: float) -> str:
        """Where the threads left the CPU within [t0, t1], other than idle in epoll_wait: the
        first kernel frames of each switch (a fault, a lock, a preemption)."""
        seen: dict[str, int] = defaultdict(int)
        for tid in tids:
            for at, state, stack in self.switches.get(tid, ()):
                if t0 <= at <= t1 and "do_epoll_wait" not in stack:
                    frames = [f for f in stack.split(" <- ") if f != "__cond_resched"][:3]
                    seen[f"{state}:{'<'.join(frames)}"] += 1
        return "; ".join(f"{n}x {k}" for k, n in sorted(seen.items(), key=lambda kv: -kv[1]))

    def others(self, t0: float, t1: float, skip: str, top: int = 4) -> str:
        """The tasks that ran most within [t0, t1], all CPUs (ms), other than `skip*`."""
        by: dict[str, float] = defaultdict(float)
        for a, b, name in self.running:
            if a > t1:
                break
            lo, hi = max(a, t0), min(b, t1)
            if hi > lo and not name.startswith(skip):
                by[re.sub(r"\d+$", "", name)] += (hi - lo) * 1e3
        ranked = sorted(by.items(), key=lambda kv: -kv[1])[:top]
        return " ".join(f"{n}={v:.1f}" for n, v in ranked)


# --------------------------------------------------------------------------- report


def analyse(path: Path, slow: int, sched: Sched | None, thread: str) -> None:
    ev = events(path)
    rows = []
    segs: dict[str, list[float]] = {s: [] for s in SEGMENTS}
    for cid, e in ev.items():
        if not all(k in e for _, a, b in BOUNDS for k in (a, b)):
            continue
        parts = {s: (e[b] - e[a]) * 1e3 for s, a, b in BOUNDS}
        for s, v in parts.items():
            segs[s].append(v)
        rows.append((sum(parts.values()), parts, e, cid))
    if not rows:
        print(f"{path}: no complete call")
        return
    rows.sort(key=lambda r: -r[0])
    totals = [r[0] for r in rows]
    print(f"{path}: {len(rows)} calls; setup added p50={pct(totals, .5):.3f} "
          f"p99={pct(totals, .99):.3f} max={max(totals):.3f} ms")
    for s in SEGMENTS:
        xs = segs[s]
        print(f"  {s:12} p50={pct(xs, .5):6.3f} p99={pct(xs, .99):6.3f} max={max(xs):7.3f} ms"
              f"  >1ms={sum(x > 1 for x in xs):4} >2ms={sum(x > 2 for x in xs):4}")
    # The slowest 1 % and 2 %: which segment holds their excess over each segment's median.
    for frac in (0.01, 0.02):
        n = max(1, int(len(rows) * frac))
        excess = {s: sum(max(0.0, r[1][s] - pct(segs[s], .5)) for r in rows[:n]) for s in SEGMENTS}
        whole = sum(excess.values()) or 1.0
        shares = " ".join(f"{s}={100 * v / whole:.0f}%" for s, v in excess.items())
        print(f"  slowest {n:3} calls: excess over medians {whole / n:.2f} ms/call: {shares}")
    t0 = min(r[2]["inv_in"] for r in rows)
    tids = sched.tids(thread) if sched else []
    agg = {"run": 0.0, "queue": 0.0, "sleep": 0.0}
    for total, parts, e, _ in rows[:slow]:
        worst = max(PROXY_SEGMENTS, key=lambda s: parts[s])
        line = (f"  slow t={e['inv_in'] - t0:7.3f}s total={total:6.2f} "
                + " ".join(f"{s}={parts[s]:.2f}" for s in SEGMENTS))
        print(line)
        if sched is not None:
            a, b = dict((s, (x, y)) for s, x, y in BOUNDS)[worst]
            lo, hi = e[a], e[b]
            split = sched.split(tids, lo, hi)
            for k in agg:
                agg[k] += split[k]
            print(f"      {worst} {parts[worst]:.2f} ms: {thread} run={split['run']:.2f} "
                  f"queued={split['queue']:.2f} asleep={split['sleep']:.2f} | CPUs also ran: "
                  f"{sched.others(lo, hi, thread)}")
            stacks = sched.stacks(tids, lo, hi)
            if stacks:
                print(f"      switched out in: {stacks}")
    if sched is not None:
        whole = sum(agg.values()) or 1.0
        print(f"  worst proxy segment of the {slow} slowest calls, {thread} threads ({len(tids)}):"
              f" run {100 * agg['run'] / whole:.0f}%, queued for a CPU "
              f"{100 * agg['queue'] / whole:.0f}%, asleep {100 * agg['sleep'] / whole:.0f}%")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pcaps", nargs="+", type=Path)
    parser.add_argument("--slow", type=int, default=10, help="slowest calls listed")
    parser.add_argument("--sched", type=Path, help="perf sched timehist text of the same run")
    parser.add_argument("--thread", default="sipmesh-signal",
                        help="name prefix of the proxy's threads in --sched")
    args = parser.parse_args()
    sched = Sched(args.sched) if args.sched else None
    for path in args.pcaps:
        analyse(path, args.slow, sched, args.thread)
    return 0


if __name__ == "__main__":
    sys.exit(main())
