"""The snapshot a worker enforces, against a real SQLite config store shared by two "workers"."""
from __future__ import annotations

import gevent
import gevent.event
import pytest
from sqlalchemy import create_engine, event

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


def test_a_miss_while_the_pollers_newer_read_is_installed_still_finds_the_key(workers):
    """The poller read the store after the key's commit and installs while a request's miss asks the version."""
    worker, other = workers
    created = Admin(other).create("virtual_keys", {"name": "fresh"})
    installed = gevent.event.Event()
    worker.on_change.append(installed.set)
    poller = gevent.spawn(worker.refresh)
    request = gevent.spawn(worker.authenticate, created["value"])

    def interleave(_conn, _cursor, statement, *_rest):
        if gevent.getcurrent() is poller and "governance_virtual_keys" in statement:
            gevent.sleep(0)  # the poller's read is in flight: the request runs until it waits
        elif gevent.getcurrent() is request and "config_version" in statement:
            installed.wait(timeout=5)  # the version the request asks for comes back after the poller installed

    event.listen(worker.store.engine, "before_cursor_execute", interleave)
    gevent.joinall([poller, request], raise_error=True)
    assert request.value.id == created["id"]


def test_concurrent_misses_share_one_read_of_the_store(workers):
    worker, _ = workers
    version_queries = []

    def slow_version(_conn, _cursor, statement, *_rest):
        if "config_version" in statement:
            version_queries.append(gevent.getcurrent())
            gevent.sleep(0.01)  # a round trip to the store, during which other requests miss too

    event.listen(worker.store.engine, "before_cursor_execute", slow_version)
    misses = [gevent.spawn(worker.lookup, f"sk-bf-unknown-{i}") for i in range(10)]
    gevent.joinall(misses, raise_error=True)
    assert [miss.value for miss in misses] == [None] * 10
    # The first miss's read, then one more begun after the others missed (the first may predate a commit).
    assert len(version_queries) == 2
