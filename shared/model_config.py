"""`[models.<name>]` (SPEC §7.1): one upstream model, how to reach it and what it can take."""

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from shared.config_table import ConfigTable

MODEL_NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
Provider = Literal["openai_chat", "openai_responses", "anthropic", "codex"]
Capability = Literal[
    "tools", "image_in", "pdf_in", "audio_in", "file_in", "image_out", "web_search", "reasoning"
]
MediaType = Annotated[str, Meta(pattern=r"^[a-z0-9.+-]+/[a-z0-9.+-]+$")]
Price = Annotated[float, Meta(ge=0)]
DEFAULT_BASE_URLS = {
    "openai_chat": "https://openrouter.ai/api/v1",
    "openai_responses": "https://openrouter.ai/api/v1",
    "anthropic": "https://api.anthropic.com/v1",
    "codex": "https://chatgpt.com/backend-api/codex",
}
DEFAULT_AUTH_FILE = "~/.codex/auth.json"


class RetryConfig(ConfigTable, frozen=True, kw_only=True):
    """SPEC §7.3: how a transient failure of a model call is retried."""

    mode: Literal["exponential", "random", "none"] = "exponential"
    attempts: Annotated[int, Meta(ge=0, le=20)] = 3  # retries after the first try
    backoff_s: Annotated[float, Meta(ge=0, le=60)] = 1.0


ReasoningEffort = Literal["minimal", "low", "medium", "high", "xhigh"]


class ReasoningConfig(ConfigTable, frozen=True, kw_only=True):
    effort: ReasoningEffort | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    max_tokens: Annotated[int, Meta(gt=0)] | None = None


class MediaConfig(ConfigTable, frozen=True, kw_only=True):
    """SPEC §8.2: how attachments travel and which kinds the model takes inline."""

    transport: Literal["inline", "files_api"] = "inline"
    max_image_px: Annotated[int, Meta(ge=64, le=16_384)] = 2048
    image_types: list[MediaType] = msgspec.field(
        default_factory=lambda: ["image/png", "image/jpeg", "image/webp", "image/gif"]
    )
    audio_types: list[MediaType] = msgspec.field(
        default_factory=lambda: ["audio/wav", "audio/mpeg"]
    )


class PricesConfig(ConfigTable, frozen=True, kw_only=True):
    """USD per million tokens (SPEC §7.5); cached input and cache writes default to `input`."""

    input: Price
    output: Price
    cached_input: Price | None = None
    cache_write: Price | None = None


class ModelConfig(ConfigTable, frozen=True, kw_only=True):
    provider: Provider
    model: Annotated[str, Meta(min_length=1)]
    base_url: str = ""  # empty: the provider's (DEFAULT_BASE_URLS)
    api_key: str | None = None
    auth_file: Annotated[str, Meta(min_length=1)] = DEFAULT_AUTH_FILE  # codex only
    description: str = ""
    selectable: bool = True
    context_window: Annotated[int, Meta(gt=0)] = 128_000
    max_output_tokens: Annotated[int, Meta(gt=0)] = 8_192
    timeout_s: Annotated[float, Meta(gt=0)] = 300.0
    retry: RetryConfig = RetryConfig()
    capabilities: list[Capability] = msgspec.field(default_factory=lambda: ["tools"])
    media: MediaConfig = MediaConfig()
    reasoning: ReasoningConfig | None = None
    service_tier: Literal["default", "priority", "flex", "fast"] = "default"
    prices: PricesConfig | None = None
    fallback: list[Annotated[str, Meta(pattern=MODEL_NAME_PATTERN)]] = msgspec.field(
        default_factory=list
    )
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    cache_ttl: Literal[0, 300, 3600] | None = None  # None: 300 for Anthropic models, else 0
    chars_per_token: Annotated[float, Meta(gt=0, le=100)] = 4.0

    def __post_init__(self) -> None:
        if self.service_tier == "fast":  # SPEC §7.1: another name for priority
            msgspec.structs.force_setattr(self, "service_tier", "priority")
        if not self.base_url:
            msgspec.structs.force_setattr(self, "base_url", DEFAULT_BASE_URLS[self.provider])
        if self.cache_ttl is None:
            is_anthropic = self.provider == "anthropic" or self.model.startswith("anthropic/")
            msgspec.structs.force_setattr(self, "cache_ttl", 300 if is_anthropic else 0)

    def can(self, capability: Capability) -> bool:
        return capability in self.capabilities
