"""`/compact` (SPEC §4.4): everything but the recent tail compacted now, whatever the size; during a
turn, once it ends. Its input is consumed by the `Compacted` event itself (`inputs_through`), so a
takeover after the append does not compact twice."""

import logging
from typing import TYPE_CHECKING

from services.session import answers, failures, prompt
from services.session.compaction import CompactionFailedError, Job, compact
from services.session.inbox import Entry
from shared import redaction, subjects
from shared.ids import OutId
from shared.messages.outbound import SendReply
from shared.messages.session import CompactSession

if TYPE_CHECKING:
    from services.session.actor import SessionActor

COMPACTING = "🗜️ Compacting…"
NOTHING = "Nothing to compact yet."
LATER = "Will compact when the current turn ends."
log = logging.getLogger(__name__)


def done_text(before: int, after: int) -> str:
    return f"🗜️ Context compacted: {before:,} → {after:,} tokens."


async def run(actor: "SessionActor", entry: Entry, message: CompactSession) -> None:
    """Compact now and say how it went (two replies: the start, then the outcome)."""
    config = actor.pool.config
    model = message.settings.model if message.settings.model in config.models else None
    job = Job(
        config=config,
        model_name=model or config.default_model,
        system_prompt=prompt.system_prompt(
            message.chat.conversation_id,
            model or config.default_model,
            prompt.started_sandbox(actor.history.events),
        ),
        reason="command",
        command_seq=message.input_seq,
    )
    await _say(actor, message, COMPACTING, "")
    try:
        compacted = await compact(actor.history, actor.pool.http, job)
    except CompactionFailedError as exc:
        reason = redaction.scrub(exc.reason, actor.conn.secrets)
        text = failures.compaction_failed(reason)
    else:
        text = (
            NOTHING
            if compacted is None
            else done_text(compacted.tokens_before, compacted.tokens_after)
        )
    actor.inbox.done(entry)
    await _say(actor, message, text, "_done")


async def _say(actor: "SessionActor", message: CompactSession, text: str, suffix: str) -> None:
    out_id = OutId(subjects.reply_out_id(message.input_seq) + suffix)
    await answers.publish(actor.conn, SendReply(chat=message.chat, out_id=out_id, text=text))
