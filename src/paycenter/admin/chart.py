"""The dashboard's daily volume chart, laid out here and drawn by the template as inline SVG
(no chart library, nothing from a CDN): one bar a day, a value axis with round figures, a date
every few days, and no bars at all (a sentence instead) for a month without money."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from paycenter.money import to_major_str

# The drawing's own units (the SVG scales to the card's width, keeping its proportions).
LEFT = 64  # room for the value axis's figures
TOP = 10
PLOT_HEIGHT = 140
BAR_STEP = 20
BAR_WIDTH = 14
BOTTOM = 24  # room for the dates
TICKS = 4  # value lines above zero


@dataclass(frozen=True)
class Bar:
    day: str  # ISO date, for the tooltip and tests
    value: int  # minor units
    x: float
    y: float
    height: float


@dataclass(frozen=True)
class Tick:
    at: float  # y for a value line, x for a date
    label: str


@dataclass(frozen=True)
class Chart:
    currency: str
    bars: list[Bar]
    values: list[Tick] = field(default_factory=list)
    dates: list[Tick] = field(default_factory=list)
    total: int = 0
    peak: Bar | None = None
    width: int = 0
    height: int = TOP + PLOT_HEIGHT + BOTTOM
    plot_bottom: int = TOP + PLOT_HEIGHT
    left: int = LEFT
    bar_width: int = BAR_WIDTH

    @property
    def empty(self) -> bool:
        return self.total == 0


def nice_ceiling(value: int) -> int:
    """The smallest round figure (1, 2, 2.5 or 5 times a power of ten) at or above ``value``,
    so that the axis reads 0, 25 000, 50 000... and not 0, 23 117, 46 234..."""
    if value <= 0:
        return 0
    power = 1
    while power * 10 <= value:
        power *= 10
    for step in (1, 2, 2.5, 5, 10):
        candidate = int(step * power)
        if candidate >= value:
            return candidate
    return 10 * power  # pragma: no cover - the loop always returns


def _figure(minor: int, currency: str) -> str:
    """A value axis figure: whole major units, grouped with thin spaces (the currency is in the title)."""
    whole = to_major_str(minor, currency).partition(".")[0]
    return f"{int(whole):,}".replace(",", "\u202f")


def daily_chart(daily: list[tuple[date, dict[str, int]]], currency: str = "KZT") -> Chart:
    totals = [(day, volumes.get(currency, 0)) for day, volumes in daily]
    total = sum(v for _, v in totals)
    width = LEFT + BAR_STEP * len(totals) + 4
    if total == 0:
        bars = [Bar(day.isoformat(), 0, LEFT + i * BAR_STEP, TOP + PLOT_HEIGHT, 0) for i, (day, _) in enumerate(totals)]
        return Chart(currency, bars, width=width)
    top = nice_ceiling(max(v for _, v in totals))
    bars = []
    for i, (day, v) in enumerate(totals):
        h = v / top * PLOT_HEIGHT
        # A day with money gets a visible bar, however small next to the best day.
        h = max(h, 1.5) if v else 0
        bars.append(Bar(day.isoformat(), v, LEFT + i * BAR_STEP + (BAR_STEP - BAR_WIDTH) / 2, TOP + PLOT_HEIGHT - h, h))
    values = [
        Tick(TOP + PLOT_HEIGHT - PLOT_HEIGHT * k / TICKS, _figure(top * k // TICKS, currency)) for k in range(TICKS + 1)
    ]
    # A date under every fifth bar counted back from today's (the last), so today is always labelled.
    last = len(totals) - 1
    dates = [
        Tick(LEFT + i * BAR_STEP + BAR_STEP / 2, day.strftime("%d.%m"))
        for i, (day, _) in enumerate(totals)
        if (last - i) % 5 == 0
    ]
    peak = max(bars, key=lambda b: b.value)
    return Chart(currency, bars, values, dates, total, peak, width=width)
