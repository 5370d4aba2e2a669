"""The panel's texts in its three languages, and the dashboard chart's layout (no server)."""

from __future__ import annotations

import re
import string
from datetime import date, timedelta

import pytest

from paycenter.admin.chart import PLOT_HEIGHT, TOP, daily_chart, nice_ceiling
from paycenter.admin.i18n import LANGUAGES, TEXTS, translator
from paycenter.admin.kk import KK
from paycenter.admin.web import codes

KAZAKH_LETTERS = set("әғқңөұүһі")


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _codes(text: str) -> list[str]:
    return re.findall(r"`([^`]*)`", text)


def test_every_text_has_a_kazakh_one_and_kazakh_has_no_other() -> None:
    # A text added in the (ru, en) form only fails here until it is translated.
    assert sorted(set(TEXTS) - set(KK)) == []
    assert sorted(set(KK) - set(TEXTS)) == []


@pytest.mark.parametrize("key", sorted(TEXTS))
def test_the_three_texts_of_a_key_take_the_same_values_and_codes(key: str) -> None:
    ru, en = TEXTS[key]
    kk = KK[key]
    assert _fields(ru) == _fields(en) == _fields(kk), key
    assert sorted(_codes(ru)) == sorted(_codes(en)) == sorted(_codes(kk)), key
    assert ru.count("`") % 2 == 0 and kk.count("`") % 2 == 0 and en.count("`") % 2 == 0


def test_kazakh_is_kazakh_not_russian_copied() -> None:
    """A Kazakh text equal to the Russian one is a text nobody translated (words both languages
    share, such as "мс" or "Комиссия", are allowed); most texts use Kazakh-only letters."""
    same = sorted(k for k in TEXTS if KK[k] == TEXTS[k][0] and re.search(r"[а-яё]{3,}", KK[k], re.I))
    assert same == [], same
    with_kazakh_letters = [k for k in KK if KAZAKH_LETTERS & set(KK[k].lower())]
    assert len(with_kazakh_letters) > 0.8 * len(KK)


def test_every_payment_status_has_a_name() -> None:
    from paycenter.payments.models import PaymentStatus

    assert [s for s in PaymentStatus if f"status_{s}" not in TEXTS] == []


def test_the_translator_picks_the_language() -> None:
    assert LANGUAGES == ("ru", "kk", "en")
    assert [translator(lang)("refunds") for lang in LANGUAGES] == ["Возвраты", "Қайтарулар", "Refunds"]
    assert translator("kk")("resent_count", count=3) == "Қайта жіберілді: 3."
    assert translator("kk")("no such key") == "no such key"


def test_codes_are_shown_as_code_and_the_rest_escaped() -> None:
    shown = str(codes("run `paycenter <x>` & <b>"))
    assert shown == 'run <code translate="no">paycenter &lt;x&gt;</code> &amp; &lt;b&gt;'


# --- the chart -------------------------------------------------------------------------------


def _days(values: list[int]) -> list[tuple[date, dict[str, int]]]:
    start = date(2026, 11, 7)
    return [(start + timedelta(days=i), {"KZT": v} if v else {}) for i, v in enumerate(values)]


def test_an_empty_month_is_said_so_not_drawn_as_a_scale_of_nothing() -> None:
    chart = daily_chart(_days([0] * 30))
    assert chart.empty and chart.total == 0 and chart.peak is None
    assert chart.values == [] and chart.dates == []
    assert all(b.height == 0 for b in chart.bars)


def test_bars_scale_to_a_round_axis_with_dates_under_them() -> None:
    values = [0] * 30
    values[3], values[20], values[29] = 1_840_000, 4_620_000, 15_000  # 18 400, 46 200 and 150 KZT
    chart = daily_chart(_days(values))
    assert not chart.empty and chart.total == sum(values)
    assert chart.peak is not None and chart.peak.day == "2026-11-27"
    # The axis tops at 50 000 KZT, in four equal steps.
    assert [t.label for t in chart.values] == ["0", "12\u202f500", "25\u202f000", "37\u202f500", "50\u202f000"]
    heights = {b.day: b.height for b in chart.bars if b.value}
    assert heights["2026-11-27"] == pytest.approx(PLOT_HEIGHT * 46_200 / 50_000)
    assert heights["2026-11-10"] == pytest.approx(PLOT_HEIGHT * 18_400 / 50_000)
    assert heights["2026-12-06"] == 1.5  # a small day still shows
    assert all(b.y + b.height == TOP + PLOT_HEIGHT for b in chart.bars)  # standing on the axis
    assert sum(1 for b in chart.bars if b.height == 0) == 27
    # Today (the last bar) is labelled, and every fifth day before it.
    assert [t.label for t in chart.dates] == ["11.11", "16.11", "21.11", "26.11", "01.12", "06.12"]


@pytest.mark.parametrize(
    ("value", "ceiling"), [(1, 1), (7, 10), (11, 20), (2_100, 2_500), (4_620_000, 5_000_000), (50_000, 50_000)]
)
def test_round_ceilings(value: int, ceiling: int) -> None:
    assert nice_ceiling(value) == ceiling


# --- the browser test's judge of foreign words (tests/kit/languages.py), without a browser ------


def test_the_judge_finds_labels_of_another_language_and_lets_data_like_tokens_pass() -> None:
    from kit.languages import foreign

    ok_ru = ["Сводка · paycenter", "Оборот: 57 900.00 KZT", "Kaspi-ге", "API", "QR", "r1", "https://x.kz/a_b?c=d"]
    assert foreign("ru", ok_ru) == []
    assert foreign("ru", ["fee / net", "paid_at", "Оплачен", "30 d"]) == ["fee", "net", "paid_at", "d"]
    assert foreign("en", ["Fee / net", "Сумма", "12 KZT"]) == ["Сумма"]
    russian = ["Оборот по дням, KZT", "42 мс"]
    assert foreign("kk", ["Күндік айналым, KZT", "42 мс"], russian) == []
    assert foreign("kk", ["Оборот по дням", "Комиссия / есепке түседі"], [*russian, "Комиссия"]) == [
        "Оборот по дням",
        "Комиссия",
    ]
