"""The config store on SQLite and on PostgreSQL (a database of this run): entities, versions, seeding,
sessions, and the admin password kept only as an argon2 hash."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import event

from app.auth import Auth
from app.stores.config_store import ConfigStore
from tests.pg import postgres_store, scratch_database

SEED = {"budgets": [{"id": "b1", "max_limit": 5, "reset_duration": "1d"}],
        "virtual_keys": [{"id": "vk1", "name": "one", "value": "sk-bf-one", "budget_id": "b1"}]}


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        store = ConfigStore({"type": "sqlite", "config": {"path": str(tmp_path / "config.db")}})
        yield store
        store.close()
    else:
        with scratch_database() as db_name:
            store = ConfigStore(postgres_store(db_name))
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


def test_load_all_reads_one_snapshot_while_a_write_commits_between_its_queries(store):
    start = store.version()
    written = []

    def commit_a_key_and_its_budget(_conn, _cursor, statement, *_rest):
        if "FROM governance_virtual_keys" in statement and not written:  # budgets are read; keys are next
            written.append(True)
            store.put_many({"budgets": [{"id": "b-new", "max_limit": 1, "reset_duration": "1d"}],
                            "virtual_keys": [{"id": "vk-new", "name": "new", "value": "sk-bf-new", "budget_id": "b-new"}]})

    event.listen(store.engine, "before_cursor_execute", commit_a_key_and_its_budget)
    version, entities = store.load_all()
    event.remove(store.engine, "before_cursor_execute", commit_a_key_and_its_budget)
    assert written and version == start
    assert entities["virtual_keys"] == [] and entities["budgets"] == []  # not the key without its budget
    version, entities = store.load_all()
    assert version == start + 1 and [vk["id"] for vk in entities["virtual_keys"]] == ["vk-new"]
    assert [b["id"] for b in entities["budgets"]] == ["b-new"]


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


def test_the_reference_full_example_governance_section_loads(tmp_path):
    """Section 3.8 of the reference: budget_id references, a team under a customer, provider_configs, mcp_configs."""
    from app.governance import Snapshot
    from app.governance_schemas import validate_seed

    section = {
        "budgets": [{"id": "b-vk", "max_limit": 10.0, "reset_duration": "1M"},
                    {"id": "b-team", "max_limit": 100.0, "reset_duration": "1M"}],
        "rate_limits": [{"id": "rl-1", "token_max_limit": 100000, "token_reset_duration": "1h",
                         "request_max_limit": 1000, "request_reset_duration": "1m"}],
        "customers": [{"id": "cust-1", "name": "Acme"}],
        "teams": [{"id": "team-1", "name": "ML", "customer_id": "cust-1", "budget_id": "b-team"}],
        "virtual_keys": [{"id": "vk-test", "name": "test", "value": "sk-bf-test-key", "is_active": True, "team_id": "team-1",
                          "budget_id": "b-vk", "rate_limit_id": "rl-1", "budgets": [{"id": "b-extra", "max_limit": 1,
                                                                                     "reset_duration": "1d"}],
                          "provider_configs": [{"provider": "openai", "weight": 0.5, "allowed_models": ["gpt-4o-mini"]},
                                               {"provider": "anthropic", "weight": 0.5, "allowed_models": []}],
                          "mcp_configs": [{"mcp_client_name": "fs", "tools_to_execute": ["*"]}]}],
    }
    validate_seed(section)
    store = ConfigStore({"type": "sqlite", "config": {"path": str(tmp_path / "config.db")}})
    store.seed(section)
    vk = Snapshot(*store.load_all()).by_value["sk-bf-test-key"]
    assert vk.team == ("team-1", "ML") and vk.customer == ("cust-1", "Acme")
    assert [m.key for m in vk.meters] == ["rl:rl-1:requests", "rl:rl-1:tokens", "budget:b-vk", "budget:b-extra",
                                          "budget:b-team"]
    assert vk.attribution == {"virtual_key_id": "vk-test", "virtual_key_name": "test", "team_id": "team-1",
                              "team_name": "ML", "customer_id": "cust-1", "customer_name": "Acme"}
    assert vk.route("openai").allows("gpt-4o-mini") and not vk.route("openai").allows("gpt-4o")
    assert vk.route("anthropic").allows("anything")
    with pytest.raises(ValueError, match=r"governance.virtual_keys\[0\].budget_id"):
        validate_seed({"virtual_keys": [{"name": "x", "value": "sk-bf-x", "budget_id": 5}]})
    store.close()


def test_a_bad_governance_section_stops_start_up_with_one_line():
    from app.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"^x.json: governance.rate_limits\[0\].request_reset_duration: not a reset"):
        parse_config({"governance": {"rate_limits": [{"id": "r", "request_max_limit": 1,
                                                      "request_reset_duration": "soon"}]}}, source="x.json")
