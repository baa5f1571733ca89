"""One SQLAlchemy engine from a store section of config.json (``sqlite`` or ``postgres``).

PostgreSQL is reached through pg8000, a pure-Python driver: its sockets are the
standard library's, so under gevent's patching a query yields to other greenlets
instead of blocking the worker. SQLite runs in WAL mode so readers never wait on writers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from sqlalchemy import URL, Engine, create_engine, event

from app.config import ConfigError, app_dir


def make_engine(section: Mapping[str, Any] | None, default_file: str, *, pool_size: int = 5) -> Engine:
    """``{"type": "sqlite", "config": {"path": ...}}`` or ``{"type": "postgres", "config": {...}}``."""
    section = section or {}
    kind = section.get("type", "sqlite")
    config = section.get("config") or {}
    if kind == "sqlite":
        path = Path(config.get("path") or app_dir() / default_file).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if kind == "postgres":
        url = URL.create(
            "postgresql+pg8000",
            username=config.get("user") or "postgres",
            password=config.get("password") or None,
            host=config.get("host") or "127.0.0.1",
            port=int(config.get("port") or 5432),
            database=config.get("db_name") or "bifrost",
        )
        connect_args: dict[str, Any] = {"timeout": 10}
        if str(config.get("ssl_mode") or "disable") not in ("disable", "allow", "prefer"):
            import ssl

            connect_args["ssl_context"] = ssl.create_default_context()
        return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                             pool_recycle=300, connect_args=connect_args)
    raise ConfigError(f"unknown store type {kind!r} (sqlite or postgres)")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
