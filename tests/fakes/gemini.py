"""Gemini dialect (Generative Language API v1beta): models/{model}:generateContent,
:streamGenerateContent?alt=sse, :countTokens, :embedContent, :batchEmbedContents, GET models(/{model}).

Checks what the real API checks: the key (x-goog-api-key or ?key=; a missing key is 403
PERMISSION_DENIED, a wrong one 400 INVALID_ARGUMENT "API key not valid", an Authorization bearer
is 401 UNAUTHENTICATED), unknown fields ("Invalid JSON payload received. Unknown name ..."),
contents and parts (one data field per part, roles user/model), function declarations, function
responses answering every call of the previous turn, and for gemini-3 models the thoughtSignature
of function calls in the current turn (missing: 400; not one this fake issued: 400). Streams are
`data: {GenerateContentResponse}\\r\\n\\r\\n` events and end with the body, no terminator.
Error JSON: {"error": {"code", "message", "status"}}.
"""
from __future__ import annotations

import json
import base64
import binascii
import hashlib
import re
import secrets
import threading

from .common import DEFAULT_TEXT, Endpoint, Response, ToolCall, count_tokens, dumps, example_arguments, random_id, \
    split_text

DEFAULT_MODELS = ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-3-pro-preview", "gemini-embedding-001")
PATH = re.compile(r"^/(v1beta|v1)/models/([^/:]+):(generateContent|streamGenerateContent|countTokens|embedContent|"
                  r"batchEmbedContents)$")
MODEL_PATH = re.compile(r"^/(v1beta|v1)/models/([^/:]+)$")
LIST_PATH = re.compile(r"^/(v1beta|v1)/models$")

STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
          409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL", 501: "UNIMPLEMENTED",
          503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
MESSAGES = {429: "Resource has been exhausted (e.g. check quota).", 500: "An internal error has occurred. Please "
            "retry or report in https://developers.generativeai.google/guide/troubleshooting",
            503: "The model is overloaded. Please try again later.", 504: "Deadline expired before operation "
            "could complete."}
NO_KEY = ("Method doesn't allow unregistered callers (callers without established identity). Please use API Key "
          "or other form of API consumer identity to call this API.")
BAD_KEY = "API key not valid. Please pass a valid API key."
OAUTH = ("Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
         "valid authentication credential.")
FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "content_filter": "SAFETY"}

# Known fields (camelCase, as the REST API documents them; snake_case is accepted too).
REQUEST_FIELDS = {"contents", "tools", "toolConfig", "safetySettings", "systemInstruction", "generationConfig",
                  "cachedContent", "model", "labels", "serviceTier", "store"}
PART_DATA = {"text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
             "codeExecutionResult"}
PART_FIELDS = PART_DATA | {"thought", "thoughtSignature", "videoMetadata", "mediaResolution", "partMetadata"}
TOOL_FIELDS = {"functionDeclarations", "googleSearch", "googleSearchRetrieval", "codeExecution", "urlContext",
               "fileSearch", "googleMaps", "computerUse", "mcpServers"}
DECLARATION_FIELDS = {"name", "description", "parameters", "parametersJsonSchema", "response", "responseJsonSchema",
                      "behavior"}
CONFIG_FIELDS = {"stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema", "responseModalities",
                 "candidateCount", "maxOutputTokens", "temperature", "topP", "topK", "seed", "presencePenalty",
                 "frequencyPenalty", "responseLogprobs", "logprobs", "enableEnhancedCivicAnswers", "speechConfig",
                 "thinkingConfig", "imageConfig", "mediaResolution", "_responseJsonSchema"}
EMBED_FIELDS = {"model", "content", "taskType", "title", "outputDimensionality"}
NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.\-:]{0,63}$")


class Invalid(Exception):
    """A 400 INVALID_ARGUMENT."""


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def _fields(obj: dict, known: set, where: str) -> dict:
    """obj with snake_case keys made camelCase; an unknown key is the API's 400."""
    if not isinstance(obj, dict):  # Google: "Invalid value at 'requests[0]' (type.googleapis.com/...), 1"
        raise Invalid(f"Invalid value at '{where or 'body'}' (message), {json.dumps(obj)}")
    out = {}
    for key, value in obj.items():
        name = _camel(key)
        if name not in known:
            at = f" at '{where}'" if where else ""
            raise Invalid(f"Invalid JSON payload received. Unknown name \"{key}\"{at}: Cannot find field.")
        out[name] = value
    return out


def decode_signature(value) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value.replace("-", "+").replace("_", "/") + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


# -- validation ---------------------------------------------------------------------------------
def validate_part(part, where: str, role: str) -> dict:
    if not isinstance(part, dict):
        raise Invalid(f"Invalid value at '{where}' (type.googleapis.com/google.ai.generativelanguage.v1beta.Part)")
    part = _fields(part, PART_FIELDS, where)
    data = [k for k in part if k in PART_DATA]
    if len(data) != 1:
        raise Invalid(f"* GenerateContentRequest.{where}.data: required oneof field 'data' must have one initialized "
                      "field")
    kind = data[0]
    if kind == "text" and not isinstance(part["text"], str):
        raise Invalid(f"Invalid value at '{where}.text' (TYPE_STRING)")
    if kind == "text" and part["text"] == "" and role == "user":
        raise Invalid("Unable to submit request because it has an empty text parameter. Add a value to the "
                      "parameter and try again.")
    if kind == "inlineData":
        blob = _fields(part["inlineData"], {"mimeType", "data", "displayName"}, f"{where}.inline_data")
        if not blob.get("mimeType"):
            raise Invalid(f"* GenerateContentRequest.{where}.inline_data.mime_type: required field is not set")
        if decode_signature(blob.get("data") or "") is None:     # standard or URL-safe base64, as protobuf JSON
            raise Invalid(f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), Base64 decoding failed")
    if kind == "fileData":
        file_data = _fields(part["fileData"], {"mimeType", "fileUri", "displayName"}, f"{where}.file_data")
        if not file_data.get("fileUri"):
            raise Invalid(f"* GenerateContentRequest.{where}.file_data.file_uri: required field is not set")
    if kind == "functionCall":
        call = _fields(part["functionCall"], {"id", "name", "args"}, f"{where}.function_call")
        if not call.get("name"):
            raise Invalid(f"* GenerateContentRequest.{where}.function_call.name: name cannot be empty")
        if "args" in call and not isinstance(call["args"], dict):
            raise Invalid(f"Invalid value at '{where}.function_call.args' (type.googleapis.com/google.protobuf.Struct)")
    if kind == "functionResponse":
        response = _fields(part["functionResponse"], {"id", "name", "response", "parts", "willContinue",
                                                      "scheduling"}, f"{where}.function_response")
        if not response.get("name"):
            raise Invalid(f"* GenerateContentRequest.{where}.function_response.name: name cannot be empty")
        if not isinstance(response.get("response"), dict):
            raise Invalid(f"Invalid value at '{where}.function_response.response' "
                          "(type.googleapis.com/google.protobuf.Struct)")
    if "thoughtSignature" in part and decode_signature(part["thoughtSignature"]) is None:
        raise Invalid(f"Invalid value at '{where}.thought_signature' (TYPE_BYTES), Base64 decoding failed")
    return part


def validate_content(content, where: str, system: bool = False) -> dict:
    if not isinstance(content, dict):
        raise Invalid(f"Invalid value at '{where}' (type.googleapis.com/google.ai.generativelanguage.v1beta.Content)")
    content = _fields(content, {"role", "parts"}, where)
    role = content.get("role")
    if role is not None and not isinstance(role, str):
        raise Invalid(f"Invalid value at '{where}.role' (TYPE_STRING), {json.dumps(role)}")
    role = role or "user"  # proto3: an empty string is the default, the same as no role
    if not system and role not in ("user", "model", "function"):
        raise Invalid(f"Please use a valid role: user, model.")
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        raise Invalid(f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.")
    content["parts"] = [validate_part(p, f"{where}.parts[{j}]", role) for j, p in enumerate(parts)]
    return content


def validate_tools(tools) -> None:
    if not isinstance(tools, list):
        raise Invalid("Invalid value at 'tools' (type.googleapis.com/google.ai.generativelanguage.v1beta.Tool)")
    for i, tool in enumerate(tools):
        tool = _fields(tool, TOOL_FIELDS, f"tools[{i}]")
        for k, declaration in enumerate(tool.get("functionDeclarations") or []):
            where = f"tools[{i}].function_declarations[{k}]"
            declaration = _fields(declaration, DECLARATION_FIELDS, where)
            if not NAME.match(str(declaration.get("name") or "")):
                raise Invalid(f"* GenerateContentRequest.{where}.name: Invalid function name. Must start with a "
                              "letter or an underscore. Must be a-z, A-Z, 0-9, or contain underscores, dots, colons "
                              "and dashes, with a maximum length of 64.")
            if "parameters" in declaration and "parametersJsonSchema" in declaration:
                raise Invalid(f"* GenerateContentRequest.{where}: parameters and parameters_json_schema cannot "
                              "both be set")
            params = declaration.get("parameters")
            if isinstance(params, dict) and any(k in params for k in ("additionalProperties", "$schema", "strict")):
                raise Invalid(f"Invalid JSON payload received. Unknown name \"additionalProperties\" at "
                              f"'{where}.parameters': Cannot find field.")


def function_calls(content: dict) -> list[dict]:
    return [p for p in content["parts"] if "functionCall" in p]


def validate_turns(contents: list[dict], model: str, issued: set) -> None:
    for i, content in enumerate(contents):
        responses = [p for p in content["parts"] if "functionResponse" in p]
        if not responses:
            continue
        previous = contents[i - 1] if i else None
        calls = function_calls(previous) if previous and previous.get("role") == "model" else []
        if len(calls) != len(responses):
            raise Invalid("Please ensure that the number of function response parts is equal to the number of "
                          "function call parts of the function call turn.")
    if not model.startswith("gemini-3"):
        return
    # The current turn: everything after the last user content that is not only function responses.
    start = 0
    for i, content in enumerate(contents):
        if content.get("role", "user") == "user" and any("functionResponse" not in p for p in content["parts"]):
            start = i
    for i in range(start, len(contents)):
        calls = function_calls(contents[i]) if contents[i].get("role") == "model" else []
        if not calls:
            continue
        signature = calls[0].get("thoughtSignature")
        if signature is None:
            raise Invalid(f"Function call is missing a thought_signature in functionCall parts. This is required "
                          f"for tools to work correctly, and missing thought_signature may lead to degraded model "
                          f"performance. Additional data, function call `default_api:{calls[0]['functionCall']['name']}`"
                          f" , position {i + 1}. Please refer to https://ai.google.dev/gemini-api/docs/thought-"
                          "signatures for more details.")
        if decode_signature(signature) not in issued:
            raise Invalid("Corrupted thought signature.")


def validate_generate(body: dict, model: str, issued: set) -> dict:
    body = _fields(body, REQUEST_FIELDS, "")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise Invalid("* GenerateContentRequest.contents: contents is not specified")
    body["contents"] = [validate_content(c, f"contents[{i}]") for i, c in enumerate(contents)]
    if "systemInstruction" in body:
        body["systemInstruction"] = validate_content(body["systemInstruction"], "system_instruction", system=True)
    if "tools" in body:
        validate_tools(body["tools"])
    if "generationConfig" in body:
        config = _fields(body["generationConfig"], CONFIG_FIELDS, "generation_config")
        if "maxOutputTokens" in config and (not isinstance(config["maxOutputTokens"], int) or
                                            config["maxOutputTokens"] < 1):
            raise Invalid("* GenerateContentRequest.generation_config.max_output_tokens: must be positive")
        body["generationConfig"] = config
    validate_turns(body["contents"], model, issued)
    return body


def validate_embed(body: dict, model: str, where: str = "") -> dict:
    body = _fields(body, EMBED_FIELDS, where)
    if where and body.get("model") != f"models/{model}":
        raise Invalid(f"* BatchEmbedContentsRequest.{where}.model: The model in each request must match the "
                      f"batch's model models/{model}.")
    content = body.get("content")
    if content is None:
        raise Invalid(f"* EmbedContentRequest.{where + '.' if where else ''}content: content is not specified")
    validate_content(content, f"{where + '.' if where else ''}content")
    dims = body.get("outputDimensionality")
    if dims is not None and (not isinstance(dims, int) or dims < 1):
        at = f"BatchEmbedContentsRequest.{where}." if where else "EmbedContentRequest."
        raise Invalid(f"* {at}output_dimensionality: must be positive")
    return body


# -- replies ------------------------------------------------------------------------------------
def text_of_content(content) -> str:
    if not isinstance(content, dict):
        return ""
    return " ".join(p["text"] for p in content.get("parts") or [] if isinstance(p, dict) and
                    isinstance(p.get("text"), str))


def prompt_tokens(body: dict) -> int:
    total = count_tokens(text_of_content(body.get("systemInstruction")))
    for content in body.get("contents") or []:
        total += count_tokens(text_of_content(content))
        total += sum(1 for p in content.get("parts") or [] if "inlineData" in p or "fileData" in p) * 258
    return total


def choose_call(body: dict, options: dict) -> ToolCall | None:
    wanted = options.get("tool_call")
    if wanted is False:
        return None
    if isinstance(wanted, dict):
        args = wanted.get("arguments", {})
        return ToolCall(wanted["name"], args if isinstance(args, str) else dumps(args))
    declarations = [d for t in body.get("tools") or [] for d in (t.get("functionDeclarations") or [])]
    mode = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode", "AUTO")
    if wanted is None:
        last = body["contents"][-1]
        if not declarations or mode == "NONE" or last.get("role", "user") != "user" or \
                any("functionResponse" in p for p in last["parts"]):
            return None
    declaration = declarations[0] if declarations else {"name": "get_weather"}
    schema = declaration.get("parametersJsonSchema") or declaration.get("parameters")
    if isinstance(schema, dict) and isinstance(schema.get("type"), str):
        schema = {**schema, "type": schema["type"].lower()}
    return ToolCall(declaration["name"], dumps(example_arguments(schema)))


def embedding_values(text: str, dims: int) -> list[float]:
    seed = hashlib.sha256(text.encode()).digest()
    return [round((seed[i % 32] - 128) / 128.0, 6) for i in range(dims)]


class GeminiDialect:
    name = "gemini"

    def __init__(self):
        self._lock = threading.Lock()
        self.issued: set[bytes] = set()     # thought signatures handed out, as bytes

    # -- routing -------------------------------------------------------------------------------
    def match(self, method: str, path: str, headers: dict) -> Endpoint | None:
        m = PATH.match(path)
        if m and method == "POST":
            return Endpoint(m.group(3), model=m.group(2))
        if method == "GET" and LIST_PATH.match(path) and (path.startswith("/v1beta") or "x-goog-api-key" in headers):
            return Endpoint("models")
        m = MODEL_PATH.match(path)
        if method == "GET" and m and (path.startswith("/v1beta") or "x-goog-api-key" in headers):
            return Endpoint("model", model=m.group(2))
        return None

    def api_key(self, headers: dict, endpoint) -> str | None:
        return headers.get("x-goog-api-key")

    def model(self, body, endpoint) -> str | None:
        return endpoint.model if endpoint is not None else None

    # -- errors --------------------------------------------------------------------------------
    def error(self, status: int, message: str | None = None, error_type: str | None = None, request=None) -> Response:
        name = error_type or STATUS.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
        body = {"error": {"code": status, "message": message or MESSAGES.get(status, "Request failed."),
                          "status": name}}
        if message == BAD_KEY:
            body["error"]["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                         "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]
        return Response(status, body)

    # -- checking ------------------------------------------------------------------------------
    def check(self, req, endpoint: Endpoint, upstream) -> Response | None:
        key = req.api_key or req.query.get("key")
        if req.headers.get("authorization"):
            return self.error(401, OAUTH)
        if not key:
            return self.error(403, NO_KEY)
        if key not in upstream.api_keys:
            return self.error(400, BAD_KEY)
        if endpoint.kind in ("models", "model"):
            return None
        if endpoint.kind == "streamGenerateContent" and req.query.get("alt") != "sse":
            return self.error(400, "fake Gemini speaks streams as alt=sse only")
        if not isinstance(req.body, dict):
            return self.error(400, "Invalid JSON payload received. Unexpected token.")
        try:
            body = req.body
            if endpoint.kind in ("generateContent", "streamGenerateContent"):
                with self._lock:
                    issued = set(self.issued)
                validate_generate(body, endpoint.model, issued)
            elif endpoint.kind == "countTokens":
                body = _fields(body, {"contents", "generateContentRequest"}, "")
                if ("contents" in body) == ("generateContentRequest" in body):
                    raise Invalid("* CountTokensRequest: exactly one of contents and generate_content_request "
                                  "must be set")
                if "contents" in body:
                    validate_generate({"contents": body["contents"]}, endpoint.model, set(self.issued))
                else:
                    inner = dict(body["generateContentRequest"])
                    if inner.pop("model", None) != f"models/{endpoint.model}":
                        raise Invalid("* CountTokensRequest.generate_content_request.model: must match the model "
                                      "in the path")
                    validate_generate(inner, "", set())
            elif endpoint.kind == "embedContent":
                validate_embed(body, endpoint.model)
            else:
                body = _fields(body, {"requests"}, "")
                requests = body.get("requests")
                if not isinstance(requests, list) or not requests:
                    raise Invalid("* BatchEmbedContentsRequest.requests: requests is not specified")
                for i, item in enumerate(requests):
                    validate_embed(item, endpoint.model, f"requests[{i}]")
        except Invalid as exc:
            return self.error(400, str(exc))
        return None

    # -- replies -------------------------------------------------------------------------------
    def build(self, req, endpoint: Endpoint, options: dict, upstream=None) -> Response:
        models = [m for m in (upstream.models if upstream is not None else DEFAULT_MODELS)]
        gemini_models = [m for m in models if m.startswith("gemini")] or list(DEFAULT_MODELS)
        if endpoint.kind == "models":
            return Response(200, {"models": [self._model(m) for m in gemini_models]})
        if endpoint.kind == "model":
            if endpoint.model not in gemini_models:
                return self.error(404, f"models/{endpoint.model} is not found for API version v1beta, or is not "
                                       "supported for generateContent.")
            return Response(200, self._model(endpoint.model))
        body = {_camel(k): v for k, v in req.body.items()}
        if endpoint.kind == "countTokens":
            inner = body.get("generateContentRequest") or body
            inner = {_camel(k): v for k, v in inner.items()}
            return Response(200, {"totalTokens": prompt_tokens(inner),
                                  "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens(inner)}]})
        if endpoint.kind == "embedContent":
            return Response(200, {"embedding": self._embedding(body)})
        if endpoint.kind == "batchEmbedContents":
            return Response(200, {"embeddings": [self._embedding({_camel(k): v for k, v in r.items()})
                                                 for r in body["requests"]]})
        return self._generate(body, endpoint, options)

    def _embedding(self, request: dict) -> dict:
        dims = request.get("outputDimensionality") or 768
        return {"values": embedding_values(text_of_content(request.get("content")), dims)}

    @staticmethod
    def _model(model: str) -> dict:
        embedding = "embedding" in model
        return {"name": f"models/{model}", "version": "001", "displayName": model.replace("-", " ").title(),
                "description": f"Fake {model}", "inputTokenLimit": 2048 if embedding else 1048576,
                "outputTokenLimit": 1 if embedding else 65536,
                "supportedGenerationMethods": ["embedContent", "countTextTokens", "countTokens"] if embedding
                else ["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"]}

    def _signature(self) -> str:
        raw = secrets.token_bytes(48)
        with self._lock:
            self.issued.add(raw)
        return base64.b64encode(raw).decode()

    def _generate(self, body: dict, endpoint: Endpoint, options: dict) -> Response:
        model = endpoint.model
        call = choose_call(body, options)
        text = options.get("content")
        if call is None and text is None:
            text = DEFAULT_TEXT
        finish = FINISH.get(options.get("finish_reason") or "stop", "STOP")
        thinking = model.startswith("gemini-3")
        prompt = prompt_tokens(body)
        out_tokens = count_tokens(text or "") + (1 + count_tokens(call.arguments) if call else 0)
        usage = {"promptTokenCount": prompt, "candidatesTokenCount": out_tokens,
                 "totalTokenCount": prompt + out_tokens + (4 if thinking else 0),
                 "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]}
        if thinking:
            usage["thoughtsTokenCount"] = 4
        if body.get("cachedContent"):
            usage["cachedContentTokenCount"] = min(prompt, 2)
        response_id = random_id("", 22)
        call_part = None
        if call is not None:
            call_part = {"functionCall": {"name": call.name, "args": _loads(call.arguments)},
                         "thoughtSignature": self._signature()}
        stream = endpoint.kind == "streamGenerateContent"
        if not stream:
            parts = ([{"text": text}] if text is not None else []) + ([call_part] if call_part else [])
            return Response(200, {
                "candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": finish, "index": 0,
                                "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT",
                                                   "probability": "NEGLIGIBLE"}]}],
                "usageMetadata": usage, "modelVersion": model, "responseId": response_id})
        pieces = split_text(text, options.get("chunks")) if text is not None else []
        events = []
        partial_usage = {"promptTokenCount": prompt, "totalTokenCount": prompt}
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1 and call_part is None
            candidate = {"content": {"parts": [{"text": piece}], "role": "model"}, "index": 0}
            if last:
                candidate["finishReason"] = finish
            events.append(_sse({"candidates": [candidate], "usageMetadata": usage if last else partial_usage,
                                "modelVersion": model, "responseId": response_id}))
        if call_part is not None:
            events.append(_sse({"candidates": [{"content": {"parts": [call_part], "role": "model"},
                                                "finishReason": finish, "index": 0}],
                                "usageMetadata": usage, "modelVersion": model, "responseId": response_id}))
        return Response(200, events=events, malformed=b"data: {not json\r\n\r\n")


def _sse(obj) -> bytes:
    return b"data: " + dumps(obj).encode() + b"\r\n\r\n"


def _loads(text: str):
    import json
    try:
        return json.loads(text)
    except ValueError:
        return {}


DIALECT = GeminiDialect()
