"""PlaceFiles through a real tools runner (DESIGN §4, SPEC §2.4): a message's attachments go from
sc_files into the workspace's `upload/`, locally and on a fixed SSH remote; the same bytes asked
again change nothing, a different file at the path moves the new one to `-2`."""

import os

import msgspec
import pytest
from nats.errors import NoRespondersError

from services.tools.service import run
from shared import layout, subjects
from shared.bus import encode
from shared.ids import ConversationId
from shared.messages.contract import Attachment, Workspace
from shared.messages.events import BadMessage
from shared.messages.tools import FILES_PLACED, EndWork, FilesPlaced, PlaceFiles
from tests.integration.test_tools import CONFIG
from tests.kit.attachments import stored
from tests.kit.nats import TestBus
from tests.kit.services import make_runtime, running
from tests.kit.waiting import eventually, eventually_async

CONV = ConversationId("tg_1")
LOCAL = Workspace(pool="local", path=f"workspaces/{CONV}")
REPORT = b"%PDF-1.4 quarterly report\n"
NOTES = b"notes for the meeting\n"
BAD = msgspec.json.Decoder(BadMessage)


@pytest.fixture
def runtime(workdir, nats_access):
    return make_runtime(CONFIG, workdir, nats_access)


@pytest.fixture
def root(workdir):
    return workdir / "workspaces" / CONV


async def file(bus: TestBus, name: str, data: bytes, media_type: str = "text/plain") -> Attachment:
    """A file stored in sc_files as ingress stores it, for `upload/<stamp>-<name>`."""
    found = await stored(bus, CONV, name, data, media_type)
    return msgspec.structs.replace(found, path=f"upload/20250301-101500-{name}")


async def place(
    bus: TestBus, files: list[Attachment], workspace: Workspace = LOCAL
) -> list[Attachment]:
    """Ask the pool as the session does, once a runner listens (it subscribes as it starts)."""
    request = encode(PlaceFiles(conversation_id=CONV, workspace=workspace, files=files))

    async def answered() -> FilesPlaced | None:
        try:
            reply = await bus.nc.request(subjects.tool_place(workspace.pool), request, timeout=10)
        except NoRespondersError:
            return None
        return FILES_PLACED.decode(reply.data)

    found = await eventually_async(answered, timeout_s=10, what="a runner placed the files")
    return found.placed


async def test_files_land_in_upload_and_asking_again_changes_nothing(bus, runtime, root):
    report = await file(bus, "report.pdf", REPORT, "application/pdf")
    notes = await file(bus, "notes.txt", NOTES)
    async with running(runtime, run):
        first = await place(bus, [report, notes])
        inodes = [os.stat(root / a.path).st_ino for a in first]
        again = await place(bus, [report, notes])
    assert first == again == [report, notes]  # the paths asked for, no error
    assert (root / report.path).read_bytes() == REPORT
    assert (root / notes.path).read_bytes() == NOTES
    assert [os.stat(root / a.path).st_ino for a in again] == inodes  # not written again
    assert sorted(p.name for p in (root / "upload").iterdir()) == sorted(
        a.path.removeprefix("upload/") for a in first
    )


async def test_a_different_file_at_the_path_moves_the_new_one_to_a_number(bus, runtime, root):
    report = await file(bus, "report.pdf", REPORT, "application/pdf")
    (root / "upload").mkdir(parents=True)
    (root / report.path).write_bytes(b"the user's own edit\n")
    (root / "upload" / "20250301-101500-report-2.pdf").symlink_to(root / "elsewhere.pdf")
    async with running(runtime, run):
        [placed] = await place(bus, [report])
        [again] = await place(bus, [report])
    assert placed.path == again.path == "upload/20250301-101500-report-3.pdf"
    assert placed.error == ""
    assert (root / placed.path).read_bytes() == REPORT
    assert (root / report.path).read_bytes() == b"the user's own edit\n"
    assert not (root / "elsewhere.pdf").exists()  # never written through a link


async def test_a_path_out_of_the_workspace_is_refused_on_its_entry(bus, runtime, root, workdir):
    outside = workdir / "outside"
    outside.mkdir()
    notes = await file(bus, "notes.txt", NOTES)
    escaping = msgspec.structs.replace(notes, path="../tg_2/upload/notes.txt")
    absolute = msgspec.structs.replace(notes, path=str(outside / "notes.txt"))
    linked = msgspec.structs.replace(notes, path="door/notes.txt")
    root.mkdir(parents=True)
    (root / "door").symlink_to(outside)
    async with running(runtime, run):
        found = await place(bus, [escaping, notes, absolute, linked])
    refused = [found[0], found[2], found[3]]
    assert all(a.error.startswith("not placed in the workspace: ") for a in refused), refused
    assert ["outside the workspace" in a.error for a in refused] == [True] * 3
    assert found[1] == notes
    assert [a.path for a in refused] == [escaping.path, absolute.path, linked.path]
    assert list(outside.iterdir()) == []
    assert not (workdir / "workspaces" / "tg_2").exists()


async def test_files_that_failed_to_download_come_back_untouched(bus, runtime, root):
    failed = Attachment(
        object_name="",
        file_name="huge.zip",
        media_type="application/zip",
        size=30_000_000,
        path="upload/20250301-101500-huge.zip",
        error="the file is 30 MB; Telegram lets bots download files up to 20 MB",
    )
    marked = msgspec.structs.replace(await file(bus, "notes.txt", NOTES), error="too big")
    gone = msgspec.structs.replace(marked, object_name=f"{CONV}/never-stored", error="")
    async with running(runtime, run):
        found = await place(bus, [failed, marked, gone])
    assert found[:2] == [failed, marked]
    assert found[2].error.startswith("not placed in the workspace: ")
    assert "no longer holds" in found[2].error
    assert not (root / "upload").exists()


async def test_a_malformed_request_is_refused_and_reported(bus, runtime, root):
    await bus.watch(subjects.BAD_MESSAGE_EVENT)
    notes = await file(bus, "notes.txt", NOTES)
    async with running(runtime, run):
        await place(bus, [])  # a runner listens
        reply = await bus.nc.request(subjects.tool_place("local"), b'{"kind": "nope"}', timeout=5)
        report = await bus.next(subjects.BAD_MESSAGE_EVENT, BAD)
        [placed] = await place(bus, [notes])
    assert (reply.headers or {}).get("Nats-Service-Error-Code") == "400"
    assert (report.service, report.subject) == ("tools", subjects.tool_place("local"))
    assert (root / placed.path).read_bytes() == NOTES


async def test_a_fixed_remote_workspace_gets_the_files_on_the_remote(
    bus, workdir, nats_access, server, remote_root
):
    tables = {"remotes": {"box": server.remote(remote_root)}, "bus": {"in_partitions": 4}}
    runtime = make_runtime(CONFIG | tables, workdir, nats_access)
    await layout.ensure(bus.js, runtime.config.bus, layout.pools(runtime.config))
    fixed = msgspec.structs.replace(LOCAL, remote="box", remote_root=str(remote_root))
    report = await file(bus, "report.pdf", REPORT, "application/pdf")
    async with running(runtime, run):
        [placed] = await place(bus, [report], fixed)
        [again] = await place(bus, [report], fixed)
        (remote_root / report.path).write_bytes(b"changed on the remote\n")
        [moved] = await place(bus, [report], fixed)
    assert placed == again == report
    assert moved.path == "upload/20250301-101500-report-2.pdf"
    assert (remote_root / moved.path).read_bytes() == REPORT
    assert not (workdir / "workspaces" / CONV / "upload").exists()


async def test_a_removed_conversations_workspace_is_moved_aside(bus, runtime, root, workdir):
    root.mkdir(parents=True)
    (root / "MEMORY.md").write_text("kept\n", encoding="utf-8")
    aside = workdir / "workspaces" / ".removed"
    async with running(runtime, run):
        await place(bus, [])  # a runner listens
        ending = EndWork(conversation_id=CONV, removed=True, workspace=LOCAL)
        await bus.nc.publish(subjects.tool_end(CONV), encode(ending))
        [moved] = await eventually(lambda: aside.exists() and list(aside.iterdir()))
    assert moved.name.startswith(f"{CONV}-")
    assert len(moved.name) == len(f"{CONV}-20250301")  # the date: YYYYMMDD
    assert (moved / "MEMORY.md").read_text(encoding="utf-8") == "kept\n"
    assert not root.exists()
