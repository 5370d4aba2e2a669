// Receive paycenter webhooks: check both signatures, refuse replays, drop duplicates and stale events.
//
//   WEBHOOK_SECRET=test_secret_key WEBHOOK_SIGNING_SECRETS=whsec_... node webhook_receiver.mjs
//
// Environment:
//   PORT                     port to listen on (127.0.0.1), 8080 by default
//   WEBHOOK_SECRET           the payment's webhook_secret: the key of X-Webhook-Signature
//   WEBHOOK_SIGNING_SECRETS  your whsec_ signing secret (GET /api/webhook-secret); during a rotation
//                            the new and the old one, comma-separated: either signature is accepted
//
// Node 18+, built-in modules only. Prints one line per request: accepted, duplicate, stale or rejected.
// (The official `standardwebhooks` npm package verifies the webhook-* headers the same way.)
import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";

const TOLERANCE = 5 * 60; // seconds: a webhook-timestamp further from now is a replay (or a bad clock)

const webhookSecret = process.env.WEBHOOK_SECRET ?? "";
const signingSecrets = (process.env.WEBHOOK_SIGNING_SECRETS ?? "")
  .split(",")
  .map((s) => s.trim())
  .filter(Boolean);

// Keep these in your database: a unique key on the event id, the last sequence per payment.
const seenEvents = new Set();
const lastSequence = new Map();

class Rejected extends Error {}

function sameText(a, b) {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

// X-Webhook-Signature: lowercase hex HMAC-SHA256 of the raw body, keyed with the payment's webhook_secret.
function verifyHexSignature(body, signature, secret) {
  const expected = createHmac("sha256", secret).update(body).digest("hex");
  if (!sameText(expected, signature ?? "")) throw new Rejected("bad X-Webhook-Signature");
}

// webhook-signature: "v1,<base64>" HMAC-SHA256 of "id.timestamp.body" with a whsec_ secret.
// Several signatures, space-separated, during a secret rotation. Returns the event id.
function verifyStandardWebhooks(body, headers, secrets, now) {
  const msgId = headers["webhook-id"] ?? "";
  const timestamp = headers["webhook-timestamp"] ?? "";
  const signatures = (headers["webhook-signature"] ?? "").split(" ").filter(Boolean);
  if (!msgId || !/^\d+$/.test(timestamp) || signatures.length === 0) {
    throw new Rejected("missing webhook-id, webhook-timestamp or webhook-signature");
  }
  if (Math.abs(now - Number(timestamp)) > TOLERANCE) {
    throw new Rejected("webhook-timestamp too far from now (a replay?)");
  }
  const signed = Buffer.concat([Buffer.from(`${msgId}.${timestamp}.`), body]);
  for (const secret of secrets) {
    const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
    const expected = "v1," + createHmac("sha256", key).update(signed).digest("base64");
    if (signatures.some((given) => sameText(expected, given))) return msgId;
  }
  throw new Rejected("bad webhook-signature");
}

// Check, deduplicate and order one delivery. Returns [HTTP status, what happened].
function handle(body, headers) {
  let eventId;
  try {
    verifyHexSignature(body, headers["x-webhook-signature"], webhookSecret);
    eventId = verifyStandardWebhooks(body, headers, signingSecrets, Date.now() / 1000);
  } catch (error) {
    if (error instanceof Rejected) return [401, `rejected: ${error.message}`];
    throw error;
  }
  const event = JSON.parse(body.toString("utf8"));
  const paymentId = event.transaction_id;
  const sequence = event.sequence;

  if (seenEvents.has(eventId)) return [200, `duplicate ${eventId}`]; // a retry or a resend
  seenEvents.add(eventId);
  if (sequence <= (lastSequence.get(paymentId) ?? 0)) {
    return [200, `stale ${event.event} ${paymentId} sequence=${sequence}`]; // keep the newer state
  }
  lastSequence.set(paymentId, sequence);

  // Every event carries the payment's state: apply it to your order (metadata.order_id) here.
  return [200, `accepted ${event.event} ${paymentId} sequence=${sequence} status=${event.status}`];
}

if (!webhookSecret || signingSecrets.length === 0) {
  console.error("set WEBHOOK_SECRET and WEBHOOK_SIGNING_SECRETS");
  process.exit(1);
}

const server = createServer((request, response) => {
  const chunks = [];
  request.on("data", (chunk) => chunks.push(chunk));
  request.on("end", () => {
    const rawBody = Buffer.concat(chunks); // the exact bytes signed: verify before parsing
    const [status, outcome] = handle(rawBody, request.headers); // Node lowercases header names
    console.log(outcome);
    // Any 2xx tells paycenter "delivered"; anything else is retried.
    response.writeHead(status, { "Content-Type": "text/plain" }).end(outcome);
  });
});
server.listen(Number(process.env.PORT ?? 8080), "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}/`);
});
