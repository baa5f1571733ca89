"""The snapshot a worker enforces, against a real SQLite config store shared by two "workers"."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine

from app.config import parse_config
from app.errors import GatewayError
from app.governance import Governance, Snapshot
from app.governance_admin import Admin

DOCUMENT = {"providers": {"openai": {"keys": [{"name": "k", "value": "sk-x", "models": ["*"]}]}},
            "governance": {"virtual_keys": [{"id": "vk-seed", "name": "seed", "value": "sk-bf-seed-value"}]}}


@pytest.fixture
def workers(tmp_path, monkeypatch):
    """Two Governance instances on one store, as two workers of one instance are."""
    monkeypatch.setenv("BIFROST_APP_DIR", str(tmp_path))
    pair = [Governance(parse_config(DOCUMENT), poll=False) for _ in range(2)]
    yield pair
    for gov in pair:
        gov.close()


def test_an_older_snapshot_read_finishing_late_never_hides_a_key_just_created(workers):
    worker, other = workers
    stale = worker.store.load_all()  # the poller's read, begun before the key exists
    created = Admin(other).create("virtual_keys", {"name": "fresh"})
    assert worker.authenticate(created["value"]).id == created["id"]  # a miss reloads
    worker._install(Snapshot(*stale))  # ... and the poller's older read completes afterwards
    assert worker.snapshot.version > stale[0]
    assert worker.authenticate(created["value"]).id == created["id"]


def test_a_lookup_the_store_cannot_answer_is_store_unavailable_not_an_invalid_key(workers, tmp_path):
    worker, _ = workers
    worker.store.engine = create_engine(f"sqlite:///{tmp_path}/no/such/dir/config.db")  # the store is gone
    with pytest.raises(GatewayError) as refused:
        worker.authenticate("sk-bf-never-seen")
    assert refused.value.http_status == 503 and refused.value.type == "governance_store_unavailable"
    assert worker.authenticate("sk-bf-seed-value").id == "vk-seed"  # known keys still pass from the snapshot
