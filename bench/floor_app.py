"""The paycenter app plus two bench-only "floor" endpoints (never shipped in the package).

The floor is what the same process, framework and database driver do with the least possible
work per request: one bare INSERT (for payment init) or one SELECT by primary key (for a payment
read), no validation, no auth, no ORM. paycenter's own endpoints are measured against it in the
same run, so the ratio says what our code costs, whatever the machine.
"""

from __future__ import annotations

import secrets

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from paycenter.app import create_app


def create() -> FastAPI:
    app = create_app()
    db = app.state.ctx.db
    insert = text(
        "INSERT INTO bench_floor (id, merchant_id, amount, created_at) VALUES (:id, :merchant, :amount, :now)"
    )
    read = text("SELECT id, amount FROM bench_floor WHERE id = :id")
    # Reads as paycenter's own reads by id do (Database.read_row): a bare connection of the pool
    # kept for lone reads, in autocommit on server databases (no BEGIN, no ROLLBACK), a deferred
    # BEGIN on SQLite (the default BEGIN IMMEDIATE would take the write lock). The INSERT keeps
    # its transaction: every paycenter write must be able to carry its events.

    @app.post("/_floor/insert", include_in_schema=False)
    async def floor_insert() -> JSONResponse:
        row_id = secrets.token_hex(16).upper()
        async with db._write_turn(), db.engine.begin() as conn:  # SQLite: the same writer queue as ours
            await conn.execute(insert, {"id": row_id, "merchant": "m", "amount": 50000, "now": "2026-01-01"})
        return JSONResponse({"id": row_id}, status_code=201)

    @app.get("/_floor/read/{row_id}", include_in_schema=False)
    async def floor_read(row_id: str) -> JSONResponse:
        async with db.read_row() as conn:
            row = (await conn.execute(read, {"id": row_id})).one_or_none()
        return JSONResponse({"id": row[0], "amount": row[1]} if row else {}, status_code=200 if row else 404)

    @app.get("/_floor/nothing", include_in_schema=False)
    async def floor_nothing() -> JSONResponse:
        """No database at all: what uvicorn, FastAPI and paycenter's middlewares cost by themselves."""
        return JSONResponse({"ok": True})

    # First in the routing table, where the API's routers are: FastAPI tries routes in order, and
    # a route added after the admin's, the docs' and the pages' pays for matching all of them
    # first (at the end, the floor read cost more than paycenter's own read).
    floors = [route for route in app.router.routes if getattr(route, "path", "").startswith("/_floor/")]
    app.router.routes[:] = floors + [route for route in app.router.routes if route not in floors]
    return app
