"""`stellaclaw up` owns its children and its bus (issue 11, findings 3 and 4), run for real."""

import asyncio
import os
import re
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from nats.js.api import KeyValueConfig

from shared import subjects
from tests.kit import stack as sc_stack
from tests.kit.llm_api import OpenAIChatServer, llm_api, reply
from tests.kit.nats import connect_as, nats_server
from tests.kit.telegram_api import TelegramAPIServer, telegram_api
from tests.kit.waiting import eventually

pytestmark = pytest.mark.e2e
KEY = "sk-launcher-test"
USERS = list(range(5001, 5021))  # 20 people, one conversation each


class Fakes:
    def __init__(self, root: Path, telegram: TelegramAPIServer, llm: OpenAIChatServer) -> None:
        self.root = root
        self.telegram = telegram
        self.llm = llm
        self.config = root / "stellaclaw.toml"
        self.workdir = root / "workdir"


@asynccontextmanager
async def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Fakes]:
    async with telegram_api() as telegram, llm_api(api_key=KEY) as llm:
        monkeypatch.setenv(sc_stack.KEY_VARIABLE, KEY)
        monkeypatch.setenv(sc_stack.TOKEN_VARIABLE, telegram.token)
        found = Fakes(tmp_path, telegram, llm)
        sc_stack.write_config(
            found.config,
            llm_base_url=llm.base_url,
            telegram_base_url=telegram.base_url,
            user_ids=USERS,
        )
        yield found


async def test_a_sigkilled_launcher_leaves_no_child_and_the_workdir_starts_again(
    tmp_path, monkeypatch
):
    async with fakes(tmp_path, monkeypatch) as world:
        running = await sc_stack.start_up(world.config, world.workdir)
        await (await running.wait_ready(sc_stack.SERVICES)).close()
        children = running.children()
        assert len(children) == len(sc_stack.SERVICES) + 1
        assert list(children.values()).count("nats-server") == 1
        os.kill(running.process.pid, signal.SIGKILL)
        await running.process.wait()
        await eventually(lambda: all(sc_stack.is_gone(pid) for pid in children), timeout_s=2)
        world.llm.script(reply("Back again."))
        async with sc_stack.stack(world.config, world.workdir) as again:
            await again.wait_ready(sc_stack.SERVICES)
            world.telegram.user_says(USERS[0], "hello?")
            assert (await world.telegram.next_sent(USERS[0], timeout_s=30)).text == "Back again."
        world.llm.assert_done()


async def test_ctrl_c_during_a_turn_stops_in_order_without_tracebacks_and_the_turn_is_answered(
    tmp_path, monkeypatch
):
    async with fakes(tmp_path, monkeypatch) as world:
        world.llm.script(reply("Worth the wait.", delay_s=2.0))
        running = await sc_stack.start_up(world.config, world.workdir)
        await running.wait_ready(sc_stack.SERVICES)
        world.telegram.user_says(USERS[0], "think about it")
        await eventually(lambda: len(world.llm.requests) == 1, timeout_s=30)
        running.interrupt()  # the terminal's Ctrl-C: SIGINT to the whole process group
        assert await asyncio.wait_for(running.process.wait(), 30) == 0
        logs = {path.name: path.read_text() for path in (world.workdir / "logs").glob("*.log")}
        assert [name for name, text in logs.items() if "Traceback" in text] == []
        async with sc_stack.stack(world.config, world.workdir) as again:
            await again.wait_ready(sc_stack.SERVICES)
            await eventually(lambda: "Worth the wait." in world.telegram.transcript(USERS[0]), 30)
        assert world.telegram.transcript(USERS[0]).count("Worth the wait.") == 1
        world.llm.assert_done()


@pytest.mark.timeout(150)  # restarts and lease takeovers: seconds each, several in a row
async def test_a_sigkilled_nats_server_is_restarted_and_every_message_answered_once(
    tmp_path, monkeypatch
):
    async with fakes(tmp_path, monkeypatch) as world:
        world.llm.always(reply("Answered.", delay_s=0.3))
        async with sc_stack.stack(world.config, world.workdir) as running:
            await running.wait_ready(sc_stack.SERVICES)
            [server] = [pid for pid, name in running.children().items() if name == "nats-server"]
            for user in USERS[:10]:
                world.telegram.user_says(user, "before the crash")
            await eventually(lambda: len(world.llm.requests) >= 3, timeout_s=30)
            os.kill(server, signal.SIGKILL)
            for user in USERS[10:]:
                world.telegram.user_says(user, "during the crash")
            await eventually(
                lambda: all("Answered." in world.telegram.transcript(u) for u in USERS), 90
            )
            restarted = [p for p, n in running.children().items() if n == "nats-server"]
            assert len(restarted) == 1
            assert restarted != [server]
            durable = subjects.durable("delivery", "telegram")
            running.nc = await running.connect("admin")
            await running.wait_drained(subjects.OUT_STREAM, durable)
        # Every input the session had not yet taken is answered exactly once. An input the
        # session had taken is answered too here (its turn was running in memory and outlived
        # the bus); after a crash of the session itself that waits for durable sessions (#12).
        assert [world.telegram.transcript(u).count("Answered.") for u in USERS] == [1] * 20


def external_bus_config(folder: Path, url: str, role: str, password: str) -> str:
    """A config for an external bus with one role's login; its path."""
    config = folder / "stellaclaw.toml"
    config.write_text(
        'default_model = "m"\n[models.m]\nprovider = "openai_chat"\nmodel = "x"\n'
        f'[bus]\nurl = "{url}"\nin_partitions = 2\n'
        f'[bus.services.{role}]\nuser = "{role}"\npassword = "{password}"\n'
    )
    return str(config)


async def test_up_with_a_wrong_password_for_an_external_bus_exits_2_naming_it(tmp_path):
    async with nats_server(tmp_path / "nats") as server:
        config = external_bus_config(tmp_path, server.url, "admin", "not-the-password")
        code, err = await sc_stack.run_cli("up", "--config", config, "--workdir", f"{tmp_path}/w")
    assert code == 2
    [line] = err.strip().splitlines()
    assert line.startswith(f"bus: cannot log in to {server.url} as the launcher: ")
    assert "Authorization Violation" in line


async def test_a_service_on_a_bus_without_the_layout_exits_2_saying_what_creates_it(tmp_path):
    async with nats_server(tmp_path / "nats") as server:
        admin = await connect_as(server.access, "admin")  # the buckets, but not the durables
        for bucket in (subjects.CONV_BUCKET, subjects.AUTH_BUCKET):
            await admin.jetstream().create_key_value(KeyValueConfig(bucket=bucket))
        await admin.close()
        password = server.access.logins["conversation"].password or ""
        config = external_bus_config(tmp_path, server.url, "conversation", password)
        code, err = await sc_stack.run_cli(
            "run", "conversation", "--config", config, "--workdir", f"{tmp_path}/w"
        )
    assert code == 2
    assert re.search(r"bus: durable conversation_p[01] of stream", err)  # whichever binds first
    assert "`stellaclaw up` or `stellaclaw migrate` creates the bus layout" in err
    assert "Traceback" not in err


@pytest.mark.timeout(150)  # restarts and lease takeovers: seconds each, several in a row
async def test_a_sigkilled_session_resumes_the_cut_turn_then_the_queued_inputs_once_each(
    tmp_path, monkeypatch
):
    async with fakes(tmp_path, monkeypatch) as world:
        world.llm.script(
            reply("never delivered: the session dies first", delay_s=5.0),
            reply("Answer one."),  # the resumed turn asks again
            reply("Answer two."),
            reply("Answer three."),
        )
        user = USERS[0]
        async with sc_stack.stack(world.config, world.workdir) as running:
            await running.wait_ready(sc_stack.SERVICES)
            world.telegram.user_says(user, "one")
            await eventually(lambda: len(world.llm.requests) == 1, timeout_s=30)
            world.telegram.user_says(user, "two")
            world.telegram.user_says(user, "three")
            killed = running.kill("session")  # mid model call, with two inputs queued
            await running.wait_service("session", not_pid=killed)
            await eventually(lambda: len(world.telegram.transcript(user)) >= 3, timeout_s=60)
            await running.wait_drained(
                subjects.OUT_STREAM, subjects.durable("delivery", "telegram")
            )
        assert world.telegram.transcript(user) == ["Answer one.", "Answer two.", "Answer three."]
        assert [r.last_user_text for r in world.llm.requests] == ["one", "one", "two", "three"]
        world.llm.assert_done()
