"""OpenAI-compatible dialect: /v1/chat/completions (and Perplexity's /chat/completions),
/v1/completions, /v1/embeddings, /v1/models, and Azure's /openai/deployments/{deployment}/
(chat/completions|completions|embeddings).

Requests are checked the way OpenAI checks them (auth, JSON, required fields, message roles and
content parts, tool-call pairing, stream_options); unknown top-level fields are accepted, but an
unknown field inside a message or a tool call is the API's 400 "Unknown parameter" (e.g. Gemini's
``extra_content``).
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import struct

from .common import (DEFAULT_TEXT, Endpoint, Response, ToolCall, count_tokens, dumps, example_arguments,
                     now, random_id, split_even, split_text, sse)

DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-3.5-turbo-instruct", "claude-sonnet-4-5", "claude-haiku-4-5")

ROLES = ("system", "assistant", "user", "function", "tool", "developer")
PART_TYPES = {
    "user": ("text", "image_url", "input_audio", "file"),
    "assistant": ("text", "refusal"),
    "system": ("text",), "developer": ("text",), "tool": ("text",), "function": ("text",),
}
# The fields each message role (and each tool call) may have, as in OpenAI's API reference; an
# assistant message may also carry the reply fields the openai SDK's model_dump() leaves on it
# (annotations), which the API accepts back.
MESSAGE_FIELDS = {
    "system": {"role", "content", "name"}, "developer": {"role", "content", "name"},
    "user": {"role", "content", "name"},
    "assistant": {"role", "content", "name", "refusal", "audio", "tool_calls", "function_call", "annotations"},
    "tool": {"role", "content", "tool_call_id"}, "function": {"role", "content", "name"},
}
TOOL_CALL_FIELDS = {"id", "type", "function", "custom"}
AZURE_PATH = re.compile(r"^/openai/deployments/([^/]+)/(chat/completions|completions|embeddings)$")
AZURE_KINDS = {"chat/completions": "chat", "completions": "completions", "embeddings": "embeddings"}

_MISSING = object()

# status -> (type, code, default message); the 429 type follows the gateway brief.
ERRORS = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", None, "You are not allowed to access this resource."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    408: ("timeout", None, "Request timed out."),
    413: ("invalid_request_error", None, "Request too large."),
    429: ("rate_limit_exceeded", "rate_limit_exceeded", "Rate limit reached for requests. Please try again in 1s."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The server is overloaded or not ready yet."),
    504: ("server_error", None, "Gateway timeout."),
}
BAD_JSON = ("We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
            "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. "
            "If you have trouble figuring out how to fix this, please contact us through our help center at "
            "help.openai.com.)")
NO_KEY = ("You didn't provide an API key. You need to provide your API key in an Authorization header using "
          "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if "
          "you're accessing the API from your browser and are prompted for a username and password. You can "
          "obtain an API key from https://platform.openai.com/account/api-keys.")
AZURE_DENIED = ("Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid "
                "key for an active subscription and use a correct regional API endpoint for your resource.")


class Invalid(Exception):
    """A 400 in OpenAI's shape."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message, self.param, self.code = message, param, code


def json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "decimal"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _a(kind: str) -> str:
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def _supported(values) -> str:
    quoted = [f"'{v}'" for v in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + ", and " + quoted[-1]


def missing(param: str) -> Invalid:
    return Invalid(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")


def wrong_type(param: str, expected: str, value) -> Invalid:
    return Invalid(f"Invalid type for '{param}': expected {expected}, but got {_a(json_type(value))} instead.",
                   param, "invalid_type")


def bad_value(param: str, value, supported) -> Invalid:
    return Invalid(f"Invalid value: '{value}'. Supported values are: {_supported(supported)}.", param, "invalid_value")


def empty_array(param: str) -> Invalid:
    return Invalid(f"Invalid '{param}': empty array. Expected an array with minimum length 1, but got an empty "
                   "array instead.", param, "empty_array")


# -- validation ---------------------------------------------------------------------------------
def validate_common(body: dict, endpoint: Endpoint) -> None:
    if endpoint.deployment is None:
        model = body.get("model")
        if model is None or model == "":
            raise Invalid("you must provide a model parameter")
        if not isinstance(model, str):
            raise wrong_type("model", "a string", model)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise wrong_type("stream", "a boolean", stream)
    options = body.get("stream_options")
    if options is not None:
        if stream is not True:
            raise Invalid("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options")
        if not isinstance(options, dict):
            raise wrong_type("stream_options", "an object", options)


def validate_content(role: str, content, p: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise wrong_type(f"{p}.content", "one of a string or array of objects", content)
    if not content:
        raise empty_array(f"{p}.content")
    allowed = PART_TYPES[role]
    for j, part in enumerate(content):
        q = f"{p}.content[{j}]"
        if not isinstance(part, dict):
            raise wrong_type(q, "an object", part)
        kind = part.get("type", _MISSING)
        if kind is _MISSING:
            raise missing(f"{q}.type")
        if kind not in allowed:
            raise bad_value(f"{q}.type", kind, allowed)
        if kind == "text":
            if "text" not in part:
                raise missing(f"{q}.text")
            if not isinstance(part["text"], str):
                raise wrong_type(f"{q}.text", "a string", part["text"])
        elif kind == "refusal" and not isinstance(part.get("refusal"), str):
            raise missing(f"{q}.refusal")
        elif kind == "image_url":
            image = part.get("image_url", _MISSING)
            if image is _MISSING:
                raise missing(f"{q}.image_url")
            if not isinstance(image, dict):
                raise wrong_type(f"{q}.image_url", "an object", image)
            if not isinstance(image.get("url"), str):
                raise missing(f"{q}.image_url.url")
        elif kind == "input_audio":
            audio = part.get("input_audio")
            if not isinstance(audio, dict):
                raise missing(f"{q}.input_audio")
            for key in ("data", "format"):
                if key not in audio:
                    raise missing(f"{q}.input_audio.{key}")
        elif kind == "file" and not isinstance(part.get("file"), dict):
            raise missing(f"{q}.file")


def validate_tool_calls(calls, p: str) -> set:
    if not isinstance(calls, list):
        raise wrong_type(f"{p}.tool_calls", "an array", calls)
    ids = set()
    for k, call in enumerate(calls):
        q = f"{p}.tool_calls[{k}]"
        if not isinstance(call, dict):
            raise wrong_type(q, "an object", call)
        for key in ("id", "type", "function"):
            if key not in call:
                raise missing(f"{q}.{key}")
        if not isinstance(call["id"], str):
            raise wrong_type(f"{q}.id", "a string", call["id"])
        fn = call["function"]
        if not isinstance(fn, dict):
            raise wrong_type(f"{q}.function", "an object", fn)
        for key in ("name", "arguments"):
            if key not in fn:
                raise missing(f"{q}.function.{key}")
        if not isinstance(fn["arguments"], str):
            raise wrong_type(f"{q}.function.arguments", "a string", fn["arguments"])
        unknown_field(call, TOOL_CALL_FIELDS, q)
        ids.add(call["id"])
    return ids


def unknown_field(obj: dict, known: set, p: str) -> None:
    for key in obj:
        if key not in known:
            raise Invalid(f"Unknown parameter: '{p}.{key}'.", f"{p}.{key}", code="unknown_parameter")


def _unanswered(ids: set, index: int) -> Invalid:
    return Invalid("An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                   f"'tool_call_id'. The following tool_call_ids did not have response messages: "
                   f"{', '.join(sorted(ids))}", f"messages.[{index}].role")


def validate_messages(body: dict) -> None:
    messages = body.get("messages", _MISSING)
    if messages is _MISSING or messages is None:
        raise missing("messages")
    if not isinstance(messages, list):
        raise wrong_type("messages", "an array", messages)
    if not messages:
        raise empty_array("messages")
    pending: set | None = None      # tool_call ids of the last assistant message still unanswered
    for i, msg in enumerate(messages):
        p = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise wrong_type(p, "an object", msg)
        role = msg.get("role", _MISSING)
        if role is _MISSING:
            raise missing(f"{p}.role")
        if role not in ROLES:
            raise bad_value(f"{p}.role", role, ROLES)
        unknown_field(msg, MESSAGE_FIELDS[role], p)
        if role == "tool":
            call_id = msg.get("tool_call_id", _MISSING)
            if call_id is _MISSING:
                raise missing(f"{p}.tool_call_id")
            if not isinstance(call_id, str):
                raise wrong_type(f"{p}.tool_call_id", "a string", call_id)
            if pending is None:
                raise Invalid("Invalid parameter: messages with role 'tool' must be a response to a preceeding "
                              "message with 'tool_calls'.", f"messages.[{i}].role")
            pending.discard(call_id)
        else:
            if pending:
                raise _unanswered(pending, i)
            pending = None
        content = msg.get("content", _MISSING)
        has_calls = bool(msg.get("tool_calls")) or bool(msg.get("function_call"))
        if content is _MISSING and not (role == "assistant" and has_calls):
            raise missing(f"{p}.content")
        if content is None and not (role == "assistant" and has_calls):
            raise Invalid("Invalid value for 'content': expected a string, got null.", f"messages.[{i}].content")
        if content not in (_MISSING, None):
            validate_content(role, content, p)
        if role == "function" and not isinstance(msg.get("name"), str):
            raise missing(f"{p}.name")
        if role == "assistant" and msg.get("tool_calls") is not None:
            pending = validate_tool_calls(msg["tool_calls"], p) or None
    if pending:
        raise _unanswered(pending, len(messages) - 1)


def validate_tools(body: dict) -> None:
    tools = body.get("tools")
    if tools is None:
        return
    if not isinstance(tools, list):
        raise wrong_type("tools", "an array", tools)
    for i, tool in enumerate(tools):
        p = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise wrong_type(p, "an object", tool)
        kind = tool.get("type", _MISSING)
        if kind is _MISSING:
            raise missing(f"{p}.type")
        if kind not in ("function", "custom"):
            raise bad_value(f"{p}.type", kind, ("function", "custom"))
        if kind == "function":
            fn = tool.get("function", _MISSING)
            if fn is _MISSING:
                raise missing(f"{p}.function")
            if not isinstance(fn, dict):
                raise wrong_type(f"{p}.function", "an object", fn)
            if not isinstance(fn.get("name"), str):
                raise missing(f"{p}.function.name")


def validate_embeddings(body: dict, model: str) -> None:
    value = body.get("input", _MISSING)
    if value is _MISSING or value is None:
        raise missing("input")
    if value == "" or value == []:
        raise Invalid("'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-"
                      "reference.", "input")
    ok = isinstance(value, str) or (isinstance(value, list) and (
        all(isinstance(i, str) and i for i in value) or all(isinstance(i, int) for i in value)
        or all(isinstance(i, list) and i and all(isinstance(t, int) for t in i) for i in value)))
    if not ok:
        raise Invalid("'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-"
                      "reference.", "input")
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        raise bad_value("encoding_format", fmt, ("float", "base64"))
    dims = body.get("dimensions")
    if dims is not None:
        if not isinstance(dims, int) or isinstance(dims, bool) or dims < 1:
            raise Invalid(f"Invalid value for 'dimensions' = {dims}. Must be a positive integer.", "dimensions")
        if not model.startswith("text-embedding-3"):
            raise Invalid("This model does not support specifying dimensions.", "dimensions")


def embedding_values(text: str, dims: int) -> list[float]:
    seed = hashlib.sha256(text.encode()).digest()
    return [round((seed[i % 32] - 128) / 128.0, 6) for i in range(dims)]


def validate_prompt(body: dict) -> None:
    prompt = body.get("prompt", _MISSING)
    if prompt is _MISSING or prompt is None:
        raise missing("prompt")
    if not isinstance(prompt, (str, list)):
        raise wrong_type("prompt", "one of a string or array", prompt)


# -- replies ------------------------------------------------------------------------------------
def message_text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def prompt_tokens(body: dict, kind: str = "chat") -> int:
    if kind == "chat":
        return sum(count_tokens(message_text(m.get("content"))) for m in body["messages"])
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        return sum(count_tokens(p) if isinstance(p, str) else len(p) if isinstance(p, list) else 1 for p in prompt)
    return count_tokens(prompt)


def choose_tool_call(body: dict, options: dict) -> ToolCall | None:
    wanted = options.get("tool_call")
    if wanted is False:
        return None
    if isinstance(wanted, dict):
        args = wanted.get("arguments", {})
        return ToolCall(wanted["name"], args if isinstance(args, str) else dumps(args), random_id("call_"))
    tools = [t.get("function") for t in body.get("tools") or []
             if isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("function"), dict)]
    choice = body.get("tool_choice")
    if wanted is None:
        last = (body.get("messages") or [{}])[-1]
        if not tools or choice == "none" or not isinstance(last, dict) or last.get("role") != "user":
            return None
    fn = tools[0] if tools else {"name": "get_weather"}
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        fn = next((t for t in tools if t.get("name") == choice["function"].get("name")), fn)
    args = json.dumps(example_arguments(fn.get("parameters")))
    return ToolCall(fn.get("name", "get_weather"), args, random_id("call_"))


def choose_tool_calls(body: dict, options: dict) -> list[ToolCall]:
    """As choose_tool_call; a list in options["tool_call"] asks for several calls in one reply."""
    wanted = options.get("tool_call")
    if isinstance(wanted, list):
        return [choose_tool_call(body, {**options, "tool_call": item}) for item in wanted]
    call = choose_tool_call(body, options)
    return [call] if call is not None else []


def usage(prompt: int, completion: int) -> dict:
    return {
        "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


class OpenAIDialect:
    name = "openai"

    # -- routing -------------------------------------------------------------------------------
    def match(self, method: str, path: str, headers: dict) -> Endpoint | None:
        if method == "POST" and path in ("/v1/chat/completions", "/chat/completions"):
            return Endpoint("chat")
        if method == "POST" and path in ("/v1/completions", "/completions"):
            return Endpoint("completions")
        if method == "POST" and path in ("/v1/embeddings", "/embeddings"):
            return Endpoint("embeddings")
        if method == "GET" and path in ("/v1/models", "/models"):
            return Endpoint("models")
        m = AZURE_PATH.match(path)
        if method == "POST" and m:
            return Endpoint(AZURE_KINDS[m.group(2)], deployment=m.group(1))
        return None

    def api_key(self, headers: dict, endpoint: Endpoint | None) -> str | None:
        if endpoint is not None and endpoint.deployment is not None:
            return headers.get("api-key")
        auth = headers.get("authorization") or ""
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        return headers.get("api-key") if endpoint is None else None

    def model(self, body, endpoint: Endpoint | None) -> str | None:
        if endpoint is not None and endpoint.deployment is not None:
            return endpoint.deployment
        model = body.get("model") if isinstance(body, dict) else None
        return model if isinstance(model, str) else None

    # -- errors --------------------------------------------------------------------------------
    def error(self, status: int, message: str | None = None, error_type: str | None = None, request=None,
              param: str | None = None, code=_MISSING) -> Response:
        default_type, default_code, default_message = ERRORS.get(
            status, ("server_error" if status >= 500 else "invalid_request_error", None, "Error."))
        if status == 404 and message is None and request is not None and request.model:
            message = f"The model `{request.model}` does not exist or you do not have access to it."
        body = {"error": {"message": message or default_message, "type": error_type or default_type,
                          "param": param, "code": default_code if code is _MISSING else code}}
        return Response(status, body, headers={"x-request-id": random_id("req_", 32)})

    def invalid(self, exc: Invalid) -> Response:
        return self.error(400, exc.message, param=exc.param, code=exc.code)

    # -- checking ------------------------------------------------------------------------------
    def check(self, req, endpoint: Endpoint, upstream) -> Response | None:
        azure = endpoint.deployment is not None
        if azure and not req.query.get("api-version"):
            return self.error(404, "Resource not found", code="404")
        if req.api_key is None or req.api_key not in upstream.api_keys:
            if azure:
                return self.error(401, AZURE_DENIED, code="401")
            if req.api_key is None:
                return self.error(401, NO_KEY, code=None)
            return self.error(401, f"Incorrect API key provided: {_mask(req.api_key)}. You can find your API key "
                                   "at https://platform.openai.com/account/api-keys.")
        if endpoint.kind == "models":
            return None
        if not isinstance(req.body, dict):
            return self.error(400, BAD_JSON)
        try:
            validate_common(req.body, endpoint)
            if endpoint.kind == "chat":
                validate_messages(req.body)
                validate_tools(req.body)
            elif endpoint.kind == "embeddings":
                validate_embeddings(req.body, req.model or "")
            else:
                validate_prompt(req.body)
        except Invalid as exc:
            return self.invalid(exc)
        return None

    # -- replies -------------------------------------------------------------------------------
    def build(self, req, endpoint: Endpoint, options: dict, upstream=None) -> Response:
        headers = {"x-request-id": random_id("req_", 32), "openai-processing-ms": "1"}
        if endpoint.kind == "models":
            models = upstream.models if upstream is not None else DEFAULT_MODELS
            data = [{"id": m, "object": "model", "created": 1700000000,
                     "owned_by": "anthropic" if m.startswith("claude") else "openai"} for m in models]
            return Response(200, {"object": "list", "data": data}, headers=headers)
        body = req.body
        model = req.model or "unknown"
        if endpoint.kind == "embeddings":
            resp = self._embeddings(body, model)
            resp.headers.update(headers)
            return resp
        if endpoint.kind == "chat":
            resp = self._chat_stream(body, model, options) if body.get("stream") else self._chat(body, model, options)
        else:
            resp = (self._text_stream(body, model, options) if body.get("stream")
                    else self._text(body, model, options))
        resp.headers.update(headers)
        return resp

    def _chat(self, body: dict, model: str, options: dict) -> Response:
        calls = choose_tool_calls(body, options)
        text = options.get("content")
        if not calls and text is None:
            text = DEFAULT_TEXT
        message = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
        completion = count_tokens(text)
        if options.get("reasoning"):  # as DeepSeek, vLLM and other compatible servers report it
            message["reasoning_content"] = options["reasoning"]
        if calls:
            message["tool_calls"] = [{"id": call.id, "type": "function",
                                      "function": {"name": call.name, "arguments": call.arguments}}
                                     for call in calls]
            completion += sum(1 + count_tokens(call.arguments) for call in calls)
        finish = options.get("finish_reason") or ("tool_calls" if calls else "stop")
        return Response(200, {
            "id": random_id("chatcmpl-", 29), "object": "chat.completion", "created": now(), "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": usage(prompt_tokens(body), completion),
            "service_tier": "default", "system_fingerprint": "fp_fake00000",
        })

    def _chat_stream(self, body: dict, model: str, options: dict) -> Response:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        base = {"id": random_id("chatcmpl-", 29), "object": "chat.completion.chunk", "created": now(),
                "model": model, "service_tier": "default", "system_fingerprint": "fp_fake00000"}

        def chunk(delta: dict, finish=None) -> bytes:
            obj = dict(base, choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])
            if include_usage:
                obj["usage"] = None
            return sse(obj)

        calls = choose_tool_calls(body, options)
        text = options.get("content")
        if not calls and text is None:
            text = DEFAULT_TEXT
        chunks = options.get("chunks")
        events, completion = [], 0
        if options.get("reasoning"):
            events += [chunk({"reasoning_content": piece}) for piece in split_text(options["reasoning"], chunks)]
        if text is not None:
            pieces = split_text(text, chunks)
            events.append(chunk({"role": "assistant", "content": "", "refusal": None}))
            events += [chunk({"content": piece}) for piece in pieces]
            completion += count_tokens("".join(pieces))
        for index, call in enumerate(calls):
            head = {"index": index, "id": call.id, "type": "function",
                    "function": {"name": call.name, "arguments": ""}}
            first = {"tool_calls": [head]}
            if text is None and index == 0:
                first = {"role": "assistant", "content": None, "tool_calls": [head], "refusal": None}
            events.append(chunk(first))
            events += [chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                       for piece in split_even(call.arguments, chunks or 4)]
            completion += 1 + count_tokens(call.arguments)
        events.append(chunk({}, options.get("finish_reason") or ("tool_calls" if calls else "stop")))
        if include_usage:
            events.append(sse(dict(base, choices=[], usage=usage(prompt_tokens(body), completion))))
        events.append(b"data: [DONE]\n\n")
        return Response(200, events=events)

    def _embeddings(self, body: dict, model: str) -> Response:
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        if inputs and isinstance(inputs[0], int):
            inputs = [inputs]
        dims = body.get("dimensions") or (3072 if "large" in model else 1536)
        data, tokens = [], 0
        for index, item in enumerate(inputs):
            text = item if isinstance(item, str) else " ".join(map(str, item))
            tokens += count_tokens(text) if isinstance(item, str) else len(item)
            values = embedding_values(text, dims)
            if body.get("encoding_format") == "base64":
                values = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
            data.append({"object": "embedding", "index": index, "embedding": values})
        return Response(200, {"object": "list", "data": data, "model": model,
                              "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def _text(self, body: dict, model: str, options: dict) -> Response:
        text = options.get("content")
        text = DEFAULT_TEXT if text is None else text
        return Response(200, {
            "id": random_id("cmpl-", 29), "object": "text_completion", "created": now(), "model": model,
            "choices": [{"text": text, "index": 0, "logprobs": None,
                         "finish_reason": options.get("finish_reason") or "stop"}],
            "usage": usage(prompt_tokens(body, "completions"), count_tokens(text)),
            "system_fingerprint": "fp_fake00000",
        })

    def _text_stream(self, body: dict, model: str, options: dict) -> Response:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        base = {"id": random_id("cmpl-", 29), "object": "text_completion", "created": now(), "model": model,
                "system_fingerprint": "fp_fake00000"}

        def chunk(text: str, finish=None) -> bytes:
            obj = dict(base, choices=[{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}])
            if include_usage:
                obj["usage"] = None
            return sse(obj)

        text = options.get("content")
        pieces = split_text(DEFAULT_TEXT if text is None else text, options.get("chunks"))
        events = [chunk(piece) for piece in pieces]
        events.append(chunk("", options.get("finish_reason") or "stop"))
        if include_usage:
            prompt = prompt_tokens(body, "completions")
            events.append(sse(dict(base, choices=[], usage=usage(prompt, count_tokens("".join(pieces))))))
        events.append(b"data: [DONE]\n\n")
        return Response(200, events=events)


def _mask(key: str) -> str:
    return key if len(key) <= 8 else f"{key[:3]}{'*' * 10}{key[-4:]}"


DIALECT = OpenAIDialect()
