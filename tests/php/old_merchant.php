<?php
/**
 * An OLD merchant of the ByFly Payment Center (the PHP system paycenter replaces), run against a real
 * paycenter: the calls an old merchant's code makes and what it relies on, as the old API's wire facts
 * give them (legacy-api.md), without the old defects (its §7).
 *
 * Environment (tests/legacy/test_php.py sets it):
 *   PAYCENTER_URL     base URL of `paycenter run`
 *   LEGACY_TOKEN      API token of a merchant pinned to API version `legacy` (new payments: sandbox)
 *   OTHER_TOKEN       API token of another legacy merchant
 *   KASPI_TOKEN       API token of a legacy merchant whose payments are paid with Kaspi QR
 *   KASPI_SETUP_ERROR why KASPI_TOKEN is missing, when it is
 *   KASPI_SIM_URL     the Kaspi QR simulator (`paycenter simulate kaspi-qr`), played as the payer's app
 *   RECEIVER_URL      the webhook receiver (receiver.php under `php -S`)
 *   RECEIVER_LOG      the file it writes one JSON line per delivery to
 *   WEBHOOK_SECRET    the webhook_secret sent at init, which the receiver checks signatures with
 *   ONLY              optional: comma-separated scenario names to run
 *
 * Each scenario stops at its first failed check and prints it; the others still run. Exit 1 if any failed.
 * ALL_CHECKS=1 goes on past failed checks and prints each (for a list of what is missing).
 * Waits are on conditions with deadlines, never fixed sleeps.
 */
require __DIR__ . '/LegacyClient.php';

date_default_timezone_set('Asia/Almaty'); // the old system's naive local times

class CheckFailed extends Exception
{
}

$BASE = rtrim(getenv('PAYCENTER_URL') ?: '', '/');
$LEGACY_TOKEN = getenv('LEGACY_TOKEN') ?: '';
$OTHER_TOKEN = getenv('OTHER_TOKEN') ?: '';
$KASPI_TOKEN = getenv('KASPI_TOKEN') ?: '';
$KASPI_SETUP_ERROR = getenv('KASPI_SETUP_ERROR') ?: '';
$SIM = rtrim(getenv('KASPI_SIM_URL') ?: '', '/');
$RECEIVER_URL = getenv('RECEIVER_URL') ?: '';
$RECEIVER_LOG = getenv('RECEIVER_LOG') ?: '';
$SECRET = getenv('WEBHOOK_SECRET') ?: '';
// ALL_CHECKS=1: a diagnostic run that prints every failed check and goes on (a scenario may then
// fail in cascade); by default a scenario stops at its first failed check.
$SOFT = getenv('ALL_CHECKS') === '1';
$SOFT_FAILURES = array();
if ($SOFT) {
    error_reporting(E_ERROR | E_PARSE);
}
if ($BASE === '' || $LEGACY_TOKEN === '' || $OTHER_TOKEN === '') {
    fwrite(STDERR, "PAYCENTER_URL, LEGACY_TOKEN and OTHER_TOKEN are required\n");
    exit(2);
}

$api = new LegacyClient($BASE, $LEGACY_TOKEN);     // the merchant's server
$other = new LegacyClient($BASE, $OTHER_TOKEN);    // another merchant's server
$browser = new LegacyClient($BASE, null);          // the payer's browser (public endpoints)
$CURRENT = $api;                                   // whose last call a failure shows

// What this run made for LEGACY_TOKEN's merchant: transaction_id => [amount, expected status].
$LEDGER = array();

const TIME_RE = '/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/';
const ID_RE = '/^[0-9A-F]{32}$/';
const DECIMAL_RE = '/^-?\d+\.\d{2}$/';
const WAIT = 20.0; // seconds: from a payer's action to its webhook / status

// ---- checks -------------------------------------------------------------------------------------

function check($ok, $what)
{
    global $CURRENT, $SOFT, $SOFT_FAILURES;
    if ($ok) {
        return;
    }
    $last = '';
    if ($CURRENT && $CURRENT->lastUrl !== '') {
        $body = $CURRENT->lastBody;
        if (strlen($body) > 800) {
            $body = substr($body, 0, 800) . '...';
        }
        $last = "\n    last call: {$CURRENT->lastUrl} -> HTTP {$CURRENT->lastCode}\n    body: $body";
    }
    if ($SOFT) {
        $SOFT_FAILURES[] = $what;
        echo "      not ok: $what$last\n";
        return;
    }
    throw new CheckFailed($what . $last);
}

function same($actual, $expected, $what)
{
    check($actual === $expected, "$what: expected " . export($expected) . ', got ' . export($actual));
}

function export($v)
{
    return json_encode($v, JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES | JSON_PRESERVE_ZERO_FRACTION);
}

/** The reply of the last call of $client is HTTP $code with the old envelope; returns data. */
function reply(LegacyClient $client, $reply, $code, $what)
{
    global $CURRENT;
    $CURRENT = $client;
    same($client->lastCode, $code, "$what: HTTP status");
    check(is_array($reply), "$what: the body is a JSON object");
    if (!is_array($reply)) {
        return null; // ALL_CHECKS
    }
    $ct = isset($client->lastHeaders['content-type']) ? $client->lastHeaders['content-type'] : '';
    check(stripos($ct, 'application/json') === 0, "$what: Content-Type is application/json, got '$ct'");
    if ($code < 400) {
        same(isset($reply['success']) ? $reply['success'] : null, true, "$what: success");
        check(isset($reply['message']) && is_string($reply['message']), "$what: message is a string");
        check(array_key_exists('data', $reply), "$what: has data");
        return $reply['data'];
    }
    same(isset($reply['success']) ? $reply['success'] : null, false, "$what: success");
    check(isset($reply['message']) && is_string($reply['message']) && $reply['message'] !== '',
        "$what: message is a non-empty string");
    return null;
}

/** The documented keys come first, in their order (old code reads them by name; keys added after them
 *  break nothing). */
function keys_are($array, array $keys, $what)
{
    check(is_array($array), "$what: is an object, got " . export($array));
    same(array_slice(array_keys((array) $array), 0, count($keys)), $keys, "$what: keys in order");
}

function is_number($v)
{
    return is_int($v) || is_float($v);
}

/** A naive Asia/Almaty time within $slack seconds of now + $offset. */
function almaty_time($value, $what, $offset = 0, $slack = 120)
{
    check(is_string($value) && preg_match(TIME_RE, $value), "$what: 'Y-m-d H:i:s', got " . export($value));
    if (!is_string($value) || !preg_match(TIME_RE, $value)) {
        return; // ALL_CHECKS
    }
    $t = DateTime::createFromFormat('Y-m-d H:i:s', $value, new DateTimeZone('Asia/Almaty'));
    $delta = $t->getTimestamp() - (time() + $offset);
    check(abs($delta) <= $slack, "$what: $value is not Asia/Almaty now" . ($offset ? " + {$offset}s" : '')
        . " (off by {$delta}s; now there is " . date('Y-m-d H:i:s') . ')');
}

function today()
{
    return date('Y-m-d');
}

/** Wait until $fn returns a non-null value, at most $seconds; fail with $what otherwise. */
function wait_for($fn, $seconds, $what)
{
    $deadline = microtime(true) + $seconds;
    while (true) {
        $value = $fn();
        if ($value !== null) {
            return $value;
        }
        if (microtime(true) >= $deadline) {
            $GLOBALS['SOFT'] = false; // a timed-out wait ends the scenario even in an ALL_CHECKS run
            try {
                check(false, "$what (waited {$seconds}s)");
            } finally {
                $GLOBALS['SOFT'] = getenv('ALL_CHECKS') === '1';
            }
        }
        usleep(100000); // poll interval; the deadline above bounds the wait
    }
}

// ---- the payer (not merchant code): the hosted page's sandbox buttons, the Kaspi app ---------------

function payer_sandbox($paymentId, $action)
{
    global $BASE;
    $ch = curl_init("$BASE/pay/$paymentId/sandbox");
    curl_setopt_array($ch, array(
        CURLOPT_POST => true,
        CURLOPT_POSTFIELDS => http_build_query(array('action' => $action)),
        CURLOPT_RETURNTRANSFER => true,
        CURLOPT_FOLLOWLOCATION => false,
        CURLOPT_PROXY => '',
        CURLOPT_TIMEOUT => 30,
    ));
    curl_exec($ch);
    $code = curl_getinfo($ch, CURLINFO_HTTP_CODE);
    $location = (string) curl_getinfo($ch, CURLINFO_REDIRECT_URL);
    curl_close($ch);
    check($code === 303 && strpos($location, 'error=') === false,
        "the payer's sandbox '$action' on /pay/$paymentId: HTTP $code -> $location");
}

function sim($method, $path, $body = null)
{
    global $SIM;
    $ch = curl_init($SIM . $path);
    curl_setopt_array($ch, array(
        CURLOPT_CUSTOMREQUEST => $method,
        CURLOPT_RETURNTRANSFER => true,
        CURLOPT_PROXY => '',
        CURLOPT_TIMEOUT => 10,
        CURLOPT_HTTPHEADER => array('Content-Type: application/json'),
    ));
    if ($body !== null) {
        curl_setopt($ch, CURLOPT_POSTFIELDS, json_encode($body));
    }
    $raw = curl_exec($ch);
    $code = curl_getinfo($ch, CURLINFO_HTTP_CODE);
    curl_close($ch);
    check($code === 200, "Kaspi QR simulator $method $path: HTTP $code $raw");
    return json_decode($raw, true);
}

// ---- webhooks as the receiver saw them -------------------------------------------------------------

function deliveries()
{
    global $RECEIVER_LOG;
    $out = array();
    if (!is_file($RECEIVER_LOG)) {
        return $out;
    }
    foreach (file($RECEIVER_LOG, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES) as $line) {
        $out[] = json_decode($line, true);
    }
    return $out;
}

function deliveries_for($transactionId)
{
    return array_values(array_filter(deliveries(), function ($d) use ($transactionId) {
        return is_array($d['data']) && isset($d['data']['transaction_id']) && $d['data']['transaction_id'] === $transactionId;
    }));
}

function wait_webhook($transactionId, $event)
{
    return wait_for(function () use ($transactionId, $event) {
        foreach (deliveries_for($transactionId) as $d) {
            if ($d['data']['event'] === $event) {
                return $d;
            }
        }
        return null;
    }, WAIT, "no '$event' webhook for $transactionId reached the receiver; it got: " . export(array_map(function ($d) {
        return array($d['event_header'], is_array($d['data']) ? $d['data'] : base64_decode($d['raw']));
    }, deliveries())));
}

/** What the old receiver checks and relies on in one delivery. */
function check_delivery($d, $event, $what)
{
    check($d['verified'], "$what: X-Webhook-Signature verifies over json_encode(json_decode(\$raw, true))"
        . ' (the old receiver refused it); raw body: ' . base64_decode($d['raw']));
    check($d['fixed_point'], "$what: the body is a fixed point of json_encode(json_decode(\$raw, true)):\n    raw:        "
        . base64_decode($d['raw']) . "\n    re-encoded: " . base64_decode((string) $d['reencoded']));
    check(stripos((string) $d['content_type'], 'application/json') === 0, "$what: Content-Type application/json, got "
        . export($d['content_type']));
    same($d['event_header'], $event, "$what: X-Webhook-Event");
    check(is_string($d['timestamp_header']) && ctype_digit($d['timestamp_header'])
        && abs((int) $d['timestamp_header'] - time()) < 300, "$what: X-Webhook-Timestamp is unix seconds, got "
        . export($d['timestamp_header']));
    $body = $d['data'];
    $keys = array('event', 'transaction_id', 'amount', 'original_amount', 'paid_amount', 'actual_amount_received',
        'remaining_amount', 'currency', 'status', 'description', 'created_at', 'paid_at', 'metadata', 'timestamp');
    same(array_slice(array_keys($body), 0, count($keys)), $keys, "$what: body keys in order");
    same($body['event'], $event, "$what: event");
    foreach (array('amount', 'original_amount', 'paid_amount', 'actual_amount_received', 'remaining_amount') as $k) {
        check(is_number($body[$k]), "$what: $k is a number, got " . export($body[$k]));
    }
    check(is_int($body['timestamp']), "$what: timestamp is an int");
    almaty_time($body['created_at'], "$what: created_at", 0, 600);
    return $body;
}

// ---- scenarios ------------------------------------------------------------------------------------

/** init, as every old merchant did; $path lets a scenario use the trailing-slash form. */
function create_payment(LegacyClient $client, array $params, $what, $path = '/api/payment/init')
{
    global $LEDGER, $api;
    $data = reply($client, $client->init($params, $path), 201, $what);
    keys_are($data, array('transaction_id', 'amount', 'currency', 'status', 'expires_at'), "$what: data");
    check(preg_match(ID_RE, $data['transaction_id']), "$what: transaction_id is 32 uppercase hex, got "
        . export($data['transaction_id']));
    same($data['status'], 'pending', "$what: status");
    almaty_time($data['expires_at'], "$what: expires_at (creation + 1 h)", 3600);
    if ($client === $api) {
        $LEDGER[$data['transaction_id']] = array('amount' => (float) $data['amount'], 'status' => 'pending');
    }
    return $data;
}

$scenarios = array();

$scenarios['init'] = function () use ($api) {
    $data = create_payment($api, array('amount' => 1000), 'init 1000');
    same($data['amount'], '1000.00', 'init: amount is a DECIMAL string');
    same($data['currency'], 'KZT', 'init: currency defaults to KZT');
    $data = create_payment($api, array('amount' => '1500.5', 'currency' => 'KZT', 'description' => 'Заказ 42',
        'customer_phone' => '+77011234567', 'customer_email' => 'buyer@example.com', 'customer_name' => 'Асель'),
        'init with a numeric string amount and the customer fields');
    same($data['amount'], '1500.50', 'init: a numeric string amount, rounded to 2 decimals');
};

$scenarios['trailing_slash'] = function () use ($api) {
    $data = create_payment($api, array('amount' => 1200), 'init at /api/payment/init/ (trailing slash, no redirect)',
        '/api/payment/init/');
    same($data['amount'], '1200.00', 'trailing-slash init: amount');
    $got = reply($api, $api->request('GET', '/api/payment/' . $data['transaction_id'] . '/'), 200,
        'GET /api/payment/{id}/ (trailing slash)');
    same($got['transaction_id'], $data['transaction_id'], 'GET with a trailing slash: transaction_id');
};

$scenarios['validation'] = function () use ($api) {
    foreach (array('amount 0' => array('amount' => 0), 'amount -5' => array('amount' => -5),
                   'no amount' => array('description' => 'no amount'), 'amount null' => array('amount' => null)) as $what => $body) {
        reply($api, $api->init($body), 400, "init with $what");
    }
    $bad = new LegacyClient($GLOBALS['BASE'], str_repeat('ab', 32));
    $reply = reply($bad, $bad->init(array('amount' => 1000)), 401, 'init with an unknown token');
    $none = new LegacyClient($GLOBALS['BASE'], null);
    reply($none, $none->init(array('amount' => 1000)), 401, 'init without a token');
};

$scenarios['transport'] = function () use ($api, $browser) {
    global $LEDGER;
    $made = create_payment($api, array('amount' => 1700), 'init for the transport checks');
    $id = $made['transaction_id'];

    // CORS, for the old pages that polled from the merchant's own site (legacy-api.md §1).
    $browser->send('OPTIONS', "/api/payment/$id", null, null,
        array('Origin: https://shop.example', 'Access-Control-Request-Method: GET'));
    check(in_array($browser->lastCode, array(200, 204), true), "OPTIONS preflight: 200 (or 204), got HTTP {$browser->lastCode}");
    $r = $browser->send('GET', "/api/payment/$id", null, null, array('Origin: https://shop.example'));
    reply($browser, $r, 200, 'GET /api/payment/{id} from another origin');
    same(isset($browser->lastHeaders['access-control-allow-origin']) ? $browser->lastHeaders['access-control-allow-origin'] : null,
        '*', 'GET /api/payment/{id} from another origin: Access-Control-Allow-Origin');

    // PHP's json_encode(array()) is "[]": a body the old API took as empty.
    $r = $api->send('POST', "/api/payment/$id/cancel", json_encode(array()), 'application/json');
    reply($api, $r, 200, 'cancel with the body "[]" (json_encode(array()))');
    $LEDGER[$id]['status'] = 'cancelled';

    // curl's default Content-Type for a string body is form-urlencoded; the old API decoded JSON
    // whatever the Content-Type (legacy-api.md §1), and much old code never set it.
    $r = $api->send('POST', '/api/payment/init', json_encode(array('amount' => 1701)));
    if ($api->lastCode === 201 && isset($r['data']['transaction_id'])) {
        $LEDGER[$r['data']['transaction_id']] = array('amount' => 1701.0, 'status' => 'pending');
    }
    $data = reply($api, $r, 201, 'init with a JSON body sent as application/x-www-form-urlencoded (curl\'s default)');
    same($data['amount'], '1701.00', 'init without a JSON Content-Type: amount');
};

$scenarios['status_polling'] = function () use ($api, $browser) {
    $made = create_payment($api, array('amount' => 1000), 'init for status polling');
    $id = $made['transaction_id'];
    $keys = array('transaction_id', 'amount', 'currency', 'status', 'description', 'payment_url', 'qr_code',
        'paid_amount', 'remaining_amount', 'created_at', 'paid_at');
    foreach (array('merchant server' => $api, 'payer browser (no token)' => $browser) as $who => $client) {
        $data = reply($client, $client->getPayment($id), 200, "GET /api/payment/{id} by the $who");
        keys_are($data, $keys, "GET /api/payment/{id} ($who): data");
        same($data['transaction_id'], $id, 'GET: transaction_id');
        same($data['amount'], '1000.00', 'GET: amount');
        same($data['currency'], 'KZT', 'GET: currency');
        same($data['status'], 'pending', 'GET: status');
        same($data['description'], null, 'GET: description not given is null');
        check($data['payment_url'] === null || is_string($data['payment_url']), 'GET: payment_url string or null');
        check($data['qr_code'] === null || is_string($data['qr_code']), 'GET: qr_code string or null');
        same($data['paid_amount'], '0.00', 'GET: paid_amount before any payment');
        same($data['remaining_amount'], '1000.00', 'GET: remaining_amount before any payment');
        almaty_time($data['created_at'], 'GET: created_at');
        same($data['paid_at'], null, 'GET: paid_at before any payment');

        $status = reply($client, $client->status($id), 200, "GET /api/payment/{id}/status by the $who");
        same($status, $data, "GET /api/payment/{id}/status ($who): the same data as GET /api/payment/{id}");
    }
    $lower = reply($browser, $browser->getPayment(strtolower($id)), 200, 'GET /api/payment/{lowercase id}');
    same($lower['transaction_id'], $id, 'a lowercase id finds the payment');
    reply($browser, $browser->getPayment(str_repeat('0', 32)), 404, 'GET /api/payment/{unknown id}');

    $given = create_payment($api, array('amount' => 2500, 'description' => 'Тур в Алматы / 2 ночи'), 'init with a description');
    $data = reply($browser, $browser->getPayment($given['transaction_id']), 200, 'GET a payment with a description');
    same($data['description'], 'Тур в Алматы / 2 ночи', 'GET: description as given');
    same($data['amount'], '2500.00', 'GET: amount');
};

$scenarios['track_visit'] = function () use ($api, $browser) {
    $made = create_payment($api, array('amount' => 1300), 'init for track-visit');
    $data = reply($browser, $browser->trackVisit($made['transaction_id']), 200, 'POST /api/payment/{id}/track-visit');
    same($data, null, 'track-visit: data');
    $data = reply($browser, $browser->trackVisit($made['transaction_id']), 200, 'track-visit again');
    // No token and no payment: nothing tells paycenter the caller is old; refused with the documented 404.
    reply($browser, $browser->trackVisit(str_repeat('0', 32)), 404, 'track-visit of an unknown id');
};

$scenarios['cancel'] = function () use ($api, $other, $browser) {
    global $LEDGER;
    $made = create_payment($api, array('amount' => 1400), 'init to cancel');
    $id = $made['transaction_id'];

    // Another merchant's token must not cancel it (the old system let any token: legacy-api.md §7).
    $r = $other->cancel($id);
    $GLOBALS['CURRENT'] = $other;
    check(in_array($other->lastCode, array(400, 404), true), 'cancel by another merchant: refused with 400 or 404');
    reply($other, $r, $other->lastCode, 'cancel by another merchant');
    $data = reply($browser, $browser->getPayment($id), 200, 'GET after another merchant tried to cancel');
    same($data['status'], 'pending', 'another merchant could not cancel it: status');

    $data = reply($api, $api->cancel($id), 200, 'cancel');
    same($data, null, 'cancel: data');
    $LEDGER[$id]['status'] = 'cancelled';
    $data = reply($browser, $browser->getPayment($id), 200, 'GET after cancel');
    same($data['status'], 'cancelled', 'GET after cancel: status');
    reply($api, $api->cancel($id), 200, 'cancel again (repeatable)');
    reply($api, $api->cancel(str_repeat('0', 32)), 400, 'cancel of an unknown id');

    // A paid payment cannot be cancelled.
    $paid = create_payment($api, array('amount' => 1600), 'init to pay, then cancel');
    payer_sandbox($paid['transaction_id'], 'pay');
    $LEDGER[$paid['transaction_id']]['status'] = 'paid';
    wait_for(function () use ($browser, $paid) {
        $r = $browser->getPayment($paid['transaction_id']);
        return isset($r['data']['status']) && $r['data']['status'] === 'paid' ? true : null;
    }, WAIT, 'the sandbox payment never showed status paid');
    reply($api, $api->cancel($paid['transaction_id']), 400, 'cancel of a paid payment');
    $data = reply($browser, $browser->getPayment($paid['transaction_id']), 200, 'GET the paid payment');
    same($data['status'], 'paid', 'a paid payment stays paid after a refused cancel');
};

$scenarios['payment_methods'] = function () use ($api, $browser) {
    $methods = reply($api, $api->paymentMethods(), 200, 'GET /api/payment-methods');
    check(is_array($methods) && count($methods) > 0 && array_keys($methods) === range(0, count($methods) - 1),
        'payment-methods: data is a non-empty list');
    $byCode = array();
    $prev = null;
    foreach ($methods as $m) {
        $what = 'payment method ' . export(isset($m['code']) ? $m['code'] : $m);
        $first = array('id', 'code', 'name', 'type', 'provider', 'country_id', 'allowed_countries', 'payment_currency',
            'icon_url', 'icon_emoji');
        same(array_slice(array_keys($m), 0, count($first)), $first, "$what: first keys in order");
        check(is_int($m['id']), "$what: id is an int");
        check(is_string($m['code']) && is_string($m['name']), "$what: code and name are strings");
        check($m['allowed_countries'] === null || is_string($m['allowed_countries']),
            "$what: allowed_countries is a JSON string or null, got " . export($m['allowed_countries']));
        $percents = array_values(array_filter(array_keys($m), function ($k) {
            return substr($k, -8) === '_percent';
        }));
        same(count($percents), 3, "$what: three *_percent fields (" . implode(', ', $percents) . ')');
        check(in_array('commission_percent', $percents, true), "$what: has commission_percent");
        foreach ($percents as $k) {
            check(is_string($m[$k]) && preg_match(DECIMAL_RE, $m[$k]), "$what: $k is a DECIMAL string, got " . export($m[$k]));
        }
        foreach (array('has_credit', 'has_installment', 'add_commission_to_amount') as $flag) {
            check(array_key_exists($flag, $m) && ($m[$flag] === 0 || $m[$flag] === 1),
                "$what: $flag is 0 or 1 (an int), got " . export(isset($m[$flag]) ? $m[$flag] : 'missing'));
        }
        check(array_key_exists('sort_order', $m) && is_int($m['sort_order']), "$what: sort_order is an int");
        check(array_key_exists('installment_months', $m) && ($m['installment_months'] === null || is_int($m['installment_months'])),
            "$what: installment_months is an int or null");
        if ($prev !== null) {
            check(array($prev['sort_order'], $prev['id']) < array($m['sort_order'], $m['id']),
                "$what: listed by sort_order, then id");
        }
        $prev = $m;
        $byCode[$m['code']] = $m;
    }
    foreach (array('kaspi_gold', 'kaspi_red', 'kaspi_credit', 'kaspi_installment_12', 'kaspi_installment_24') as $code) {
        check(isset($byCode[$code]), "payment-methods: $code is listed (got " . implode(', ', array_keys($byCode)) . ')');
    }
    same($byCode['kaspi_credit']['has_credit'], 1, 'kaspi_credit: has_credit');
    same($byCode['kaspi_installment_12']['has_installment'], 1, 'kaspi_installment_12: has_installment');
    same($byCode['kaspi_installment_12']['installment_months'], 12, 'kaspi_installment_12: installment_months');
    same($byCode['kaspi_installment_24']['installment_months'], 24, 'kaspi_installment_24: installment_months');
    same($byCode['kaspi_gold']['has_credit'], 0, 'kaspi_gold: has_credit');

    $active = reply($browser, $browser->activePaymentMethods(), 200, 'GET /api/payment-methods/active (no token)');
    same($active, $methods, 'payment-methods/active: the same list (all are active)');

    // init with payment_method_id, as old checkouts that let the payer pick first did.
    $made = create_payment($api, array('amount' => 1000, 'payment_method_id' => $byCode['kaspi_gold']['id']),
        'init with payment_method_id (kaspi_gold)');
    check(is_string($made['amount']) && preg_match(DECIMAL_RE, $made['amount']) && (float) $made['amount'] >= 1000,
        'init with payment_method_id: amount is a DECIMAL string of at least 1000.00, got ' . export($made['amount']));
    reply($api, $api->init(array('amount' => 1000, 'payment_method_id' => 987654)), 400,
        'init with an unknown payment_method_id');
};

$scenarios['transactions'] = function () use ($api, $other) {
    global $LEDGER;
    // Four payments only this scenario makes: amounts 7001..7004 (every other scenario stays below 7000).
    $ids = array();
    foreach (array(7001, 7002, 7003, 7004) as $i => $amount) {
        $params = array('amount' => $amount);
        if ($amount === 7002) {
            $params['description'] = 'Оплата 7002';
            $params['metadata'] = array('order_id' => 'ORD-7002', 'items' => array(1, 2));
        }
        $made = create_payment($api, $params, "init $amount for the transactions list");
        $ids[$amount] = $made['transaction_id'];
    }
    reply($api, $api->cancel($ids[7003]), 200, 'cancel 7003');
    $LEDGER[$ids[7003]]['status'] = 'cancelled';

    $list = function (array $filters, $what) use ($api) {
        $data = reply($api, $api->transactions($filters), 200, "GET /api/transactions $what");
        keys_are($data, array('transactions', 'total', 'limit', 'offset'), "transactions $what: data");
        check(is_int($data['total']), "transactions $what: total is an int");
        check(is_array($data['transactions']), "transactions $what: transactions is a list");
        return $data;
    };
    $ofOurs = function ($data) use ($ids) {
        $amounts = array();
        foreach ((array) $data['transactions'] as $t) {
            if (in_array($t['transaction_id'], $ids, true)) {
                $amounts[] = (int) $t['amount'];
            }
        }
        return $amounts;
    };

    $all = $list(array(), '(no filters)');
    same($all['total'], count($LEDGER), 'transactions: total is every payment of this merchant');
    same($all['limit'], 100, 'transactions: default limit');
    same($all['offset'], 0, 'transactions: default offset');
    $item = null;
    foreach ((array) $all['transactions'] as $t) {
        keys_are($t, array('transaction_id', 'amount', 'original_amount', 'paid_amount', 'actual_amount_received',
            'remaining_amount', 'currency', 'status', 'description', 'metadata', 'created_at', 'paid_at', 'expires_at'),
            'a transactions item');
        check(isset($LEDGER[$t['transaction_id']]), 'transactions lists only this merchant\'s payments, not '
            . $t['transaction_id']);
        if ($t['transaction_id'] === $ids[7002]) {
            $item = $t;
        }
    }
    for ($i = 1; $i < count((array) $all['transactions']); $i++) {
        check($all['transactions'][$i - 1]['created_at'] >= $all['transactions'][$i]['created_at'],
            'transactions: newest first');
    }
    check($item !== null, 'transactions: 7002 is listed');
    same($item['amount'], '7002.00', 'transactions item: amount');
    same($item['remaining_amount'], '7002.00', 'transactions item: remaining_amount');
    same($item['paid_amount'], '0.00', 'transactions item: paid_amount');
    same($item['status'], 'pending', 'transactions item: status');
    same($item['currency'], 'KZT', 'transactions item: currency');
    same($item['description'], 'Оплата 7002', 'transactions item: description');
    same($item['metadata'], array('order_id' => 'ORD-7002', 'items' => array(1, 2)), 'transactions item: metadata decoded');
    almaty_time($item['created_at'], 'transactions item: created_at');
    almaty_time($item['expires_at'], 'transactions item: expires_at', 3600);
    same($item['paid_at'], null, 'transactions item: paid_at');

    // Each filter on its own.
    $d = $list(array('amount_from' => 7002), 'amount_from=7002');
    same($d['total'], 3, 'amount_from=7002 (inclusive): total');
    same($ofOurs($d), array(7004, 7003, 7002), 'amount_from=7002: the payments, newest first');
    $d = $list(array('amount_to' => 7002), 'amount_to=7002');
    same($d['total'], count($LEDGER) - 2, 'amount_to=7002 (inclusive): total (all but 7003 and 7004)');
    same($ofOurs($d), array(7002, 7001), 'amount_to=7002: ours');
    $d = $list(array('amount_from' => 7002, 'amount_to' => 7003), 'amount_from=7002&amount_to=7003');
    same($ofOurs($d), array(7003, 7002), 'amount range: ours');
    same($d['total'], 2, 'amount range: total');
    $cancelled = count(array_filter($LEDGER, function ($p) {
        return $p['status'] === 'cancelled';
    }));
    $d = $list(array('status' => 'cancelled'), 'status=cancelled');
    same($d['total'], $cancelled, 'status=cancelled: total (as this run cancelled)');
    foreach ((array) $d['transactions'] as $t) {
        same($t['status'], 'cancelled', 'status=cancelled: every item');
    }
    $d = $list(array('status' => 'pending', 'amount_from' => 7000), 'status=pending&amount_from=7000');
    same($ofOurs($d), array(7004, 7002, 7001), 'status=pending&amount_from=7000: ours');
    $d = $list(array('date_from' => today()), 'date_from=today');
    same($d['total'], count($LEDGER), 'date_from=today (Asia/Almaty, inclusive): total');
    $d = $list(array('date_to' => today()), 'date_to=today');
    same($d['total'], count($LEDGER), 'date_to=today (inclusive): total');
    $d = $list(array('date_from' => today(), 'date_to' => today()), 'date_from=date_to=today');
    same($d['total'], count($LEDGER), 'date_from=date_to=today: total');
    $d = $list(array('date_to' => date('Y-m-d', strtotime('-1 day'))), 'date_to=yesterday');
    same($d['total'], 0, 'date_to=yesterday: total');
    $d = $list(array('date_from' => date('Y-m-d', strtotime('+1 day'))), 'date_from=tomorrow');
    same($d['total'], 0, 'date_from=tomorrow: total');
    $d = $list(array('status' => '', 'amount_from' => '0'), 'status=""&amount_from=0 (ignored)');
    same($d['total'], count($LEDGER), 'empty and "0" filters are ignored: total');

    // Paging with limit and offset over the four.
    $seen = array();
    foreach (array(0, 2) as $offset) {
        $d = $list(array('amount_from' => 7000, 'limit' => 2, 'offset' => $offset), "amount_from=7000&limit=2&offset=$offset");
        same($d['total'], 4, "page at offset $offset: total");
        same($d['limit'], 2, "page at offset $offset: limit");
        same($d['offset'], $offset, "page at offset $offset: offset");
        same(count((array) $d['transactions']), 2, "page at offset $offset: two items");
        foreach ((array) $d['transactions'] as $t) {
            $seen[] = (int) $t['amount'];
        }
    }
    same($seen, array(7004, 7003, 7002, 7001), 'two pages of two: every payment once, newest first');
    $d = $list(array('amount_from' => 7000, 'limit' => 2, 'offset' => 4), 'past the end');
    same($d['transactions'], array(), 'offset past the end: no items');
    same($d['total'], 4, 'offset past the end: total');
    $d = $list(array('limit' => 5000), 'limit=5000');
    same($d['limit'], 1000, 'limit is capped at 1000');
    reply($api, $api->transactions(array('limit' => -1)), 400, 'transactions with limit=-1');

    // Another merchant sees none of them.
    $theirs = reply($other, $other->transactions(array('amount_from' => 7000)), 200, 'transactions of another merchant');
    same($theirs['total'], 0, 'another merchant lists none of these payments');
};

$scenarios['webhooks'] = function () use ($api, $browser, $other) {
    global $RECEIVER_URL, $SECRET, $LEDGER;
    check($RECEIVER_URL !== '', 'RECEIVER_URL is set');
    $metadata = array('order_id' => 'W-1', 'price' => 100.0, 'empty' => new stdClass(), 'big' => 1e20,
        'items' => array(array('sku' => 'a/b', 'qty' => 2)), 'note' => 'Қазақ тілі');
    $hook = array('webhook_url' => $RECEIVER_URL . '/webhook', 'webhook_secret' => $SECRET);

    // 1. Paid through the sandbox.
    $made = create_payment($api, array('amount' => 1000, 'description' => 'Тур / Алматы',
        'metadata' => $metadata) + $hook, 'init with webhook_url, webhook_secret and metadata');
    $id = $made['transaction_id'];
    payer_sandbox($id, 'pay');
    $LEDGER[$id]['status'] = 'paid';
    $body = check_delivery(wait_webhook($id, 'paid'), 'paid', "paid webhook of $id");
    same($body['transaction_id'], $id, 'paid webhook: transaction_id');
    same($body['status'], 'paid', 'paid webhook: status');
    same($body['currency'], 'KZT', 'paid webhook: currency');
    same($body['description'], 'Тур / Алматы', 'paid webhook: description');
    check($body['amount'] == 1000 && $body['original_amount'] == 1000 && $body['paid_amount'] == 1000,
        'paid webhook: amount, original_amount, paid_amount are 1000, got ' . export(array_slice($body, 2, 5)));
    check($body['remaining_amount'] <= 10, 'paid webhook: remaining_amount is within 10 KZT of nothing');
    almaty_time($body['paid_at'], 'paid webhook: paid_at');
    same($body['metadata'], json_decode(json_encode($metadata), true), 'paid webhook: metadata as the merchant sent it');
    check(array_key_exists('payment_method', $body) && ($body['payment_method'] === null || is_string($body['payment_method'])),
        'paid webhook: payment_method (code or null)');
    same(isset($body['payment_mismatch']) ? $body['payment_mismatch'] : 'missing', false, 'paid webhook: payment_mismatch');

    $data = reply($browser, $browser->getPayment($id), 200, 'GET the paid payment');
    same($data['status'], 'paid', 'GET after paying: status');
    same($data['paid_amount'], '1000.00', 'GET after paying: paid_amount');
    almaty_time($data['paid_at'], 'GET after paying: paid_at');

    // Transaction detail: the delivery is logged; never the webhook_secret (legacy-api.md §7).
    $detail = wait_for(function () use ($api, $id) {
        $r = $api->transaction($id);
        return isset($r['data']['webhook_logs']) && count($r['data']['webhook_logs']) > 0 ? $r : null;
    }, WAIT, "GET /api/transaction/$id never listed a webhook log");
    $detail = reply($api, $detail, 200, 'GET /api/transaction/{id}');
    keys_are($detail, array('transaction', 'partial_payments', 'webhook_logs'), 'transaction detail: data');
    $t = $detail['transaction'];
    same($t['transaction_id'], $id, 'transaction detail: transaction_id');
    same($t['status'], 'paid', 'transaction detail: status');
    same($t['amount'], '1000.00', 'transaction detail: amount');
    same($t['metadata'], json_decode(json_encode($metadata), true), 'transaction detail: metadata decoded');
    $leak = array();
    array_walk_recursive($detail, function ($v, $k) use (&$leak, $SECRET) {
        if (stripos((string) $k, 'secret') !== false || $v === $SECRET) {
            $leak[] = $k;
        }
    });
    same($leak, array(), 'transaction detail: no webhook_secret (nor any secret) anywhere');
    same(count($detail['partial_payments']), 1, 'transaction detail: one partial payment');
    $pp = $detail['partial_payments'][0];
    foreach (array('amount', 'commission_percent', 'commission_amount', 'status', 'is_refunded', 'paid_at', 'refunded_at') as $k) {
        check(array_key_exists($k, $pp), "partial payment: has $k");
    }
    same($pp['amount'], '1000.00', 'partial payment: amount');
    same($pp['is_refunded'], 0, 'partial payment: is_refunded');
    almaty_time($pp['paid_at'], 'partial payment: paid_at');
    $log = $detail['webhook_logs'][0];
    foreach (array('event_type', 'is_success', 'response_code', 'created_at') as $k) {
        check(array_key_exists($k, $log), "webhook log: has $k");
    }
    same($log['event_type'], 'paid', 'webhook log: event_type');
    same($log['is_success'], 1, 'webhook log: is_success');
    same($log['response_code'], 200, 'webhook log: response_code');
    almaty_time($log['created_at'], 'webhook log: created_at');
    $r = $other->transaction($id);
    reply($other, $r, 404, 'GET /api/transaction/{id} of another merchant\'s payment');
    $r = $api->transaction(str_repeat('0', 32));
    reply($api, $r, 404, 'GET /api/transaction/{unknown id}');

    // 2. The payer cancels at the bank, then pays: no `cancelled` webhook (legacy-api.md §7), and the
    //    payment was never cancelled for the merchant.
    $made = create_payment($api, array('amount' => 1100) + $hook, 'init: the payer will cancel, then pay');
    $id2 = $made['transaction_id'];
    payer_sandbox($id2, 'cancel');
    $data = reply($browser, $browser->getPayment($id2), 200, 'GET after the payer cancelled');
    same($data['status'], 'pending', 'a payer cancel leaves the payment pending (payable)');
    payer_sandbox($id2, 'pay');
    $LEDGER[$id2]['status'] = 'paid';
    check_delivery(wait_webhook($id2, 'paid'), 'paid', "paid webhook of $id2");
    $events = array_map(function ($d) {
        return $d['data']['event'];
    }, deliveries_for($id2));
    check(!in_array('cancelled', $events, true), "a payer cancel sent no 'cancelled' webhook; $id2 got " . export($events));

    // Every delivery this run received verified in the old receiver.
    foreach (deliveries() as $d) {
        check($d['verified'] && $d['fixed_point'], 'a delivery the old receiver refused: ' . base64_decode($d['raw']));
    }
};

$scenarios['kaspi'] = function () use ($browser) {
    global $KASPI_TOKEN, $KASPI_SETUP_ERROR, $SIM, $BASE, $RECEIVER_URL, $SECRET;
    check($KASPI_TOKEN !== '', 'the Kaspi scenario needs a legacy merchant whose payments go to Kaspi QR: '
        . ($KASPI_SETUP_ERROR ?: 'KASPI_TOKEN is not set'));
    check($SIM !== '', 'KASPI_SIM_URL is set');
    $kaspi = new LegacyClient($BASE, $KASPI_TOKEN);
    $hook = array('webhook_url' => $RECEIVER_URL . '/kaspi-webhook', 'webhook_secret' => $SECRET);

    $made = create_payment($kaspi, array('amount' => 1000, 'metadata' => array('order_id' => 'K-1')) + $hook,
        'init at the Kaspi merchant');
    $id = $made['transaction_id'];
    $data = reply($browser, $browser->kaspi($id, 'kaspi_gold'), 200, 'POST /api/payment/{id}/kaspi (kaspi_gold)');
    keys_are($data, array('transaction_id', 'amount', 'original_amount', 'commission_amount', 'commission_percent',
        'payment_url', 'qr_code', 'terminal_id'), 'kaspi: data');
    same($data['transaction_id'], $id, 'kaspi: transaction_id');
    same($data['original_amount'], '1000.00', 'kaspi: original_amount');
    check(is_number($data['commission_amount']), 'kaspi: commission_amount is a number');
    check(is_string($data['commission_percent']) && preg_match(DECIMAL_RE, $data['commission_percent']),
        'kaspi: commission_percent is a DECIMAL string');
    check((is_number($data['amount']) || (is_string($data['amount']) && is_numeric($data['amount'])))
        && $data['amount'] >= 1000, 'kaspi: amount (with any fee) is at least 1000, got ' . export($data['amount']));
    check(is_string($data['payment_url']) && preg_match('#^https?://#', $data['payment_url']),
        'kaspi: payment_url is a link, got ' . export($data['payment_url']));
    check(is_string($data['qr_code']) && $data['qr_code'] !== '', 'kaspi: qr_code is a string');
    check($data['terminal_id'] === null || is_int($data['terminal_id']), 'kaspi: terminal_id an int (or null without a terminal)');

    $got = reply($browser, $browser->getPayment($id), 200, 'GET after the Kaspi start');
    same($got['status'], 'processing', 'GET after the Kaspi start: status');
    check(is_string($got['payment_url']) && $got['payment_url'] !== '', 'GET after the Kaspi start: payment_url');

    // The payer pays in the Kaspi app (the simulator).
    $qr = wait_for(function () use ($made) {
        foreach (sim('GET', '/_sim/payments') as $p) {
            if ($p['Status'] === 'QrTokenCreated' || $p['Status'] === 'Wait') {
                return $p;
            }
        }
        return null;
    }, WAIT, 'no Kaspi QR was created at the simulator');
    sim('POST', '/_sim/payments/' . $qr['QrPaymentId'] . '/confirm', array('product' => 'Gold'));
    wait_for(function () use ($browser, $id) {
        $r = $browser->getPayment($id);
        return isset($r['data']['status']) && $r['data']['status'] === 'paid' ? true : null;
    }, WAIT, "the Kaspi payment $id never showed status paid");
    $body = check_delivery(wait_webhook($id, 'paid'), 'paid', "paid webhook of the Kaspi payment $id");
    same($body['status'], 'paid', 'Kaspi paid webhook: status');
    same($body['payment_method'], 'kaspi_gold', 'Kaspi paid webhook: payment_method');
    same($body['payment_mismatch'], false, 'Kaspi paid webhook: payment_mismatch');
    check($body['original_amount'] == 1000, 'Kaspi paid webhook: original_amount 1000');
    check($body['actual_amount_received'] >= 990 && $body['remaining_amount'] <= 10,
        'Kaspi paid webhook: paid means net within 10 KZT of the original, got ' . export(array_slice($body, 2, 5)));
    same($body['metadata'], array('order_id' => 'K-1'), 'Kaspi paid webhook: metadata');

    reply($browser, $browser->kaspi($id), 400, 'kaspi on a paid payment');
    reply($browser, $browser->kaspi(str_repeat('0', 32)), 404, 'kaspi on an unknown id (no token: the documented 404)');

    $made = create_payment($kaspi, array('amount' => 1000), 'init, then an unknown method');
    reply($browser, $browser->kaspi($made['transaction_id'], 'kaspi_nope'), 400, 'kaspi with an unknown payment_method');

    // A cancelled payment is not revived by the public /kaspi (legacy-api.md §7).
    $made = create_payment($kaspi, array('amount' => 1000), 'init, cancel, then kaspi');
    reply($kaspi, $kaspi->cancel($made['transaction_id']), 200, 'cancel at the Kaspi merchant');
    reply($browser, $browser->kaspi($made['transaction_id']), 400, 'kaspi on a cancelled payment');
    $got = reply($browser, $browser->getPayment($made['transaction_id']), 200, 'GET after kaspi on a cancelled payment');
    same($got['status'], 'cancelled', 'a cancelled payment stays cancelled');
};

$scenarios['statistics'] = function () use ($api) {
    global $LEDGER;
    $data = reply($api, $api->statistics(today(), today()), 200, 'GET /api/statistics (today)');
    keys_are($data, array('period', 'summary', 'by_payment_method', 'credit_installment'), 'statistics: data');
    same($data['period'], array('from' => today(), 'to' => today()), 'statistics: period');
    $s = $data['summary'];
    keys_are($s, array('total_transactions', 'paid_count', 'partially_paid_count', 'cancelled_count', 'total_paid_amount',
        'total_received_amount', 'total_commission', 'refund_count', 'refunded_amount'), 'statistics: summary');
    foreach ($s as $k => $v) {
        check(is_number($v), "statistics summary: $k is a number, got " . export($v));
    }
    $count = function ($status) use ($LEDGER) {
        return count(array_filter($LEDGER, function ($p) use ($status) {
            return $p['status'] === $status;
        }));
    };
    $paidSum = array_sum(array_map(function ($p) {
        return $p['status'] === 'paid' ? $p['amount'] : 0;
    }, $LEDGER));
    same($s['total_transactions'], count($LEDGER), 'statistics: total_transactions (this run\'s payments)');
    same($s['paid_count'], $count('paid'), 'statistics: paid_count');
    same($s['cancelled_count'], $count('cancelled'), 'statistics: cancelled_count');
    same($s['partially_paid_count'], 0, 'statistics: partially_paid_count');
    check(abs($s['total_paid_amount'] - $paidSum) < 0.005, "statistics: total_paid_amount is $paidSum, got "
        . export($s['total_paid_amount']));
    same($s['refund_count'], 0, 'statistics: refund_count');
    check(is_array($data['by_payment_method']), 'statistics: by_payment_method is a list');
    foreach ($data['by_payment_method'] as $row) {
        keys_are($row, array('payment_method', 'count', 'total_amount', 'total_commission'), 'statistics: a by_payment_method row');
        check(is_int($row['count']) && is_string($row['total_amount']) && is_string($row['total_commission']),
            'statistics: by_payment_method row types (count int, amounts DECIMAL strings)');
    }
    keys_are($data['credit_installment'], array('count', 'total_amount', 'total_commission'), 'statistics: credit_installment');
    $default = reply($api, $api->statistics(), 200, 'GET /api/statistics (default period)');
    same($default['period'], array('from' => date('Y-m-d', strtotime('-30 days')), 'to' => today()),
        'statistics: the default period is the last 30 days');
    $yesterday = reply($api, $api->statistics(date('Y-m-d', strtotime('-2 days')), date('Y-m-d', strtotime('-1 day'))),
        200, 'GET /api/statistics (before this run)');
    same($yesterday['summary']['total_transactions'], 0, 'statistics before today: no payments');
};

// ---- run ----------------------------------------------------------------------------------------

$only = getenv('ONLY') ? explode(',', getenv('ONLY')) : array_keys($scenarios);
$failed = 0;
$passed = 0;
foreach ($scenarios as $name => $scenario) {
    if (!in_array($name, $only, true)) {
        continue;
    }
    $started = microtime(true);
    $before = count($SOFT_FAILURES);
    try {
        $scenario();
        if (count($SOFT_FAILURES) > $before) {
            throw new CheckFailed((count($SOFT_FAILURES) - $before) . ' failed checks (above)');
        }
        $passed++;
        printf("ok    %-16s %.1fs\n", $name, microtime(true) - $started);
    } catch (CheckFailed $e) {
        $failed++;
        printf("FAIL  %-16s %s\n", $name, $e->getMessage());
    } catch (Throwable $e) {
        $failed++;
        printf("ERROR %-16s %s: %s at %s:%d\n", $name, get_class($e), $e->getMessage(), $e->getFile(), $e->getLine());
    }
}
echo "$passed passed, $failed failed\n";
exit($failed ? 1 : 0);
