"""ls per SPEC §5.1: the indented tree, depth, sizes, the skip rule and the 1,000-entry cap."""

import msgspec
import pytest

from services.tools.builtin.listing import MORE, SKIPPED_NAMES, LsArgs, LsResult, human_size, ls
from services.tools.catalog import decode
from services.tools.results import ToolError
from tests.unit.tools.samples import tool_call


@pytest.fixture
def call(workdir):
    return tool_call(workdir)


def put(call, name: str, size: int = 1) -> None:
    path = call.root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


async def listing(call, **arguments) -> LsResult:
    return await ls(LsArgs(**arguments), call)


async def failure(call, **arguments) -> ToolError:
    with pytest.raises(ToolError) as caught:
        await listing(call, **arguments)
    return caught.value


async def test_the_workspace_as_a_tree(call):
    """The workspace's own `shared` link is shown, not entered; `.stellaclaw` is a dot name."""
    put(call, "README.md", 1260)
    put(call, "src/app.py", 12)
    put(call, "src/pkg/mod.py", 0)
    put(call, "src/pkg/deep/far.py", 3)
    put(call, "Zeta.txt", 2048)
    (call.root / "empty").mkdir()
    result = await listing(call)
    assert result == LsResult(
        path=".",
        entries=9,
        truncated=False,
        tree="\n".join(
            [
                "empty/",
                "README.md (1.2 KiB)",
                "shared/ (symlink)",
                "src/",
                "  app.py (12 B)",
                "  pkg/",
                "    deep/",
                "    mod.py (0 B)",
                "Zeta.txt (2.0 KiB)",
            ]
        ),
    )


async def test_depth_limits_the_levels(call):
    put(call, "a/b/c.txt")
    assert (await listing(call, path="a", depth=1)).tree == "b/"
    deeper = await listing(call, path="a", depth=2)
    assert (deeper.path, deeper.tree, deeper.entries) == ("a", "b/\n  c.txt (1 B)", 2)


async def test_dot_names_and_build_directories_are_skipped(call):
    for name in SKIPPED_NAMES:
        put(call, f"top/{name}/inside.txt")
    put(call, "top/.env")
    put(call, "top/.hidden/inside.txt")
    put(call, "top/build.py")
    put(call, "top/tools/dist", 5)  # a file with a skipped name is shown
    result = await listing(call, path="top")
    assert result.tree == "build.py (1 B)\ntools/\n  dist (5 B)"
    assert (await listing(call, path="top/node_modules")).tree == "inside.txt (1 B)"


async def test_over_1000_entries_stop_with_a_note_breadth_first(call):
    for number in range(1000):
        put(call, f"big/many/f{number:04}.txt")
    put(call, "big/z.txt")
    result = await listing(call, path="big")
    assert (result.entries, result.truncated) == (1000, True)
    lines = result.tree.split("\n")
    assert lines[:2] == ["many/", "  f0000.txt (1 B)"]
    assert lines[-3:] == ["  f0997.txt (1 B)", "z.txt (1 B)", MORE]  # upper levels come first
    assert len(lines) == 1001
    (call.root / "big/z.txt").unlink()
    exactly = await listing(call, path="big", depth=1)
    assert (exactly.entries, exactly.truncated, exactly.tree) == (1, False, "many/")


async def test_exactly_1000_entries_are_not_truncated(call):
    for number in range(999):
        put(call, f"full/d/f{number:04}.txt")
    result = await listing(call, path="full")
    assert (result.entries, result.truncated) == (1000, False)
    assert not result.tree.endswith(MORE)


async def test_a_file_path_lists_that_file(call):
    put(call, "notes/a.txt", 3000)
    result = await listing(call, path="notes/a.txt")
    assert result == LsResult(
        path="notes/a.txt", entries=1, truncated=False, tree="a.txt (2.9 KiB)"
    )


async def test_links_out_of_the_workspace_are_left_out(call, workdir):
    outside = workdir / "outside"
    outside.mkdir()
    (outside / "key.txt").write_text("k", encoding="utf-8")
    put(call, "d/real.txt", 4)
    (call.root / "d/key_link.txt").symlink_to(outside / "key.txt")
    (call.root / "d/dir_link").symlink_to(outside, target_is_directory=True)
    (call.root / "d/broken").symlink_to(call.root / "d/missing")
    (call.root / "d/alias.txt").symlink_to(call.root / "d/real.txt")
    result = await listing(call, path="d")
    assert result.tree == "alias.txt (4 B)\nreal.txt (4 B)"


async def test_the_errors(call):
    missing = await failure(call, path="nope")
    assert (missing.kind, str(missing)) == ("not_found", "nope does not exist")
    outside = await failure(call, path="../..")
    assert (outside.kind, str(outside)) == (
        "outside_workspace",
        "path is outside the workspace: ../..",
    )


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1260, "1.2 KiB"),
        (5 * 1024 * 1024, "5.0 MiB"),
        (3 * 1024**3 + 1024**3 // 2, "3.5 GiB"),
        (2048 * 1024**4, "2048.0 TiB"),
    ],
)
def test_human_sizes(size, shown):
    assert human_size(size) == shown


def test_the_arguments_are_checked():
    decoder = msgspec.json.Decoder(LsArgs)
    with pytest.raises(ToolError) as unknown:
        decode(decoder, LsArgs, b'{"path": ".", "recursive": true}')
    assert str(unknown.value) == 'unknown argument "recursive"; accepted: path, depth'
    with pytest.raises(ToolError) as too_deep:
        decode(decoder, LsArgs, b'{"depth": 11}')
    assert str(too_deep.value) == "Expected `int` <= 10 - at `$.depth`"
