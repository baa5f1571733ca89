"""The config store: governance entities, admin sessions and the admin password hash.

SQLite (config.db in the app dir) by default, PostgreSQL for many instances, through
SQLAlchemy Core. Each entity is a row holding its JSON in the reference's shape. Every
write bumps one version number in the same transaction; workers poll it and reload
their in-memory snapshot when it moves, so a change reaches every worker and instance.
"""
from __future__ import annotations

import hashlib
import logging
import time
from typing import Any, Iterable, Mapping

import orjson
from sqlalchemy import (BigInteger, Column, Float, MetaData, String, Table, Text, delete, insert, select, text,
                        update)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from app.stores.db import make_engine

log = logging.getLogger("bifrost.governance")

KINDS = ("budgets", "rate_limits", "customers", "teams", "virtual_keys")

metadata = MetaData()
TABLES = {
    kind: Table(f"governance_{kind}", metadata, Column("id", String(255), primary_key=True), Column("data", Text, nullable=False))
    for kind in KINDS
}
TABLES["virtual_keys"].append_column(Column("value", String(255), unique=True, index=True))
sessions = Table("sessions", metadata, Column("token_hash", String(64), primary_key=True),
                 Column("expires_at", Float, nullable=False), Column("created_at", Float, nullable=False))
meta = Table("config_meta", metadata, Column("key", String(64), primary_key=True), Column("value", Text))
versions = Table("config_version", metadata, Column("id", BigInteger, primary_key=True), Column("version", BigInteger))


class StoreError(Exception):
    """The config store cannot be reached or refused a write."""


def token_hash(token: str) -> str:
    """Session tokens are kept as their SHA-256, so a copy of the store holds no usable token."""
    return hashlib.sha256(token.encode()).hexdigest()


class ConfigStore:
    def __init__(self, section: Mapping[str, Any] | None) -> None:
        self.engine = make_engine(section, "config.db")
        self.kind = self.engine.dialect.name
        for attempt in range(5):
            try:
                metadata.create_all(self.engine)
                break
            except SQLAlchemyError as exc:  # another worker creating the same tables at the same moment
                if attempt == 4:
                    raise StoreError(f"config store: {type(exc).__name__}: {getattr(exc, 'orig', exc)}") from None
                time.sleep(0.1 * (attempt + 1))
        with self.engine.begin() as db:
            if db.execute(select(versions.c.version).where(versions.c.id == 1)).first() is None:
                try:
                    with db.begin_nested():
                        db.execute(insert(versions).values(id=1, version=0))
                except IntegrityError:
                    pass

    # -- versions and snapshots ------------------------------------------------------------------

    def version(self) -> int:
        with self.engine.connect() as db:
            return int(db.execute(select(versions.c.version).where(versions.c.id == 1)).scalar_one())

    def load_all(self) -> tuple[int, dict[str, list[dict]]]:
        """Every entity and the version they belong to, read from one snapshot of the store.

        PostgreSQL's default READ COMMITTED and pysqlite's reads outside a transaction give each
        query its own snapshot: a key committed between two of them would come without its budget.
        """
        with self.engine.connect() as db:
            if self.kind == "postgresql":
                db.execution_options(isolation_level="REPEATABLE READ")  # the pool resets it on return
            with db.begin():
                if self.kind == "sqlite":
                    db.exec_driver_sql("BEGIN")  # pysqlite only begins a transaction before a write
                version = int(db.execute(select(versions.c.version).where(versions.c.id == 1)).scalar_one())
                entities = {kind: [orjson.loads(row.data) for row in db.execute(select(TABLES[kind].c.data))]
                            for kind in KINDS}
        return version, entities

    @staticmethod
    def _bump(db) -> None:
        db.execute(update(versions).where(versions.c.id == 1).values(version=versions.c.version + 1))

    # -- entities --------------------------------------------------------------------------------

    def get(self, kind: str, entity_id: str) -> dict | None:
        table = TABLES[kind]
        with self.engine.connect() as db:
            row = db.execute(select(table.c.data).where(table.c.id == entity_id)).first()
        return orjson.loads(row.data) if row else None

    def list(self, kind: str) -> list[dict]:
        with self.engine.connect() as db:
            return [orjson.loads(row.data) for row in db.execute(select(TABLES[kind].c.data).order_by(TABLES[kind].c.id))]

    def find_virtual_key(self, value: str) -> dict | None:
        table = TABLES["virtual_keys"]
        with self.engine.connect() as db:
            row = db.execute(select(table.c.data).where(table.c.value == value)).first()
        return orjson.loads(row.data) if row else None

    def put(self, kind: str, entities: Iterable[dict]) -> None:
        """Insert or replace entities (one transaction, one version bump)."""
        with self.engine.begin() as db:
            self._put(db, kind, entities)
            self._bump(db)

    def _put(self, db, kind: str, entities: Iterable[dict]) -> None:
        table = TABLES[kind]
        for entity in entities:
            db.execute(delete(table).where(table.c.id == entity["id"]))
            values = {"id": entity["id"], "data": orjson.dumps(entity).decode()}
            if kind == "virtual_keys":
                values["value"] = entity["value"]
            db.execute(insert(table).values(**values))

    def put_many(self, changes: Mapping[str, Iterable[dict]]) -> None:
        """Several kinds at once, e.g. a virtual key and the budget created with it."""
        with self.engine.begin() as db:
            for kind in KINDS:
                if kind in changes:
                    self._put(db, kind, changes[kind])
            self._bump(db)

    def delete(self, kind: str, entity_id: str) -> bool:
        table = TABLES[kind]
        with self.engine.begin() as db:
            gone = db.execute(delete(table).where(table.c.id == entity_id)).rowcount
            self._bump(db)
        return bool(gone)

    def seed(self, section: Mapping[str, Any]) -> None:
        """config.json's governance section: entities it names are written when the section changes."""
        digest = hashlib.sha256(orjson.dumps(section, option=orjson.OPT_SORT_KEYS)).hexdigest()
        if self.meta_get("governance_seed") == digest:
            return
        for attempt in range(3):
            try:
                with self.engine.begin() as db:
                    for kind in KINDS:
                        self._put(db, kind, section.get(kind) or ())
                    self._meta_set(db, "governance_seed", digest)
                    self._bump(db)
                return
            except IntegrityError:  # another worker seeded the same rows at the same moment
                time.sleep(0.05 * (attempt + 1))
        log.warning("config store: seeding governance raced with another worker three times; left as it is")

    # -- meta values (the admin password hash, the seed digest) -------------------------------

    def meta_get(self, key: str) -> str | None:
        with self.engine.connect() as db:
            return db.execute(select(meta.c.value).where(meta.c.key == key)).scalar()

    def meta_set(self, key: str, value: str) -> None:
        for attempt in range(5):
            try:
                with self.engine.begin() as db:
                    self._meta_set(db, key, value)
                return
            except IntegrityError:  # another worker wrote the same key at the same moment
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))

    @staticmethod
    def _meta_set(db, key: str, value: str) -> None:
        db.execute(delete(meta).where(meta.c.key == key))
        db.execute(insert(meta).values(key=key, value=value))

    # -- admin sessions ----------------------------------------------------------------------------

    def create_session(self, token: str, expires_at: float) -> None:
        now = time.time()
        with self.engine.begin() as db:
            db.execute(delete(sessions).where(sessions.c.expires_at < now))
            db.execute(insert(sessions).values(token_hash=token_hash(token), expires_at=expires_at, created_at=now))

    def session_expiry(self, token: str) -> float | None:
        with self.engine.connect() as db:
            return db.execute(select(sessions.c.expires_at).where(sessions.c.token_hash == token_hash(token))).scalar()

    def delete_session(self, token: str) -> None:
        with self.engine.begin() as db:
            db.execute(delete(sessions).where(sessions.c.token_hash == token_hash(token)))
            self._bump(db)  # workers drop the sessions they cached

    def ping(self) -> None:
        with self.engine.connect() as db:
            db.execute(text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()
