"""The statuses of a channel catalog row (pure: the unit logic decides them without I/O)."""

# Row statuses. Only `published` rows are enabled; every other one says why not.
PUBLISHED = "published"
INCOMPLETE = "incomplete"
FILTERED = "filtered"
DISABLED_IN_PIM = "disabled_in_pim"
ORPHAN = "orphan"
REMOVED = "removed"
STATUSES = (PUBLISHED, INCOMPLETE, FILTERED, DISABLED_IN_PIM, ORPHAN, REMOVED)
