"""The management API under /api (one module per surface: logs, ...)."""
