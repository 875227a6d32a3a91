"""Target channels: configuration, completeness, filters, locale resolution, the catalog store."""
