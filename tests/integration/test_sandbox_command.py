"""`/sandbox` and the `/status` sandbox line (SPEC §6.1, §12.4) with the real conversation and
tools services on a real nats-server: the tool pool's probe decides what bubblewrap can do."""

from datetime import UTC, datetime

import pytest
from nats.errors import NoRespondersError

from services.conversation.service import run as run_conversation
from services.conversation.state import STATE
from services.tools.service import run as run_tools
from shared import subjects
from shared.bus import encode
from shared.ids import ConversationId
from shared.messages.contract import Chat, Sender
from shared.messages.inbound import MessageReceived
from shared.messages.outbound import OUTPUT, SendReply
from shared.messages.session import SESSION_INPUT, HandleMessage
from shared.messages.tools import PROBE_REPLY, ProbePool
from shared.sandbox import SandboxSupport
from tests.kit.nats import TestBus
from tests.kit.services import make_runtime, running
from tests.kit.waiting import eventually_async

ADMIN, USER = 7, 42
MODEL = {"provider": "openai_chat", "model": "gpt-test", "base_url": "http://x/v1"}
CONFIG: dict[str, object] = {
    "default_model": "main",
    "models": {"main": MODEL},
    "bus": {"in_partitions": 4},
    "telegram": {"bot_token": "kit-token", "admin_user_ids": [ADMIN]},
}
NO_BWRAP = {**CONFIG, "sandbox": {"bwrap_path": "/nonexistent/bwrap"}}
ADMIN_ONLY = "Only an admin can set a weaker sandbox than the server default ({})."


def chat_of(conv: str) -> Chat:
    if conv.startswith("tg_"):
        return Chat(conversation_id=ConversationId(conv), channel="telegram", kind="group")
    return Chat(conversation_id=ConversationId(conv), channel="cli", kind="cli")


async def say(bus: TestBus, conv: str, text: str, user_id: int = USER) -> None:
    chat = chat_of(conv)
    message = MessageReceived(
        chat=chat,
        sender=Sender(user_id=user_id, display_name="Ada"),
        text=text,
        received_at=datetime.now(UTC),
    )
    await bus.watch(subjects.outbound(chat.channel, conv))
    await bus.publish(subjects.inbound(chat.channel, conv), message)


async def ask(bus: TestBus, conv: str, text: str, user_id: int = USER) -> str:
    """Send a command and return the conversation service's reply."""
    await say(bus, conv, text, user_id)
    reply = await bus.next(subjects.outbound(chat_of(conv).channel, conv), OUTPUT)
    assert isinstance(reply, SendReply)
    return reply.text


async def next_input(bus: TestBus, conv: str, text: str) -> HandleMessage:
    """Send a message and return the session input it became."""
    session = subjects.session_input(f"{conv}_fg1")
    await bus.watch(session)
    await say(bus, conv, text)
    handle = await bus.next(session, SESSION_INPUT)
    assert isinstance(handle, HandleMessage)
    return handle


async def runner_ready(bus: TestBus) -> SandboxSupport:
    """What the tools service found at start, once it answers the pool's probe."""

    async def probe() -> SandboxSupport | None:
        try:
            answer = await bus.nc.request(
                subjects.tool_probe("local"), encode(ProbePool()), timeout=1.0
            )
        except NoRespondersError:
            return None
        return PROBE_REPLY.decode(answer.data).sandbox

    return await eventually_async(probe, timeout_s=20.0, what="a tool runner answers the probe")


async def bubblewrap_runner(bus: TestBus) -> None:
    """Wait for the tool runner; skip, saying why, where bubblewrap cannot run."""
    support = await runner_ready(bus)
    if support.bubblewrap_error:
        pytest.skip(f"bubblewrap cannot run here: {support.bubblewrap_error}")


async def stored_mode(bus: TestBus, conv: str) -> str | None:
    entry = await (await bus.js.key_value(subjects.CONV_BUCKET)).get(conv)
    assert entry.value is not None
    return STATE.decode(entry.value).sandbox


async def test_a_chat_sets_its_mode_its_inputs_carry_it_and_default_resets_it(
    bus, workdir, nats_access
):
    runtime = make_runtime(CONFIG, workdir, nats_access)
    conv = "cli_ada"
    async with running(runtime, run_conversation, run_tools):
        await bubblewrap_runner(bus)
        assert await ask(bus, conv, "/sandbox") == "Sandbox: bubblewrap (server default)."
        assert await ask(bus, conv, "/sandbox subprocess") == (
            "Sandbox set to subprocess for this chat."
        )
        assert await ask(bus, conv, "/sandbox") == "Sandbox: subprocess (this chat)."
        assert (await next_input(bus, conv, "one")).settings.sandbox == "subprocess"
        assert await stored_mode(bus, conv) == "subprocess"
        status = await ask(bus, conv, "/status")
        assert await ask(bus, conv, "/sandbox default") == (
            "Sandbox reset to the server default (bubblewrap)."
        )
        assert await ask(bus, conv, "/sandbox") == "Sandbox: bubblewrap (server default)."
        assert (await next_input(bus, conv, "two")).settings.sandbox == "auto"
        assert await stored_mode(bus, conv) is None
        after = await ask(bus, conv, "/status")
        assert await ask(bus, conv, "/sandbox bubblewrap") == (
            "Sandbox set to bubblewrap for this chat. Network is off."
        )
    assert status.splitlines() == [
        "📊 Status",
        "Model: main (openai_chat · gpt-test)",
        "Reasoning: default",
        "Session: cli_ada_fg1 · state unknown (no session service answered)",
        "Sandbox: subprocess · Remote: local",
        "Workspace: workspaces/cli_ada (pool local)",
    ]
    assert "Sandbox: bubblewrap (network off) · Remote: local" in after.splitlines()


async def test_only_an_admin_weakens_the_server_default(bus, workdir, nats_access):
    runtime = make_runtime(CONFIG, workdir, nats_access)
    group = "tg_m100"
    async with running(runtime, run_conversation, run_tools):
        await bubblewrap_runner(bus)
        refused = await ask(bus, group, "/sandbox disabled", USER)
        also_refused = await ask(bus, group, "/sandbox subprocess", USER)
        unchanged = await stored_mode(bus, group)
        by_admin = await ask(bus, group, "/sandbox disabled", ADMIN)
        admin_mode = await stored_mode(bus, group)
        back = await ask(bus, group, "/sandbox default", USER)
    assert refused == also_refused == ADMIN_ONLY.format("bubblewrap")
    assert unchanged is None
    assert by_admin == "Sandbox set to disabled for this chat."
    assert admin_mode == "disabled"
    assert back == "Sandbox reset to the server default (bubblewrap)."


async def test_bubblewrap_is_refused_with_the_reason_where_it_cannot_run(bus, workdir, nats_access):
    runtime = make_runtime(NO_BWRAP, workdir, nats_access)
    conv = "cli_bo"
    async with running(runtime, run_conversation, run_tools):
        reason = (await runner_ready(bus)).bubblewrap_error
        refused = await ask(bus, conv, "/sandbox bubblewrap")
        shown = await ask(bus, conv, "/sandbox")
        status = await ask(bus, conv, "/status")
        not_admin = await ask(bus, "tg_m200", "/sandbox disabled", USER)
        mode = await stored_mode(bus, conv)
    assert reason is not None
    assert "/nonexistent/bwrap" in reason
    assert refused == (
        f"bubblewrap is not available on this server ({reason}). Sandbox unchanged: subprocess."
    )
    assert mode is None
    assert shown == "Sandbox: subprocess (server default)."
    assert (
        f"Sandbox: subprocess — bubblewrap is not available here: {reason} · Remote: local"
        in status.splitlines()
    )
    assert not_admin == ADMIN_ONLY.format("subprocess")


async def test_without_a_tool_runner_bubblewrap_is_refused_and_auto_stays_unresolved(
    bus, workdir, nats_access
):
    runtime = make_runtime(CONFIG, workdir, nats_access)
    conv = "cli_cy"
    async with running(runtime, run_conversation):
        refused = await ask(bus, conv, "/sandbox bubblewrap")
        shown = await ask(bus, conv, "/sandbox")
        weaker = await ask(bus, "tg_m300", "/sandbox subprocess", USER)
        unknown = await ask(bus, conv, "/sandbox chroot")
        status = await ask(bus, conv, "/status")
    assert refused == (
        "bubblewrap is not available on this server (no tool runner answered). "
        "Sandbox unchanged: auto."
    )
    assert shown == "Sandbox: auto (server default)."
    assert weaker == ADMIN_ONLY.format("auto")  # no runner: auto counts as bubblewrap
    assert (
        unknown == "Unknown sandbox mode: chroot. Use disabled, subprocess, bubblewrap or default."
    )
    assert "Sandbox: auto (no tool runner answered) · Remote: local" in status.splitlines()
