"""The PIM side: Akeneo standard-format products, catalog definitions and sources."""
