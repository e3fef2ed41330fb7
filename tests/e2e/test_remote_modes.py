"""`/remote` through Telegram on a real `stellaclaw up` (SPEC §6.6, §12.4), the kit's SSH server as
remote `box`: fixed mode runs the turn's tools in the remote directory; selectable mode gives
`shell` a `remote` argument; an unreachable remote leaves the mode as it was; and a second `tools`
process serving only `ssh_box`, with a config that holds no model key and no bot token, takes
the remote's calls beside the launcher's own (DESIGN §6, §11).

The SSH server sits behind a TCP relay: stopping the kit's server keeps its open connections,
while closing the relay drops them too, as a remote host that went away does.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.errors import NoRespondersError

from shared import subjects
from shared.bus import encode
from shared.messages.tools import TOOL_EVENT, ProbePool, ToolFinished
from tests.kit import stack as sc_stack
from tests.kit.llm_api import reply, tool_call, tool_calls
from tests.kit.nats import TestBus
from tests.kit.ssh import USER as SSH_USER
from tests.kit.ssh import SshServer, ssh_server
from tests.kit.waiting import eventually, eventually_async

pytestmark = pytest.mark.e2e
USER = 6901
POOL = "ssh_box"
SWITCHED = (
    "Tools now run on box in {path}. Uploads and generated files go there too; skills and"
    " shared/ stay on this server."
)
WHERE = f"{SSH_USER}@127.0.0.1:{{path}}"  # how `/remote` shows a remote directory
SELECTED = "Tools may now target any configured remote (box) or local."
BATCH = 4  # shell calls per turn in the two-runner test
MAX_TURNS = 10  # turns until the second runner must have taken one of the pool's calls
SECOND_CONFIG = """
default_model = "main"

[models.main]
provider = "openai_chat"
model = "unused"

[bus]
in_partitions = 4
"""


class ServiceInfo(msgspec.Struct, frozen=True):
    """The part of a `$SRV.INFO` answer that says what a tool runner serves."""

    metadata: dict[str, str]


_INFO: msgspec.json.Decoder[ServiceInfo] = msgspec.json.Decoder(ServiceInfo)


class Relay:
    """127.0.0.1:`port` → 127.0.0.1:`target`, byte for byte; `close()` drops every connection."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.relays: set[asyncio.Task[object]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for writer in self.writers:
            writer.close()
        async with asyncio.timeout(5):
            await asyncio.gather(*self.relays)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.relays.add(task)
        self.writers.add(writer)
        try:
            far_reader, far_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self.writers.add(far_writer)
        await asyncio.gather(pipe(reader, far_writer), pipe(far_reader, writer))


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


class World(msgspec.Struct, frozen=True, kw_only=True):
    fakes: sc_stack.Fakes
    running: sc_stack.Stack
    bus: TestBus
    server: SshServer
    relay: Relay
    root: Path  # the remote's configured `root`
    remote: dict[str, object]  # its `[remotes.box]` table

    @property
    def workspace(self) -> Path:
        """The conversation's local workspace."""
        return self.fakes.workdir / "workspaces" / f"tg_{USER}"

    def transcript(self) -> list[str]:
        return self.fakes.telegram.transcript(USER)


def remote_table(remote: dict[str, object]) -> str:
    """`[remotes.box]` in TOML (a JSON string or integer is a TOML one)."""
    lines = [f"{key} = {msgspec.json.encode(value).decode()}" for key, value in remote.items()]
    return "\n[remotes.box]\n" + "\n".join(lines) + "\n"


async def pool_answers(bus: TestBus) -> bool:
    """A runner of pool ssh_box answers probes (it subscribes a moment after it registers)."""
    try:
        await bus.nc.request(subjects.tool_probe(POOL), encode(ProbePool()), timeout=1)
    except (NoRespondersError, TimeoutError):
        return False
    return True


@asynccontextmanager
async def remote_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    """The fakes, the SSH server behind its relay as remote `box`, and a ready `stellaclaw up`
    (logs in `<tmp_path>/workdir/logs/`) with an `admin` client on its bus."""
    (tmp_path / "keys").mkdir()
    root = tmp_path / "remote_root"
    root.mkdir()
    async with (
        ssh_server(tmp_path / "keys") as server,
        sc_stack.fakes(tmp_path, monkeypatch.setenv, [USER]) as fakes,
    ):
        relay = Relay(server.port)
        await relay.start()
        try:
            remote = server.remote(root, port=relay.port)
            with fakes.config.open("a", encoding="utf-8") as file:
                file.write(remote_table(remote))
            async with sc_stack.stack(fakes.config, fakes.workdir) as running:
                bus = TestBus(await running.wait_ready(sc_stack.SERVICES), running.bus_url)
                await eventually_async(lambda: pool_answers(bus), 10, what="pool ssh_box")
                yield World(
                    fakes=fakes,
                    running=running,
                    bus=bus,
                    server=server,
                    relay=relay,
                    root=root,
                    remote=remote,
                )
        finally:
            await relay.close()


async def command(world: World, text: str) -> str:
    """Send a command; its reply, the next new message in the chat (a turn's panel is edited,
    never sent anew, once its answer is out)."""
    before = len(world.transcript())
    world.fakes.telegram.user_says(USER, text)
    news = await eventually(lambda: world.transcript()[before:], 20, what=f"a reply to {text!r}")
    return news[0]


async def turn(world: World, text: str, answer: str) -> None:
    """Send a message and wait for the scripted answer in the chat."""
    world.fakes.telegram.user_says(USER, text)
    await eventually(lambda: answer in world.transcript(), 30, what=f"the answer {answer!r}")


def tool_results(world: World, request: int) -> list[dict[str, object]]:
    """The tool results the model read in its `request`-th call (from 0)."""
    found = []
    for message in world.fakes.llm.requests[request].tool_messages:
        decoded = msgspec.json.decode(message.text)
        assert isinstance(decoded, dict)
        found.append(decoded)
    return found


@pytest.mark.timeout(60)
async def test_fixed_mode_runs_the_turns_shell_in_the_remote_directory(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("remote project\n", encoding="utf-8")
    async with remote_stack(tmp_path, monkeypatch) as world:
        world.fakes.llm.script(
            tool_call("shell", {"command": "pwd; ls; echo made > made.txt"}),
            reply("It is the remote project."),
        )
        switched = await command(world, f"/remote box {project}")
        await turn(world, "what is here?", "It is the remote project.")
        shown = await command(world, "/remote")
    assert switched == SWITCHED.format(path=project)
    [result] = tool_results(world, 1)
    assert (result["output"], result["exit_code"]) == (f"{project}\nREADME.md\n", 0)
    assert (project / "made.txt").read_text(encoding="utf-8") == "made\n"
    assert not (world.workspace / "made.txt").exists()
    assert any("pwd; ls; echo made > made.txt" in ran for ran in world.server.commands)
    assert shown.splitlines() == [
        f"Remote mode: fixed on box ({WHERE.format(path=project)})",
        f"Configured remotes: box ({WHERE.format(path=world.root)})",
    ]
    assert "remote" not in offered_shell(world, 0)["parameters"]["properties"]  # hidden when fixed


def offered_shell(world: World, request: int) -> dict[str, Any]:
    """The `shell` function the model was offered in its `request`-th call."""
    offered = world.fakes.llm.requests[request].body["tools"]
    assert isinstance(offered, list)
    [shell] = [tool["function"] for tool in offered if tool["function"]["name"] == "shell"]
    assert isinstance(shell, dict)
    return shell


@pytest.mark.timeout(60)
async def test_select_mode_lets_each_call_name_box_or_local(tmp_path, monkeypatch):
    async with remote_stack(tmp_path, monkeypatch) as world:
        world.fakes.llm.script(
            tool_call("shell", {"command": "pwd; echo there > where.txt", "remote": "box"}),
            reply("That ran on box."),
            tool_call("shell", {"command": "pwd; echo here > where.txt", "remote": "local"}),
            reply("That ran here."),
        )
        selected = await command(world, "/remote select")
        await turn(world, "run it on box", "That ran on box.")
        await turn(world, "now run it here", "That ran here.")
        shown = await command(world, "/remote")
    assert selected == SELECTED
    [on_box] = tool_results(world, 1)
    on_local = tool_results(world, 3)[-1]  # the request carries the first turn's result too
    assert on_box["output"] == f"{world.root}\n"
    assert on_local["output"] == f"{world.workspace}\n"
    assert (world.root / "where.txt").read_text(encoding="utf-8") == "there\n"
    assert (world.workspace / "where.txt").read_text(encoding="utf-8") == "here\n"
    for request in (0, 2):  # both turns offered the choice
        remote = offered_shell(world, request)["parameters"]["properties"]["remote"]
        assert (remote["enum"], remote["default"]) == (["local", "box"], "local")
    assert shown.splitlines()[0] == "Remote mode: selectable — tools may target box or local"


@pytest.mark.timeout(60)
async def test_an_unreachable_remote_is_refused_and_a_fixed_mode_is_kept(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    async with remote_stack(tmp_path, monkeypatch) as world:
        world.fakes.llm.script(
            tool_call("shell", {"command": "pwd"}),
            reply("The remote is unreachable."),
        )
        switched = await command(world, f"/remote box {project}")
        await world.relay.close()  # the runner's open connection drops with it
        await world.server.stop()
        refused = await command(world, f"/remote box {world.root}")
        await turn(world, "where are you?", "The remote is unreachable.")
        shown = await command(world, "/remote")
    assert switched == SWITCHED.format(path=project)
    assert refused.startswith("Cannot reach box: "), refused
    assert refused.endswith(". Remote mode unchanged."), refused
    [result] = tool_results(world, 1)
    assert result["error_kind"] == "remote_unreachable"
    assert str(result["error"]).startswith("cannot reach remote box: "), result
    assert shown.splitlines()[0] == f"Remote mode: fixed on box ({WHERE.format(path=project)})"


async def runner_infos(bus: TestBus, count: int) -> list[dict[str, str]]:
    """The INFO metadata of up to `count` tools processes, from one `$SRV.INFO.tools`."""
    inbox = bus.nc.new_inbox()
    answers = await bus.nc.subscribe(inbox)
    found: list[dict[str, str]] = []
    try:
        await bus.nc.publish("$SRV.INFO.tools", b"", reply=inbox)
        with contextlib.suppress(TimeoutError):
            while len(found) < count:
                found.append(_INFO.decode((await answers.next_msg(timeout=2)).data).metadata)
    finally:
        await answers.unsubscribe()
    return found


async def finished(bus: TestBus, count: int) -> list[ToolFinished]:
    """The next `count` ToolFinished on the watched result subjects."""
    found: list[ToolFinished] = []
    while len(found) < count:
        event = await bus.next(subjects.TOOL_RESULTS_ALL, TOOL_EVENT, timeout_s=30)
        if isinstance(event, ToolFinished):
            found.append(event)
    return found


@pytest.mark.timeout(90)
async def test_a_second_tools_process_serving_only_the_remote_pool_takes_its_calls(
    tmp_path, monkeypatch
):
    project = tmp_path / "project"
    project.mkdir()
    second = tmp_path / "remote-runner.toml"
    async with remote_stack(tmp_path, monkeypatch) as world:
        second.write_text(SECOND_CONFIG + remote_table(world.remote), encoding="utf-8")
        async with sc_stack.replica(world.running, "tools", second, "e2e/box", pools=[POOL]):
            await world.running.wait_instances("tools", 2)
            infos = await runner_infos(world.bus, 2)
            switched = await command(world, f"/remote box {project}")
            await world.bus.watch(subjects.TOOL_RESULTS_ALL)
            served = await turns_until_served(world, infos)
    assert switched == SWITCHED.format(path=project)
    assert sorted(info["pools"] for info in infos) == ["local,ssh_box", "ssh_box"]
    runners = {info["pools"]: info["runner_id"] for info in infos}
    assert {f.runner_id for f in served} <= set(runners.values())
    assert runners["ssh_box"] in {f.runner_id for f in served}, [f.runner_id for f in served]
    for request in range(1, len(world.fakes.llm.requests), 2):  # each turn's, after earlier ones
        outputs = [result["output"] for result in tool_results(world, request)[-BATCH:]]
        assert outputs == [f"{project}\n"] * BATCH


async def turns_until_served(world: World, infos: list[dict[str, str]]) -> list[ToolFinished]:
    """Fixed-mode turns of BATCH shell calls each, until the ssh_box-only runner took one (at
    most MAX_TURNS): every ToolFinished of those turns."""
    second = next(info["runner_id"] for info in infos if info["pools"] == POOL)
    served: list[ToolFinished] = []
    for number in range(1, MAX_TURNS + 1):
        calls = [tool_call("shell", {"command": "pwd"}) for _ in range(BATCH)]
        world.fakes.llm.script(tool_calls(*calls), reply(f"Turn {number} done."))
        await turn(world, f"turn {number}", f"Turn {number} done.")
        served += await finished(world.bus, BATCH)
        if any(f.runner_id == second for f in served):
            break
    return served
