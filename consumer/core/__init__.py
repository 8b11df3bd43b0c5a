"""Pure code, compiled in production: records to events, hashing, routing, batching, offsets.

No I/O and no clock here (the caller passes the time in); nothing here imports adapters,
runtime or ops (import-linter checks it: pyproject.toml).
"""
