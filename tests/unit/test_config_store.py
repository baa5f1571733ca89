"""The config store on SQLite and on PostgreSQL (a database of this run): entities, versions, seeding,
sessions, and the admin password kept only as an argon2 hash."""
from __future__ import annotations

import time

import pytest

from app.auth import Auth
from app.stores.config_store import ConfigStore
from tests.governance_support import postgres_database

SEED = {"budgets": [{"id": "b1", "max_limit": 5, "reset_duration": "1d"}],
        "virtual_keys": [{"id": "vk1", "name": "one", "value": "sk-bf-one", "budget_id": "b1"}]}


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        store = ConfigStore({"type": "sqlite", "config": {"path": str(tmp_path / "config.db")}})
        yield store
        store.close()
    else:
        with postgres_database() as section:
            store = ConfigStore(section)
            yield store
            store.close()


def test_entities_versions_and_seeding(store):
    start = store.version()
    store.seed(SEED)
    assert store.version() == start + 1
    store.seed(SEED)  # the same section again: nothing written
    assert store.version() == start + 1
    assert store.find_virtual_key("sk-bf-one")["id"] == "vk1"
    store.put("virtual_keys", [{**store.get("virtual_keys", "vk1"), "is_active": False}])
    version, entities = store.load_all()
    assert version == start + 2 and entities["virtual_keys"][0]["is_active"] is False
    assert [b["id"] for b in entities["budgets"]] == ["b1"]
    assert store.delete("budgets", "b1") and store.get("budgets", "b1") is None
    assert not store.delete("budgets", "b1")


def test_sessions_expire_and_end_at_logout(store):
    store.create_session("tok-live", time.time() + 60)
    store.create_session("tok-old", time.time() - 1)
    assert store.session_expiry("tok-live") > time.time()
    store.delete_session("tok-live")
    assert store.session_expiry("tok-live") is None


def test_admin_password_is_stored_only_as_an_argon2_hash(store):
    raw = {"auth_config": {"is_enabled": True, "admin_username": "admin", "admin_password": "s3cret-value"}}
    auth = Auth(raw, store)
    stored = store.meta_get("admin_password_hash")
    assert stored.startswith("$argon2") and "s3cret-value" not in stored
    assert auth.check_password("admin", "s3cret-value") and auth.check_password("admin", "s3cret-value")
    assert not auth.check_password("admin", "wrong") and not auth.check_password("root", "s3cret-value")
    again = Auth(raw, store)  # a second worker reuses the stored hash
    assert again.password_hash == stored
    token, _ = auth.login("admin", "s3cret-value")
    assert again.session_valid(token)  # made by one worker, known to the other
    environ = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    auth.logout(environ)
    again.forget_sessions()  # what a version change does
    assert not again.session_valid(token)
