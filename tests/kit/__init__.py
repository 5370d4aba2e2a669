"""The test kit: helpers the test files share (fixtures stay in tests/conftest.py).

db (backends, fresh server databases, row counts), clock (the movable clock), api (merchants,
payments, refusals), admin (operators in the panel), kaspi (the simulators' handle), worker,
legacy (the old system's fixture), certs, served (`paycenter` as a real process), sink (a webhook
endpoint), asgi_server (an ASGI app on a loopback port), browser (Debian's Chromium through
Playwright; the ``browser`` fixture).
"""
