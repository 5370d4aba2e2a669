// Create a payment and send the payer to its payment page (paycenter merchant API).
//
//   PAYCENTER_URL=http://127.0.0.1:8000 PAYCENTER_TOKEN=pct_... node create_payment.mjs
//
// WEBHOOK_URL and WEBHOOK_SECRET say where paycenter POSTs this payment's events and with which
// key it signs X-Webhook-Signature (see webhook_receiver.mjs). Prints paycenter's answer.
// Node 18+ (built-in fetch), no packages.
const baseUrl = process.env.PAYCENTER_URL ?? "http://127.0.0.1:8000";
const token = process.env.PAYCENTER_TOKEN;
const webhookUrl = process.env.WEBHOOK_URL ?? "https://shop.example.kz/paycenter/webhook";
const webhookSecret = process.env.WEBHOOK_SECRET ?? "test_secret_key";
const orderId = process.env.ORDER_ID ?? "TEST-001";

const response = await fetch(`${baseUrl}/api/payment/init`, {
  method: "POST",
  headers: {
    "Content-Type": "application/json",
    "X-API-Token": token,
    // A retry with the same key and body gets the first answer: never two payments for one order.
    "Idempotency-Key": `order-${orderId}`,
  },
  body: JSON.stringify({
    amount: 500, // major units: 500 KZT
    currency: "KZT",
    description: "Тестовый платеж",
    webhook_url: webhookUrl,
    webhook_secret: webhookSecret,
    metadata: { user_id: "12345", order_id: orderId },
  }),
  signal: AbortSignal.timeout(30_000),
});
const answer = await response.json();
console.log(JSON.stringify(answer, null, 2));
if (!answer.success) {
  console.error(`HTTP ${response.status}: ${answer.message}`);
  process.exitCode = 1;
}
// Send the payer to answer.data.payment_url. How it ended comes as a webhook.
