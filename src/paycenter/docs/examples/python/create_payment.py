"""Create a payment and send the payer to its payment page (paycenter merchant API).

    pip install httpx
    PAYCENTER_URL=http://127.0.0.1:8000 PAYCENTER_TOKEN=pct_... python create_payment.py

WEBHOOK_URL and WEBHOOK_SECRET say where paycenter POSTs this payment's events and with which
key it signs X-Webhook-Signature (see webhook_receiver.py). Prints paycenter's answer.
"""

import json
import os
import sys

import httpx

base_url = os.environ.get("PAYCENTER_URL", "http://127.0.0.1:8000")
token = os.environ["PAYCENTER_TOKEN"]
webhook_url = os.environ.get("WEBHOOK_URL", "https://shop.example.kz/paycenter/webhook")
webhook_secret = os.environ.get("WEBHOOK_SECRET", "test_secret_key")
order_id = os.environ.get("ORDER_ID", "TEST-001")

response = httpx.post(
    f"{base_url}/api/payment/init",
    headers={
        "X-API-Token": token,
        # A retry with the same key and body gets the first answer: never two payments for one order.
        "Idempotency-Key": f"order-{order_id}",
    },
    json={
        "amount": 500,  # major units: 500 KZT
        "currency": "KZT",
        "description": "Тестовый платеж",
        "webhook_url": webhook_url,
        "webhook_secret": webhook_secret,
        "metadata": {"user_id": "12345", "order_id": order_id},
    },
    timeout=30,
)
answer = response.json()
print(json.dumps(answer, ensure_ascii=False, indent=2))
if not answer["success"]:
    sys.exit(f"HTTP {response.status_code}: {answer['message']}")
# Send the payer to answer["data"]["payment_url"]. How it ended comes as a webhook.
