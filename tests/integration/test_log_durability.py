"""Request logs survive a graceful stop under load, and a PostgreSQL outage costs no request."""
from __future__ import annotations

import os
import signal
import threading
import uuid

import pytest
import requests

from tests.gateway_process import GatewayProcess, free_port
from tests.integration.conftest import gateway_config
from tests.integration.observability_mix import chat, wait_for
from tests.pg import PG_HOST, PG_PORT, postgres_store, scratch_database
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration
TOTAL, CONNECTIONS = 2000, 50


def load_until_stopped(server: GatewayProcess, stop_after: int) -> tuple[set[str], set[str]]:
    """TOTAL requests over CONNECTIONS keep-alive connections; SIGTERM once stop_after have completed.

    Returns the ids the client saw complete, and those it saw fail (refused, cut, or answered
    after the socket was closed: the server may still have finished and logged some of them).
    """
    completed: set[str] = set()
    failed: set[str] = set()
    issued = iter(range(TOTAL))
    lock = threading.Lock()
    signalled = threading.Event()
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "load"}]}

    def client():
        session = requests.Session()
        while True:
            with lock:
                if next(issued, None) is None:
                    return
            request_id = str(uuid.uuid4())
            try:
                reply = session.post(server.url + "/v1/chat/completions", json=body, timeout=15,
                                     headers={"x-request-id": request_id})
                ok = reply.status_code == 200 and reply.json()["choices"]
            except (requests.RequestException, ValueError):
                ok = False
            if not ok:
                with lock:
                    failed.add(request_id)
            if ok:
                with lock:
                    completed.add(request_id)
                    if len(completed) >= stop_after and not signalled.is_set():
                        signalled.set()
                        os.kill(server.process.pid, signal.SIGTERM)  # while the others keep sending

    threads = [threading.Thread(target=client) for _ in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert signalled.is_set()
    server.process.wait(timeout=30)
    return completed, failed


@pytest.mark.parametrize("store_kind", ["sqlite", "postgres"])
def test_sigterm_under_load_loses_no_row(fake, store_kind, tmp_path):
    config = gateway_config(fake.url, free_port())
    with scratch_database() as db_name:
        if store_kind == "postgres":
            config["logs_store"] = postgres_store(db_name)
        env = {"TEST_OPENAI_KEY": "sk-openai-1"}
        server = GatewayProcess(config, workers=2, env=env, app_dir=str(tmp_path)).start()
        try:
            completed, failed = load_until_stopped(server, stop_after=TOTAL // 2)
        finally:
            server.stop()
        assert TOTAL // 2 <= len(completed) < TOTAL, len(completed)
        with GatewayProcess(config, workers=1, env=env, app_dir=str(tmp_path)) as again:
            page = requests.get(again.url + "/api/logs", params={"limit": 1, "status": "success"}, timeout=30).json()
            total = page["pagination"]["total_count"]
            logged: set[str] = set()
            for offset in range(0, total, 1000):
                rows = requests.get(again.url + "/api/logs", timeout=30,
                                    params={"limit": 1000, "offset": offset, "status": "success"}).json()["logs"]
                logged.update(row["id"] for row in rows)
            assert completed <= logged, f"{len(completed - logged)} completed requests have no row"
            # A success row the client never saw complete can only be one the server finished as the
            # connection went away; never a request that was not sent.
            assert logged <= completed | failed, logged - completed - failed


def test_postgres_outage_keeps_serving_counts_drops_and_recovers(fake):
    proxy = TcpProxy(PG_HOST, PG_PORT).start()
    config = gateway_config(fake.url, free_port())
    with scratch_database() as db_name:
        config["logs_store"] = postgres_store(db_name, port=proxy.port, queue_size=40)
        try:
            with GatewayProcess(config, workers=1, env={"TEST_OPENAI_KEY": "sk-openai-1"}) as server:
                url = server.url

                def logged() -> int:  # finished rows
                    reply = requests.get(url + "/api/logs", params={"limit": 1, "status": "success"}, timeout=10)
                    return reply.json()["pagination"]["total_count"] if reply.status_code == 200 else -1

                for _ in range(5):
                    assert chat(url, "openai/gpt-4o-mini", "before")[1].status_code == 200
                assert wait_for(lambda: logged() == 5)

                proxy.cut()
                for _ in range(60):  # 40 rows wait in the queue, 20 are dropped
                    assert chat(url, "openai/gpt-4o-mini", "during")[1].status_code == 200
                assert wait_for(lambda: requests.get(url + "/health", timeout=10).status_code == 503, timeout=10)
                health = requests.get(url + "/health", timeout=10).json()
                assert health["components"]["logs_store"] == "unreachable"
                # 40 rows fit; a request whose "processing" row was already being written when
                # it finished takes a second place (its final row), hence at most one more drop.
                dropped = requests.get(url + "/api/logs/dropped", timeout=5).json()["dropped_requests"]
                assert dropped in (20, 21)
                metrics = requests.get(url + "/metrics", timeout=5).text
                assert f"bifrost_log_writes_dropped_total {dropped:.1f}" in metrics
                down = requests.get(url + "/api/logs", timeout=10)
                assert down.status_code == 503 and "log store" in down.json()["error"]["message"]

                proxy.restore()
                assert wait_for(lambda: requests.get(url + "/health", timeout=10).status_code == 200, timeout=10)
                assert wait_for(lambda: logged() == 5 + 60 - dropped, timeout=15)  # every kept row is written
                for _ in range(5):
                    assert chat(url, "openai/gpt-4o-mini", "after")[1].status_code == 200
                assert wait_for(lambda: logged() == 70 - dropped)
        finally:
            proxy.cut()


def test_health_ignores_the_store_when_told(fake):
    config = gateway_config(fake.url, free_port())
    config["client"] = {"disable_db_pings_in_health": True}
    config["logs_store"] = postgres_store("unused", port=free_port())  # nothing listens there
    with GatewayProcess(config, env={"TEST_OPENAI_KEY": "sk-openai-1"}) as server:
        assert requests.get(server.url + "/health", timeout=5).json() == {
            "status": "ok", "providers": sorted(config["providers"])}
        assert chat(server.url, "openai/gpt-4o-mini", "hi")[1].status_code == 200


def test_a_worker_killed_hard_loses_at_most_its_last_second(fake, tmp_path):
    config = gateway_config(fake.url, free_port())
    env = {"TEST_OPENAI_KEY": "sk-openai-1"}
    with GatewayProcess(config, workers=1, env=env, app_dir=str(tmp_path)) as server:
        import time

        worker = int(open(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read().split()[0])
        done: list[tuple[float, str]] = []
        session = requests.Session()
        started = time.monotonic()
        while time.monotonic() - started < 2.0:
            request_id = str(uuid.uuid4())
            reply = session.post(server.url + "/v1/chat/completions", timeout=10, headers={"x-request-id": request_id},
                                 json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
            assert reply.status_code == 200
            done.append((time.monotonic(), request_id))
        os.kill(worker, signal.SIGKILL)
        killed = time.monotonic()
        # gunicorn starts a new worker; the rows the dead one had stored are there
        assert wait_for(lambda: requests.get(server.url + "/health", timeout=2).status_code == 200, timeout=20)
        logged = set()
        for offset in range(0, len(done) + 1000, 1000):
            rows = requests.get(server.url + "/api/logs", timeout=10,
                                params={"limit": 1000, "offset": offset, "status": "success"}).json()["logs"]
            logged.update(row["id"] for row in rows)
        older = {request_id for at, request_id in done if at < killed - 1.0}
        assert len(older) > 10 and older <= logged, len(older - logged)
