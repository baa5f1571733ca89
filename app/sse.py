"""Server-sent events: reading an upstream stream, writing frames to a client."""
from __future__ import annotations

from typing import Iterable, Iterator, NamedTuple

import orjson


class Event(NamedTuple):
    name: str | None  # the "event:" field, None when absent
    data: bytes  # the "data:" lines joined by newlines


def iter_events(chunks: Iterable[bytes]) -> Iterator[Event]:
    """Split a byte stream into events as soon as each one is complete.

    Chunk boundaries fall anywhere, so partial events wait in a buffer; the caller
    sees an event the moment its blank line arrives, never later.
    """
    buffer = b""
    for chunk in chunks:
        if not chunk:
            continue
        if not buffer and chunk.endswith(b"\n\n") and chunk.find(b"\n\n") == len(chunk) - 2 and b"\r" not in chunk:
            # The usual case: an upstream writes each event as one piece.
            event = _parse_block(chunk[:-2])
            if event is not None:
                yield event
            continue
        buffer += chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        while True:
            end = buffer.find(b"\n\n")
            if end < 0:
                break
            block, buffer = buffer[:end], buffer[end + 2:]
            event = _parse_block(block)
            if event is not None:
                yield event
    if buffer.strip():
        event = _parse_block(buffer)  # a final event without its blank line
        if event is not None:
            yield event


def _parse_block(block: bytes) -> Event | None:
    if block.startswith(b"data: ") and b"\n" not in block:
        return Event(None, block[6:])  # the common case, one data line: no line splitting
    name = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue  # comments are keep-alives
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value.decode("utf-8", "replace")
    if not data and name is None:
        return None
    return Event(name, b"\n".join(data))


def data_frame(payload: dict) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def named_frame(name: str, payload: dict) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


DONE_FRAME = b"data: [DONE]\n\n"
