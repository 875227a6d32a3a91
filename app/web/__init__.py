"""The HTTP surface (FastAPI): webhooks, domain event intake, product page reads, operations."""
