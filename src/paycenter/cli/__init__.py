"""The ``paycenter`` command: serve, migrate, and manage merchants and their API tokens.

One module per command group, each a ``typer.Typer`` named ``app``, added here in the order
``paycenter --help`` lists them: the modules of top-level commands without a name (their commands
join the root), the groups under theirs. Commands that live beside their domain (import-legacy,
config) are added the same way.
"""

from __future__ import annotations

import typer

from paycenter import configcheck
from paycenter.cli import (
    admin,
    kaspi_qr,
    listen,
    merchant,
    operations,
    payment_method,
    quarantine,
    secrets,
    serve,
    terminal,
    token,
    webhooks,
)
from paycenter.legacy import cli as legacy

app = typer.Typer(help="paycenter: self-hosted payment center.", no_args_is_help=True, add_completion=False)
for commands in (serve.app, operations.app, listen.app, legacy.app):
    app.add_typer(commands)
for name, group in (
    ("merchant", merchant.app),
    ("token", token.app),
    ("webhooks", webhooks.app),
    ("terminal", terminal.app),
    ("payment-method", payment_method.app),
    ("admin", admin.app),
    ("kaspi-qr", kaspi_qr.app),
    ("quarantine", quarantine.app),
    ("secrets", secrets.app),
    ("config", configcheck.config_app),
):
    app.add_typer(group, name=name)


def main() -> None:
    app()
