"""Payments as the merchant API shows them: amounts as decimal strings, times in RFC 3339 UTC."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from paycenter import storable
from paycenter.money import to_major_str
from paycenter.payments.models import Attempt, Event, Operation, Payment, Refund
from paycenter.timefmt import iso


def payment_url(base_url: str, payment_id: str) -> str:
    return f"{base_url.rstrip('/')}/pay/{payment_id}"


def created(payment: Payment, base_url: str) -> dict[str, Any]:
    shown = {
        "transaction_id": payment.id,
        "amount": to_major_str(payment.amount, payment.currency),
        "currency": payment.currency,
        "status": payment.status,
        "expires_at": iso(payment.expires_at),
        "payment_url": payment_url(base_url, payment.id),
    }
    return _with_account(shown, payment.account)


def _with_account(shown: dict[str, Any], account: str | None) -> dict[str, Any]:
    # A Kaspi biller payment's account, which the merchant shows its payer; only where there is one,
    # so no other payment's answer changes (schemas: exclude_if).
    if account is not None:
        shown["account"] = account
    return shown


class Shown(Protocol):
    """What the public view reads of a payment: a ``Payment``, or the row of a read that selects
    only these columns (``service.get_public``)."""

    @property
    def id(self) -> str: ...
    @property
    def amount(self) -> int: ...
    @property
    def currency(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def description(self) -> str | None: ...
    @property
    def paid_amount(self) -> int: ...
    @property
    def remaining_amount(self) -> int: ...
    @property
    def refunded_amount(self) -> int: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def paid_at(self) -> datetime | None: ...
    @property
    def expires_at(self) -> datetime: ...
    @property
    def paid_late(self) -> bool: ...
    @property
    def account(self) -> str | None: ...


def public(payment: Shown, base_url: str) -> dict[str, Any]:
    cur = payment.currency
    shown = {
        "transaction_id": payment.id,
        "amount": to_major_str(payment.amount, cur),
        "currency": cur,
        "status": payment.status,
        "description": payment.description,
        "payment_url": payment_url(base_url, payment.id),
        "qr_code": None,
        "paid_amount": to_major_str(payment.paid_amount, cur),
        "remaining_amount": to_major_str(payment.remaining_amount, cur),
        "refunded_amount": to_major_str(payment.refunded_amount, cur),
        "created_at": iso(payment.created_at),
        "paid_at": iso(payment.paid_at),
        "expires_at": iso(payment.expires_at),
        "paid_late": payment.paid_late,
    }
    return _with_account(shown, payment.account)


def detail(payment: Payment, base_url: str) -> dict[str, Any]:
    cur = payment.currency
    return public(payment, base_url) | {
        "original_amount": to_major_str(payment.amount, cur),
        "actual_amount_received": to_major_str(payment.received_amount, cur),
        "fee_amount": to_major_str(payment.fee_amount, cur),
        "refundable_amount": to_major_str(payment.refundable_amount, cur),
        # Sanitized: a row stored before the edges refused NaN and lone surrogates must still read.
        "metadata": storable.sanitized(payment.metadata_) or {},
        "customer_phone": payment.customer_phone,
        "customer_email": payment.customer_email,
        "customer_name": payment.customer_name,
        "webhook_url": payment.webhook_url,
        # A column_property added after the class (payments/models.py): not among its annotations.
        "has_webhook_secret": bool(payment.has_webhook_secret),  # type: ignore[attr-defined]
        "success_url": payment.success_url,
        "fail_url": payment.fail_url,
        "language": payment.language,
        "provider": payment.provider,
        "cancelled_at": iso(payment.cancelled_at),
        "updated_at": iso(payment.updated_at),
    }


def attempt(a: Attempt, currency: str) -> dict[str, Any]:
    return {
        "id": a.id,
        "provider": a.provider,
        "amount": to_major_str(a.amount, currency),
        "status": a.status,
        "payment_method": a.payment_method,
        "error": a.error,
        "created_at": iso(a.created_at),
        "finished_at": iso(a.finished_at),
    }


def operation(o: Operation, currency: str) -> dict[str, Any]:
    return {
        "id": o.id,
        "provider": o.provider,
        "provider_transaction_id": o.provider_txn_id,
        "amount": to_major_str(o.amount, currency),
        "fee": to_major_str(o.fee, currency),
        "net": to_major_str(o.net, currency),
        "payment_method": o.payment_method,
        "created_at": iso(o.created_at),
    }


def refund(r: Refund, currency: str, return_qr_url: str | None = None) -> dict[str, Any]:
    return {
        "id": r.id,
        "transaction_id": r.payment_id,
        "amount": to_major_str(r.amount, currency),
        "refunded_amount": to_major_str(r.refunded_amount, currency),
        "reason": r.reason,
        "status": r.status,
        "error": r.error,
        "created_at": iso(r.created_at),
        "completed_at": iso(r.completed_at),
        "return_qr_url": return_qr_url,
        "manual": bool(r.manual),
    }


def event(e: Event) -> dict[str, Any]:
    return {"id": e.id, "type": e.type, "sequence": e.sequence, "created_at": iso(e.created_at)}
