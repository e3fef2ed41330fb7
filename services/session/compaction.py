"""Compaction (SPEC §4.2-§4.5): old history replaced by a model-written summary plus a verbatim
recent tail, recorded as one `Compacted` event in SC_HIST, where every rebuild starts.

The tail is cut at a message boundary and never between a tool call and its results; its budget
halves on each further pass (at least 512 tokens). The summary call uses `compaction.model` (else
the session's model) without tools, and is retried once; an empty summary is a failure, and a
failure never touches history. One compaction is one appended event, so a crash either left it
whole (the rebuild starts there) or left nothing (the check before the next call redoes it).
"""

import logging
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import httpx
import msgspec

from services.session import history_store, inbox, prompt, summary_request, tokens
from services.session import usage as usages
from services.session.history_store import History
from services.session.providers import provider_for
from services.session.providers.protocol import MediaPart, ModelRequest, ProviderError, StreamEvent
from shared.config import Config, compaction_limit
from shared.ids import TurnId
from shared.messages.contract import Sender
from shared.messages.history import (
    AssistantMessage,
    Compacted,
    HistoryEvent,
    Notice,
    ToolResults,
    TurnFinished,
    TurnStarted,
    UserMessage,
)
from shared.model_config import ModelConfig

MIN_TAIL_TOKENS = 1_024
MIN_PASS_TOKENS = 512
MAX_PASSES = 3
SUMMARIZER = Sender(display_name="Stellaclaw")
log = logging.getLogger(__name__)


class CompactionFailedError(Exception):
    """The summary call failed twice (or came back empty); history is untouched."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """What one compaction works with."""

    config: Config
    model_name: str  # the session's model: its window, and the summarizer unless configured
    system_prompt: str
    media: Mapping[str, MediaPart] = msgspec.field(default_factory=dict)
    reason: str = "threshold"  # `Compacted.reason`
    turn_id: TurnId | None = None  # the turn it runs in
    command_seq: int = 0  # `/compact`: its input seq, consumed by the compaction


def limit(model: ModelConfig, config: Config) -> int:
    """SPEC §4.2: the estimate at which a call compacts first."""
    return compaction_limit(model, config.compaction)


def tail_budget(model: ModelConfig, config: Config) -> int:
    return max(MIN_TAIL_TOKENS, math.floor(model.context_window * config.compaction.retain_ratio))


def tail_start(
    events: Sequence[HistoryEvent], model: ModelConfig, budget: int, media: Mapping[str, MediaPart]
) -> int:
    """The index the verbatim tail starts at: the most recent events worth `budget` tokens, the
    cut moved back to a message boundary that parts no tool call from its results."""
    first = 1 if events and isinstance(events[0], Compacted) else 0
    spent, cut = 0, len(events)
    while cut > first:
        cost = tokens.event_tokens(events[cut - 1], model, media)
        if spent + cost > budget:
            break
        spent, cut = spent + cost, cut - 1
    while first < cut < len(events) and not _is_boundary(events, cut):
        cut -= 1
    return max(cut, first)


def _is_boundary(events: Sequence[HistoryEvent], index: int) -> bool:
    """May the tail start at `events[index]`? Not at tool results (their call would be left
    behind), and not inside a turn's opening (its TurnStarted stays with its user message)."""
    event = events[index]
    if isinstance(event, ToolResults):
        return False
    if isinstance(event, UserMessage | Notice) and isinstance(events[index - 1], TurnStarted):
        return False
    return isinstance(event, UserMessage | Notice | AssistantMessage | TurnStarted | TurnFinished)


async def compact(
    history: History, http: httpx.AsyncClient, job: Job, passes: int = 1
) -> Compacted | None:
    """Compact `history` with the tail budget halved `passes - 1` times; None when nothing lies
    outside the tail. CompactionFailedError when the summary cannot be had."""
    model = job.config.models[job.model_name]
    budget = tail_budget(model, job.config)
    budget = max(MIN_PASS_TOKENS, budget >> (passes - 1))
    events = history.events
    cut = tail_start(events, model, budget, job.media)
    previous = events[0] if events and isinstance(events[0], Compacted) else None
    folded = list(events[1 if previous else 0 : cut])
    if not any(_is_conversation(e) for e in folded):
        return None
    before = tokens.request_tokens(_request(job, events), model)
    summary = await summarize(http, job, folded, previous)
    compacted = Compacted(
        session_id=history.session_id,
        number=(previous.number if previous else 0) + 1,
        summary=summary,
        tail_from_seq=history.seq_of(cut) if cut < len(events) else history.last_seq + 1,
        turns=history_store.turns_started(events[:cut]),
        inputs_through=_inputs_through(events[:cut], job.command_seq),
        usage=usages.of_history(events[:cut]),
        sandbox=prompt.current_sandbox(events[:cut]),
        turn_id=job.turn_id,
        opened=_opened(events[:cut], job.turn_id),
        rounds=history_store.rounds_run(events[:cut], job.turn_id),
        tokens_before=before,
        reason=job.reason,  # type: ignore[arg-type]
        at=datetime.now(UTC),
    )
    after_events = [compacted, *events[cut:]]
    after = tokens.request_tokens(_request(job, after_events), model)
    compacted = msgspec.structs.replace(compacted, tokens_after=after)
    await history.append(compacted)
    log.info(
        "compacted %s (%s): %d events folded, %d -> %d tokens",
        history.session_id,
        job.reason,
        len(folded),
        before,
        after,
    )
    return compacted


def _is_conversation(event: HistoryEvent) -> bool:
    return isinstance(event, UserMessage | AssistantMessage | ToolResults | Notice)


def _request(job: Job, events: Sequence[HistoryEvent]) -> ModelRequest:
    return ModelRequest(system_prompt=job.system_prompt, history=events, tools=[], media=job.media)


async def summarize(
    http: httpx.AsyncClient,
    job: Job,
    folded: Sequence[HistoryEvent],
    previous: Compacted | None,
) -> str:
    """The summary of `folded` (SPEC §4.3); one retry; CompactionFailedError after that."""
    name = job.config.compaction.model or job.model_name
    model = msgspec.structs.replace(
        job.config.models[name], max_output_tokens=job.config.compaction.summary_max_tokens
    )
    text = summary_request.summary_input(
        summary_request.render(folded), previous.summary if previous else None
    )
    request = ModelRequest(
        system_prompt=summary_request.instructions(),
        history=[
            UserMessage(turn_id=job.turn_id or TurnId("compaction"), text=text, sender=SUMMARIZER)
        ],
        tools=[],
    )
    reason = ""
    for attempt in (1, 2):
        try:
            reply = await provider_for(model.provider).complete(http, model, request, _ignored)
        except ProviderError as exc:
            reason = exc.reason
            log.warning("summary call %d failed: %s", attempt, reason)
            continue
        if reply.text.strip():
            return reply.text.strip()
        reason = "the summary came back empty"
        log.warning("summary call %d: %s", attempt, reason)
    raise CompactionFailedError(reason)


def _ignored(event: StreamEvent) -> None:
    """The summary is not shown as it streams."""


def _inputs_through(folded: Sequence[HistoryEvent], command_seq: int) -> int:
    seqs = inbox.consumed(folded) | {history_store.inputs_through(folded), command_seq}
    return max(seqs)


def _opened(folded: Sequence[HistoryEvent], turn_id: TurnId | None) -> TurnStarted | None:
    """The running turn's start, if the fold takes it (a takeover must still find the turn)."""
    for event in folded:
        if isinstance(event, TurnStarted) and event.turn_id == turn_id:
            return event
        if isinstance(event, Compacted) and event.opened and event.opened.turn_id == turn_id:
            return event.opened
    return None
