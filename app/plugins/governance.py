"""The governance plugin: virtual keys, their providers and models, rate limits and budgets.

Before the call it checks the key (found, active, not expired), the provider and the
model, routes a model given without a provider by weight, and admits the request
against every counter of its chain in one atomic step, reserving an estimate of its
tokens and cost. After the call, whatever happened, it gives the reservation back and
adds the real usage. Who the key is lands in ``call.state["governance"]`` for logs and metrics.
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING, Sequence

import orjson

from app.context import virtual_key_of
from app.governance import Admission, Governance, ProviderRoute, VirtualKey, refusal
from app.plugins import Plugin
from app.pricing import Pricing
from app.schemas import Target, missing_provider
from app.stores.counters import AMOUNT, COUNT, NANO_USD, Meter, StoreUnavailable

if TYPE_CHECKING:
    from app.call import Call
    from app.context import RequestContext

OUTPUT_ESTIMATE = 256  # tokens reserved for the answer when the request sets no max_tokens
STATUS = {"request_limited": 429, "token_limited": 429, "budget_exceeded": 402}
MESSAGES = {"request_limited": "Request rate limit exceeded", "token_limited": "Token limit exceeded",
            "budget_exceeded": "Budget exceeded"}


def weighted_order(routes: Sequence[ProviderRoute]) -> list[ProviderRoute]:
    """Routes in a weighted random order: the first is the pick, the rest its fallbacks."""
    pool = list(routes)
    picked = []
    while pool:
        weights = [max(route.weight, 0.0) for route in pool]
        choice = random.choices(pool, weights=weights)[0] if any(weights) else pool[0]
        pool.remove(choice)
        picked.append(choice)
    return picked


def limit_text(meter: Meter) -> str:
    if meter.decision == "budget_exceeded":
        return f"{meter.label} ({meter.limit / NANO_USD:.2f} USD per {meter.window.text})"
    unit = "requests" if meter.kind == COUNT else "tokens"
    return f"{meter.label} ({meter.limit} {unit} per {meter.window.text})"


class GovernancePlugin(Plugin):
    name = "governance"

    def __init__(self, config) -> None:
        self.service = Governance(config)
        self.pricing = Pricing(config)
        # The MCP routes without a Call (/v1/mcp/tool/execute, /mcp) ask this for the key's mcp_configs.
        from app.mcp import manager_for

        manager_for(config).vk_resolver = self.mcp_configs_of

    def mcp_configs_of(self, environ: dict) -> "Sequence[dict] | None":
        """The mcp_configs of the virtual key a request carries; the governance refusal for a bad key."""
        value = virtual_key_of(environ)
        if value is None:
            if self.service.enforce:
                raise refusal("virtual_key_required", 401,
                              "virtual key is required: send it in x-bf-vk or as Authorization: Bearer sk-bf-...")
            return None
        return self.service.authenticate(value).mcp_configs or None

    # -- before the call -----------------------------------------------------------------------------

    def before(self, call: "Call") -> None:
        value = call.ctx.virtual_key
        if value is None:
            if self.service.enforce:
                raise refusal("virtual_key_required", 401,
                              "virtual key is required: send it in x-bf-vk or as Authorization: Bearer sk-bf-...")
            return
        vk = self.service.authenticate(value)
        call.state["governance"] = state = dict(vk.attribution)
        if vk.mcp_configs:
            call.state["mcp_configs"] = vk.mcp_configs
        target = call.target
        candidates = self._candidates(vk, target)
        if candidates is None:  # no provider given and no provider config to route it: nothing is counted
            raise missing_provider(target.model)
        admitted, index = self._admit(call, vk, candidates)
        route = candidates[index]
        if admitted is not None:
            state["admission"] = admitted
        if route is not None:
            state["provider_config"] = route.provider
            if not target.provider:
                # The configs before the pick were over their limits; those after it are the fallbacks.
                call.target = Target(route.provider, target.model)
                call.fallbacks = [Target(r.provider, target.model) for r in candidates[index + 1:]] + call.fallbacks
        if vk.key_filter:
            call.ctx.key_filter = vk.key_filter
        if vk.routes and not vk.allow_all_providers:
            call.fallbacks = [t for t in call.fallbacks if (r := vk.route(t.provider)) is not None and r.allows(t.model)]

    def _candidates(self, vk: VirtualKey, target: Target) -> list[ProviderRoute | None] | None:
        model = target.model
        if target.provider:
            route = vk.route(target.provider)
            if route is None:
                if vk.routes and not vk.allow_all_providers:
                    raise refusal("provider_blocked", 403,
                                  f"Provider '{target.provider}' is not allowed for this virtual key")
                return [None]
            if not route.allows(model):
                raise refusal("model_blocked", 403, f"Model '{model}' is not allowed for this virtual key")
            return [route]
        if not vk.routes:
            return None
        routes = [route for route in vk.routes if route.allows(model)]
        if not routes:
            raise refusal("model_blocked", 403, f"Model '{model}' is not allowed for this virtual key")
        return weighted_order(routes)

    def _admit(self, call: "Call", vk: VirtualKey, candidates: list) -> tuple[Admission | None, int]:
        """Admit against the first candidate whose chain has room (its index); a key-wide refusal ends the search."""
        estimate_tokens = None
        for index, route in enumerate(candidates):
            meters = vk.chain(route)
            if not meters:
                return None, index
            if estimate_tokens is None and any(m.kind == AMOUNT for m in meters):
                estimate_tokens = self._estimate_tokens(call.body)
            reserves = self._reserves(meters, call, route, estimate_tokens or (0, 0))
            try:
                refused = self.service.admit(meters, reserves)
            except StoreUnavailable as exc:
                error = self.service.unavailable(exc)
                if error is not None:
                    raise error from None
                return None, index  # on_store_error: allow
            if refused < 0:
                return Admission(meters, tuple(reserves), route), index
            meter = meters[refused]
            own = route is not None and meter in route.meters
            if own and index < len(candidates) - 1:
                continue  # this provider config is spent; the next one may route it
            raise refusal(meter.decision, STATUS[meter.decision], f"{MESSAGES[meter.decision]}: {limit_text(meter)}")
        raise AssertionError("unreachable")

    @staticmethod
    def _estimate_tokens(body: dict) -> tuple[int, int]:
        prompt = body.get("messages") or body.get("prompt") or body.get("input") or ""
        output = body.get("max_completion_tokens") or body.get("max_tokens") or OUTPUT_ESTIMATE
        try:
            return len(orjson.dumps(prompt)) // 4 + 1, int(output)
        except (TypeError, ValueError):
            return 1, OUTPUT_ESTIMATE

    def _reserves(self, meters: Sequence[Meter], call: "Call", route: ProviderRoute | None,
                  tokens: tuple[int, int]) -> list[int]:
        reserves = []
        cost_nano = None
        for meter in meters:
            if meter.kind == COUNT:
                reserves.append(0)
            elif meter.decision == "token_limited":
                reserves.append(tokens[0] + tokens[1])
            else:
                if cost_nano is None:
                    provider = route.provider if route is not None else call.target.provider
                    cost = self.pricing.cost(provider, call.target.model,
                                             {"prompt_tokens": tokens[0], "completion_tokens": tokens[1]}) if provider else None
                    cost_nano = round((cost or 0.0) * NANO_USD)
                reserves.append(cost_nano)
        return reserves

    # -- after the call ---------------------------------------------------------------------------------

    def after(self, call: "Call") -> None:
        state = call.state.get("governance")
        if not state:
            return
        admission: Admission | None = state.pop("admission", None)
        if admission is None:
            return
        usage = call.usage or {}
        tokens = int(usage.get("total_tokens") or (usage.get("prompt_tokens") or 0) + (usage.get("completion_tokens") or 0))
        cost_nano = round((call.cost or 0.0) * NANO_USD)
        served = call.served.provider if call.served is not None else None
        route = admission.route
        moved = served is not None and route is not None and served != route.provider
        served_route = None
        if moved:
            vk = self.service.snapshot.by_value.get(call.ctx.virtual_key or "")
            served_route = vk.route(served) if vk is not None else None
        route_keys = {m.key for m in route.meters} if route is not None else set()
        meters: list[Meter] = []
        releases: list[int] = []
        adds: list[int] = []
        for meter, reserve in zip(admission.meters, admission.reserves):
            charge = 0 if (moved and meter.key in route_keys) else self._charge(meter, tokens, cost_nano)
            meters.append(meter)
            releases.append(reserve if meter.kind == AMOUNT else 0)
            adds.append(charge)
        if served_route is not None:  # a fallback to another provider config: it pays for what it served
            for meter in served_route.meters:
                if meter.kind == AMOUNT:
                    meters.append(meter)
                    releases.append(0)
                    adds.append(self._charge(meter, tokens, cost_nano))
        if any(releases) or any(adds):
            self.service.settle(meters, releases, adds)

    @staticmethod
    def _charge(meter: Meter, tokens: int, cost_nano: int) -> int:
        if meter.kind == COUNT:
            return 0
        return tokens if meter.decision == "token_limited" else cost_nano

    # -- model listing and shutdown -------------------------------------------------------------------

    def models(self, ctx: "RequestContext", models: list[dict]) -> list[dict]:
        """/v1/models with a virtual key lists only what the key may use."""
        if ctx.virtual_key is None:
            if self.service.enforce:
                raise refusal("virtual_key_required", 401, "virtual key is required")
            return models
        vk = self.service.authenticate(ctx.virtual_key)
        if not vk.routes:
            return models
        visible = []
        for model in models:
            provider, _, name = str(model.get("id", "")).partition("/")
            route = vk.route(provider)
            if route is None:
                if vk.allow_all_providers:
                    visible.append(model)
            elif route.allows(name):
                visible.append(model)
        return visible

    def close(self) -> None:
        self.service.close()

