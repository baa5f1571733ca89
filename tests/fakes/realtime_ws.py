"""A fake OpenAI Realtime WebSocket provider: ``GET /v1/realtime?model=…`` with a Bearer key.

It sends ``session.created`` on connect, answers ``response.create`` with ``response.done``
(with usage), echoes other events as ``conversation.item.created``, closes with the code a
``test.close`` event asks for, and records what it got and how the gateway closed.
"""
from __future__ import annotations

import asyncio
import json
import threading
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


class FakeRealtimeWS:
    def __init__(self, api_keys: set[str]) -> None:
        self.api_keys = api_keys
        self.connections: list[dict] = []
        self.loop = asyncio.new_event_loop()
        self.port = None
        self._ready = threading.Event()
        self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FakeRealtimeWS":
        threading.Thread(target=self._run, daemon=True, name="fake-realtime-ws").start()
        assert self._ready.wait(5)
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main():
            self._server = await serve(self._handle, "127.0.0.1", 0, process_request=self._check)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._server.serve_forever()

        try:
            self.loop.run_until_complete(main())
        except asyncio.CancelledError:
            pass

    def stop(self) -> None:
        if self._server is not None:
            self.loop.call_soon_threadsafe(self._server.close)

    def _check(self, connection, request):
        auth = request.headers.get("Authorization") or ""
        if not auth.startswith("Bearer ") or auth[7:] not in self.api_keys:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "Incorrect API key provided.\n")
        url = urlsplit(request.path)
        if url.path != "/v1/realtime" or not parse_qs(url.query).get("model"):
            return connection.respond(HTTPStatus.NOT_FOUND, "expected /v1/realtime?model=\n")
        return None

    async def _handle(self, ws) -> None:
        record = {"path": ws.request.path, "authorization": ws.request.headers.get("Authorization"),
                  "events": [], "close_code": None}
        self.connections.append(record)
        model = parse_qs(urlsplit(ws.request.path).query)["model"][0]
        await ws.send(json.dumps({"type": "session.created", "event_id": "event_1",
                                  "session": {"type": "realtime", "model": model, "object": "realtime.session"}}))
        try:
            async for message in ws:
                event = json.loads(message)
                record["events"].append(event)
                if event.get("type") == "test.close":
                    await ws.close(event["code"], event.get("reason", ""))
                    break
                if event.get("type") == "response.create":
                    await ws.send(json.dumps({"type": "response.done", "event_id": "event_9", "response": {
                        "id": "resp_1", "object": "realtime.response", "status": "completed", "output": [],
                        "usage": {"total_tokens": 12, "input_tokens": 8, "output_tokens": 4,
                                  "input_token_details": {"text_tokens": 8, "audio_tokens": 0},
                                  "output_token_details": {"text_tokens": 4, "audio_tokens": 0}}}}))
                else:
                    await ws.send(json.dumps({"type": "conversation.item.created", "event_id": "event_2",
                                              "previous_item_id": None, "item": {"id": event.get("event_id"),
                                                                                 "type": "message"}}))
        except ConnectionClosed:
            pass
        record["close_code"] = ws.close_code
