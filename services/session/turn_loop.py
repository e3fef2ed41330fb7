"""The turn loop (SPEC §3.2 to 3.4): call the model, run the tool batch, repeat until answered."""

import logging
from dataclasses import dataclass

import httpx
import msgspec

from services.session import answers, history_repair, openai_chat, tool_batch
from services.session.history_store import History
from services.session.tool_results import Results
from shared.config import ModelConfig
from shared.ids import ToolCallId, TurnId
from shared.messages.history import AssistantMessage, ToolCall, ToolResult, ToolResults
from shared.messages.tools import ToolSpec

EMPTY_NOTICE = "[Empty Response] The previous model response was empty. Continue."
LIMIT_NOTICE = (
    "[Tool Limit Reached] You have used {n} tool rounds in this turn. Do not call tools. "
    "Answer now: what is done, what remains, and what you would do next."
)
LIMIT_FOOTER = "\n\n(Stopped after {n} tool rounds.)"
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


@dataclass(frozen=True)
class Turn:
    """Everything one turn works with; the history is the one piece it changes."""

    turn_id: TurnId
    turn_number: int
    model_name: str
    model: ModelConfig
    system_prompt: str
    history: History
    http: httpx.AsyncClient
    batch: tool_batch.Batch
    results: Results  # the session's tool starts and results
    max_round_trips: int = 120


async def run(turn: Turn, tools: list[ToolSpec]) -> Ending:
    """Round trips until the model answers without tool calls (or the round limit is reached)."""
    round_trips = 0
    notice: str | None = None
    traits = {spec.name: spec.traits for spec in tools}
    while True:
        at_limit = round_trips >= turn.max_round_trips
        if at_limit:
            notice = LIMIT_NOTICE.format(n=turn.max_round_trips)
        reply = await _call(turn, [] if at_limit else tools, notice)
        if not reply.text.strip() and not reply.tool_calls:
            if notice == EMPTY_NOTICE:
                raise EmptyResponseError
            notice = EMPTY_NOTICE
            continue
        notice = None
        calls = _calls(turn, round_trips + 1, reply)
        await turn.history.append(_assistant(turn, reply, calls))
        if not calls:
            return Ending(text=reply.text)
        if at_limit:
            await _append_results(
                turn, [tool_batch.failed(c, NOT_RUN, "limit_reached") for c in calls]
            )
            footer = LIMIT_FOOTER.format(n=turn.max_round_trips)
            return Ending(text=reply.text.strip() + footer, outcome="failed", error="round_limit")
        await _append_results(turn, await tool_batch.run(turn.batch, calls, turn.results, traits))
        round_trips += 1


async def _call(turn: Turn, tools: list[ToolSpec], notice: str | None) -> openai_chat.ModelReply:
    events = history_repair.closed(turn.history.events)
    messages = openai_chat.to_messages(turn.system_prompt, events)
    if notice:  # request-only notices are not stored in history
        messages.append({"role": "user", "content": notice})
    return await openai_chat.complete(turn.http, turn.model, messages, tools)


def _calls(turn: Turn, round_trip: int, reply: openai_chat.ModelReply) -> list[ToolCall]:
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


def _assistant(
    turn: Turn, reply: openai_chat.ModelReply, calls: list[ToolCall]
) -> AssistantMessage:
    return AssistantMessage(
        turn_id=turn.turn_id,
        text=answers.for_history(reply.text),
        tool_calls=calls,
        model=turn.model_name,
        usage=reply.usage,
    )


async def _append_results(turn: Turn, results: list[ToolResult]) -> None:
    fitted = tool_batch.fitted(results)
    await turn.history.append(ToolResults(turn_id=turn.turn_id, results=fitted))
