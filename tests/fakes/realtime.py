"""A fake OpenAI Realtime provider (WebRTC + WebSocket) and an aiortc client peer, for the tests.

    rtc = RtcThread()                                   # one asyncio loop thread for the test's peers
    fake = FakeRealtimeProvider(rtc, api_keys={"sk-rt"}).start()
    client = ClientPeer(rtc); sdp = client.offer()      # POST it through the gateway, then:
    client.accept(answer_sdp)

The provider answers ``POST /v1/realtime/calls`` only as OpenAI does (Bearer key, multipart
with ``sdp`` and a ``session`` JSON whose ``type`` is realtime, ``201`` + ``Location`` + SDP),
sends a known Opus stream (tests/data) once it hears the client's first packet, echoes the
audio it receives, and speaks JSON events on ``oai-events`` (``session.created``;
``response.create`` -> ``response.done`` with usage; any other event is echoed). ``POST /v1/realtime/calls/{id}/hangup`` closes the call. Every Opus
payload sent and received is recorded with its time, taken before aiortc's jitter buffer.
"""
from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import itertools
import json
import queue
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import av
from aiortc import (MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCRtpSender,
                    RTCSessionDescription)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError

from tests.fakes import opus_data

TIME_BASE = Fraction(1, 48000)
OPUS = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == "audio/opus"]
PCMU = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == "audio/pcmu"]

# Test-side receive tap: a receiver with ``test_tap`` gets each raw RTP packet (before the jitter buffer).
_original_handle = RTCRtpReceiver._handle_rtp_packet


async def _recording_handle(self, packet, arrival_time_ms):
    tap = getattr(self, "test_tap", None)
    if tap is not None:
        tap(packet)
    await _original_handle(self, packet, arrival_time_ms)


RTCRtpReceiver._handle_rtp_packet = _recording_handle


class _Discard(queue.Queue):
    def put(self, item, block=True, timeout=None):
        if item is None:
            super().put(item, block, timeout)


def record_receiver(receiver: RTCRtpReceiver, into: list, on_packet=None) -> None:
    """Record (payload, perf_counter) of each packet; do not decode (the tests compare bytes)."""
    receiver._RTCRtpReceiver__decoder_queue = _Discard()

    def tap(packet):
        into.append((packet.payload, time.perf_counter()))
        if on_packet:
            on_packet(packet)

    receiver.test_tap = tap


class RtcThread:
    """An asyncio loop in a thread (the test process is not gevent-patched)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="rtc-test-loop")
        self.thread.start()

    def run(self, coro, timeout: float = 20.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class VoiceTrack(MediaStreamTrack):
    """Sends ``packets`` paced at 20 ms, plus anything pushed (echo) as soon as it arrives.

    Each payload handed to aiortc is recorded in ``sent`` with its time.
    """

    kind = "audio"

    def __init__(self, packets: list[bytes], *, repeat: bool = False, wait_for_audio: bool = False) -> None:
        super().__init__()
        self.heard = asyncio.Event()  # set by the owner on the first audio received
        if not wait_for_audio:
            self.heard.set()
        self.packets = list(packets)
        self.repeat = repeat
        self.echo: asyncio.Queue = asyncio.Queue()
        self.sent: list[tuple[bytes, float]] = []
        self._index = 0
        self._start: float | None = None

    def push(self, payload: bytes) -> None:
        self.echo.put_nowait(payload)

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            await self.heard.wait()  # a model speaks once it hears someone
            self._start = time.perf_counter()
        now = time.perf_counter()
        payload = None
        if self._index < len(self.packets) or self.repeat:
            due = self._start + self._index * 0.02
            try:
                payload = await asyncio.wait_for(self.echo.get(), max(0.0, due - now)) if due > now else None
            except asyncio.TimeoutError:
                payload = None
            if payload is None:
                payload = self.packets[self._index % len(self.packets)]
                self._index += 1
        else:
            payload = await self.echo.get()
        if payload is None:
            raise MediaStreamError
        stamp = time.perf_counter()
        packet = av.Packet(payload)
        packet.pts = int((stamp - self._start) * 48000)
        packet.time_base = TIME_BASE
        self.sent.append((payload, stamp))
        return packet

    def stop(self) -> None:
        super().stop()
        self.echo.put_nowait(None)


@dataclass
class FakeCall:
    id: str
    pc: RTCPeerConnection
    session: dict
    voice: VoiceTrack
    received: list = field(default_factory=list)  # (payload, time) of client audio reaching the provider
    events_in: list = field(default_factory=list)  # JSON events from the gateway
    events_out: list = field(default_factory=list)
    hangup_at: float | None = None
    closed_at: float | None = None


class FakeRealtimeProvider:
    def __init__(self, rtc: RtcThread, api_keys: set[str], *, echo: bool = True, send_stream: bool = True) -> None:
        self.rtc = rtc
        self.api_keys = api_keys
        self.echo = echo
        self.send_stream = send_stream
        self.calls: dict[str, FakeCall] = {}
        self.requests: list[dict] = []
        self.plans: list[tuple[str, object]] = []  # ("reject", (status, message)) / ("stall", seconds) / ("dead", None)
        self.packets = list(reversed(opus_data.load()))
        self._ids = itertools.count(1)
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        self.ws_server = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> "FakeRealtimeProvider":
        threading.Thread(target=self.http.serve_forever, daemon=True, name="fake-realtime-http").start()
        return self

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        for call in list(self.calls.values()):
            self.rtc.run(call.pc.close())

    def plan(self, kind: str, value=None) -> None:
        self.plans.append((kind, value))

    def active_calls(self) -> list[FakeCall]:
        return [c for c in self.calls.values() if c.closed_at is None]

    # -- the WebRTC call ------------------------------------------------------------------------
    async def _answer(self, offer_sdp: str, session: dict, dead: bool) -> FakeCall:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        number = next(self._ids)
        call_id = f"rtc_fake_{number}"
        shift = (13 * number) % len(self.packets)  # each call its own order, so calls can be told apart
        stream = self.packets[shift:] + self.packets[:shift]
        voice = VoiceTrack(stream if self.send_stream else [], wait_for_audio=True)
        call = FakeCall(call_id, pc, session, voice)

        @pc.on("connectionstatechange")
        def _state():
            if pc.connectionState in ("closed", "failed") and call.closed_at is None:
                call.closed_at = time.perf_counter()
                voice.stop()

        @pc.on("datachannel")
        def _channel(channel):
            def send(event):
                call.events_out.append(event)
                channel.send(json.dumps(event))

            send({"type": "session.created", "event_id": "evt_fake_1", "session": session})

            @channel.on("message")
            def _message(message):
                event = json.loads(message)
                call.events_in.append(event)
                if event.get("type") == "response.create":
                    send({"type": "response.done", "response": {"id": "resp_1", "status": "completed", "usage": {
                        "total_tokens": 30, "input_tokens": 20, "output_tokens": 10,
                        "input_token_details": {"text_tokens": 5, "audio_tokens": 15, "cached_tokens": 0},
                        "output_token_details": {"text_tokens": 4, "audio_tokens": 6}}}})
                else:
                    send({"type": "echo", "event": event})

        await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        for transceiver in pc.getTransceivers():
            if transceiver.kind == "audio":
                transceiver.direction = "sendrecv"
                transceiver.sender.replaceTrack(voice)
                def heard(packet, voice=voice):
                    voice.heard.set()
                    if self.echo:
                        voice.push(packet.payload)

                record_receiver(transceiver.receiver, call.received, heard)
        await pc.setLocalDescription(await pc.createAnswer())
        answer = pc.localDescription.sdp
        if dead:  # an answer whose peer is gone: ICE never completes
            await pc.close()
        self.calls[call_id] = call
        return call, answer

    # -- HTTP -----------------------------------------------------------------------------------
    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _reply(self, status, body=b"", content_type="application/json", headers=()):
                if isinstance(body, (dict, list)):
                    body = json.dumps(body).encode()
                elif isinstance(body, str):
                    body = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def _error(self, status, message, code=None):
                with contextlib.suppress(OSError):
                    self._reply(status, {"error": {"message": message, "type": "invalid_request_error",
                                                   "code": code, "param": None}})

            def do_GET(self):
                """``/_test/calls``: what each call sent (hex payload, perf_counter), for a harness in another process."""
                if self.path != "/_test/calls":
                    return self._error(404, "unknown path")
                self._reply(200, {call.id: {"sent": [[p.hex(), t] for p, t in list(call.voice.sent)],
                                            "received": len(call.received), "closed": call.closed_at is not None}
                                  for call in list(fake.calls.values())})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                record = {"path": self.path, "headers": dict(self.headers), "body": body, "time": time.time()}
                fake.requests.append(record)
                auth = self.headers.get("Authorization") or ""
                if not auth.startswith("Bearer ") or auth[7:] not in fake.api_keys:
                    return self._error(401, "Incorrect API key provided.", "invalid_api_key")
                if self.path.startswith("/v1/realtime/calls/") and self.path.endswith("/hangup"):
                    call = fake.calls.get(self.path.split("/")[4])
                    if call is None:
                        return self._error(404, "call not found")
                    call.hangup_at = time.perf_counter()
                    fake.rtc.run(call.pc.close())
                    return self._reply(200, b"")
                if self.path != "/v1/realtime/calls":
                    return self._error(404, f"unknown path {self.path}")
                content_type = self.headers.get("Content-Type") or ""
                if not content_type.startswith("multipart/form-data"):
                    return self._error(400, "expected multipart/form-data with sdp and session")
                message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                    b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
                form = {part.get_param("name", header="content-disposition"): part.get_content()
                        for part in message.iter_parts()}
                record["form"] = form
                if "sdp" not in form or "session" not in form:
                    return self._error(400, "missing required parameter: sdp and session")
                try:
                    session = json.loads(form["session"])
                except ValueError:
                    return self._error(400, "session is not valid JSON")
                if session.get("type") != "realtime" or not session.get("model"):
                    return self._error(400, "session.type must be realtime and session.model is required")
                plan = fake.plans.pop(0) if fake.plans else (None, None)
                if plan[0] == "reject":
                    status, text = plan[1]
                    return self._error(status, text, "rejected_for_test")
                if plan[0] == "stall":  # too slow: by the time it would answer, the caller has gone
                    time.sleep(plan[1])
                    return self._error(500, "stalled for the test")
                call, answer = fake.rtc.run(fake._answer(form["sdp"], session, dead=plan[0] == "dead"))
                try:
                    self._reply(201, answer, "application/sdp", [("Location", f"/v1/realtime/calls/{call.id}")])
                except OSError:  # the caller gave up
                    fake.rtc.run(call.pc.close())

        return Handler


class ClientPeer:
    """The application's side: an aiortc peer with a known Opus stream and an oai-events channel."""

    def __init__(self, rtc: RtcThread, *, codecs=None, data_channel: bool = True, repeat: bool = True,
                 rotate: int = 0) -> None:
        self.rtc = rtc
        self.received: list = []
        self.events: list = []
        self.opened = threading.Event()
        self.state_changes: list[tuple[str, float]] = []
        packets = opus_data.load()
        self.packets = packets[rotate:] + packets[:rotate]  # several clients, each with its own sequence
        self.codecs = codecs
        self.data_channel = data_channel
        self.repeat = repeat
        self.pc = None
        self.channel = None
        self.voice = None

    async def _offer(self) -> str:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        # Opus payloads are sent as they are; a client limited to other codecs sends real (silent) audio.
        self.voice = VoiceTrack(self.packets, repeat=self.repeat) if not self.codecs else AudioStreamTrack()
        transceiver = self.pc.addTransceiver(self.voice, direction="sendrecv")
        if self.codecs:
            transceiver.setCodecPreferences(self.codecs)
        record_receiver(transceiver.receiver, self.received)

        @self.pc.on("connectionstatechange")
        def _state():
            self.state_changes.append((self.pc.connectionState, time.perf_counter()))

        if self.data_channel:
            self.channel = self.pc.createDataChannel("oai-events")
            self.channel.on("open", self.opened.set)
            self.channel.on("message", lambda m: self.events.append(json.loads(m)))
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    def offer(self) -> str:
        return self.rtc.run(self._offer())

    def accept(self, answer: str) -> None:
        self.rtc.run(self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer")))

    def send_event(self, event: dict) -> None:
        self.rtc.loop.call_soon_threadsafe(self.channel.send, json.dumps(event))

    @property
    def state(self) -> str:
        return self.pc.connectionState if self.pc else "new"

    def close(self) -> None:
        if self.pc is not None:
            self.rtc.run(self.pc.close())

    def vanish(self) -> None:
        """Stop sending anything without closing (a crashed tab): no more RTP, no DTLS close."""
        async def _go():
            for transceiver in self.pc.getTransceivers():
                transceiver.sender.replaceTrack(None)
        self.rtc.run(_go())


def serve() -> None:
    """``python -m tests.fakes.realtime KEY``: run the provider alone (bench/realtime.py puts it in its own process).

    Prints its URL on the first line and runs until standard input closes.
    """
    import sys

    rtc = RtcThread()
    provider = FakeRealtimeProvider(rtc, api_keys={sys.argv[1]}).start()
    print(provider.url, flush=True)
    sys.stdin.read()
    provider.stop()
    rtc.stop()


if __name__ == "__main__":
    serve()
