"""Bad input through the real tools service (issue 16's matrix): each case gives the model a
clear tool error or a bounded result, and the runner stays healthy for the next call."""

import os

import msgspec
import pytest

from services.tools.service import run
from shared import subjects
from shared.messages.events import BadMessage
from shared.messages.tools import ToolFailed, ToolFinished
from tests.integration.test_tools import CONFIG, call, output
from tests.kit import web_pages
from tests.kit.services import make_runtime, running
from tests.unit.tools.samples import run_tool

BAD = msgspec.json.Decoder(BadMessage)

SIZE_50_MB = 50 * 1024 * 1024
Case = tuple[str, object, str, str]  # tool, arguments, error kind, words in the error

REFUSED: list[Case] = [
    ("shell", {"command": 5}, "invalid_arguments", "Expected `str`, got `int`"),
    ("shell", {"cmd": "ls"}, "invalid_arguments", 'unknown argument "cmd"; accepted: command'),
    ("shell", {"command": "ls", "wait_s": -1}, "invalid_arguments", "Expected `float` >= 0"),
    ("teleport", {}, "unknown_tool", "unknown tool: teleport"),
    ("file_read", {"file_path": "notes\u0000.txt"}, "invalid_arguments", "NUL byte"),
    ("file_read", {"file_path": "a/" * 2_100}, "invalid_arguments", "longer than 4,096 bytes"),
    ("file_read", {"file_path": "../tg_2/notes.txt"}, "outside_workspace", "outside"),
    ("file_write", {"file_path": "/etc/stellaclaw", "content": ""}, "outside_workspace", "/etc"),
    ("file_read", {"file_path": "door/secret"}, "outside_workspace", "door/secret"),
    ("file_read", {"file_path": "swapped.txt"}, "outside_workspace", "swapped.txt"),
    ("grep", {"pattern": "(unclosed"}, "invalid_arguments", "invalid regex"),
    ("ls", {"path": ".", "depth": 99}, "invalid_arguments", "<= 10"),
]


@pytest.fixture
def runtime(workdir, nats_access):
    tools = {"tools": {"allow_private_network": True, "download_max_mb": 1}}
    return make_runtime(CONFIG | tools, workdir, nats_access)


def failure(finished: ToolFinished) -> tuple[str, str]:
    result = finished.result
    assert isinstance(result, ToolFailed), result
    return result.error_kind, result.error


async def test_every_bad_input_is_a_clear_error_and_the_runner_goes_on(bus, runtime, workdir):
    secret = workdir / "secret"
    secret.write_text("not for the model", encoding="utf-8")
    async with running(runtime, run):
        wrote = await call(
            bus, run_tool("file_write", {"file_path": "swapped.txt", "content": "ok"})
        )
        assert output(wrote)["created"] is True
        root = workdir / "workspaces" / "tg_1"
        (root / "door").symlink_to(workdir)
        os.unlink(root / "swapped.txt")  # between two calls, the file becomes a link out
        (root / "swapped.txt").symlink_to(secret)
        for number, (tool, arguments, kind, words) in enumerate(REFUSED):
            finished = await call(bus, run_tool(tool, arguments, call=f"bad{number}"))
            found_kind, error = failure(finished)
            assert (found_kind, words in error) == (kind, True), (tool, arguments, error)
        healthy = await call(bus, run_tool("shell", {"command": "echo ok"}, call="after"))
    assert output(healthy)["output"] == "ok\n"
    assert secret.read_text(encoding="utf-8") == "not for the model"


async def test_binary_huge_and_endless_output_comes_back_bounded(bus, runtime, workdir):
    huge = f"head -c {SIZE_50_MB} /dev/zero | tr '\\0' a"
    async with running(runtime, run):
        binary = output(
            await call(bus, run_tool("shell", {"command": "head -c 4000 /dev/urandom"}, call="bin"))
        )
        big = output(await call(bus, run_tool("shell", {"command": huge}, call="big")))
        endless = output(
            await call(bus, run_tool("shell", {"command": "sleep 300", "timeout_s": 1}, call="end"))
        )
        healthy = await call(bus, run_tool("shell", {"command": "echo ok"}, call="after"))
    assert binary["running"] is False
    assert len(str(binary["output"])) <= 20_000 + 100
    assert (big["output_truncated"], big["log_truncated"], big["total_output_chars"]) == (
        True,
        True,
        SIZE_50_MB,
    )
    assert len(str(big["output"])) < 20_100
    log = workdir / "workspaces" / "tg_1" / str(big["log_path"])
    assert log.stat().st_size == 32 * 1024 * 1024
    assert (endless["timed_out"], endless["signal"]) == (True, "SIGTERM")
    assert output(healthy)["output"] == "ok\n"


async def test_a_download_over_the_cap_fails_and_leaves_nothing(bus, runtime, workdir):
    async with web_pages.serving() as site, running(runtime, run):
        arguments = {"url": site.url("/large/2097152"), "file_path": "big.bin", "wait_s": 30}
        status = output(await call(bus, run_tool("file_download_start", arguments, call="dl")))
        healthy = await call(bus, run_tool("shell", {"command": "echo ok"}, call="after"))
    assert status["state"] == "failed"
    assert "1 MiB" in str(status["error"]) or "1 MB" in str(status["error"])
    root = workdir / "workspaces" / "tg_1"
    assert not (root / "big.bin").exists()
    assert list((root / ".stellaclaw" / "downloads").glob("*.part")) == []
    assert output(healthy)["output"] == "ok\n"


async def test_a_malformed_run_tool_on_the_bus_is_reported_and_hurts_no_runner(bus, runtime):
    await bus.watch(subjects.BAD_MESSAGE_EVENT)
    async with running(runtime, run):
        request = subjects.tool_request("local", "tg_1_fg1")
        await bus.publish(request, b'{"kind": "run_tool", "oops": 1}')
        await bus.publish(request, b"\xff not json")
        healthy = await call(bus, run_tool("shell", {"command": "echo ok"}, call="after"))
        reports = [await bus.next(subjects.BAD_MESSAGE_EVENT, BAD) for _ in range(2)]
    assert output(healthy)["output"] == "ok\n"
    assert [(r.service, r.subject) for r in reports] == [("tools", request)] * 2
    assert all(r.reason.startswith("malformed message:") for r in reports)
