"""Account numbers a payer types in the Kaspi app (provider kaspi_biller), and which payment each names.

Kaspi's request carries the account alone (shared/reference/kaspi.md §C), so an account names one
payment at a time (``BillerAccount``). Ours are random digits, the first not 0, and a Luhn check
digit, which catches every single mistyped digit and every swap of two adjacent digits but 09/90
(Luhn's own blind spot) before a payer pays the wrong payment. A merchant may give its own (its
order number) while no open payment has it; a closed payment's account is taken over by the new
payment only if both are the same merchant's: money Kaspi takes late for the old one then goes to
the same merchant's new payment, never to another merchant's. Part of the payments service: runs
in the caller's transaction and never commits.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from paycenter.errors import Conflict
from paycenter.payments.models import PAYABLE, BillerAccount, Payment

ACCOUNT_PATTERN = r"^[0-9]{1,20}$"  # a merchant's own, as the init body takes it
MAX_LENGTH = 20
_ACCOUNT = re.compile(r"[0-9]{1,20}\Z", re.ASCII)
# Generated accounts that clash with a row before one is free: with 10 digits about one in 10^9
# each, so running out means something else is wrong.
GENERATE_TRIES = 20


def is_account(value: str) -> bool:
    return _ACCOUNT.match(value) is not None


def luhn_digit(body: str) -> str:
    """The Luhn check digit that makes ``body`` + it a valid Luhn number."""
    total = 0
    for i, char in enumerate(reversed(body)):
        d = int(char)
        if i % 2 == 0:  # doubled: the rightmost of the body sits left of the check digit
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return len(number) >= 2 and number.isascii() and number.isdigit() and luhn_digit(number[:-1]) == number[-1]


def generate(digits: int) -> str:
    """A new account of ``digits`` digits: random ones from ``secrets``, the first not 0, then the check digit."""
    if digits < 2:
        raise ValueError("an account needs at least two digits")
    body = str(1 + secrets.randbelow(9)) + "".join(str(secrets.randbelow(10)) for _ in range(digits - 2))
    return body + luhn_digit(body)


class AccountInUse(Conflict):
    code = "account_in_use"


def _in_use(account: str) -> AccountInUse:
    # One answer for an open payment of this merchant and any payment of another: which of the two
    # it is, and that another merchant used the number, is none of this merchant's business.
    return AccountInUse(
        f"Account {account} is in use: it names an open payment of yours, or another merchant's payment",
        fields=[{"field": "account", "message": "in use"}],
    )


async def _insert(session: AsyncSession, *, account: str, payment_id: str, now: datetime) -> bool:
    """Insert the mapping in a savepoint; False if the account already has a row (a clash, or a
    concurrent init that inserted the same account first and committed)."""
    try:
        async with session.begin_nested():
            session.add(BillerAccount(account=account, payment_id=payment_id, created_at=now))
            await session.flush()
    except IntegrityError:
        return False
    return True


async def claim_own(session: AsyncSession, payment: Payment, *, account: str, now: datetime) -> None:
    """Make the merchant's own ``account`` name ``payment`` (new, in this transaction), or refuse
    with 409 ``account_in_use`` while it names an open payment, or any payment of another merchant.

    An open payment is pending, processing or partially paid and not past its time (money for one
    past it would be late money anyway). Taking over a closed payment's row happens under that
    row's lock, so two inits with the same account take turns: the second then finds the first's
    open payment and is refused. Two inits that both find no row both insert; the unique key lets
    one through, and the other, refused there (after the first committed), gets the 409 too."""
    found = await session.scalar(
        select(BillerAccount)
        .where(BillerAccount.account == account)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if found is None:
        if not await _insert(session, account=account, payment_id=payment.id, now=now):
            raise _in_use(account)
        return
    named = (
        await session.execute(
            select(Payment.status, Payment.expires_at, Payment.merchant_id).where(Payment.id == found.payment_id)
        )
    ).first()
    if named is not None and (
        named.merchant_id != payment.merchant_id or (named.status in PAYABLE and named.expires_at > now)
    ):
        raise _in_use(account)
    await session.execute(
        update(BillerAccount)
        .where(BillerAccount.account == account)
        .values(payment_id=payment.id, created_at=now)
        .execution_options(synchronize_session=False)
    )


async def claim_generated(session: AsyncSession, payment: Payment, *, digits: int, now: datetime) -> None:
    """Give ``payment`` (new, in this transaction, its ``account`` a generated candidate) a row for
    its account. A generated account never takes over a row: on a clash, another one is drawn."""
    account = payment.account
    for _ in range(GENERATE_TRIES):
        assert account is not None
        if await _insert(session, account=account, payment_id=payment.id, now=now):
            if account != payment.account:
                await session.execute(
                    update(Payment)
                    .where(Payment.id == payment.id)
                    .values(account=account)
                    .execution_options(synchronize_session=False)
                )
                set_committed_value(payment, "account", account)
            return
        account = generate(digits)
    raise RuntimeError(f"no free account of {digits} digits after {GENERATE_TRIES} tries")
