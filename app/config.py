"""Loading and validating config.json.

The file follows Bifrost's schema. It is read once per process at start-up, checked
with marshmallow, and turned into frozen dataclasses that the hot path reads without
further parsing. A bad file raises ``ConfigError`` with one line that names the key.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import orjson
from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema

from app.providers.catalog import AZURE_DEFAULT_API_VERSION, BUILTIN_PROVIDERS, ENV_KEYS, KEYLESS_PROVIDERS

DEFAULT_APP_DIR = "~/.config/bifrost"


class ConfigError(Exception):
    """config.json cannot be used; the message names the key and the problem."""


# -- the typed model the gateway runs on ---------------------------------------------------


@dataclass(frozen=True)
class AzureKeyConfig:
    endpoint: str
    api_version: str
    deployments: Mapping[str, str]


@dataclass(frozen=True)
class Key:
    name: str
    value: str
    models: tuple[str, ...]  # () or ("*",) allows every model
    weight: float = 1.0
    enabled: bool = True
    blacklisted_models: tuple[str, ...] = ()
    azure: AzureKeyConfig | None = None
    id: str | None = None  # config.json's key id, if any (a virtual key's key_ids may name it)

    def allows(self, model: str) -> bool:
        if not self.enabled or model in self.blacklisted_models:
            return False
        if self.azure and self.azure.deployments and model not in self.azure.deployments:
            return False
        return not self.models or "*" in self.models or model in self.models


@dataclass(frozen=True)
class NetworkConfig:
    base_url: str | None = None
    extra_headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 30.0  # default_request_timeout_in_seconds
    stream_idle_timeout: float | None = None  # stream_idle_timeout_in_seconds
    max_retries: int = 0
    retry_backoff_initial: float = 0.5  # seconds (config is in ms)
    retry_backoff_max: float = 5.0


@dataclass(frozen=True)
class ProviderConfig:
    name: str
    kind: str  # the adapter: a built-in provider name, or a custom provider's base_provider_type
    keys: tuple[Key, ...]
    network: NetworkConfig
    concurrency: int = 1000
    buffer_size: int = 5000
    keyless: bool = False
    allowed_requests: Mapping[str, bool] | None = None  # custom providers only; None = all
    request_path_overrides: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IceServer:
    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


@dataclass(frozen=True)
class RealtimeConfig:
    """client.realtime: WebRTC calls and the realtime WebSocket relay (app/realtime/)."""

    ice_servers: tuple[IceServer, ...] = ()  # none: host candidates only, never a public STUN default
    idle_timeout_seconds: float = 10.0
    max_call_seconds: float = 3600.0
    max_sessions_per_worker: int = 8
    handshake_timeout_seconds: float = 10.0
    ws_ping_interval_seconds: float = 15.0


@dataclass(frozen=True)
class ClientConfig:
    drop_excess_requests: bool = False
    max_request_body_size_mb: int = 100
    allowed_origins: tuple[str, ...] = ("*",)
    allowed_headers: tuple[str, ...] = ()
    # Observability (metrics and request logs)
    prometheus_labels: tuple[str, ...] = ()
    enable_logging: bool = True
    disable_content_logging: bool = False
    allow_per_request_content_storage_override: bool = False
    log_retention_days: int = 365
    disable_db_pings_in_health: bool = False
    realtime: RealtimeConfig = field(default_factory=RealtimeConfig)


@dataclass(frozen=True)
class GatewayConfig:
    providers: Mapping[str, ProviderConfig]
    client: ClientConfig
    source: str  # where it came from, for the start-up log line
    raw: Mapping[str, Any] = field(default_factory=dict)  # sections later features read (governance, mcp, ...)


# -- the schema of config.json --------------------------------------------------------------


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class AzureKeySchema(_Strict):
    endpoint = fields.String(required=True)
    api_version = fields.String(load_default=AZURE_DEFAULT_API_VERSION)
    deployments = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)


class KeySchema(_Strict):
    id = fields.String()
    name = fields.String()
    value = fields.String(load_default="")
    models = fields.List(fields.String(), load_default=list)
    blacklisted_models = fields.List(fields.String(), load_default=list)
    weight = fields.Float(load_default=1.0, validate=validate.Range(min=0))
    enabled = fields.Boolean(load_default=True)
    use_for_batch_api = fields.Boolean()
    aliases = fields.Dict(keys=fields.String(), values=fields.String())
    azure_key_config = fields.Nested(AzureKeySchema)
    # Accepted so that Bifrost configs load; their providers arrive in later releases.
    vertex_key_config = fields.Dict()
    bedrock_key_config = fields.Dict()
    replicate_key_config = fields.Dict()
    ollama_key_config = fields.Dict()
    sgl_key_config = fields.Dict()
    vllm_key_config = fields.Dict()


class NetworkSchema(_Strict):
    base_url = fields.URL(require_tld=False, schemes={"http", "https"})
    extra_headers = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    default_request_timeout_in_seconds = fields.Float(load_default=30.0, validate=validate.Range(min=0, min_inclusive=False))
    stream_idle_timeout_in_seconds = fields.Float(validate=validate.Range(min=0, min_inclusive=False))
    max_retries = fields.Integer(load_default=0, validate=validate.Range(min=0, max=20))
    retry_backoff_initial = fields.Float(load_default=500, validate=validate.Range(min=0))
    retry_backoff_max = fields.Float(load_default=5000, validate=validate.Range(min=0))
    allow_private_network = fields.Boolean()
    insecure_skip_verify = fields.Boolean()
    ca_cert_pem = fields.String()
    beta_header_overrides = fields.Dict()


class ConcurrencySchema(_Strict):
    concurrency = fields.Integer(load_default=1000, validate=validate.Range(min=1))
    buffer_size = fields.Integer(load_default=5000, validate=validate.Range(min=0))


class CustomProviderSchema(_Strict):
    base_provider_type = fields.String(required=True, validate=validate.OneOf(["openai", "anthropic", "gemini"]))
    is_key_less = fields.Boolean(load_default=False)
    allowed_requests = fields.Dict(keys=fields.String(), values=fields.Boolean())
    request_path_overrides = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)


class ProviderSchema(_Strict):
    keys = fields.List(fields.Nested(KeySchema), load_default=list)
    network_config = fields.Nested(NetworkSchema, load_default=lambda: NetworkSchema().load({}))
    concurrency_and_buffer_size = fields.Nested(
        ConcurrencySchema, load_default=lambda: ConcurrencySchema().load({})
    )
    custom_provider_config = fields.Nested(CustomProviderSchema)
    proxy_config = fields.Dict()
    send_back_raw_request = fields.Boolean()
    send_back_raw_response = fields.Boolean()
    store_raw_request_response = fields.Boolean()


class IceServerSchema(_Strict):
    urls = fields.Raw(required=True)  # a string or a list of strings, as in RTCIceServer
    username = fields.String()
    credential = fields.String()

    @validates_schema
    def _check_urls(self, data: dict, **_: Any) -> None:
        urls = data["urls"]
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list) or not urls or not all(
            isinstance(u, str) and u.split(":", 1)[0] in ("stun", "stuns", "turn", "turns") for u in urls
        ):
            raise ValidationError("must be a stun:/turn: URL or a non-empty list of them", "urls")


class RealtimeSchema(_Strict):
    ice_servers = fields.List(fields.Nested(IceServerSchema), load_default=list)
    idle_timeout_seconds = fields.Float(load_default=10.0, validate=validate.Range(min=0, min_inclusive=False))
    max_call_seconds = fields.Float(load_default=3600.0, validate=validate.Range(min=0, min_inclusive=False))
    max_sessions_per_worker = fields.Integer(load_default=8, validate=validate.Range(min=1))
    handshake_timeout_seconds = fields.Float(load_default=10.0, validate=validate.Range(min=0, min_inclusive=False))
    ws_ping_interval_seconds = fields.Float(load_default=15.0, validate=validate.Range(min=0, min_inclusive=False))


class ClientSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # Bifrost has many client flags; the ones we act on are checked

    drop_excess_requests = fields.Boolean(load_default=False)
    max_request_body_size_mb = fields.Integer(load_default=100, validate=validate.Range(min=1))
    allowed_origins = fields.List(fields.String(), load_default=lambda: ["*"])
    allowed_headers = fields.List(fields.String(), load_default=list)
    prometheus_labels = fields.List(fields.String(validate=validate.Regexp(r"^[a-zA-Z_][a-zA-Z0-9_]*$")), load_default=list)
    enable_logging = fields.Boolean(load_default=True)
    disable_content_logging = fields.Boolean(load_default=False)
    allow_per_request_content_storage_override = fields.Boolean(load_default=False)
    log_retention_days = fields.Integer(load_default=365, validate=validate.Range(min=0))
    disable_db_pings_in_health = fields.Boolean(load_default=False)
    realtime = fields.Nested(RealtimeSchema, load_default=lambda: RealtimeSchema().load({}))


class LmdbStoreSchema(_Strict):
    path = fields.String()  # default: <app dir>/counters.lmdb
    map_size_mb = fields.Integer(validate=validate.Range(min=1))


class SqliteCountersSchema(_Strict):
    path = fields.String()  # default: <app dir>/counters.db


class RedisStoreSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # settings this version does not read were always ignored; configs that have them still load

    addr = fields.String()
    username = fields.String(allow_none=True)
    password = fields.String(allow_none=True)
    db = fields.Integer(validate=validate.Range(min=0))
    key_prefix = fields.String()
    connect_timeout = fields.Float(validate=validate.Range(min=0, min_inclusive=False))
    timeout = fields.Float(validate=validate.Range(min=0, min_inclusive=False))
    pool_size = fields.Integer(validate=validate.Range(min=1))


COUNTER_STORES = {"lmdb": LmdbStoreSchema, "sqlite": SqliteCountersSchema, "redis": RedisStoreSchema}


class KvStoreSchema(_Strict):
    """The governance counters (app/stores/counters.py): none for LMDB in the app dir."""

    type = fields.String(load_default="redis", validate=validate.OneOf(list(COUNTER_STORES)))
    config = fields.Dict(load_default=dict)

    @validates_schema
    def _check_config(self, data: dict, **_: Any) -> None:
        try:
            COUNTER_STORES[data["type"]]().load(data["config"])
        except ValidationError as exc:
            raise ValidationError({"config": exc.messages}) from None


class ConfigSchema(_Strict):
    schema_url = fields.String(data_key="$schema")
    version = fields.Integer(validate=validate.OneOf([1, 2]))
    providers = fields.Dict(keys=fields.String(), values=fields.Nested(ProviderSchema), load_default=dict)
    client = fields.Nested(ClientSchema, load_default=lambda: ClientSchema().load({}))
    # Sections that later features own; accepted here so one file configures everything.
    encryption_key = fields.Raw()
    auth_config = fields.Dict()
    server = fields.Dict()
    framework = fields.Dict()
    governance = fields.Dict()
    mcp = fields.Dict()
    plugins = fields.List(fields.Dict())
    config_store = fields.Dict()
    logs_store = fields.Dict()
    vector_store = fields.Dict()
    kv_store = fields.Nested(KvStoreSchema)  # governance counters (app/stores/counters.py)

    @validates_schema
    def _check_providers(self, data: dict, **_: Any) -> None:
        for name, provider in data.get("providers", {}).items():
            custom = provider.get("custom_provider_config")
            if name not in BUILTIN_PROVIDERS and not custom:
                raise ValidationError(
                    f"unknown provider; built-in ones are {', '.join(sorted(BUILTIN_PROVIDERS))}, "
                    "others need custom_provider_config",
                    f"providers.{name}",
                )
            if "/" in name:
                raise ValidationError("a provider name cannot contain '/'", f"providers.{name}")


# -- loading ---------------------------------------------------------------------------------


def app_dir() -> Path:
    return Path(os.path.expanduser(os.environ.get("BIFROST_APP_DIR") or DEFAULT_APP_DIR))


def config_path() -> Path:
    explicit = os.environ.get("BIFROST_CONFIG")
    return Path(explicit) if explicit else app_dir() / "config.json"


# The configuration the gunicorn master validated. Workers are forked from the master and
# inherit it, so a worker never re-reads config.json (a broken edit cannot stop one).
_adopted: GatewayConfig | None = None


def adopt_config(config: GatewayConfig) -> None:
    global _adopted
    _adopted = config


def current_config() -> GatewayConfig:
    """The master's validated configuration, or config.json read now outside gunicorn."""
    return _adopted if _adopted is not None else load_config()


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read config.json (or the environment when there is none) into a GatewayConfig."""
    environ = os.environ if environ is None else environ
    path = path or config_path()
    if not path.exists():
        if os.environ.get("BIFROST_CONFIG"):
            raise ConfigError(f"{path}: BIFROST_CONFIG names a file that does not exist")
        return _from_environment(environ)
    try:
        document = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: the top level must be a JSON object")
    return parse_config(document, source=str(path), environ=environ)


def parse_config(document: dict, *, source: str = "<dict>", environ: Mapping[str, str] | None = None) -> GatewayConfig:
    environ = os.environ if environ is None else environ
    try:
        resolved = _resolve_env(document, environ, "")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    try:
        data = ConfigSchema().load(resolved)
    except ValidationError as exc:
        key, problem = _first_message(exc.messages)
        raise ConfigError(f"{source}: {key}: {problem}") from None
    providers = {name: _provider(name, spec, source) for name, spec in data["providers"].items()}
    from app.mcp.config import check_section  # marshmallow only: cheap in the master

    try:
        check_section(resolved.get("mcp"))
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None

    if data.get("governance"):
        from app.governance_schemas import validate_seed  # marshmallow only: safe in gunicorn's master

        try:
            validate_seed(data["governance"])
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    client = data["client"]
    return GatewayConfig(
        providers=providers,
        client=ClientConfig(
            drop_excess_requests=client["drop_excess_requests"],
            max_request_body_size_mb=client["max_request_body_size_mb"],
            allowed_origins=tuple(client["allowed_origins"]),
            allowed_headers=tuple(client["allowed_headers"]),
            prometheus_labels=tuple(client["prometheus_labels"]),
            enable_logging=client["enable_logging"],
            disable_content_logging=client["disable_content_logging"],
            allow_per_request_content_storage_override=client["allow_per_request_content_storage_override"],
            log_retention_days=client["log_retention_days"],
            disable_db_pings_in_health=client["disable_db_pings_in_health"],
            realtime=_realtime(client["realtime"]),
        ),
        source=source,
        raw=resolved,
    )


def _realtime(spec: dict) -> RealtimeConfig:
    servers = tuple(
        IceServer(
            urls=(s["urls"],) if isinstance(s["urls"], str) else tuple(s["urls"]),
            username=s.get("username"),
            credential=s.get("credential"),
        )
        for s in spec["ice_servers"]
    )
    return RealtimeConfig(
        ice_servers=servers,
        idle_timeout_seconds=spec["idle_timeout_seconds"],
        max_call_seconds=spec["max_call_seconds"],
        max_sessions_per_worker=spec["max_sessions_per_worker"],
        handshake_timeout_seconds=spec["handshake_timeout_seconds"],
        ws_ping_interval_seconds=spec["ws_ping_interval_seconds"],
    )


def _provider(name: str, spec: dict, source: str) -> ProviderConfig:
    custom = spec.get("custom_provider_config")
    kind = custom["base_provider_type"] if custom else name
    keyless = bool(custom and custom["is_key_less"]) or (not custom and name in KEYLESS_PROVIDERS)
    keys = []
    for index, key in enumerate(spec["keys"]):
        where = f"{source}: providers.{name}.keys[{index}]"
        if not key["value"] and not keyless and not key.get("azure_key_config"):
            raise ConfigError(f"{where}.value: is empty (is its environment variable set?)")
        if kind == "azure" and not key.get("azure_key_config"):
            raise ConfigError(f"{where}.azure_key_config: azure keys need an endpoint and deployments")
        azure = key.get("azure_key_config")
        keys.append(
            Key(
                name=key.get("name") or key.get("id") or f"{name}-{index}",
                id=key.get("id"),
                value=key["value"],
                models=tuple(key["models"]),
                weight=key["weight"],
                enabled=key["enabled"],
                blacklisted_models=tuple(key["blacklisted_models"]),
                azure=AzureKeyConfig(azure["endpoint"].rstrip("/"), azure["api_version"], azure["deployments"])
                if azure
                else None,
            )
        )
    if not keys and not keyless:
        raise ConfigError(f"{source}: providers.{name}.keys: at least one key is needed")
    net = spec["network_config"]
    limits = spec["concurrency_and_buffer_size"]
    return ProviderConfig(
        name=name,
        kind=kind,
        keys=tuple(keys),
        network=NetworkConfig(
            base_url=net.get("base_url", "").rstrip("/") or None,
            extra_headers=net["extra_headers"],
            timeout=net["default_request_timeout_in_seconds"],
            stream_idle_timeout=net.get("stream_idle_timeout_in_seconds"),
            max_retries=net["max_retries"],
            retry_backoff_initial=net["retry_backoff_initial"] / 1000.0,
            retry_backoff_max=net["retry_backoff_max"] / 1000.0,
        ),
        concurrency=limits["concurrency"],
        buffer_size=limits["buffer_size"],
        keyless=keyless,
        allowed_requests=custom.get("allowed_requests") if custom else None,
        request_path_overrides=custom["request_path_overrides"] if custom else {},
    )


def _from_environment(environ: Mapping[str, str]) -> GatewayConfig:
    """No config.json: one provider for every API key found in the usual variables."""
    providers: dict[str, Any] = {}
    for provider, variables in ENV_KEYS.items():
        value = next((environ[v] for v in variables if environ.get(v)), None)
        if not value:
            continue
        key: dict[str, Any] = {"name": f"{provider}-env", "value": value, "models": ["*"]}
        if provider == "azure":
            endpoint = environ.get("AZURE_OPENAI_ENDPOINT") or environ.get("AZURE_ENDPOINT")
            if not endpoint:
                continue
            key["azure_key_config"] = {
                "endpoint": endpoint,
                "api_version": environ.get("OPENAI_API_VERSION") or environ.get("AZURE_API_VERSION") or AZURE_DEFAULT_API_VERSION,
            }
        providers[provider] = {"keys": [key]}
    return parse_config({"providers": providers}, source="environment", environ=environ)


def _resolve_env(value: Any, environ: Mapping[str, str], where: str) -> Any:
    """Replace every "env.NAME" string with the value of environment variable NAME."""
    if isinstance(value, str) and value.startswith("env."):
        name = value[4:]
        if name not in environ:
            raise ConfigError(f"{where or '<root>'}: environment variable {name} is not set")
        return environ[name]
    if isinstance(value, dict):
        return {k: _resolve_env(v, environ, f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_env(v, environ, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _first_message(messages: Any, path: str = "") -> tuple[str, str]:
    """Walk marshmallow's nested error dict down to the first problem and its dotted key."""
    if isinstance(messages, dict):
        name, inner = next(iter(messages.items()))
        if name == "_schema":
            return _first_message(inner, path)
        if isinstance(name, int):
            return _first_message(inner, f"{path}[{name}]")
        if name == "value" and isinstance(inner, dict):  # marshmallow's Dict(values=...) wrapper
            return _first_message(inner, path)
        return _first_message(inner, f"{path}.{name}" if path else str(name))
    if isinstance(messages, list):
        first = messages[0]
        if isinstance(first, (dict, list)):
            return _first_message(first, path)
        return path or "<root>", str(first).rstrip(".")
    return path or "<root>", str(messages)
