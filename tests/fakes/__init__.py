"""Fake upstream LLM providers for the integration tests (see server.FakeUpstream)."""
from .behaviours import (Behaviour, Combine, CutStream, Delay, MalformedChunk, Reply, Reset, Stall, Status,
                         Stream)
from .server import FakeUpstream, Recorded

__all__ = [
    "FakeUpstream", "Recorded",
    "Behaviour", "Status", "Delay", "Stall", "Reset", "CutStream", "MalformedChunk", "Stream", "Reply", "Combine",
]
