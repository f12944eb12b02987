#!/usr/bin/env python3
"""Idle WebSocket/WSS connection benchmark of sipmesh (issue 3). See docs/PERFORMANCE.md.

For each transport (ws, wss) and each N, starts a fresh node, reads its RSS, opens N registered
idle connections with the `ws_idle` client, waits one ping interval and more, reads the RSS
again and prints RSS per connection. Then a max-rate test: C WSS connections sending REGISTERs
back to back. Results are printed and written to WORKDIR/results.json.
"""

import argparse
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_kv(line):
    word, *rest = line.split()
    out = {"_": word}
    for item in rest:
        if "=" in item:
            k, v = item.split("=", 1)
            out[k] = v
    return out


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


class Node:
    """A sipmesh node with one WS or WSS listener on a free port."""

    def __init__(self, args, scheme, n, tag):
        self.port = free_port()
        self.scheme = scheme
        self.dir = os.path.join(args.workdir, tag)
        os.makedirs(self.dir, exist_ok=True)
        self.config = os.path.join(self.dir, "node.toml")
        certs = os.path.join(args.workdir, "certs")
        lines = [
            f'listen = ["{scheme}:127.0.0.1:{self.port}"]',
            'domain = ["127.0.0.1"]',
            'log_filter = "warn"',
            f'tls_cert = "{certs}/cert.pem"',
            f'tls_key = "{certs}/key.pem"',
            f"ws_max_connections = {n + 1000}",
            f"ws_ping_interval = {args.ping}",
        ]
        self.global_key = None
        if args.global_key:
            lines.append(f"{args.global_key} = {n + 1000}")
        self.log = os.path.join(self.dir, "node.log")
        for attempt in (0, 1):
            with open(self.config, "w") as f:
                f.write("\n".join(lines) + "\n")
            self.proc = subprocess.Popen(
                [args.node, "--config", self.config],
                stdout=open(self.log, "w"),
                stderr=subprocess.STDOUT,
            )
            if self.wait_listening():
                self.global_key = args.global_key if attempt == 0 else None
                return
            with open(self.log) as f:
                text = f.read()
            if attempt == 0 and args.global_key and "unknown field" in text:
                log(f"node has no `{args.global_key}` key; running without it (the "
                    "transport-wide connection limit is whatever the node build uses: 4096 "
                    "as of issue 3)")
                lines.pop()
                continue
            raise RuntimeError(f"node did not start: {text[-2000:]}")

    def wait_listening(self):
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.1)
        return False

    def url(self):
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def client_cmd(args, node, n, extra):
    cmd = [
        args.client, "--url", node.url(), "--connections", str(n), "--rate", str(args.rate),
        "--sources", args.sources, "--threads", str(args.client_threads),
    ]
    if node.scheme == "wss":
        cmd += ["--ca", os.path.join(args.workdir, "certs", "ca.pem")]
    return cmd + extra


def idle_run(args, scheme, n, run):
    tag = f"{scheme}-{n}-{run}"
    node = Node(args, scheme, n, tag)
    try:
        time.sleep(1.0)
        before = rss_kib(node.proc.pid)
        load_start = loadavg()
        cmd = client_cmd(args, node, n, [])
        log(f"{tag}: node pid {node.proc.pid} RSS {before} KiB; {' '.join(cmd)}")
        client = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=open(os.path.join(node.dir, "client.err"), "w"),
                                  text=True)
        ramp = None
        for line in client.stdout:
            log(f"{tag}: client: {line.strip()}")
            if line.startswith("ramp "):
                ramp = parse_kv(line)
            if line.startswith("ready "):
                break
        if ramp is None:
            client.kill()
            raise RuntimeError(f"{tag}: client ended without a ramp line")
        right_after = rss_kib(node.proc.pid)
        time.sleep(args.settle)
        after = rss_kib(node.proc.pid)
        client_rss = rss_kib(client.pid)
        load_end = loadavg()
        node_alive = node.alive()
        client.stdin.close()
        hold = {}
        for line in client.stdout:
            log(f"{tag}: client: {line.strip()}")
            if line.startswith("hold "):
                hold = parse_kv(line)
        client.wait()
        registered = int(ramp["registered"])
        per_conn = (after - before) / registered if registered and after and before else None
        result = {
            "scheme": scheme, "n": n, "run": run,
            "established": int(ramp.get("established", -1)), "registered": registered,
            "failed": int(ramp["failed"]),
            "failures": {k: v for k, v in ramp.items() if k.startswith("fail_")},
            "ramp_s": float(ramp["ramp_s"]), "register_per_s": float(ramp["register_per_s"]),
            "rss_before_kib": before, "rss_after_ramp_kib": right_after,
            "rss_after_settle_kib": after, "per_conn_kib": per_conn,
            "client_rss_kib": client_rss,
            "closed_by_server": int(hold.get("closed_by_server", -1)),
            "node_alive": node_alive, "global_key": node.global_key,
            "load_start": load_start, "load_end": load_end,
        }
        log(f"{tag}: {json.dumps(result)}")
        return result
    finally:
        node.stop()


def burst_run(args, run):
    tag = f"burst-{run}"
    n = args.burst_connections
    node = Node(args, "wss", n, tag)
    try:
        time.sleep(1.0)
        cmd = client_cmd(args, node, n, ["--burst", str(args.burst_per_connection)])
        log(f"{tag}: {' '.join(cmd)}")
        load_start = loadavg()
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        result = {"run": run, "load_start": load_start, "load_end": loadavg()}
        for line in out.stdout.splitlines():
            log(f"{tag}: client: {line}")
            if line.startswith("burst "):
                kv = parse_kv(line)
                result.update({k: kv[k] for k in kv if k != "_"})
        if out.returncode != 0:
            log(f"{tag}: client failed: {out.stderr[-2000:]}")
        return result
    finally:
        node.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ns", default="10000,50000", help="numbers of idle connections")
    p.add_argument("--transports", default="ws,wss")
    p.add_argument("--runs", type=int, default=3, help="runs per (transport, N)")
    p.add_argument("--runs-large", type=int, default=1, help="runs for N >= 50000")
    p.add_argument("--rate", type=float, default=1000.0, help="new connections/s in the ramp")
    p.add_argument("--ping", type=int, default=10, help="node ws_ping_interval, seconds")
    p.add_argument("--settle", type=float, default=None,
                   help="seconds between ramp end and the RSS reading (default ping + 3)")
    p.add_argument("--sources", default="127.0.0.2-127.0.0.9")
    p.add_argument("--client-threads", type=int, default=2)
    p.add_argument("--burst-connections", type=int, default=200)
    p.add_argument("--burst-per-connection", type=int, default=50)
    p.add_argument("--burst-runs", type=int, default=3)
    p.add_argument("--global-key", default="max_connections",
                   help="TOML key tried for the transport-wide connection limit ('' to skip)")
    p.add_argument("--nofile", type=int, default=200000)
    p.add_argument("--no-build", action="store_true")
    p.add_argument("--workdir", default="/tmp/sipmesh-wsbench")
    p.add_argument("--node", default=os.path.join(ROOT, "target/release/sipmesh"))
    p.add_argument("--client", default=os.path.join(ROOT, "target/release/ws_idle"))
    args = p.parse_args()
    if args.settle is None:
        args.settle = args.ping + 3

    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "sipmesh-node"], cwd=ROOT, check=True)
        subprocess.run(["cargo", "build", "--release", "-p", "sipmesh-bench", "--bin", "ws_idle"],
                       cwd=ROOT, check=True)
    os.makedirs(args.workdir, exist_ok=True)
    subprocess.run([args.node, "dev-cert", "--out", os.path.join(args.workdir, "certs")],
                   check=True, stdout=subprocess.DEVNULL)
    soft, hard = raise_nofile(args.nofile)
    log(f"RLIMIT_NOFILE for node and client: soft {soft}, hard {hard} (asked {args.nofile})")
    log(f"load average at start: {loadavg()}; {os.cpu_count()} CPUs")

    results = {"nofile": [soft, hard], "idle": [], "burst": []}
    out_path = os.path.join(args.workdir, "results.json")
    ns = [int(x) for x in args.ns.split(",") if x]
    for scheme in [t for t in args.transports.split(",") if t]:
        for n in ns:
            runs = args.runs_large if n >= 50000 else args.runs
            for run in range(runs):
                try:
                    results["idle"].append(idle_run(args, scheme, n, run))
                except Exception as e:  # report and carry on with the next size
                    log(f"{scheme} N={n} run {run}: {e}")
                    results["idle"].append({"scheme": scheme, "n": n, "run": run,
                                            "error": str(e)})
                with open(out_path, "w") as f:
                    json.dump(results, f, indent=1)
    for run in range(args.burst_runs):
        try:
            results["burst"].append(burst_run(args, run))
        except Exception as e:
            log(f"burst run {run}: {e}")
        with open(out_path, "w") as f:
            json.dump(results, f, indent=1)

    if results["idle"]:
        print_table(results, ns, args)
    rates = [float(b["register_per_s"]) for b in results["burst"] if "register_per_s" in b]
    if rates:
        print(f"WSS max-rate REGISTER/s ({args.burst_connections} connections × "
              f"{args.burst_per_connection}): runs {', '.join(f'{r:.0f}' for r in rates)}; "
              f"median {statistics.median(rates):.0f}")
    log(f"load average at end: {loadavg()}; results in {out_path}")


def print_table(results, ns, args):
    """The per-run table and the medians of the idle runs."""
    print("\n| transport | N asked | registered | failures | node RSS before → after (KiB) "
          "| KiB per conn | REGISTER/s in ramp | load start → end |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results["idle"]:
        if "error" in r:
            print(f"| {r['scheme']} | {r['n']} | error: {r['error']} |||||||")
            continue
        per = f"{r['per_conn_kib']:.1f}" if r["per_conn_kib"] is not None else "-"
        fails = " ".join(f"{k[5:]}={v}" for k, v in r["failures"].items()) or "0"
        print(f"| {r['scheme']} | {r['n']} | {r['registered']} | {fails} | "
              f"{r['rss_before_kib']} → {r['rss_after_settle_kib']} | {per} | "
              f"{r['register_per_s']:.0f} | {r['load_start']} → {r['load_end']} |")
    for scheme in ("ws", "wss"):
        for n in ns:
            vals = [r["per_conn_kib"] for r in results["idle"]
                    if r.get("scheme") == scheme and r.get("n") == n and r.get("per_conn_kib")]
            if vals:
                print(f"{scheme} N={n}: median {statistics.median(vals):.1f} KiB per connection "
                      f"over {len(vals)} run(s)")


if __name__ == "__main__":
    sys.exit(main())
