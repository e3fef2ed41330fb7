"""A user's files are written into the workspace before the model sees them (DESIGN §4, SPEC
§2.4, §8.1): the real session asks a real tools runner (PlaceFiles); the path the runner chose is
what the model is shown and what history keeps; without a runner the model reads why."""

import msgspec

from services.session.service import run as run_session
from services.tools.service import run as run_tools
from shared import subjects
from shared.messages.contract import Attachment
from shared.messages.history import HISTORY, UserMessage
from tests.integration.test_session import (
    CONV,
    OUT,
    SESSION,
    answer,
    config,
    handle,
    say,
    session_stack,
    wake,
)
from tests.kit.attachments import stored
from tests.kit.llm_api import ChatRequest, llm_api, reply, tool_call
from tests.kit.services import make_runtime, running
from tests.kit.waiting import eventually

NOTES = b"the meeting moved to Thursday\n"


async def notes_file(bus) -> Attachment:
    """A document as ingress stores it, for `upload/<stamp>-<name>`."""
    found = await stored(bus, CONV, "notes.txt", NOTES, "text/plain")
    return msgspec.structs.replace(found, path="upload/20250301-101500-notes.txt")


async def say_with(bus, text: str, seq: int, attachments: list[Attachment]) -> None:
    """A user message with files, as the conversation service forwards it."""
    message = handle(text, seq)
    received = msgspec.structs.replace(message.message, attachments=attachments)
    await bus.publish(
        subjects.session_input(SESSION),
        msgspec.structs.replace(message, message=received),
        msg_id=subjects.session_input_msg_id(seq),
    )
    await wake(bus)


def user_lines(request: ChatRequest) -> str:
    """The last user message's first text part: its text and `Attachments:` lines."""
    [content] = [m.content for m in request.messages if m.role == "user"][-1:]
    assert isinstance(content, list)
    return content[0].text or ""


async def stored_attachments(bus) -> list[list[Attachment]]:
    events = await bus.stored(subjects.HISTORY_STREAM, subjects.history(SESSION), HISTORY)
    return [e.attachments for e in events if isinstance(e, UserMessage)]


async def test_a_document_is_in_upload_before_the_model_reads_its_placed_path(
    bus, workdir, nats_access
):
    notes = await notes_file(bus)
    root = workdir / "workspaces" / CONV
    (root / "upload").mkdir(parents=True)
    (root / notes.path).write_bytes(b"an older file of the same name\n")
    placed_path = "upload/20250301-101500-notes-2.txt"  # the clash moved it
    steps = (tool_call("file_read", {"file_path": placed_path}), reply("It moved to Thursday."))
    async with session_stack(bus, workdir, nats_access, *steps) as llm:
        await say_with(bus, "What does this say?", 1, [notes])
        final = await answer(bus)
    assert final.text == "It moved to Thursday."
    first, second = llm.requests
    line = f"- {placed_path} (notes.txt, text/plain, {len(NOTES)} B)"
    assert user_lines(first) == f"What does this say?\n\nAttachments:\n{line}"
    [read] = second.tool_messages
    assert msgspec.json.decode(read.text)["content"] == "1: the meeting moved to Thursday"
    assert (root / placed_path).read_bytes() == NOTES
    assert (root / notes.path).read_bytes() == b"an older file of the same name\n"
    assert await stored_attachments(bus) == [[msgspec.structs.replace(notes, path=placed_path)]]


async def test_a_follow_ups_file_is_placed_before_the_next_model_call(bus, workdir, nats_access):
    notes = await notes_file(bus)
    root = workdir / "workspaces" / CONV
    steps = (tool_call("shell", {"command": "touch started && sleep 3"}), reply("Seen it."))
    async with session_stack(bus, workdir, nats_access, *steps) as llm:
        await say(bus, "run the slow thing", 1)
        await eventually(lambda: (root / "started").exists(), timeout_s=10)
        await say_with(bus, "and read this", 2, [notes])
        final = await answer(bus)
    assert final.text == "Seen it."
    line = f"- {notes.path} (notes.txt, text/plain, {len(NOTES)} B)"
    expected = f"[Interrupted Follow-up]\nand read this\n\nAttachments:\n{line}"
    assert user_lines(llm.requests[1]) == expected
    assert (root / notes.path).read_bytes() == NOTES
    assert await stored_attachments(bus) == [[], [notes]]


async def test_without_a_runner_the_model_reads_why_the_file_is_not_there(
    bus, workdir, nats_access
):
    notes = await notes_file(bus)
    why = "not placed in the workspace: no tool runner of pool local answered"
    async with llm_api(api_key="k") as llm:
        llm.script(reply("Hello."), reply("I can see the file but not on disk."))
        runtime = make_runtime(config(llm.base_url), workdir, nats_access)
        await bus.watch(OUT)
        async with running(runtime, run_session):
            async with running(runtime, run_tools):  # the session learns the pool's tools
                await say(bus, "hi", 1)
                await answer(bus)
            await say_with(bus, "What does this say?", 2, [notes])  # no runner left
            final = await answer(bus)
    assert final.text == "I can see the file but not on disk."
    line = f"- {notes.path} (notes.txt, text/plain, {len(NOTES)} B) [{why}]"
    assert user_lines(llm.requests[1]) == f"What does this say?\n\nAttachments:\n{line}"
    assert await stored_attachments(bus) == [[], [msgspec.structs.replace(notes, error=why)]]
    assert not (workdir / "workspaces" / CONV / "upload").exists()
