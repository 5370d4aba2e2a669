"""HTTP throughput of the merchant API beside a floor endpoint, same app, same driver, same run.

    python -m bench.api --db postgresql|sqlite [--workers 2] [--duration 10] [--connections 64]

Runs `uvicorn bench.floor_app:create` (paycenter plus two bench-only endpoints) with N worker
processes, then drives it with wrk (installed from Debian's packages if missing) on loopback:
- POST /api/payment/init (auth, validation, one INSERT through the service) vs POST /_floor/insert;
- GET /api/payment/{id} (the public read) vs GET /_floor/read/{id}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from sqlalchemy import text

from bench.webhooks import drop_database, free_port, fresh_database
from paycenter.db import Database, utcnow
from paycenter.merchants import service as merchants

ROOT = Path(__file__).resolve().parents[1]
INIT_BODY = {"amount": 500, "currency": "KZT", "description": "bench", "metadata": {"order_id": "B-1"}}


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "wrk"], check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    )
    return shutil.which("wrk") or "wrk"


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


def request(url: str, *, method: str = "GET", body: dict | None = None, token: str | None = None) -> dict:
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-API-Token", token)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def wrk(binary: str, url: str, *, duration: int, connections: int, script: str | None) -> dict[str, float]:
    args = [binary, "-t2", f"-c{connections}", f"-d{duration}s", "--latency"]
    if script:
        args += ["-s", script]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    percentiles = {}
    for p, value, unit in re.findall(r"\s(50|75|90|99)%\s+([\d.]+)(us|ms|s)", out):
        percentiles[p] = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50": percentiles.get("50", 0),
        "p99": percentiles.get("99", 0),
        "non2xx": float(errors.group(1)) if errors else 0,
    }


def lua_post(path: Path, body: dict, token: str | None) -> str:
    headers = 'wrk.headers["Content-Type"] = "application/json"\n'
    if token:
        headers += f'wrk.headers["X-API-Token"] = "{token}"\n'
    path.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(json.dumps(body))}\n{headers}')
    return str(path)


def pool_size(connections: int, workers: int) -> int:
    return -(-connections // workers)


def run(kind: str, workers: int, duration: int, connections: int) -> list[dict]:
    binary = ensure_wrk()
    workdir = Path(tempfile.mkdtemp(prefix="paycenter-bench-api-"))
    url = asyncio.run(fresh_database(kind, workdir))
    token, _ = asyncio.run(prepare(url))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYCENTER_")}
    env |= {
        "PAYCENTER_DATABASE_URL": url,
        "PAYCENTER_RUN_WORKER": "false",
        "PAYCENTER_LOG_LEVEL": "warning",
        "PAYCENTER_RATE_LIMIT_TOKEN_PER_MINUTE": "0",
        "PAYCENTER_RATE_LIMIT_IP_PER_MINUTE": "0",
        # One pooled connection per request a process has in flight, as the setting's comment
        # advises: with fewer, the overflow ones are opened and closed per request.
        "PAYCENTER_DATABASE_POOL_SIZE": str(pool_size(connections, workers)),
        "PAYCENTER_DATABASE_MAX_OVERFLOW": "0",
        "PYTHONPATH": str(ROOT),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.floor_app:create", "--factory", "--workers", str(workers),
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        env=env, cwd=ROOT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):  # bounded: ~20 s
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        payment = request(f"{base}/api/payment/init", method="POST", body=INIT_BODY, token=token)["data"]
        post_init = lua_post(workdir / "init.lua", INIT_BODY, token)
        post_floor = lua_post(workdir / "floor.lua", {}, None)
        wrk(binary, f"{base}/api/payment/init", duration=2, connections=connections, script=post_init)  # warm-up
        cases = [
            ("POST /api/payment/init", f"{base}/api/payment/init", post_init),
            ("floor: one INSERT", f"{base}/_floor/insert", post_floor),
            ("GET /api/payment/{id}", f"{base}/api/payment/{payment['transaction_id']}", None),
            ("floor: one SELECT", f"{base}/_floor/read/FLOOR", None),
        ]
        rows = []
        for name, target, script in cases:
            result = wrk(binary, target, duration=duration, connections=connections, script=script)
            rows.append({"db": kind, "case": name, **result})
        return rows
    finally:
        server.terminate()
        server.wait(timeout=30)
        asyncio.run(drop_database(kind, url))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], action="append")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(
        f"API processes: {args.workers}, database pool {pool_size(args.connections, args.workers)} + 0 each; "
        f"wrk -t2 -c{args.connections} -d{args.duration}s on loopback; load average {os.getloadavg()[0]:.2f}"
    )
    print("| db | endpoint | req/s | p50 | p99 | non-2xx | share of floor |")
    print("|---|---|---|---|---|---|---|")
    for kind in args.db or ["postgresql", "sqlite"]:
        rows = run(kind, args.workers, args.duration, args.connections)
        floors = {"POST /api/payment/init": rows[1]["rps"], "GET /api/payment/{id}": rows[3]["rps"]}
        for r in rows:
            share = f"{r['rps'] / floors[r['case']]:.0%}" if r["case"] in floors else ""
            print(
                f"| {r['db']} | {r['case']} | {r['rps']:.0f} | {r['p50']:.1f} ms | {r['p99']:.1f} ms | "
                f"{r['non2xx']:.0f} | {share} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
