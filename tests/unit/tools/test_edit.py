"""edit per SPEC §5.1: exact replacements, the match errors, CRLF, creation and the limits."""

import os

import msgspec
import pytest

from services.tools.builtin.edit import EditArgs, EditResult, edit
from services.tools.catalog import decode
from services.tools.results import ToolError, encode
from tests.unit.tools.samples import tool_call


@pytest.fixture
def call(workdir):
    return tool_call(workdir)


async def change(call, **arguments) -> EditResult:
    return await edit(EditArgs(**arguments), call)


async def failure(call, **arguments) -> ToolError:
    with pytest.raises(ToolError) as caught:
        await change(call, **arguments)
    return caught.value


async def test_one_match_is_replaced(call):
    target = call.root / "app.py"
    target.write_text("def main():\n    return 1\n", encoding="utf-8")
    target.chmod(0o640)
    result = await change(call, file_path="app.py", old_text="return 1", new_text="return 2")
    assert result == EditResult(file_path="app.py", created=False, replacements=1, bytes_written=25)
    assert target.read_text(encoding="utf-8") == "def main():\n    return 2\n"
    assert target.stat().st_mode & 0o777 == 0o640
    assert bytes(encode(result)) == (
        b'{"file_path":"app.py","created":false,"replacements":1,"bytes_written":25}'
    )


async def test_replace_all_counts_every_match(call):
    (call.root / "a.txt").write_text("x = 1\ny = x\nz = x + x\n", encoding="utf-8")
    result = await change(call, file_path="a.txt", old_text="x", new_text="w", replace_all=True)
    assert result.replacements == 4
    assert (call.root / "a.txt").read_text(encoding="utf-8") == "w = 1\ny = w\nz = w + w\n"


async def test_several_matches_without_replace_all_list_their_lines(call):
    (call.root / "a.txt").write_text("foo\nbar\nfoo\n\nfoo foo\n", encoding="utf-8")
    error = await failure(call, file_path="a.txt", old_text="foo", new_text="baz")
    assert (error.kind, str(error)) == (
        "invalid_arguments",
        "old_text matches 4 places (lines 1, 3, 5, 5);"
        " include more surrounding lines or set replace_all",
    )
    assert (call.root / "a.txt").read_text(encoding="utf-8") == "foo\nbar\nfoo\n\nfoo foo\n"


async def test_a_long_list_of_matching_lines_is_cut(call):
    (call.root / "a.txt").write_text("foo\n" * 25, encoding="utf-8")
    error = await failure(call, file_path="a.txt", old_text="foo", new_text="bar")
    listed = ", ".join(str(line) for line in range(1, 21))
    assert str(error) == (
        f"old_text matches 25 places (lines {listed}, …);"
        " include more surrounding lines or set replace_all"
    )


async def test_no_match_says_so(call):
    (call.root / "a.txt").write_text("alpha\nbeta\n", encoding="utf-8")
    error = await failure(call, file_path="a.txt", old_text="gamma", new_text="delta")
    assert (error.kind, str(error)) == ("not_found", "old_text not found in a.txt")


async def test_no_match_points_at_a_match_ignoring_indentation(call):
    (call.root / "a.py").write_text(
        "class A:\n    def f(self):\n        return 1\n", encoding="utf-8"
    )
    error = await failure(
        call, file_path="a.py", old_text="def f(self):\n    return 1\n", new_text="pass\n"
    )
    assert str(error) == (
        "old_text not found in a.py (a match ignoring indentation exists at line 2)"
    )


async def test_crlf_files_match_lf_text_and_keep_crlf(call):
    target = call.root / "win.txt"
    target.write_bytes(b"one\r\ntwo\r\nthree\r\n")
    result = await change(call, file_path="win.txt", old_text="one\ntwo\n", new_text="1\n2\n")
    assert target.read_bytes() == b"1\r\n2\r\nthree\r\n"
    assert result.bytes_written == 13
    await change(call, file_path="win.txt", old_text="2\r\nthree", new_text="3")
    assert target.read_bytes() == b"1\r\n3\r\n"


async def test_invalid_utf8_bytes_survive_an_edit(call):
    target = call.root / "latin.txt"
    target.write_bytes(b"caf\xe9\nname = old\n")
    await change(call, file_path="latin.txt", old_text="old", new_text="new")
    assert target.read_bytes() == b"caf\xe9\nname = new\n"


async def test_create_if_missing_makes_the_file_and_its_parents(call):
    result = await change(
        call, file_path="docs/new.md", old_text="", new_text="# New\n", create_if_missing=True
    )
    assert result == EditResult(
        file_path="docs/new.md", created=True, replacements=0, bytes_written=6
    )
    assert (call.root / "docs/new.md").read_text(encoding="utf-8") == "# New\n"


async def test_create_if_missing_refuses_an_existing_file(call):
    (call.root / "a.txt").write_text("keep\n", encoding="utf-8")
    error = await failure(
        call, file_path="a.txt", old_text="", new_text="x", create_if_missing=True
    )
    assert (error.kind, str(error)) == ("exists", "a.txt already exists; give old_text to edit it")
    assert (call.root / "a.txt").read_text(encoding="utf-8") == "keep\n"


async def test_empty_old_text_needs_create_if_missing(call):
    error = await failure(call, file_path="a.txt", old_text="", new_text="x")
    assert (error.kind, str(error)) == (
        "invalid_arguments",
        "old_text is empty; give the exact text to replace,"
        " or set create_if_missing to create a missing file",
    )


async def test_a_missing_file_is_not_found(call):
    error = await failure(call, file_path="nope.txt", old_text="a", new_text="b")
    assert (error.kind, str(error)) == (
        "not_found",
        "nope.txt does not exist; to create it, set create_if_missing with an empty old_text",
    )


async def test_the_same_old_and_new_text_is_refused(call):
    (call.root / "a.txt").write_text("a\n", encoding="utf-8")
    error = await failure(call, file_path="a.txt", old_text="a", new_text="a")
    assert (error.kind, str(error)) == (
        "invalid_arguments",
        "new_text is the same as old_text; the edit would change nothing",
    )


async def test_a_nul_in_the_first_8_kib_is_not_text(call):
    (call.root / "blob.bin").write_bytes(b"head\0tail")
    error = await failure(call, file_path="blob.bin", old_text="head", new_text="top")
    assert (error.kind, str(error)) == (
        "not_text",
        "blob.bin looks binary; edit only changes text files",
    )


async def test_a_file_over_10_mib_is_too_large(call):
    target = call.root / "huge.txt"
    with target.open("wb") as sparse:
        os.truncate(sparse.fileno(), 10 * 1024 * 1024 + 1)
    error = await failure(call, file_path="huge.txt", old_text="a", new_text="b")
    assert (error.kind, str(error)) == (
        "too_large",
        "huge.txt is 10.0 MiB; edit takes files up to 10 MiB (use shell for it)",
    )


async def test_a_directory_is_refused(call):
    (call.root / "src").mkdir()
    error = await failure(call, file_path="src", old_text="a", new_text="b")
    assert (error.kind, str(error)) == ("invalid_arguments", "src is a directory, not a file")


@pytest.mark.parametrize("escape", ["../x.txt", "/etc/hostname"])
async def test_paths_outside_the_workspace_are_refused(call, escape):
    error = await failure(call, file_path=escape, old_text="a", new_text="b")
    assert (error.kind, str(error)) == (
        "outside_workspace",
        f"path is outside the workspace: {escape}",
    )


async def test_a_symlink_leaving_the_workspace_is_refused(call, workdir):
    outside = workdir / "secret.txt"
    outside.write_text("key\n", encoding="utf-8")
    (call.root / "link.txt").symlink_to(outside)
    error = await failure(call, file_path="link.txt", old_text="key", new_text="new")
    assert error.kind == "outside_workspace"
    assert outside.read_text(encoding="utf-8") == "key\n"


def test_an_unknown_argument_names_the_accepted_ones():
    decoder = msgspec.json.Decoder(EditArgs)
    with pytest.raises(ToolError) as caught:
        decode(decoder, EditArgs, b'{"file_path": "a", "old_text": "b", "new_text": "c", "x": 1}')
    assert (caught.value.kind, str(caught.value)) == (
        "invalid_arguments",
        'unknown argument "x"; accepted: file_path, old_text, new_text, replace_all,'
        " create_if_missing",
    )


async def test_a_file_in_the_way_of_a_new_files_parent_is_refused(call):
    (call.root / "plain").write_text("x", encoding="utf-8")
    error = await failure(
        call, file_path="plain/new.txt", old_text="", new_text="x", create_if_missing=True
    )
    assert (error.kind, str(error)) == (
        "exists",
        "cannot create the directories of plain/new.txt: a file is in the way",
    )
