"""Fee arithmetic: the payer covering the fee always nets at least what remains, never a unit more."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from paycenter.payments.fees import ask_for, fee_of, gross_for


def test_the_old_systems_shortfall_is_gone():
    # 100,000 KZT on 14% credit: the old base*(1+p) asked 114,000 and netted 98,040 (2% short).
    old_gross = 100_000_00 * 114 // 100
    assert old_gross - fee_of(old_gross, 1400) < 100_000_00
    gross = gross_for(100_000_00, 1400, "KZT")
    assert gross == 116_280_00  # 100000 / 0.86 = 116,279.07 -> whole tenge up
    assert gross - fee_of(gross, 1400) >= 100_000_00


@given(st.integers(min_value=1, max_value=10**12), st.integers(min_value=0, max_value=5000))
def test_gross_is_the_smallest_whole_unit_that_covers(net, fee_bp):
    gross = gross_for(net, fee_bp, "KZT")
    assert gross % 100 == 0
    assert gross - fee_of(gross, fee_bp) >= net
    smaller = gross - 100
    assert smaller <= 0 or smaller - fee_of(smaller, fee_bp) < net


def test_merchant_covers_the_fee():
    assert ask_for(50_050, 100, False, "KZT") == 50_100  # whole tenge up, no gross-up
    assert ask_for(50_000, 100, True, "KZT") == 50_600  # 500 / 0.99 = 505.05 -> 506
