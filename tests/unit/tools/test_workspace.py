"""Workspaces are made on first use, and every path stays inside them or the shared dir."""

import msgspec
import pytest

from services.tools import workspace
from services.tools.fs import existing
from services.tools.results import ToolError
from shared.messages.contract import Workspace
from tests.unit.tools.samples import UNPROBED, run_tool, tool_call


def test_a_relative_workspace_is_made_under_the_workdir(workdir):
    call = tool_call(workdir)
    assert call.root == (workdir / "workspaces" / "tg_1").resolve()
    assert (call.root / ".stellaclaw" / "home").is_dir()
    assert (call.root / "shared").resolve() == (workdir / "shared").resolve()


def test_paths_inside_the_workspace_and_the_shared_dir_are_allowed(workdir):
    call = tool_call(workdir)
    (workdir / "shared" / "USER.md").write_text("me", encoding="utf-8")
    (call.root / "notes").mkdir()
    (call.root / "notes" / "a.txt").write_text("a", encoding="utf-8")
    (call.root / "b.txt").write_text("b", encoding="utf-8")
    assert existing(call, "notes/a.txt") == call.root / "notes" / "a.txt"
    assert existing(call, str(call.root / "b.txt")) == call.root / "b.txt"
    assert existing(call, "shared/USER.md") == (workdir / "shared" / "USER.md").resolve()


@pytest.mark.parametrize("path", ["../tg_2/secret", "/etc/passwd", "a/../../.."])
def test_paths_that_leave_the_workspace_are_refused(workdir, path):
    call = tool_call(workdir)
    (call.root / "a").mkdir()  # `a/..` climbs only through a directory that exists
    with pytest.raises(ToolError, match=f"^path is outside the workspace: {path}$") as caught:
        existing(call, path)
    assert caught.value.kind == "outside_workspace"


def test_a_symlink_out_of_the_workspace_is_followed_and_refused(workdir):
    call = tool_call(workdir)
    outside = workdir / "elsewhere"
    outside.mkdir()
    (call.root / "door").symlink_to(outside)
    with pytest.raises(ToolError, match="outside the workspace: door/key"):
        existing(call, "door/key")


@pytest.mark.parametrize("path", ["workspaces/../../etc", "/etc", "workspaces", "elsewhere/tg_1"])
def test_a_workspace_outside_the_workdirs_workspaces_is_refused(workdir, path):
    request = msgspec.structs.replace(
        run_tool("file_read", {}), workspace=Workspace(pool="local", path=path)
    )
    with pytest.raises(ToolError, match="is not a directory under") as caught:
        workspace.prepare(request, workdir, UNPROBED)
    assert caught.value.kind == "unavailable"
    assert not (workdir / "elsewhere").exists()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("notes/a\0.txt", "^the path contains a NUL byte$"),
        ("a/" * 2_100, "^the path is longer than 4,096 bytes$"),
        ("notes/" + "n" * 300, "^a name in the path is over 255 bytes$"),
    ],
)
def test_a_path_no_file_system_takes_is_a_clear_argument_error(workdir, path, message):
    call = tool_call(workdir)
    with pytest.raises(ToolError, match=message) as caught:
        existing(call, path)
    assert caught.value.kind == "invalid_arguments"


def test_a_symlink_loop_is_a_clear_argument_error(workdir):
    call = tool_call(workdir)
    (call.root / "loop").symlink_to(call.root / "loop")
    with pytest.raises(ToolError, match=r"^too many symlinks in the path loop/x$") as caught:
        existing(call, "loop/x")
    assert caught.value.kind == "invalid_arguments"
