"""MCP tools in chat requests: injected before the call, executed in agent mode after each turn.

Injection adds the allowed tools (``<client>-<tool>``, OpenAI function form) to the
canonical body's ``tools``, skipping names the request already has. What is allowed:
each client's ``tools_to_execute``; the ``x-bf-mcp-include-clients`` / ``-tools`` headers;
or, when governance found a virtual key with ``mcp_configs``, those instead of the headers
(contract: governance's before-hook sets ``call.state["mcp_configs"]`` to the VK's list).
Agent mode: when every tool call of a turn is auto-executable, the calls run concurrently
and the conversation continues (app/turns.py), up to ``max_agent_depth`` rounds.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import gevent
import orjson

from app.errors import GatewayError
from app.mcp.catalog import Access
from app.plugins import FollowUp, Plugin

if TYPE_CHECKING:
    from app.call import Call
    from app.config import GatewayConfig
    from app.mcp.catalog import ToolEntry
    from app.mcp.manager import Manager

log = logging.getLogger("bifrost.mcp")
CHAT = "chat_completion"
DEFAULT_ACCESS = Access()


class MCPPlugin(Plugin):
    name = "mcp"

    def __init__(self, config: "GatewayConfig") -> None:
        from app.mcp import manager_for

        self.manager: "Manager" = manager_for(config)
        self.settings = self.manager.settings

    def before(self, call: "Call") -> None:
        catalog = self.manager.catalog
        if not catalog or call.request_type != CHAT or call.body is None:
            return
        ctx = call.ctx
        vk = call.state.get("mcp_configs")
        if vk is None and ctx.mcp_include_clients is None and ctx.mcp_include_tools is None:
            access = DEFAULT_ACCESS
        else:
            access = Access(ctx.mcp_include_clients, ctx.mcp_include_tools, vk)
        if self.settings.disable_auto_tool_inject and not access.sent_headers and access.vk is None:
            return
        allowed = catalog.allowed(access)
        if not allowed:
            return
        body = call.body
        existing = body.get("tools")
        if isinstance(existing, list) and existing:
            have = {t["function"].get("name") for t in existing
                    if isinstance(t, dict) and isinstance(t.get("function"), dict)}
            added = [e for e in allowed if e.name not in have]
            body["tools"] = existing + [e.function for e in added]
        else:
            added = list(allowed)
            body["tools"] = list(catalog.default_functions) if allowed is catalog.default else [e.function for e in added]
        call.translate = True  # the injected tools are in the canonical body only
        auto = {e.name: e for e in added if e.auto}
        if auto:
            call.state["mcp"] = {"auto": auto, "depth": 0}
            call.hold_tool_calls = True

    def follow_up(self, call: "Call", message: dict) -> FollowUp | None:
        state = call.state.get("mcp")
        tool_calls = message.get("tool_calls")
        if state is None or not tool_calls or state["depth"] >= self.settings.max_agent_depth:
            return None
        auto: dict[str, "ToolEntry"] = state["auto"]
        runnable = [tc for tc in tool_calls if (tc.get("function") or {}).get("name") in auto]
        if not runnable:
            return None
        state["depth"] += 1
        jobs = [gevent.spawn(self._run, auto[tc["function"]["name"]], tc, call.ctx.request_id) for tc in runnable]
        gevent.joinall(jobs)
        results = [job.value if job.successful() else _failed(job.exception) for job in jobs]
        tool_messages = [{"role": "tool", "tool_call_id": tc.get("id") or "", "content": text}
                         for tc, text in zip(runnable, results)]
        if len(runnable) == len(tool_calls):
            assistant = {"role": "assistant", "content": message.get("content"), "tool_calls": tool_calls}
            return FollowUp(messages=[assistant, *tool_messages])
        # Some calls are for the client: return them, with what the gateway ran written into the text.
        pending = [tc for tc in tool_calls if tc not in runnable]
        ran = "\n".join(f"{tc['function']['name']} returned: {text}" for tc, text in zip(runnable, results))
        content = "\n\n".join(part for part in (message.get("content"), ran) if part)
        return FollowUp(final={"role": "assistant", "content": content, "tool_calls": pending},
                        finish_reason="tool_calls")

    def _run(self, entry: "ToolEntry", tool_call: dict, request_id: str) -> str:
        raw = (tool_call.get("function") or {}).get("arguments") or "{}"
        try:
            arguments = orjson.loads(raw) if isinstance(raw, str) else raw
        except orjson.JSONDecodeError as exc:
            return f"error: the arguments are not valid JSON: {exc}"
        if not isinstance(arguments, dict):
            return "error: the arguments must be a JSON object"
        return self.manager.execute(entry, arguments, request_id=request_id, source="agent").text

    def close(self) -> None:
        from app.mcp import close_all

        close_all()


def _failed(error: BaseException | None) -> str:
    """A tool that could not run (server down, timeout) still answers, so the model can go on."""
    if isinstance(error, GatewayError):
        return f"error: {error.message}"
    log.error("mcp: agent tool execution failed: %r", error)
    return "error: the tool could not be executed"
