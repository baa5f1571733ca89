"""Choosing a provider key for one attempt."""
from __future__ import annotations

import random
from typing import Collection, Sequence

from app.config import Key
from app.errors import GatewayError, echo


def select_key(
    keys: Sequence[Key], model: str, *, pinned: str | None = None, exclude: Collection[str] = ()
) -> Key:
    """A weighted random choice among the enabled keys that allow ``model``.

    ``pinned`` (the x-bf-api-key header) names one key and skips the draw. ``exclude``
    holds keys that just answered 429; they are avoided while others remain.
    """
    if pinned is not None:
        for key in keys:
            if key.name == pinned:
                if not key.allows(model):
                    raise GatewayError(f"key {echo(pinned)} does not allow model: {echo(model)}", 400, param="x-bf-api-key")
                return key
        raise GatewayError(f"no key found with name {echo(pinned)}", 400, param="x-bf-api-key")
    candidates = [key for key in keys if key.allows(model)]
    if not candidates:
        raise GatewayError(f"no keys found that support model: {echo(model)}", 400, code="no_keys_for_model")
    if exclude and len(candidates) > 1:
        fresh = [key for key in candidates if key.name not in exclude]
        candidates = fresh or candidates
    if len(candidates) == 1:
        return candidates[0]
    weights = [key.weight for key in candidates]
    if not any(weights):
        return random.choice(candidates)
    return random.choices(candidates, weights=weights)[0]
