"""Management routes under /api."""
