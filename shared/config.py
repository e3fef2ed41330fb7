"""`stellaclaw.toml`: decoded once into frozen Structs that forbid unknown keys.

Secrets are `${VAR}` references resolved from the environment (`$${` is a literal `${`). A
service resolves only the references of the sections it uses (DESIGN §11, `shared/variables.py`);
the others stay as written and are only checked for syntax. Every problem is a ConfigError whose
text is the whole line for stderr: `config: <key>: <what is wrong>`. This module is the one reader
of the environment.
"""

import math
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

import msgspec
from msgspec import Meta

from shared import variables
from shared.config_table import ConfigTable
from shared.errors import ConfigError
from shared.model_config import (
    MODEL_NAME_PATTERN,
    ModelConfig,
)
from shared.sandbox import SandboxSetting
from shared.tools_config import (
    REMOTE_NAME_PATTERN,
    ImagesConfig,
    RemoteConfig,
    SearchConfig,
    ToolsConfig,
)

CURRENT_VERSION = 1
DEFAULT_WORKDIR = "~/.local/share/stellaclaw"
SECRET_KEYS = frozenset({"bot_token", "api_key", "password", "token"})
# Who may hold credentials under [bus.services.<name>]: the services, the launcher, the clients.
BusRole = Literal[
    "conversation",
    "session",
    "tools",
    "delivery",
    "ingress_telegram",
    "admin",  # the launcher: creates and updates the bus layout
    "chat",
    "observer",
]
BUS_ROLES: tuple[str, ...] = get_args(BusRole)
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_T = TypeVar("_T")


class TelegramConfig(ConfigTable, frozen=True, kw_only=True):
    bot_token: Annotated[str, Meta(min_length=1)]
    api_base: str = "https://api.telegram.org"
    allowed_user_ids: list[int] = msgspec.field(default_factory=list)
    admin_user_ids: list[int] = msgspec.field(default_factory=list)
    group_trigger: Literal["mention", "all"] = "mention"  # SPEC §12.3
    ack_reaction: str = "👀"  # set on each accepted message; "" = off (SPEC §12.5)
    stream: Literal["draft", "edit", "off"] = "draft"  # private chats' answers (SPEC §12.7)
    panel_on_done: Literal["summary", "delete"] = "summary"  # an answered turn's panel (§12.6)


class SandboxConfig(ConfigTable, frozen=True, kw_only=True):
    """How local commands are confined (SPEC §6.1-§6.5); the mode is per conversation."""

    mode: SandboxSetting = "auto"
    network: bool = False  # bubblewrap only
    software_dir: str | None = None
    software_mount_path: Annotated[str, Meta(pattern=r"^/.")] = "/opt"
    bwrap_path: Annotated[str, Meta(min_length=1)] = "bwrap"
    tmp_size_mb: Annotated[int, Meta(ge=1, le=1_048_576)] = 512
    memory_limit_mb: Annotated[int, Meta(ge=64, le=16_777_216)] = 4096
    file_size_limit_mb: Annotated[int, Meta(ge=1, le=16_777_216)] = 2048
    pids_limit: Annotated[int, Meta(ge=8, le=4_194_304)] = 256
    env: dict[Annotated[str, Meta(pattern=ENV_NAME_PATTERN)], str] = msgspec.field(
        default_factory=dict
    )


class BusCredentials(ConfigTable, frozen=True, kw_only=True):
    """How to log in to an external NATS server (use `${VAR}` for the secret parts)."""

    user: str | None = None
    password: str | None = None
    token: str | None = None
    creds_file: str | None = None  # a NATS `.creds` file (JWT + NKey seed)


class BusConfig(ConfigTable, frozen=True, kw_only=True):
    url: str | None = None  # unset: `stellaclaw up` starts an embedded nats-server
    in_partitions: Annotated[int, Meta(ge=1, le=1024)] = 16
    listen: Annotated[str, Meta(pattern=r"^[^\s:]+:\d{1,5}$")] = "127.0.0.1:0"
    max_deliver: Annotated[int, Meta(ge=1, le=1000)] = 10
    hist_max_age_days: Annotated[int, Meta(ge=0)] = 0
    files_ttl_days: Annotated[int, Meta(ge=1)] = 30
    replicas: Literal[1, 3] = 1  # stream and bucket replicas (3 on a 3-node cluster)
    user: str | None = None
    password: str | None = None
    token: str | None = None
    creds_file: str | None = None  # a NATS `.creds` file (JWT + NKey seed)
    services: dict[str, BusCredentials] = msgspec.field(default_factory=dict)  # by BusRole

    def credentials(self, role: str) -> BusCredentials:
        """The role's own `[bus.services.<role>]`, else the shared `bus.user`/`password`/`token`/
        `creds_file`."""
        shared = BusCredentials(
            user=self.user, password=self.password, token=self.token, creds_file=self.creds_file
        )
        return self.services.get(role, shared)


class AgentConfig(ConfigTable, frozen=True, kw_only=True):
    """How much a turn may do (SPEC §3.3, §3.4)."""

    max_round_trips: Annotated[int, Meta(ge=1, le=10_000)] = 120
    max_parallel_tools: Annotated[int, Meta(ge=1, le=64)] = 8


class CompactionConfig(ConfigTable, frozen=True, kw_only=True):
    """When and how a session's history is compacted (SPEC §4)."""

    trigger_ratio: Annotated[float, Meta(gt=0, le=1)] = 0.9
    retain_ratio: Annotated[float, Meta(ge=0, lt=1)] = 0.18
    summary_max_tokens: Annotated[int, Meta(ge=256, le=65_536)] = 2_048
    model: str | None = None  # a `[models.<name>]`; unset: the session's model
    idle: bool = True
    idle_after_s: Annotated[float, Meta(gt=0)] | None = None  # unset: cache_ttl - 30, else 1,800
    idle_min_ratio: Annotated[float, Meta(ge=0, le=1)] = 0.5


def compaction_limit(model: ModelConfig, compaction: CompactionConfig) -> int:
    """SPEC §4.2: the estimate at which a model call compacts first."""
    window = model.context_window
    return min(math.floor(window * compaction.trigger_ratio), window - model.max_output_tokens)


class MetricsConfig(ConfigTable, frozen=True, kw_only=True):
    """The Prometheus endpoint `stellaclaw up` (or `stellaclaw metrics`) serves; "" = off."""

    bind: Annotated[str, Meta(pattern=r"^$|^[^\s:]+:\d{1,5}$")] = "127.0.0.1:9464"


class LogConfig(ConfigTable, frozen=True, kw_only=True):
    level: Literal["debug", "info", "warning", "error"] = "info"
    # SPEC §7.6: model-call bodies, redacted, to <workdir>/logs/api/ (never to the service log)
    api_bodies: Literal["off", "preview", "full"] = "off"


class Config(ConfigTable, frozen=True, kw_only=True):
    """The whole file; each service takes its part."""

    version: Annotated[int, Meta(ge=1)] = CURRENT_VERSION
    default_model: str
    models: dict[Annotated[str, Meta(pattern=MODEL_NAME_PATTERN)], ModelConfig]
    workdir: str = DEFAULT_WORKDIR
    shutdown_grace_s: Annotated[float, Meta(ge=0)] = 30.0
    telegram: TelegramConfig | None = None
    agent: AgentConfig = AgentConfig()
    compaction: CompactionConfig = CompactionConfig()
    sandbox: SandboxConfig = SandboxConfig()
    bus: BusConfig = BusConfig()
    logging: LogConfig = LogConfig()
    metrics: MetricsConfig = MetricsConfig()
    tools: ToolsConfig = ToolsConfig()
    search: SearchConfig | None = None
    images: ImagesConfig | None = None
    remotes: dict[Annotated[str, Meta(pattern=REMOTE_NAME_PATTERN)], RemoteConfig] = msgspec.field(
        default_factory=dict
    )


def load(path: Path, service: str | None = None) -> Config:
    """Read, expand and decode the config file; raises ConfigError with the one-line reason.

    With a `service`, only the `${VAR}`s of the sections it uses are resolved (DESIGN §11).
    """
    environment = dict(os.environ)  # noqa: TID251 -- this module is the env reader
    return parse(_read(path), environment, service)


def read_raw(path: Path) -> dict[str, Any]:
    """The file as TOML tables, nothing expanded (for the launcher's per-child environments)."""
    return _read(path)


def environment() -> dict[str, str]:
    """This process's environment, for the launcher to pass on in part (DESIGN §11)."""
    return dict(os.environ)  # noqa: TID251 -- this module is the env reader


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config: cannot read {str(path)!r}: {exc.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: {path.name} is not valid TOML: {exc}") from None
    return raw


class BusLocation(msgspec.Struct, frozen=True, kw_only=True):
    """What a bus client (`stellaclaw chat`) needs from the file; it ignores every other key."""

    workdir: str = DEFAULT_WORKDIR
    bus: BusConfig = BusConfig()


def locate(path: Path, role: str = "chat") -> BusLocation:
    """Read only `workdir` and `[bus]` (with `role`'s own credentials), so a client needs none of
    the services' secrets."""
    raw = _read(path)
    wanted: dict[str, object] = {key: raw[key] for key in ("workdir", "bus") if key in raw}
    env = dict(os.environ)  # noqa: TID251 -- the one env reader
    expanded = variables.expand(wanted, env, role)
    located = _convert(expanded, BusLocation, "")
    _check_roles(located.bus)
    return located


def parse(raw: dict[str, Any], env: dict[str, str], service: str | None = None) -> Config:
    """Expand `${VAR}`s from `env` (all, or a service's) and decode; a pure function."""
    expanded = variables.expand(raw, env, service)
    models = expanded.get("models")
    if isinstance(models, dict):  # decoded one by one, so an error names the model
        expanded["models"] = {name: _model(name, table) for name, table in models.items()}
    remotes = expanded.get("remotes")
    if isinstance(remotes, dict):  # the same for remotes
        expanded["remotes"] = {name: _remote(name, table) for name, table in remotes.items()}
    config = _convert(expanded, Config, "")
    _cross_check(config)
    if service in (None, "tools"):  # the one service that mounts it
        _check_software_dir(config.sandbox)
    return config


def _model(name: str, table: object) -> ModelConfig:
    if not re.match(MODEL_NAME_PATTERN, name):
        raise ConfigError(f"config: models.{name}: a model name matches [A-Za-z0-9_.-]+")
    return _convert(table, ModelConfig, f"models.{name}")


def _remote(name: str, table: object) -> RemoteConfig:
    if not re.fullmatch(REMOTE_NAME_PATTERN.strip("^$"), name):
        raise ConfigError(f"config: remotes.{name}: a remote name matches [A-Za-z0-9_-]+")
    return _convert(table, RemoteConfig, f"remotes.{name}")


def _convert(node: object, kind: type[_T], prefix: str) -> _T:
    try:
        return msgspec.convert(node, kind)
    except msgspec.ValidationError as exc:
        raise ConfigError(_validation_line(str(exc), kind, prefix)) from None


def secret_paths(raw: dict[str, Any]) -> set[tuple[str, ...]]:
    """Keys whose value is secret: the known secret keys and every `${VAR}` reference."""
    found: set[tuple[str, ...]] = set()

    def walk(node: object, key: tuple[str, ...]) -> None:
        if isinstance(node, dict):
            for name, value in node.items():
                walk(value, (*key, str(name)))
        elif isinstance(node, str) and (key[-1] in SECRET_KEYS or variables.names_in(node)):
            found.add(key)

    walk(raw, ())
    return found


def secret_values(config: Config) -> list[str]:
    """The secret values this process resolved: scrubbed from every log line and output."""
    found = [model.api_key for model in config.models.values() if model.api_key]
    if config.telegram:
        found.append(config.telegram.bot_token)
    found += [value for value in (config.bus.password, config.bus.token) if value]
    found += [table.api_key for table in (config.search, config.images) if table and table.api_key]
    for credentials in config.bus.services.values():
        found += [value for value in (credentials.password, credentials.token) if value]
    return [value for value in found if not variables.names_in(value)]


_AT = re.compile(r"^(?P<what>.*?)(?: - at (?P<is_key>`key` in )?`\$(?P<path>[^`]*)`)?$", re.DOTALL)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>[^`]+)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")
_ENUM = re.compile(r"^Invalid enum value (?P<value>.*)$")


def _validation_line(message: str, kind: type, prefix: str) -> str:
    """msgspec's `Expected int, got str - at $.a.b` as SPEC §14.1's `config: a.b: expected ...`."""
    match = _AT.match(message)
    what, path = (match["what"], match["path"] or "") if match else (message, "")
    key = _join(prefix, re.sub(r"\[(\d+)\]", r".\1", path).strip("."))
    if found := _UNKNOWN.match(what):
        key, what = _join(key, found["field"]), "unknown key"
    elif found := _MISSING.match(what):
        key, what = _join(key, found["field"]), "missing required key"
    elif found := _ENUM.match(what):
        choices = ", ".join(_choices(kind, key.removeprefix(prefix).strip(".").split(".")))
        what = f"expected one of {choices}, got {found['value']}"
    elif what.startswith("Expected"):
        what = "expected" + what[len("Expected") :]
    if match and match["is_key"]:
        what = f"a key: {what}"
    return f"config: {key or '<top level>'}: {what}"


def _choices(kind: type, path: list[str]) -> list[str]:
    """The allowed values of the Literal field at `path` below `kind`."""
    info: msgspec.inspect.Type = msgspec.inspect.type_info(kind)
    for name in path:
        while isinstance(info, msgspec.inspect.UnionType):  # `X | None`: follow the table
            info = next(t for t in info.types if not isinstance(t, msgspec.inspect.NoneType))
        if isinstance(info, msgspec.inspect.ListType) and name.isdigit():  # `key.3`: an item
            info = info.item_type
        elif isinstance(info, msgspec.inspect.StructType):
            info = next((f.type for f in info.fields if f.name == name), msgspec.inspect.AnyType())
        else:
            return []
    while isinstance(info, msgspec.inspect.UnionType):  # `Literal[...] | None`
        info = next(t for t in info.types if not isinstance(t, msgspec.inspect.NoneType))
    return [str(v) for v in info.values] if isinstance(info, msgspec.inspect.LiteralType) else []


def _join(key: str, field: str) -> str:
    return f"{key}.{field}" if key and field else key or field


def _check_roles(bus: BusConfig) -> None:
    for role in bus.services:
        if role not in BUS_ROLES:
            raise ConfigError(
                f"config: bus.services.{role}: expected one of {', '.join(BUS_ROLES)}, got {role!r}"
            )


def _cross_check(config: Config) -> None:
    _check_roles(config.bus)
    if config.version > CURRENT_VERSION:
        raise ConfigError(
            f"config: version: config version {config.version} is newer than this "
            f"Stellaclaw supports ({CURRENT_VERSION})"
        )
    for name, model in config.models.items():
        if model.provider == "anthropic" and not model.api_key:
            raise ConfigError(f"config: models.{name}.api_key: required for provider anthropic")
        unknown = [other for other in model.fallback if other not in config.models]
        if unknown or name in model.fallback:
            what = f"{unknown[0]!r} is not a configured model" if unknown else "names itself"
            raise ConfigError(f"config: models.{name}.fallback: {what}")
    summarizer = config.compaction.model
    if summarizer is not None and summarizer not in config.models:
        raise ConfigError(f"config: compaction.model: {summarizer!r} is not a configured model")
    if config.default_model not in config.models:
        known = ", ".join(sorted(config.models)) or "none"
        raise ConfigError(
            f"config: default_model: {config.default_model!r} is not a configured model "
            f"(configured: {known})"
        )


def _check_software_dir(sandbox: SandboxConfig) -> None:
    if sandbox.software_dir is None:
        return
    path = Path(sandbox.software_dir).expanduser()
    if not path.is_absolute() or not path.is_dir():
        raise ConfigError(
            f"config: sandbox.software_dir: {sandbox.software_dir!r} is not an existing directory "
            "(an absolute path)"
        )
