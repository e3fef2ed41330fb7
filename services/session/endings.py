"""How a turn's run ends (SPEC §3.8): every way it can stop becomes the Ending the user reads."""

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from services.session import failures, ledger, tool_batch, turn_loop
from services.session.compaction import CompactionFailedError
from services.session.heads import CallEntry
from services.session.providers import api_log
from services.session.providers.protocol import AuthError, ContextLengthError, ProviderError
from shared import redaction
from shared.ids import new_id
from shared.messages.outbound import Ending as PanelEnding
from shared.messages.tools import ToolSpec

if TYPE_CHECKING:
    from services.session.actor import SessionActor

log = logging.getLogger(__name__)


async def ending(
    actor: "SessionActor",
    turn: turn_loop.Turn,
    tools: list[ToolSpec],
    ledger_of: Sequence[CallEntry],
) -> turn_loop.Ending:
    """Run the turn; every way it can end becomes an Ending the user reads."""
    pool = actor.pool
    try:
        async with api_log.for_turn(pool.config, pool.workdir, actor.session_id, turn.turn_id):
            await ledger.settle(actor, turn, tools, ledger_of)
            return await turn_loop.run(turn, tools)
    except tool_batch.TurnCancelledError:
        return turn_loop.Ending(text="", outcome="cancelled")
    except ContextLengthError:  # compaction will catch it first; until then the turn fails
        text = failures.context_exceeded()
        return turn_loop.Ending(text=text, outcome="failed", error="context", can_continue=True)
    except CompactionFailedError as exc:  # history is intact: /continue tries again
        reason = redaction.scrub(exc.reason, actor.conn.secrets)
        text = failures.compaction_failed(reason)
        return _failed(text, "compaction", f"compaction failed: {reason}")
    except AuthError as exc:
        text = failures.auth_refused(exc.model_name, exc.status)
        reason = f"model {exc.model_name} rejected its credentials (HTTP {exc.status})"
        return _failed(text, "auth", reason)
    except ProviderError as exc:  # its body may echo a key: scrubbed before it is cut short
        reason = redaction.scrub(exc.reason, actor.conn.secrets)
        return _failed(failures.provider_failed(reason), "provider", reason)
    except turn_loop.EmptyResponseError:
        text = failures.empty_twice()
        return turn_loop.Ending(
            text=text, outcome="failed", error="empty_response", can_continue=True
        )
    except actor.FATAL:
        raise  # not the turn's failure: another owner, or this process stopping
    except Exception:  # a bug of ours: the user hears of it, the history stays intact
        error_id = new_id("err_")
        log.exception("internal error %s in turn %s", error_id, turn.turn_id)
        return turn_loop.Ending(
            text=failures.internal(error_id),
            outcome="failed",
            error="internal",
            reason=f"internal error {error_id}",
        )


def _failed(text: str, error: str, reason: str) -> turn_loop.Ending:
    return turn_loop.Ending(
        text=text, outcome="failed", error=error, can_continue=True, reason=reason
    )


# The panel's `❌ Failed · <elapsed> — <reason>` of failures whose Ending carries no reason.
REASONS = {
    "context": "the conversation no longer fits the context window",
    "empty_response": "the model returned an empty answer twice",
    "tools": "no tool runner answered",
    "internal": "internal error",
}


def for_panel(ending: turn_loop.Ending) -> tuple[PanelEnding, str]:
    """How the turn's progress panel ends (SPEC §12.6), and why when it failed."""
    if ending.outcome == "cancelled":
        return "cancelled", ""
    if ending.outcome == "answered":
        return "done", ""
    match ending.error:
        case "round_limit":
            return "round_limit", ""
        case "restarts":
            return "interrupted", ""
    reason = ending.reason or REASONS.get(ending.error or "", ending.error or "")
    return "failed", failures.reason_line(reason)
