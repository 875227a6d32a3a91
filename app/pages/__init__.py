"""The Product Page Service: one pre-composed document per (sku, channel), fed by
version-aware, idempotent consumers of catalog, pricing, inventory and media events."""
