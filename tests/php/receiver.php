<?php
/**
 * An old merchant's webhook receiver, as the old docs' receivers were written: it parses the body,
 * re-encodes it with json_encode(json_decode($raw, true)) and checks X-Webhook-Signature (lowercase
 * hex HMAC-SHA256 keyed with the payment's webhook_secret) over the re-encoded text.
 *
 * Run: WEBHOOK_SECRET=... RECEIVER_LOG=/path/to/file php -S 127.0.0.1:PORT receiver.php
 *
 * Every request is appended to RECEIVER_LOG as one JSON line (what came, what was verified), so the
 * test can wait on it. Answers 200 when the signature verifies, 401 otherwise (as the old ones did).
 */
$log = getenv('RECEIVER_LOG');
$secret = (string) getenv('WEBHOOK_SECRET');

if ($_SERVER['REQUEST_METHOD'] !== 'POST') {
    http_response_code(405);
    echo 'POST only';
    return;
}

$raw = file_get_contents('php://input');
$data = json_decode($raw, true);
$reencoded = json_encode($data);
$signature = isset($_SERVER['HTTP_X_WEBHOOK_SIGNATURE']) ? $_SERVER['HTTP_X_WEBHOOK_SIGNATURE'] : '';
$expected = hash_hmac('sha256', $reencoded, $secret);
$verified = is_array($data) && $signature !== '' && hash_equals($expected, $signature);

$entry = array(
    'path' => $_SERVER['REQUEST_URI'],
    'event_header' => isset($_SERVER['HTTP_X_WEBHOOK_EVENT']) ? $_SERVER['HTTP_X_WEBHOOK_EVENT'] : null,
    'timestamp_header' => isset($_SERVER['HTTP_X_WEBHOOK_TIMESTAMP']) ? $_SERVER['HTTP_X_WEBHOOK_TIMESTAMP'] : null,
    'content_type' => isset($_SERVER['CONTENT_TYPE']) ? $_SERVER['CONTENT_TYPE'] : null,
    'signature' => $signature,
    'verified' => $verified,
    // The bytes survive the old receiver's decode/encode unchanged (a fixed point).
    'fixed_point' => $reencoded === $raw,
    'raw' => base64_encode($raw),
    'reencoded' => $reencoded === false ? null : base64_encode($reencoded),
    'data' => $data,
);
file_put_contents($log, json_encode($entry) . "\n", FILE_APPEND | LOCK_EX);

if (!$verified) {
    http_response_code(401);
    echo 'Invalid signature';
    return;
}
http_response_code(200);
header('Content-Type: text/plain');
echo 'OK';
