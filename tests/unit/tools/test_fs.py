"""The race-free path walk (SPEC §5.0): anchors, `..`, symlinks followed inside the boundary,
refused outside it, and a symlink planted after the walk caught by the open."""

import os

import pytest

from services.tools import fs
from services.tools.results import ToolError
from tests.unit.tools.samples import host_with_software, tool_call


@pytest.fixture
def call(workdir):
    return tool_call(workdir)


def read(call, path: str) -> bytes:
    return fs.read_bytes(call, path, 1 << 20)


def kind_of(action) -> tuple[str, str]:
    with pytest.raises(ToolError) as caught:
        action()
    return caught.value.kind, str(caught.value)


def test_files_in_the_workspace_and_the_shared_dir_are_read(call, workdir):
    (call.root / "a").mkdir()
    (call.root / "a" / "b.txt").write_bytes(b"b")
    (workdir / "shared" / "USER.md").write_bytes(b"me")
    assert read(call, "a/b.txt") == b"b"
    assert read(call, "./a/../a/b.txt") == b"b"
    assert read(call, str(call.root / "a" / "b.txt")) == b"b"
    assert read(call, "shared/USER.md") == b"me"
    assert read(call, str((workdir / "shared" / "USER.md").resolve())) == b"me"


@pytest.mark.parametrize("path", ["../tg_2/x", "/etc/passwd", "a/../../x", "shared/../x"])
def test_a_path_that_leaves_the_anchors_is_refused(call, path):
    (call.root / "a").mkdir()
    assert kind_of(lambda: read(call, path)) == (
        "outside_workspace",
        f"path is outside the workspace: {path}",
    )


def test_symlinks_inside_the_workspace_are_followed(call):
    (call.root / "real").mkdir()
    (call.root / "real" / "f.txt").write_bytes(b"f")
    (call.root / "rel").symlink_to("real")
    (call.root / "abs").symlink_to(call.root / "real" / "f.txt")
    assert read(call, "rel/f.txt") == b"f"
    assert read(call, "abs") == b"f"


def test_a_symlink_out_of_the_workspace_is_refused_however_it_is_reached(call, workdir):
    (workdir / "secret").write_bytes(b"s")
    (call.root / "door").symlink_to(workdir)
    (call.root / "up").symlink_to("../..")
    (call.root / "loop").symlink_to("loop")
    assert kind_of(lambda: read(call, "door/secret"))[0] == "outside_workspace"
    assert kind_of(lambda: read(call, "up/secret"))[0] == "outside_workspace"
    assert kind_of(lambda: read(call, "loop")) == (
        "invalid_arguments",
        "too many symlinks in the path loop",
    )


def test_writes_create_parents_and_never_follow_a_link_out(call, workdir):
    assert fs.write_atomically(call, "new/dir/f.txt", b"x") is True
    assert (call.root / "new" / "dir" / "f.txt").read_bytes() == b"x"
    (call.root / "out").symlink_to(workdir / "elsewhere.txt")
    assert kind_of(lambda: fs.write_atomically(call, "out", b"y"))[0] == "outside_workspace"
    assert not (workdir / "elsewhere.txt").exists()


def test_a_symlink_planted_between_the_walk_and_the_open_is_caught(call, workdir, monkeypatch):
    """The walk saw a plain name; a link put there before the open fails it (O_NOFOLLOW), and the
    next walk follows the link and refuses it."""
    (workdir / "secret").write_bytes(b"s")
    (call.root / "f.txt").write_bytes(b"plain")
    real_open = os.open
    swapped: list[bool] = []

    def open_after_swap(path, flags, *args, **kwargs):
        if path == "f.txt" and not swapped:
            os.unlink(call.root / "f.txt")
            os.symlink(workdir / "secret", call.root / "f.txt")
            swapped.append(True)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_after_swap)
    assert kind_of(lambda: read(call, "f.txt"))[0] == "outside_workspace"
    assert swapped == [True]


def test_a_missing_file_and_a_file_in_the_way_are_named(call):
    (call.root / "file").write_bytes(b"")
    assert kind_of(lambda: read(call, "nope/x")) == ("not_found", "nope/x does not exist")
    assert kind_of(lambda: read(call, "file/x"))[0] == "not_found"
    assert kind_of(lambda: fs.write_atomically(call, "file/x", b""))[0] == "exists"


def test_the_software_dir_is_readable_never_writable(workdir, tmp_path):
    software = tmp_path / "software"
    software.mkdir()
    (software / "tool.sh").write_bytes(b"#!")
    call = tool_call(workdir, host=host_with_software(software))
    assert read(call, str(software / "tool.sh")) == b"#!"
    assert kind_of(lambda: fs.write_atomically(call, str(software / "x"), b""))[0] == (
        "outside_workspace"
    )


def test_in_disabled_mode_absolute_paths_are_free(workdir, tmp_path):
    call = tool_call(workdir, sandbox="disabled")
    (tmp_path / "free.txt").write_bytes(b"free")
    assert read(call, str(tmp_path / "free.txt")) == b"free"


def test_remove_deletes_a_link_itself(call, workdir):
    (workdir / "target").write_bytes(b"t")
    (call.root / "link").symlink_to(workdir / "target")
    fs.remove(call, "link")
    assert not (call.root / "link").is_symlink()
    assert (workdir / "target").exists()


def test_a_directory_is_no_file_to_read(call):
    (call.root / "d").mkdir()
    assert kind_of(lambda: read(call, "d")) == ("invalid_arguments", "d is a directory")
