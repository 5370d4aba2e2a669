<?php
// Read your webhook events as they happen: GET /api/events/stream (server-sent events).
// PHP 8 with curl:
//   PAYCENTER_URL=http://127.0.0.1:8000 PAYCENTER_TOKEN=pct_... php events_stream.php
//
// `paycenter listen --forward-to URL` does this and POSTs each event to your endpoint. Each event
// carries `body` and `headers`: POST them as they are and your signature checks pass. Keep the
// last `id:` line's value and send it as Last-Event-ID (here LAST_EVENT_ID) when you reconnect:
// the stream goes on with nothing missed or repeated. MAX_EVENTS stops after that many events.
$baseUrl = getenv('PAYCENTER_URL') ?: 'http://127.0.0.1:8000';
$maxEvents = (int) (getenv('MAX_EVENTS') ?: 0); // 0: until interrupted
$headers = ['X-API-Token: ' . getenv('PAYCENTER_TOKEN'), 'Accept: text/event-stream'];
if (getenv('LAST_EVENT_ID')) {
    $headers[] = 'Last-Event-ID: ' . getenv('LAST_EVENT_ID');
}

$buffer = '';
$event = 'message';
$data = [];
$position = null;
$seen = 0;
$refusal = '';
$ch = curl_init("$baseUrl/api/events/stream?types=paid,refunded");
curl_setopt_array($ch, [
    CURLOPT_HTTPHEADER => $headers,
    CURLOPT_LOW_SPEED_LIMIT => 1,
    CURLOPT_LOW_SPEED_TIME => 60, // a heartbeat comes every 15 s
    CURLOPT_WRITEFUNCTION => function ($ch, $chunk) use (&$buffer, &$event, &$data, &$position, &$seen, &$refusal, $maxEvents) {
        if (curl_getinfo($ch, CURLINFO_RESPONSE_CODE) !== 200) {
            $refusal .= $chunk;
            return strlen($chunk);
        }
        $buffer .= $chunk;
        while (($cut = strpos($buffer, "\n")) !== false) {
            $line = rtrim(substr($buffer, 0, $cut), "\r");
            $buffer = substr($buffer, $cut + 1);
            if (str_starts_with($line, ':')) {
                continue; // a heartbeat
            }
            if ($line !== '') {
                [$field, $value] = array_pad(explode(':', $line, 2), 2, '');
                $value = str_starts_with($value, ' ') ? substr($value, 1) : $value;
                if ($field === 'event') {
                    $event = $value;
                } elseif ($field === 'data') {
                    $data[] = $value;
                } elseif ($field === 'id') {
                    $position = $value; // where to resume from
                }
                continue;
            }
            if ($event === 'webhook' && $data) { // an empty line ends a message
                $message = json_decode(implode("\n", $data), true);
                echo json_encode([
                    'type' => $message['type'],
                    'transaction_id' => $message['transaction_id'],
                    'id' => $message['id'],
                    'position' => $position,
                ], JSON_UNESCAPED_SLASHES), "\n";
                if (++$seen === $maxEvents) {
                    return 0; // stop reading: curl ends the transfer
                }
            }
            $event = 'message';
            $data = [];
        }
        return strlen($chunk);
    },
]);
curl_exec($ch);
$status = curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
if ($status !== 200) {
    fwrite(STDERR, "HTTP $status: $refusal\n");
    exit(1);
}
