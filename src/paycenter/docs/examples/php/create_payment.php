<?php
// Create a payment and send the payer to its payment page (paycenter merchant API).
//
//   PAYCENTER_URL=http://127.0.0.1:8000 PAYCENTER_TOKEN=pct_... php create_payment.php
//
// WEBHOOK_URL and WEBHOOK_SECRET say where paycenter POSTs this payment's events and with which
// key it signs X-Webhook-Signature (see webhook_receiver.php). Prints paycenter's answer.
// PHP 8 with the curl extension.

$baseUrl = getenv('PAYCENTER_URL') ?: 'http://127.0.0.1:8000';
$token = getenv('PAYCENTER_TOKEN');
$webhookUrl = getenv('WEBHOOK_URL') ?: 'https://shop.example.kz/paycenter/webhook';
$webhookSecret = getenv('WEBHOOK_SECRET') ?: 'test_secret_key';
$orderId = getenv('ORDER_ID') ?: 'TEST-001';

$ch = curl_init("$baseUrl/api/payment/init");
curl_setopt_array($ch, [
    CURLOPT_POST => true,
    CURLOPT_HTTPHEADER => [
        'Content-Type: application/json',
        "X-API-Token: $token",
        // A retry with the same key and body gets the first answer: never two payments for one order.
        "Idempotency-Key: order-$orderId",
    ],
    CURLOPT_POSTFIELDS => json_encode([
        'amount' => 500, // major units: 500 KZT
        'currency' => 'KZT',
        'description' => 'Тестовый платеж',
        'webhook_url' => $webhookUrl,
        'webhook_secret' => $webhookSecret,
        'metadata' => ['user_id' => '12345', 'order_id' => $orderId],
    ]),
    CURLOPT_RETURNTRANSFER => true,
    CURLOPT_TIMEOUT => 30,
]);
$raw = curl_exec($ch);
if ($raw === false) {
    fwrite(STDERR, curl_error($ch) . "\n");
    exit(1);
}
$status = curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
$answer = json_decode($raw, true);
echo json_encode($answer, JSON_PRETTY_PRINT | JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES), "\n";
if (!$answer['success']) {
    fwrite(STDERR, "HTTP $status: {$answer['message']}\n");
    exit(1);
}
// Send the payer to $answer['data']['payment_url']. How it ended comes as a webhook.
