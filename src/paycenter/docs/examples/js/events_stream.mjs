// Read your webhook events as they happen: GET /api/events/stream (server-sent events).
// Node 18+ (built-in fetch), an ES module:
//   PAYCENTER_URL=http://127.0.0.1:8000 PAYCENTER_TOKEN=pct_... node events_stream.mjs
//
// `paycenter listen --forward-to URL` does this and POSTs each event to your endpoint. Each event
// carries `body` and `headers`: POST them as they are and your signature checks pass. Keep the
// last `id:` line's value and send it as Last-Event-ID (here LAST_EVENT_ID) when you reconnect:
// the stream goes on with nothing missed or repeated. MAX_EVENTS stops after that many events.
const baseUrl = process.env.PAYCENTER_URL ?? "http://127.0.0.1:8000";
const maxEvents = Number(process.env.MAX_EVENTS ?? 0); // 0: until interrupted
const headers = { "X-API-Token": process.env.PAYCENTER_TOKEN, Accept: "text/event-stream" };
if (process.env.LAST_EVENT_ID) headers["Last-Event-ID"] = process.env.LAST_EVENT_ID;

const response = await fetch(`${baseUrl}/api/events/stream?types=paid,refunded`, { headers });
if (response.status !== 200) {
  console.error(`HTTP ${response.status}: ${await response.text()}`);
  process.exit(1);
}
const decoder = new TextDecoder();
let buffer = "";
let event = "message";
let data = [];
let position = null;
let seen = 0;
for await (const chunk of response.body) {
  buffer += decoder.decode(chunk, { stream: true });
  let cut;
  while ((cut = buffer.indexOf("\n")) >= 0) {
    const line = buffer.slice(0, cut).replace(/\r$/, "");
    buffer = buffer.slice(cut + 1);
    if (line.startsWith(":")) continue; // a heartbeat
    if (line) {
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
      else if (field === "id") position = value; // where to resume from
      continue;
    }
    if (event === "webhook" && data.length) { // an empty line ends a message
      const message = JSON.parse(data.join("\n"));
      const { type, transaction_id, id } = message;
      console.log(JSON.stringify({ type, transaction_id, id, position }));
      if (++seen === maxEvents) process.exit(0);
    }
    event = "message";
    data = [];
  }
}
