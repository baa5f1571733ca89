"""Fixtures the MCP test modules share: the fake chat upstream their gateways talk to.

Import them into a module (``from tests.mcp_servers.fixtures import _fresh_upstream, upstream``);
each module gets its own upstream, and every test that reaches it starts with it cleared.
"""
from __future__ import annotations

import pytest

from tests.fakes import FakeUpstream


@pytest.fixture(scope="module")
def upstream():
    fake = FakeUpstream(api_keys={"sk-mcp"}).start()
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def _fresh_upstream(request):
    if "upstream" in request.fixturenames:  # directly or through the module's gateway
        request.getfixturevalue("upstream").clear()
    yield
