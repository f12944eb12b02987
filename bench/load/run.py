#!/usr/bin/env python3
"""SIPp load benchmark: sipmesh against Kamailio 5.6 on loopback.

Measures, for each target server, with SIPp as the load generator:

* register: REGISTER/s over 10,000 distinct users (user00000..user09999, cycled),
* call:     calls/s through the proxy (INVITE, 180, 200, ACK, BYE, 200; record-routed;
            no hold time) to a SIPp UAS registered behind the proxy as ``uas``,
* message:  MESSAGE/s through the proxy to the same kind of registered UAS,
* memory:   bytes per registration after registering 100,000 distinct users
            (user00000..user99999, Expires 86400) on a freshly started server.

Targets: ``sipmesh`` (in-memory location store), ``sipmesh-redis`` (the same binary with
``--redis``, against a fresh ``redis-server`` started by this script on a loopback port;
its memory figure is the node's RSS plus Redis's RSS) and ``kamailio``. ``--target all``
runs the three; the report prints sipmesh/kamailio and sipmesh-redis/sipmesh ratios.

Each figure is the median of ``--runs`` runs; the report prints both targets and the
ratio sipmesh/kamailio. The maximum rate is found by offering far more load than the
server can take (``-r`` very high) while capping the calls in flight (``-l``): the
achieved rate is successful transactions / elapsed time from SIPp's ``-trace_stat``
file. Failed transactions are counted; a figure with more than 0.1 % failures is
flagged with ``!``.

Only the Python 3 standard library is used. See docs/PERFORMANCE.md for how to read
the output. Exit status: 0 when every requested target produced every figure,
1 when sipmesh (or Kamailio) failed or is missing, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import resource
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
REPO = HERE.parent.parent
SCENARIOS = HERE / "scenarios"
KAMAILIO_CFG = HERE / "kamailio.cfg"

SERVER_IP = "127.0.0.1"
UAC_IP = "127.0.0.2"
UAS_IP = "127.0.0.3"
DOMAIN = "127.0.0.1"
CALLEE = "uas"

PHASES = ("register", "call", "message", "memory")

# Seconds between the end of the memory phase's registrations and the measurement.
MEMORY_SETTLE_S = 36.0

# Per-phase load shape. `total` transactions, at most `limit` in flight, offered at
# `rate` per second (far above what either server can do, so the cap governs).
# Totals are chosen so that a phase lasts a few seconds at the rates Kamailio reaches
# on a 2-core machine and stays well under 60 s for a server 10x slower (-timeout 55s).
LOAD = {
    "register": {"total": 150_000, "limit": 500, "rate": 200_000},
    "call": {"total": 30_000, "limit": 100, "rate": 200_000},
    "message": {"total": 100_000, "limit": 200, "rate": 200_000},
    # The memory phase is not a rate test: it is paced so that no REGISTER is lost.
    "memory": {"total": 100_000, "limit": 200, "rate": 20_000},
}
REGISTER_USERS = 10_000
MEMORY_USERS = 100_000
FAIL_FLAG_RATIO = 0.001
SIPP_BUFFER = 4 * 1024 * 1024
SIPP_TIMEOUT_S = 55

PORTS = {"kamailio": 15070, "sipmesh": 15080, "sipmesh-redis": 15090}
REDIS_PORT = 16379
# SIPp local ports: base + per-phase offset, so stray retransmissions from one phase
# never reach the next one.
UAC_PORT_BASE = {"kamailio": 16000, "sipmesh": 17000, "sipmesh-redis": 18000}
UAS_PORT_BASE = {"kamailio": 16500, "sipmesh": 17500, "sipmesh-redis": 18500}
PHASE_OFFSET = {"register": 0, "call": 1, "message": 2, "memory": 3}


class BenchError(Exception):
    """A target could not be started or a phase could not be measured."""


# --------------------------------------------------------------------------- servers


class Server:
    """A server under test, started fresh for every phase in its own session."""

    name = "server"

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        if probe_register(self.port):
            raise BenchError(f"{self.name}: something already answers on {SERVER_IP}:{self.port}; "
                             "stop it first (a leftover server from an interrupted run?)")
        log = open(self.log_path, "ab")
        log.write(f"\n=== start {time.strftime('%H:%M:%S')} {' '.join(self.command())}\n".encode())
        log.flush()
        try:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.workdir,
            )
        except OSError as err:
            raise BenchError(f"{self.name}: cannot start: {err}") from err
        finally:
            log.close()
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(
                    f"{self.name}: exited with status {self.proc.returncode} at startup "
                    f"(see {self.log_path})"
                )
            if probe_register(self.port):
                return
            time.sleep(0.2)
        self.stop()
        raise BenchError(f"{self.name}: no 200 to a probe REGISTER within 10 s")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        # Wait for the children (same session) to go away too.
        deadline = time.monotonic() + 5.0
        while session_pids(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.proc = None

    def cpu(self) -> float:
        """CPU seconds used so far by the server and all its processes."""
        return cpu_seconds(session_pids(self.proc.pid)) if self.proc is not None else 0.0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def memory(self) -> dict[str, int]:
        """Memory figures in bytes; the key `reported` is the one used for the table."""
        raise NotImplementedError


class Kamailio(Server):
    name = "kamailio"

    def __init__(self, workdir: Path, port: int) -> None:
        super().__init__(workdir, port)
        self.ctl = f"unix:{workdir}/kamailio.ctl"

    def command(self) -> list[str]:
        return [
            "kamailio",
            "-f", str(KAMAILIO_CFG),
            "-DD", "-E",
            "-m", "2048",
            "-M", "16",
            "-A", f"BENCH_PORT={self.port}",
            "-A", f'BENCH_CTL="{self.ctl}"',
        ]

    def shm(self) -> dict[str, int]:
        out = subprocess.run(
            ["kamcmd", "-s", self.ctl, "core.shmmem"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout
        values = dict(re.findall(r"(\w+):\s*(-?\d+)", out))
        try:
            return {"shm_used": int(values["used"]), "shm_real_used": int(values["real_used"])}
        except KeyError as err:
            raise BenchError(f"kamailio: unexpected core.shmmem output: {out!r}") from err

    def memory(self) -> dict[str, int]:
        assert self.proc is not None
        figures = {"pss": sum_pss(session_pids(self.proc.pid))}
        figures.update(self.shm())
        # shm is one preallocated 2 GB mapping whose pages are touched by the allocator
        # in its own pattern; real_used counts the bytes actually taken from it
        # (payload plus allocator headers), which is what a registration costs.
        figures["reported"] = figures["shm_real_used"]
        return figures


class Sipmesh(Server):
    name = "sipmesh"

    def __init__(self, workdir: Path, port: int, binary: Path) -> None:
        super().__init__(workdir, port)
        self.binary = binary

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "--listen", f"udp:{SERVER_IP}:{self.port}",
            "--listen", f"tcp:{SERVER_IP}:{self.port}",
            "--log-filter", "warn",
        ]

    def memory(self) -> dict[str, int]:
        assert self.proc is not None
        rss = vm_rss(self.proc.pid)
        return {"rss": rss, "pss": sum_pss([self.proc.pid]), "reported": rss}


class SipmeshRedis(Sipmesh):
    """sipmesh with ``--redis`` against a fresh redis-server (no persistence) per phase."""

    name = "sipmesh-redis"

    def __init__(self, workdir: Path, port: int, binary: Path, unix: bool = False) -> None:
        super().__init__(workdir, port, binary)
        self.redis: subprocess.Popen | None = None
        # With `unix`, the node talks to Redis over a Unix-domain socket (redis-server still
        # listens on TCP too, for the readiness PING); figures so taken are labelled as such.
        self.unix_socket = workdir / "redis.sock" if unix else None

    def command(self) -> list[str]:
        url = (f"redis+unix://{self.unix_socket}" if self.unix_socket
               else f"redis://{SERVER_IP}:{REDIS_PORT}")
        return super().command() + ["--redis", url]

    def start(self) -> None:
        redis_log = open(self.workdir / "redis-server.log", "ab")
        try:
            self.redis = subprocess.Popen(
                ["redis-server", "--bind", SERVER_IP, "--port", str(REDIS_PORT),
                 "--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
                + (["--unixsocket", str(self.unix_socket), "--unixsocketperm", "700"]
                   if self.unix_socket else []),
                stdin=subprocess.DEVNULL, stdout=redis_log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as err:
            raise BenchError(f"redis-server: cannot start: {err}") from err
        finally:
            redis_log.close()
        deadline = time.monotonic() + 10.0
        while not redis_ping():
            if time.monotonic() > deadline or self.redis.poll() is not None:
                self.stop()
                raise BenchError("redis-server did not answer PING within 10 s")
            time.sleep(0.1)
        try:
            super().start()
        except BaseException:
            # A node that cannot start must not leave its redis-server behind: the next run
            # would find the port taken and write into this one's data.
            self.stop()
            raise

    def stop(self) -> None:
        super().stop()
        if self.redis is not None:
            if self.redis.poll() is None:
                os.killpg(self.redis.pid, signal.SIGKILL)
            self.redis.wait()
            self.redis = None

    def cpu(self) -> float:
        own = super().cpu()
        return own + (cpu_seconds([self.redis.pid]) if self.redis is not None else 0.0)

    def memory(self) -> dict[str, int]:
        node = super().memory()
        assert self.redis is not None
        redis_rss = vm_rss(self.redis.pid)
        return {"rss": node["rss"] + redis_rss, "pss": node["pss"] + sum_pss([self.redis.pid]),
                "reported": node["rss"] + redis_rss, "node_rss": node["rss"],
                "redis_rss": redis_rss}


def redis_ping() -> bool:
    try:
        with socket.create_connection((SERVER_IP, REDIS_PORT), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def session_pids(sid: int) -> list[int]:
    """All live processes in session `sid` (the server and its forked workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the ")" that closes comm: state ppid pgrp session ...
        rest = stat.rsplit(")", 1)[-1].split()
        if len(rest) > 3 and rest[0] != "Z" and int(rest[3]) == sid:
            pids.append(int(entry.name))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time consumed so far by `pids`, in seconds."""
    ticks = 0
    for pid in pids:
        try:
            rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        # utime and stime are fields 14 and 15 of stat, i.e. rest[11] and rest[12].
        ticks += int(rest[11]) + int(rest[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def sum_pss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        match = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
        if match:
            total += int(match.group(1)) * 1024
    return total


def vm_rss(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    if not match:
        raise BenchError(f"no VmRSS for pid {pid}")
    return int(match.group(1)) * 1024


# ----------------------------------------------------------------------- SIP helpers


def register_once(port: int, user: str, contact: str, timeout: float = 1.0) -> bool:
    """Send one REGISTER over UDP from UAS_IP and report whether a 200 came back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((UAS_IP, 0))
        sock.settimeout(timeout)
        local_port = sock.getsockname()[1]
        tag = f"{os.getpid()}{time.monotonic_ns()}"
        msg = (
            f"REGISTER sip:{DOMAIN} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {UAS_IP}:{local_port};branch=z9hG4bK-bench-{tag}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{user}@{DOMAIN}>;tag={tag}\r\n"
            f"To: <sip:{user}@{DOMAIN}>\r\n"
            f"Call-ID: bench-{tag}@{UAS_IP}\r\n"
            "CSeq: 1 REGISTER\r\n"
            f"Contact: <{contact}>\r\n"
            "Expires: 3600\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        try:
            sock.sendto(msg.encode(), (SERVER_IP, port))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                data, _ = sock.recvfrom(65535)
                status = data.split(b"\r\n", 1)[0].split()
                if len(status) >= 2 and status[0] == b"SIP/2.0" and status[1].isdigit():
                    code = int(status[1])
                    if code >= 200:
                        return 200 <= code < 300
        except OSError:
            return False
    return False


def probe_register(port: int) -> bool:
    return register_once(port, "probe", f"sip:probe@{UAS_IP}:9", timeout=0.5)


# ----------------------------------------------------------------------------- SIPp


@dataclass
class SippResult:
    """What one SIPp client run achieved."""

    successful: int
    failed: int
    elapsed_s: float
    exit_code: int
    cpu_s: float

    @property
    def rate(self) -> float:
        return self.successful / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def failure_ratio(self) -> float:
        total = self.successful + self.failed
        return self.failed / total if total else 1.0


def write_users(path: Path, count: int) -> None:
    with open(path, "w") as out:
        out.write("SEQUENTIAL\n")
        for i in range(count):
            out.write(f"user{i:05d}\n")


def parse_stat_file(path: Path) -> tuple[int, int, float]:
    """Return (successful, failed, elapsed seconds) from the last row of a -trace_stat file."""
    with open(path, newline="") as fh:
        rows = [row for row in csv.reader(fh, delimiter=";") if row]
    if len(rows) < 2:
        raise BenchError(f"SIPp statistics file {path} has no data row")
    header, last = rows[0], rows[-1]
    col = {name: i for i, name in enumerate(header)}

    def epoch(name: str) -> float:
        # "2026-11-26\t14:45:05.250278\t1795704305.250278": the last field is epoch seconds.
        return float(last[col[name]].split("\t")[-1])

    try:
        successful = int(last[col["SuccessfulCall(C)"]])
        failed = int(last[col["FailedCall(C)"]])
        elapsed = epoch("CurrentTime") - epoch("StartTime")
    except (KeyError, ValueError, IndexError) as err:
        raise BenchError(f"cannot parse SIPp statistics {path}: {err}") from err
    return successful, failed, elapsed


def run_uac(
    workdir: Path, tag: str, scenario: str, server_port: int, local_port: int,
    users: Path, load: dict, keys: dict[str, str],
) -> SippResult:
    stat = workdir / f"{tag}.stat.csv"
    stat.unlink(missing_ok=True)
    cmd = [
        "sipp", f"{SERVER_IP}:{server_port}",
        "-sf", str(SCENARIOS / scenario),
        "-inf", str(users),
        "-i", UAC_IP, "-p", str(local_port),
        "-m", str(load["total"]), "-r", str(load["rate"]), "-l", str(load["limit"]),
        "-buff_size", str(SIPP_BUFFER),
        "-nd", "-nostdin",
        "-recv_timeout", "2000",
        "-timeout", f"{SIPP_TIMEOUT_S}s",
        "-trace_stat", "-stf", str(stat), "-fd", "1",
        "-trace_err", "-error_file", str(workdir / f"{tag}.errors.log"),
    ]
    for key, value in keys.items():
        cmd += ["-key", key, value]
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(workdir / f"{tag}.sipp.out", "wb") as out:
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=SIPP_TIMEOUT_S + 20,
                                  check=False, cwd=workdir)
        except subprocess.TimeoutExpired as err:
            raise BenchError(f"{tag}: SIPp did not finish") from err
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    uac_cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    if not stat.exists():
        raise BenchError(f"{tag}: SIPp exited {proc.returncode} without statistics "
                         f"(see {workdir / (tag + '.sipp.out')})")
    successful, failed, elapsed = parse_stat_file(stat)
    # SIPp exits 0 (all calls ok), 1 (some failed) or 97/99/255 (aborted, fatal).
    return SippResult(successful, failed, elapsed, proc.returncode, uac_cpu)


class Uas:
    """A SIPp UAS on UAS_IP, registered at the server as CALLEE."""

    def __init__(self, workdir: Path, tag: str, scenario: str, port: int) -> None:
        self.workdir, self.tag, self.scenario, self.port = workdir, tag, scenario, port
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Uas":
        cmd = [
            "sipp", "-sf", str(SCENARIOS / self.scenario),
            "-i", UAS_IP, "-p", str(self.port),
            "-buff_size", str(SIPP_BUFFER),
            "-nd", "-nostdin", "-recv_timeout", "5000",
        ]
        out = open(self.workdir / f"{self.tag}.uas.out", "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, cwd=self.workdir,
                                     start_new_session=True)
        out.close()
        time.sleep(0.3)
        if self.proc.poll() is not None:
            raise BenchError(f"{self.tag}: SIPp UAS exited at startup")
        return self

    def cpu(self) -> float:
        """CPU seconds used so far by the UAS."""
        return cpu_seconds([self.proc.pid]) if self.proc is not None else 0.0

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


# ---------------------------------------------------------------------------- phases


@dataclass
class Figure:
    """One measured figure of one target in one run."""

    value: float | None
    unit: str
    failures: int = 0
    attempts: int = 0
    detail: dict = field(default_factory=dict)
    error: str | None = None

    @property
    def flagged(self) -> bool:
        return self.attempts > 0 and self.failures / self.attempts > FAIL_FLAG_RATIO


def rate_figure(result: SippResult, unit: str, server_cpu: float, uas_cpu: float = 0.0) -> Figure:
    elapsed = result.elapsed_s if result.elapsed_s > 0 else float("inf")
    return Figure(
        value=result.rate if result.successful else None,
        unit=unit,
        failures=result.failed,
        attempts=result.successful + result.failed,
        detail={"elapsed_s": round(result.elapsed_s, 3), "sipp_exit": result.exit_code,
                "server_cores": round(server_cpu / elapsed, 2),
                "sipp_cores": round((result.cpu_s + uas_cpu) / elapsed, 2),
                "loadavg": round(os.getloadavg()[0], 2)},
        error=None if result.successful else f"no successful transaction (SIPp exit {result.exit_code})",
    )


def run_phase(phase: str, server: Server, workdir: Path, run: int, files: dict[str, Path]) -> Figure:
    target = server.name
    tag = f"run{run}-{phase}-{target}"
    uac_port = UAC_PORT_BASE[target] + PHASE_OFFSET[phase]
    uas_port = UAS_PORT_BASE[target] + PHASE_OFFSET[phase]
    keys = {"domain": DOMAIN, "callee": CALLEE, "expires": "3600"}
    server.start()
    try:
        if phase == "register":
            cpu0 = server.cpu()
            res = run_uac(workdir, tag, "register.xml", server.port, uac_port,
                          files["register"], LOAD[phase], keys)
            return rate_figure(res, "REGISTER/s", server.cpu() - cpu0)
        if phase in ("call", "message"):
            scenario = "call" if phase == "call" else "message"
            with Uas(workdir, tag, f"{scenario}_uas.xml", uas_port) as uas:
                if not register_once(server.port, CALLEE, f"sip:{CALLEE}@{UAS_IP}:{uas_port}"):
                    raise BenchError(f"{tag}: registering the UAS as {CALLEE!r} failed")
                cpu0, uas0 = server.cpu(), uas.cpu()
                res = run_uac(workdir, tag, f"{scenario}_uac.xml", server.port, uac_port,
                              files["register"], LOAD[phase], keys)
                cpu, uas_cpu = server.cpu() - cpu0, uas.cpu() - uas0
            return rate_figure(res, "calls/s" if phase == "call" else "MESSAGE/s", cpu, uas_cpu)
        if phase == "memory":
            time.sleep(1.0)
            before = server.memory()
            keys["expires"] = "86400"
            res = run_uac(workdir, tag, "register.xml", server.port, uac_port,
                          files["memory"], LOAD[phase], keys)
            # Steady state: wait out the transactions of the registration burst (a
            # non-INVITE server transaction over UDP lives 64*T1 = 32 s after its final
            # response, RFC 3261 Timer J) so the figure is memory per *registration*, not per
            # REGISTER in flight. Both servers get the same wait.
            time.sleep(MEMORY_SETTLE_S)
            if not server.alive():
                raise BenchError(f"{tag}: server died during the memory phase")
            after = server.memory()
            delta = {k: after[k] - before[k] for k in before}
            per_reg = {k: v / MEMORY_USERS for k, v in delta.items()}
            return Figure(
                value=per_reg["reported"],
                unit="bytes/registration",
                failures=res.failed,
                attempts=res.successful + res.failed,
                detail={"before": before, "after": after,
                        "per_registration": {k: round(v, 1) for k, v in per_reg.items()}},
            )
        raise BenchError(f"unknown phase {phase}")
    finally:
        if not server.alive() and server.proc is not None:
            note = f" (server exited with {server.proc.returncode})"
        else:
            note = ""
        server.stop()
        if note:
            print(f"  note: {target}{note}", flush=True)


# ---------------------------------------------------------------------------- report


def fmt(value: float | None, phase: str) -> str:
    if value is None:
        return "FAILED"
    return f"{value:,.0f}" if phase != "memory" else f"{value:,.1f}"


def median_of(figures: list[Figure]) -> tuple[float | None, bool, int, int]:
    values = [f.value for f in figures if f.value is not None and f.error is None]
    if not values or len(values) < len(figures):
        return None, False, sum(f.failures for f in figures), sum(f.attempts for f in figures)
    return (statistics.median(values), any(f.flagged for f in figures),
            sum(f.failures for f in figures), sum(f.attempts for f in figures))


def main() -> int:
    global DOMAIN
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=PHASES, action="append",
                        help="run only this phase (repeatable)")
    parser.add_argument("--target", choices=("sipmesh", "sipmesh-redis", "kamailio", "both", "all"),
                        default="both", help="both = sipmesh and kamailio; all = the three")
    parser.add_argument("--no-build", action="store_true",
                        help="do not run cargo build; use the existing binary")
    parser.add_argument("--sipmesh-bin", type=Path, default=REPO / "target/release/sipmesh")
    parser.add_argument("--redis-unix", action="store_true",
                        help="sipmesh-redis reaches Redis over a Unix-domain socket, not TCP")
    parser.add_argument("--workdir", type=Path, help="keep logs and SIPp files here")
    parser.add_argument("--json", type=Path, help="also write all figures as JSON here")
    parser.add_argument("--domain", default=DOMAIN,
                        help="host part of every AOR and Request-URI (default %(default)s)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    DOMAIN = args.domain

    phases = [p for p in PHASES if not args.only or p in args.only]
    targets = {"both": ["sipmesh", "kamailio"],
               "all": ["sipmesh", "sipmesh-redis", "kamailio"]}.get(args.target, [args.target])
    if "sipmesh-redis" in targets and shutil.which("redis-server") is None:
        print("error: redis-server not found in PATH", file=sys.stderr)
        return 2
    for tool in ("sipp", "kamailio", "kamcmd") if "kamailio" in targets else ("sipp",):
        if shutil.which(tool) is None:
            print(f"error: {tool} not found in PATH", file=sys.stderr)
            return 2

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sipmesh-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    files = {"register": workdir / "users_10k.csv", "memory": workdir / "users_100k.csv"}
    write_users(files["register"], REGISTER_USERS)
    write_users(files["memory"], MEMORY_USERS)

    print(f"sipmesh load benchmark: runs={args.runs} phases={','.join(phases)} "
          f"targets={','.join(targets)}"
          + (" (sipmesh-redis over a Unix socket)" if args.redis_unix else ""))
    print(f"machine: nproc={os.cpu_count()} cpu={cpu_model()} load={os.getloadavg()[0]:.2f}")
    print(f"workdir: {workdir}", flush=True)

    servers: dict[str, Server] = {}
    broken: dict[str, str] = {}
    if "sipmesh" in targets or "sipmesh-redis" in targets:
        if not args.no_build:
            print("building sipmesh: cargo build --release -p sipmesh-node", flush=True)
            build = subprocess.run(["cargo", "build", "--release", "-p", "sipmesh-node"],
                                   cwd=REPO, check=False)
            if build.returncode != 0:
                broken["sipmesh"] = f"cargo build failed ({build.returncode})"
        if "sipmesh" not in broken and not os.access(args.sipmesh_bin, os.X_OK):
            broken["sipmesh"] = f"binary {args.sipmesh_bin} missing"
        if "sipmesh-redis" in targets and "sipmesh" in broken:
            broken["sipmesh-redis"] = broken["sipmesh"]
        servers["sipmesh"] = Sipmesh(workdir, PORTS["sipmesh"], args.sipmesh_bin)
        servers["sipmesh-redis"] = SipmeshRedis(workdir, PORTS["sipmesh-redis"], args.sipmesh_bin,
                                                unix=args.redis_unix)
    if "kamailio" in targets:
        servers["kamailio"] = Kamailio(workdir, PORTS["kamailio"])

    results: dict[str, dict[str, list[Figure]]] = {t: {p: [] for p in phases} for t in targets}
    started = time.monotonic()
    for run in range(1, args.runs + 1):
        for phase in phases:
            for target in targets:
                if target in broken:
                    results[target][phase].append(Figure(None, "", error=broken[target]))
                    continue
                t0 = time.monotonic()
                try:
                    fig = run_phase(phase, servers[target], workdir, run, files)
                except BenchError as err:
                    fig = Figure(None, "", error=str(err))
                    if target.startswith("sipmesh") and not servers[target].alive():
                        # Most likely it cannot start at all: do not retry every phase.
                        if "startup" in str(err) or "probe" in str(err) or "cannot start" in str(err):
                            broken[target] = str(err)
                results[target][phase].append(fig)
                mark = " !" if fig.flagged else ""
                extra = ""
                if phase == "memory" and fig.detail.get("per_registration"):
                    extra = " " + json.dumps(fig.detail["per_registration"])
                elif "server_cores" in fig.detail:
                    extra = (f" server_cores={fig.detail['server_cores']}"
                             f" sipp_cores={fig.detail['sipp_cores']}"
                             f" loadavg={fig.detail['loadavg']}")
                shown = fig.error if fig.error else f"{fmt(fig.value, phase)} {fig.unit}"
                print(f"run {run} {phase:8} {target:8} {shown}{mark} "
                      f"failures={fig.failures}/{fig.attempts}{extra} "
                      f"[{time.monotonic() - t0:.1f}s]", flush=True)

    print(f"\nmedians of {args.runs} run(s) ({time.monotonic() - started:.0f} s):")
    units = {"register": "REGISTER/s", "call": "calls/s", "message": "MESSAGE/s",
             "memory": "bytes/registration"}
    print(f"{'figure':28} {'sipmesh':>14} {'kamailio':>14} {'ratio':>8} "
          f"{'sipmesh-redis':>14} {'redis/mem':>9} {'redis/kam':>9}")
    ok = True
    for phase in phases:
        cells = {}
        medians = {}
        for target in ("sipmesh", "kamailio", "sipmesh-redis"):
            if target not in targets:
                cells[target] = "-"
                continue
            med, flagged, fails, attempts = median_of(results[target][phase])
            medians[target] = med
            if med is None:
                ok = False
            cells[target] = fmt(med, phase) + (" !" if flagged else "")
        ratio = "-"
        if medians.get("sipmesh") and medians.get("kamailio"):
            ratio = f"{medians['sipmesh'] / medians['kamailio']:.2f}"
        def ratio_of(a: str, b: str) -> str:
            if medians.get(a) and medians.get(b):
                return f"{medians[a] / medians[b]:.2f}"
            return "-"
        print(f"{phase + ' (' + units[phase] + ')':28} {cells['sipmesh']:>14} "
              f"{cells['kamailio']:>14} {ratio:>8} {cells['sipmesh-redis']:>14} "
              f"{ratio_of('sipmesh-redis', 'sipmesh'):>9} {ratio_of('sipmesh-redis', 'kamailio'):>9}")
    print("'!' = more than 0.1 % of transactions failed in at least one run; "
          "ratio = sipmesh / kamailio.")
    if "kamailio" in targets and "memory" in phases:
        print("kamailio memory = shm real_used delta / 100,000 (PSS delta printed per run).")
    for target, reason in broken.items():
        print(f"{target}: FAILED: {reason}")
    for target in targets:
        for phase in phases:
            for i, fig in enumerate(results[target][phase], 1):
                if fig.error and target not in broken:
                    print(f"{target} {phase} run {i}: FAILED: {fig.error}")

    if args.json:
        dump = {t: {p: [fig.__dict__ for fig in figs] for p, figs in by_phase.items()}
                for t, by_phase in results.items()}
        args.json.write_text(json.dumps(dump, indent=2))
    return 0 if ok and not broken else 1


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
