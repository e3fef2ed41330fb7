"""Retries and fallback of model calls (SPEC §7.3): what the turn loop calls instead of a provider.

A transient failure (a connection error, a timeout, a stalled or cut stream, malformed SSE, HTTP
408/409/425/429/5xx/529) is retried per the model's `retry`, a `Retry-After` winning. After the
retries the turn moves to the next model of the first model's `fallback` and stays there; the
chat is told once per turn. A failed model cools down for 60 s (doubling, at most 600 s, reset by
a success), and a turn that starts while its model cools starts on its first fallback. A
context-length error never falls back: it is compaction's business. Attachments are shaped for
each model it calls (SPEC §8.2), and uploaded to its Files API inside the retries.
"""

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Protocol, cast

import httpx
import msgspec

from services.session import media as attachments
from services.session import usage
from services.session.providers import file_uploads, provider_for
from services.session.providers.file_uploads import FileIds
from services.session.providers.protocol import (
    AuthError,
    ContextLengthError,
    ModelReply,
    ModelRequest,
    OnEvent,
    ProviderError,
    Retrying,
)
from shared.config import Config
from shared.model_config import ModelConfig, ReasoningConfig, ReasoningEffort, RetryConfig

COOLDOWN_S = 60.0
COOLDOWN_MAX_S = 600.0
BACKOFF_CAP_S = 30.0
RETRY_AFTER_CAP_S = 60.0
JITTER = 0.2
log = logging.getLogger(__name__)


class Cooldowns:
    """Models that failed lately, per session process."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._length: dict[str, float] = {}

    def is_cooling(self, name: str) -> bool:
        return self._until.get(name, 0.0) > asyncio.get_running_loop().time()

    def failed(self, name: str) -> None:
        length = min(COOLDOWN_MAX_S, 2 * self._length.get(name, COOLDOWN_S / 2))
        self._length[name] = length
        self._until[name] = asyncio.get_running_loop().time() + length

    def succeeded(self, name: str) -> None:
        self._until.pop(name, None)
        self._length.pop(name, None)


def delay_s(retry: RetryConfig, attempt: int, error: ProviderError) -> float:
    """The wait before retry `attempt` (1, 2, …)."""
    if error.retry_after is not None:
        return min(RETRY_AFTER_CAP_S, error.retry_after)
    if retry.mode == "random":
        return random.uniform(0.0, 2 * retry.backoff_s)
    base: float = min(BACKOFF_CAP_S, retry.backoff_s * 2.0 ** (attempt - 1))
    return base * random.uniform(1 - JITTER, 1 + JITTER)


class Answered(msgspec.Struct, frozen=True, kw_only=True):
    reply: ModelReply
    model_name: str  # the model that answered (a fallback, maybe)
    duration_s: float = 0.0  # from asking to the answer, retries and fallbacks included


Tell = Callable[[str], Awaitable[None]]


class MediaSource(attachments.MediaReader, file_uploads.FileIds, Protocol):
    """Reads attachments and remembers Files API ids (`media_store.MediaStore`)."""


class ModelChoice:
    """The models one turn may call: its own, then its `fallback` list."""

    def __init__(
        self, config: Config, http: httpx.AsyncClient, cooldowns: Cooldowns, name: str, tell: Tell
    ) -> None:
        self.config = config
        self.http = http
        self.cooldowns = cooldowns
        self.chain = [name, *config.models[name].fallback]
        warm = [i for i, model in enumerate(self.chain) if not cooldowns.is_cooling(model)]
        self.index = warm[0] if warm else 0  # all cooling: try them anyway
        self.tell = tell
        self.has_told = self.index > 0  # SPEC: no second message for a cooling start
        self.effort = ""  # the conversation's `/reasoning`; "" = each model's own

    def model(self, name: str) -> ModelConfig:
        """A model's config with the conversation's reasoning effort, when it takes one
        (SPEC §7.2: `/reasoning` overrides the effort, and with it any fixed budget)."""
        model = self.config.models[name]
        if not self.effort or not model.can("reasoning"):
            return model
        wanted = model.reasoning or ReasoningConfig()
        effort = cast(ReasoningEffort, self.effort)
        changed = msgspec.structs.replace(wanted, effort=effort, max_tokens=None)
        return msgspec.structs.replace(model, reasoning=changed)

    @property
    def current(self) -> str:
        return self.chain[self.index]

    async def complete(
        self, request: ModelRequest, on_event: OnEvent, media: MediaSource | None = None
    ) -> Answered:
        """Call the current model; `media` reads the history's attachments, shaped per model
        (SPEC §8.2: a fallback may take less than the model before it)."""
        asked_at = asyncio.get_running_loop().time()
        while True:
            name = self.current
            model = self.model(name)
            try:
                shaped = await attachments.for_model(model, request, media)
                reply = await self._with_retries(model, shaped, on_event, media)
            except ContextLengthError:
                raise
            except ProviderError as exc:
                exc.model_name = name
                self.cooldowns.failed(name)
                if isinstance(exc, AuthError):
                    log.error(
                        "model %s: credentials refused (HTTP %s); check [models.%s]",
                        name,
                        exc.status,
                        name,
                    )
                if self.index + 1 >= len(self.chain):
                    raise
                await self._fall_back(name, exc)
                on_event(Retrying(attempt=0))  # the fallback's text replaces what streamed
                continue
            self.cooldowns.succeeded(name)
            prices = self.config.models[name].prices
            reply = msgspec.structs.replace(reply, usage=usage.priced(reply.usage, prices))
            took_s = asyncio.get_running_loop().time() - asked_at
            return Answered(reply=reply, model_name=name, duration_s=round(took_s, 3))

    async def _fall_back(self, name: str, error: ProviderError) -> None:
        self.index += 1
        log.warning("model %s failed (%s); falling back to %s", name, error.reason, self.current)
        if not self.has_told:
            self.has_told = True
            await self.tell(
                f"⚠️ {name} is unavailable ({error.reason}); using {self.current} for this turn."
            )

    async def _with_retries(
        self, model: ModelConfig, request: ModelRequest, on_event: OnEvent, ids: FileIds | None
    ) -> ModelReply:
        provider = provider_for(model.provider)
        tries = 0
        while True:
            tries += 1
            try:
                sent = await file_uploads.by_id(self.http, model, request, ids)
                return await provider.complete(self.http, model, sent, on_event)
            except ProviderError as exc:
                retries_left = model.retry.mode != "none" and tries <= model.retry.attempts
                if not exc.is_transient or not retries_left:
                    raise exc.after(tries) from None
                wait_s = delay_s(model.retry, tries, exc)
                log.info("model call failed (%s); retry %d in %.1f s", exc.reason, tries, wait_s)
                on_event(Retrying(attempt=tries))  # text already shown is replaced
                await asyncio.sleep(wait_s)
