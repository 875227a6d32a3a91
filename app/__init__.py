"""pimsync: keeps product catalogs in step between a PIM and every sales channel."""

__version__ = "0.1.0"
