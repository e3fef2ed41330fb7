"""The bwrap command line (SPEC §6.4), the §6.2 environments and the cgroup layout detection."""

from pathlib import Path
from typing import Any

from services.tools.sandbox import bwrap, cgroups, environment
from services.tools.sandbox.host import trial
from shared.config import SandboxConfig

WORKSPACE = Path("/tmp/work/workspaces/tg_1")
SHARED = Path("/tmp/work/shared")


def layout(**config: Any) -> list[str]:
    binds = bwrap.Binds(workspace=WORKSPACE, shared=SHARED, cwd=WORKSPACE / "src")
    software = config.pop("software", None)
    if software is not None:
        binds = bwrap.Binds(
            workspace=WORKSPACE, shared=SHARED, cwd=WORKSPACE, software=Path(str(software))
        )
    return bwrap.argv(SandboxConfig(**config), binds, {"HOME": "/h"}, ["bash", "-c", "ls"])


def pairs(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args) if arg == flag]


def test_the_namespaces_capabilities_and_environment_come_first():
    args = layout()
    assert args[:5] == [
        "bwrap",
        "--die-with-parent",
        "--new-session",
        "--unshare-all",
        "--cap-drop",
    ]
    assert "--share-net" not in args
    assert args[5:10] == ["ALL", "--hostname", "stellaclaw", "--clearenv", "--setenv"]
    assert args[-4:] == ["--", "bash", "-c", "ls"]
    assert "--share-net" in layout(network=True)


def test_the_workspace_is_bound_after_the_tmpfs_and_the_root_made_read_only_last():
    args = layout()
    assert args.index("/tmp") < args.index(str(WORKSPACE))  # `--tmpfs /tmp` would hide it
    assert pairs(args, "--bind") == [str(WORKSPACE), str(SHARED)]
    assert pairs(args, "--tmpfs") == ["/tmp", "/run"]
    assert pairs(args, "--size") == [str(512 * 1024 * 1024)]
    assert args.index("--remount-ro") > args.index(str(SHARED))
    assert pairs(args, "--chdir") == [str(WORKSPACE / "src")]
    assert (pairs(args, "--proc"), pairs(args, "--dev")) == (["/proc"], ["/dev"])


def test_only_system_dirs_and_listed_etc_entries_are_visible_read_only():
    args = layout()
    read_only = pairs(args, "--ro-bind")
    etc = [path for path in read_only if path.startswith("/etc/")]
    assert set(etc) <= {f"/etc/{entry}" for entry in bwrap.ETC_ENTRIES}
    assert "/etc/passwd" in etc
    symlinks = {args[i + 2] for i, arg in enumerate(args) if arg == "--symlink"}
    kept = {name for name in bwrap.SYSTEM_DIRS if Path(name).is_symlink()}
    assert symlinks == kept  # `/bin -> usr/bin` stays a symlink
    assert not any(path.startswith(("/root", "/home", "/var", "/sys")) for path in read_only)


def test_the_software_dir_is_mounted_read_only_where_configured(tmp_path):
    args = layout(software=tmp_path, software_mount_path="/opt/tools")
    assert args[args.index(str(tmp_path)) - 1 : args.index(str(tmp_path)) + 2] == [
        "--ro-bind",
        str(tmp_path),
        "/opt/tools",
    ]


def test_the_cleared_environment_is_spec_6_2_plus_sandbox_env():
    config = SandboxConfig(env={"EDITOR": "vi"})
    env = environment.cleared(config, WORKSPACE, "tg_1", "/opt")
    assert env == {
        "PATH": "/opt/bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": f"{WORKSPACE}/.stellaclaw/home",
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "TMPDIR": "/tmp",
        "STELLACLAW_WORKSPACE": str(WORKSPACE),
        "STELLACLAW_CONVERSATION": "tg_1",
        "STELLACLAW_SOFTWARE_DIR": "/opt",
        "EDITOR": "vi",
    }
    assert "STELLACLAW_SOFTWARE_DIR" not in environment.cleared(config, WORKSPACE, "tg_1", None)


def test_disabled_mode_inherits_all_but_the_secrets(monkeypatch):
    monkeypatch.setenv("STELLACLAW_TEST_KEY", "sk-live-123")
    monkeypatch.setenv("STELLACLAW_TEST_PLAIN", "visible")
    env = environment.inherited(("sk-live-123",))
    assert "STELLACLAW_TEST_KEY" not in env
    assert env["STELLACLAW_TEST_PLAIN"] == "visible"


MOUNTINFO_V1 = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 /docker/abc /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""


def test_mounts_and_own_paths_are_read_from_proc(tmp_path, monkeypatch):
    (tmp_path / "mountinfo").write_text(MOUNTINFO_V1)
    (tmp_path / "cgroup").write_text("8:pids:/docker/abc/x\n4:memory:/m\n0::/\n")
    monkeypatch.setattr(cgroups, "MOUNTINFO", tmp_path / "mountinfo")
    monkeypatch.setattr(cgroups, "OWN_CGROUPS", tmp_path / "cgroup")
    found = {(m.point, m.kind, m.root) for m in cgroups.mounts() if "cgroup" in m.kind}
    assert ("/sys/fs/cgroup/pids", "cgroup", "/docker/abc") in found
    assert ("/sys/fs/cgroup/unified", "cgroup2", "/") in found
    assert cgroups.own_paths() == {"pids": "/docker/abc/x", "memory": "/m", "": "/"}
    v2, v1 = cgroups._candidates(cgroups.mounts())
    assert (v2[0], v1[0]) == (2, 1)


def test_without_a_usable_pids_cgroup_the_layout_says_why(tmp_path, monkeypatch):
    (tmp_path / "mountinfo").write_text("31 23 0:28 / /sys rw - sysfs sysfs rw\n")
    (tmp_path / "cgroup").write_text("0::/\n")
    monkeypatch.setattr(cgroups, "MOUNTINFO", tmp_path / "mountinfo")
    monkeypatch.setattr(cgroups, "OWN_CGROUPS", tmp_path / "cgroup")
    found = cgroups.detect("rnone")
    assert (found.version, found.reason) == (0, "no pids controller is mounted")
    assert found.describe(256, is_root=True).startswith("none: running as root")
    assert found.describe(256, is_root=False).startswith("RLIMIT_NPROC 256")


def test_the_probe_tries_the_real_layout_on_a_scratch_workspace(tmp_path):
    args = trial(SandboxConfig(), str(tmp_path))
    assert args[-2:] == ["--", "true"]
    assert pairs(args, "--bind") == [str(tmp_path.resolve())]  # the shared dir is the same
    assert pairs(args, "--chdir") == [str(tmp_path.resolve())]
