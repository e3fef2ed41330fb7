"""glob per SPEC §5.1: the glob syntax, newest-first order, the cap and the skip rule."""

import os

import msgspec
import pytest

from services.tools.builtin.glob_files import GlobArgs, GlobResult, glob
from services.tools.builtin.walking import SKIPPED_DIRS, glob_regex
from services.tools.catalog import decode
from services.tools.results import ToolError
from tests.unit.tools.samples import tool_call


@pytest.fixture
def call(workdir):
    return tool_call(workdir)


def put(call, name: str, mtime: int = 1_000) -> None:
    path = call.root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x\n", encoding="utf-8")
    os.utime(path, (mtime, mtime))


async def names(call, pattern: str, path: str = ".") -> list[str]:
    return (await glob(GlobArgs(pattern=pattern, path=path), call)).filenames


async def failure(call, pattern: str, path: str = ".") -> ToolError:
    with pytest.raises(ToolError) as caught:
        await glob(GlobArgs(pattern=pattern, path=path), call)
    return caught.value


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("*.md", "README.md", True),
        ("*.md", "docs/a.md", False),
        ("**/*.md", "README.md", True),
        ("**/*.md", "docs/deep/a.md", True),
        ("docs/**", "docs/deep/a.md", True),
        ("docs/**/a.md", "docs/a.md", True),
        ("src/*.py", "src/x/a.py", False),
        ("a?.txt", "ab.txt", True),
        ("a?.txt", "a/.txt", False),
        ("[ab].txt", "b.txt", True),
        ("[!ab].txt", "b.txt", False),
        ("[!ab].txt", "c.txt", True),
        ("*.{ts,tsx}", "view.tsx", True),
        ("*.{ts,tsx}", "view.js", False),
        ("a+b(1).txt", "a+b(1).txt", True),
        ("[.txt", "[.txt", True),
    ],
)
def test_the_glob_syntax(pattern, path, expected):
    assert (glob_regex(pattern).match(path) is not None) is expected


async def test_files_come_newest_first_then_by_path(call):
    put(call, "README.md", mtime=100)
    put(call, "docs/b.md", mtime=300)
    put(call, "docs/a.md", mtime=300)
    put(call, "docs/deep/c.md", mtime=200)
    put(call, "notes.txt", mtime=400)
    result = await glob(GlobArgs(pattern="**/*.md"), call)
    assert result == GlobResult(
        pattern="**/*.md",
        num_files=4,
        filenames=["docs/a.md", "docs/b.md", "docs/deep/c.md", "README.md"],
        truncated=False,
    )
    assert await names(call, "*.md") == ["README.md"]


async def test_the_pattern_is_relative_to_path(call):
    put(call, "docs/deep/c.md", mtime=200)
    put(call, "docs/a.md", mtime=100)
    assert await names(call, "*.md", path="docs") == ["docs/a.md"]
    assert await names(call, "deep/*.md", path="docs") == ["docs/deep/c.md"]


async def test_only_files_are_listed(call):
    put(call, "src.d/a.txt")
    assert await names(call, "*") == []
    assert await names(call, "**") == ["src.d/a.txt"]


@pytest.mark.parametrize("skipped", sorted(SKIPPED_DIRS))
async def test_skipped_directories_are_skipped_unless_the_pattern_names_them(call, skipped):
    put(call, f"{skipped}/a.js", mtime=200)
    put(call, f"lib/{skipped}/b.js", mtime=100)
    put(call, "main.js", mtime=300)
    assert await names(call, "**/*.js") == ["main.js"]
    assert await names(call, f"{skipped}/*.js") == [f"{skipped}/a.js"]
    assert await names(call, f"**/{skipped}/*.js") == [f"{skipped}/a.js", f"lib/{skipped}/b.js"]
    assert await names(call, "*.js", path=skipped) == [f"{skipped}/a.js"]


async def test_over_100_files_are_truncated(call):
    for number in range(101):
        put(call, f"f{number:03}.txt", mtime=1_000 + number)
    result = await glob(GlobArgs(pattern="*.txt"), call)
    assert (result.num_files, result.truncated) == (100, True)
    assert (result.filenames[0], result.filenames[-1]) == ("f100.txt", "f001.txt")
    (call.root / "f000.txt").unlink()
    exactly = await glob(GlobArgs(pattern="*.txt"), call)
    assert (exactly.num_files, exactly.truncated) == (100, False)


async def test_links_out_of_the_workspace_are_skipped_and_directory_links_not_followed(
    call, workdir
):
    outside = workdir / "outside"
    outside.mkdir()
    (outside / "key.txt").write_text("k", encoding="utf-8")
    (call.root / "key_link.txt").symlink_to(outside / "key.txt")
    (call.root / "dir_link").symlink_to(outside, target_is_directory=True)
    put(call, "real/a.txt")
    (call.root / "inner_link").symlink_to(call.root / "real", target_is_directory=True)
    (call.root / "file_link.txt").symlink_to(call.root / "real/a.txt")
    assert sorted(await names(call, "**/*.txt")) == ["file_link.txt", "real/a.txt"]


async def test_the_errors(call):
    put(call, "a.txt")
    outside = await failure(call, "*", path="..")
    assert (outside.kind, str(outside)) == (
        "outside_workspace",
        "path is outside the workspace: ..",
    )
    missing = await failure(call, "*", path="nope")
    assert (missing.kind, str(missing)) == ("not_found", "nope does not exist")
    a_file = await failure(call, "*", path="a.txt")
    assert (a_file.kind, str(a_file)) == (
        "invalid_arguments",
        "a.txt is a file; glob searches a directory",
    )
    absolute = await failure(call, "/etc/*")
    assert str(absolute) == (
        "pattern '/etc/*' is absolute; put the directory in path and a relative pattern"
    )
    bad = await failure(call, "[z-a].txt")
    assert (bad.kind, str(bad)) == (
        "invalid_arguments",
        "invalid glob '[z-a].txt': bad character range z-a at position 1",
    )


async def test_an_unknown_argument_names_the_accepted_ones():
    with pytest.raises(ToolError) as caught:
        decode(msgspec.json.Decoder(GlobArgs), GlobArgs, b'{"pattern": "*", "dir": "src"}')
    assert str(caught.value) == 'unknown argument "dir"; accepted: pattern, path'
