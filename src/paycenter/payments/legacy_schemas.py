"""Answers of the ``legacy`` API version: the old PHP system's shapes (shared/reference/legacy-api.md
§4), for ``/openapi-legacy.json`` and for the legacy renderers to be checked against.

The old system's types are kept as its merchants parse them: DECIMAL columns as strings
(``"1000.00"``), flags as the numbers 0 and 1, times as ``YYYY-MM-DD HH:MM:SS`` in Asia/Almaty
without an offset. What the old system got wrong and must not come back (§7) is left out:
``webhook_secret`` is in no answer. Objects are open (``extra="allow"``): a superset is fine for
old clients (DESIGN §2), so a field added later breaks no check.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# The old system's time format, naive Asia/Almaty local time.
LEGACY_TIME = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"
# A DECIMAL(12,2) column as PHP's PDO returns it.
LEGACY_DECIMAL = r"^-?\d+\.\d{2}$"

Time = Field(pattern=LEGACY_TIME, examples=["2026-03-01 14:05:00"])


def _decimal(example: str = "1000.00") -> Any:
    return Field(pattern=LEGACY_DECIMAL, examples=[example])


class LegacyModel(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- envelopes ---------------------------------------------------------------------------------


class LegacyErrorEnvelope(LegacyModel):
    """Every refusal: 400 for bad input, conflicts and most runtime errors (the old API had no 409
    or 422), 401, 404. ``error`` (a stable code) is ours, added; old clients ignore it."""

    success: Literal[False]
    message: str
    error: dict[str, Any] | None = None


class LegacyEmptyEnvelope(LegacyModel):
    """An answer with no data (cancel, track-visit)."""

    success: Literal[True]
    message: str = Field(examples=["Платеж отменен"])
    data: None


# --- POST /api/payment/init ---------------------------------------------------------------------


class LegacyPaymentCreated(LegacyModel):
    transaction_id: str = Field(pattern=r"^[0-9A-F]{32}$")
    amount: str = _decimal()
    currency: str
    status: Literal["pending"]
    expires_at: str = Time
    # Not in the old answer (its pages were /pay/{id}); added, as DESIGN §2 says.
    payment_url: str | None = None


class LegacyInitEnvelope(LegacyModel):
    success: Literal[True]
    message: str = Field(examples=["Платеж создан"])
    data: LegacyPaymentCreated


# --- GET /api/payment/{id} (and /status, which the old routing answered the same) ---------------


class LegacyPayment(LegacyModel):
    transaction_id: str
    amount: str = _decimal()
    currency: str
    status: str
    description: str | None
    payment_url: str | None
    qr_code: str | None
    paid_amount: str = _decimal("0.00")
    remaining_amount: str = _decimal()
    created_at: str = Time
    paid_at: str | None = Field(pattern=LEGACY_TIME)


class LegacyPaymentEnvelope(LegacyModel):
    success: Literal[True]
    message: str = Field(examples=["Success"])
    data: LegacyPayment


# --- GET /api/transactions ------------------------------------------------------------------------


class LegacyTransactionItem(LegacyModel):
    transaction_id: str
    amount: str = _decimal()
    original_amount: str = _decimal()
    paid_amount: str = _decimal()
    actual_amount_received: str = _decimal()
    remaining_amount: str = _decimal()
    currency: str
    status: str
    description: str | None
    metadata: Any = Field(description="As the merchant sent it, decoded; null when none.")
    created_at: str = Time
    paid_at: str | None = Field(pattern=LEGACY_TIME)
    expires_at: str | None = Field(pattern=LEGACY_TIME)


class LegacyTransactionPage(LegacyModel):
    transactions: list[LegacyTransactionItem] = Field(description="Newest first.")
    total: int
    limit: int = Field(description="The limit applied (default 100, at most 1000).")
    offset: int


class LegacyTransactionsEnvelope(LegacyModel):
    success: Literal[True]
    message: str
    data: LegacyTransactionPage


# --- GET /api/transaction/{id} ---------------------------------------------------------------------


class LegacyTransactionRow(LegacyModel):
    """The payment's row. The old answer had every column, ``webhook_secret`` among them: the
    secret is never returned (§7); the other columns the old clients read are here."""

    transaction_id: str
    amount: str = _decimal()
    original_amount: str = _decimal()
    currency: str
    status: str
    description: str | None
    customer_phone: str | None = None
    customer_email: str | None = None
    customer_name: str | None = None
    paid_amount: str = _decimal()
    actual_amount_received: str = _decimal()
    remaining_amount: str = _decimal()
    commission_amount: str | None = None
    webhook_url: str | None = None
    metadata: Any = None
    payment_url: str | None = None
    qr_code: str | None = None
    expires_at: str | None = Field(default=None, pattern=LEGACY_TIME)
    paid_at: str | None = Field(default=None, pattern=LEGACY_TIME)
    created_at: str = Time
    updated_at: str | None = Field(default=None, pattern=LEGACY_TIME)


class LegacyPartialPayment(LegacyModel):
    amount: str = _decimal()
    commission_percent: str = _decimal("1.00")
    commission_amount: str = _decimal("10.00")
    status: str
    is_refunded: Literal[0, 1]
    paid_at: str | None = Field(pattern=LEGACY_TIME)
    refunded_at: str | None = Field(pattern=LEGACY_TIME)


class LegacyWebhookLog(LegacyModel):
    event_type: str
    is_success: Literal[0, 1]
    response_code: int | None
    created_at: str = Time


class LegacyTransactionDetail(LegacyModel):
    transaction: LegacyTransactionRow
    partial_payments: list[LegacyPartialPayment] = Field(description="Oldest first.")
    webhook_logs: list[LegacyWebhookLog] = Field(description="Newest first.")


class LegacyTransactionEnvelope(LegacyModel):
    success: Literal[True]
    message: str
    data: LegacyTransactionDetail


# --- GET /api/statistics ------------------------------------------------------------------------------


class LegacyPeriod(LegacyModel):
    from_: str = Field(alias="from", pattern=r"^\d{4}-\d{2}-\d{2}$")
    to: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")


class LegacySummary(LegacyModel):
    total_transactions: int
    paid_count: int
    partially_paid_count: int
    cancelled_count: int
    total_paid_amount: float
    total_received_amount: float
    total_commission: float
    refund_count: int
    refunded_amount: float


class LegacyMethodTotals(LegacyModel):
    payment_method: str | None = Field(description="The method's name.")
    count: int
    total_amount: str = _decimal()
    total_commission: str = _decimal("10.00")


class LegacyCreditInstallment(LegacyModel):
    # Sums from the database like by_payment_method's (legacy-api.md gives no type): decimal strings.
    count: int
    total_amount: str = _decimal()
    total_commission: str = _decimal("0.00")


class LegacyStatistics(LegacyModel):
    period: LegacyPeriod
    summary: LegacySummary
    by_payment_method: list[LegacyMethodTotals]
    credit_installment: LegacyCreditInstallment


class LegacyStatisticsEnvelope(LegacyModel):
    success: Literal[True]
    message: str
    data: LegacyStatistics


# --- GET /api/payment-methods[/active] ----------------------------------------------------------------


class LegacyPaymentMethod(LegacyModel):
    id: int
    code: str = Field(examples=["kaspi_gold"])
    name: str
    type: str | None
    provider: str | None
    country_id: int | None
    allowed_countries: str | None = Field(description='A string of JSON, such as "[1, 2, 3]", or null.')
    payment_currency: str | None
    icon_url: str | None
    icon_emoji: str | None
    commission_percent: str = _decimal("1.00")
    credit_commission_percent: str = _decimal("14.00")
    installment_commission_percent: str = _decimal("14.00")
    has_credit: Literal[0, 1]
    has_installment: Literal[0, 1]
    add_commission_to_amount: Literal[0, 1]
    sort_order: int
    installment_months: int | None


class LegacyPaymentMethodsEnvelope(LegacyModel):
    success: Literal[True]
    message: str
    data: list[LegacyPaymentMethod] = Field(description="Active methods, by sort_order then id.")


# --- POST /api/payment/{id}/kaspi ------------------------------------------------------------------------


class LegacyKaspiStart(LegacyModel):
    transaction_id: str = Field(description="As sent.")
    amount: float | str = Field(description="A number when a fee was added, else remaining_amount as a string.")
    original_amount: str = _decimal()
    commission_amount: float = Field(description="0 when there is no fee.")
    commission_percent: str = _decimal("1.00")
    payment_url: str | None = Field(description="The Kaspi pay link (the QR text on pay.kaspi.kz/pay).")
    qr_code: str | None
    terminal_id: int | None = Field(description="The Kaspi terminal's id; null when no terminal serves the try.")


class LegacyKaspiEnvelope(LegacyModel):
    success: Literal[True]
    message: str = Field(examples=["Платеж инициирован"])
    data: LegacyKaspiStart


LEGACY_MODELS: tuple[type[BaseModel], ...] = (
    LegacyErrorEnvelope,
    LegacyEmptyEnvelope,
    LegacyInitEnvelope,
    LegacyPaymentEnvelope,
    LegacyTransactionsEnvelope,
    LegacyTransactionEnvelope,
    LegacyStatisticsEnvelope,
    LegacyPaymentMethodsEnvelope,
    LegacyKaspiEnvelope,
)
