"""What the merchant API accepts and returns for payments.

Input keeps the old system's field names and accepts what it accepted (``amount`` as a number in
major units, ``metadata: []`` from PHP's ``json_encode`` of an empty array); everything is checked
here so that a bad request never reaches the database.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, WithJsonSchema, field_validator

from paycenter import contract, money, storable
from paycenter.envelope import RequestBody
from paycenter.payments.accounts import ACCOUNT_PATTERN, is_account
from paycenter.payments.models import METHOD_LEGACY_IDS
from paycenter.providers.kaspi_biller import NAME as KASPI_BILLER
from paycenter.webhooks import ssrf, wire

LANGUAGES = ("ru", "en", "kk")
METADATA_MAX_KEYS = 50
METADATA_MAX_KEY_LENGTH = 40
METADATA_MAX_VALUE_LENGTH = 500


def _amount(value: Any) -> Any:
    # The type only; the amount itself is read exactly (money.api_minor) against the currency,
    # which the body may name after it.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("amount must be a number or a string of digits")
    return value


AmountIn = Annotated[
    Any,  # kept as parsed: a JSON number is an ExactFloat that knows its text (money.ExactFloat)
    BeforeValidator(_amount),
    WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string"}]}),  # completed by docs.contract
    Field(
        description="Amount in major units of the currency, e.g. 500 or 500.50 for KZT: a JSON number, or a "
        'string in plain decimal notation ("500.50": ASCII digits and one dot, no sign, exponent or spaces). '
        "At most the currency's minor digits (KZT 2, JPY 0, KWD 3) and at most PAYCENTER_MAX_AMOUNT; "
        "the document lists the exact rule per currency.",
    ),
]


_METHOD_IDS = sorted(METHOD_LEGACY_IDS.values())
_METHOD_REFS = ["", *map(str, _METHOD_IDS), *METHOD_LEGACY_IDS]


def _method_ref(value: Any) -> int | str | None:
    """``payment_method_id``: the old system's numeric id (a number, or a string of digits as PHP
    clients send it too) or a method's code; null or "" for none. Exactly the documented values:
    whether the method is active is the service's check (a 422 before anything is written)."""
    if value is None or (isinstance(value, str) and value == ""):
        return None
    if isinstance(value, str) and value in _METHOD_REFS:
        return int(value) if value.isdigit() else value
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 5.0 is the integer 5 in JSON (and in JSON Schema)
    if isinstance(value, int) and not isinstance(value, bool) and value in _METHOD_IDS:
        return value
    raise ValueError(f"payment_method_id must be one of the ids {_METHOD_IDS} or a code of GET /api/payment-methods")


MethodRef = Annotated[
    Any,
    BeforeValidator(_method_ref),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "enum": _METHOD_IDS},
                {"type": "string", "enum": _METHOD_REFS},
                {"type": "null"},
            ]
        }
    ),
]


def _clean_text(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _php_int_problem(number: int) -> str | None:
    """Why PHP (and JavaScript) would read another number than this integer, or None.

    PHP's json_decode reads an integer past its 64-bit range as the nearest double: webhook bodies
    carry it so (``webhooks.wire``), to stay what PHP re-encodes. That is the same number only when
    the double is exact (``100000000000000000000``, as every JavaScript client writes 1e20);
    otherwise the merchant's ID would come back with other digits, so it is refused."""
    if wire.PHP_INT_MIN <= number <= wire.PHP_INT_MAX:
        return None
    as_float = wire.php_int_as_float(number)
    if as_float is not None and int(as_float) == number:
        return None
    text = str(number) if number.bit_length() < 200 else f"{str(number)[:20]}…"
    read = "Infinity" if as_float is None else wire.php_float(as_float)
    return (
        f"metadata integer {text} is outside PHP's integer range (±9223372036854775807) and PHP would "
        f"read it as {read}: send it as a string"
    )


def _metadata_rules(value: Any) -> None:
    """The metadata limits at every level, as the document states them (``metadata_schema``)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, int) and not isinstance(item, bool):
            if found := _php_int_problem(item):
                raise ValueError(found)
        elif isinstance(item, str):
            if len(item) > METADATA_MAX_VALUE_LENGTH:
                raise ValueError(f"metadata texts must be at most {METADATA_MAX_VALUE_LENGTH} characters")
        elif isinstance(item, dict):
            if level == 0 and len(item) > METADATA_MAX_KEYS:
                raise ValueError(f"metadata must have at most {METADATA_MAX_KEYS} keys")
            for key, inner in item.items():
                if len(key) > METADATA_MAX_KEY_LENGTH:
                    raise ValueError(f"metadata key {key[:20]!r}… is longer than {METADATA_MAX_KEY_LENGTH} characters")
                stack.append((inner, level + 1))
        elif isinstance(item, list):
            stack.extend((inner, level + 1) for inner in item)


def metadata_schemas() -> dict[str, dict[str, Any]]:
    """Components for metadata, one per nesting level: JSON Schema has no depth keyword, so level
    n's objects and arrays hold level n+1's values and the level past the deepest holds scalars.
    Each level is one schema whose keywords each concern one JSON type (no ``anyOf``), and counts
    are limited at the top only (the body's size bounds the rest): with a count limit at every
    level, a generator's negative case for it builds every level's largest value, and
    schemathesis ran out of 20 GB doing so."""
    key = {"maxLength": METADATA_MAX_KEY_LENGTH, "pattern": contract.TEXT_PATTERN}
    out: dict[str, dict[str, Any]] = {}
    for level in range(storable.MAX_DEPTH + 1, 1, -1):  # level 1 is the metadata object itself
        value: dict[str, Any] = {
            "type": ["string", "number", "boolean", "null"],
            "maxLength": METADATA_MAX_VALUE_LENGTH,
            "pattern": contract.TEXT_PATTERN,
        }
        if level <= storable.MAX_DEPTH:
            inner = {"$ref": f"#/components/schemas/MetadataValue{level + 1}"}
            value["type"] += ["array", "object"]
            value |= {"items": inner, "propertyNames": key, "additionalProperties": inner}
        out[f"MetadataValue{level}"] = value
    top = {
        "type": "object",
        "maxProperties": METADATA_MAX_KEYS,
        "propertyNames": key,
        "additionalProperties": {"$ref": "#/components/schemas/MetadataValue2"},
    }
    out["Metadata"] = {
        "anyOf": [top, {"type": "array", "maxItems": 0}, {"type": "null"}],
        "description": f"Free JSON object (order_id, user_id, ...): at most {METADATA_MAX_KEYS} keys; keys "
        f"of at most {METADATA_MAX_KEY_LENGTH} characters and texts of at most {METADATA_MAX_VALUE_LENGTH} "
        f"at every level; objects and arrays nested at most {storable.MAX_DEPTH} levels deep (the metadata "
        "object itself is the first); finite numbers only; no NUL characters. An empty array counts as "
        "no metadata. Webhooks carry it as PHP reads it, so that PHP's json_encode(json_decode($body, true)) "
        "gives back the signed bytes: numbers and texts keep their values, spelled as PHP spells them (100.0 "
        "as 100, 1e20 as 1.0e+20), and an object PHP takes for an array is sent as one ({} as [], an object "
        'keyed "0", "1", … in that order as a list). So an integer (a number '
        "written without a fraction or exponent) beyond ±9223372036854775807, which PHP reads as a float, "
        "is taken only when that float is the same number (100000000000000000000 is, "
        "12345678901234567891 is not): send such IDs as strings.",
    }
    return out


class PaymentInit(RequestBody):
    """Body of ``POST /api/payment/init``. Unknown fields are ignored, as the old system did.

    Its document is completed by ``paycenter.docs.contract``: the amount's rule per currency,
    the providers and webhook hosts this deployment takes, metadata's levels."""

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
            ],
            # An account is the Kaspi biller's alone (the service refuses it for other providers).
            "allOf": [
                {
                    "if": {"required": ["account"], "properties": {"account": {"type": "string"}}},
                    "then": {"required": ["provider"], "properties": {"provider": {"const": KASPI_BILLER}}},
                }
            ],
        },
    )

    # The currency before the amount: the amount's check reads it (``_amount_in_currency``).
    currency: str | None = Field(
        default="KZT", description="ISO 4217 code, in capitals or in small letters; KZT when omitted or null."
    )
    amount: AmountIn
    description: str | None = Field(default="", max_length=1000, description="null is the same as empty.")
    webhook_url: str | None = Field(default=None, max_length=500, description="http(s) URL, at most 500 characters.")
    webhook_secret: str | None = Field(
        default=None, max_length=64, description="Key of X-Webhook-Signature (HMAC-SHA256), ≤ 64 characters."
    )
    metadata: dict[str, Any] | list[Any] | None = Field(default=None)
    customer_phone: str | None = Field(default=None, max_length=32)
    customer_email: str | None = Field(default=None, max_length=254)
    customer_name: str | None = Field(default=None, max_length=200)
    expires_in: Annotated[int, Field(ge=10, le=30 * 24 * 3600), BeforeValidator(contract.json_int)] | None = Field(
        default=None, description="Seconds until the payment expires; 1 hour by default."
    )
    success_url: str | None = Field(default=None, max_length=2000, description="Where the payer returns after paying.")
    fail_url: str | None = Field(
        default=None, max_length=2000, description="Where the payer returns when the payment fails."
    )
    provider: str | None = Field(default=None, description="Payment provider; the merchant's default if omitted.")
    language: Literal["ru", "en", "kk"] | None = Field(default=None, description="Language of the payment page.")
    payment_method_id: MethodRef = Field(
        default=None,
        description="The payment method the payer will pay with (Kaspi Gold, credit, ...): its `id` or `code` from "
        "GET /api/payment-methods. The amount stays as sent: the method's fee, where the payer covers it, is "
        "added once, when the payer starts paying. An unknown or inactive method is refused.",
    )

    account: str | None = Field(
        default=None,
        description="Provider kaspi_biller only: the account number the payer types in the Kaspi app, your own "
        "(an order number), 1 to 20 digits. Refused with 409 `account_in_use` while it names another open "
        "payment of yours or any payment of another merchant; your closed payment's account is taken over. "
        "Omitted: paycenter generates one (digits with a check digit). The answer's `account` is the one to "
        "show the payer.",
        json_schema_extra={"pattern": ACCOUNT_PATTERN, "minLength": 1, "maxLength": 20},
    )

    @field_validator("account")
    @classmethod
    def _account(cls, value: str | None) -> str | None:
        if value is not None and not is_account(value):
            raise ValueError("account must be 1 to 20 digits (0-9)")
        return value

    @field_validator("currency", mode="before")
    @classmethod
    def _currency(cls, value: Any) -> str:
        try:
            return money.api_currency(value)
        except money.MoneyError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("amount")
    @classmethod
    def _amount_in_currency(cls, value: Any, info: ValidationInfo) -> Any:
        currency = info.data.get("currency")
        if currency is not None:  # else the currency's own error says what is wrong
            try:
                money.api_minor(value, currency)  # the maximum is the deployment's: see service
            except money.MoneyError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        return ssrf.readable_webhook_url(contract.check_url(value, field="webhook_url", max_length=500))

    @field_validator("success_url", "fail_url")
    @classmethod
    def _return_url(cls, value: str | None) -> str | None:
        return contract.check_url(value, field="return URL", max_length=2000)

    @field_validator("description", mode="after")
    @classmethod
    def _description(cls, value: str | None) -> str:
        return value or ""

    @field_validator("webhook_secret", "customer_phone", "customer_email", "customer_name")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return _clean_text(value)

    @field_validator("provider")
    @classmethod
    def _provider(cls, value: str | None) -> str | None:
        return value or None  # "" is none; the service checks the name against this deployment's list

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
        _metadata_rules(value)
        return value or None


class RefundRequest(RequestBody):
    model_config = ConfigDict(extra="ignore")

    amount: AmountIn | None = Field(
        default=None,
        description="Major units; the whole refundable sum if omitted. Finer than the payment's currency, or "
        "more than is left to refund, is a 409.",
    )
    reason: str = Field(default="", max_length=500)

    @field_validator("amount")
    @classmethod
    def _amount_text(cls, value: Any) -> Any:
        if value is not None:
            try:  # the grammar and bounds here; the payment's currency when it is locked (409)
                money.api_minor(value, money.FINEST_CURRENCY)
            except money.MoneyError as exc:
                raise ValueError(str(exc)) from None
        return value


class CancelRequest(RequestBody):
    model_config = ConfigDict(extra="ignore")

    reason: str = Field(default="", max_length=500)


# --- responses ----------------------------------------------------------------------------


def _account_out() -> Any:
    return Field(
        default=None,
        # Only where the payment has one: every other payment's answer is as it always was.
        exclude_if=lambda value: value is None,
        description="Provider kaspi_biller only (absent otherwise): the account number the payer types in the "
        "Kaspi app (Kaspi → Платежи → the service → account). Show it to the payer.",
    )


class PaymentCreated(BaseModel):
    transaction_id: str
    amount: str
    currency: str
    status: str
    expires_at: str
    payment_url: str
    account: str | None = _account_out()


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
    account: str | None = _account_out()


class AttemptOut(BaseModel):
    id: str
    provider: str
    amount: str
    status: str = Field(
        description="live, succeeded, failed, cancelled (by the payer; the payment stays payable) or expired."
    )
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
    return_qr_url: str | None = Field(
        default=None,
        description="Kaspi QR scheme r2: while the refund waits for the customer, the page showing the "
        "return QR they scan in Kaspi.kz (show or send it to them); null otherwise.",
    )
    manual: bool = Field(
        default=False,
        description="Recorded by an operator in the admin panel: the money went back outside paycenter (in "
        "the bank's cabinet), for a provider paycenter cannot refund through (the Kaspi biller, Kaspi QR r1).",
    )


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
