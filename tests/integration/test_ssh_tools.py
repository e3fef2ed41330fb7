"""The catalog's tools on an SSH remote (SPEC §6.6), against the kit's real in-process SSH
server: a fixed-mode call runs in the remote root; `.stellaclaw/` stays on the runner host."""

import msgspec
import pytest

from services.tools.builtin.edit import EditArgs, edit
from services.tools.builtin.file_read import FileReadArgs, file_read
from services.tools.builtin.file_write import FileWriteArgs, file_write
from services.tools.builtin.glob_files import GlobArgs, glob
from services.tools.builtin.grep_files import GrepArgs, grep
from services.tools.builtin.listing import LsArgs, ls
from services.tools.builtin.shell import ShellArgs, shell
from services.tools.builtin.shell_close import ShellCloseArgs, shell_close
from services.tools.context import RunnerContext, Settings
from services.tools.results import ToolError
from services.tools.workspace import RemoteTarget, ToolCall
from shared.tools_config import RemoteConfig
from tests.unit.tools.samples import tool_call


@pytest.fixture
async def call(workdir, server, remote_root):
    config = RemoteConfig(**server.remote(remote_root))
    context = RunnerContext(runner_id="r-ssh", settings=Settings(remotes={"box": config}))
    made = msgspec.structs.replace(
        tool_call(workdir),
        runner=context,
        remote=RemoteTarget(name="box", root=str(remote_root)),
    )
    yield made
    await context.end_all()


async def run(call: ToolCall, **arguments) -> dict[str, object]:
    result = await shell(ShellArgs(**arguments), call)
    decoded = msgspec.json.decode(msgspec.json.encode(result))
    assert isinstance(decoded, dict)
    return decoded


async def test_a_command_runs_in_the_remote_root_and_its_log_stays_local(call, remote_root):
    result = await run(call, command="pwd; echo $STELLACLAW_WORKSPACE; echo hi > made.txt")
    assert result["output"] == f"{remote_root}\n{remote_root}\n"
    assert (result["exit_code"], result["running"], result["workdir"]) == (
        0,
        False,
        str(remote_root),
    )
    assert (remote_root / "made.txt").read_text() == "hi\n"
    assert (call.root / str(result["log_path"])).read_text() == result["output"]


async def test_exit_codes_timeouts_and_sessions_on_the_remote(call, remote_root):
    failed = await run(call, command="exit 7")
    assert failed["exit_code"] == 7
    timed = await run(call, command="sleep 30", timeout_s=1)
    assert timed["timed_out"] is True
    started = await run(call, command="echo first; sleep 30", wait_s=0.5)
    assert (started["running"], started["session"]) == (True, "sh1")
    closed = await shell_close(ShellCloseArgs(session="sh1"), call)
    assert closed.closed is True


async def test_an_unreachable_remote_is_remote_unreachable(call, server):
    await server.stop()
    with pytest.raises(ToolError) as caught:
        await run(call, command="true")
    assert caught.value.kind == "remote_unreachable"
    assert str(caught.value).startswith("cannot reach remote box:")


async def test_file_tools_work_on_the_remote_and_local_only_paths_stay_here(call, remote_root):
    wrote = await file_write(FileWriteArgs(file_path="src/app.py", content="x = 1\n"), call)
    assert (wrote.created, (remote_root / "src/app.py").read_text()) == (True, "x = 1\n")
    edited = await edit(EditArgs(file_path="src/app.py", old_text="1", new_text="2"), call)
    assert (edited.replacements, (remote_root / "src/app.py").read_text()) == (1, "x = 2\n")
    read = await file_read(FileReadArgs(file_path="src/app.py"), call)
    assert read.content == "1: x = 2"
    listed = await ls(LsArgs(), call)
    assert listed.tree == "src/\n  app.py (6 B)"
    found = await grep(GrepArgs(pattern="x =", output="lines"), call)
    assert found.matches == ["src/app.py:1: x = 2"]  # type: ignore[union-attr]
    globbed = await glob(GlobArgs(pattern="**/*.py"), call)
    assert globbed.filenames == ["src/app.py"]
    kept = await file_write(FileWriteArgs(file_path=".stellaclaw/notes.txt", content="here"), call)
    assert kept.created is True
    assert (call.root / ".stellaclaw/notes.txt").read_text() == "here"  # on the runner host
    assert not (remote_root / ".stellaclaw").exists()
    with pytest.raises(ToolError) as caught:
        await file_read(FileReadArgs(file_path="missing.txt"), call)
    assert (caught.value.kind, str(caught.value)) == ("not_found", "missing.txt does not exist")
