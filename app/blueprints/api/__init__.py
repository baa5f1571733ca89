"""Management API blueprints (/api/...)."""
