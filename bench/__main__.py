"""`make bench`: every benchmark printed as Markdown tables (SQLite and PostgreSQL; bench.api MariaDB too)."""

import sys

from bench import api, biller, latency, poller, webhooks

if __name__ == "__main__":
    for bench in (webhooks, poller, latency, biller, api):
        print(f"\n## {bench.__name__}\n", flush=True)
        sys.argv = [sys.argv[0]]
        bench.main()
