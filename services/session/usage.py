"""Token counts and their cost (SPEC §7.5): per call, summed per turn and per session, and each
call told on `sc.evt.usage.<conv>` when its turn has ended, for observers and the
conversation's 24 h totals."""

from collections.abc import Sequence
from datetime import UTC, datetime

from shared import bus, subjects
from shared.ids import SessionId, TurnId
from shared.messages.contract import Chat
from shared.messages.events import ModelUsed
from shared.messages.history import (
    AssistantMessage,
    Compacted,
    HistoryEvent,
    TurnStarted,
    Usage,
    summed,
)
from shared.model_config import PricesConfig

PER_TOKENS = 1_000_000  # prices are USD per million tokens


def priced(usage: Usage, prices: PricesConfig | None) -> Usage:
    """The call's usage with its cost: the provider's own figure wins; without one and without
    `prices` the cost stays unknown. Reasoning tokens are a part of `output`, not added again."""
    if usage.cost is not None or prices is None:
        return usage
    cached = prices.input if prices.cached_input is None else prices.cached_input
    writes = prices.input if prices.cache_write is None else prices.cache_write
    cost = (
        usage.input * prices.input
        + usage.cache_read * cached
        + usage.cache_write * writes
        + usage.output * prices.output
    ) / PER_TOKENS
    return Usage(
        input=usage.input,
        cache_read=usage.cache_read,
        cache_write=usage.cache_write,
        output=usage.output,
        reasoning=usage.reasoning,
        cost=cost,
    )


def of_history(events: Sequence[HistoryEvent], turn_id: str | None = None) -> Usage:
    """Every model call's usage in `events` (of one turn, when `turn_id` is given); a session's
    total includes the calls a compaction folded in."""
    if turn_id is not None:
        return summed(call.usage for call in turn_calls(events, turn_id))
    calls = [event.usage for event in events if isinstance(event, AssistantMessage)]
    first = events[0] if events else None
    if isinstance(first, Compacted):
        calls.insert(0, first.usage)
    return summed(calls)


def turn_calls(events: Sequence[HistoryEvent], turn_id: str) -> list[AssistantMessage]:
    """The turn's model calls, read from the end back to its start."""
    calls: list[AssistantMessage] = []
    for event in reversed(events):
        if isinstance(event, TurnStarted) and event.turn_id == turn_id:
            break
        if isinstance(event, AssistantMessage) and event.turn_id == turn_id:
            calls.append(event)
    calls.reverse()
    return calls


async def report(
    conn: bus.Connection,
    chat: Chat,
    session_id: SessionId,
    turn_id: TurnId,
    events: Sequence[HistoryEvent],
) -> None:
    """Tell each model call of the finished turn on the bus (SPEC §7.5), once its answer is out.
    Published without waiting for the stream's ack: a lost fact costs a line of `/status`, and
    neither the answer nor the next turn waits for them. A turn whose end is redone after a
    crash tells its calls again under the same ids, which the stream's dedupe window drops."""
    at = datetime.now(UTC)
    subject = subjects.usage_event(chat.conversation_id)
    calls = turn_calls(events, turn_id)
    for number, event in enumerate(calls):
        fact = ModelUsed(
            conversation_id=chat.conversation_id,
            session_id=session_id,
            turn_id=turn_id,
            model=event.model,
            usage=event.usage,
            at=at,
            duration_s=event.duration_s,
        )
        once = {subjects.MSG_ID_HEADER: subjects.usage_msg_id(turn_id, number)}
        await conn.nc.publish(subject, bus.encode(fact), headers=once)
