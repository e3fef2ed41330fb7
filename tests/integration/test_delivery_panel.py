"""The progress panel and streamed drafts of the delivery service (SPEC §12.6, §12.7) with a real
nats-server and the test kit's Bot API server enforcing Telegram's limits."""

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.delivery.service import run
from shared import subjects
from shared.bus import BusAccess
from shared.ids import ConversationId, OutId, TurnId
from shared.lifecycle import Runtime
from shared.messages.contract import Chat, ChatKind
from shared.messages.outbound import SendReply, ShowProgress, ShowTyping, StreamText, ToolLine
from tests.kit.services import make_runtime, running
from tests.kit.telegram_api import TelegramAPIServer, telegram_api
from tests.kit.waiting import eventually

ADA, TEAM = 6101, -1006101
MODELS = {"default_model": "m", "models": {"m": {"provider": "openai_chat", "model": "x"}}}


def runtime_for(
    tg: TelegramAPIServer, workdir: Path, nats_access: BusAccess, **telegram: object
) -> Runtime:
    section = {"bot_token": tg.token, "api_base": tg.base_url} | telegram
    return make_runtime({**MODELS, "telegram": section}, workdir, nats_access)


def chat(chat_id: int) -> Chat:
    kind: ChatKind = "private" if chat_id > 0 else "group"
    conv = ConversationId(f"tg_{chat_id}")
    return Chat(conversation_id=conv, channel="telegram", kind=kind, chat_id=chat_id)


class Turn:
    """A turn's outputs as the session publishes them."""

    def __init__(self, bus, chat_id: int, turn: str, *, started_s_ago: float = 0.0) -> None:
        self.bus = bus
        self.chat = chat(chat_id)
        self.turn = TurnId(turn)
        self.seq = 0
        self.started_at = datetime.now(UTC) - timedelta(seconds=started_s_ago)
        self.subject = subjects.outbound("telegram", self.chat.conversation_id)

    async def progress(self, **fields: object) -> None:
        self.seq += 1
        out_id = subjects.progress_out_id(self.turn, self.seq)
        snapshot = ShowProgress(
            chat=self.chat,
            out_id=out_id,
            turn_id=self.turn,
            seq=self.seq,
            model="m",
            started_at=self.started_at,
            **fields,  # type: ignore[arg-type]
        )
        await self.bus.publish(self.subject, snapshot, msg_id=out_id)

    async def stream(self, text: str) -> None:
        self.seq += 1
        out_id = subjects.stream_out_id(self.turn, self.seq)
        streamed = StreamText(
            chat=self.chat, out_id=out_id, turn_id=self.turn, seq=self.seq, text=text
        )
        await self.bus.publish(self.subject, streamed, msg_id=out_id)

    async def typing(self) -> None:
        out_id = subjects.typing_out_id(self.turn)
        typing = ShowTyping(chat=self.chat, out_id=out_id, turn_id=self.turn)
        await self.bus.publish(self.subject, typing, msg_id=out_id)

    async def answer(self, text: str) -> None:
        out_id = OutId(subjects.answer_out_id(self.turn))
        reply = SendReply(chat=self.chat, out_id=out_id, text=text, turn_id=self.turn)
        await self.bus.publish(self.subject, reply, msg_id=out_id)


def shell(state: str) -> ToolLine:
    return ToolLine(tool="shell", brief="pytest -q", state=state)  # type: ignore[arg-type]


async def test_a_tool_batch_shows_the_panel_which_ends_as_done(bus, workdir, nats_access):
    async with telegram_api() as tg, running(runtime_for(tg, workdir, nats_access), run):
        tg.enforce_limits()
        turn = Turn(bus, ADA, "t1")
        await turn.typing()
        await turn.progress(phase="tools", tools=[shell("running")], has_batch=True, calls=1)
        first = await tg.next_sent(ADA)
        await turn.progress(phase="tools", tools=[shell("done")], tools_done=1, calls=1)
        await turn.progress(phase="writing", calls=1, ending="done")
        await turn.answer("All tests pass.")
        await eventually(lambda: tg.transcript(ADA)[-1:] == ["All tests pass."], timeout_s=10)
        await eventually(lambda: tg.transcript(ADA)[0].startswith("✅ Done"), timeout_s=10)
    lines = first.text.splitlines()
    assert lines[0].startswith("⚙️ Working · m · ")
    assert lines[1:3] == ["🔧 Running tools (0/1)", "⏳ shell: pytest -q"]
    assert lines[-1] == "Send a message to steer · /cancel to stop"
    panel, answer = tg.transcript(ADA)
    assert panel.startswith("✅ Done · ")
    assert panel.endswith(" · 1 tool call")
    assert answer == "All tests pass."
    assert tg.too_many() == 0


async def test_a_quick_answer_has_no_panel(bus, workdir, nats_access):
    async with telegram_api() as tg, running(runtime_for(tg, workdir, nats_access), run):
        turn = Turn(bus, ADA, "t2")
        await turn.progress(phase="thinking")
        await turn.progress(phase="writing", ending="done")
        await turn.answer("Quick one.")
        sent = await tg.next_sent(ADA)
    assert sent.text == "Quick one."
    assert tg.transcript(ADA) == ["Quick one."]


async def test_a_long_turn_gets_its_panel_after_3_s_and_paced_edits_in_a_group(
    bus, workdir, nats_access
):
    async with telegram_api() as tg, running(runtime_for(tg, workdir, nats_access), run):
        tg.enforce_limits()
        turn = Turn(bus, TEAM, "t3", started_s_ago=3.5)
        await turn.progress(phase="thinking")
        await tg.next_sent(TEAM)  # due: the turn has run over 3 s
        for n in range(1, 9):  # eight states in quick succession: coalesced, ≥ 4 s apart
            await turn.progress(phase="tools", has_batch=True, tools_done=n, calls=n)
        await eventually(lambda: "(8/" in tg.transcript(TEAM)[0], timeout_s=15)
    times = tg.send_times(TEAM)
    assert len(times) <= 3  # the panel, then at most two edits for eight states
    assert all(b - a >= 3.9 for a, b in itertools.pairwise(times))
    assert tg.too_many() == 0


async def test_a_private_chat_sees_drafts_then_the_answer(bus, workdir, nats_access):
    async with telegram_api() as tg, running(runtime_for(tg, workdir, nats_access), run):
        turn = Turn(bus, ADA, "t4")
        await turn.stream("Once upon")
        await eventually(lambda: tg.drafts(ADA), what="a draft")
        await turn.stream("Once upon a time")
        await eventually(lambda: tg.drafts(ADA)[-1].text == "Once upon a time", timeout_s=5)
        await turn.answer("Once upon a time, the end.")
        await eventually(lambda: tg.transcript(ADA) == ["Once upon a time, the end."])
    drafts = tg.drafts(ADA)
    assert [d.text for d in drafts] == ["Once upon", "Once upon a time"]
    assert len({d.draft_id for d in drafts}) == 1
    assert drafts[1].at_s - drafts[0].at_s >= 0.9


async def test_without_drafts_the_answer_streams_in_the_panel(bus, workdir, nats_access):
    async with telegram_api() as tg, running(runtime_for(tg, workdir, nats_access), run):
        tg.drafts_supported = False
        turn = Turn(bus, ADA, "t5", started_s_ago=4)
        await turn.progress(phase="writing")
        await tg.next_sent(ADA)
        await turn.stream("Draft one")  # 404: the process switches to the panel's 💬 line
        await turn.stream("Draft one, and two")
        await turn.progress(phase="writing")
        await eventually(lambda: "💬 Draft one, and two" in tg.transcript(ADA)[0], timeout_s=10)
