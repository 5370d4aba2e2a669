"""Simulators of external payment systems, speaking their protocols over real HTTP: ASGI apps for the
servers paycenter calls (kaspi_qr, kaspi_pos), a client for Kaspi calling paycenter (kaspi_biller)."""
