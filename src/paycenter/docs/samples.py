"""Code samples for every operation of the OpenAPI document, made from the files in ``examples/``.

The single source is ``paycenter/docs/examples/`` (inside the package, so an installed wheel has it
too; the repository's ``docs/examples/`` only points here):

- ``<lang>/request.*.j2``: one Jinja template per language, filled in per operation with its
  method, path, path parameters (read from environment variables), query and body;
- ``operations.toml``: the query and body each operation's sample sends, or ``file = NAME`` for an
  operation whose sample is a complete example file (``<lang>/NAME.<ext>``), embedded as it is;
- ``<lang>/webhook_receiver.*``: the webhook receivers the guide at ``/docs/webhooks`` shows.

:func:`add_code_samples` puts them into the document as ``x-codeSamples`` (which Scalar renders).
tests/docs/test_examples.py runs the samples, taken from the served ``/openapi.json``, against a
running paycenter.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

EXAMPLES = Path(__file__).parent / "examples"


@dataclass(frozen=True)
class Language:
    key: str  # directory under examples/
    lang: str  # x-codeSamples "lang" (the highlighter's name)
    label: str  # what the reader sees
    ext: str  # extension of complete example files
    name: str  # the language alone (the webhook guide's tabs)


LANGUAGES = [
    Language("php", "php", "PHP (curl)", "php", "PHP"),
    Language("js", "javascript", "JavaScript (Node fetch)", "mjs", "JavaScript (Node)"),
    Language("python", "python", "Python (httpx)", "py", "Python"),
]
LANGUAGE = {lang.key: lang for lang in LANGUAGES}
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")


class ExamplesMissing(RuntimeError):
    """The example files are not where the package expects them (a broken install)."""


def example_path(relative: str) -> Path:
    path = EXAMPLES / relative
    if not path.is_file():
        raise ExamplesMissing(f"{path} is missing: paycenter's documentation examples were not installed with it")
    return path


def example_source(relative: str) -> str:
    """The text of one example file, e.g. ``python/webhook_receiver.py``."""
    return example_path(relative).read_text(encoding="utf-8")


# --- literals in each language --------------------------------------------------------------------

_JS_NAME = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_WIDTH = 80


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _scalar(value: Any, lang: str) -> str:
    if value is None:
        return {"python": "None", "js": "null", "php": "null"}[lang]
    if isinstance(value, bool):
        return {"python": repr(value), "js": str(value).lower(), "php": str(value).lower()}[lang]
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        if lang == "php":
            return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"no literal for {type(value).__name__} in a code sample")


def _key(key: str, lang: str) -> str:
    if lang == "js" and _JS_NAME.fullmatch(key):
        return key
    return _scalar(key, lang)


def literal(value: Any, lang: str, indent: int = 0) -> str:
    """``value`` (JSON data) as source code in ``lang``: one line when it fits, else one item a line."""
    step = 2 if lang == "js" else 4
    if isinstance(value, dict):
        if not value:
            return "(object) []" if lang == "php" else "{}"
        sep = " => " if lang == "php" else ": "
        items = [f"{_key(k, lang)}{sep}{literal(v, lang, indent + step)}" for k, v in value.items()]
        opening, closing = ("[", "]") if lang == "php" else ("{", "}")
        one_line = "{ " + ", ".join(items) + " }" if lang == "js" else opening + ", ".join(items) + closing
    elif isinstance(value, list):
        items = [literal(v, lang, indent + step) for v in value]
        opening, closing = "[", "]"
        one_line = "[" + ", ".join(items) + "]"
    else:
        return _scalar(value, lang)
    if indent + len(one_line) <= _WIDTH and "\n" not in one_line:
        return one_line
    inner = " " * (indent + step)
    return opening + "\n" + "".join(f"{inner}{item},\n" for item in items) + " " * indent + closing


def _js_path(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: "${" + _camel(m.group(1)) + "}", path)


def _php_path(path: str) -> str:
    return "{$baseUrl}" + re.sub(r"\{(\w+)\}", lambda m: "{$" + _camel(m.group(1)) + "}", path)


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(EXAMPLES),
        autoescape=False,  # code, not HTML
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["python"] = lambda value, indent=0: literal(value, "python", indent)
    env.filters["js"] = lambda value, indent=0: literal(value, "js", indent)
    env.filters["php"] = lambda value, indent=0: literal(value, "php", indent)
    env.filters["js_path"] = _js_path
    env.filters["php_path"] = _php_path
    return env


def _template_name(lang: Language) -> str:
    return f"{lang.key}/request.{lang.ext}.j2"


@cache
def operation_inputs() -> dict[str, dict[str, Any]]:
    """``operations.toml``: what each operation's sample sends, by ``"METHOD /path"``."""
    with example_path("operations.toml").open("rb") as f:
        return tomllib.load(f)


# --- one operation ------------------------------------------------------------------------------------


def sample_context(method: str, path: str, operation: dict[str, Any]) -> dict[str, Any]:
    """What a template gets for one operation."""
    inputs = operation_inputs().get(f"{method.upper()} {path}", {})
    params = operation.get("parameters", [])
    path_params = [
        {"name": p["name"], "env": p["name"].upper(), "camel": _camel(p["name"])} for p in params if p["in"] == "path"
    ]
    return {
        "method": method.upper(),
        "path": path,
        "summary": operation.get("summary") or operation.get("operationId", ""),
        "auth": bool(operation.get("security")),
        "idempotency": any(p["in"] == "header" and p["name"].lower() == "idempotency-key" for p in params),
        "path_params": path_params,
        "query": inputs.get("query"),
        "body": inputs.get("body"),
    }


def render(lang: Language, method: str, path: str, operation: dict[str, Any]) -> str:
    inputs = operation_inputs().get(f"{method.upper()} {path}", {})
    if "file" in inputs:
        return example_source(f"{lang.key}/{inputs['file']}.{lang.ext}")
    template = _environment().get_template(_template_name(lang))
    return template.render(sample_context(method, path, operation))


def code_samples(method: str, path: str, operation: dict[str, Any]) -> list[dict[str, str]]:
    return [
        {"lang": lang.lang, "label": lang.label, "source": render(lang, method, path, operation)} for lang in LANGUAGES
    ]


def add_code_samples(spec: dict[str, Any]) -> dict[str, Any]:
    """Give every operation of ``spec`` (changed in place and returned) its ``x-codeSamples``."""
    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                operation["x-codeSamples"] = code_samples(method, path, operation)
    return spec
