"""grep per SPEC §5.1: both outputs, their order and caps, include globs and every skip rule."""

import os

import msgspec
import pytest

from services.tools.builtin.grep_files import (
    GrepArgs,
    GrepFilesResult,
    GrepLinesResult,
    excerpt,
    grep,
)
from services.tools.builtin.walking import SKIPPED_DIRS
from services.tools.catalog import decode
from services.tools.results import ToolError
from tests.unit.tools.samples import tool_call


@pytest.fixture
def call(workdir):
    return tool_call(workdir)


def put(call, name: str, text: str | bytes, mtime: int = 1_000) -> None:
    """Write `name` under the workspace with a fixed mtime (seconds), so the order is known."""
    path = call.root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    os.utime(path, (mtime, mtime))


async def files(call, **arguments) -> GrepFilesResult:
    result = await grep(GrepArgs(**arguments), call)
    assert isinstance(result, GrepFilesResult)
    return result


async def lines(call, **arguments) -> GrepLinesResult:
    result = await grep(GrepArgs(output="lines", **arguments), call)
    assert isinstance(result, GrepLinesResult)
    return result


async def failure(call, **arguments) -> ToolError:
    with pytest.raises(ToolError) as caught:
        await grep(GrepArgs(**arguments), call)
    return caught.value


async def test_matching_files_come_newest_first_then_by_path(call):
    put(call, "a.py", "needle\n", mtime=100)
    put(call, "b.py", "a needle here\n", mtime=300)
    put(call, "sub/d.py", "needle\n", mtime=300)
    put(call, "c.txt", "needle\n", mtime=200)
    put(call, "e.txt", "hay\n", mtime=400)
    result = await files(call, pattern="needle")
    assert result == GrepFilesResult(
        pattern="needle",
        num_files=4,
        filenames=["b.py", "sub/d.py", "c.txt", "a.py"],
        truncated=False,
    )


async def test_matching_lines_name_path_and_line(call):
    put(call, "old.txt", "x = 1\r\nneedle one\r\n", mtime=100)
    put(call, "new.txt", "needle two\nnothing\nneedle three", mtime=200)
    result = await lines(call, pattern=r"^needle")
    assert result == GrepLinesResult(
        pattern="^needle",
        num_matches=3,
        matches=["new.txt:1: needle two", "new.txt:3: needle three", "old.txt:2: needle one"],
        truncated=False,
    )


async def test_case_insensitive(call):
    put(call, "a.txt", "Needle\n")
    assert (await files(call, pattern="needle")).filenames == []
    assert (await files(call, pattern="needle", case_insensitive=True)).filenames == ["a.txt"]


async def test_an_include_without_a_slash_matches_the_name_at_any_depth(call):
    put(call, "top.py", "x\n", mtime=300)
    put(call, "pkg/deep/mod.py", "x\n", mtime=200)
    put(call, "pkg/notes.md", "x\n", mtime=100)
    result = await files(call, pattern="x", include="*.py")
    assert result.filenames == ["top.py", "pkg/deep/mod.py"]


async def test_an_include_with_a_slash_matches_the_path_below_path(call):
    put(call, "src/a.ts", "x\n", mtime=400)
    put(call, "src/ui/b.tsx", "x\n", mtime=300)
    put(call, "src/ui/deep/c.ts", "x\n", mtime=200)
    put(call, "lib/d.ts", "x\n", mtime=100)
    assert (await files(call, pattern="x", include="src/**/*.ts")).filenames == [
        "src/a.ts",
        "src/ui/deep/c.ts",
    ]
    assert (await files(call, pattern="x", include="src/**/*.{ts,tsx}")).filenames == [
        "src/a.ts",
        "src/ui/b.tsx",
        "src/ui/deep/c.ts",
    ]
    below_src = await files(call, pattern="x", path="src", include="ui/*.tsx")
    assert below_src.filenames == ["src/ui/b.tsx"]


async def test_an_invalid_include_glob_is_refused(call):
    error = await failure(call, pattern="x", include="*.{py")
    assert (error.kind, str(error)) == (
        "invalid_arguments",
        "invalid include glob '*.{py': unclosed '{'",
    )


@pytest.mark.parametrize("skipped", sorted(SKIPPED_DIRS))
async def test_skipped_directories_are_skipped_unless_path_is_inside_one(call, skipped):
    put(call, f"{skipped}/pkg/a.txt", "needle\n")
    put(call, f"deep/{skipped}/b.txt", "needle\n")
    put(call, f"{skipped}/pkg/node_modules/c.txt", "needle\n")
    put(call, "kept.txt", "needle\n")
    assert (await files(call, pattern="needle")).filenames == ["kept.txt"]
    # the rule applies below the starting path: a nested node_modules is still skipped
    inside = await files(call, pattern="needle", path=f"{skipped}/pkg")
    assert inside.filenames == [f"{skipped}/pkg/a.txt"]
    assert (await files(call, pattern="needle", path=skipped)).filenames == [f"{skipped}/pkg/a.txt"]


async def test_binary_and_big_files_are_skipped(call):
    put(call, "text.txt", "needle\n")
    put(call, "blob.bin", b"needle\n\0\x01")
    put(call, "late_nul.bin", b"needle\n" + b"x" * 9000 + b"\0")  # a NUL after 8 KiB is text
    put(call, "big.log", "needle\n" + "y" * (5 * 1024 * 1024))
    put(call, "just_5_mib.log", "needle\n" + "y" * (5 * 1024 * 1024 - 7))
    assert sorted((await files(call, pattern="needle")).filenames) == [
        "just_5_mib.log",
        "late_nul.bin",
        "text.txt",
    ]


async def test_over_100_files_are_truncated(call):
    for number in range(101):
        put(call, f"f{number:03}.txt", "needle\n", mtime=1_000 + number)
    result = await files(call, pattern="needle")
    assert (result.num_files, result.truncated) == (100, True)
    assert result.filenames[0] == "f100.txt"
    assert result.filenames[-1] == "f001.txt"
    (call.root / "f000.txt").unlink()
    exactly = await files(call, pattern="needle")
    assert (exactly.num_files, exactly.truncated) == (100, False)


async def test_over_200_lines_are_truncated(call):
    put(call, "many.txt", "needle\n" * 201)
    result = await lines(call, pattern="needle")
    assert (result.num_matches, result.truncated) == (200, True)
    assert result.matches[-1] == "many.txt:200: needle"
    put(call, "many.txt", "needle\n" * 200)
    exactly = await lines(call, pattern="needle")
    assert (exactly.num_matches, exactly.truncated) == (200, False)


async def test_a_long_line_is_cut_to_500_chars_around_the_match(call):
    put(call, "long.txt", "needle" + "a" * 1000 + "\n" + "b" * 1000 + "needle" + "c" * 1000)
    first, second = (await lines(call, pattern="needle")).matches
    assert first == "long.txt:1: needle" + "a" * (500 - len("long.txt:1: needle") - 1) + "…"
    assert second.startswith("long.txt:2: …" + "b" * 100 + "needle")
    assert (len(first), len(second), second[-1]) == (500, 500, "…")


def test_an_excerpt_keeps_short_lines_whole():
    assert excerpt("a.txt:1: ", "short", 0) == "a.txt:1: short"
    assert excerpt("a.txt:1: ", "x" * 200 + "needle", 200) == "a.txt:1: " + "x" * 200 + "needle"
    assert excerpt("p:1: ", "x" * 600 + "tail", 600) == "p:1: …" + "x" * 100 + "tail"


async def test_an_invalid_regex_quotes_the_error(call):
    error = await failure(call, pattern="(unclosed")
    assert (error.kind, str(error)) == (
        "invalid_arguments",
        "invalid regex '(unclosed': missing ), unterminated subpattern at position 0",
    )


async def test_a_file_path_greps_that_file(call):
    put(call, "one.txt", "needle\n")
    put(call, "two.txt", "needle\n")
    assert (await files(call, pattern="needle", path="one.txt")).filenames == ["one.txt"]
    assert (await lines(call, pattern="needle", path="two.txt")).matches == ["two.txt:1: needle"]


async def test_a_missing_path_is_not_found(call):
    error = await failure(call, pattern="x", path="nope")
    assert (error.kind, str(error)) == ("not_found", "nope does not exist")


async def test_paths_outside_the_workspace_are_refused_and_links_out_are_skipped(call, workdir):
    secret = workdir / "outside"
    secret.mkdir()
    (secret / "key.txt").write_text("needle\n", encoding="utf-8")
    (call.root / "key_link.txt").symlink_to(secret / "key.txt")
    (call.root / "dir_link").symlink_to(secret, target_is_directory=True)
    put(call, "inside.txt", "needle\n")
    (call.root / "inside_link.txt").symlink_to(call.root / "inside.txt")
    error = await failure(call, pattern="x", path="../outside")
    assert (error.kind, str(error)) == (
        "outside_workspace",
        "path is outside the workspace: ../outside",
    )
    result = await files(call, pattern="needle")
    assert sorted(result.filenames) == ["inside.txt", "inside_link.txt"]


async def test_an_unknown_argument_names_the_accepted_ones():
    with pytest.raises(ToolError) as caught:
        decode(msgspec.json.Decoder(GrepArgs), GrepArgs, b'{"pattern": "x", "glob": "*.py"}')
    assert str(caught.value) == (
        'unknown argument "glob"; accepted: pattern, path, include, case_insensitive, output'
    )
