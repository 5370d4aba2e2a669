"""The people who run paycenter: operator accounts and roles, admin sessions, login throttling and
the audit log. A domain (kit-only imports) so that the admin panel, the CLI and the daily cleanup
job can all use it without the job reaching up into the admin panel, an edge."""
