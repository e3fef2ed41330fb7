"""shell per SPEC §5.2, the same suite in subprocess and bubblewrap mode (§6.1-6.4): real bash,
real `bwrap`, real cgroups."""

import msgspec
import pytest

from services.tools.builtin.shell import ShellArgs, ShellResult, shell
from services.tools.builtin.shell_output import LOG_LIMIT_BYTES
from services.tools.results import ToolError
from tests.kit import sandbox
from tests.unit.tools.samples import tool_call


@pytest.fixture(params=sandbox.MODES)
def call(request, workdir, sandbox_host):
    sandbox.skip_unless_usable(sandbox_host, request.param)
    return tool_call(workdir, host=sandbox_host, sandbox=request.param)


async def run(call, command: str, **arguments) -> ShellResult:
    return await shell(ShellArgs(command=command, **arguments), call)


async def test_a_command_runs_and_its_output_is_logged(call):
    result = await run(call, "echo hi")
    assert (result.running, result.exit_code, result.signal, result.timed_out) == (
        False,
        0,
        None,
        False,
    )
    assert (result.output, result.output_truncated, result.total_output_chars) == ("hi\n", False, 3)
    assert (result.log_path, result.workdir) == (".stellaclaw/shell/c1.log", ".")
    assert (call.root / result.log_path).read_text(encoding="utf-8") == "hi\n"


async def test_stdout_and_stderr_merge_in_arrival_order(call):
    result = await run(call, "echo out; echo err >&2; echo out2")
    assert result.output == "out\nerr\nout2\n"


async def test_the_environment_is_only_spec_6_2_never_the_services(call, monkeypatch):
    monkeypatch.setenv("STELLACLAW_TEST_SECRET", "hunter2-token")
    result = await run(call, "env")
    seen = dict(line.split("=", 1) for line in result.output.splitlines())
    assert "hunter2-token" not in result.output
    assert set(seen) - {"PWD", "SHLVL", "_"} == {
        "PATH",
        "HOME",
        "LANG",
        "TERM",
        "TMPDIR",
        "STELLACLAW_WORKSPACE",
        "STELLACLAW_CONVERSATION",
    }
    assert seen["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    assert seen["HOME"] == str(call.root / ".stellaclaw" / "home")
    assert (seen["LANG"], seen["TERM"], seen["TMPDIR"]) == ("C.UTF-8", "dumb", "/tmp")
    assert seen["STELLACLAW_WORKSPACE"] == str(call.root)
    assert seen["STELLACLAW_CONVERSATION"] == "tg_1"


async def test_the_command_runs_under_the_spec_6_3_limits(call):
    result = await run(call, "ulimit -v; ulimit -f; ulimit -n; ulimit -Hv")
    assert result.output == "4194304\n2097152\n4096\n4194304\n"


async def test_the_command_leads_its_own_session_and_process_group(call):
    result = await run(call, "echo $$ $(awk '{print $5, $6}' /proc/$$/stat)")
    pid, group, session = result.output.split()
    if call.mode == "bubblewrap":  # its own PID namespace: bwrap's init leads, the command is 2
        assert (pid, group, session) == ("2", "1", "1")
    else:
        assert pid == group == session


async def test_exit_codes_and_signals_are_reported(call):
    failed = await run(call, "exit 3")
    killed = await run(call, "kill -KILL $$")
    assert (failed.exit_code, failed.signal) == (3, None)
    # bwrap reports its command's death by a signal as a shell does: 128 + the signal
    signal_name = None if call.mode == "bubblewrap" else "SIGKILL"
    assert (killed.exit_code, killed.signal) == (137, signal_name)


async def test_long_output_keeps_head_and_tail_and_the_log_keeps_all(call):
    result = await run(call, "seq 1 30000", max_output_chars=1000)
    whole = "".join(f"{n}\n" for n in range(1, 30001))
    omitted = len(whole) - 1000
    assert result.output == whole[:400] + f"…[{omitted} chars omitted]…" + whole[-600:]
    assert (result.output_truncated, result.total_output_chars) == (True, len(whole))
    assert (call.root / result.log_path).read_text(encoding="utf-8") == whole
    assert result.log_truncated is False


async def test_the_log_stops_at_32_mib(call):
    result = await run(call, f"head -c {LOG_LIMIT_BYTES + 10} /dev/zero | tr '\\0' a")
    assert (call.root / result.log_path).stat().st_size == LOG_LIMIT_BYTES
    assert result.log_truncated is True
    assert result.total_output_chars == LOG_LIMIT_BYTES + 10


async def test_a_workdir_runs_the_command_there(call):
    (call.root / "src" / "app").mkdir(parents=True)
    result = await run(call, "pwd", workdir="src/app")
    assert result.output == f"{call.root / 'src' / 'app'}\n"
    assert result.workdir == "src/app"


async def test_a_workdir_outside_or_missing_is_refused(call):
    with pytest.raises(ToolError, match=r"^path is outside the workspace: /etc$"):
        await run(call, "pwd", workdir="/etc")
    with pytest.raises(ToolError, match=r"^workdir nope is not a directory in the workspace$"):
        await run(call, "pwd", workdir="nope")


async def test_the_result_json_has_the_finished_fields(call):
    result = await run(call, "true")
    fields = msgspec.json.decode(msgspec.json.encode(result))
    assert list(fields) == [
        "running",
        "exit_code",
        "timed_out",
        "duration_s",
        "output",
        "output_truncated",
        "total_output_chars",
        "log_path",
        "workdir",
    ]
