"""Idle compaction (SPEC §4.4): a foreground session left idle with much of its window used is
compacted in the background before its prompt cache goes cold, so the next message is fast.

Due when `compaction.idle` is on, the session is a foreground one, at least one turn ran since the
last compaction, and the estimate is at least `idle_min_ratio` of the window; it fires after
`idle_after_s` without input (default: the model's `cache_ttl` - 30 s, else 1,800 s). A failure is
logged and shown in `/status`, never sent to the chat.
"""

import logging
from typing import TYPE_CHECKING

from services.session import context_window
from services.session.compaction import CompactionFailedError, Job, compact
from shared.messages.history import Compacted, TurnStarted

if TYPE_CHECKING:
    from services.session.actor import SessionActor

CACHE_MARGIN_S = 30.0
WITHOUT_CACHE_S = 1_800.0
log = logging.getLogger(__name__)


def after_s(actor: "SessionActor") -> float | None:
    """Seconds of quiet after which the session compacts, or None when it is not due."""
    config = actor.pool.config
    settings = config.compaction
    if not settings.idle or actor.held.head.session_type != "foreground":
        return None
    events = actor.history.events
    since = events[1:] if events and isinstance(events[0], Compacted) else events
    if not any(isinstance(event, TurnStarted) for event in since):
        return None  # nothing new since the last compaction
    name, estimate = context_window.held_estimate(actor.history, config, actor.calibrations)
    model = config.models[name]
    if estimate.tokens < settings.idle_min_ratio * model.context_window:
        return None
    if settings.idle_after_s is not None:
        return settings.idle_after_s
    ttl = model.cache_ttl or 0
    return max(0.0, ttl - CACHE_MARGIN_S) if ttl else WITHOUT_CACHE_S


async def run(actor: "SessionActor") -> None:
    """Compact now, in the quiet; the outcome goes to the log and `/status` only."""
    config = actor.pool.config
    name, _ = context_window.held_estimate(actor.history, config, actor.calibrations)
    job = Job(config=config, model_name=name, system_prompt="", reason="idle")
    try:
        compacted = await compact(actor.history, actor.pool.http, job)
    except CompactionFailedError as exc:
        log.warning("idle compaction of %s failed: %s", actor.session_id, exc.reason)
        actor.compaction_failed(exc.reason)
        return
    actor.compaction_failed("")
    if compacted is not None:
        log.info(
            "idle compaction of %s: %d -> %d tokens",
            actor.session_id,
            compacted.tokens_before,
            compacted.tokens_after,
        )
