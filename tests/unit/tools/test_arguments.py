"""The model's arguments are decoded strictly; every mistake is a ToolFailed it can act on."""

import asyncio

import msgspec
import pytest

from services.tools import catalog
from services.tools.builtin.shell import ShellArgs
from services.tools.results import Result, ToolError
from services.tools.runner import Hooks, Place, outcome
from shared.messages.tools import ToolFailed, ToolTraits
from tests.unit.tools.samples import UNPROBED, run_tool, tool_call

SHELL = msgspec.json.Decoder(ShellArgs)


def failure(raw: bytes) -> ToolError:
    with pytest.raises(ToolError) as caught:
        catalog.decode(SHELL, ShellArgs, raw)
    return caught.value


def test_an_unknown_argument_names_the_accepted_ones():
    error = failure(b'{"cmd": "ls"}')
    assert error.kind == "invalid_arguments"
    assert str(error) == (
        'unknown argument "cmd"; accepted: command, session, input, workdir, wait_s, timeout_s,'
        " tty, max_output_chars"
    )


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b'{"command": ls}', "arguments are not valid JSON: JSON is malformed"),
        (b'{"command": "ls"', "arguments are not valid JSON: Input data was truncated"),
        (b'{"command": "ls", "wait_s": 301}', "Expected `float` <= 300.0 - at `$.wait_s`"),
        (b'{"command": 5}', "Expected `str`, got `int` - at `$.command`"),
        (b'{"command": ""}', "Expected `str` of length >= 1 - at `$.command`"),
        (b'{"command": "ls", "timeout_s": 0}', "Expected `float` >= 1.0 - at `$.timeout_s`"),
        (b'["ls"]', "Expected `object`, got `array`"),
    ],
)
def test_bad_arguments_fail_in_msgspecs_words(raw, words):
    error = failure(raw)
    assert error.kind == "invalid_arguments"
    assert words in str(error)


def test_defaults_fill_what_the_model_left_out():
    args = catalog.decode(SHELL, ShellArgs, b'{"command": "ls"}')
    assert (args.workdir, args.timeout_s, args.max_output_chars) == (".", 1800.0, 20_000)


async def not_started(limit_s: float) -> None:
    raise AssertionError(f"a call that must not run was started with a {limit_s} s limit")


async def test_the_runner_answers_an_unknown_tool_and_bad_arguments(workdir):
    unknown = await outcome(
        run_tool("telepathy", {}),
        1,
        Place(workdir=workdir, sandbox=UNPROBED),
        Hooks(started=not_started),
    )
    bad = await outcome(
        run_tool("shell", {"cmd": "ls"}),
        1,
        Place(workdir=workdir, sandbox=UNPROBED),
        Hooks(started=not_started),
    )
    assert unknown == ToolFailed(error_kind="unknown_tool", error="unknown tool: telepathy")
    assert isinstance(bad, ToolFailed)
    assert bad.error_kind == "invalid_arguments"
    assert bad.error.startswith('unknown argument "cmd"')


async def test_a_side_effecting_tool_delivered_again_is_not_run(workdir):
    request = run_tool("shell", {"command": "touch ran"})
    result = await outcome(
        request, 2, Place(workdir=workdir, sandbox=UNPROBED), Hooks(started=not_started)
    )
    assert result == ToolFailed(
        error_kind="interrupted_by_restart",
        error="interrupted by a restart; not re-run. Check its effects before repeating it.",
    )
    assert not (workdir / "workspaces" / "tg_1" / "ran").exists()


class WaitArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Wait for ever."""


async def wait_for_ever(args: WaitArgs, call) -> Result:
    await asyncio.Event().wait()
    raise AssertionError("never set")


async def test_a_call_past_its_hard_limit_is_cancelled(workdir):
    invoke = catalog.bind(WaitArgs, wait_for_ever, 0.05)
    announced: list[float] = []

    async def started(limit_s: float) -> None:
        announced.append(limit_s)

    with pytest.raises(ToolError, match=r"^timed out after 0\.05 s$") as caught:
        await invoke(b"{}", tool_call(workdir), started)
    assert caught.value.kind == "timed_out"
    assert announced == [0.05]  # the limit it ran under was announced before it started


class NoArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Fail in a way no tool should."""


async def broken(args: NoArgs, call) -> Result:
    raise KeyError("a bug")


async def test_a_fault_in_a_tool_is_a_failure_for_the_model_not_a_dead_runner(workdir, monkeypatch):
    from services.tools.tool_table import TOOLS

    tool = catalog.Tool(
        name="broken",
        arguments=NoArgs,
        invoke=catalog.bind(NoArgs, broken, 5.0),
        traits=ToolTraits(is_serial=False, is_idempotent=True),
    )
    monkeypatch.setitem(TOOLS, "broken", tool)

    async def started(limit_s: float) -> None:
        return None

    place = Place(workdir=workdir, sandbox=UNPROBED)
    result = await outcome(run_tool("broken", {}), 1, place, Hooks(started=started))
    assert result == ToolFailed(error_kind="failed", error="broken failed unexpectedly (KeyError)")
