"""``prune``: structured channel pruning (dependency groups, importance, least-squares repair)."""
