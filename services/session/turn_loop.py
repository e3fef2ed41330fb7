"""The turn loop (SPEC §3.2 to 3.4): call the model, run the tool batch, repeat until answered."""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from services.session import answers, compaction, history_repair, history_store, tool_batch
from services.session.compaction import Job
from services.session.context_window import Window
from services.session.history_store import History
from services.session.model_calls import Answered, MediaSource, ModelChoice
from services.session.progress import Progress
from services.session.providers.protocol import ContextLengthError, ModelReply, ModelRequest
from services.session.tool_results import Results
from shared.ids import ToolCallId, TurnId
from shared.messages.history import (
    AssistantMessage,
    ToolCall,
    ToolResult,
    ToolResults,
)
from shared.messages.tools import ToolSpec, ToolTraits

EMPTY_NOTICE = "[Empty Response] The previous model response was empty. Continue."
LIMIT_NOTICE = (
    "[Tool Limit Reached] You have used {n} tool rounds in this turn. Do not call tools. "
    "Answer now: what is done, what remains, and what you would do next."
)
LIMIT_FOOTER = "\n\n(Stopped after {n} tool rounds. Send /continue to let me keep going.)"
NOT_RUN = "not run: tool round limit reached"
log = logging.getLogger(__name__)


class EmptyResponseError(Exception):
    """The model answered with neither text nor tool calls, twice."""


class Ending(msgspec.Struct, frozen=True, kw_only=True):
    """How a turn ended: the text for the user and the TurnFinished facts."""

    text: str
    outcome: str = "answered"
    error: str | None = None
    can_continue: bool = False
    reason: str = ""  # one line on why it failed, for the panel (SPEC §3.8's `<reason>`)


class Running(msgspec.Struct, kw_only=True):
    """The turn in progress as others see it: `/status` reads it, `/cancel` sets its flag."""

    turn_id: TurnId
    started_at: float  # loop time
    activity: str = "calling the model"
    cancel: asyncio.Event = msgspec.field(default_factory=asyncio.Event)
    cancel_seq: int = 0  # the SC_IN seq of the /cancel that set the flag
    settles: int = 1  # the user inputs its answer settles (its message, follow-ups taken in)
    fallback: str = ""  # the fallback model the turn moved to (SPEC §7.3), if it did
    waiting: set[ToolCallId] = msgspec.field(default_factory=set)  # interruptible calls running
    progress: Progress | None = None  # what its panel shows, once the turn runs


async def _no_follow_ups() -> None:
    return None


async def _nothing_to_offer(results: list[ToolResult]) -> None:
    return None


@dataclass(frozen=True)
class Turn:
    """Everything one turn works with; the history is the one piece it changes."""

    turn_id: TurnId
    turn_number: int
    models: ModelChoice  # its model, then that model's fallbacks
    system_prompt: Callable[[], str]  # rebuilt after a compaction (SPEC §4.3)
    history: History
    batch: tool_batch.Batch
    results: Results  # the session's tool starts and results
    running: Running
    journal: tool_batch.Journal  # records a group of calls before they are sent
    progress: Progress  # the panel's state and the streamed answer (SPEC §12.6, §12.7)
    fold: Callable[[], Awaitable[None]] = _no_follow_ups  # follow-ups in, at a safe boundary
    # Files the results offer the user go out before the results are stored (SPEC §5.6).
    offer: Callable[[list[ToolResult]], Awaitable[None]] = _nothing_to_offer
    max_round_trips: int = 120
    started: dict[ToolCallId, float] = field(default_factory=dict)  # see tool_batch.Run
    attempt: int = 0
    window: Window | None = None  # compaction (SPEC §4): none, the history only grows

    def job(self, reason: str = "threshold") -> Job:
        return Job(
            config=self.models.config,
            model_name=self.models.current,
            system_prompt=self.system_prompt(),
            reason=reason,
            turn_id=self.turn_id,
        )

    media: MediaSource | None = None  # reads the history's attachments for each model call


async def run(turn: Turn, tools: list[ToolSpec]) -> Ending:
    """Round trips until the model answers without tool calls (or the round limit is reached).
    TurnCancelledError once the user cancels: the batch's results are stored first."""
    round_trips = _rounds_so_far(turn)
    notice: str | None = None
    traits = {spec.name: spec.traits for spec in tools}
    while True:
        if round_trips:  # a safe boundary: the batch's results are stored
            await turn.fold()
        at_limit = round_trips >= turn.max_round_trips
        if at_limit:
            notice = LIMIT_NOTICE.format(n=turn.max_round_trips)
        answered = await _call(turn, [] if at_limit else tools, notice)
        reply = answered.reply
        if not reply.text.strip() and not reply.tool_calls:
            if notice == EMPTY_NOTICE:
                raise EmptyResponseError
            notice = EMPTY_NOTICE
            continue
        notice = None
        calls = _calls(turn, round_trips + 1, reply)
        await turn.history.append(_assistant(turn, answered, calls))
        if not calls:
            return Ending(text=reply.text)
        if at_limit:
            await _append_results(
                turn, [tool_batch.failed(c, NOT_RUN, "limit_reached") for c in calls]
            )
            footer = LIMIT_FOOTER.format(n=turn.max_round_trips)
            return Ending(
                text=reply.text.strip() + footer,
                outcome="failed",
                error="round_limit",
                can_continue=True,
            )
        await run_batch(turn, calls, traits, reply.text)
        round_trips += 1


def _rounds_so_far(turn: Turn) -> int:
    """The batches this turn already ran (a turn resumed after a restart keeps its count, and
    its call ids stay unique, also when a compaction folded some of them in)."""
    return history_store.rounds_run(turn.history.events, turn.turn_id)


async def run_batch(
    turn: Turn, calls: list[ToolCall], traits: Mapping[str, ToolTraits], preamble: str = ""
) -> None:
    """Run the batch and store its results (also when the user cancelled it); `preamble` is
    the text the model wrote with the calls."""
    turn.running.activity = f"running {len(calls)} tool{'s' if len(calls) != 1 else ''}"
    turn.progress.batch_started(calls, preamble)
    how = tool_batch.Run(
        results=turn.results,
        traits=traits,
        cancel=turn.running.cancel,
        journal=turn.journal,
        started=turn.started,
        attempt=turn.attempt,
        waiting=turn.running.waiting,
        settled=turn.progress.call_settled,
    )
    results = await tool_batch.run(turn.batch, calls, how)
    turn.progress.batch_settled(results)
    turn.started.clear()
    await _append_results(turn, results)
    turn.running.activity = "calling the model"
    if turn.running.cancel.is_set():
        raise tool_batch.TurnCancelledError


async def _call(turn: Turn, tools: list[ToolSpec], notice: str | None) -> Answered:
    """One model call, the history compacted first when it reaches the limit, and compacted
    again (the tail halving) while the provider says it is too long (SPEC §4.2, §4.4)."""
    window = turn.window
    request = _request(turn, tools, notice)
    if window is not None and await _compacting(turn, window.fit(turn.job("threshold"), request)):
        request = _request(turn, tools, notice)
    for passes in range(1, compaction.MAX_PASSES + 2):
        turn.progress.model_call()
        call = turn.models.complete(request, turn.progress.on_event, turn.media)
        try:
            answered = await tool_batch.until_cancelled(turn.running.cancel, call)
        except ContextLengthError:
            if window is None or passes > compaction.MAX_PASSES:
                raise
            if not await _compacting(turn, window.shrink(turn.job("context_length"), passes)):
                raise
            request = _request(turn, tools, notice)
            continue
        turn.progress.answered(answered.model_name)
        if window is not None:
            window.learn(answered.model_name, request, answered.reply)
        if answered.model_name != turn.models.chain[0]:
            turn.running.fallback = answered.model_name
        return answered
    raise AssertionError("unreachable: the last pass raises")


async def _compacting(turn: Turn, work: Coroutine[Any, Any, bool]) -> bool:
    """A compaction step, the turn's activity saying so (`/status`). It is not abandoned on
    `/cancel`: an append cut halfway would leave the held history behind the stored one."""
    was = turn.running.activity
    turn.running.activity = "compacting"
    try:
        return await work
    finally:
        turn.running.activity = was


def _request(turn: Turn, tools: list[ToolSpec], notice: str | None) -> ModelRequest:
    return ModelRequest(
        system_prompt=turn.system_prompt(),
        history=history_repair.closed(turn.history.events),
        tools=tools,
        notice=notice,
    )


def _calls(turn: Turn, round_trip: int, reply: ModelReply) -> list[ToolCall]:
    """Our call ids are unique within the session (the provider's may repeat across turns)."""
    return [
        ToolCall(
            call_id=ToolCallId(f"c{turn.turn_number}_{round_trip}_{index}"),
            provider_call_id=requested.provider_call_id,
            name=requested.name,
            arguments=requested.arguments,
        )
        for index, requested in enumerate(reply.tool_calls)
    ]


def _assistant(turn: Turn, answered: Answered, calls: list[ToolCall]) -> AssistantMessage:
    return AssistantMessage(
        turn_id=turn.turn_id,
        text=answers.for_history(answered.reply.text),
        tool_calls=calls,
        model=answered.model_name,
        usage=answered.reply.usage,
        reasoning=answered.reply.reasoning,
        duration_s=answered.duration_s,
    )


async def _append_results(turn: Turn, results: list[ToolResult]) -> None:
    await turn.offer(results)
    fitted = tool_batch.fitted(results)
    await turn.history.append(ToolResults(turn_id=turn.turn_id, results=fitted))
