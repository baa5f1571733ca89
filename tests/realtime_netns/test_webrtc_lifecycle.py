"""How calls end: hangup, client close, a vanished client, SIGTERM; 10 calls in one worker."""
from __future__ import annotations

import json
import os
import signal
import statistics
import threading
import time

from tests.fakes.realtime import ClientPeer
from tests.gateway_process import GatewayProcess, imported
from tests.realtime_netns.conftest import gateway_config, post, report, wait_for
from tests.realtime_netns.test_webrtc_media import aligned, open_call


def newest(provider):
    return provider.calls[max(provider.calls, key=lambda k: int(k.rsplit("_", 1)[1]))]


def summary_of(gateway, call_id):
    lines = wait_for(lambda: [l for l in gateway.log().splitlines()
                              if "realtime call summary" in l and f'"{call_id}"' in l], 5)
    assert lines, gateway.log()[-2000:]
    return json.loads(lines[-1].split("realtime call summary ", 1)[1])


def test_client_hangup_tears_down_the_upstream_leg_within_2s(gateway, provider, rtc):
    client = ClientPeer(rtc)
    location = open_call(gateway, client)
    call = newest(provider)
    assert wait_for(lambda: len(call.received) >= 10, 5)
    started = time.perf_counter()
    status, _, body = post(gateway.url + location + "/hangup", b"", {})
    assert status == 200, body
    assert wait_for(lambda: call.hangup_at is not None and call.closed_at is not None, 2)
    assert call.hangup_at - started < 2
    assert wait_for(lambda: client.state == "closed", 2)
    assert summary_of(gateway, location.rsplit("/", 1)[1])["reason"] == "client hangup"
    # a second hangup of the same call: not found (it is over), never a 500
    status, _, _ = post(gateway.url + location + "/hangup", b"", {})
    assert status in (200, 404)
    status, _, body = post(gateway.url + "/v1/realtime/calls/rtc_bf_forged/hangup", b"", {})
    assert status == 404 and json.loads(body)["error"]["message"]


def test_hangup_through_another_gateway_process(provider, chat_fake, rtc):
    """Behind a load balancer the hangup may reach another worker or host: it still ends the call.

    Both workers start without requests, aiortc and PyAV: the first loads them with its call; the
    second, which only hangs up, loads requests and never the media libraries.
    """
    env = {"BIFROST_REALTIME_SECRET": "shared-by-both-hosts", "PYTHONPROFILEIMPORTTIME": "1"}
    config = gateway_config(provider.url, chat_fake.url)
    lazy = {"requests", "aiortc", "av"}
    with GatewayProcess(config, env=env) as first, GatewayProcess(config, env=env) as second:
        assert "flask" in imported(first.log()) and imported(first.log()).isdisjoint(lazy)
        client = ClientPeer(rtc)
        location = open_call(first, client)
        assert lazy <= imported(first.log())
        call = newest(provider)
        assert wait_for(lambda: len(call.received) >= 10, 5)
        assert imported(second.log()).isdisjoint(lazy)
        status, _, body = post(second.url + location + "/hangup", b"", {})
        assert status == 200, body
        assert call.hangup_at is not None  # the second process hung it up at the provider
        assert wait_for(lambda: client.state == "closed", 2)  # and the first one's legs closed
        assert summary_of(first, location.rsplit("/", 1)[1])["reason"] == "upstream closed"
        assert "is not in this worker" in second.log()
        assert imported(second.log()) & lazy == {"requests"}


def test_client_close_hangs_up_upstream(gateway, provider, rtc):
    client = ClientPeer(rtc)
    open_call(gateway, client)
    call = newest(provider)
    assert wait_for(lambda: len(call.received) >= 10, 5)
    started = time.perf_counter()
    client.close()
    assert wait_for(lambda: call.hangup_at is not None, 2)
    report("teardown", client_close_to_upstream_hangup_ms=round((call.hangup_at - started) * 1000, 1))


def test_vanished_client_is_dropped_after_the_idle_timeout(gateway, provider, rtc):
    client = ClientPeer(rtc)
    location = open_call(gateway, client)
    call = newest(provider)
    assert wait_for(lambda: len(call.received) >= 10, 5)
    client.vanish()  # no more RTP or events, and no close: only the idle timer can notice (3 s here)
    started = time.perf_counter()
    assert wait_for(lambda: call.hangup_at is not None, 6)
    waited = call.hangup_at - started
    assert 2.5 < waited < 5.5, waited
    assert summary_of(gateway, location.rsplit("/", 1)[1])["reason"] == "idle timeout"
    client.close()


def test_provider_hangup_closes_the_client_leg(gateway, provider, rtc):
    client = ClientPeer(rtc)
    location = open_call(gateway, client)
    call = newest(provider)
    assert wait_for(lambda: len(client.received) >= 10, 5)
    started = time.perf_counter()
    rtc.run(call.pc.close())  # the provider ends the call (its own hangup, a crash, a policy stop)
    assert wait_for(lambda: client.state == "closed", 2), client.state_changes
    report("teardown", provider_close_to_client_closed_ms=round((client.state_changes[-1][1] - started) * 1000, 1))
    assert summary_of(gateway, location.rsplit("/", 1)[1])["reason"] == "upstream closed"
    client.close()


def test_maximum_call_length_and_hup_reload(provider, chat_fake, rtc):
    with GatewayProcess(gateway_config(provider.url, chat_fake.url, max_call_seconds=2)) as gateway:
        client = ClientPeer(rtc)
        location = open_call(gateway, client)
        call = newest(provider)
        started = time.perf_counter()
        assert wait_for(lambda: call.hangup_at is not None, 4)
        assert 1.5 < call.hangup_at - started < 3.5
        assert summary_of(gateway, location.rsplit("/", 1)[1])["reason"] == "max call length"
        client.close()
        # a HUP reload replaces the worker; its calls are hung up, not left to ICE consent expiry
        client = ClientPeer(rtc)
        open_call(gateway, client)
        call = newest(provider)
        os.kill(gateway.process.pid, signal.SIGHUP)
        assert wait_for(lambda: call.hangup_at is not None, 8), gateway.log()[-2000:]
        client.close()


def _worker_pids(master: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == master:
                        pids.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return pids


def _udp_sockets(pid: int) -> int:
    """How many of the process's open files are UDP sockets (ICE candidates)."""
    inodes = set()
    for table in ("udp", "udp6"):
        with open(f"/proc/{pid}/net/{table}") as rows:
            inodes |= {row.split()[9] for row in rows.readlines()[1:]}
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return sum(1 for link in links if link.startswith("socket:[") and link[8:-1] in inodes)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_sigterm_to_the_worker_hangs_up_every_upstream_call(provider, chat_fake, rtc):
    with GatewayProcess(gateway_config(provider.url, chat_fake.url)) as gateway:
        clients = [ClientPeer(rtc) for _ in range(3)]
        calls = []
        for client in clients:
            open_call(gateway, client)
            calls.append(newest(provider))
        assert wait_for(lambda: all(len(c.received) >= 10 for c in calls), 5)
        (worker,) = _worker_pids(gateway.process.pid)
        os.kill(worker, signal.SIGTERM)
        assert wait_for(lambda: all(c.hangup_at is not None for c in calls), 8), gateway.log()[-3000:]
        assert wait_for(lambda: all(c.state == "closed" for c in clients), 5)
        assert "ending 3 call(s): worker exit" in gateway.log()
        for client in clients:
            client.close()


def test_max_requests_recycle_hangs_up_the_calls(provider, chat_fake, rtc):
    with GatewayProcess(gateway_config(provider.url, chat_fake.url),
                        env={"GUNICORN_CMD_ARGS": "--max-requests 4"}) as gateway:
        (worker,) = _worker_pids(gateway.process.pid)  # the health checks of start-up count as requests too
        client = ClientPeer(rtc)
        open_call(gateway, client)
        call = newest(provider)
        assert wait_for(lambda: len(call.received) >= 10, 5)
        for _ in range(6):  # enough requests for the worker to retire after its in-flight ones
            post(gateway.url + "/v1/realtime/calls", b"", {"Content-Type": "text/plain"})
            if worker not in _worker_pids(gateway.process.pid):
                break
        assert wait_for(lambda: call.hangup_at is not None, 8), gateway.log()[-2000:]
        assert wait_for(lambda: worker not in _worker_pids(gateway.process.pid), 5)
        client.close()


def test_ten_concurrent_calls_in_one_worker_while_chat_keeps_answering(provider, chat_fake, rtc):
    with GatewayProcess(gateway_config(provider.url, chat_fake.url, max_sessions_per_worker=10,
                                       handshake_timeout_seconds=10, idle_timeout_seconds=10)) as gateway:
        chat_times, chat_status, stop = [], [], threading.Event()

        def chat():
            body = json.dumps({"model": "groq/llama-3", "messages": [{"role": "user", "content": "hi"}]}).encode()
            while not stop.is_set():
                started = time.perf_counter()
                status, _, _ = post(gateway.url + "/v1/chat/completions", body,
                                    {"Content-Type": "application/json"}, timeout=10)
                chat_status.append(status)
                chat_times.append((time.perf_counter() - started) * 1000)
                time.sleep(0.05)

        chatter = threading.Thread(target=chat, daemon=True)
        chatter.start()
        clients = [ClientPeer(rtc, rotate=11 * n) for n in range(10)]
        before = set(provider.calls)
        (worker,) = _worker_pids(gateway.process.pid)
        udp_before = _udp_sockets(worker)
        setup_ms, errors = [], []

        def dial(client):
            started = time.perf_counter()
            try:
                open_call(gateway, client)
                setup_ms.append((time.perf_counter() - started) * 1000)
            except AssertionError as exc:
                errors.append(str(exc))

        threads = [threading.Thread(target=dial, args=(c,)) for c in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors, errors
        # the eleventh is refused while ten run
        extra = ClientPeer(rtc)
        body = json.dumps({"type": "realtime", "model": "openai/gpt-realtime"})
        from tests.realtime_netns.conftest import multipart
        data, content_type = multipart({"sdp": extra.offer(), "session": body})
        status, _, reply = post(gateway.url + "/v1/realtime/calls", data, {"Content-Type": content_type})
        assert status == 503 and json.loads(reply)["error"]["code"] == "realtime_capacity"
        extra.close()
        new = [provider.calls[k] for k in provider.calls if k not in before]
        assert len(new) == 10
        assert wait_for(lambda: all(len(c.received) >= 50 for c in clients), 20)
        assert _udp_sockets(worker) >= 20  # each leg has its own ICE socket(s)
        cpu_before, wall_before = _cpu_seconds(worker), time.monotonic()
        assert wait_for(lambda: all(len(c.received) >= 200 for c in clients) and
                        all(len(c.received) >= 200 for c in new), 20)
        cpu_pct = 100 * (_cpu_seconds(worker) - cpu_before) / (time.monotonic() - wall_before)
        stop.set()
        chatter.join(10)
        for client in clients:
            client.close()
        time.sleep(0.3)  # packets in flight when the clients closed
        owners = set()
        for call in new:  # each provider call got one client's audio, unchanged, in order, none lost
            (owner,) = [n for n, c in enumerate(clients) if c.voice.sent[0][0] == call.received[0][0]]
            assert aligned(clients[owner].voice.sent, call.received) == 0
            owners.add(owner)
        assert owners == set(range(10))
        for client in clients:  # and each client got its own call's audio
            (call,) = [c for c in new if c.voice.sent and client.received and
                       c.voice.sent[0][0] == client.received[0][0] and
                       len(c.voice.sent) >= len(client.received) and
                       [p for p, _ in c.voice.sent[:len(client.received)]] == [p for p, _ in client.received]]
        assert chat_status and all(s == 200 for s in chat_status), chat_status
        # all twenty peer connections are gone: the worker holds no UDP socket any more
        assert udp_before == 0
        assert wait_for(lambda: all(c.hangup_at for c in new), 5)
        assert wait_for(lambda: _udp_sockets(worker) == 0, 5), _udp_sockets(worker)
        report("ten_calls", worker_cpu_pct=round(cpu_pct, 1), cpu_pct_per_call=round(cpu_pct / 10, 2),
               setup_p50_ms=round(statistics.median(setup_ms), 1), setup_max_ms=round(max(setup_ms), 1),
               chat_requests=len(chat_times), chat_p50_ms=round(statistics.median(chat_times), 1),
               chat_max_ms=round(max(chat_times), 1))
