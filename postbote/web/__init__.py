"""The HTTP server: admin interface, JSON API, metrics and health, client autoconfiguration."""
