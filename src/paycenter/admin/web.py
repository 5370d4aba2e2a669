"""What every admin page shares: templates, texts, the logged-in operator, CSRF, rendering."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from paycenter import storable
from paycenter.admin import i18n, refusals
from paycenter.admin.i18n import LANGUAGES, translator
from paycenter.admin.queries import ALMATY
from paycenter.deps import Context
from paycenter.money import to_major_str
from paycenter.operators import service

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")


def codes(text: str) -> Markup:
    """A text of the panel with its `codes` (commands, settings' names, protocol fields) shown as
    code, marked as no words of any language (``translate="no"``); the rest escaped."""
    parts = str(escape(text)).split("`")
    return Markup("".join(f'<code translate="no">{p}</code>' if i % 2 else p for i, p in enumerate(parts)))


templates.env.filters["codes"] = codes
COOKIE = "pc_admin"
LANG_COOKIE = "pc_admin_lang"


class LoginRequired(Exception):
    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class PasswordChangeRequired(Exception):
    """The operator signed in with a one-time password: nothing but choosing their own until then."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class Forbidden(Exception):
    def __init__(self, message: str) -> None:
        self.message = message


class BadInput(Exception):
    """A URL or form the panel cannot take (a NUL character PostgreSQL would refuse, a lone
    surrogate no page can encode): answered with its reason, before any query runs."""

    def __init__(self, message: str, status_code: int = 422) -> None:
        self.message = message
        self.status_code = status_code


async def clean_path(request: Request) -> None:
    """Ids in an admin path ("%00" decodes to NUL) are looked up as they are: only text the
    database takes. (Query parameters are filters, checked by the page that shows their error.)"""
    found = storable.text_problem(request.url.path)
    if found:
        raise BadInput(f"path {found}", status_code=400)


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _here(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


async def signed_in_operator(request: Request, ctx: Context) -> service.Operator:
    """The operator of this browser's session, even one who must still replace a one-time password."""
    token = request.cookies.get(COOKIE)
    if token:
        async with ctx.db.transaction() as session:
            operator = await service.resume(session, token=token, now=ctx.now())
        if operator is not None:
            return operator
    raise LoginRequired(_here(request))


async def current_operator(request: Request, ctx: Context) -> service.Operator:
    """The operator, for every page and action: one still holding a one-time password is sent to
    choose their own first (a page to come back to afterwards; an action is not replayed)."""
    operator = await signed_in_operator(request, ctx)
    if operator.must_change_password:
        raise PasswordChangeRequired(_here(request) if request.method == "GET" else "/admin")
    return operator


Operator = Annotated[service.Operator, Depends(current_operator)]
# Only the password page and logout take this one.
SignedIn = Annotated[service.Operator, Depends(signed_in_operator)]


async def checked_form(request: Request, operator: service.Operator, *, act: bool = True) -> dict[str, str]:
    """The posted form, once its CSRF token matches this session's (and, for changes, the
    operator may act: viewers read only)."""
    form = await request.form()
    if not service.csrf_ok(operator, str(form.get("csrf_token") or "")):
        raise Forbidden("csrf")
    if act and not operator.can_act:
        raise Forbidden("viewer")
    fields = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    for name, value in fields.items():
        found = storable.text_problem(name) or storable.text_problem(value)
        if found:
            raise BadInput(f"{storable.clean_text(name)[:40]} {found}")
    return fields


def language(request: Request) -> str:
    for candidate in (request.query_params.get("lang"), request.cookies.get(LANG_COOKIE)):
        if candidate in LANGUAGES:
            return candidate
    return "ru"


def money(minor: int | None, currency: str) -> str:
    if minor is None:
        return "—"
    text = to_major_str(minor, currency)
    whole, _, fraction = text.partition(".")
    grouped = f"{int(whole):,}".replace(",", "\u202f")
    return f"{grouped}{'.' + fraction if fraction else ''} {currency}"


def when(value: Any) -> str:
    """Local (Almaty) time, as the panel's days, date filters and "resend failed since" count."""
    if value is None:
        return "—"
    return str(value.astimezone(ALMATY).strftime("%Y-%m-%d %H:%M:%S %Z"))


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    operator: service.Operator | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    lang = language(request)
    t = translator(lang)
    notice, error = flash(request, "notice"), flash(request, "error")
    response = templates.TemplateResponse(
        request,
        name,
        {
            "lang": lang,
            "t": t,
            "said": lambda message: said(message, lang),
            "operator": operator,
            "money": money,
            "when": when,
            "path": request.url.path,
            # A redirect carries a text's key, or a service's refusal in its own (English) words.
            "notice": notice and (t(notice) if i18n.text(notice, lang) is not None else notice),
            "error": error and said(error, lang),
            **context,
        },
        status_code=status_code,
        headers={
            "Cache-Control": "no-store",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "same-origin",
            "X-Content-Type-Options": "nosniff",
        },
    )
    if request.query_params.get("lang") == lang:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 24 * 3600, samesite="lax", httponly=True)
    return response


def _flash_signature(request: Request, kind: str, text: str) -> str:
    # Keyed with this browser's session cookie: a link made elsewhere cannot put words of its own
    # into the panel's notice bar, and any API process can check it.
    key = (request.cookies.get(COOKIE) or "").encode()
    return hmac.new(key, f"{kind}:{text}".encode(), hashlib.sha256).hexdigest()[:32]


def flash(request: Request, kind: str) -> str | None:
    """The notice or error a redirect carried, if this browser's own action signed it."""
    text = request.query_params.get(kind)
    signature = request.query_params.get("sig") or ""
    if text and request.cookies.get(COOKIE) and hmac.compare_digest(signature, _flash_signature(request, kind, text)):
        return text
    return None


def said(message: str, lang: str) -> str:
    """An error as the panel shows it: one of its own texts by key, or a service's refusal."""
    return translator(lang)(message) if i18n.text(message, lang) is not None else refusals.say(message, lang)


def back(request: Request, url: str, *, notice: str | None = None, error: str | None = None) -> RedirectResponse:
    """Redirect after an action, with a signed notice or error to show there: a text's key (said
    in the language of the page it lands on), or a service's refusal as the service wrote it."""
    kind, carried = ("notice", notice) if notice else ("error", error)
    if carried:
        sep = "&" if "?" in url else "?"
        url += f"{sep}{kind}={quote(carried)}&sig={_flash_signature(request, kind, carried)}"
    return RedirectResponse(url, status_code=303)
