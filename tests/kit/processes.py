"""Host processes by command line: how a test sees a command's processes in any sandbox mode
(inside bubblewrap `$$` is a pid of the sandbox's own namespace, not the host's)."""

from pathlib import Path


def alive(*argv: str) -> list[int]:
    """Host pids of live (not zombie) processes whose command line is exactly `argv`."""
    wanted = "".join(f"{arg}\0" for arg in argv).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()  # empty for a zombie
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if cmdline == wanted and state != "Z":
            found.append(int(entry.name))
    return found
