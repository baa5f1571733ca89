"""Keeping provider credentials out of error messages and logs.

Some providers quote the key they were sent, whole or in part ("sk-abc1****wxyz"), in
their error bodies. Every error the engine passes on is scrubbed of every configured key
value first; the work happens on error paths only.
"""
from __future__ import annotations

import re
from typing import Iterable

from app.config import GatewayConfig
from app.errors import GatewayError

MASK = "[REDACTED]"
MIN_SECRET = 6  # shorter values ("none", "x") are no credentials and would mask ordinary words
MIN_PIECE = 8  # a quoted part of a key ("sk-abc123****wxyz") is masked from this length on
_PIECE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{%d,}" % (MIN_PIECE - 1))
CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "x-goog-api-key", "proxy-authorization"})


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = tuple(sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True))

    @classmethod
    def from_config(cls, config: GatewayConfig) -> "Redactor":
        """Every key value, and every credential an operator put in extra_headers."""
        secrets = []
        for provider in config.providers.values():
            secrets.extend(key.value for key in provider.keys if key.value)
            for name, value in provider.network.extra_headers.items():
                if name.lower() in CREDENTIAL_HEADERS:
                    secrets.append(value)
                    secrets.append(value.partition(" ")[2])  # "Bearer <token>"
        return cls(secrets)

    def __call__(self, text: str | None) -> str | None:
        if not text or not self.secrets:
            return text
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return _PIECE.sub(self._mask_piece, text)  # partial echoes: a long enough piece of a key

    def _mask_piece(self, match: re.Match) -> str:
        piece = match.group(0)
        return MASK if any(piece in secret for secret in self.secrets) else piece

    def scrub(self, error: GatewayError) -> GatewayError:
        """Redact the error in place (message, code, param) and return it."""
        if self.secrets:
            error.message = self(error.message) or ""
            error.args = (error.message,)
            error.code = self(error.code)
            error.param = self(error.param)
        return error
