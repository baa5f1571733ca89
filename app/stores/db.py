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


def make_engine(section: Mapping[str, Any] | None, default_file: str, *, pool_size: int = 5,
                cooperative: bool = False) -> Engine:
    """``{"type": "sqlite", "config": {"path": ...}}`` or ``{"type": "postgres", "config": {...}}``.

    ``cooperative``: a SQLite engine used from the event loop itself. Its connections never
    wait in C for another process's lock (the caller gets "database is locked" at once and
    retries after a gevent sleep) and never checkpoint the WAL on commit (the caller runs
    ``checkpoint`` in a thread), so no call blocks the worker's other greenlets.
    """
    section = section or {}
    kind = section.get("type", "sqlite")
    config = section.get("config") or {}
    if kind == "sqlite":
        path = Path(config.get("path") or app_dir() / default_file).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(f"sqlite:///{path}",
                               connect_args={"timeout": 0 if cooperative else 30, "check_same_thread": False})
        event.listen(engine, "connect", _cooperative_pragmas if cooperative else _sqlite_pragmas)
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


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, busy_ms: int = 30000, autocheckpoint: int = 1000) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
    cursor.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint}")
    cursor.close()


def _cooperative_pragmas(dbapi_connection: Any, record: Any) -> None:
    _sqlite_pragmas(dbapi_connection, record, busy_ms=0, autocheckpoint=0)


def is_locked(exc: BaseException) -> bool:
    """SQLite's "database is locked" / "busy": another process holds the write lock."""
    text = str(getattr(exc, "orig", exc)).lower()
    return "database is locked" in text or "database is busy" in text
