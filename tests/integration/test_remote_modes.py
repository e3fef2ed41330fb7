"""`/remote` end to end (SPEC §6.6, §12.4): the conversation, session and tools services on a
real nats-server, the kit's real SSH server as the remote and the fake OpenAI API as the model.
Fixed mode runs the turn's tools in the remote directory; selectable mode gives `shell` a
`remote` argument; an unreachable remote leaves the mode as it was."""

import msgspec
from nats.errors import NoRespondersError

from services.conversation.service import run as run_conversation
from services.session.service import run as run_session
from services.tools.service import run as run_tools
from shared import layout, subjects
from shared.bus import encode
from shared.messages.outbound import OUTPUT, SendReply
from shared.messages.tools import ProbePool
from tests.integration.test_session import config
from tests.kit.llm_api import llm_api, reply, tool_call
from tests.kit.services import make_runtime, running
from tests.kit.waiting import eventually_async
from tests.unit.shared.samples import message_received

CONV = "cli_remote"
OUT = subjects.outbound("cli", CONV)


async def remote_runtime(bus, workdir, nats_access, base_url: str, remote: dict[str, object]):
    """The three services' runtime with remote `box`, its pool's queue made as `up` makes it."""
    tables = config(base_url, remotes={"box": remote}, bus={"in_partitions": 4})
    runtime = make_runtime(tables, workdir, nats_access)
    await layout.ensure(bus.js, runtime.config.bus, layout.pools(runtime.config))
    return runtime


async def runners_answer(bus) -> None:
    """The tools service serves pool ssh_box (it subscribes a moment after it starts)."""

    async def probed() -> bool:
        try:
            await bus.nc.request(subjects.tool_probe("ssh_box"), encode(ProbePool()), timeout=1)
        except (NoRespondersError, TimeoutError):
            return False
        return True

    await eventually_async(probed, timeout_s=10, what="a runner of pool ssh_box")


async def say(bus, text: str) -> None:
    await bus.publish(subjects.inbound("cli", CONV), message_received(CONV, text))


async def next_reply(bus) -> SendReply:
    while True:
        output = await bus.next(OUT, OUTPUT, timeout_s=20)
        if isinstance(output, SendReply):
            return output


async def test_fixed_mode_runs_the_turns_tools_in_the_remote_directory(
    bus, workdir, nats_access, server, tmp_path
):
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("remote project\n", encoding="utf-8")
    await bus.watch(OUT)
    async with llm_api(api_key="k") as llm:
        llm.script(
            tool_call("shell", {"command": "pwd; cat README.md; echo made > out.txt"}),
            reply("It is the remote project."),
        )
        runtime = await remote_runtime(
            bus, workdir, nats_access, llm.base_url, server.remote(tmp_path / "unused")
        )
        async with running(runtime, run_conversation, run_session, run_tools):
            await runners_answer(bus)
            await say(bus, f"/remote box {project}")
            switched = await next_reply(bus)
            await say(bus, "what is this project?")
            answered = await next_reply(bus)
            await say(bus, "/remote")
            shown = await next_reply(bus)
    assert switched.text == (
        f"Tools now run on box in {project}. Uploads and generated files go there too; skills"
        " and shared/ stay on this server."
    )
    assert answered.text == "It is the remote project."
    [result] = llm.requests[1].tool_messages
    seen = msgspec.json.decode(result.text)
    assert seen["output"] == f"{project}\nremote project\n"
    assert (project / "out.txt").read_text(encoding="utf-8") == "made\n"
    assert not (workdir / "workspaces" / CONV / "out.txt").exists()
    assert shown.text.startswith(f"Remote mode: fixed on box (stellaclaw@127.0.0.1:{project})")
    prompt = llm.requests[0].messages[0].text  # the model is told where its tools run
    assert (
        "- sandbox: none on the remote: commands run as its SSH account; remote: fixed on box"
        in (prompt)
    )
    assert f"remote: fixed on box (stellaclaw@127.0.0.1), workspace root {project}" in prompt


async def test_an_unreachable_remote_leaves_the_mode_and_select_adds_the_argument(
    bus, workdir, nats_access, server, tmp_path
):
    await bus.watch(OUT)
    async with llm_api(api_key="k") as llm:
        llm.script(tool_call("shell", {"command": "pwd", "remote": "box"}), reply("done"))
        runtime = await remote_runtime(
            bus, workdir, nats_access, llm.base_url, server.remote(tmp_path)
        )
        async with running(runtime, run_conversation, run_session, run_tools):
            await runners_answer(bus)
            await say(bus, f"/remote box {tmp_path / 'no-such-dir'}")
            refused = await next_reply(bus)
            await say(bus, "/remote select")
            selected = await next_reply(bus)
            await say(bus, "where are you?")
            await next_reply(bus)
    assert refused.text == (
        f"Cannot reach box: {tmp_path / 'no-such-dir'} is not a directory there. Remote mode"
        " unchanged."
    )
    assert selected.text == "Tools may now target any configured remote (box) or local."
    offered = llm.requests[0].body["tools"]
    assert isinstance(offered, list)
    shell = next(t for t in offered if t["function"]["name"] == "shell")
    remote = shell["function"]["parameters"]["properties"]["remote"]
    assert (remote["enum"], remote["default"]) == (["local", "box"], "local")
    [result] = llm.requests[1].tool_messages
    ran = msgspec.json.decode(result.text)
    assert (ran["output"], ran["remote"]) == (f"{tmp_path}\n", "box")  # SPEC §5.0
