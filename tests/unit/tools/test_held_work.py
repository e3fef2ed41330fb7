"""What `/status` lists as running on in a workspace (SPEC §12.4): the label and start time of a
handle's record, old records, and the listing of `.stellaclaw/handles/`: its order, what is left
out (ended, not running in this runner, bad records), its cap, and workspaces that are not there."""

import time

import msgspec
import pytest

from services.tools import handles, held
from services.tools.context import RunnerContext
from shared.messages.contract import Workspace
from shared.messages.tools import HeldWork
from tests.unit.tools.samples import UNPROBED, tool_call

WORKSPACE = Workspace(pool="local", path="workspaces/tg_1")


def kept(name: str, record: handles.Record) -> bool:
    return not record.ended


@pytest.fixture
def call(workdir):
    return msgspec.structs.replace(tool_call(workdir), runner=RunnerContext(runner_id="r-a"))


def put(workdir, name: str, data: bytes) -> None:
    directory = workdir / WORKSPACE.path / handles.HANDLES_DIR
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data)


def record(runner_id: str = "r-b", **fields) -> bytes:
    return msgspec.json.encode(handles.Record(runner_id=runner_id, **fields))


def test_a_label_is_one_line_cut_to_60_characters():
    assert handles.short("npm run dev") == "npm run dev"
    assert handles.short("cd app &&\n  npm   run dev") == "cd app && npm run dev"
    long = handles.short("https://example.com/" + "a" * 100)
    assert len(long) == handles.MAX_LABEL_CHARS
    assert long == "https://example.com/" + "a" * 39 + "…"
    assert handles.short("x" * handles.MAX_LABEL_CHARS) == "x" * handles.MAX_LABEL_CHARS


def test_allocate_records_what_runs_since_when_and_for_whom(call):
    before = time.time()
    first = handles.allocate(call, "sh", "sleep 60  &&\techo done")
    second = handles.allocate(call, "sh", "make", started_at=1234.5)
    found = handles.read(call, first)
    assert (first, second) == ("sh1", "sh2")
    assert found is not None
    assert (found.runner_id, found.label, found.conversation_id) == (
        "r-a",
        "sleep 60 && echo done",
        "tg_1",
    )
    assert before <= found.started_at <= time.time()
    assert handles.read(call, second) == handles.Record(
        runner_id="r-a", started_at=1234.5, label="make", conversation_id="tg_1"
    )


def test_a_record_written_before_labels_still_decodes(call, workdir):
    put(workdir, "sh4", b'{"runner_id":"r-old","ended":true,"exit_code":0}')
    assert handles.read(call, "sh4") == handles.Record(runner_id="r-old", ended=True, exit_code=0)


def test_the_listing_is_shell_sessions_then_downloads_by_number(workdir):
    for name in ("dl2", "sh10", "dl1", "sh2", "sh3"):
        put(workdir, name, record(started_at=float(len(name)), label=f"run {name}"))
    put(workdir, "sh3", record(ended=True, exit_code=0))
    put(workdir, ".sh5.0a1b.tmp", record())  # a record being written
    put(workdir, "notes", b"not a name")
    listed = works(held.listed(WORKSPACE, workdir, UNPROBED, kept))
    assert listed == [
        HeldWork(name="sh2", started_at=3.0, label="run sh2"),
        HeldWork(name="sh10", started_at=4.0, label="run sh10"),
        HeldWork(name="dl1", started_at=3.0, label="run dl1"),
        HeldWork(name="dl2", started_at=3.0, label="run dl2"),
    ]


def test_bad_records_are_left_out_and_the_rest_listed(workdir):
    put(workdir, "sh1", b"{not json")
    put(workdir, "sh2", b"x" * (handles.MAX_RECORD_BYTES + 1))
    (workdir / WORKSPACE.path / handles.HANDLES_DIR / "sh3").mkdir()
    (workdir / WORKSPACE.path / handles.HANDLES_DIR / "sh4").symlink_to("/etc/passwd")
    put(workdir, "sh5", record(label="ok"))
    listed = works(held.listed(WORKSPACE, workdir, UNPROBED, kept))
    assert [work.name for work in listed] == ["sh5"]


def test_this_runners_records_count_only_while_it_runs_them():
    def running(name: str, found: handles.Record) -> bool:
        live = {"tg_1": {"sh1"}, "tg_2": {"sh2"}}
        return held.is_running(name, found, runner_id="r-a", live=live)

    mine = handles.Record(runner_id="r-a", conversation_id="tg_1")
    assert running("sh1", mine)
    assert not running("sh2", mine)  # its command exited, or another conversation's name
    assert not running("sh1", msgspec.structs.replace(mine, ended=True))
    assert running("sh9", handles.Record(runner_id="r-b"))  # that runner answers for itself
    assert not running("sh9", handles.Record(runner_id="r-b", ended=True))


def test_at_most_64_entries_are_listed(workdir):
    for number in range(1, held.MAX_ENTRIES + 11):
        put(workdir, f"sh{number}", record())
    listed = works(held.listed(WORKSPACE, workdir, UNPROBED, kept))
    assert [work.name for work in listed] == [f"sh{n}" for n in range(1, held.MAX_ENTRIES + 1)]


def test_a_workspace_without_names_or_not_there_lists_nothing(workdir):
    assert works(held.listed(WORKSPACE, workdir, UNPROBED, kept)) == []
    (workdir / WORKSPACE.path / ".stellaclaw").mkdir(parents=True)
    assert works(held.listed(WORKSPACE, workdir, UNPROBED, kept)) == []


async def test_a_workspace_outside_the_workdir_is_answered_with_nothing(workdir):
    context = RunnerContext(runner_id="r-a")
    outside = Workspace(pool="local", path="/etc")
    assert await held.work_in(context, UNPROBED, workdir, outside, alive) == []


async def test_work_in_lists_other_runners_records_and_leaves_out_this_ones_gone(workdir):
    put(workdir, "sh1", record(runner_id="r-a", conversation_id="tg_1", label="gone"))
    put(workdir, "dl1", record(runner_id="r-b", started_at=5.0, label="https://example.com/x"))
    put(workdir, "dl2", record(runner_id="r-dead", started_at=6.0, label="https://example.com/y"))
    context = RunnerContext(runner_id="r-a")
    asked: list[str] = []

    async def alive_but_dead(runner_id: str) -> bool:
        asked.append(runner_id)
        return runner_id != "r-dead"

    found = await held.work_in(context, UNPROBED, workdir, WORKSPACE, alive_but_dead)
    assert found == [HeldWork(name="dl1", started_at=5.0, label="https://example.com/x")]
    assert asked == ["r-b", "r-dead"]  # once per other runner, never this one


def works(found: list[tuple[HeldWork, str]]) -> list[HeldWork]:
    return [work for work, _ in found]


async def alive(runner_id: str) -> bool:
    return True
