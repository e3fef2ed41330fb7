"""What a turn runs with: its Plan (where it answers, how it runs, what a takeover found), and
the `turn_loop.Turn` built from it (models, tool batches, compaction, the progress panel)."""

from typing import TYPE_CHECKING

import msgspec

from services.session import answers, follow_ups, prompt, tool_batch, turn_loop
from services.session.context_window import Window
from services.session.heads import CallEntry
from services.session.model_calls import ModelChoice
from services.session.progress import Progress
from shared import subjects
from shared.ids import TurnId
from shared.messages.contract import Chat
from shared.messages.history import ToolResult
from shared.messages.outbound import SendReply
from shared.messages.session import ConversationSettings

if TYPE_CHECKING:
    from services.session.actor import SessionActor


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """A turn to drive: where it answers, how it runs, and what a takeover found of its batch."""

    turn_id: TurnId
    number: int
    chat: Chat
    settings: ConversationSettings
    ledger: list[CallEntry] = msgspec.field(default_factory=list)
    attempt: int = 0  # takeovers so far: re-sent calls get fresh msg ids
    is_resumed: bool = False  # a new owner took it over (SPEC §3.9)


def model_of(actor: "SessionActor", plan: Plan) -> str:
    """The turn's model. One this process's config lacks (a rolling config change) falls back
    as the conversation service does: to the default model."""
    config = actor.pool.config
    model = plan.settings.model
    return model if model in config.models else config.default_model


def turn_of(actor: "SessionActor", plan: Plan, progress: Progress) -> turn_loop.Turn:
    config = actor.pool.config
    model_name = model_of(actor, plan)
    assert actor.running is not None

    async def tell(text: str) -> None:
        progress.warn(text)
        out_id = subjects.fallback_out_id(plan.turn_id)
        await answers.publish(
            actor.conn, SendReply(chat=plan.chat, out_id=out_id, text=text, settles=0)
        )

    async def offer(results: list[ToolResult]) -> None:
        await answers.offer_files(actor.conn, plan.chat, plan.turn_id, results)

    models = ModelChoice(config, actor.pool.http, actor.pool.cooldowns, model_name, tell)
    models.effort = plan.settings.reasoning
    progress.model = models.current  # its first fallback while the model cools down
    window = Window(
        actor.history, actor.pool.http, config, actor.calibrations, actor.compaction_failed
    )
    window.on_compacting = progress.compacting
    return turn_loop.Turn(
        turn_id=plan.turn_id,
        turn_number=plan.number,
        models=models,
        system_prompt=lambda: prompt.system_prompt(
            plan.chat.conversation_id, model_name, prompt.started_sandbox(actor.history.events)
        ),
        history=actor.history,
        batch=_batch(actor, plan),
        results=actor.results,
        running=actor.running,
        journal=actor.journal_batch,
        progress=progress,
        fold=lambda: follow_ups.fold(actor, plan.turn_id),
        offer=offer,
        max_round_trips=config.agent.max_round_trips,
        attempt=plan.attempt,
        media=actor.pool.media,
        window=window,
    )


def _batch(actor: "SessionActor", plan: Plan) -> tool_batch.Batch:
    config, settings = actor.pool.config, plan.settings
    return tool_batch.Batch(
        session_id=actor.session_id,
        conversation_id=plan.chat.conversation_id,
        workspace=settings.workspace,
        max_parallel=config.agent.max_parallel_tools,
        sandbox=settings.sandbox,
        remotes=list(config.remotes) if settings.remote.mode == "selectable" else [],
    )
