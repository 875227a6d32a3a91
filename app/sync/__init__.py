"""The sync engine: delta, full and republish runs, cursors, locks, batches, dead letters."""
