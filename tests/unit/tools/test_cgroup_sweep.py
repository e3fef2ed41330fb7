"""A runner SIGKILLed with commands running leaves its call groups behind; the next runner on
the host kills what is in them and removes them (SPEC §3.9: sessions end with their runner).
The sweep only reads `cgroup.procs` and removes directories, so a plain tree stands in for the
hierarchy here; the live cgroup path is covered by the e2e runner tests."""

import subprocess
from pathlib import Path

from services.tools.sandbox import cgroups


def pid_max() -> int:
    return int(Path("/proc/sys/kernel/pid_max").read_text(encoding="ascii"))


def test_the_groups_of_a_gone_runner_are_emptied_and_a_live_ones_kept(tmp_path):
    orphan = subprocess.Popen(["sleep", "300"])
    kept = subprocess.Popen(["sleep", "300"])
    try:
        gone = tmp_path / f"stellaclaw-{pid_max() + 1}-rgone" / "call1"  # no such pid, ever
        alive = tmp_path / f"stellaclaw-{kept.pid}-ralive" / "call1"
        for group, pid in ((gone, orphan.pid), (alive, kept.pid)):
            group.mkdir(parents=True)
            (group / "cgroup.procs").write_text(f"{pid}\n", encoding="ascii")
        cgroups.sweep(tmp_path)
        assert orphan.wait(timeout=5) == -9  # killed, and reaped within the deadline
        assert kept.poll() is None
    finally:
        for process in (orphan, kept):
            process.kill()
            process.wait()
