"""Raw HTTP/1.1 over a socket, for requests no client library would send (bad framing, slow bodies)."""
from __future__ import annotations

import json
import socket
from dataclasses import dataclass


@dataclass
class RawReply:
    status: int
    headers: dict  # lower-case name -> value
    body: bytes

    def json(self):
        return json.loads(self.body)


def connect(url: str, timeout: float = 10.0) -> socket.socket:
    host, port = url.split("//", 1)[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def read_reply(sock: socket.socket) -> RawReply:
    """One response: headers, then a Content-Length body (gunicorn's errors and the gateway's JSON)."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            raise ConnectionError(f"connection closed before a full reply: {data!r}")
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        piece = sock.recv(65536)
        if not piece:
            break
        body += piece
    return RawReply(status, headers, body[:length])


def exchange(url: str, data: bytes, timeout: float = 10.0) -> RawReply:
    with connect(url, timeout) as sock:
        sock.sendall(data)
        return read_reply(sock)


def is_closed(sock: socket.socket, timeout: float = 2.0) -> bool:
    """True when the server has closed the connection (EOF or reset) within ``timeout``."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
