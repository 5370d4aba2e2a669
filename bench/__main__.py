"""`make bench`: every benchmark, SQLite and PostgreSQL, printed as Markdown tables."""

from bench import webhooks

if __name__ == "__main__":
    webhooks.main()
