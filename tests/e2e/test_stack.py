"""The whole stack as `stellaclaw up` runs it: five processes, the embedded bus, and the fakes."""

from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
import pytest_asyncio

from shared import subjects
from shared.messages.events import EVENT, BadMessage
from tests.kit import stack as sc_stack
from tests.kit.llm_api import OpenAIChatServer, http_error, llm_api, reply, tool_call
from tests.kit.telegram_api import TelegramAPIServer, telegram_api
from tests.kit.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
ADA = 4242
KEY = "sk-e2e-secret"


class World:
    def __init__(self, stack, telegram: TelegramAPIServer, llm: OpenAIChatServer) -> None:
        self.stack = stack
        self.telegram = telegram
        self.llm = llm


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory) -> AsyncIterator[World]:
    root: Path = tmp_path_factory.mktemp("e2e")
    with pytest.MonkeyPatch.context() as env:
        async with telegram_api() as telegram, llm_api(api_key=KEY) as llm:
            telegram.outbox.hide_panels = True  # these tests read the answers
            env.setenv(sc_stack.KEY_VARIABLE, KEY)
            env.setenv(sc_stack.TOKEN_VARIABLE, telegram.token)
            config = root / "stellaclaw.toml"
            sc_stack.write_config(
                config,
                llm_base_url=llm.base_url,
                telegram_base_url=telegram.base_url,
                user_ids=[ADA],
            )
            async with sc_stack.stack(config, root / "workdir") as running:
                await running.wait_ready(sc_stack.SERVICES)
                yield World(running, telegram, llm)


async def delivered(world: World) -> None:
    """Every output so far is sent and recorded (a kill in between may send one twice)."""
    durable = subjects.durable("delivery", "telegram")
    await world.stack.wait_drained(subjects.OUT_STREAM, durable)


async def exchange(world: World, text: str, timeout_s: float = 45.0) -> str:
    world.telegram.user_says(ADA, text)
    sent = await world.telegram.next_sent(ADA, timeout_s=timeout_s)
    return sent.text


async def test_a_telegram_message_gets_the_models_answer(world):
    world.llm.script(reply("Hello **Ada**!", delay_s=1.0))  # long enough to show typing
    assert await exchange(world, "hello") == "Hello Ada!"
    sent = world.telegram.sent[-1]
    assert [(e.type, e.offset, e.length) for e in sent.entities] == [("bold", 6, 3)]
    assert world.llm.requests[-1].last_user_text == "hello"
    assert world.llm.requests[-1].headers["authorization"] == f"Bearer {KEY}"
    assert "typing" in world.telegram.actions(ADA)
    world.llm.assert_done()


async def test_a_tool_call_runs_shell_in_the_workspace_and_the_model_reads_its_output(world):
    world.llm.script(
        tool_call("shell", {"command": "echo e2e-$((6*7)) | tee marker.txt"}),
        reply("The shell said e2e-42."),
    )
    assert await exchange(world, "run something") == "The shell said e2e-42."
    [tool_message] = world.llm.requests[-1].tool_messages
    result = msgspec.json.decode(tool_message.text)
    assert result["output"] == "e2e-42\n"
    assert result["exit_code"] == 0
    marker = world.stack.workdir / "workspaces" / f"tg_{ADA}" / "marker.txt"
    assert marker.read_text() == "e2e-42\n"
    world.llm.assert_done()


@pytest.mark.parametrize("victim", ["delivery", "conversation"])
async def test_a_killed_service_is_restarted_and_the_answer_arrives_once(world, victim):
    world.llm.script(reply(f"Answer after {victim} died.", delay_s=0.5))
    await delivered(world)  # the kill falls between turns, not between a send and its record
    old_pid = world.stack.kill(victim)
    assert await exchange(world, f"are you there, {victim}?") == f"Answer after {victim} died."
    await world.stack.wait_service(victim, not_pid=old_pid)
    world.llm.script(reply("Next answer."))
    assert await exchange(world, "and now?") == "Next answer."
    transcript = world.telegram.transcript(ADA)
    assert transcript.count(f"Answer after {victim} died.") == 1
    assert transcript[-1] == "Next answer."
    world.llm.assert_done()


async def test_a_killed_delivery_mid_turn_still_delivers_exactly_once(world):
    world.llm.script(reply("Thought about it.", delay_s=1.0))
    await delivered(world)
    world.telegram.user_says(ADA, "think slowly")
    await eventually(
        lambda: world.llm.requests and world.llm.requests[-1].last_user_text == "think slowly"
    )
    old_pid = world.stack.kill("delivery")
    sent = await world.telegram.next_sent(ADA, timeout_s=45)
    assert sent.text == "Thought about it."
    await world.stack.wait_service("delivery", not_pid=old_pid)
    world.llm.script(reply("Still here."))
    assert await exchange(world, "still there?") == "Still here."
    assert world.telegram.transcript(ADA).count("Thought about it.") == 1
    world.llm.assert_done()


async def test_a_malformed_inbound_message_is_terminated_and_counted_and_the_next_answered(world):
    nc = world.stack.nc
    js = nc.jetstream()
    before = msgspec.json.decode(
        (await nc.request(subjects.counters("conversation"), b"", timeout=5)).data
    ).get("bad_messages", 0)
    events = await js.subscribe(subjects.BAD_MESSAGE_EVENT, ordered_consumer=True)
    await js.publish(
        subjects.inbound("telegram", f"tg_{ADA}"), b'{"kind": "message_received", "text": 1}'
    )
    world.llm.script(reply("Still fine."))
    assert await exchange(world, "after the bad one") == "Still fine."
    fact = EVENT.decode((await events.next_msg(timeout=10)).data)
    await events.unsubscribe()
    assert isinstance(fact, BadMessage)
    assert fact.service == "conversation"
    counters = await nc.request(subjects.counters("conversation"), b"", timeout=5)
    assert msgspec.json.decode(counters.data)["bad_messages"] == before + 1
    world.llm.assert_done()


async def test_up_with_a_missing_variable_exits_2_naming_it(tmp_path):
    config = tmp_path / "stellaclaw.toml"
    sc_stack.write_config(
        config, llm_base_url="http://x/v1", telegram_base_url="http://y", user_ids=[1]
    )
    code, err = await sc_stack.run_cli(
        *("up", "--config", str(config), "--workdir", str(tmp_path / "w")),
        env={"PATH": "/usr/bin:/bin"},
    )
    assert code == 2
    assert err.strip() == (
        f"config: models.main.api_key: environment variable {sc_stack.KEY_VARIABLE} is not set"
    )
    assert not (tmp_path / "w").exists()


def environment_of(pid: int) -> str:
    return Path(f"/proc/{pid}/environ").read_bytes().replace(b"\0", b"\n").decode()


async def test_each_service_holds_only_its_own_secrets(world):
    telegram_token = world.telegram.token
    for service in ("tools", "conversation", "ingress_telegram"):
        assert KEY not in environment_of(world.stack.pid(service)), service
    for service in ("tools", "conversation"):
        assert telegram_token not in environment_of(world.stack.pid(service)), service
    assert KEY in environment_of(world.stack.pid("session"))
    assert telegram_token in environment_of(world.stack.pid("delivery"))


async def test_a_provider_error_that_echoes_the_key_reaches_the_chat_scrubbed(world):
    world.llm.script(http_error(400, f"Malformed request for key {KEY}. Check it."))
    text = await exchange(world, "use the model")
    assert KEY not in text
    assert "Malformed request for key ***" in text
    world.llm.script(http_error(401, f"Incorrect API key provided: {KEY}. Check it."))
    refused = await exchange(world, "and again")
    assert refused == (
        "⚠️ Model main rejected its credentials (HTTP 401). The operator must fix "
        "[models.main]. Send /continue after that, or switch with /model."
    )
    world.llm.assert_done()


async def test_a_3_mb_answer_goes_out_as_11_parts_and_the_whole_as_a_document(world):
    runaway = "A runaway answer.\n" * 170_000  # 3.06 MB of short lines
    world.llm.script(reply(runaway))
    world.telegram.user_says(ADA, "write forever")
    parts = [await world.telegram.next_sent(ADA, timeout_s=60) for _ in range(11)]
    document = await world.telegram.next_file(timeout_s=60)
    await delivered(world)
    assert all(part.text.startswith("A runaway answer.") for part in parts)
    assert (document.method, document.chat_id) == ("sendDocument", ADA)
    assert document.file_name.startswith("answer-")
    assert document.file_name.endswith(".md")
    whole = document.data.decode()
    assert whole.startswith("A runaway answer.")
    assert len(whole) >= len(runaway) - 1  # the answer as stored, its last newline aside
    assert document.caption == f"The full answer ({len(whole):,} chars)."
    # the stored answer no longer fits the window: the next turn compacts it first (SPEC §4.2)
    world.llm.script(reply("## Goal\nA runaway answer was cut."), reply("Short again."))
    assert await exchange(world, "and now?") == "Short again."
    summary_call, answered = world.llm.requests[-2:]
    assert [m.role for m in summary_call.messages] == ["system", "user"]
    assert answered.messages[1].text.startswith("[Stellaclaw Context Compression]")
    world.llm.assert_done()
