#!/usr/bin/env python3
"""CPU per REGISTER: node and redis-server CPU microseconds per successful REGISTER.

Throughput on a shared machine is noise; CPU time per transaction is not (much). This runs
the register phase of ``run.py`` (same SIPp scenario, users and load shape) against a fresh
``sipmesh`` (in-memory and/or ``--redis``) per run, reads the user+system CPU of the node
and of redis-server from /proc before and after the SIPp run, and prints, per target, the
median over ``--runs`` of

* node µs/REGISTER   = node CPU / successful REGISTERs,
* redis µs/REGISTER  = redis-server CPU / successful REGISTERs (sipmesh-redis only),
* the read and write system calls per REGISTER of the node and of redis-server (from
  /proc/PID/io; redis-server reads once per arriving batch, so its reads per REGISTER are
  about 1 / the pipeline fill),
* the achieved rate (indicative only on a busy machine),
* with ``--threads``: the node's CPU per REGISTER and its share of a core over the SIPp run
  per thread name (``/proc/PID/task/*/stat``, threads of one name summed, e.g. the tokio
  workers), SIPp's CPU per REGISTER, and the machine's idle share of all cores over the run
  (``/proc/stat``): whether the run is bound by the CPU, by one thread, or by neither
  (latency: SIPp's in-flight limit).

With ``--compare-bin OTHER`` the runs alternate between ``--sipmesh-bin`` and OTHER (A, B, A,
B, ...), so both binaries see the same machine load; the medians are printed per binary.
``--redis-unix`` connects the node to Redis over a Unix-domain socket instead of TCP.

Usage: bench/load/cpu.py [--runs 3] [--target sipmesh|sipmesh-redis|both] [--total 150000]
                         [--sipmesh-bin target/release/sipmesh] [--compare-bin PATH]
                         [--redis-unix]
It does not build: run ``cargo build --release -p sipmesh-node`` first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # noqa: E402  (bench/load/run.py)


def one_run(server: bench.Sipmesh, workdir: Path, users: Path, run: int, total: int,
            limit: int | None = None) -> dict:
    tag = f"cpu{run}-{server.name}"
    load = dict(bench.LOAD["register"], total=total)
    if limit is not None:
        load["limit"] = limit
    keys = {"domain": bench.DOMAIN, "callee": bench.CALLEE, "expires": "3600"}
    server.start()
    try:
        assert server.proc is not None
        node0 = bench.cpu_seconds([server.proc.pid])
        node_io0 = syscalls(server.proc.pid)
        redis = getattr(server, "redis", None)
        redis0 = bench.cpu_seconds([redis.pid]) if redis is not None else 0.0
        redis_io0 = syscalls(redis.pid) if redis is not None else (0, 0)
        threads0 = thread_cpu(server.proc.pid)
        idle0 = machine_idle()
        wall0 = time.monotonic()
        res = bench.run_uac(workdir, tag, "register.xml", server.port,
                            bench.UAC_PORT_BASE[server.name], users, load, keys)
        wall = time.monotonic() - wall0
        idle = machine_idle() - idle0
        threads1 = thread_cpu(server.proc.pid)
        node = bench.cpu_seconds([server.proc.pid]) - node0
        node_io = syscalls(server.proc.pid)
        redis_cpu = (bench.cpu_seconds([redis.pid]) - redis0) if redis is not None else 0.0
        redis_io = syscalls(redis.pid) if redis is not None else (0, 0)
    finally:
        server.stop()
    ok = max(res.successful, 1)
    threads = {name: threads1[name] - threads0.get(name, 0.0) for name in threads1}
    return {
        "threads_us": {name: cpu / ok * 1e6 for name, cpu in threads.items()},
        "threads_cores": {name: cpu / wall for name, cpu in threads.items()},
        "sipp_us": res.cpu_s / ok * 1e6,
        "sipp_cores": res.cpu_s / wall,
        "node_cores": node / wall,
        "redis_cores": redis_cpu / wall,
        "idle_share": idle / wall / (os.cpu_count() or 1),
        "node_us": node / ok * 1e6,
        "redis_us": redis_cpu / ok * 1e6,
        "node_rd": (node_io[0] - node_io0[0]) / ok,
        "node_wr": (node_io[1] - node_io0[1]) / ok,
        "redis_rd": (redis_io[0] - redis_io0[0]) / ok,
        "redis_wr": (redis_io[1] - redis_io0[1]) / ok,
        "rate": res.rate,
        "failed": res.failed,
    }


def thread_cpu(pid: int) -> dict[str, float]:
    """User + system CPU seconds of `pid`'s live threads so far, summed per thread name."""
    ticks: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        rest = stat.rsplit(")", 1)[-1].split()
        ticks[name] = ticks.get(name, 0) + int(rest[11]) + int(rest[12])
    hz = os.sysconf("SC_CLK_TCK")
    return {name: t / hz for name, t in ticks.items()}


def machine_idle() -> float:
    """Idle + iowait seconds of all CPUs so far (/proc/stat, first line)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")


def syscalls(pid: int) -> tuple[int, int]:
    """Read and write system calls of `pid` so far (/proc/PID/io syscr, syscw)."""
    fields = {}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = int(value)
    return fields.get("syscr", 0), fields.get("syscw", 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--target", choices=("sipmesh", "sipmesh-redis", "both"),
                        default="both")
    parser.add_argument("--total", type=int, default=bench.LOAD["register"]["total"])
    parser.add_argument("--sipmesh-bin", type=Path,
                        default=bench.REPO / "target/release/sipmesh")
    parser.add_argument("--compare-bin", type=Path,
                        help="a second binary; runs alternate between the two")
    parser.add_argument("--redis-unix", action="store_true",
                        help="the node reaches Redis over a Unix-domain socket, not TCP")
    parser.add_argument("--limit", type=int,
                        help="SIPp's in-flight limit (-l; default: run.py's register phase, 500): "
                             "a higher one tells whether the rate is bound by latency")
    parser.add_argument("--threads", action="store_true",
                        help="also print the node's CPU per thread name, SIPp's CPU and the "
                             "machine's idle share")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sipmesh-cpu-"))
    workdir.mkdir(parents=True, exist_ok=True)
    users = workdir / "users_10k.csv"
    bench.write_users(users, bench.REGISTER_USERS)
    targets = ["sipmesh", "sipmesh-redis"] if args.target == "both" else [args.target]
    binaries = [args.sipmesh_bin] + ([args.compare_bin] if args.compare_bin else [])
    for target in targets:
        runs: dict[Path, list[dict]] = {b: [] for b in binaries}
        for run in range(1, args.runs + 1):
            for binary in binaries:
                if target == "sipmesh-redis":
                    server = bench.SipmeshRedis(workdir, bench.PORTS[target], binary,
                                                unix=args.redis_unix)
                else:
                    server = bench.Sipmesh(workdir, bench.PORTS[target], binary)
                label = f"{target} [{binary}]" if args.compare_bin else target
                try:
                    fig = one_run(server, workdir, users, run, args.total, args.limit)
                except bench.BenchError as err:
                    print(f"{label} run {run}: FAILED: {err}", flush=True)
                    return 1
                runs[binary].append(fig)
                print(f"{label} run {run}: node {fig['node_us']:.1f} µs/REGISTER, "
                      f"redis {fig['redis_us']:.1f} µs/REGISTER, {fig['rate']:,.0f} REGISTER/s, "
                      f"syscalls/REGISTER node r {fig['node_rd']:.2f} w {fig['node_wr']:.2f}, "
                      f"redis r {fig['redis_rd']:.3f} w {fig['redis_wr']:.3f}, "
                      f"{fig['failed']} failed", flush=True)
                if args.threads:
                    per = ", ".join(
                        f"{name} {fig['threads_us'][name]:.1f} µs ({fig['threads_cores'][name]:.2f})"
                        for name in sorted(fig["threads_us"], key=lambda n: -fig["threads_us"][n])
                        if fig["threads_us"][name] > 0.05)
                    print(f"  threads µs/REGISTER (cores): {per}; node {fig['node_cores']:.2f} "
                          f"cores, redis {fig['redis_cores']:.2f}, sipp {fig['sipp_us']:.1f} "
                          f"µs/REGISTER ({fig['sipp_cores']:.2f}), machine idle "
                          f"{fig['idle_share'] * 100:.0f} %", flush=True)
        for binary in binaries:
            label = f"{target} [{binary}]" if args.compare_bin else target
            keys = ("node_us", "redis_us", "rate", "redis_rd")
            med = {k: statistics.median(r[k] for r in runs[binary]) for k in keys}
            print(f"{label} median: node {med['node_us']:.1f} µs, redis {med['redis_us']:.1f} µs, "
                  f"total {med['node_us'] + med['redis_us']:.1f} µs per REGISTER "
                  f"({med['rate']:,.0f} REGISTER/s; redis reads/REGISTER {med['redis_rd']:.3f})"
                  + (" [Redis over a Unix socket]" if args.redis_unix else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
