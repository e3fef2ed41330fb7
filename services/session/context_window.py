"""Keeping a session inside its model's window (SPEC §4.1, §4.2, §4.4): the estimate before every
model call, compaction when it reaches the limit or the provider says the request is too long,
and the calibration of the estimate by what providers report.
"""

import logging
from collections.abc import Callable

import httpx
import msgspec

from services.session import compaction, history_repair, tokens
from services.session.compaction import CompactionFailedError, Job
from services.session.history_store import History
from services.session.providers.protocol import ModelReply, ModelRequest
from shared.config import Config
from shared.messages.history import AssistantMessage, Compacted
from shared.model_config import ModelConfig

log = logging.getLogger(__name__)


def _nothing() -> None:
    return None


class Window:
    """One session's estimate and compactions; the calibration per model survives in its head."""

    def __init__(
        self,
        history: History,
        http: httpx.AsyncClient,
        config: Config,
        calibrations: dict[str, tokens.Calibration],
        on_failure: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.history = history
        self.http = http
        self.config = config
        self.calibrations = calibrations
        self.on_failure = on_failure  # the last compaction's failure ("" once one succeeds)
        self.on_compacting: Callable[[], None] = _nothing  # a compaction starts (the panel)

    def estimate(self, request: ModelRequest, model_name: str) -> tokens.Estimate:
        calibration = self.calibrations.get(model_name, tokens.Calibration())
        return estimate(self.history, request, self.config.models[model_name], calibration)

    def learn(self, model_name: str, request: ModelRequest, reply: ModelReply) -> None:
        """Calibrate the estimate by the input the provider counted for `request`."""
        used = reply.usage
        reported = used.input + used.cache_read + used.cache_write
        if reported <= 0:
            return
        estimated = self.unscaled(request, model_name)
        calibration = self.calibrations.get(model_name, tokens.Calibration())
        self.calibrations[model_name] = calibration.updated(reported, estimated)

    def unscaled(self, request: ModelRequest, model_name: str) -> int:
        """`tokens.request_tokens` of `request`, its held events counted once each (they are
        only ever appended to; a compaction starts the count again)."""
        model = self.config.models[model_name]
        events = self.history.events
        done, total = self.history.counted.get(model_name, (0, 0))
        if done > len(events):
            done, total = 0, 0
        total += sum(tokens.event_tokens(event, model, request.media) for event in events[done:])
        self.history.counted[model_name] = (len(events), total)
        per = model.chars_per_token
        fixed = tokens.text_tokens(request.system_prompt, per)
        fixed += sum(tokens.tool_tokens(tool) for tool in request.tools)
        if request.notice is not None:
            fixed += tokens.PER_MESSAGE + tokens.text_tokens(request.notice, per)
        return fixed + total

    async def fit(self, job: Job, request: ModelRequest) -> bool:
        """Compact first if the request reaches the limit (up to 3 passes, the tail halving);
        True if it compacted. A failed summary lets the call go on uncompacted when the request
        still fits the window, else raises CompactionFailedError."""
        model = self.config.models[job.model_name]
        limit = compaction.limit(model, self.config)
        if self.estimate(request, job.model_name).tokens < limit:
            return False
        compacted = False
        self.on_compacting()
        for passes in range(1, compaction.MAX_PASSES + 1):
            try:
                done = await compaction.compact(self.history, self.http, job, passes)
            except CompactionFailedError as exc:
                self.on_failure(exc.reason)
                fits = self.estimate(rebuilt(request, self.history), job.model_name)
                if fits.tokens < model.context_window - model.max_output_tokens:
                    log.warning("compaction failed (%s); going on uncompacted", exc.reason)
                    return compacted
                raise
            if done is None:
                break
            compacted = True
            self.on_failure("")
            if self.estimate(rebuilt(request, self.history), job.model_name).tokens < limit:
                break
        return compacted

    async def shrink(self, job: Job, passes: int) -> bool:
        """The provider said the request is too long: compact with the tail halved `passes - 1`
        times; False when nothing was left to compact."""
        self.on_compacting()
        done = await compaction.compact(self.history, self.http, job, passes)
        return done is not None

    def last(self) -> Compacted | None:
        first = self.history.events[0] if self.history.events else None
        return first if isinstance(first, Compacted) else None


def estimate(
    history: History, request: ModelRequest, model: ModelConfig, calibration: tokens.Calibration
) -> tokens.Estimate:
    """SPEC §4.1's estimate of `request`, not anchored on a call of a compaction's tail (its count
    still holds what the compaction folded in)."""
    if _is_anchor_stale(history):
        whole = tokens.request_tokens(request, model)
        return tokens.Estimate(tokens=round(whole * calibration.ratio), is_reported=False)
    return tokens.estimate(request, model, calibration)


def _is_anchor_stale(history: History) -> bool:
    """Is the last model call one of the compaction's tail (stored before it)?"""
    events = history.events
    if not events or not isinstance(events[0], Compacted):
        return False
    calls = [i for i, e in enumerate(events) if isinstance(e, AssistantMessage)]
    return bool(calls) and history.seq_of(calls[-1]) < history.seq_of(0)


def held_estimate(
    history: History, config: Config, calibrations: dict[str, tokens.Calibration]
) -> tuple[str, tokens.Estimate]:
    """The estimate of the session's next request on the model it used last (`/status`); the
    system prompt and tools are not known here, so they count as nothing."""
    calls = [e.model for e in history.events if isinstance(e, AssistantMessage)]
    name = calls[-1] if calls and calls[-1] in config.models else config.default_model
    request = ModelRequest(system_prompt="", history=history.events, tools=[])
    calibration = calibrations.get(name, tokens.Calibration())
    return name, estimate(history, request, config.models[name], calibration)


def rebuilt(request: ModelRequest, history: History) -> ModelRequest:
    """The request with the history as it now is (after a compaction)."""
    return msgspec.structs.replace(request, history=history_repair.closed(history.events))
