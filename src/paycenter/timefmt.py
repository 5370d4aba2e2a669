"""How times look on the wire: RFC 3339 in UTC with a trailing Z, to the second (``iso``); for the
``legacy`` API version, the old system's naive Asia/Almaty wall time (``almaty``)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# The old system's zone. zoneinfo knows its offsets: UTC+6 until 2024-03-01, UTC+5 since.
ALMATY = ZoneInfo("Asia/Almaty")


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)  # stored naive means UTC


def almaty(value: datetime | None) -> str | None:
    """``YYYY-MM-DD HH:MM:SS``, Almaty local time without an offset, as the old API wrote times."""
    if value is None:
        return None
    return _aware(value).astimezone(ALMATY).strftime("%Y-%m-%d %H:%M:%S")


def almaty_date(value: datetime) -> date:
    """The calendar day in Almaty that an instant falls on."""
    return _aware(value).astimezone(ALMATY).date()


def almaty_day_start(day: date) -> datetime:
    """The instant (UTC) an Almaty calendar day begins; the first and last days a datetime can
    hold are clamped to its range (0001-01-01 in Almaty began before year 1 in UTC)."""
    try:
        return datetime.combine(day, time(), tzinfo=ALMATY).astimezone(UTC)
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC) if day.year == 1 else datetime.max.replace(tzinfo=UTC)


def almaty_day_end(day: date) -> datetime:
    """The instant (UTC) an Almaty calendar day ends (the next day's start, excluded)."""
    try:
        return almaty_day_start(day + timedelta(days=1))
    except OverflowError:  # 9999-12-31 has no next day
        return datetime.max.replace(tzinfo=UTC)
