"""Process limits and whole-tree kills through a pids cgroup (SPEC §6.3, DESIGN §6).

Detected at start, never assumed: cgroup v2 when this process's cgroup offers the `pids`
controller to its children, else the v1 `pids` hierarchy, else none (then `RLIMIT_NPROC` when
not root, and nothing as root). Each call gets its own group under the runner's: `pids.max`
makes forks beyond the limit fail with EAGAIN, and ending a call kills every pid in its group,
so children that left the process group with `setsid` or `&` end with it.
"""

import asyncio
import contextlib
import itertools
import logging
import os
import re
import signal
from pathlib import Path

import msgspec

MOUNTINFO = Path("/proc/self/mountinfo")
OWN_CGROUPS = Path("/proc/self/cgroup")
KILL_ROUNDS = 200  # a fork bomb refills its group between rounds, each round shrinks it
ROUND_PAUSE_S = 0.005
_DEAD_BASE = re.compile(r"^stellaclaw-(?P<pid>\d+)-")
_UNNAMED_BASE = re.compile(r"^stellaclaw-r[0-9a-f]+$")  # named before the pid was in the name
log = logging.getLogger(__name__)


class Layout(msgspec.Struct, frozen=True, kw_only=True):
    """Where this runner's call groups live; `version` 0: no usable pids cgroup."""

    version: int
    base: Path | None = None
    reason: str = ""  # why none is usable

    def describe(self, pids_limit: int, is_root: bool) -> str:
        if self.version:
            return f"pids cgroup v{self.version} ({pids_limit} processes per call)"
        if not is_root:
            return f"RLIMIT_NPROC {pids_limit} (no pids cgroup: {self.reason})"
        return f"none: running as root with no pids cgroup ({self.reason})"


class Mount(msgspec.Struct, frozen=True):
    root: str  # the part of the hierarchy mounted here
    point: str
    kind: str
    options: frozenset[str]


def mounts() -> list[Mount]:
    """Every mount this process sees (`/proc/self/mountinfo`)."""
    found = []
    for line in MOUNTINFO.read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        parts, extra = fields.split(), tail.split()
        if len(parts) >= 5 and len(extra) >= 3:
            found.append(Mount(parts[3], parts[4], extra[0], frozenset(extra[2].split(","))))
    return found


def own_paths() -> dict[str, str]:
    """This process's cgroup per hierarchy: `pids` (v1) and `` (v2) among them."""
    found: dict[str, str] = {}
    for line in OWN_CGROUPS.read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            found[name] = path
    return found


def detect(runner_id: str) -> Layout:
    """Make this runner's group (`stellaclaw-<pid>-<runner_id>`) where pids can be limited,
    after sweeping the groups of runners that died without removing theirs."""
    try:
        seen, paths = mounts(), own_paths()
    except OSError as exc:
        return Layout(version=0, reason=f"cannot read the cgroup layout: {exc.strerror}")
    reasons = []
    for version, mount in _candidates(seen):
        own = paths.get("" if version == 2 else "pids")
        if own is None or not own.startswith(mount.root):
            continue
        parent = Path(mount.point) / own.removeprefix(mount.root).lstrip("/")
        sweep(parent)
        try:
            base = _make_base(version, parent, f"stellaclaw-{os.getpid()}-{runner_id}")
        except OSError as exc:
            reasons.append(f"v{version} at {parent}: {exc.strerror or exc}")
            continue
        return Layout(version=version, base=base)
    return Layout(version=0, reason="; ".join(reasons) or "no pids controller is mounted")


def sweep(parent: Path) -> None:
    """Kill what is left in the call groups of runners whose process is gone (a SIGKILLed
    runner's commands would run on; SPEC §3.9 ends them with it) and remove their groups."""
    with contextlib.suppress(OSError):
        for base in parent.iterdir():
            if _UNNAMED_BASE.match(base.name):  # an older runner's: removed once it is empty
                remove_base(Layout(version=1, base=base))
                continue
            found = _DEAD_BASE.match(base.name)
            if found is None or Path(f"/proc/{found['pid']}").exists():
                continue
            for group in [child for child in base.iterdir() if child.is_dir()]:
                _kill_all(group)
            with contextlib.suppress(OSError):
                base.rmdir()
            log.warning("swept the call groups of a runner that is gone: %s", base.name)


def _kill_all(group: Path) -> None:
    for _ in range(KILL_ROUNDS):
        try:
            pids = [int(pid) for pid in (group / "cgroup.procs").read_text().split()]
        except OSError:
            return
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        group.rmdir()


def _candidates(seen: list[Mount]) -> list[tuple[int, Mount]]:
    v2 = [(2, mount) for mount in seen if mount.kind == "cgroup2"]
    v1 = [(1, mount) for mount in seen if mount.kind == "cgroup" and "pids" in mount.options]
    return v2 + v1


def _make_base(version: int, parent: Path, name: str) -> Path:
    if version == 2:
        controllers = (parent / "cgroup.controllers").read_text().split()
        if "pids" not in controllers:
            raise OSError(0, "the pids controller is not offered here")
        enabled = (parent / "cgroup.subtree_control").read_text().split()
        if "pids" not in enabled:
            (parent / "cgroup.subtree_control").write_text("+pids")
    base = parent / name
    base.mkdir(exist_ok=True)
    if not (base / "pids.max").exists():
        base.rmdir()
        raise OSError(0, "a child group has no pids.max")
    if version == 2:
        (base / "cgroup.subtree_control").write_text("+pids")
    return base


class CallGroup:
    """One call's cgroup: made before the command starts, emptied and removed after it."""

    _numbers = itertools.count(1)

    def __init__(self, layout: Layout, pids_limit: int) -> None:
        assert layout.base is not None
        self.path = layout.base / f"call{next(self._numbers)}"
        self.path.mkdir()
        (self.path / "pids.max").write_text(str(pids_limit))

    @property
    def procs(self) -> Path:
        return self.path / "cgroup.procs"

    def pids(self) -> list[int]:
        with contextlib.suppress(FileNotFoundError):
            return [int(pid) for pid in self.procs.read_text().split()]
        return []

    def signal(self, signum: signal.Signals) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)

    async def end(self) -> None:
        """SIGKILL every pid until the group is empty, then remove it."""
        for _ in range(KILL_ROUNDS):
            if not self.pids():
                break
            self.signal(signal.SIGKILL)
            await asyncio.sleep(ROUND_PAUSE_S)  # the killed exit; the kernel empties the group
        for _ in range(KILL_ROUNDS):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:  # busy while the last ones exit
                await asyncio.sleep(ROUND_PAUSE_S)
        log.warning("could not remove the call group %s", self.path)


def remove_base(layout: Layout) -> None:
    """At exit: the runner's group, and any call group a crash left behind, when empty."""
    if layout.base is None:
        return
    for child in layout.base.iterdir():
        if child.is_dir():
            with contextlib.suppress(OSError):
                child.rmdir()
    with contextlib.suppress(OSError):
        layout.base.rmdir()
