#!/usr/bin/env python3
"""CPU per REGISTER: node and redis-server CPU microseconds per successful REGISTER.

Throughput on a shared machine is noise; CPU time per transaction is not (much). This runs
the register phase of ``run.py`` (same SIPp scenario, users and load shape) against a fresh
``sipmesh`` (in-memory and/or ``--redis``) per run, reads the user+system CPU of the node
and of redis-server from /proc before and after the SIPp run, and prints, per target, the
median over ``--runs`` of

* node µs/REGISTER   = node CPU / successful REGISTERs,
* redis µs/REGISTER  = redis-server CPU / successful REGISTERs (sipmesh-redis only),
* the achieved rate (indicative only on a busy machine).

Usage: bench/load/cpu.py [--runs 3] [--target sipmesh|sipmesh-redis|both] [--total 150000]
                         [--sipmesh-bin target/release/sipmesh]
It does not build: run ``cargo build --release -p sipmesh-node`` first.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # noqa: E402  (bench/load/run.py)


def one_run(server: bench.Sipmesh, workdir: Path, users: Path, run: int, total: int) -> dict:
    tag = f"cpu{run}-{server.name}"
    load = dict(bench.LOAD["register"], total=total)
    keys = {"domain": bench.DOMAIN, "callee": bench.CALLEE, "expires": "3600"}
    server.start()
    try:
        assert server.proc is not None
        node0 = bench.cpu_seconds([server.proc.pid])
        redis = getattr(server, "redis", None)
        redis0 = bench.cpu_seconds([redis.pid]) if redis is not None else 0.0
        res = bench.run_uac(workdir, tag, "register.xml", server.port,
                            bench.UAC_PORT_BASE[server.name], users, load, keys)
        node = bench.cpu_seconds([server.proc.pid]) - node0
        redis_cpu = (bench.cpu_seconds([redis.pid]) - redis0) if redis is not None else 0.0
    finally:
        server.stop()
    ok = max(res.successful, 1)
    return {
        "node_us": node / ok * 1e6,
        "redis_us": redis_cpu / ok * 1e6,
        "rate": res.rate,
        "failed": res.failed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--target", choices=("sipmesh", "sipmesh-redis", "both"),
                        default="both")
    parser.add_argument("--total", type=int, default=bench.LOAD["register"]["total"])
    parser.add_argument("--sipmesh-bin", type=Path,
                        default=bench.REPO / "target/release/sipmesh")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sipmesh-cpu-"))
    workdir.mkdir(parents=True, exist_ok=True)
    users = workdir / "users_10k.csv"
    bench.write_users(users, bench.REGISTER_USERS)
    targets = ["sipmesh", "sipmesh-redis"] if args.target == "both" else [args.target]
    for target in targets:
        cls = bench.SipmeshRedis if target == "sipmesh-redis" else bench.Sipmesh
        server = cls(workdir, bench.PORTS[target], args.sipmesh_bin)
        runs = []
        for run in range(1, args.runs + 1):
            try:
                fig = one_run(server, workdir, users, run, args.total)
            except bench.BenchError as err:
                print(f"{target} run {run}: FAILED: {err}", flush=True)
                return 1
            runs.append(fig)
            print(f"{target} run {run}: node {fig['node_us']:.1f} µs/REGISTER, "
                  f"redis {fig['redis_us']:.1f} µs/REGISTER, {fig['rate']:,.0f} REGISTER/s, "
                  f"{fig['failed']} failed", flush=True)
        med = {k: statistics.median(r[k] for r in runs) for k in ("node_us", "redis_us", "rate")}
        print(f"{target} median: node {med['node_us']:.1f} µs, redis {med['redis_us']:.1f} µs, "
              f"total {med['node_us'] + med['redis_us']:.1f} µs per REGISTER "
              f"({med['rate']:,.0f} REGISTER/s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
