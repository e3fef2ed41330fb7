"""file_write per SPEC §5.1: create with parents, atomic overwrite keeping the mode, append,
the 2 MiB limit and the path rule."""

import msgspec
import pytest

from services.tools.builtin.file_write import FileWriteArgs, FileWriteResult, file_write
from services.tools.catalog import decode
from services.tools.results import ToolError, encode
from tests.unit.tools.samples import tool_call


@pytest.fixture
def call(workdir):
    return tool_call(workdir)


async def write(call, **arguments) -> FileWriteResult:
    return await file_write(FileWriteArgs(**arguments), call)


async def failure(call, **arguments) -> ToolError:
    with pytest.raises(ToolError) as caught:
        await write(call, **arguments)
    return caught.value


async def test_a_new_file_is_created_with_its_parent_directories(call):
    result = await write(call, file_path="src/pkg/new.txt", content="héllo\n")
    assert result == FileWriteResult(
        file_path="src/pkg/new.txt", mode="overwrite", bytes_written=7, created=True
    )
    assert (call.root / "src/pkg/new.txt").read_text(encoding="utf-8") == "héllo\n"
    assert bytes(encode(result)) == (
        b'{"file_path":"src/pkg/new.txt","mode":"overwrite","bytes_written":7,"created":true}'
    )


async def test_an_overwrite_replaces_the_file_and_keeps_its_mode(call):
    target = call.root / "notes.txt"
    target.write_text("old text that is longer\n", encoding="utf-8")
    target.chmod(0o640)
    result = await write(call, file_path="notes.txt", content="new\n")
    assert (result.created, result.bytes_written) == (False, 4)
    assert target.read_text(encoding="utf-8") == "new\n"
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(path.name for path in call.root.iterdir() if path.name.endswith(".tmp")) == []


async def test_an_overwrite_goes_through_a_rename(call):
    """The old inode is left alone, so a reader holding it open never sees half a file."""
    target = call.root / "a.txt"
    target.write_text("before\n", encoding="utf-8")
    with target.open(encoding="utf-8") as reader:
        await write(call, file_path="a.txt", content="after\n")
        assert reader.read() == "before\n"
    assert target.read_text(encoding="utf-8") == "after\n"


async def test_append_adds_to_the_end_and_creates_a_missing_file(call):
    first = await write(call, file_path="log/run.log", content="one\n", mode="append")
    second = await write(call, file_path="log/run.log", content="two\n", mode="append")
    assert (first.created, second.created) == (True, False)
    assert (second.mode, second.bytes_written) == ("append", 4)
    assert (call.root / "log/run.log").read_text(encoding="utf-8") == "one\ntwo\n"


async def test_content_over_2_mib_is_too_large(call):
    error = await failure(call, file_path="big.txt", content="x" * (2 * 1024 * 1024 + 1))
    assert (error.kind, str(error)) == (
        "too_large",
        "content is 2.1 MiB; write at most 2 MiB per call and use mode=append for the rest",
    )
    assert not (call.root / "big.txt").exists()
    exactly = await write(call, file_path="big.txt", content="x" * (2 * 1024 * 1024))
    assert exactly.bytes_written == 2 * 1024 * 1024


async def test_the_limit_counts_utf8_bytes(call):
    error = await failure(call, file_path="big.txt", content="é" * (3 * 512 * 1024))
    assert str(error).startswith("content is 3.0 MiB;")


async def test_a_directory_at_the_path_is_refused(call):
    (call.root / "src").mkdir()
    error = await failure(call, file_path="src", content="x")
    assert (error.kind, str(error)) == ("exists", "src is a directory; give the path of a file")


async def test_a_file_in_the_way_of_a_parent_fails(call):
    (call.root / "plain").write_text("x", encoding="utf-8")
    error = await failure(call, file_path="plain/child.txt", content="x")
    assert (error.kind, str(error)) == (
        "exists",
        "cannot create the directories of plain/child.txt: a file is in the way",
    )


@pytest.mark.parametrize("escape", ["../x.txt", "/tmp/stellaclaw-outside.txt"])
async def test_paths_outside_the_workspace_are_refused(call, escape):
    error = await failure(call, file_path=escape, content="x")
    assert (error.kind, str(error)) == (
        "outside_workspace",
        f"path is outside the workspace: {escape}",
    )


async def test_a_symlink_leaving_the_workspace_is_refused(call, workdir):
    outside = workdir / "secret.txt"
    outside.write_text("key", encoding="utf-8")
    (call.root / "link.txt").symlink_to(outside)
    error = await failure(call, file_path="link.txt", content="overwritten")
    assert error.kind == "outside_workspace"
    assert outside.read_text(encoding="utf-8") == "key"


async def test_the_shared_dir_is_writable(call):
    result = await write(call, file_path="shared/team.md", content="# team\n")
    assert result.created is True
    assert (call.shared / "team.md").read_text(encoding="utf-8") == "# team\n"


def test_an_unknown_argument_names_the_accepted_ones():
    decoder = msgspec.json.Decoder(FileWriteArgs)
    with pytest.raises(ToolError) as caught:
        decode(decoder, FileWriteArgs, b'{"file_path": "a", "content": "", "path": "b"}')
    assert str(caught.value) == 'unknown argument "path"; accepted: file_path, content, mode'


def test_a_mode_outside_the_two_is_invalid():
    decoder = msgspec.json.Decoder(FileWriteArgs)
    with pytest.raises(ToolError) as caught:
        decode(decoder, FileWriteArgs, b'{"file_path": "a", "content": "", "mode": "prepend"}')
    assert caught.value.kind == "invalid_arguments"
    assert "$.mode" in str(caught.value)
