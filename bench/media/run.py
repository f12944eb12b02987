#!/usr/bin/env python3
"""Call-setup benchmark with media: sipmesh + rtpengine against Kamailio + rtpengine.

What it measures (issue 6): the call-setup time a proxy adds when it drives rtpengine,
INVITE -> 200 at the caller minus the callee's own answer time, as p50 and p99 over
``--calls`` SIPp calls with SDP (RTP/AVP on both legs, so rtpengine relays plain RTP).

* ``direct``:   the SIPp UAC calls the SIPp UAS with no proxy; its INVITE -> 200 time is
                the callee's own answer time (plus SIPp's own overhead), subtracted below.
* ``sipmesh``:  ``sipmesh --rtpengine udp:127.0.0.1:NG`` (in-memory store); the UAS is
                registered as ``uas``; every call is offered to and answered by rtpengine.
* ``kamailio``: Kamailio 5.6 with bench/media/kamailio-media.cfg (registrar + record-routing
                proxy + rtpengine module: offer on INVITE, answer on 18x/2xx with SDP,
                delete on BYE/CANCEL/failure), same rtpengine daemon.

The load is paced (``--rate`` calls/s, at most ``--limit`` in flight) so that the figure is
latency, not queueing at saturation. Times come from a ``tcpdump`` capture on the loopback
interface (microsecond kernel timestamps; SIPp's own response-time counters tick in whole
milliseconds, too coarse here). For every call, matched by Call-ID:

    added = (200 reaching the caller - INVITE leaving the caller)
          - (200 leaving the callee  - INVITE reaching the callee)

so the callee's own answer time is subtracted call by call. The ``direct`` target is the
floor of that method (no proxy: the same packets, only the kernel in between).

``--warmup N`` first sends N unmeasured calls through the same server (in chunks of
``--calls``, each chunk's page faults printed): a fresh node's heap grows for about 50 s at
100 calls/s (completed transactions are kept 32 s), so the default cold run measures that
growth; Kamailio allocates its shared memory pool at start. Per run the script prints the
server's minor faults, those of the node's signalling thread, both per call, and its RSS.

After each target the script asks rtpengine for its call list (ng ``list`` with a limit):
a sipmesh or Kamailio run that leaves sessions behind is reported as a failure.

Only the Python 3 standard library is used; the server and SIPp plumbing is shared with
bench/load/run.py. Exit status: 0 when every target produced its figures with no failed
call and no leaked session, 1 otherwise, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import struct
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent

def _load_bench_module():
    """bench/load/run.py (servers, SIPp helpers), under a name that cannot clash with this file."""
    spec = importlib.util.spec_from_file_location("sipmesh_load_bench", HERE.parent / "load/run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


load = _load_bench_module()

REPO = HERE.parent.parent
KAMAILIO_MEDIA_CFG = HERE / "kamailio-media.cfg"
NG_IP = "127.0.0.1"
NG_PORT = 22290
PORTS = {"kamailio": 15270, "sipmesh": 15280}
UAC_PORT = {"direct": 19000, "kamailio": 19001, "sipmesh": 19002}
UAS_PORT = {"direct": 19500, "kamailio": 19501, "sipmesh": 19502}
TARGETS = ("direct", "sipmesh", "kamailio")


# ------------------------------------------------------------------------- rtpengine ng


def bencode(value: object) -> bytes:
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"
    raise TypeError(f"cannot bencode {type(value)}")


def bdecode(data: bytes, pos: int = 0) -> tuple[object, int]:
    lead = data[pos:pos + 1]
    if lead == b"i":
        end = data.index(b"e", pos)
        return int(data[pos + 1:end]), end + 1
    if lead in (b"l", b"d"):
        pos += 1
        items = []
        while data[pos:pos + 1] != b"e":
            item, pos = bdecode(data, pos)
            items.append(item)
        if lead == b"l":
            return items, pos + 1
        return dict(zip(items[0::2], items[1::2])), pos + 1
    colon = data.index(b":", pos)
    length = int(data[pos:colon])
    return data[colon + 1:colon + 1 + length], colon + 1 + length


def ng_call(command: dict, timeout: float = 1.0) -> dict:
    cookie = f"bench{time.monotonic_ns()}".encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(cookie + b" " + bencode(command), (NG_IP, NG_PORT))
        while True:
            data, _ = sock.recvfrom(65535)
            got_cookie, _, body = data.partition(b" ")
            if got_cookie == cookie:
                reply, _ = bdecode(body)
                if not isinstance(reply, dict):
                    raise load.BenchError(f"rtpengine: unexpected ng reply {data!r}")
                return reply


def rtpengine_calls() -> list[bytes]:
    reply = ng_call({"command": "list", "limit": 100000})
    if reply.get(b"result") != b"ok":
        raise load.BenchError(f"rtpengine list failed: {reply!r}")
    return list(reply.get(b"calls", []))


class Rtpengine:
    """One userspace rtpengine daemon for the whole benchmark."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Rtpengine":
        log = open(self.workdir / "rtpengine.log", "ab")
        self.proc = subprocess.Popen(
            ["rtpengine", "--config-file=none", "--table=-1", f"--interface={NG_IP}",
             f"--listen-ng={NG_IP}:{NG_PORT}", "--foreground", "--log-stderr",
             "--delete-delay=0", "--port-min=40000", "--port-max=49999", "--log-level=4"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise load.BenchError(f"rtpengine exited at startup (see {self.workdir}/rtpengine.log)")
            try:
                if ng_call({"command": "ping"}, timeout=0.3).get(b"result") == b"pong":
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise load.BenchError("rtpengine did not answer an ng ping within 10 s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


# ------------------------------------------------------------------------------ servers


class KamailioMedia(load.Kamailio):
    name = "kamailio"

    def command(self) -> list[str]:
        cmd = super().command()
        cmd[cmd.index("-f") + 1] = str(KAMAILIO_MEDIA_CFG)
        return cmd + ["-A", f'BENCH_NG="udp:{NG_IP}:{NG_PORT}"']


class SipmeshMedia(load.Sipmesh):
    name = "sipmesh"

    def command(self) -> list[str]:
        return super().command() + ["--rtpengine", f"udp:{NG_IP}:{NG_PORT}"]


# ------------------------------------------------------------------------------ one run


@dataclass
class Setup:
    """Per-call setup time added (see the module doc) of one target in one run, in ms."""

    times_ms: list[float] = field(default_factory=list)
    failed: int = 0
    leaked: int = 0
    error: str | None = None
    # The server's busiest threads over the run (/proc/PID/task/TID/schedstat), per call.
    threads: str = ""
    # Page faults of the server and the system's THP faults / allocation stalls over the run.
    faults: str = ""
    # Per warm-up chunk (--warmup): its fault counts, and the RSS before the measured run.
    warmup: list[str] = field(default_factory=list)

    def pct(self, q: float) -> float | None:
        if not self.times_ms:
            return None
        ordered = sorted(self.times_ms)
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Capture:
    """`tcpdump` on the loopback interface, SIP over UDP between the test addresses only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Capture":
        self.path.unlink(missing_ok=True)
        flt = f"udp and (host {load.UAC_IP} or host {load.UAS_IP} or port {NG_PORT})"
        self.proc = subprocess.Popen(
            ["tcpdump", "-i", "lo", "-n", "-s", "2048", "-B", "16384", "-U",
             "-w", str(self.path), flt],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.path.with_suffix(".log"), "wb"), start_new_session=True,
        )
        deadline = time.monotonic() + 5.0
        while not self.path.exists() or self.path.stat().st_size == 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise load.BenchError(f"tcpdump did not start (see {self.path.with_suffix('.log')})")
            time.sleep(0.05)
        time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # tcpdump may still be working through its buffer on a busy machine: stop it only
            # once the file has stopped growing for a second (at most 20 s).
            deadline = time.monotonic() + 20.0
            size, stable_since = -1, time.monotonic()
            while time.monotonic() < deadline:
                now_size = self.path.stat().st_size
                if now_size != size:
                    size, stable_since = now_size, time.monotonic()
                elif time.monotonic() - stable_since >= 1.0:
                    break
                time.sleep(0.1)
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class PerfSched:
    """`perf sched record -a` around one run (``--perf-sched``), for bench/media/breakdown.py.

    Recorded on CLOCK_MONOTONIC (this kernel refuses CLOCK_REALTIME for perf events); the text
    written next to the data (``perf sched timehist``) starts with the realtime - monotonic
    offset, so the analysis can line the threads' timelines up with the capture's timestamps.
    """

    def __init__(self, data: Path) -> None:
        self.data = data
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "PerfSched":
        self.data.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            ["perf", "sched", "record", "-g", "-k", "mono", "-a", "-o", str(self.data)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.data.with_suffix(".log"), "wb"), start_new_session=True,
        )
        deadline = time.monotonic() + 5.0
        while not self.data.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise load.BenchError(f"perf did not start (see {self.data.with_suffix('.log')})")
            time.sleep(0.05)
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGINT)
        self.proc.wait(timeout=60)
        offset = time.time() - time.clock_gettime(time.CLOCK_MONOTONIC)
        text = subprocess.run(["perf", "sched", "timehist", "-g", "--state", "-i", str(self.data)],
                              capture_output=True, text=True, check=False).stdout
        self.data.with_suffix(".txt").write_text(f"offset {offset:.6f}\n{text}")
        self.data.unlink(missing_ok=True)  # hundreds of MB; the text is what is used


def thread_schedstat(pids: list[int]) -> dict[str, list[int]]:
    """Per thread name (tid appended when repeated): [run ns, run-queue wait ns, timeslices]
    from /proc/PID/task/TID/schedstat."""
    out: dict[str, list[int]] = {}
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                name = (task / "comm").read_text().strip()
                values = [int(v) for v in (task / "schedstat").read_text().split()[:3]]
            except (OSError, ValueError):
                continue
            key = name if name not in out else f"{name}/{task.name}"
            out[key] = values
    return out


# The node's signalling thread (node/src/signalling.rs `THREAD_NAME`).
SIGNAL_THREAD = "sipmesh-signal"

VMSTAT_KEYS = ("thp_fault_alloc", "compact_stall", "allocstall_normal", "allocstall_movable")


def fault_counters(pids: list[int]) -> dict[str, int]:
    """Minor/major page faults and THP-backed KiB (AnonHugePages) of the server's processes,
    and the system's THP faults and direct compaction/reclaim stalls (/proc/vmstat: every
    process; with THP in `madvise` mode only regions advised MADV_HUGEPAGE, such as mimalloc's
    arenas, take THP faults)."""
    out = {"minflt": 0, "majflt": 0}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        out["minflt"] += int(fields[7])
        out["majflt"] += int(fields[9])
        # The node's signalling thread alone: the faults that can delay a call's messages.
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                if (task / "comm").read_text().strip() != SIGNAL_THREAD:
                    continue
                stat = (task / "stat").read_text().rsplit(")", 1)[-1].split()
                out["signal_minflt"] = out.get("signal_minflt", 0) + int(stat[7])
            except (OSError, ValueError, IndexError):
                continue
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("AnonHugePages:"):
                    out["node_thp_kb"] = out.get("node_thp_kb", 0) + int(line.split()[1])
        except (OSError, ValueError):
            pass
    try:
        for line in Path("/proc/vmstat").read_text().splitlines():
            name, _, value = line.partition(" ")
            if name in VMSTAT_KEYS:
                out[name] = int(value)
    except OSError:
        pass
    return out


def rss_kb(pids: list[int]) -> int:
    """Resident set size of the server's processes, KiB (VmRSS)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return total


def fault_delta(before: dict[str, int], after: dict[str, int], calls: int) -> str:
    """Counter changes over a run; the node's and its signalling thread's minor faults also
    per call."""
    text = " ".join(f"{k}={after.get(k, 0) - v}" for k, v in before.items())
    per = max(1, calls)
    for key in ("minflt", "signal_minflt"):
        if key in before:
            text += f" {key}_per_call={(after.get(key, 0) - before[key]) / per:.2f}"
    return text


def schedstat_delta(before: dict[str, list[int]], after: dict[str, list[int]],
                    calls: int) -> str:
    """Threads' CPU and run-queue wait over a run, per call, largest run-queue wait first."""
    rows = []
    for name, (run, wait, slices) in after.items():
        b = before.get(name, [0, 0, 0])
        rows.append((wait - b[1], run - b[0], slices - b[2], name))
    rows.sort(reverse=True)
    per = max(1, calls)
    return "; ".join(f"{name}: cpu {run / per / 1e3:.1f} us/call, queued {wait / per / 1e3:.1f}"
                     f" us/call, {slices / per:.1f} slices/call"
                     for wait, run, slices, name in rows[:4] if slices > 0)


def sip_packets(path: Path):
    """(timestamp s, src ip, dst ip, payload) of every UDP packet in a pcap (Ethernet or cooked)."""
    data = path.read_bytes()
    if len(data) < 24:
        raise load.BenchError(f"capture {path} is empty")
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    link_len = {1: 14, 113: 16, 276: 20}.get(linktype)
    if link_len is None:
        raise load.BenchError(f"capture {path}: unsupported link type {linktype}")
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack(endian + "IIII", data[pos:pos + 16])
        frame = data[pos + 16:pos + 16 + incl]
        pos += 16 + incl
        ip = frame[link_len:]
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 0x0F) * 4
        src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
        yield sec + frac / (1e9 if nano else 1e6), src, dst, ip[ihl + 8:]


def header(payload: bytes, *names: bytes) -> bytes | None:
    for line in payload.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() in names:
            return value.strip()
    return None


def setup_times(path: Path) -> list[float]:
    """Per call, in ms: the caller's INVITE->200 minus the callee's INVITE->200."""
    firsts: dict[bytes, dict[str, float]] = {}
    for ts, src, dst, payload in sip_packets(path):
        start = payload.split(b"\r\n", 1)[0]
        call_id = header(payload, b"call-id", b"i")
        cseq = header(payload, b"cseq")
        if call_id is None or cseq is None or not cseq.endswith(b"INVITE"):
            continue
        events = []
        if start.startswith(b"INVITE "):
            events = [e for e, hit in (("inv_uac", src == load.UAC_IP),
                                       ("inv_uas", dst == load.UAS_IP)) if hit]
        elif start.startswith(b"SIP/2.0 200"):
            events = [e for e, hit in (("ok_uas", src == load.UAS_IP),
                                       ("ok_uac", dst == load.UAC_IP)) if hit]
        for event in events:
            firsts.setdefault(call_id, {}).setdefault(event, ts)
    times = []
    for events in firsts.values():
        if len(events) == 4:
            caller = events["ok_uac"] - events["inv_uac"]
            callee = events["ok_uas"] - events["inv_uas"]
            times.append((caller - callee) * 1000.0)
    return times


def run_target(target: str, args: argparse.Namespace, workdir: Path, run: int,
               users: Path, binary: Path) -> Setup:
    tag = f"run{run}-{target}"
    server: load.Server | None = None
    if target == "sipmesh":
        server = SipmeshMedia(workdir, PORTS["sipmesh"], binary)
    elif target == "kamailio":
        server = KamailioMedia(workdir, PORTS["kamailio"])
    uas_port = UAS_PORT[target]
    setup = Setup()
    try:
        if server is not None:
            server.start()
        with load.Uas(workdir, tag, "call_uas.xml", uas_port):
            if server is not None:
                if not load.register_once(server.port, load.CALLEE,
                                          f"sip:{load.CALLEE}@{load.UAS_IP}:{uas_port}"):
                    raise load.BenchError(f"{tag}: registering the UAS failed")
            remote = (f"{load.SERVER_IP}:{server.port}" if server is not None
                      else f"{load.UAS_IP}:{uas_port}")
            def sipp(stat: Path, calls: int) -> list[str]:
                return [
                    "sipp", remote, "-sf", str(load.SCENARIOS / "call_uac.xml"),
                    "-inf", str(users), "-i", load.UAC_IP, "-p", str(UAC_PORT[target]),
                    "-m", str(calls), "-r", str(args.rate), "-l", str(args.limit),
                    "-nd", "-nostdin", "-recv_timeout", "5000", "-timeout", "120s",
                    "-trace_stat", "-stf", str(stat), "-fd", "1",
                    "-key", "domain", load.DOMAIN, "-key", "callee", load.CALLEE,
                ]

            pids = load.session_pids(server.proc.pid) if server and server.proc else []
            # Unmeasured warm-up calls against the same server, in chunks of --calls (each
            # chunk's faults are reported: heap growth vs steady state).
            left, chunk = (args.warmup if server is not None else 0), 0
            while left > 0:
                n, chunk = min(left, args.calls), chunk + 1
                left -= n
                before_w = fault_counters(pids)
                with open(workdir / f"{tag}.warmup{chunk}.sipp.out", "wb") as out:
                    subprocess.run(sipp(workdir / f"{tag}.warmup{chunk}.stat.csv", n),
                                   stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, timeout=180, check=False,
                                   cwd=workdir)
                if pids:
                    setup.warmup.append(f"warm-up {chunk} ({n} calls): "
                                        f"{fault_delta(before_w, fault_counters(pids), n)} "
                                        f"rss_kb={rss_kb(pids)}")
            stat = workdir / f"{tag}.stat.csv"
            cmd = sipp(stat, args.calls)
            pcap = workdir / f"{tag}.pcap"
            perf = (PerfSched(workdir / f"{tag}.sched.data") if args.perf_sched and server
                    else contextlib.nullcontext())
            if pids:
                setup.warmup.append(f"rss_kb before the run={rss_kb(pids)}")
            before = thread_schedstat(pids)
            faults_before = fault_counters(pids)
            with Capture(pcap), perf, open(workdir / f"{tag}.sipp.out", "wb") as out:
                subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out,
                               stderr=subprocess.STDOUT, timeout=180, check=False, cwd=workdir)
                after = thread_schedstat(pids)
                faults_after = fault_counters(pids)
            if pids:
                setup.threads = schedstat_delta(before, after, args.calls)
                setup.faults = (fault_delta(faults_before, faults_after, args.calls)
                                + f" rss_kb={rss_kb(pids)}")
            successful, failed, _ = load.parse_stat_file(stat)
            setup.failed = failed + max(0, args.calls - successful - failed)
            setup.times_ms = setup_times(pcap)
            if len(setup.times_ms) < successful:
                raise load.BenchError(f"{tag}: the capture holds {len(setup.times_ms)} complete "
                                      f"call setups of {successful} (tcpdump dropped packets?)")
        if target != "direct":
            # Give BYE transactions a moment to reach rtpengine, then check for leaks.
            deadline = time.monotonic() + 3.0
            calls = rtpengine_calls()
            while calls and time.monotonic() < deadline:
                time.sleep(0.2)
                calls = rtpengine_calls()
            setup.leaked = len(calls)
            if calls:
                # Clean up so the next target starts from an empty daemon.
                for call_id in calls:
                    ng_call({"command": "delete", "call-id": call_id})
    except (load.BenchError, OSError, subprocess.TimeoutExpired) as err:
        setup.error = str(err)
    finally:
        if server is not None:
            server.stop()
    return setup


# ------------------------------------------------------------------------------- report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=100, help="calls per second offered")
    parser.add_argument("--limit", type=int, default=50, help="calls in flight at most")
    parser.add_argument("--target", choices=("sipmesh", "kamailio", "both", "all"),
                        default="both", help="all = both")
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--sipmesh-bin", type=Path, default=REPO / "target/release/sipmesh")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--warmup", type=int, default=0,
                        help="unmeasured calls through each server before its measured run "
                             "(same node; run in chunks of --calls, each chunk's page faults "
                             "printed). Kamailio pre-allocates its shared memory at start, so "
                             "a warmed-up node is the like-for-like comparison of the tails")
    parser.add_argument("--perf-sched", action="store_true",
                        help="record `perf sched` during each proxy's run (RUN.sched.txt, for "
                             "bench/media/breakdown.py --sched)")
    args = parser.parse_args()

    targets = ["direct"] + (["sipmesh", "kamailio"] if args.target in ("both", "all")
                            else [args.target])
    needed = (["sipp", "rtpengine", "tcpdump"] + (["perf"] if args.perf_sched else [])
              + (["kamailio", "kamcmd"] if "kamailio" in targets else []))
    for tool in needed:
        if shutil.which(tool) is None:
            print(f"error: {tool} not found in PATH", file=sys.stderr)
            return 2
    if "sipmesh" in targets and not args.no_build:
        print("building sipmesh: cargo build --release -p sipmesh-node", flush=True)
        if subprocess.run(["cargo", "build", "--release", "-p", "sipmesh-node"],
                          cwd=REPO, check=False).returncode != 0:
            print("error: cargo build failed", file=sys.stderr)
            return 1

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sipmesh-media-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    users = workdir / "callers.csv"
    load.write_users(users, 1000)
    print(f"sipmesh media call-setup benchmark: runs={args.runs} calls={args.calls} "
          f"rate={args.rate}/s limit={args.limit} targets={','.join(targets)}")
    print(f"machine: nproc={os.cpu_count()} cpu={load.cpu_model()} "
          f"load={os.getloadavg()[0]:.2f}; workdir: {workdir}", flush=True)

    results: dict[str, list[Setup]] = {t: [] for t in targets}
    with Rtpengine(workdir):
        for run in range(1, args.runs + 1):
            for target in targets:
                s = run_target(target, args, workdir, run, users, args.sipmesh_bin)
                results[target].append(s)
                p50, p99 = s.pct(0.50), s.pct(0.99)
                shown = (s.error if s.error else
                         f"p50={p50:.3f} ms p99={p99:.3f} ms calls={len(s.times_ms)}")
                print(f"run {run} {target:9} {shown} failed={s.failed} leaked={s.leaked}",
                      flush=True)
                for line in s.warmup:
                    print(f"    {line}", flush=True)
                if s.threads:
                    print(f"    threads: {s.threads}", flush=True)
                    print(f"    faults: {s.faults}", flush=True)

    def median(target: str, q: float) -> float | None:
        values = [s.pct(q) for s in results[target] if s.error is None]
        values = [v for v in values if v is not None]
        return statistics.median(values) if values and len(values) == len(results[target]) else None

    ok = all(s.error is None and s.failed == 0 and s.leaked == 0
             for runs in results.values() for s in runs)
    print(f"\nmedians of {args.runs} run(s) of the per-call setup time added "
          "(caller's INVITE->200 minus the callee's), ms")
    print(f"{'target':10} {'p50':>9} {'p99':>9}")
    medians: dict[str, dict[float, float | None]] = {}
    for target in targets:
        medians[target] = {q: median(target, q) for q in (0.50, 0.99)}
        cells = [f"{v:.3f}" if v is not None else "FAILED" for v in medians[target].values()]
        note = "  (no proxy: the method's floor)" if target == "direct" else ""
        print(f"{target:10} {cells[0]:>9} {cells[1]:>9}{note}")
    if "sipmesh" in targets and "kamailio" in targets:
        for q, name in ((0.50, "p50"), (0.99, "p99")):
            a, b = medians["sipmesh"][q], medians["kamailio"][q]
            if a is not None and b is not None and b > 0:
                print(f"sipmesh/kamailio {name}: {a / b:.2f}")
    failed = sum(s.failed for runs in results.values() for s in runs)
    leaked = sum(s.leaked for runs in results.values() for s in runs)
    print(f"failed calls: {failed}; rtpengine sessions left behind: {leaked}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
