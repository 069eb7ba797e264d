"""The outbound queue: routing, TLS policy, the SMTP sender, retries, DSN bounces."""
