#!/usr/bin/env python3
"""Redis time per REGISTER script call, measured in isolation (no node, no SIPp).

Starts a private ``redis-server`` (no persistence) on a free loopback port, loads the
single-server register script exactly as the store composes it (common.lua, layout_single.lua,
register.lua), and sends pipelined ``EVALSHA`` calls with the arguments the benchmark's
REGISTERs produce (one UDP Contact per AOR, a new Call-ID per REGISTER, the expiry moving
forward with the clock). It prints ``usec_per_call`` of ``INFO commandstats`` (time inside the
script, the figure that does not depend on this client's speed) for

* ``first``:   the first registration of each of ``--users`` AORs,
* ``refresh``: ``--refreshes`` rounds of one refresh per AOR (the benchmark's steady state),
* ``empty``:   the same keys and arguments with an empty script body (the fixed cost of
  ``EVALSHA`` with this many keys and arguments).

``usec_per_call`` is wall time: on a busy machine it includes time the server was not running.
So two steadier figures are printed as well: ``cpu`` = redis-server user+system CPU per call
(from /proc, so command parsing and socket I/O are included), and with ``--callgrind`` the
server runs under valgrind's callgrind and ``Ir`` = instructions per call (deterministic; use
fewer ``--users``, it is ~50x slower).

Usage: bench/load/script_cost.py [--users 10000] [--refreshes 5] [--repeat 3] [--callgrind]
[--fcall] [--many N] [--same-call-id] [--annotate N]. With ``--fcall`` the register script is
loaded as a Redis Functions library (``FUNCTION LOAD``) and called with ``FCALL``, as the store
does on Redis >= 7. With ``--many N`` (implies ``--fcall``) the REGISTERs go N per call of the
several-AORs function (``register_many.lua``), as the store sends the REGISTERs of one batch;
the figures are then per REGISTER, not per call. ``--same-call-id`` refreshes as a UA does (its
Call-ID, the next CSeq) instead of a new Call-ID per REGISTER. ``--annotate N`` (with
``--callgrind``) prints the N costliest functions of the refresh phase (callgrind_annotate).
Median of ``--repeat`` fresh servers; all runs printed. Needs ``redis-server`` on PATH.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

REDIS_DIR = Path(__file__).resolve().parents[2] / "actors/src/location/redis"
PREFIX = "sipmesh:loc:"


def script_text() -> str:
    """The register script as RedisLocationStore::new composes it."""
    common = (REDIS_DIR / "common.lua").read_text()
    rules = (REDIS_DIR / "register_rules.lua").read_text()
    layout = (REDIS_DIR / "layout_single.lua").read_text()
    body = (REDIS_DIR / "register.lua").read_text()
    return f"{common}\n{rules}\n{layout}\n{body}"


def library_text() -> tuple[str, str]:
    """The register script as a Redis Functions library, composed as the store composes it
    (``actors/src/location/redis/library.rs``): the helpers once at load time, sharing the
    ``KEYS``/``ARGV`` upvalues that each call sets. Returns (library, function name)."""
    common = (REDIS_DIR / "common.lua").read_text()
    rules = (REDIS_DIR / "register_rules.lua").read_text()
    layout = (REDIS_DIR / "layout_single.lua").read_text()
    body = (REDIS_DIR / "register.lua").read_text()
    many = (REDIS_DIR / "register_many.lua").read_text()
    return (
        "#!lua name=sipmesh_bench\nlocal KEYS, ARGV\n" + common + "\n" + rules
        + "\nredis.register_function('sipmesh_register', function(keys, args)\n"
        + "KEYS, ARGV = keys, args\n" + layout + "\n" + body + "\nend)\n"
        + "redis.register_function('sipmesh_register_many', function(keys, args)\n"
        + "KEYS, ARGV = keys, args\n" + many + "\nend)\n",
        "sipmesh_register",
    )


def mp_uint(v: int) -> bytes:
    """A non-negative integer as cmsgpack.pack writes it (the shortest form)."""
    if v < 0x80:
        return bytes([v])
    for tag, size in ((0xcc, 1), (0xcd, 2), (0xce, 4), (0xcf, 8)):
        if v < 1 << (8 * size):
            return bytes([tag]) + v.to_bytes(size, "big")
    raise ValueError(v)


def mp_str(v: str | bytes) -> bytes:
    """A string as cmsgpack.pack writes it."""
    b = v.encode() if isinstance(v, str) else v
    n = len(b)
    if n < 32:
        return bytes([0xa0 | n]) + b
    for tag, size in ((0xd9, 1), (0xda, 2), (0xdb, 4)):
        if n < 1 << (8 * size):
            return bytes([tag]) + n.to_bytes(size, "big") + b
    raise ValueError(n)


def contact_arg(expires_at: int, call_id: str, cseq: int, contact: str, rest: str) -> bytes:
    """One Contact's script argument (codec.rs `binding_args`): the AOR value of that binding
    alone, encoded as cmsgpack.pack encodes it: expiry, Call-ID, CSeq, contact, instance,
    reg-id, connection, rest."""
    return (b"\x91\x98" + mp_uint(expires_at) + mp_str(call_id) + mp_uint(cseq) + mp_str(contact)
            + mp_str("") + mp_str("") + mp_str("") + mp_str(rest))


def register_many_cmd(users: list[int], call_ids: list[str], now_ms: list[int],
                      expires_s: int, cseq: int = 1) -> bytes:
    """One call of the several-AORs function for `users` (register_many.lua's arguments)."""
    keys: list[str] = [PREFIX + "exp", PREFIX + "count"]
    args: list[str | int | bytes] = [PREFIX + "conn:", ""]
    for user, call_id, now in zip(users, call_ids, now_ms):
        aor = f"sip:user{user:05d}@bench.sipmesh.test"
        contact = f"sip:user{user:05d}@127.0.0.1:5070"
        rest = rest_field("1000", "UDP", "127.0.0.1:5070", "127.0.0.1:5060")
        keys += [PREFIX + "aor:" + aor, PREFIX + "closed:" + aor]
        args += [now, "L", call_id, cseq, 10, aor, 1,
                 contact_arg(now + expires_s * 1000, call_id, cseq, contact, rest)]
    return resp("FCALL", "sipmesh_register_many", len(keys), *keys, *args)


def resp(*args: bytes | str | int) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, int):
            a = str(a)
        if isinstance(a, str):
            a = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    """A minimal RESP client: pipelined writes, replies skipped (errors counted)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""
        self.errors = 0
        self.first_error = b""

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _bulk(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"-":
            self.errors += 1
            self.first_error = self.first_error or rest
            return rest
        if kind in (b"+", b":"):
            return rest
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._bulk(n)
        if kind == b"*":
            n = int(rest)
            return [self.reply() for _ in range(max(n, 0))]
        raise ValueError(f"unexpected reply {line!r}")

    def pipeline(self, cmds: list[bytes], chunk: int = 256) -> None:
        for i in range(0, len(cmds), chunk):
            part = cmds[i:i + chunk]
            self.sock.sendall(b"".join(part))
            for _ in part:
                self.reply()

    def call(self, *args):
        self.sock.sendall(resp(*args))
        return self.reply()


def rest_field(*fields: str) -> str:
    return "".join(f"{len(f)}:{f}" for f in fields)


def register_cmd(sha: str, user: int, call_id: str, now_ms: int, expires_s: int,
                 verb: str = "EVALSHA", cseq: int = 1) -> bytes:
    aor = f"sip:user{user:05d}@bench.sipmesh.test"
    contact = f"sip:user{user:05d}@127.0.0.1:5070"
    rest = rest_field("1000", "UDP", "127.0.0.1:5070", "127.0.0.1:5060")
    return resp(
        verb, sha, 4, PREFIX + "aor:" + aor, PREFIX + "exp", PREFIX + "count",
        PREFIX + "closed:" + aor,
        now_ms, "L", call_id, cseq, 10, aor, PREFIX + "conn:", "",
        contact_arg(now_ms + expires_s * 1000, call_id, cseq, contact, rest),
    )


def usec_per_call(conn: Conn, verb: str) -> tuple[float, int]:
    info = conn.call("INFO", "commandstats").decode()
    for line in info.splitlines():
        if line.startswith(f"cmdstat_{verb.lower()}:"):
            fields = dict(kv.split("=") for kv in line.split(":", 1)[1].split(","))
            return float(fields["usec_per_call"]), int(fields["calls"])
    return 0.0, 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Meter:
    """Per-phase cost of the server: wall µs/call, CPU µs/call, and (callgrind) Ir/call."""

    def __init__(self, conn: Conn, pid: int, callgrind: Path | None, verb: str) -> None:
        self.conn, self.pid, self.callgrind, self.verb = conn, pid, callgrind, verb
        self.dumps = 0

    def start(self) -> None:
        self.conn.call("CONFIG", "RESETSTAT")
        if self.callgrind:
            subprocess.run(["callgrind_control", "-z", str(self.pid)], check=True,
                           stdout=subprocess.DEVNULL)
        self.cpu0 = cpu_seconds(self.pid)

    def stop(self, per_call: int = 1) -> dict:
        """The figures per REGISTER: per call / `per_call` (REGISTERs per call; the last
        call of a round may hold fewer, which this ignores)."""
        cpu = cpu_seconds(self.pid) - self.cpu0
        wall, calls = usec_per_call(self.conn, self.verb)
        wall /= per_call
        calls *= per_call
        out = {"wall": wall, "cpu": cpu / max(calls, 1) * 1e6}
        if self.callgrind:
            subprocess.run(["callgrind_control", "-d", str(self.pid)], check=True,
                           stdout=subprocess.DEVNULL)
            self.dumps += 1
            dump = Path(f"{self.callgrind}.{self.dumps}")
            deadline = time.monotonic() + 30
            while not dump.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            ir = 0
            for line in dump.read_text().splitlines():
                if line.startswith(("summary:", "totals:")):
                    ir = int(line.split()[1])
                    break
            out["ir"] = ir / max(calls, 1)
        return out


def annotate_dump(dump: Path, top: int) -> str:
    """The `top` functions of a callgrind dump by exclusive and by inclusive instructions."""
    parts = []
    for inclusive in ("no", "yes"):
        text = subprocess.run(
            ["callgrind_annotate", f"--inclusive={inclusive}", f"--threshold=100", str(dump)],
            check=True, capture_output=True, text=True).stdout
        lines = [l for l in text.splitlines() if l.strip()]
        start = next((i for i, l in enumerate(lines) if "file:function" in l), 0)
        label = "inclusive" if inclusive == "yes" else "exclusive (self)"
        parts.append(f"-- refresh phase, {label}, top {top}:\n"
                     + "\n".join(lines[start + 1:start + 1 + top]))
    return "\n".join(parts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_run(users: int, refreshes: int, callgrind: bool = False,
            text: str | None = None, refresh_text: str | None = None,
            fcall: bool = False, many: int = 1, annotate: int = 0,
            same_call_id: bool = False) -> dict:
    """One fresh server. `text` replaces the register script (experiments), `refresh_text`
    the script of the refresh phase only. `fcall`: the register script as a function library
    called with ``FCALL`` instead of ``EVALSHA``."""
    verb = "FCALL" if fcall else "EVALSHA"
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="sipmesh-script-cost-")
    out = Path(workdir) / "callgrind.out"
    wrap = (["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             "--collect-atstart=no", "--dump-instr=yes",
             "--toggle-collect=" + ("fcallCommand" if fcall else "evalShaCommand")]
            if callgrind else [])
    proc = subprocess.Popen(
        wrap + ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = Conn(port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        if fcall:
            library, sha = library_text()
            loaded = conn.call("FUNCTION", "LOAD", "REPLACE", library)
            if conn.errors:
                raise RuntimeError(f"FUNCTION LOAD failed: {loaded!r}")
            conn.call("FUNCTION", "LOAD", "REPLACE", "#!lua name=sipmesh_empty\n"
                      "redis.register_function('sipmesh_empty', function() return 0 end)")
            empty_sha = "sipmesh_empty"
        else:
            text = text or script_text()
            sha = conn.call("SCRIPT", "LOAD", text).decode()
            assert sha == hashlib.sha1(text.encode()).hexdigest()
            empty_sha = conn.call("SCRIPT", "LOAD", "return 0").decode()
        # The store's other scripts are loaded too: their code is part of the live heap that
        # every cycle of Lua's collector walks.
        common = (REDIS_DIR / "common.lua").read_text()
        for other in ("sweep.lua", "remove_connection.lua"):
            conn.call("SCRIPT", "LOAD", f"{common}\n{(REDIS_DIR / other).read_text()}")
        refresh_sha = conn.call("SCRIPT", "LOAD", refresh_text).decode() if refresh_text else sha
        now = int(time.time() * 1000)
        figures = {}
        meter = Meter(conn, proc.pid, out if callgrind else None, verb)
        # First, before any script leaves garbage for Lua's collector to clear.
        empty_cmds = [register_cmd(empty_sha, u, f"e{u}", now, 3600, verb) for u in range(users)]
        meter.start()
        conn.pipeline(empty_cmds)
        figures["empty"] = meter.stop()
        def round_cmds(r: int, at: int, fn: str) -> list[bytes]:
            # A new Call-ID per REGISTER (as SIPp's benchmark scenario sends), or with
            # --same-call-id one Call-ID per AOR and the CSeq counting up (RFC 3261 §10.2.4).
            def call_id(u: int) -> str:
                return f"c{u}" if same_call_id else f"c{u}-{r}"
            cseq = r + 1 if same_call_id else 1
            if many <= 1:
                return [register_cmd(fn, u, call_id(u), at + u // 100, 3600, verb, cseq)
                        for u in range(users)]
            groups = [list(range(u, min(u + many, users))) for u in range(0, users, many)]
            return [register_many_cmd(g, [call_id(u) for u in g], [at + u // 100 for u in g],
                                      3600, cseq) for g in groups]

        per = max(many, 1)
        meter.start()
        conn.pipeline(round_cmds(0, now, sha))
        figures["first"] = meter.stop(per)
        meter.start()
        for r in range(1, refreshes + 1):
            # One refresh per AOR per round, each a second later than the round before.
            conn.pipeline(round_cmds(r, now + r * 1000, refresh_sha))
        figures["refresh"] = meter.stop(per)
        if callgrind and annotate:
            dump = Path(f"{out}.{meter.dumps}")
            figures["annotate"] = annotate_dump(dump, annotate)
            shutil.copy(dump, Path(tempfile.gettempdir()) / "sipmesh-script-cost-refresh.callgrind")
        if conn.errors:
            raise RuntimeError(f"{conn.errors} error replies, first: {conn.first_error!r}")
        return figures
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--refreshes", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--callgrind", action="store_true",
                        help="run redis-server under callgrind and report instructions/call")
    parser.add_argument("--fcall", action="store_true",
                        help="the register script as a function library, called with FCALL")
    parser.add_argument("--many", type=int, default=1,
                        help="REGISTERs per call of the several-AORs function (implies --fcall)")
    parser.add_argument("--annotate", type=int, default=0, metavar="N",
                        help="with --callgrind: print the N costliest functions of the refresh "
                             "phase (callgrind_annotate, self and inclusive), last run; the dump "
                             "is kept as $TMPDIR/sipmesh-script-cost-refresh.callgrind")
    parser.add_argument("--same-call-id", action="store_true",
                        help="refresh with the AOR's Call-ID and the next CSeq (as a UA does) "
                             "instead of a new Call-ID per REGISTER")
    args = parser.parse_args()
    fcall = args.fcall or args.many > 1
    runs = [one_run(args.users, args.refreshes, args.callgrind, fcall=fcall, many=args.many,
                    annotate=args.annotate, same_call_id=args.same_call_id)
            for _ in range(args.repeat)]
    verb = "FCALL" if fcall else "EVALSHA"
    if args.many > 1:
        verb = f"REGISTER ({args.many}/FCALL)"
    units = {"wall": "wall µs", "cpu": "CPU µs", "ir": "Ir"}
    for kind in ("first", "refresh", "empty"):
        for unit, label in units.items():
            values = [r[kind][unit] for r in runs if unit in r[kind]]
            if not values:
                continue
            shown = ", ".join(f"{v:.2f}" if unit != "ir" else f"{v:.0f}" for v in values)
            med = statistics.median(values)
            med_s = f"{med:.2f}" if unit != "ir" else f"{med:.0f}"
            print(f"{kind:8s} {label:8s}/{verb} median {med_s}  (runs: {shown})")
    if "annotate" in runs[-1]:
        print(runs[-1]["annotate"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
