"""Mapping contracts: versioned PIM-to-channel attribute mappings, transforms, drift."""
