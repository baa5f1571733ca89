"""Where MCP client configs live at run time, shared by every worker (SQLite in the app dir by default).

config.json's ``mcp.client_configs`` seed the table whenever that section changes (a client
dropped from the file is dropped from the table); the /api/mcp endpoints edit it afterwards. Every change bumps a version number that each
worker polls, so a change made through one worker reaches all of them without a restart.
"""
from __future__ import annotations

import hashlib
import time
from typing import Any, Mapping, Sequence

import orjson
from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text, insert, select, update
from sqlalchemy.engine import Engine

from app.stores.db import make_engine

metadata = MetaData()
clients = Table(
    "mcp_clients", metadata,
    Column("name", String(128), primary_key=True),
    Column("document", Text, nullable=False),  # the config as given (env. references kept)
    Column("updated_at", Float, nullable=False),
)
meta = Table(
    "mcp_meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("number", Integer, nullable=False, default=0),
)


class ClientStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine)

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> "ClientStore":
        return cls(make_engine(section, "config.db", pool_size=2))

    def version(self) -> int:
        with self.engine.connect() as conn:
            row = conn.execute(select(meta.c.number).where(meta.c.key == "version")).first()
        return row[0] if row else 0

    def all(self) -> tuple[int, list[dict]]:
        with self.engine.connect() as conn:
            row = conn.execute(select(meta.c.number).where(meta.c.key == "version")).first()
            docs = [orjson.loads(r[0]) for r in conn.execute(select(clients.c.document).order_by(clients.c.name))]
        return (row[0] if row else 0), docs

    def get(self, name: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(clients.c.document).where(clients.c.name == name)).first()
        return orjson.loads(row[0]) if row else None

    def put(self, document: Mapping[str, Any], *, create: bool) -> bool:
        """Insert (create) or replace a client's config; False when it already exists / does not exist."""
        name = str(document["name"])
        with self.engine.begin() as conn:
            exists = conn.execute(select(clients.c.name).where(clients.c.name == name)).first() is not None
            if exists == create:
                return False
            values = {"document": orjson.dumps(dict(document)).decode(), "updated_at": time.time()}
            if create:
                conn.execute(insert(clients).values(name=name, **values))
            else:
                conn.execute(update(clients).where(clients.c.name == name).values(**values))
            self._bump(conn)
        return True

    def delete(self, name: str) -> bool:
        with self.engine.begin() as conn:
            gone = conn.execute(clients.delete().where(clients.c.name == name)).rowcount > 0
            if gone:
                self._bump(conn)
        return gone

    def seed(self, documents: Sequence[Mapping[str, Any]]) -> None:
        """Apply config.json's clients when that section differs from the one applied last.

        Clients that an earlier config.json had and this one has not are removed; clients
        added through the API are left alone.
        """
        digest = hashlib.sha256(orjson.dumps(list(documents), option=orjson.OPT_SORT_KEYS)).hexdigest()
        names = [str(document["name"]) for document in documents]
        with self.engine.begin() as conn:
            row = conn.execute(select(meta.c.value).where(meta.c.key == "seed")).first()
            previous = orjson.loads(row[0]) if row and row[0].startswith("{") else {}
            if previous.get("digest") == digest:
                return
            for name in set(previous.get("names") or ()) - set(names):
                conn.execute(clients.delete().where(clients.c.name == name))
            for document in documents:
                name = str(document["name"])
                values = {"document": orjson.dumps(dict(document)).decode(), "updated_at": time.time()}
                if conn.execute(select(clients.c.name).where(clients.c.name == name)).first():
                    conn.execute(update(clients).where(clients.c.name == name).values(**values))
                else:
                    conn.execute(insert(clients).values(name=name, **values))
            value = orjson.dumps({"digest": digest, "names": names}).decode()
            if row:
                conn.execute(update(meta).where(meta.c.key == "seed").values(value=value))
            else:
                conn.execute(insert(meta).values(key="seed", value=value, number=0))
            self._bump(conn)

    @staticmethod
    def _bump(conn: Any) -> None:
        if conn.execute(update(meta).where(meta.c.key == "version").values(number=meta.c.number + 1)).rowcount == 0:
            conn.execute(insert(meta).values(key="version", value="", number=1))
