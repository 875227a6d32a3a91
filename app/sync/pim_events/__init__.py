"""Event-driven sync from the PIM's webhooks: ``formats`` (Akeneo's two payloads, parsed),
``models`` (event ids, pending work), ``repository`` (their SQL) and ``apply`` (the rules:
accept once, coalesce per product, fetch and publish)."""
