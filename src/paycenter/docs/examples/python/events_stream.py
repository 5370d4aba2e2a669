"""Read your webhook events as they happen: GET /api/events/stream (server-sent events).

    pip install httpx
    PAYCENTER_URL=http://127.0.0.1:8000 PAYCENTER_TOKEN=pct_... python events_stream.py

`paycenter listen --forward-to URL` does this and POSTs each event to your endpoint. Each event
carries `body` and `headers`: POST them as they are and your signature checks pass. Keep the last
`id:` line's value and send it as Last-Event-ID (here LAST_EVENT_ID) when you reconnect: the
stream goes on with nothing missed or repeated. MAX_EVENTS stops after that many events.
"""

import json
import os
import sys

import httpx

base_url = os.environ.get("PAYCENTER_URL", "http://127.0.0.1:8000")
headers = {"X-API-Token": os.environ["PAYCENTER_TOKEN"], "Accept": "text/event-stream"}
if os.environ.get("LAST_EVENT_ID"):
    headers["Last-Event-ID"] = os.environ["LAST_EVENT_ID"]
max_events = int(os.environ.get("MAX_EVENTS", "0"))  # 0: until interrupted

seen = 0
with httpx.stream(
    "GET",
    f"{base_url}/api/events/stream",
    headers=headers,
    params={"types": "paid,refunded"},
    timeout=httpx.Timeout(30, read=60),  # a heartbeat comes every 15 s
) as response:
    if response.status_code != 200:
        sys.exit(f"HTTP {response.status_code}: {response.read().decode()}")
    event, data, position = "message", [], None
    for line in response.iter_lines():
        if line.startswith(":"):
            continue  # a heartbeat
        if line:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
            elif field == "id":
                position = value  # where to resume from
            continue
        if event == "webhook" and data:  # an empty line ends a message
            message = json.loads("\n".join(data))
            summary = {k: message[k] for k in ("type", "transaction_id", "id")}
            print(json.dumps({**summary, "position": position}), flush=True)
            seen += 1
            if seen == max_events:
                break
        event, data = "message", []
