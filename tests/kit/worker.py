"""Settings for a worker that runs inside a test: fast loops, webhooks allowed to loopback."""

from __future__ import annotations

from paycenter.config import Settings


def worker_settings(database_url: str, **overrides) -> Settings:
    values = {
        "database_url": database_url,
        "public_url": "http://pay.test",
        "run_worker": False,
        "webhook_allowed_networks": "127.0.0.0/8",
        "worker_poll_interval": 0.05,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]
