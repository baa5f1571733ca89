"""Plugins: concerns that wrap every inference request (governance, MCP tools, logs, metrics).

A plugin is a small object with hooks the engine calls; providers and blueprints never
call them. ``before`` hooks run in order and may change the call or refuse it by raising
a GatewayError; ``after`` hooks run once, in reverse order, when the reply is sent or the
stream ends, whether it succeeded or failed. A failing hook is logged, never fatal, except
a ``before`` hook's GatewayError, which is the refusal the client receives.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from app.call import Attempt, Call
    from app.config import GatewayConfig

log = logging.getLogger("bifrost.plugins")


class Plugin:
    """Override only the hooks you need; the defaults do nothing."""

    name = "plugin"

    def before(self, call: "Call") -> None:
        """Before the first attempt. Raise GatewayError to refuse the request."""

    def on_attempt(self, call: "Call", attempt: "Attempt") -> None:
        """After each upstream attempt (a retry or a fallback), successful or not."""

    def after(self, call: "Call") -> None:
        """Once per request, when its reply is complete (call.error set when it failed)."""

    def close(self) -> None:
        """The worker is stopping: flush what is buffered."""


class Plugins:
    """The ordered plugins of one worker, and the one place their hooks are called."""

    def __init__(self, plugins: Sequence[Plugin]) -> None:
        self.plugins = tuple(plugins)
        self.reversed = tuple(reversed(self.plugins))

    def __bool__(self) -> bool:
        return bool(self.plugins)

    def before(self, call: "Call") -> None:
        for plugin in self.plugins:
            plugin.before(call)  # a GatewayError here is the client's answer

    def on_attempt(self, call: "Call", attempt: "Attempt") -> None:
        for plugin in self.plugins:
            try:
                plugin.on_attempt(call, attempt)
            except Exception:
                log.exception("plugin %s: on_attempt failed (request %s)", plugin.name, call.ctx.request_id)

    def after(self, call: "Call") -> None:
        for plugin in self.reversed:
            try:
                plugin.after(call)
            except Exception:
                log.exception("plugin %s: after failed (request %s)", plugin.name, call.ctx.request_id)

    def close(self) -> None:
        for plugin in self.reversed:
            try:
                plugin.close()
            except Exception:
                log.exception("plugin %s: close failed", plugin.name)


def build_plugins(config: "GatewayConfig") -> Plugins:
    """The built-in plugins, in hook order. Each concern adds its one line here."""
    plugins: list[Plugin] = []
    if config.client.enable_logging and ((config.raw or {}).get("logs_store") or {}).get("enabled", True):
        from app.plugins.request_logs import RequestLogs

        plugins.append(RequestLogs(config))
    from app.plugins.metrics import MetricsPlugin

    plugins.append(MetricsPlugin(config))
    return Plugins(plugins)
