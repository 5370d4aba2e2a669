"""What the merchant API accepts and returns for payments.

Input keeps the old system's field names and accepts what it accepted (``amount`` as a number in
major units, ``metadata: []`` from PHP's ``json_encode`` of an empty array); everything is checked
here so that a bad request never reaches the database.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from paycenter import money, storable
from paycenter.webhooks import ssrf

LANGUAGES = ("ru", "en", "kk")
METADATA_MAX_KEYS = 50
METADATA_MAX_KEY_LENGTH = 40
METADATA_MAX_VALUE_LENGTH = 500

T = TypeVar("T")


def _decimal(value: Any) -> Decimal:
    try:
        return money.to_decimal(value)
    except money.MoneyError as exc:
        raise ValueError(str(exc)) from None


def _amount_schema(schema: dict[str, Any]) -> None:
    # A string amount follows the parser's grammar: ASCII digits, a dot, an optional exponent.
    for branch in schema.get("anyOf", []):
        if branch.get("type") == "string":
            branch.update(pattern=money.AMOUNT_PATTERN, maxLength=money.AMOUNT_MAX_LENGTH)


AmountIn = Annotated[
    Decimal,
    BeforeValidator(_decimal),
    Field(
        description="Amount in major units of the currency, e.g. 500 or 500.50 for KZT: a JSON number or "
        "a string of ASCII digits with a dot for decimals (no spaces, underscores or other digits).",
        json_schema_extra=_amount_schema,
    ),
]


def check_http_url(value: str | None, *, field: str, max_length: int) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if len(value) > max_length:
        raise ValueError(f"{field} must be at most {max_length} characters")
    if any(ch.isspace() for ch in value):
        raise ValueError(f"{field} must not contain spaces")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"{field} is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"{field} must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError(f"{field} must include a host")
    return value


def _clean_text(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


class RequestBody(BaseModel):
    """A request body. Everything in it must be storable on every backend and renderable by every
    answer and page (``paycenter.storable``): no NUL characters (PostgreSQL cannot store them), no
    lone surrogates (no UTF-8 encoder takes them), finite numbers only (Python's JSON parser takes
    NaN, Infinity and 1e999), nesting at most ``storable.MAX_DEPTH`` deep. Refused here with a 422
    naming the field, the same on every backend, before anything is written; fields a body ignores
    are held to the same rule, so no such value passes by any name."""

    @model_validator(mode="before")
    @classmethod
    def _ignored_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, value in data.items():
                if key in cls.model_fields:
                    continue  # checked by _storable below, under its own name
                found = storable.problem(key) or storable.problem(value)
                if found:
                    raise ValueError(f"field {storable.clean_text(str(key))[:40]!r} {found}")
        return data

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: Any, info: ValidationInfo) -> Any:
        found = storable.problem(value)
        if found:
            raise ValueError(f"{info.field_name} {found}")
        return value


class PaymentInit(RequestBody):
    """Body of ``POST /api/payment/init``. Unknown fields are ignored, as the old system did."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "amount": 500,
                    "currency": "KZT",
                    "description": "Тестовый платеж",
                    "webhook_url": "https://example.com/webhooks/paycenter",
                    "webhook_secret": "test_secret_key",
                    "metadata": {"user_id": "12345", "order_id": "TEST-001"},
                }
            ]
        },
    )

    amount: AmountIn
    currency: str = Field(default="KZT", description="ISO 4217 code; KZT when omitted.")
    description: str = Field(default="", max_length=1000)
    webhook_url: str | None = Field(default=None, description="http(s) URL, at most 500 characters.")
    webhook_secret: str | None = Field(
        default=None, max_length=64, description="Key of X-Webhook-Signature (HMAC-SHA256), ≤ 64 characters."
    )
    metadata: dict[str, Any] | list[Any] | None = Field(
        default=None,
        description="Free JSON object (order_id, user_id, ...): ≤ 50 keys, keys ≤ 40 characters, "
        f"values ≤ 500 characters, objects and arrays nested at most {storable.MAX_DEPTH} levels deep "
        "(the metadata object itself is the first), finite numbers only, no NUL characters. "
        "An empty array counts as no metadata.",
    )
    customer_phone: str | None = Field(default=None, max_length=32)
    customer_email: str | None = Field(default=None, max_length=254)
    customer_name: str | None = Field(default=None, max_length=200)
    expires_in: int | None = Field(
        default=None, ge=10, le=30 * 24 * 3600, description="Seconds until the payment expires; 1 hour by default."
    )
    success_url: str | None = Field(default=None, description="Where the payer returns after paying.")
    fail_url: str | None = Field(default=None, description="Where the payer returns when the payment fails.")
    provider: str | None = Field(default=None, description="Payment provider; the merchant's default if omitted.")
    language: Literal["ru", "en", "kk"] | None = Field(default=None, description="Language of the payment page.")

    @field_validator("currency", mode="before")
    @classmethod
    def _currency(cls, value: Any) -> str:
        if value is None:
            return "KZT"
        try:
            return money.normalize_currency(value)
        except money.MoneyError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        return ssrf.readable_webhook_url(check_http_url(value, field="webhook_url", max_length=500))

    @field_validator("success_url", "fail_url")
    @classmethod
    def _return_url(cls, value: str | None) -> str | None:
        return check_http_url(value, field="return URL", max_length=2000)

    @field_validator("description", mode="before")
    @classmethod
    def _description(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("webhook_secret", "customer_phone", "customer_email", "customer_name", "provider")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return _clean_text(value)

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata_type(cls, value: Any) -> Any:
        # Checked before the dict|list union so the error names `metadata`, not a union member.
        if value is not None and not isinstance(value, dict | list):
            raise ValueError("metadata must be a JSON object")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any] | list[Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        if isinstance(value, list):
            if value:
                raise ValueError("metadata must be a JSON object")
            return None
        if len(value) > METADATA_MAX_KEYS:
            raise ValueError(f"metadata must have at most {METADATA_MAX_KEYS} keys")
        for key, item in value.items():
            if len(key) > METADATA_MAX_KEY_LENGTH:
                raise ValueError(f"metadata key {key[:20]!r}… is longer than {METADATA_MAX_KEY_LENGTH} characters")
            text = item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)
            if len(text) > METADATA_MAX_VALUE_LENGTH:
                raise ValueError(f"metadata value of {key!r} is longer than {METADATA_MAX_VALUE_LENGTH} characters")
        return value or None


class RefundRequest(RequestBody):
    model_config = ConfigDict(extra="ignore")

    amount: AmountIn | None = Field(default=None, description="Major units; the whole refundable sum if omitted.")
    reason: str = Field(default="", max_length=500)


class CancelRequest(RequestBody):
    model_config = ConfigDict(extra="ignore")

    reason: str = Field(default="", max_length=500)


# --- responses ----------------------------------------------------------------------------


class Envelope(BaseModel, Generic[T]):
    success: bool = True
    message: str
    data: T


class PaymentCreated(BaseModel):
    transaction_id: str
    amount: str
    currency: str
    status: str
    expires_at: str
    payment_url: str


class PaymentPublic(BaseModel):
    """What anyone holding the payment id may read (the payment page uses it)."""

    transaction_id: str
    amount: str
    currency: str
    status: str
    description: str
    payment_url: str
    qr_code: str | None
    paid_amount: str
    remaining_amount: str
    refunded_amount: str
    created_at: str
    paid_at: str | None
    expires_at: str
    paid_late: bool = Field(description="Money arrived after the payment had expired or been cancelled.")


class AttemptOut(BaseModel):
    id: str
    provider: str
    amount: str
    status: str
    payment_method: str | None
    error: str | None
    created_at: str
    finished_at: str | None


class OperationOut(BaseModel):
    id: str
    provider: str
    provider_transaction_id: str
    amount: str
    fee: str
    net: str
    payment_method: str | None
    created_at: str


class RefundOut(BaseModel):
    id: str
    transaction_id: str
    amount: str
    refunded_amount: str = Field(description="What went back so far (all of amount once succeeded).")
    reason: str
    status: str
    error: str | None
    created_at: str
    completed_at: str | None


class EventOut(BaseModel):
    id: str
    type: str
    sequence: int
    created_at: str


class PaymentDetail(PaymentPublic):
    """The merchant's own view: everything but the webhook secret."""

    original_amount: str
    actual_amount_received: str
    fee_amount: str
    refundable_amount: str
    metadata: dict[str, Any]
    customer_phone: str | None
    customer_email: str | None
    customer_name: str | None
    webhook_url: str | None
    has_webhook_secret: bool
    success_url: str | None
    fail_url: str | None
    language: str | None
    provider: str
    cancelled_at: str | None
    updated_at: str


class PaymentFull(PaymentDetail):
    attempts: list[AttemptOut]
    operations: list[OperationOut]
    refunds: list[RefundOut]
    events: list[EventOut]


class RefundResult(BaseModel):
    refund: RefundOut
    payment: PaymentDetail


class TransactionPage(BaseModel):
    items: list[PaymentDetail]
    has_more: bool
    next_cursor: str | None


class CurrencyTotals(BaseModel):
    currency: str
    count: int
    amount: str
    paid_amount: str
    refunded_amount: str
    net_amount: str = Field(description="Paid minus refunded.")


class Statistics(BaseModel):
    created_from: str | None
    created_to: str | None
    total_count: int
    by_status: dict[str, int]
    paid_conversion: float = Field(description="Share of payments that reached paid or refunded, 0..1.")
    currencies: list[CurrencyTotals]
