"""The tools that take files, on an SSH remote (SPEC §5.1, §5.4-§5.6, §6.6), against the kit's real
SSH server: apply_patch, image_load, pdf_load, audio_load, send_file, the downloads and
image_generation read and write the remote root over SFTP, answering as they do locally."""

import io
import os
import wave

import msgspec
import pytest
from pypdf import PdfWriter

from services.tools.builtin import image_load
from services.tools.builtin.apply_patch import ApplyPatchArgs, apply_patch
from services.tools.builtin.audio_load import AudioLoadArgs, audio_load
from services.tools.builtin.downloads import DownloadStatus
from services.tools.builtin.file_download import (
    FileDownloadCancelArgs,
    FileDownloadProgressArgs,
    FileDownloadStartArgs,
    FileDownloadWaitArgs,
    file_download_cancel,
    file_download_progress,
    file_download_start,
    file_download_wait,
)
from services.tools.builtin.image_generation import (
    ImageGenerationArgs,
    ImageGenerationResult,
    image_generation,
)
from services.tools.builtin.image_load import ImageLoadArgs
from services.tools.builtin.pdf_load import PdfLoadArgs, pdf_load
from services.tools.builtin.send_file import SendFileArgs, send_file
from services.tools.context import RunnerContext, Settings
from services.tools.results import Result, ToolError, encode
from services.tools.workspace import RemoteTarget, ToolCall
from shared.tools_config import ImagesConfig, RemoteConfig, ToolsConfig
from tests.kit import web_pages
from tests.kit.images_api import generated, images_api, png
from tests.kit.waiting import eventually_async
from tests.unit.tools.samples import Store, tool_call

MB = 1 << 20
KEY = "sk-images-ssh-test-key"


@pytest.fixture
def store():
    return Store()


@pytest.fixture
async def fake():
    async with images_api(api_key=KEY) as running:
        yield running


@pytest.fixture
async def site():
    async with web_pages.serving() as served:
        yield served


@pytest.fixture
async def call(workdir, server, remote_root, store, fake):
    """A fixed-mode call on remote `box`, on a runner with a file store, the images API and
    private addresses allowed (the test site is on loopback)."""
    images = ImagesConfig(base_url=fake.base_url, api_key=KEY, size="1024x1024", timeout_s=5.0)
    settings = Settings(
        tools=ToolsConfig(allow_private_network=True),
        images=images,
        remotes={"box": RemoteConfig(**server.remote(remote_root))},
    )
    context = RunnerContext(runner_id="r-ssh", settings=settings, store_file=store.put)
    made = msgspec.structs.replace(
        tool_call(workdir), runner=context, remote=RemoteTarget(name="box", root=str(remote_root))
    )
    yield made
    await context.end_all()


def as_dict(result: Result) -> dict[str, object]:
    decoded = msgspec.json.decode(bytes(encode(result)))
    assert isinstance(decoded, dict)
    return decoded


async def failure(running) -> ToolError:
    with pytest.raises(ToolError) as caught:
        await running
    return caught.value


def files_under(root) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()}


PATCH = """*** Begin Patch
*** Add File: src/new.py
+print("new")
*** Update File: src/app.py
@@
 def main():
-    return 1
+    return 2
*** Update File: src/old.py
*** Move to: lib/moved.py
@@
-old = True
+moved = True
*** Delete File: gone.txt
*** Add File: .stellaclaw/notes.md
+kept on the runner host
*** End Patch
"""


async def test_apply_patch_changes_the_remote_root_and_local_only_paths_stay_here(
    call, remote_root
):
    (remote_root / "src").mkdir()
    (remote_root / "src/app.py").write_text("def main():\n    return 1\n")
    (remote_root / "src/old.py").write_text("old = True\n")
    (remote_root / "gone.txt").write_text("bye\n")
    result = await apply_patch(ApplyPatchArgs(patch=PATCH), call)
    assert as_dict(result) == {
        "applied": True,
        "check_only": False,
        "files": [
            {"path": "src/new.py", "action": "add", "hunks": 1},
            {"path": "src/app.py", "action": "update", "hunks": 1},
            {"path": "src/old.py", "action": "move", "to": "lib/moved.py", "hunks": 1},
            {"path": "gone.txt", "action": "delete", "hunks": 0},
            {"path": ".stellaclaw/notes.md", "action": "add", "hunks": 1},
        ],
    }
    assert files_under(remote_root) == {"src/new.py", "src/app.py", "lib/moved.py"}
    assert (remote_root / "src/app.py").read_text() == "def main():\n    return 2\n"
    assert (remote_root / "lib/moved.py").read_text() == "moved = True\n"
    assert (remote_root / "src/new.py").read_text() == 'print("new")\n'
    assert (call.root / ".stellaclaw/notes.md").read_text() == "kept on the runner host\n"
    assert not (call.root / "src").exists()


async def test_a_failing_hunk_writes_nothing_on_the_remote(call, remote_root):
    (remote_root / "app.py").write_text("a = 1\nb = 2\n")
    patch = """*** Begin Patch
*** Add File: added.py
+x = 1
*** Update File: app.py
@@
-a = 1
+a = 10
@@
-c = 3
+c = 30
*** End Patch
"""
    error = await failure(apply_patch(ApplyPatchArgs(patch=patch), call))
    assert error.kind == "not_found"
    assert str(error).startswith("hunk 2 of app.py did not apply: context not found near line")
    assert files_under(remote_root) == {"app.py"}
    assert (remote_root / "app.py").read_text() == "a = 1\nb = 2\n"
    checked = await apply_patch(
        ApplyPatchArgs(patch=patch.replace("c = 3", "b = 2"), check=True), call
    )
    assert (checked.applied, checked.check_only) == (False, True)
    assert files_under(remote_root) == {"app.py"}


async def test_apply_patch_errors_on_the_remote_are_the_local_ones(call, remote_root):
    (remote_root / "a.txt").write_text("x\n")
    (remote_root / "folder").mkdir()
    cases = [
        ("Add File: a.txt\n+y", "exists", "add: a.txt already exists"),
        ("Update File: missing.txt\n@@\n-x\n+y", "not_found", "update: missing.txt not found"),
        ("Add File: a.txt/b\n+y", "exists", "add: cannot create a.txt/b: a.txt is a file"),
        ("Delete File: folder", "invalid_arguments", "delete: folder is a directory, not a file"),
        ("Add File: ../up\n+y", "outside_workspace", "path is outside the workspace: ../up"),
    ]
    for body, kind, message in cases:
        patch = f"*** Begin Patch\n*** {body}\n*** End Patch\n"
        error = await failure(apply_patch(ApplyPatchArgs(patch=patch), call))
        assert (error.kind, str(error)) == (kind, message)
    assert files_under(remote_root) == {"a.txt"}


def wav_bytes(frames: int, rate: int = 8000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(rate)
        audio.writeframes(b"\0\0" * frames)
    return out.getvalue()


def pdf_bytes(pages: int) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=200, height=200)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


async def test_media_loads_read_their_files_from_the_remote(call, remote_root, store):
    (remote_root / "media").mkdir()
    (remote_root / "media/dot.png").write_bytes(png(1, side=4))
    (remote_root / "media/doc.pdf").write_bytes(pdf_bytes(3))
    (remote_root / "media/tone.wav").write_bytes(wav_bytes(4000))
    image = await image_load.image_load(ImageLoadArgs(file_path="media/dot.png"), call)
    assert as_dict(image.result) == {
        "file_path": "media/dot.png",
        "media_type": "image/png",
        "width": 4,
        "height": 4,
        "loaded": True,
    }
    assert store.objects[image.attachments[0].object_name] == png(1, side=4)
    pdf = await pdf_load(PdfLoadArgs(file_path="media/doc.pdf", pages="2-3"), call)
    assert as_dict(pdf.result) == {
        "file_path": "media/doc.pdf",
        "pages": "2-3",
        "page_count": 3,
        "loaded": True,
    }
    assert pdf.attachments[0].file_name == "doc (pages 2-3).pdf"
    audio = await audio_load(AudioLoadArgs(file_path="media/tone.wav"), call)
    assert as_dict(audio.result) == {
        "file_path": "media/tone.wav",
        "media_type": "audio/wav",
        "duration_s": 0.5,
        "loaded": True,
    }
    assert store.objects[audio.attachments[0].object_name] == wav_bytes(4000)
    assert not (call.root / "media").exists()
    missing = await failure(image_load.image_load(ImageLoadArgs(file_path="nope.png"), call))
    assert (missing.kind, str(missing)) == ("not_found", "nope.png does not exist")


async def test_a_remote_media_file_over_the_limit_is_too_large(call, remote_root, monkeypatch):
    monkeypatch.setattr(image_load, "MAX_BYTES", MB)
    (remote_root / "big.png").write_bytes(png(1) + bytes(MB))
    error = await failure(image_load.image_load(ImageLoadArgs(file_path="big.png"), call))
    assert (error.kind, str(error)) == ("too_large", "big.png is over 1 MiB, the image_load limit")


async def test_send_file_offers_a_remote_file(call, remote_root, store):
    (remote_root / "out").mkdir()
    (remote_root / "out/report.pdf").write_bytes(b"%PDF-1.7 report")
    outcome = await send_file(SendFileArgs(file_path="out/report.pdf", caption="Here"), call)
    assert bytes(encode(outcome.result)) == (
        b'{"queued":true,"file_path":"out/report.pdf","size_bytes":15,"as":"document"}'
    )
    [offered] = outcome.sends
    attachment = offered.attachment
    assert (attachment.file_name, attachment.media_type, attachment.path) == (
        "report.pdf",
        "application/pdf",
        "out/report.pdf",
    )
    assert store.objects == {attachment.object_name: b"%PDF-1.7 report"}


async def test_send_file_refuses_a_remote_directory_and_a_file_over_50_mb(call, remote_root):
    (remote_root / "folder").mkdir()
    refused = await failure(send_file(SendFileArgs(file_path="folder"), call))
    assert (refused.kind, str(refused)) == (
        "invalid_arguments",
        "send_file needs a file; archive the directory first (tar czf)",
    )
    with (remote_root / "huge.bin").open("wb") as sparse:  # its size, not its bytes: stat first
        sparse.truncate(63 * MB)
    large = await failure(send_file(SendFileArgs(file_path="huge.bin"), call))
    assert (large.kind, str(large)) == (
        "too_large",
        "huge.bin is 63 MB; Telegram bots can send files up to 50 MB",
    )
    missing = await failure(send_file(SendFileArgs(file_path="nope.bin"), call))
    assert (missing.kind, str(missing)) == ("not_found", "nope.bin does not exist")


async def start(call: ToolCall, url: str, **arguments) -> DownloadStatus:
    args = FileDownloadStartArgs(url=url, file_path="got/file.bin", **arguments)
    return await file_download_start(args, call)


async def status_when(call: ToolCall, check) -> DownloadStatus:
    async def matching() -> DownloadStatus | None:
        status = await file_download_progress(FileDownloadProgressArgs(download_id="dl1"), call)
        return status if check(status) else None

    return await eventually_async(matching, what="download status")


def local_parts(call: ToolCall) -> list[str]:
    folder = call.root / ".stellaclaw/downloads"
    return os.listdir(folder) if folder.exists() else []


async def test_a_download_streams_to_the_remote_with_progress(call, site, remote_root):
    chunk = web_pages.CHUNK_BYTES
    started = await start(call, site.url(f"/gated/{chunk * 3}"), wait_s=0)
    assert (started.state, started.download_id) == ("running", "dl1")
    halfway = await status_when(call, lambda s: s.bytes_downloaded == chunk)
    assert (halfway.state, halfway.total_bytes) == ("running", chunk * 3)
    assert (remote_root / "got/.file.bin.dl1.part").read_bytes() == b"g" * chunk
    assert local_parts(call) == []
    site.gate.set()
    done = await file_download_wait(FileDownloadWaitArgs(download_id="dl1", wait_s=30), call)
    assert (done.state, done.bytes_downloaded) == ("completed", chunk * 3)
    assert files_under(remote_root) == {"got/file.bin"}
    assert (remote_root / "got/file.bin").read_bytes() == b"g" * chunk + b"x" * chunk * 2
    assert not (call.root / "got").exists()


async def test_cancelling_a_remote_download_removes_its_partial_file(call, site, remote_root):
    await start(call, site.url(f"/gated/{MB}"), wait_s=0)
    await status_when(call, lambda s: s.bytes_downloaded == web_pages.CHUNK_BYTES)
    assert (remote_root / "got/.file.bin.dl1.part").exists()
    status = await file_download_cancel(FileDownloadCancelArgs(download_id="dl1"), call)
    assert (status.state, status.bytes_downloaded) == ("cancelled", web_pages.CHUNK_BYTES)
    assert files_under(remote_root) == set()


async def test_a_remote_target_that_exists_needs_overwrite(call, site, remote_root):
    (remote_root / "got").mkdir()
    (remote_root / "got/file.bin").write_text("old")
    error = await failure(start(call, site.url("/notes.txt")))
    assert (error.kind, str(error)) == (
        "exists",
        "got/file.bin already exists; pass overwrite=true to replace it",
    )
    folder = await failure(
        file_download_start(
            FileDownloadStartArgs(url=site.url("/notes.txt"), file_path="got"), call
        )
    )
    assert (folder.kind, str(folder)) == ("exists", "got is a directory; give the path of a file")
    done = await start(call, site.url("/notes.txt"), overwrite=True)
    assert done.state == "completed"
    assert (remote_root / "got/file.bin").read_text() == "line one\nline two\n"
    assert files_under(remote_root) == {"got/file.bin"}


async def test_image_generation_edits_remote_images_and_saves_on_the_remote(
    call, fake, remote_root, store
):
    fake.script(generated())
    (remote_root / "in").mkdir()
    (remote_root / "in/cat.png").write_bytes(png(200))
    args = ImageGenerationArgs(prompt="a hat on the cat", images=["in/cat.png"])
    outcome = await image_generation(args, call)
    [received] = fake.requests
    parts = [(part.filename, part.content_type, part.data) for part in received.images]
    assert parts == [("cat.png", "image/png", png(200))]
    result = outcome.result
    assert isinstance(result, ImageGenerationResult)
    [saved] = result.files
    assert saved.startswith("generated/")
    assert (remote_root / saved).read_bytes() == fake.answered[0]
    assert not (call.root / "generated").exists()
    [offered] = outcome.sends
    assert store.objects == {offered.attachment.object_name: fake.answered[0]}


async def test_an_unreachable_remote_fails_the_file_tools_as_remote_unreachable(call, server):
    await server.stop()
    calls = [
        apply_patch(
            ApplyPatchArgs(patch="*** Begin Patch\n*** Add File: a.txt\n+a\n*** End Patch\n"), call
        ),
        send_file(SendFileArgs(file_path="a.txt"), call),
        pdf_load(PdfLoadArgs(file_path="a.pdf"), call),
    ]
    for running in calls:
        error = await failure(running)
        assert error.kind == "remote_unreachable"
