from collections import Counter

import pytest

from app.config import Key
from app.engine import backoff
from app.errors import GatewayError
from app.keys import select_key
from app.sse import iter_events

KEYS = (
    Key("a", "ka", ("*",), weight=0.7),
    Key("b", "kb", ("gpt-4o-mini",), weight=0.3),
    Key("off", "ko", ("*",), weight=5, enabled=False),
)


def test_weighted_choice_follows_weights():
    counts = Counter(select_key(KEYS, "gpt-4o-mini").name for _ in range(4000))
    assert set(counts) == {"a", "b"}
    assert 0.63 < counts["a"] / 4000 < 0.77


def test_model_allow_lists_and_disabled_keys():
    assert {select_key(KEYS, "gpt-4o").name for _ in range(50)} == {"a"}
    with pytest.raises(GatewayError, match="no keys found that support model: m"):
        select_key((KEYS[1],), "m")


def test_pinned_key_and_rotation():
    assert select_key(KEYS, "gpt-4o-mini", pinned="b").name == "b"
    with pytest.raises(GatewayError, match="no key found with name zz"):
        select_key(KEYS, "gpt-4o-mini", pinned="zz")
    assert {select_key(KEYS, "gpt-4o-mini", exclude={"a"}).name for _ in range(50)} == {"b"}
    # when every candidate is excluded, a key is still returned rather than failing
    assert select_key(KEYS, "gpt-4o", exclude={"a"}).name == "a"


def test_backoff_grows_and_is_capped():
    assert 0.4 <= backoff(0, 0.5, 5) <= 0.6
    assert 1.6 <= backoff(2, 0.5, 5) <= 2.4
    assert 4.0 <= backoff(10, 0.5, 5) <= 6.0


def test_sse_events_split_across_chunks():
    raw = b'event: message_start\ndata: {"a":1}\n\n: ping\n\ndata: {"b":\r\n\r\ndata: [DONE]\n\n'
    pieces = [raw[i:i + 3] for i in range(0, len(raw), 3)]
    events = list(iter_events(pieces))
    assert [(e.name, e.data) for e in events] == [("message_start", b'{"a":1}'), (None, b'{"b":'), (None, b"[DONE]")]
