"""The progress panel's snapshots and the streamed answer (SPEC §12.6, §12.7) as the session
publishes them: real NATS, the real tools service, the fake OpenAI API; read from SC_OUT."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
from nats.js.errors import ServiceUnavailableError

from services.session.service import run as run_session
from services.tools.service import run as run_tools
from shared import subjects
from shared.ids import ConversationId, SessionId
from shared.messages.contract import Chat, Workspace
from shared.messages.outbound import (
    OUTPUT,
    Output,
    SendReply,
    ShowProgress,
    StreamText,
    ToolLine,
)
from shared.messages.session import ConversationSettings, HandleMessage, WakeSession
from tests.integration.test_session import config
from tests.kit.llm_api import OpenAIChatServer, Step, llm_api, reply, tool_call, tool_calls
from tests.kit.services import make_runtime, running
from tests.unit.shared.samples import message_received

PRIVATE = Chat(conversation_id=ConversationId("tg_501"), channel="telegram", kind="private")
GROUP = Chat(conversation_id=ConversationId("tg_m502"), channel="telegram", kind="group")
# Long enough that its first streamed piece is worth a draft at once (the fake sends all of
# it within a few milliseconds).
ANSWER = " ".join(f"Sentence {n} of a long and careful answer." for n in range(40))
PACE_S = 0.5  # at most one snapshot per half second, besides the first batch and the ending


def chat_config(base_url: str, stream: str = "draft") -> dict[str, object]:
    telegram = {"bot_token": "123:progress-test-token", "stream": stream}
    return config(base_url, telegram=telegram)


@asynccontextmanager
async def stack(
    bus, workdir, nats_access, *steps: Step, stream: str = "draft"
) -> AsyncIterator[OpenAIChatServer]:
    async with llm_api(api_key="k") as llm:
        llm.script(*steps)
        runtime = make_runtime(chat_config(llm.base_url, stream), workdir, nats_access)
        async with running(runtime, run_session, run_tools):
            yield llm


def session_of(chat: Chat) -> SessionId:
    return SessionId(f"{chat.conversation_id}_fg1")


async def ask(bus, chat: Chat, text: str) -> tuple[list[Output], float]:
    """Send `text` in `chat`; the chat's outputs once the answer came, and the turn's time."""
    out = subjects.outbound(chat.channel, chat.conversation_id)
    await bus.watch(out)
    session = session_of(chat)
    message = msgspec.structs.replace(message_received(chat.conversation_id, text), chat=chat)
    workspace = Workspace(pool="local", path=f"workspaces/{chat.conversation_id}")
    handle = HandleMessage(
        session_id=session,
        input_seq=1,
        message=message,
        settings=ConversationSettings(model="main", workspace=workspace),
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    await bus.publish(subjects.session_input(session), handle, msg_id=f"in_{session}")
    with contextlib.suppress(ServiceUnavailableError):
        await bus.publish(subjects.wake(session), WakeSession(session_id=session))
    while not isinstance(await bus.next(out, OUTPUT, timeout_s=15), SendReply):
        pass
    elapsed_s = loop.time() - started
    return await bus.stored(subjects.OUT_STREAM, out, OUTPUT), elapsed_s


def panels(outputs: list[Output]) -> list[ShowProgress]:
    return [o for o in outputs if isinstance(o, ShowProgress)]


def streamed(outputs: list[Output]) -> list[StreamText]:
    return [o for o in outputs if isinstance(o, StreamText)]


async def test_a_tool_turn_shows_its_batch_at_once_then_done_and_streams_its_answer(
    bus, workdir, nats_access
):
    steps = (
        tool_calls(tool_call("shell", {"command": "echo hi"}), text="Let me check."),
        reply(ANSWER),
    )
    async with stack(bus, workdir, nats_access, *steps):
        outputs, elapsed_s = await ask(bus, PRIVATE, "say hi in the shell")
    assert isinstance(outputs[-1], SendReply)
    assert outputs[-1].text == ANSWER
    shown = panels(outputs)
    running = ToolLine(tool="shell", brief="echo hi", state="running")
    done = ToolLine(tool="shell", brief="echo hi", state="done")
    assert any(p.has_batch and p.phase == "tools" and p.tools == [running] for p in shown)
    assert any(p.tools == [done] for p in shown)
    final = shown[-1]
    assert (final.ending, final.calls, final.tools_done) == ("done", 1, 1)
    assert final.preamble == "Let me check."
    assert all(p.turn_id == f"{session_of(PRIVATE)}_t1" and p.model == "main" for p in shown)
    assert [p.seq for p in shown] == sorted({p.seq for p in shown})  # increasing, no repeats
    # The bus cost: the batch at once, a snapshot per half second at most, and the ending.
    assert len(shown) <= 2 + elapsed_s / PACE_S + 1
    drafts = streamed(outputs)
    assert drafts  # the answer streamed; the preamble was too short to
    assert all(ANSWER.startswith(d.text) and d.text for d in drafts)
    assert len(drafts) <= 1 + elapsed_s
    assert outputs.index(drafts[-1]) < outputs.index(final)  # no draft after the ending


async def test_a_quick_text_turn_publishes_no_panel_and_a_group_never_streams(
    bus, workdir, nats_access
):
    async with stack(bus, workdir, nats_access, reply(ANSWER)):
        outputs, _ = await ask(bus, GROUP, "tell me a long story")
    assert isinstance(outputs[-1], SendReply)
    assert len(panels(outputs)) <= 1  # answered in one quick model call: no panel due
    assert streamed(outputs) == []
    cli = await bus.stored(subjects.OUT_CLI_STREAM, subjects.OUTBOUND_CLI, OUTPUT)
    assert cli == []  # a Telegram chat's outputs go to SC_OUT only


async def test_a_private_chat_with_streaming_off_gets_only_the_answer(bus, workdir, nats_access):
    async with stack(bus, workdir, nats_access, reply(ANSWER), stream="off"):
        outputs, _ = await ask(bus, PRIVATE, "tell me a long story")
    assert isinstance(outputs[-1], SendReply)
    assert streamed(outputs) == []
