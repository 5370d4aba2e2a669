"""The merchant and payer HTTP API: routers at the edge, composing the domains (payments, webhooks,
merchants) through their services and read modules. Handlers parse, call, answer: they hold no SQL."""
