<?php
// Receive paycenter webhooks: check both signatures, refuse replays, drop duplicates and stale events.
//
// Put it behind your web server as the webhook URL, or try it with PHP's own server:
//   WEBHOOK_SECRET=test_secret_key WEBHOOK_SIGNING_SECRETS=whsec_... php -S 127.0.0.1:8080 webhook_receiver.php
//
// Environment:
//   WEBHOOK_SECRET           the payment's webhook_secret: the key of X-Webhook-Signature
//   WEBHOOK_SIGNING_SECRETS  your whsec_ signing secret (GET /api/webhook-secret); during a rotation
//                            the new and the old one, comma-separated: either signature is accepted
//   WEBHOOK_STATE_FILE       where seen event ids and sequences are kept (a JSON file, for the example)
//
// PHP 8, no extensions beyond the default ones. Logs one line per request to stderr:
// accepted, duplicate, stale or rejected.
// (The official standard-webhooks/standard-webhooks Composer package verifies the webhook-* headers the same way.)

const TOLERANCE = 5 * 60; // seconds: a webhook-timestamp further from now is a replay (or a bad clock)

final class Rejected extends Exception
{
}

// X-Webhook-Signature: lowercase hex HMAC-SHA256 of the raw body, keyed with the payment's webhook_secret.
function verify_hex_signature(string $body, string $signature, string $secret): void
{
    $expected = hash_hmac('sha256', $body, $secret);
    if (!hash_equals($expected, $signature)) {
        throw new Rejected('bad X-Webhook-Signature');
    }
}

// webhook-signature: "v1,<base64>" HMAC-SHA256 of "id.timestamp.body" with a whsec_ secret.
// Several signatures, space-separated, during a secret rotation. Returns the event id.
function verify_standard_webhooks(string $body, array $headers, array $secrets, int $now): string
{
    $msgId = $headers['webhook-id'] ?? '';
    $timestamp = $headers['webhook-timestamp'] ?? '';
    $signatures = array_filter(explode(' ', $headers['webhook-signature'] ?? ''));
    if ($msgId === '' || !ctype_digit($timestamp) || !$signatures) {
        throw new Rejected('missing webhook-id, webhook-timestamp or webhook-signature');
    }
    if (abs($now - (int) $timestamp) > TOLERANCE) {
        throw new Rejected('webhook-timestamp too far from now (a replay?)');
    }
    foreach ($secrets as $secret) {
        $key = base64_decode(preg_replace('/^whsec_/', '', $secret));
        $expected = 'v1,' . base64_encode(hash_hmac('sha256', "$msgId.$timestamp.$body", $key, true));
        foreach ($signatures as $given) {
            if (hash_equals($expected, $given)) {
                return $msgId;
            }
        }
    }
    throw new Rejected('bad webhook-signature');
}

// Check, deduplicate and order one delivery. Returns [HTTP status, what happened].
function handle(string $body, array $headers, string $stateFile): array
{
    $webhookSecret = getenv('WEBHOOK_SECRET') ?: '';
    $signingSecrets = array_filter(array_map('trim', explode(',', getenv('WEBHOOK_SIGNING_SECRETS') ?: '')));
    if ($webhookSecret === '' || !$signingSecrets) {
        return [500, 'set WEBHOOK_SECRET and WEBHOOK_SIGNING_SECRETS'];
    }
    try {
        verify_hex_signature($body, $headers['x-webhook-signature'] ?? '', $webhookSecret);
        $eventId = verify_standard_webhooks($body, $headers, $signingSecrets, time());
    } catch (Rejected $e) {
        return [401, 'rejected: ' . $e->getMessage()];
    }
    $event = json_decode($body, true);
    $paymentId = $event['transaction_id'];
    $sequence = $event['sequence'];

    // Keep this in your database: a unique key on the event id, the last sequence per payment.
    // Here a JSON file, locked so that two deliveries at once do not both get through.
    $file = fopen($stateFile, 'c+');
    flock($file, LOCK_EX);
    $state = json_decode(stream_get_contents($file) ?: '{}', true) + ['seen' => [], 'last_sequence' => []];
    try {
        if (isset($state['seen'][$eventId])) { // a retry or a resend of an event we already have
            return [200, "duplicate $eventId"];
        }
        $state['seen'][$eventId] = true;
        if ($sequence <= ($state['last_sequence'][$paymentId] ?? 0)) { // older than what we know
            return [200, "stale {$event['event']} $paymentId sequence=$sequence"];
        }
        $state['last_sequence'][$paymentId] = $sequence;

        // Every event carries the payment's state: apply it to your order (metadata.order_id) here.
        return [200, "accepted {$event['event']} $paymentId sequence=$sequence status={$event['status']}"];
    } finally {
        ftruncate($file, 0);
        rewind($file);
        fwrite($file, json_encode($state));
        flock($file, LOCK_UN);
        fclose($file);
    }
}

$rawBody = file_get_contents('php://input'); // the exact bytes signed: verify before parsing
$headers = array_change_key_case(getallheaders(), CASE_LOWER);
$stateFile = getenv('WEBHOOK_STATE_FILE') ?: sys_get_temp_dir() . '/paycenter-webhooks.json';
[$status, $outcome] = handle($rawBody, $headers, $stateFile);
file_put_contents('php://stderr', $outcome . "\n");
http_response_code($status); // any 2xx tells paycenter "delivered"; anything else is retried
header('Content-Type: text/plain');
echo $outcome;
