"""SPEC §6.4: the `bwrap` command line that confines one command.

A command sees its own PID namespace, a read-only system, a few files of `/etc`, fresh `/proc`,
`/dev`, `/tmp` and `/run`, its workspace and the shared dir read-write at their own paths, the
software dir read-only, and nothing else: no other workspace, no workdir, no config, no NATS
store, no `~/.ssh`; no network unless `sandbox.network`. Bind order matters: a workspace under
`/tmp` (as in tests) is bound after the tmpfs that would hide it.
"""

from pathlib import Path

import msgspec

from shared.config import SandboxConfig

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64")
ETC_ENTRIES = (
    "alternatives",
    "ssl",
    "ca-certificates",
    "resolv.conf",
    "hosts",
    "ld.so.cache",
    "localtime",
    "passwd",
    "group",
)
HOSTNAME = "stellaclaw"
MIB = 1024 * 1024


class Binds(msgspec.Struct, frozen=True, kw_only=True):
    """The host paths one call may see."""

    workspace: Path
    shared: Path
    cwd: Path  # inside the workspace or the shared dir
    software: Path | None = None  # `sandbox.software_dir`, resolved


def argv(config: SandboxConfig, binds: Binds, env: dict[str, str], command: list[str]) -> list[str]:
    """`bwrap <layout> -- <command>`."""
    args = [config.bwrap_path, "--die-with-parent", "--new-session", "--unshare-all"]
    if config.network:
        args.append("--share-net")
    args += ["--cap-drop", "ALL", "--hostname", HOSTNAME, "--clearenv"]
    for name, value in env.items():
        args += ["--setenv", name, value]
    args += system()
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--size", str(config.tmp_size_mb * MIB), "--tmpfs", "/tmp", "--tmpfs", "/run"]
    args += ["--bind", str(binds.workspace), str(binds.workspace)]
    if not binds.shared.is_relative_to(binds.workspace):
        args += ["--bind", str(binds.shared), str(binds.shared)]
    if binds.software is not None:
        args += ["--ro-bind", str(binds.software), config.software_mount_path]
    args += ["--remount-ro", "/", "--chdir", str(binds.cwd), "--", *command]
    return args


def system() -> list[str]:
    """Read-only system dirs (a symlink such as `/bin -> usr/bin` stays a symlink) and the listed
    `/etc` entries that exist here."""
    args: list[str] = []
    for name in SYSTEM_DIRS:
        path = Path(name)
        if path.is_symlink():
            args += ["--symlink", str(path.readlink()), name]
        elif path.is_dir():
            args += ["--ro-bind", name, name]
    for entry in ETC_ENTRIES:
        path = Path("/etc") / entry
        if path.exists():
            args += ["--ro-bind", str(path), str(path)]
    return args
