"""Provider capabilities (providers/base.py): each provider has exactly the capabilities it is meant to,
with the Protocol's own signatures, and the code that asks for one takes the path without it.

``isinstance`` against a runtime-checkable Protocol checks only that the names exist; mypy checks the
calls. The signature comparison here catches a provider whose method drifted from its capability,
which would otherwise only show as a wrong call at run time.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import pytest

from paycenter.config import Settings
from paycenter.db import Database
from paycenter.payments import refunds
from paycenter.providers import base, registry
from paycenter.providers.base import ClearsTerminal, KeepsTokens, RefundLegRef, RemembersTerminals, ReportsReturns
from paycenter.providers.terminals import TokenStore

# Every capability a registered provider is meant to have: a provider gaining or losing one must say so here.
EXPECTED: dict[str, set[type]] = {
    "sandbox": set(),
    "kaspi_qr": {ReportsReturns},
    "kaspi_pos": {ClearsTerminal, KeepsTokens, RemembersTerminals},
    "kaspi_biller": set(),
}


def capabilities() -> list[type]:
    """Every runtime-checkable Protocol in providers/base.py, so a new capability is not missed."""
    found = [value for value in vars(base).values() if isinstance(value, type) and value.__module__ == base.__name__]
    return [value for value in found if getattr(value, "_is_runtime_protocol", False)]


@pytest.fixture
async def providers() -> AsyncIterator[registry.Providers]:
    """Every known provider, built as the app builds them (none is called)."""
    settings = Settings(  # type: ignore[call-arg]  # pydantic-settings' _env_file
        _env_file=None,
        enabled_providers=",".join(registry.KNOWN),
        kaspi_qr_base_url="http://127.0.0.1:9",  # never called
    )
    built = registry.Providers(settings)
    yield built
    await built.close()


def _shape(function: Any) -> list[tuple[str, Any, Any]]:
    """A method's parameters and return as written (names, kinds, annotations); ``self`` left out."""
    signature = inspect.signature(function)
    params = [(p.name, p.kind, p.annotation) for p in signature.parameters.values() if p.name != "self"]
    return [*params, ("return", None, signature.return_annotation)]


def test_the_capabilities_are_the_ones_listed() -> None:
    assert set(capabilities()) == {ReportsReturns, ClearsTerminal, KeepsTokens, RemembersTerminals}
    assert set(EXPECTED) == set(registry.KNOWN)


async def test_each_registered_provider_has_exactly_its_capabilities(providers: registry.Providers) -> None:
    for name in registry.KNOWN:
        provider = providers.get(name)
        held = {capability for capability in capabilities() if isinstance(provider, capability)}
        assert held == EXPECTED[name], name


async def test_each_capability_is_implemented_with_its_own_signature(providers: registry.Providers) -> None:
    for name in registry.KNOWN:
        provider = providers.get(name)
        for capability in EXPECTED[name]:
            for method, declared in vars(capability).items():
                if method.startswith("_") or not inspect.iscoroutinefunction(declared):
                    continue
                implemented = getattr(type(provider), method)
                assert inspect.iscoroutinefunction(implemented), (name, method)
                assert _shape(implemented) == _shape(declared), (name, method)


async def test_attach_gives_a_store_to_the_providers_that_remember_terminals(
    providers: registry.Providers, db: Database
) -> None:
    for name in registry.KNOWN:
        assert getattr(providers.get(name), "store", None) is None, name
    providers.attach(db)
    for name in registry.KNOWN:
        provider = providers.get(name)
        if isinstance(provider, RemembersTerminals):
            assert isinstance(provider.store, TokenStore), name
        else:
            assert not hasattr(provider, "store"), name


async def test_a_refund_without_an_answer_is_not_guessed_where_the_provider_cannot_report_returns(
    providers: registry.Providers, db: Database
) -> None:
    """``resync`` asks only a provider that reports returns; any other leg sent without an answer is
    failed with the instruction to check with the bank, never sent again (it may have moved money)."""
    leg = RefundLegRef(leg_id="leg", amount=500, currency="KZT", provider_txn_id="txn", attempt_ref="qr-1")
    for name in ("kaspi_pos", "sandbox"):
        outcome = await refunds.resync(providers.get(name), leg, db=db, operation_id="op", leg_id="leg")
        assert outcome.succeeded is False and outcome.error is not None, name
        assert "cannot be asked again" in outcome.error, name
    # Kaspi QR reports returns, but only of a purchase it can name (the attempt's QR payment id).
    unnamed = RefundLegRef(leg_id="leg", amount=500, currency="KZT", provider_txn_id="txn", attempt_ref=None)
    outcome = await refunds.resync(providers.get("kaspi_qr"), unnamed, db=db, operation_id="op", leg_id="leg")
    assert outcome.succeeded is False and outcome.error is not None
    assert "cannot be asked again" in outcome.error
