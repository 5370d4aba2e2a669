"""An operator in the admin panel over HTTP: users, login, CSRF-carrying actions, page text."""

from __future__ import annotations

import functools
import html
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from kit.clock import Clock
from paycenter.db import Database
from paycenter.operators import service as admins
from paycenter.operators.models import Role

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@functools.cache
def _hash_of(password: str) -> str:
    """An Argon2 hash costs ~0.17 s of CPU; the same operator names recur across tests, and a hash
    made once verifies as well as a fresh one (its salt is random either way)."""
    return admins.HASHER.hash(password)


@dataclass
class Operator:
    username: str
    password: str


async def new_user(db: Database, clock: Clock, username: str, role: Role, *, one_time: bool = False) -> Operator:
    """An operator as `paycenter admin create-user` makes one. Unless ``one_time``, also past their
    first login: the printed one-time password already replaced by one of their own."""
    async with db.transaction() as session:
        user, password = await admins.create_user(session, username=username, role=role, now=clock())
    if one_time:
        return Operator(username, password)
    chosen = f"{username}'s own password"
    async with db.transaction() as session:
        await admins.set_password(session, user_id=user.id, password_hash=_hash_of(chosen), now=clock())
    return Operator(username, chosen)


async def login(
    client: httpx.AsyncClient, who: Operator, *, password: str | None = None, **form: str
) -> httpx.Response:
    """Sign in as a browser does: fetch the form (its CSRF token and cookie), then post it."""
    page = await client.get("/admin/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text
    data = {
        "username": who.username,
        "password": who.password if password is None else password,
        "csrf_token": token.group(1),
        **form,
    }
    return await client.post("/admin/login", data=data)


async def signed_in(client: httpx.AsyncClient, who: Operator) -> httpx.AsyncClient:
    r = await login(client, who)
    assert r.status_code == 303, r.text
    return client


async def csrf_of(client: httpx.AsyncClient) -> str:
    r = await client.get("/admin/audit")
    assert r.status_code == 200, r.text
    match = CSRF.search(r.text)
    assert match, r.text
    return match.group(1)


async def act(client: httpx.AsyncClient, path: str, data: dict[str, str] | None = None) -> httpx.Response:
    """An admin action as the browser posts it: the form plus this session's CSRF token."""
    return await client.post(path, data={**(data or {}), "csrf_token": await csrf_of(client)})


def redirected_to(r: httpx.Response) -> str:
    assert r.status_code == 303, f"{r.status_code}: {r.text[:500]}"
    return r.headers["location"]


def flash(r: httpx.Response) -> dict[str, list[str]]:
    return parse_qs(urlsplit(redirected_to(r)).query)


def text_of(page: str) -> str:
    """Visible-ish text: tags dropped, entities decoded, every kind of space collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def by_testid(page: str, name: str) -> str:
    """The text of the element with this data-testid."""
    match = re.search(rf'<(\w+)[^>]*data-testid="{re.escape(name)}"[^>]*>(.*?)</\1>', page, re.S)
    assert match, f"no data-testid={name!r} in the page"
    return text_of(match.group(2))


@asynccontextmanager
async def admin_browser(app: Any, db: Database, clock: Any) -> AsyncIterator[httpx.AsyncClient]:
    operator = await new_user(db, clock, f"ops{secrets.token_hex(3)}", Role.ADMIN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pay.test") as client:
        yield await signed_in(client, operator)
