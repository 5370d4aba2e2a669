"""Bank fees, in integer minor units.

The bank keeps ``p`` of the gross amount. When the payer covers the fee, an attempt asks
``remaining / (1 - p)`` rounded up to the currency's whole unit (what Kaspi charges in), so the
net after the fee covers what remains. The old system asked ``remaining * (1 + p)``, which nets
``remaining * (1 - p^2)``: about 2% short on 14% credit, so such payments never became paid.
"""

from __future__ import annotations

from paycenter.money import exponent

BP = 10_000  # basis points in a whole


def fee_of(gross: int, fee_bp: int) -> int:
    """The bank's fee on ``gross`` minor units, rounded half up."""
    return (gross * fee_bp + BP // 2) // BP


def gross_for(net: int, fee_bp: int, currency: str) -> int:
    """The smallest whole-unit gross whose net after the fee is at least ``net``."""
    unit: int = 10 ** exponent(currency)  # int ** int is typed Any (a negative power is a float)
    if fee_bp <= 0:
        return -(-net // unit) * unit
    gross = -(-(net * BP) // (BP - fee_bp))  # ceil(net / (1 - p))
    gross = -(-gross // unit) * unit  # up to a whole unit
    # The fee is rounded, so the exact quotient can be off by a unit either way: settle it.
    while gross - fee_of(gross, fee_bp) < net:
        gross += unit
    while gross > unit and (gross - unit) - fee_of(gross - unit, fee_bp) >= net:
        gross -= unit
    return gross


def ask_for(remaining: int, fee_bp: int, payer_covers_fee: bool, currency: str) -> int:
    """What an attempt asks the payer for."""
    if payer_covers_fee:
        return gross_for(remaining, fee_bp, currency)
    unit: int = 10 ** exponent(currency)  # int ** int is typed Any (a negative power is a float)
    return -(-remaining // unit) * unit
