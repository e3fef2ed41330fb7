"""A removed conversation's workspace moved aside (SPEC §2.1): `.removed/<conv>-<YYYYMMDD>/`."""

from datetime import UTC, date, datetime

import pytest

from services.tools import removal
from services.tools.results import ToolError
from shared.ids import ConversationId
from shared.messages.contract import Workspace
from shared.messages.tools import EndWork

CONV = ConversationId("tg_1")
LOCAL = Workspace(pool="local", path=f"workspaces/{CONV}")
DAY = date(2025, 3, 1)


@pytest.fixture
def root(workdir):
    made = workdir / "workspaces" / CONV
    (made / "upload").mkdir(parents=True)
    (made / "MEMORY.md").write_text("kept\n", encoding="utf-8")
    return made


def test_the_workspace_moves_under_removed_with_its_date(workdir, root):
    moved = removal.move_aside(workdir, LOCAL, CONV, DAY)
    assert moved == workdir / "workspaces" / ".removed" / "tg_1-20250301"
    assert moved is not None
    assert (moved / "MEMORY.md").read_text(encoding="utf-8") == "kept\n"
    assert (moved / "upload").is_dir()
    assert not root.exists()


def test_a_taken_name_gets_a_number_and_a_gone_workspace_is_done(workdir, root):
    taken = workdir / "workspaces" / ".removed" / "tg_1-20250301"
    (taken / "old").mkdir(parents=True)
    moved = removal.move_aside(workdir, LOCAL, CONV, DAY)
    assert moved == taken.with_name("tg_1-20250301-2")
    assert (taken / "old").is_dir()
    assert removal.move_aside(workdir, LOCAL, CONV, DAY) is None  # another runner moved it


def test_only_a_workspace_under_workspaces_moves(workdir, root):
    with pytest.raises(ToolError, match="not a directory under"):
        removal.move_aside(workdir, Workspace(pool="local", path="elsewhere"), CONV, DAY)
    inside = Workspace(pool="local", path="workspaces/.removed/tg_1-20250301")
    with pytest.raises(ToolError, match="already set aside"):
        removal.move_aside(workdir, inside, CONV, DAY)
    assert root.is_dir()


async def test_the_runners_of_the_pool_move_it_and_a_fixed_remote_stays(workdir, root, tmp_path):
    remote_root = tmp_path / "remote"
    (remote_root / "upload").mkdir(parents=True)
    fixed = Workspace(pool="local", path=LOCAL.path, remote="box", remote_root=str(remote_root))
    new = EndWork(conversation_id=CONV, workspace=fixed)  # `/new`: nothing moves
    await removal.move_removed(workdir, new, ("local",))
    removed = EndWork(conversation_id=CONV, removed=True, workspace=fixed)
    await removal.move_removed(workdir, removed, ("ssh_box",))  # not this runner's pool
    assert root.is_dir()
    days = {datetime.now(UTC).strftime("%Y%m%d")}
    await removal.move_removed(workdir, removed, ("local", "ssh_box"))
    days.add(datetime.now(UTC).strftime("%Y%m%d"))  # a run across midnight takes either
    aside = workdir / "workspaces" / ".removed"
    assert [p.name for p in aside.iterdir()] in [[f"tg_1-{day}"] for day in days]
    assert next(aside.iterdir()).joinpath("MEMORY.md").exists()
    assert not root.exists()
    assert (remote_root / "upload").is_dir()  # the remote directory is left alone
