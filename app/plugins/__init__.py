"""Plugins: concerns that wrap every inference request (governance, MCP tools, logs, metrics).

A plugin is a small object with hooks the engine calls; providers and blueprints never
call them. ``before`` hooks run in order and may change the call or refuse it by raising
a GatewayError; ``after`` hooks run once, in reverse order, when the reply is sent or the
stream ends, whether it succeeded or failed. A failing hook is logged, never fatal, except
a ``before`` hook's GatewayError, which is the refusal the client receives.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from app.call import Attempt, Call
    from app.config import GatewayConfig
    from app.context import RequestContext

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

    def follow_up(self, call: "Call", message: dict) -> "FollowUp | None":
        """A model turn ended with this assistant message (a JSON reply's, or a stream's assembled).

        Return a FollowUp to continue the conversation inside the gateway (agent mode), or
        None to let the reply go to the client. Only chat requests get here (app/turns.py).
        """
        return None

    def models(self, ctx: "RequestContext", models: list[dict]) -> list[dict]:
        """/v1/models: filter the listed models (e.g. to a virtual key's). Raise GatewayError to refuse."""
        return models

    def close(self) -> None:
        """The worker is stopping: flush what is buffered."""


@dataclass
class FollowUp:
    """``messages``: append them and call the model again. ``final``: end here, with this assistant
    message in place of the model's (and ``finish_reason``)."""

    messages: list[dict] | None = None
    final: dict | None = None
    finish_reason: str = "tool_calls"


class Plugins:
    """The ordered plugins of one worker, and the one place their hooks are called."""

    def __init__(self, plugins: Sequence[Plugin]) -> None:
        self.plugins = tuple(plugins)
        self.reversed = tuple(reversed(self.plugins))
        # Plugins that may continue a conversation; the engine looks at turns only when there are some.
        self.continuing = tuple(p for p in self.plugins if type(p).follow_up is not Plugin.follow_up)

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

    def follow_up(self, call: "Call", message: dict) -> "FollowUp | None":
        for plugin in self.continuing:
            step = plugin.follow_up(call, message)  # a GatewayError here is the client's answer
            if step is not None:
                return step

    def models(self, ctx: "RequestContext", models: list[dict]) -> list[dict]:
        for plugin in self.plugins:
            models = plugin.models(ctx, models)
        return models

    def get(self, name: str) -> Plugin | None:
        for plugin in self.plugins:
            if plugin.name == name:
                return plugin
        return None

    def close(self) -> None:
        for plugin in self.reversed:
            try:
                plugin.close()
            except Exception:
                log.exception("plugin %s: close failed", plugin.name)


def build_plugins(config: "GatewayConfig") -> Plugins:
    """The built-in plugins, in hook order. Each concern adds its one line here."""
    from app.plugins.governance import GovernancePlugin
    from app.plugins.mcp import MCPPlugin

    plugins: list[Plugin] = [GovernancePlugin(config)]
    plugins.append(MCPPlugin(config))
    if config.client.enable_logging and ((config.raw or {}).get("logs_store") or {}).get("enabled", True):
        from app.plugins.request_logs import RequestLogs

        plugins.append(RequestLogs(config))
    from app.plugins.metrics import MetricsPlugin

    plugins.append(MetricsPlugin(config))
    return Plugins(plugins)
