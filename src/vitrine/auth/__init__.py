"""Accounts of a multi-user server: passwords, API tokens, the ownership policy, rate limits and
storage quotas. Used by the server's security layer and the `vitrine users` commands."""
