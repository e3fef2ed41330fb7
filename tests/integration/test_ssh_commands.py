"""Commands on a remote (SPEC §6.6) against a real in-process SSH server: the `timeout` wrapper,
merged output, exit codes, timeouts, cancel and signals reaching the remote process group, and
terminal input. The "remote" is this machine, so a test can watch the remote processes locally.
"""

import asyncio
import os
import shlex
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from services.tools.remote import commands
from services.tools.remote.commands import RemoteControls, RemoteLaunch
from services.tools.remote.connections import Remotes
from services.tools.results import ToolError
from services.tools.sandbox.launch import Exit
from shared.tools_config import RemoteConfig
from tests.integration.test_ssh_connections import proxy_to
from tests.kit.ssh import SshServer
from tests.kit.waiting import eventually


@pytest.fixture
async def remotes(server: SshServer, tmp_path: Path) -> AsyncIterator[Remotes]:
    pool = Remotes({"box": msgspec.convert(server.remote(tmp_path), RemoteConfig)})
    try:
        yield pool
    finally:
        await pool.close()


class Call:
    """One remote command running in a task, its output collected as it arrives."""

    def __init__(self, remotes: Remotes, launch: RemoteLaunch) -> None:
        self.output = bytearray()
        self.controls = RemoteControls()
        self.task = asyncio.create_task(
            commands.run(remotes, "box", launch, self.output.extend, self.controls)
        )

    async def printed(self, text: bytes) -> None:
        await eventually(lambda: text in self.output, what=f"{text!r} in the output")


def launch(
    command: str, cwd: Path, timeout_s: float = 30, env: dict[str, str] | None = None, tty=False
) -> RemoteLaunch:
    return RemoteLaunch(command=command, cwd=str(cwd), timeout_s=timeout_s, env=env or {}, tty=tty)


async def run(remotes: Remotes, how: RemoteLaunch) -> tuple[Exit, bytes]:
    output = bytearray()
    done = await commands.run(remotes, "box", how, output.extend)
    return done, bytes(output)


def is_running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in {"Z", "X"}


async def test_output_is_merged_in_arrival_order_and_the_exit_code_kept(remotes, tmp_path):
    script = "echo one; sleep 0.1; echo two >&2; sleep 0.1; echo three; exit 3"
    done, output = await run(remotes, launch(script, tmp_path))
    assert done == Exit(returncode=3, timed_out=False)
    assert output == b"one\ntwo\nthree\n"  # the group line is not part of it


async def test_the_command_runs_in_its_dir_with_its_variables(remotes, server, tmp_path):
    workdir = tmp_path / "a dir"
    workdir.mkdir()
    variables = {"GREETING": "it's $HOME `x`", "EMPTY": ""}
    how = launch('pwd; echo "$GREETING|$EMPTY|$0"', workdir, env=variables, timeout_s=7.5)
    done, output = await run(remotes, how)
    assert done.returncode == 0
    assert output == f"{workdir}\nit's $HOME `x`||bash\n".encode()
    sent = server.commands[-1]
    assert sent.startswith("echo stellaclaw-pgid $$; cd ")
    assert "exec timeout -k 5 7.5 bash -c " in sent


async def test_a_bad_variable_name_is_refused(remotes, server, tmp_path):
    with pytest.raises(ToolError, match="not an environment variable name: 'A B'"):
        await run(remotes, launch("true", tmp_path, env={"A B": "x"}))
    assert server.commands == []


async def test_stdin_is_closed_without_a_tty(remotes, tmp_path):
    done, output = await run(remotes, launch("cat; echo after", tmp_path))
    assert (done.returncode, output) == (0, b"after\n")


async def test_the_remote_timeout_ends_the_command(remotes, tmp_path):
    done, _ = await run(remotes, launch("sleep 30", tmp_path, timeout_s=0.3))
    assert done == Exit(returncode=124, timed_out=True)


async def test_a_command_ignoring_sigterm_is_killed_after_the_grace(remotes, tmp_path):
    pid_file = tmp_path / "pid"
    script = f"trap '' TERM; sleep 30 & echo $! > {pid_file}; echo ready; wait"
    done, output = await run(remotes, launch(script, tmp_path, timeout_s=0.3))
    # `timeout` kills its whole group, itself included. OpenSSH reports that as the signal
    # (-9, see test_timeout_statuses_count_once_the_time_is_up); the kit's server as 256 - 9.
    assert done.returncode in {-signal.SIGKILL, 256 - signal.SIGKILL}
    assert output == b"ready\n"
    pid = int(pid_file.read_text())
    await eventually(lambda: not is_running(pid), what="the remote sleep ended")


@pytest.mark.parametrize(
    ("returncode", "duration_s", "timed_out"),
    [(124, 0.31, True), (137, 5.3, True), (-9, 5.3, True), (124, 0.1, False), (0, 9.0, False)],
)
def test_timeout_statuses_count_once_the_time_is_up(returncode, duration_s, timed_out):
    done = commands.exit_of(returncode, duration_s=duration_s, timeout_s=0.3)
    assert done == Exit(returncode=returncode, timed_out=timed_out)


async def test_exiting_124_in_time_is_not_a_timeout(remotes, tmp_path):
    done, _ = await run(remotes, launch("exit 124", tmp_path, timeout_s=30))
    assert done == Exit(returncode=124, timed_out=False)


async def test_the_client_gives_up_and_kills_the_group(remotes, tmp_path, monkeypatch):
    # The remote `timeout` would act at 30 s; the client's own deadline comes first here.
    monkeypatch.setattr(commands, "GIVE_UP_AFTER_S", -29.7)
    pid_file = tmp_path / "pid"
    script = f"sleep 30 & echo $! > {pid_file}; wait"
    done, _ = await run(remotes, launch(script, tmp_path, timeout_s=30))
    assert done == Exit(returncode=-signal.SIGKILL, timed_out=True)
    pid = int(pid_file.read_text())
    await eventually(lambda: not is_running(pid), what="the remote sleep ended")


async def test_cancel_kills_the_remote_process_group(remotes, server, tmp_path):
    pid_file = tmp_path / "pid"
    call = Call(remotes, launch(f"sleep 30 & echo $! > {pid_file}; echo started; wait", tmp_path))
    await call.printed(b"started\n")
    pid = int(pid_file.read_text())
    assert is_running(pid)
    call.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call.task
    await eventually(lambda: not is_running(pid), what="the remote sleep ended")
    assert any(command.startswith("g=") for command in server.commands)  # the second channel


async def test_cancel_right_after_the_start_still_ends_the_command(remotes, tmp_path):
    pid_file = tmp_path / "pid"
    call = Call(remotes, launch(f"echo $$ > {pid_file}; exec sleep 30", tmp_path))
    await eventually(pid_file.exists, what="the command started")
    call.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call.task
    pid = int((await eventually(pid_file.read_text, what="the pid written")).strip())
    await eventually(lambda: not is_running(pid), what="the remote command ended")


@pytest.mark.parametrize(
    ("signum", "returncode", "said"),
    [(signal.SIGINT, 7, b"got INT\n"), (signal.SIGTERM, 8, b"got TERM\n")],
)
async def test_controls_signal_the_remote_group(remotes, tmp_path, signum, returncode, said):
    script = (
        "trap 'echo got INT; kill $!; exit 7' INT; trap 'echo got TERM; exit 8' TERM;"
        " sleep 30 >/dev/null & echo ready; wait"  # a trapped signal ends `wait` at once
    )
    call = Call(remotes, launch(script, tmp_path))
    await call.printed(b"ready\n")
    call.controls.signal(signum)
    done = await call.task
    assert done == Exit(returncode=returncode, timed_out=False)
    assert bytes(call.output) == b"ready\n" + said


async def test_controls_kill_ends_what_ignores_gentler_signals(remotes, tmp_path):
    pid_file = tmp_path / "pid"
    script = f"trap '' INT TERM; sleep 30 & echo $! > {pid_file}; echo ready; wait"
    call = Call(remotes, launch(script, tmp_path))
    await call.printed(b"ready\n")
    call.controls.signal(signal.SIGKILL)
    done = await call.task
    assert done.returncode != 0
    assert not done.timed_out
    pid = int(pid_file.read_text())
    await eventually(lambda: not is_running(pid), what="the remote sleep ended")


async def test_a_tty_takes_input(remotes, tmp_path):
    call = Call(remotes, launch("echo ready; read line; echo got:$line", tmp_path, tty=True))
    await call.printed(b"ready")
    assert call.controls.fd >= 0
    await call.controls.write(b"hello\n")
    done = await call.task
    assert done.returncode == 0
    assert b"got:hello" in call.output
    assert call.controls.fd < 0
    with pytest.raises(ToolError, match="terminal is closed"):
        await call.controls.write(b"late\n")


async def test_without_a_tty_there_is_no_input(remotes, tmp_path):
    call = Call(remotes, launch("echo ready; sleep 30", tmp_path))
    await call.printed(b"ready")
    assert call.controls.fd < 0
    with pytest.raises(ToolError, match="terminal is closed"):
        await call.controls.write(b"hello\n")
    call.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call.task


async def test_a_remote_dropping_mid_command_is_unreachable(server, tmp_path):
    async with proxy_to(server.port) as proxy:
        table = server.remote(tmp_path, port=proxy.port)
        remotes = Remotes({"box": msgspec.convert(table, RemoteConfig)})
        pid_file = tmp_path / "pid"
        try:
            call = Call(remotes, launch(f"echo $$ > {pid_file}; echo ready; sleep 30", tmp_path))
            await call.printed(b"ready")
            proxy.cut()
            with pytest.raises(ToolError, match="cannot reach remote box: ") as dropped:
                await call.task
        finally:
            await remotes.close()
    assert dropped.value.kind == "remote_unreachable"
    # The command runs on until its `timeout`; end it here rather than wait for the kit's server.
    os.killpg(os.getpgid(int(pid_file.read_text())), signal.SIGKILL)


def test_the_command_line_quotes_dir_variables_and_command():
    how = RemoteLaunch(command="echo 'a'", cwd="/x y", timeout_s=1800, env={"V": "b c"})
    assert commands.command_line(how) == (
        "echo stellaclaw-pgid $$; cd '/x y' && V='b c' exec timeout -k 5 1800 bash -c "
        + shlex.quote("echo 'a'")
    )
