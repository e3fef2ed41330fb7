"""send_file per SPEC §5.6 and §12.8, the runner's side: the file read race-free into sc_files,
offered in the outcome's `sends`, `auto` resolved by media type, and the refusals."""

import os

import msgspec
import pytest

from services.tools.builtin.send_file import SendFileArgs, SendFileResult, send_file
from services.tools.catalog import decode
from services.tools.context import RunnerContext
from services.tools.results import Attached, ToolError, encode
from services.tools.workspace import ToolCall
from tests.unit.tools.samples import Store, tool_call

MB = 1 << 20
DECODER = msgspec.json.Decoder(SendFileArgs)


@pytest.fixture
def store():
    return Store()


@pytest.fixture
def call(workdir, store):
    return msgspec.structs.replace(tool_call(workdir), runner=RunnerContext(store_file=store.put))


async def send(call: ToolCall, **arguments: object) -> Attached:
    args = decode(DECODER, SendFileArgs, msgspec.json.encode(arguments))
    return await send_file(args, call)


async def failure(call: ToolCall, **arguments: object) -> ToolError:
    with pytest.raises(ToolError) as caught:
        await send(call, **arguments)
    return caught.value


async def test_a_file_is_stored_and_offered_to_the_user(call, store):
    (call.root / "out").mkdir()
    (call.root / "out/report.pdf").write_bytes(b"%PDF-1.7 report")
    outcome = await send(call, file_path="out/report.pdf", caption="The **report**")
    assert bytes(encode(outcome.result)) == (
        b'{"queued":true,"file_path":"out/report.pdf","size_bytes":15,"as":"document"}'
    )
    [offered] = outcome.sends
    assert (offered.caption, offered.send_as) == ("The **report**", "document")
    attachment = offered.attachment
    assert (attachment.file_name, attachment.media_type, attachment.size, attachment.path) == (
        "report.pdf",
        "application/pdf",
        15,
        "out/report.pdf",
    )
    assert attachment.object_name.startswith("tg_1/tool_c1_")
    assert attachment.object_name.endswith("_report.pdf")
    assert store.objects == {attachment.object_name: b"%PDF-1.7 report"}


@pytest.mark.parametrize(
    ("name", "picked"),
    [
        ("photo.jpg", "photo"),
        ("shot.png", "photo"),
        ("pic.webp", "photo"),
        ("song.mp3", "audio"),
        ("memo.m4a", "audio"),
        ("clip.mp4", "video"),
        ("note.ogg", "document"),  # a voice message only when asked for
        ("anim.gif", "document"),
        ("backup.tar.gz", "document"),
        ("data", "document"),
    ],
)
async def test_auto_picks_by_media_type(call, name, picked):
    (call.root / name).write_bytes(b"0123")
    outcome = await send(call, file_path=name)
    assert isinstance(outcome.result, SendFileResult)
    assert (outcome.result.send_as, outcome.sends[0].send_as) == (picked, picked)


async def test_a_photo_over_10_mb_goes_as_a_document(call):
    with (call.root / "huge.png").open("wb") as target:
        target.truncate(10 * MB + 1)
    outcome = await send(call, file_path="huge.png")
    assert outcome.sends[0].send_as == "document"


async def test_an_explicit_as_wins_and_is_named_as_on_the_wire(call):
    (call.root / "memo.ogg").write_bytes(b"OggS")
    outcome = await send(call, file_path="memo.ogg", **{"as": "voice"})
    assert outcome.sends[0].send_as == "voice"
    assert bytes(encode(outcome.result)).endswith(b'"as":"voice"}')


async def test_send_as_is_not_an_argument_name(call):
    error = await failure(call, file_path="x", send_as="photo")
    assert (error.kind, str(error)) == (
        "invalid_arguments",
        'unknown argument "send_as"; accepted: file_path, caption, as',
    )


@pytest.mark.parametrize("path", ["out", "out/", ".", "shared"])
async def test_a_directory_must_be_archived_first(call, store, path):
    (call.root / "out").mkdir()
    error = await failure(call, file_path=path)
    assert (error.kind, str(error)) == (
        "invalid_arguments",
        "send_file needs a file; archive the directory first (tar czf)",
    )
    assert store.objects == {}


async def test_over_50_mb_is_too_large(call, store):
    with (call.root / "video.mkv").open("wb") as target:
        target.truncate(63 * MB)  # sparse: no disk is used
    error = await failure(call, file_path="video.mkv")
    assert (error.kind, str(error)) == (
        "too_large",
        "video.mkv is 63 MB; Telegram bots can send files up to 50 MB",
    )
    assert store.objects == {}


async def test_exactly_50_mb_is_sent(call, store):
    with (call.root / "limit.bin").open("wb") as target:
        target.truncate(50 * MB)
    outcome = await send(call, file_path="limit.bin")
    assert outcome.result == SendFileResult(
        queued=True, file_path="limit.bin", size_bytes=50 * MB, send_as="document"
    )
    assert len(next(iter(store.objects.values()))) == 50 * MB


async def test_a_missing_file_is_not_found(call):
    error = await failure(call, file_path="nope.txt")
    assert (error.kind, str(error)) == ("not_found", "nope.txt does not exist")


@pytest.mark.parametrize("path", ["../escape.txt", "/etc/hostname", "link.txt"])
async def test_paths_outside_the_workspace_are_refused(call, store, path):
    (call.root.parent / "escape.txt").write_text("secret", encoding="utf-8")
    (call.root / "link.txt").symlink_to(call.root.parent / "escape.txt")
    error = await failure(call, file_path=path)
    assert error.kind == "outside_workspace"
    assert store.objects == {}


async def test_a_fifo_is_refused_without_waiting_for_a_writer(call):
    os.mkfifo(call.root / "pipe")
    error = await failure(call, file_path="pipe")
    assert (error.kind, str(error)) == ("invalid_arguments", "pipe is not a regular file")


async def test_a_file_in_the_shared_dir_can_be_sent(call, store):
    (call.shared / "notes.txt").write_text("shared notes", encoding="utf-8")
    outcome = await send(call, file_path="shared/notes.txt")
    assert outcome.sends[0].attachment.media_type == "text/plain"
    assert list(store.objects.values()) == [b"shared notes"]
