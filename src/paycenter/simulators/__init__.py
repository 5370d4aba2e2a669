"""Simulators of external payment systems, speaking their protocols over real HTTP (ASGI apps)."""
