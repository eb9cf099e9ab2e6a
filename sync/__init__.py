"""Placeholder package: see the open issue for this part; nothing is implemented here yet."""
