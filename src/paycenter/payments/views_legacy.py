"""Payments as the ``legacy`` API version shows them (``shared/reference/legacy-api.md``): the old
PHP system's shapes and key order, amounts as decimal strings (its DECIMAL columns) or numbers (its
PHP sums), times as naive Asia/Almaty ``YYYY-MM-DD HH:MM:SS``, empty text as ``null``.

Pure functions of what the domain holds; ``views`` is the current version's renderer. Never shown:
the webhook secret or any other internal column (the old API's defect, DESIGN §7 of issue 13).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from paycenter import storable
from paycenter.money import exponent, to_major_str
from paycenter.payments import views
from paycenter.payments.models import Payment
from paycenter.payments.queries import LegacyTotals, MethodTotals, PaidPart, WebhookTry
from paycenter.timefmt import almaty

# Messages the old API answered with (its clients may show or match them).
CREATED = "Платеж создан"
CANCELLED = "Платеж отменен"
NOT_FOUND = "Транзакция не найдена"
PAID_CANNOT_CANCEL = "Нельзя отменить оплаченную транзакцию"
TRANSACTION_NOT_FOUND = "Transaction not found"
SUCCESS = "Success"

PUBLIC_KEYS = (
    "transaction_id",
    "amount",
    "currency",
    "status",
    "description",
    "payment_url",
    "qr_code",
    "paid_amount",
    "remaining_amount",
    "created_at",
    "paid_at",
)

# The methods whose money the old statistics counted as credit and instalments.
CREDIT_METHODS = ("kaspi_credit", "kaspi_installment_12", "kaspi_installment_24")


def _text(value: str | None) -> str | None:
    return value or None


def _metadata(payment: Payment) -> Any:
    # Sanitized: a row stored before the edges refused NaN and lone surrogates must still read.
    return storable.sanitized(payment.metadata_) or None


def created(payment: Payment, base_url: str) -> dict[str, Any]:
    # The old answer had no payment_url (the page was /pay/{id}); a superset is fine. The Kaspi
    # biller's account is the current version's: the old answers keep their keys.
    shown = views.created(payment, base_url) | {"expires_at": almaty(payment.expires_at)}
    shown.pop("account", None)
    return shown


def public(payment: views.Shown, base_url: str) -> dict[str, Any]:
    """The current public view cut to the old keys, in their order, with the old formats."""
    shown = views.public(payment, base_url)
    return {key: shown[key] for key in PUBLIC_KEYS} | {
        "description": _text(payment.description),
        "created_at": almaty(payment.created_at),
        "paid_at": almaty(payment.paid_at),
    }


def list_item(payment: Payment) -> dict[str, Any]:
    cur = payment.currency
    return {
        "transaction_id": payment.id,
        "amount": to_major_str(payment.amount, cur),
        "original_amount": to_major_str(payment.amount, cur),
        "paid_amount": to_major_str(payment.paid_amount, cur),
        "actual_amount_received": to_major_str(payment.received_amount, cur),
        "remaining_amount": to_major_str(payment.remaining_amount, cur),
        "currency": cur,
        "status": payment.status,
        "description": _text(payment.description),
        "metadata": _metadata(payment),
        "created_at": almaty(payment.created_at),
        "paid_at": almaty(payment.paid_at),
        "expires_at": almaty(payment.expires_at),
    }


def transaction(payment: Payment, base_url: str) -> dict[str, Any]:
    """The old ``transactions`` row, column by column where paycenter has the column; never
    ``webhook_secret``, the merchant's id or anything else internal."""
    cur = payment.currency
    return {
        "transaction_id": payment.id,
        "amount": to_major_str(payment.amount, cur),
        "original_amount": to_major_str(payment.amount, cur),
        "currency": cur,
        "description": _text(payment.description),
        "customer_phone": payment.customer_phone,
        "customer_email": payment.customer_email,
        "customer_name": payment.customer_name,
        "status": payment.status,
        "paid_amount": to_major_str(payment.paid_amount, cur),
        "actual_amount_received": to_major_str(payment.received_amount, cur),
        "remaining_amount": to_major_str(payment.remaining_amount, cur),
        "commission_amount": to_major_str(payment.fee_amount, cur),
        "webhook_url": payment.webhook_url,
        "metadata": _metadata(payment),
        "payment_url": views.payment_url(base_url, payment.id),
        "qr_code": None,
        "expires_at": almaty(payment.expires_at),
        "paid_at": almaty(payment.paid_at),
        "created_at": almaty(payment.created_at),
        "updated_at": almaty(payment.updated_at),
    }


def _percent(part: int, whole: int) -> str:
    if whole <= 0:
        return "0.00"
    return str((Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.01")))


def partial_payment(part: PaidPart, currency: str) -> dict[str, Any]:
    op = part.operation
    refunded = part.refunded >= op.amount > 0
    return {
        "amount": to_major_str(op.amount, currency),
        "commission_percent": _percent(op.fee, op.amount),
        "commission_amount": to_major_str(op.fee, currency),
        "status": "refunded" if refunded else "completed",
        "is_refunded": int(refunded),
        "paid_at": almaty(op.created_at),
        "refunded_at": almaty(part.refunded_at) if part.refunded else None,
    }


def webhook_log(t: WebhookTry) -> dict[str, Any]:
    return {
        "event_type": t.event_type,
        "is_success": int(t.succeeded),
        "response_code": t.response_code,
        "created_at": almaty(t.created_at),
    }


def _major(minor: int, currency: str) -> Decimal:
    try:
        exp = exponent(currency)
    except ValueError:
        exp = 2
    return Decimal(minor).scaleb(-exp)


def _number(value: Decimal) -> int | float:
    """A PHP-computed amount: a number, its zero fraction dropped (1010.0 -> 1010)."""
    return int(value) if value == value.to_integral_value() else float(value)


def statistics(
    date_from: date, date_to: date, totals: list[LegacyTotals], refund_count: int, methods: list[MethodTotals]
) -> dict[str, Any]:
    def total(field: str) -> int | float:
        return _number(sum((_major(getattr(t, field), t.currency) for t in totals), Decimal(0)))

    credit = [m for m in methods if m.code in CREDIT_METHODS]
    return {
        "period": {"from": date_from.isoformat(), "to": date_to.isoformat()},
        "summary": {
            "total_transactions": sum(t.count for t in totals),
            "paid_count": sum(t.paid_count for t in totals),
            "partially_paid_count": sum(t.partially_paid_count for t in totals),
            "cancelled_count": sum(t.cancelled_count for t in totals),
            "total_paid_amount": total("paid_amount"),
            "total_received_amount": total("received_amount"),
            "total_commission": total("fee_amount"),
            "refund_count": refund_count,
            "refunded_amount": total("refunded_amount"),
        },
        "by_payment_method": [
            {
                "payment_method": m.name or m.code,
                "count": m.count,
                "total_amount": to_major_str(m.amount, m.currency),
                "total_commission": to_major_str(m.fee, m.currency),
            }
            for m in methods
        ],
        "credit_installment": {
            "count": sum(m.count for m in credit),
            "total_amount": _sum_str(credit, "amount"),
            "total_commission": _sum_str(credit, "fee"),
        },
    }


def _sum_str(methods: list[MethodTotals], field: str) -> str:
    value = sum((_major(getattr(m, field), m.currency) for m in methods), Decimal(0))
    return str(value.quantize(Decimal("0.01")))
