"""A PostgreSQL database of its own for one test run, on the machine's server (127.0.0.1:5432), dropped after,
and the config.json section of a store (config_store or logs_store) kept in it."""
from __future__ import annotations

import contextlib
import uuid

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"


@contextlib.contextmanager
def scratch_database(prefix: str = "bifrost_test"):
    """Yields the name of a fresh database, unique to this run; dropped afterwards, connections or not."""
    import pg8000.native

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = pg8000.native.Connection(PG_USER, host=PG_HOST, port=PG_PORT, database="postgres")
    admin.run(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        admin.run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def postgres_store(db_name: str, port: int = PG_PORT, **extra) -> dict:
    """A config_store or logs_store section for ``db_name``; ``extra`` adds store options (e.g. queue_size)."""
    return {"enabled": True, "type": "postgres", **extra,
            "config": {"host": PG_HOST, "port": port, "user": PG_USER, "password": "", "db_name": db_name,
                       "ssl_mode": "disable"}}
