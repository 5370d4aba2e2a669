"""Which log lines paycenter writes: text on a terminal, JSON lines elsewhere, or as set."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import sys
from collections.abc import Iterator

import pytest

from paycenter.config import Settings
from paycenter.observability import (
    REQUEST_ID,
    TRANSACTION_ID,
    JsonFormatter,
    TextFormatter,
    configure_logging,
    log_format_for,
)


@pytest.fixture
def terminal() -> Iterator[io.TextIOWrapper]:
    """A real terminal (a pseudo-terminal's end), as `make run` in a shell gives stderr."""
    leader, follower = pty.openpty()
    stream = os.fdopen(follower, "w")
    try:
        yield stream
    finally:
        stream.close()
        os.close(leader)


def test_auto_is_the_default_and_picks_text_on_a_terminal_and_json_elsewhere(terminal: io.TextIOWrapper) -> None:
    assert Settings(_env_file=None).log_format == "auto"  # type: ignore[call-arg]
    assert log_format_for("auto", terminal) == "text"
    assert log_format_for("auto", io.StringIO()) == "json"  # a pipe, a file, the journal
    closed = io.StringIO()
    closed.close()
    assert log_format_for("auto", closed) == "json"


def test_json_and_text_stay_as_set_whatever_the_output(terminal: io.TextIOWrapper) -> None:
    assert log_format_for("json", terminal) == "json"
    assert log_format_for("text", io.StringIO()) == "text"


def test_configure_logging_installs_the_chosen_formatter() -> None:
    def formatter_of(config: dict[str, object]) -> object:
        return config["formatters"]["default"]["()"]  # type: ignore[index]

    try:
        assert formatter_of(configure_logging("info", log_format="json")) is JsonFormatter
        assert formatter_of(configure_logging("info", log_format="text")) is TextFormatter
        # Under pytest stderr is captured, not a terminal: production's JSON.
        assert formatter_of(configure_logging("info", log_format="auto")) is JsonFormatter
    finally:
        configure_logging("info", log_format="json")


def _access_record() -> logging.LogRecord:
    record = logging.LogRecord("paycenter.access", logging.INFO, __file__, 1, "%s %s %s", ("GET", "/admin", 200), None)
    record.method, record.path, record.status = "GET", "/admin", 200
    record.duration_ms, record.client = 3.25, "127.0.0.1"
    return record


def test_a_text_line_has_time_level_logger_message_and_the_key_fields() -> None:
    token_r, token_t = REQUEST_ID.set("req-1"), TRANSACTION_ID.set("B59E9C5F")
    try:
        line = TextFormatter().format(_access_record())
        entry = json.loads(JsonFormatter().format(_access_record()))
    finally:
        REQUEST_ID.reset(token_r)
        TRANSACTION_ID.reset(token_t)
    assert "\n" not in line and "{" not in line
    when, level, rest = line.split(None, 2)
    assert len(when) == len("21:45:31.123") and when[2] == ":" and when[8] == "."
    assert level == "INFO"
    assert rest == (
        "paycenter.access: GET /admin 200  duration_ms=3.25 client=127.0.0.1 request_id=req-1 transaction_id=B59E9C5F"
    )
    # The JSON line of the same record carries the same facts, for machines.
    assert entry["message"] == "GET /admin 200" and entry["request_id"] == "req-1" and entry["status"] == 200


def test_colors_only_when_asked_and_a_traceback_follows_the_line() -> None:
    record = logging.LogRecord("paycenter.worker", logging.ERROR, __file__, 1, "loop failed", (), None)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    plain = TextFormatter().format(record)
    assert "\x1b[" not in plain
    first, *rest = plain.splitlines()
    assert first.endswith("ERROR   paycenter.worker: loop failed")
    assert rest[-1] == "RuntimeError: boom"
    assert "\x1b[31mERROR  \x1b[0m" in TextFormatter(color=True).format(record)
