<?php
/**
 * A merchant's client for the OLD ByFly Payment Center API, written the way the old merchants wrote
 * theirs: curl, the X-API-Token header, json_decode($body, true). It is written from the old API's
 * wire facts (legacy-api.md), not from paycenter's code: old merchants' code must work unchanged
 * against paycenter. It never sends a Paycenter-Version header (old code does not know it).
 *
 * Every method returns the decoded reply (an array) or null when the body was not JSON; the HTTP
 * status, the raw body and the headers of the last call are in $lastCode, $lastBody, $lastHeaders.
 */
class LegacyClient
{
    public $lastCode = 0;
    public $lastBody = '';
    public $lastHeaders = array();
    public $lastUrl = '';

    private $baseUrl;
    private $token;
    private $timeout;

    /** $token null: a caller without a token (the payer's browser on the payment page). */
    public function __construct($baseUrl, $token = null, $timeout = 30)
    {
        $this->baseUrl = rtrim($baseUrl, '/');
        $this->token = $token;
        $this->timeout = $timeout;
    }

    /** POST /api/payment/init: amount (tenge), currency, description, customer_*, payment_method_id,
     *  payment_type, webhook_url, webhook_secret, metadata. 201 on success. */
    public function init(array $params, $path = '/api/payment/init')
    {
        return $this->request('POST', $path, $params);
    }

    /** GET /api/payment/{id}: the payment's state (public). */
    public function getPayment($transactionId)
    {
        return $this->request('GET', '/api/payment/' . rawurlencode($transactionId));
    }

    /** GET /api/payment/{id}/status (public). */
    public function status($transactionId)
    {
        return $this->request('GET', '/api/payment/' . rawurlencode($transactionId) . '/status');
    }

    /** POST /api/payment/{id}/kaspi (public): start paying with Kaspi; payment_method defaults to kaspi_gold. */
    public function kaspi($transactionId, $paymentMethod = 'kaspi_gold')
    {
        return $this->request('POST', '/api/payment/' . rawurlencode($transactionId) . '/kaspi',
            array('payment_method' => $paymentMethod));
    }

    /** POST /api/payment/{id}/cancel. */
    public function cancel($transactionId)
    {
        return $this->request('POST', '/api/payment/' . rawurlencode($transactionId) . '/cancel');
    }

    /** GET /api/payment-methods (token). */
    public function paymentMethods()
    {
        return $this->request('GET', '/api/payment-methods');
    }

    /** GET /api/payment-methods/active (public). */
    public function activePaymentMethods()
    {
        return $this->request('GET', '/api/payment-methods/active');
    }

    /** GET /api/transactions: status, date_from, date_to, amount_from, amount_to, limit, offset. */
    public function transactions(array $filters = array())
    {
        $query = $filters ? '?' . http_build_query($filters) : '';
        return $this->request('GET', '/api/transactions' . $query);
    }

    /** GET /api/transaction/{id}: {transaction, partial_payments, webhook_logs}. */
    public function transaction($transactionId)
    {
        return $this->request('GET', '/api/transaction/' . rawurlencode($transactionId));
    }

    /** GET /api/statistics?date_from=&date_to= */
    public function statistics($dateFrom = null, $dateTo = null)
    {
        $q = array();
        if ($dateFrom !== null) {
            $q['date_from'] = $dateFrom;
        }
        if ($dateTo !== null) {
            $q['date_to'] = $dateTo;
        }
        return $this->request('GET', '/api/statistics' . ($q ? '?' . http_build_query($q) : ''));
    }

    /** POST /api/payment/{id}/track-visit (public). */
    public function trackVisit($transactionId)
    {
        return $this->request('POST', '/api/payment/' . rawurlencode($transactionId) . '/track-visit');
    }

    /** $body: an array sent as JSON, or null for no body. */
    public function request($method, $path, $body = null)
    {
        return $this->send($method, $path, $body === null ? null : json_encode($body), 'application/json');
    }

    /** A request with the body as given: $contentType null sends none of our own (curl's default
     *  for a string body is application/x-www-form-urlencoded, as in much old merchant code). */
    public function send($method, $path, $rawBody, $contentType = null, array $extraHeaders = array())
    {
        $this->lastUrl = $this->baseUrl . $path;
        $this->lastHeaders = array();
        $headers = array_merge(array('Accept: application/json'), $extraHeaders);
        if ($this->token !== null) {
            $headers[] = 'X-API-Token: ' . $this->token;
        }
        $ch = curl_init($this->lastUrl);
        curl_setopt($ch, CURLOPT_RETURNTRANSFER, true);
        curl_setopt($ch, CURLOPT_CUSTOMREQUEST, $method);
        curl_setopt($ch, CURLOPT_TIMEOUT, $this->timeout);
        curl_setopt($ch, CURLOPT_FOLLOWLOCATION, false); // a redirect is an answer to check, not to follow
        curl_setopt($ch, CURLOPT_PROXY, '');
        if ($rawBody !== null) {
            if ($contentType !== null) {
                $headers[] = 'Content-Type: ' . $contentType;
            }
            curl_setopt($ch, CURLOPT_POSTFIELDS, $rawBody);
        }
        curl_setopt($ch, CURLOPT_HTTPHEADER, $headers);
        $self = $this;
        curl_setopt($ch, CURLOPT_HEADERFUNCTION, function ($ch, $line) use ($self) {
            $parts = explode(':', $line, 2);
            if (count($parts) === 2) {
                $self->lastHeaders[strtolower(trim($parts[0]))] = trim($parts[1]);
            }
            return strlen($line);
        });
        $raw = curl_exec($ch);
        if ($raw === false) {
            $error = curl_error($ch);
            curl_close($ch);
            throw new RuntimeException("$method {$this->lastUrl}: curl error: $error");
        }
        $this->lastCode = curl_getinfo($ch, CURLINFO_HTTP_CODE);
        curl_close($ch);
        $this->lastBody = $raw;
        return json_decode($raw, true);
    }
}
