"""Token counts and their cost (SPEC §7.5): per call, summed per turn and per session, and each
call told on `sc.evt.usage.<conv>` for observers and the conversation's 24 h totals."""

from collections.abc import Sequence
from datetime import UTC, datetime

from shared import bus, subjects
from shared.ids import SessionId, TurnId
from shared.messages.contract import Chat
from shared.messages.events import ModelUsed
from shared.messages.history import AssistantMessage, HistoryEvent, Usage, summed
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
    """Every model call's usage in `events` (of one turn, when `turn_id` is given)."""
    return summed(
        event.usage
        for event in events
        if isinstance(event, AssistantMessage) and (turn_id is None or event.turn_id == turn_id)
    )


def context_tokens(events: Sequence[HistoryEvent]) -> int:
    """What the last model call's window held: its prompt and its answer."""
    for event in reversed(events):
        if isinstance(event, AssistantMessage):
            used = event.usage
            return used.input + used.cache_read + used.cache_write + used.output
    return 0


async def report(
    conn: bus.Connection,
    chat: Chat,
    turn: tuple[SessionId, TurnId],
    model_name: str,
    used: Usage,
) -> None:
    """Tell one call's usage on the bus without waiting for the stream's ack: a lost fact costs
    a line of `/status`, waiting would cost every model call a round trip."""
    session_id, turn_id = turn
    fact = ModelUsed(
        conversation_id=chat.conversation_id,
        session_id=session_id,
        turn_id=turn_id,
        model=model_name,
        usage=used,
        at=datetime.now(UTC),
    )
    await conn.nc.publish(subjects.usage_event(chat.conversation_id), bus.encode(fact))
