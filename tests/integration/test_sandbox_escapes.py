"""Escape attempts from inside bubblewrap (SPEC §6.4, DESIGN §11), through the real tools service
on a real nats-server: every one fails, and the service stays healthy. Plus the process limit,
the whole-tree kills and `auto`, in both confining modes where they apply."""

import os
from pathlib import Path
from urllib.parse import urlparse

import pytest

from services.tools.service import run
from shared import subjects
from shared.bus import BusAccess, encode
from shared.messages.tools import CancelCall, ToolFailed
from tests.integration.test_tools import CONFIG, call, finished_on, output
from tests.kit import processes, sandbox
from tests.kit.services import make_runtime, running
from tests.kit.waiting import eventually
from tests.unit.tools.samples import in_mode, run_tool

SECRET = "escape-test-secret-4711"


@pytest.fixture
async def bubblewrap_host():
    async with sandbox.probed() as found:
        sandbox.skip_unless_usable(found, "bubblewrap")
        yield found


@pytest.fixture
def places(tmp_path: Path, workdir: Path) -> dict[str, Path]:
    """What a command must not reach: the config, another workspace, the store, a software dir."""
    config = workdir / "stellaclaw.toml"
    config.write_text(f'# api_key = "{SECRET}"\n', encoding="utf-8")
    other = workdir / "workspaces" / "tg_2"
    other.mkdir(parents=True)
    (other / "private.txt").write_text(SECRET, encoding="utf-8")
    software = tmp_path / "software"
    (software / "bin").mkdir(parents=True)
    (software / "bin" / "hello").write_text("#!/bin/sh\necho hello from software\n")
    (software / "bin" / "hello").chmod(0o755)
    outside = tmp_path / "outside"
    outside.mkdir()
    return {
        "config": config,
        "other": other / "private.txt",
        "store": tmp_path / "nats",
        "software": software,
        "outside": outside,
    }


def confined_runtime(workdir: Path, access: BusAccess, software: Path, **sandbox_table: object):
    raw = CONFIG | {"sandbox": {"software_dir": str(software), **sandbox_table}}
    return make_runtime(raw, workdir, access)


async def shell(bus, command: str, call_id: str, **arguments: object) -> dict[str, object]:
    request = in_mode(
        run_tool("shell", {"command": command, **arguments}, call=call_id), "bubblewrap"
    )
    return output(await call(bus, request))


async def test_every_escape_attempt_from_bubblewrap_fails(
    bus, workdir, nats_access, places, bubblewrap_host
):
    runtime = confined_runtime(workdir, nats_access, places["software"])
    port = urlparse(nats_access.url).port
    (workdir / "workspaces" / "tg_1").mkdir(parents=True)
    (workdir / "workspaces" / "tg_1" / "door").symlink_to(places["outside"])
    attempts = {
        "write /etc": "echo x > /etc/x",
        "read the config": f"cat {places['config']}",
        "read another workspace": f"cat {places['other']}",
        "read the JetStream store": f"ls {places['store']}",
        "reach the NATS port": f"exec 3<>/dev/tcp/127.0.0.1/{port}",
        "reach an outside address": "exec 3<>/dev/tcp/1.1.1.1/80",
        "write through a symlink out": "echo x > door/escaped",
        "write the software dir": "touch /opt/bin/mine",
        "kill the tools service": f"kill -9 {os.getpid()}",
    }
    async with running(runtime, run):
        results = {
            what: await shell(bus, command, f"e{n}")
            for n, (what, command) in enumerate(attempts.items())
        }
        environ = await shell(
            bus, "cat /proc/*/environ | tr '\\0' '\\n'; ls -d /proc/[0-9]*", "env"
        )
        software = await shell(bus, "hello; echo $STELLACLAW_SOFTWARE_DIR", "sw")
        # its parent is bwrap's init in the sandbox's PID namespace, which ignores SIGKILL
        parent = await shell(bus, "echo $PPID; kill -9 $PPID; echo survived", "ppid")
        alive = await shell(bus, "echo still here", "alive")
    failed = {what: result["exit_code"] != 0 for what, result in results.items()}
    assert failed == dict.fromkeys(attempts, True), results
    assert SECRET not in str(results)
    written = [Path("/etc/x"), places["outside"] / "escaped", places["software"] / "bin" / "mine"]
    assert not any_exists(written)
    seen = str(environ["output"])
    assert SECRET not in seen
    assert "kit-secret-value" not in seen
    assert "STELLACLAW_CONVERSATION=tg_1" in seen  # its own processes only
    assert sorted(line for line in seen.splitlines() if line.startswith("/proc/")) <= [
        "/proc/1",
        "/proc/2",
        "/proc/3",
        "/proc/4",
        "/proc/5",
    ]
    assert software["output"] == "hello from software\n/opt\n"
    assert parent["output"] == "1\nsurvived\n"
    assert alive["output"] == "still here\n"


@pytest.mark.parametrize("mode", sandbox.MODES)
async def test_a_fork_bomb_is_a_failed_command_and_the_runner_stays_healthy(
    bus, workdir, nats_access, mode
):
    runtime = make_runtime(CONFIG | {"sandbox": {"pids_limit": 64}}, workdir, nats_access)
    async with sandbox.probed() as found:
        sandbox.skip_unless_usable(found, mode)
        sandbox.skip_without_pids_cgroup(found)
    bomb = "bomb() { bomb | bomb; }; bomb"
    async with running(runtime, run):
        request = in_mode(run_tool("shell", {"command": bomb, "timeout_s": 3}, call="bomb"), mode)
        result = output(await call(bus, request))
        after = output(
            await call(bus, in_mode(run_tool("shell", {"command": "echo ok"}, call="ok"), mode))
        )
    assert result["timed_out"] is True
    assert "Resource temporarily unavailable" in str(result["output"])
    assert after["output"] == "ok\n"


@pytest.mark.parametrize("mode", sandbox.MODES)
async def test_setsid_and_background_children_end_with_their_call(bus, workdir, nats_access, mode):
    async with sandbox.probed() as found:
        sandbox.skip_unless_usable(found, mode)
        if mode == "subprocess":  # only its cgroup finds a child that left the process group
            sandbox.skip_without_pids_cgroup(found)
    runtime = make_runtime(CONFIG, workdir, nats_access)
    spawn = "setsid sleep 299.5 & sleep 299.5 & echo started"  # a line no other test runs
    async with running(runtime, run):
        waits = {"command": f"{spawn}; wait", "timeout_s": 1}
        timed = in_mode(run_tool("shell", waits, call="t"), mode)
        ended = in_mode(run_tool("shell", {"command": spawn}, call="n"), mode)
        results = [output(await call(bus, request)) for request in (timed, ended)]
    assert [result["output"] for result in results] == ["started\n", "started\n"]
    assert results[0]["timed_out"] is True
    await eventually(lambda: not processes.alive("sleep", "299.5"), what="every sleep ended")


@pytest.mark.parametrize("mode", sandbox.MODES)
async def test_a_cancelled_call_takes_its_setsid_children_along(bus, workdir, nats_access, mode):
    async with sandbox.probed() as found:
        sandbox.skip_unless_usable(found, mode)
        if mode == "subprocess":
            sandbox.skip_without_pids_cgroup(found)
    runtime = make_runtime(CONFIG, workdir, nats_access)
    command = {"command": "setsid sleep 301 & sleep 301"}
    request = in_mode(run_tool("shell", command, call="c_cancel"), mode)
    result_subject = subjects.tool_result(request.session_id, request.call_id)
    await bus.watch(result_subject)
    async with running(runtime, run):
        await bus.publish(subjects.tool_request("local", request.session_id), request)
        await eventually(lambda: len(processes.alive("sleep", "301")) == 2, what="both sleeping")
        cancel = CancelCall(session_id=request.session_id, call_id=request.call_id)
        await bus.nc.request(
            subjects.tool_cancel(request.session_id, request.call_id), encode(cancel), timeout=5
        )
        finished = await finished_on(bus, result_subject)
        await eventually(lambda: not processes.alive("sleep", "301"), timeout_s=3, what="gone")
    assert isinstance(finished.result, ToolFailed)
    assert finished.result.error_kind == "cancelled"


def any_exists(paths: list[Path]) -> bool:
    return any(path.exists() for path in paths)


async def test_auto_is_bubblewrap_here_and_subprocess_with_a_warning_without_bwrap(
    bus, workdir, nats_access, caplog
):
    async with sandbox.probed() as found:
        sandbox.skip_unless_usable(found, "bubblewrap")
    here = make_runtime(CONFIG, workdir, nats_access)
    without = make_runtime(
        CONFIG | {"sandbox": {"bwrap_path": "/nonexistent/bwrap"}}, workdir, nats_access
    )
    probe = "echo $$"
    async with running(here, run):
        auto_here = output(
            await call(bus, in_mode(run_tool("shell", {"command": probe}, call="a1"), "auto"))
        )
    async with running(without, run):
        auto_without = output(
            await call(bus, in_mode(run_tool("shell", {"command": probe}, call="a2"), "auto"))
        )
        refused = await call(
            bus, in_mode(run_tool("shell", {"command": probe}, call="a3"), "bubblewrap")
        )
    assert auto_here["output"] == "2\n"  # its own PID namespace
    assert auto_without["output"] != "2\n"
    assert "sandbox: auto runs commands in subprocess mode" in caplog.text
    assert "/nonexistent/bwrap is not installed" in caplog.text
    assert refused.result.error_kind == "unavailable"  # type: ignore[union-attr]
    assert refused.result.error == (  # type: ignore[union-attr]
        "bubblewrap cannot run on this host: "
        "/nonexistent/bwrap is not installed (sandbox.bwrap_path)"
    )
