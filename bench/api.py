"""HTTP cost of the merchant API beside floor endpoints, same app, same driver, same run.

    python -m bench.api [--db sqlite|postgresql|mariadb ...] [--server uvicorn|granian ...]
                        [--workers 2] [--duration 10] [--connections 64] [--rounds 1]

Serves `bench.floor_app:create` (paycenter plus two bench-only endpoints) with N worker processes
under uvicorn (httptools, uvloop) or Granian, on a fresh database per run, and drives it with wrk
(installed from Debian's packages if missing) on loopback:
- POST /api/payment/init (auth, validation, one INSERT through the service) vs POST /_floor/insert;
- GET /api/payment/{id} and GET /api/payment/{id}/status (public reads), and GET /api/payment/{id}
  sent with the merchant's X-API-Token (the authenticated read), vs GET /_floor/read/{id}.

The headline figure is **CPU per request**, not req/s: the machine is shared, and what others run
moves req/s but not what one request costs. For each endpoint it reads utime+stime from /proc
before and after the wrk run:
- app CPU: the server's process and every process under it (uvicorn's supervisor and workers, or
  Granian's), divided by the requests wrk completed;
- database CPU: PostgreSQL's backends of the bench database (pids from pg_stat_activity, found after
  the warm-up, which opens every pooled connection); MariaDB's threads of the bench connections
  (performance_schema.threads, else information_schema.PROCESSLIST.TID), or the whole mariadbd
  process when neither tells (said so in the output). SQLite runs inside the app processes.
Each row also shows issue 15's goals for that endpoint, met or not; with --rounds N the whole set
runs N times (databases and servers alternating inside a round) and a last table counts, per goal,
the rounds that met it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench.webhooks import SERVERS, drop_database, free_port, fresh_database
from paycenter.db import Database, create_engine, utcnow
from paycenter.merchants import service as merchants

ROOT = Path(__file__).resolve().parents[1]
INIT_BODY = {"amount": 500, "currency": "KZT", "description": "bench", "metadata": {"order_id": "B-1"}}
DATABASES = ["sqlite", "postgresql", "mariadb"]
TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")
START_TIMEOUT = 60.0  # s for the server to answer /healthz: a loaded host imports slowly

INIT = "POST /api/payment/init"
PUBLIC_READ = "GET /api/payment/{id}"
STATUS_READ = "GET /api/payment/{id}/status"
# "Authenticated GET /api/payment/{id}" (issue 15) is the same public read sent with the merchant's
# X-API-Token, as merchants' servers poll their payments: limit_public_read (paycenter.deps) then
# hashes the token and looks it up (once a second per process, the limiter's vouching) to count the
# read against the token instead of the address. GET /api/transaction/{id} is another endpoint (the
# detailed view, ReadingMerchant, a token lookup every time) and is not what the goal names.
AUTH_READ = "GET /api/payment/{id} with X-API-Token"
FLOOR_INSERT = "floor: one INSERT"
FLOOR_SELECT = "floor: one SELECT"


@dataclass(frozen=True)
class Goal:
    """Issue 15's goals for one endpoint: app CPU per request, share of its floor's req/s, and p99
    at most P99_FACTOR times the floor's p99 in the same run."""

    floor: str
    cpu_ms: float
    share: float


P99_FACTOR = 1.5
GOALS = {
    INIT: Goal(FLOOR_INSERT, cpu_ms=0.8, share=0.75),
    PUBLIC_READ: Goal(FLOOR_SELECT, cpu_ms=0.35, share=0.85),
    STATUS_READ: Goal(FLOOR_SELECT, cpu_ms=0.35, share=0.85),
    AUTH_READ: Goal(FLOOR_SELECT, cpu_ms=0.45, share=0.85),
}


# --- CPU time from /proc -------------------------------------------------------------------------


def stat_ticks(path: str) -> int | None:
    """utime + stime, in clock ticks, from a /proc/.../stat file; None once the task is gone."""
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()  # the name may hold spaces
    except (OSError, IndexError):
        return None
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5); fields[0] is field 3


def process_tree(root: int) -> list[int]:
    """``root`` and every process under it (uvicorn's workers are its children)."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                ppid = int(Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children[ppid].append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def pids_named(*names: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if Path(entry.path, "comm").read_text().strip() in names:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@dataclass
class CpuProbe:
    """A set of /proc stat files whose CPU a figure sums: ``find`` names them (called before each
    wrk run), ``label`` says what they are."""

    label: str
    find: Callable[[], list[str]]
    paths: list[str] = field(default_factory=list)

    def start(self) -> dict[str, int]:
        self.paths = self.find()
        return self.sample()

    def sample(self) -> dict[str, int]:
        return {path: ticks for path in self.paths if (ticks := stat_ticks(path)) is not None}


def cpu_ms(before: dict[str, int], after: dict[str, int]) -> float:
    """CPU used between two samples. A task gone in between loses its share: none is while the
    workers and the pooled connections stay, which the bench's settings keep them doing."""
    return sum(ticks - before.get(path, 0) for path, ticks in after.items()) * TICK_MS


def app_probe(server: subprocess.Popen[bytes], name: str) -> CpuProbe:
    def find() -> list[str]:
        return [f"/proc/{pid}/stat" for pid in process_tree(server.pid)]

    return CpuProbe(f"{name}: its {len(find())} processes (master, workers, multiprocessing's helpers)", find)


async def _query(server_url: str, sql: str, **params: Any) -> list[Any]:
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            return list((await conn.execute(text(sql), params)).scalars())
    finally:
        await admin.dispose()


def postgres_probe(url: str) -> CpuProbe:
    name = make_url(url).database

    def find() -> list[str]:
        pids = asyncio.run(
            _query(SERVERS["postgresql"], "SELECT pid FROM pg_stat_activity WHERE datname = :name", name=name)
        )
        return [f"/proc/{pid}/stat" for pid in pids if Path(f"/proc/{pid}/stat").exists()]

    found = find()
    if not found:
        return CpuProbe("PostgreSQL: backends not visible in this /proc", lambda: [])
    return CpuProbe(f"PostgreSQL: the {len(found)} backends of the bench database", find)


async def _mariadb_threads(name: str) -> tuple[list[int], str]:
    server = SERVERS["mariadb"]
    try:
        tids = await _query(
            server, "SELECT THREAD_OS_ID FROM performance_schema.threads WHERE PROCESSLIST_DB = :name", name=name
        )
        if tids:
            return tids, "performance_schema.threads"
    except Exception:  # absent, or disabled (performance_schema=OFF, MariaDB's default): the next source
        pass
    tids = await _query(server, "SELECT TID FROM information_schema.PROCESSLIST WHERE DB = :name", name=name)
    return [t for t in tids if t], "information_schema.PROCESSLIST.TID"


def mariadb_probe(url: str) -> CpuProbe:
    name = make_url(url).database or ""
    servers = pids_named("mariadbd", "mysqld")
    source = ""

    def threads() -> list[str]:
        nonlocal source
        tids, source = asyncio.run(_mariadb_threads(name))
        return [
            f"/proc/{pid}/task/{tid}/stat"
            for tid in tids
            for pid in servers
            if Path(f"/proc/{pid}/task/{tid}").exists()
        ]

    found = threads()
    if found:
        return CpuProbe(f"MariaDB: the {len(found)} threads of the bench connections ({source})", threads)
    if servers:
        whole = [f"/proc/{pid}/stat" for pid in servers]
        return CpuProbe(
            "MariaDB: the WHOLE mariadbd process (no thread id per connection readable), others' queries included",
            lambda: whole,
        )
    return CpuProbe("MariaDB: server not visible in this /proc", lambda: [])


def database_probe(kind: str, url: str) -> CpuProbe | None:
    if kind == "postgresql":
        return postgres_probe(url)
    if kind == "mariadb":
        return mariadb_probe(url)
    return None  # SQLite works inside the app processes: its CPU is in the app's figure


# --- the server and wrk --------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "wrk"], check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    )
    return shutil.which("wrk") or "wrk"


def server_command(server: str, workers: int, port: int) -> list[str]:
    if server == "granian":
        return [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--workers", str(workers),
                "--loop", "uvloop", "--http", "1", "--no-ws", "--host", "127.0.0.1", "--port", str(port),
                "--log-level", "warning", "--no-access-log", "bench.floor_app:create"]  # fmt: skip
    return [sys.executable, "-m", "uvicorn", "bench.floor_app:create", "--factory", "--workers", str(workers),
            "--loop", "uvloop", "--http", "httptools", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--no-access-log"]  # fmt: skip


async def prepare(url: str) -> tuple[str, str]:
    db = Database(url)
    try:
        async with db.transaction() as session:
            merchant = await merchants.create_merchant(session, name="Bench", now=utcnow())
            issued = await merchants.issue_token(session, merchant_id=merchant.id, now=utcnow())
        async with db.engine.begin() as conn:
            await conn.execute(
                text(
                    "CREATE TABLE bench_floor (id VARCHAR(32) PRIMARY KEY, merchant_id VARCHAR(40), "
                    "amount BIGINT, created_at VARCHAR(40))"
                )
            )
            await conn.execute(text("INSERT INTO bench_floor VALUES ('FLOOR', 'm', 50000, '2026-01-01')"))
    finally:
        await db.dispose()
    return issued.secret, merchant.id


def request(url: str, *, method: str = "GET", body: dict[str, Any] | None = None, token: str | None = None) -> Any:
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-API-Token", token)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def wait_until_serving(server: subprocess.Popen[bytes], base: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}")
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=1)
            return
        except (OSError, urllib.error.URLError):
            time.sleep(0.2)
    raise RuntimeError(f"the server did not answer /healthz within {START_TIMEOUT:.0f} s")


@dataclass(frozen=True)
class Case:
    name: str
    url: str
    script: str | None  # wrk Lua script (method, body, headers); None: a plain GET


def lua(path: Path, *, method: str = "GET", body: dict[str, Any] | None = None, token: str | None = None) -> str:
    lines = [f'wrk.method = "{method}"', 'wrk.headers["Content-Type"] = "application/json"']
    if body is not None:
        lines.append(f"wrk.body = {json.dumps(json.dumps(body))}")
    if token:
        lines.append(f'wrk.headers["X-API-Token"] = "{token}"')
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def wrk(binary: str, case: Case, *, duration: int, connections: int) -> dict[str, float]:
    args = [binary, "-t2", f"-c{connections}", f"-d{duration}s", "--latency"]
    if case.script:
        args += ["-s", case.script]
    out = subprocess.run([*args, case.url], capture_output=True, text=True, check=True).stdout

    def number(pattern: str) -> float:
        found = re.search(pattern, out)
        return float(found.group(1)) if found else 0.0

    percentiles = {
        p: float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
        for p, value, unit in re.findall(r"\s(50|99)%\s+([\d.]+)(us|ms|s)", out)
    }
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests": number(r"(\d+) requests in"),
        "rps": number(r"Requests/sec:\s+([\d.]+)"),
        "p50": percentiles.get("50", 0.0),
        "p99": percentiles.get("99", 0.0),
        "non2xx": number(r"Non-2xx or 3xx responses: (\d+)"),
        "socket_errors": float(sum(int(n) for n in socket_errors.groups())) if socket_errors else 0.0,
    }


def pool_size(connections: int, workers: int) -> int:
    return -(-connections // workers)


def run(kind: str, server_name: str, args: argparse.Namespace) -> tuple[list[dict[str, Any]], str]:
    """One run: a fresh database, a server, every case; one row per case, and what the CPU covers."""
    binary = ensure_wrk()
    workdir = Path(tempfile.mkdtemp(prefix="paycenter-bench-api-"))
    url = asyncio.run(fresh_database(kind, workdir))
    token, _ = asyncio.run(prepare(url))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAYCENTER_", "GRANIAN_"))}
    env |= {
        "PAYCENTER_DATABASE_URL": url,
        "PAYCENTER_RUN_WORKER": "false",
        "PAYCENTER_LOG_LEVEL": "warning",
        # Rate limits out of the way: wrk is one address and one token at thousands a second.
        "PAYCENTER_RATE_LIMIT_TOKEN_PER_MINUTE": "0",
        "PAYCENTER_RATE_LIMIT_TOKEN_READS_PER_MINUTE": "0",
        "PAYCENTER_RATE_LIMIT_IP_PER_MINUTE": "0",
        # One pooled connection per request a process has in flight, as the setting's comment
        # advises: with fewer, the overflow ones are opened and closed per request.
        "PAYCENTER_DATABASE_POOL_SIZE": str(pool_size(args.connections, args.workers)),
        "PAYCENTER_DATABASE_MAX_OVERFLOW": "0",
        # This checkout's code, whatever the virtualenv's editable install points at.
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
    }
    server = subprocess.Popen(server_command(server_name, args.workers, port), env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(server, base)
        payment = request(f"{base}/api/payment/init", method="POST", body=INIT_BODY, token=token)["data"]
        pid = payment["transaction_id"]
        cases = [
            Case(
                INIT, f"{base}/api/payment/init", lua(workdir / "init.lua", method="POST", body=INIT_BODY, token=token)
            ),
            Case(FLOOR_INSERT, f"{base}/_floor/insert", lua(workdir / "floor.lua", method="POST", body={})),
            Case(PUBLIC_READ, f"{base}/api/payment/{pid}", None),
            Case(STATUS_READ, f"{base}/api/payment/{pid}/status", None),
            Case(AUTH_READ, f"{base}/api/payment/{pid}", lua(workdir / "auth_read.lua", token=token)),
            Case(FLOOR_SELECT, f"{base}/_floor/read/FLOOR", None),
        ]
        # Warm-up: every pooled connection opened (so the database probe finds them all), every
        # statement compiled once.
        for case in cases:
            wrk(binary, case, duration=2 if case.name == INIT else 1, connections=args.connections)
        app = app_probe(server, server_name)
        database = database_probe(kind, url)
        covers = f"app CPU: {app.label}; database CPU: {database.label if database else 'inside the app (SQLite)'}"
        rows = []
        for case in cases:
            app_before = app.start()
            db_before = database.start() if database else {}
            result = wrk(binary, case, duration=args.duration, connections=args.connections)
            app_after = app.sample()
            db_after = database.sample() if database else {}
            done = max(result["requests"], 1.0)
            rows.append(
                {
                    "db": kind,
                    "server": server_name,
                    "case": case.name,
                    **result,
                    "app_ms": cpu_ms(app_before, app_after) / done,
                    "db_ms": cpu_ms(db_before, db_after) / done if database else None,
                }
            )
        return rows, covers
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        asyncio.run(drop_database(kind, url))


# --- the tables ----------------------------------------------------------------------------------


def judge(rows: list[dict[str, Any]]) -> None:
    """Add each row's share of its floor and its goals' verdicts (True/False; None: no goal)."""
    by_case = {r["case"]: r for r in rows}
    for r in rows:
        goal = GOALS.get(r["case"])
        if goal is None:
            r |= {"share": None, "cpu_ok": None, "share_ok": None, "p99_ok": None, "p99_max": None}
            continue
        floor = by_case[goal.floor]
        r["share"] = r["rps"] / floor["rps"] if floor["rps"] else 0.0
        r["p99_max"] = floor["p99"] * P99_FACTOR
        r["cpu_ok"] = r["app_ms"] <= goal.cpu_ms
        r["share_ok"] = r["share"] >= goal.share
        r["p99_ok"] = r["p99"] <= r["p99_max"]


def verdict(ok: bool | None, goal: str) -> str:
    if ok is None:
        return ""
    return f"{goal}: met" if ok else f"{goal}: **not met**"


HEADER = (
    "| round | db | server | endpoint | req/s | p50 | p99 | non-2xx | share of floor | app CPU ms/req | "
    "db CPU ms/req | goal: app CPU | goal: share | goal: p99 |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def row_line(rnd: int, r: dict[str, Any]) -> str:
    goal = GOALS.get(r["case"])
    errors = f"{r['non2xx']:.0f}" + (f" (+{r['socket_errors']:.0f} socket)" if r["socket_errors"] else "")
    share = f"{r['share']:.0%}" if r["share"] is not None else ""
    db_ms = f"{r['db_ms']:.2f}" if r["db_ms"] is not None else "(in app)"
    cells = [
        str(rnd), r["db"], r["server"], r["case"], f"{r['rps']:.0f}", f"{r['p50']:.1f} ms", f"{r['p99']:.1f} ms",
        errors, share, f"{r['app_ms']:.2f}", db_ms,
        verdict(r["cpu_ok"], f"≤ {goal.cpu_ms:.2f}") if goal else "",
        verdict(r["share_ok"], f"≥ {goal.share:.0%}") if goal else "",
        verdict(r["p99_ok"], f"≤ {r['p99_max']:.0f} ms") if goal else "",
    ]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def summary(rounds: list[list[dict[str, Any]]]) -> None:
    """Per database, server and endpoint: CPU in each round, and the rounds that met each goal."""
    n = len(rounds)
    table: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for rows in rounds:
        for r in rows:
            table[(r["db"], r["server"], r["case"])].append(r)
    print(f"\nGoals met, out of {n} round{'s' if n > 1 else ''}:\n")
    print("| db | server | endpoint | app CPU ms/req per round | db CPU ms/req per round | app CPU | share | p99 |")
    print("|---|---|---|---|---|---|---|---|")
    for (db, server, case), rs in table.items():
        app = ", ".join(f"{r['app_ms']:.2f}" for r in rs)
        dbs = ", ".join(f"{r['db_ms']:.2f}" for r in rs if r["db_ms"] is not None) or "(in app)"
        counts = [
            f"{sum(bool(r[k]) for r in rs)}/{len(rs)}" if case in GOALS else ""
            for k in ("cpu_ok", "share_ok", "p99_ok")
        ]
        print(f"| {db} | {server} | {case} | {app} | {dbs} | " + " | ".join(counts) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=DATABASES, action="append", help="repeat for several (default: all three)")
    parser.add_argument("--server", choices=["uvicorn", "granian"], action="append", help="default: uvicorn")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per endpoint")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1, help="repeat the whole set, printing every round")
    args = parser.parse_args()
    servers = args.server or ["uvicorn"]
    if "granian" in servers and importlib.util.find_spec("granian") is None:
        parser.error("--server granian: granian is not installed (`.venv/bin/pip install granian`)")
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(
        f"API processes: {args.workers}, database pool {pool_size(args.connections, args.workers)} + 0 each; "
        f"wrk -t2 -c{args.connections} -d{args.duration}s on loopback; "
        f"load average {'/'.join(f'{x:.2f}' for x in os.getloadavg())} at start; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n",
        flush=True,
    )
    print(HEADER, flush=True)
    rounds = []
    covered: dict[str, str] = {}
    for rnd in range(1, args.rounds + 1):
        rows = []
        for kind in args.db or DATABASES:
            for server in servers:
                measured, covered[f"{kind}, {server}"] = run(kind, server, args)
                judge(measured)
                for r in measured:
                    print(row_line(rnd, r), flush=True)
                rows += measured
        rounds.append(rows)
    print("\nWhat the CPU figures cover (last round):\n")
    for run_name, covers in covered.items():
        print(f"- {run_name}: {covers}")
    summary(rounds)
    print(f"\nload average {'/'.join(f'{x:.2f}' for x in os.getloadavg())} at the end", flush=True)


if __name__ == "__main__":
    main()
