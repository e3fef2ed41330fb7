"""`grep`, `glob` and `ls` on an SSH remote (SPEC §6.6): a small Python script run there.

The script runs on the remote's Python (3.6 or later, stdlib only), so it carries its own copy of
the local tools' semantics (`grep_files`, `glob_files`, `listing`, `walking.glob_regex`), kept in
step by the tests. It reads `{"op", "root", "args"}` on stdin and prints `{"result": {...}}` or
`{"error": [<error_kind>, <message>]}`. The SSH account is the boundary, so links are followed
wherever they lead. The script is plain ASCII, so the remote's locale cannot garble it.
"""

import shlex
from collections.abc import Sequence
from typing import Literal

import asyncssh
import msgspec

from services.tools.results import ToolError
from shared.messages.tools import ErrorKind

WalkOp = Literal["grep", "glob", "ls"]
PYTHONS = ("python3", "python")  # tried in order; each must be Python 3.6 or later
NO_PYTHON_STATUS = 127  # the command's exit status when no interpreter fits
VERSION_CHECK = "import sys; sys.exit(sys.version_info < (3, 6))"

# One blank line between the script's functions keeps this module within its budget.
SCRIPT = r'''
import json
import os
import re
import stat
import sys
from collections import deque

SKIPPED_DIRS = {".git", "node_modules", "__pycache__", ".venv", "venv", ".stellaclaw", ".skill"}
LS_SKIPPED = {"__pycache__", "node_modules", "target", "dist", "build", "coverage", "venv"}
MAX_FILES = 100
MAX_MATCHES = 200
MAX_MATCH_CHARS = 500
MAX_FILE_BYTES = 5 * 1024 * 1024
PROBE_BYTES = 8192
CONTEXT_CHARS = 100
MAX_ENTRIES = 1000
ELLIPSIS = "\u2026"
MORE = ELLIPSIS + " more entries; list a subdirectory"
UNITS = ("KiB", "MiB", "GiB", "TiB")

class Failure(Exception):
    """Raised with (error_kind, message)."""

def glob_regex(pattern):
    pieces = []
    index = nesting = 0
    while index < len(pattern):
        piece, index, nesting = glob_token(pattern, index, nesting)
        pieces.append(piece)
    if nesting:
        raise re.error("unclosed '{'")
    return re.compile("".join(pieces) + r"\Z", re.DOTALL)

def glob_token(pattern, index, nesting):
    char = pattern[index]
    if pattern.startswith("**/", index):
        return "(?:.*/)?", index + 3, nesting
    if pattern.startswith("**", index):
        return ".*", index + 2, nesting
    if char == "*":
        return "[^/]*", index + 1, nesting
    if char == "?":
        return "[^/]", index + 1, nesting
    if char == "[":
        piece, after = glob_bracket(pattern, index)
        return piece, after, nesting
    if char == "{":
        return "(?:", index + 1, nesting + 1
    if char == "}" and nesting:
        return ")", index + 1, nesting - 1
    if char == "," and nesting:
        return "|", index + 1, nesting
    return re.escape(char), index + 1, nesting

def glob_bracket(pattern, index):
    inner = index + 1
    if pattern.startswith("!", inner):
        inner += 1
    close = pattern.find("]", inner + 1 if pattern.startswith("]", inner) else inner)
    if close < 0:
        return re.escape("["), index + 1
    members = pattern[inner:close].replace("\\", "\\\\").replace("[", "\\[").replace("^", "\\^")
    negate = "^" if pattern[index + 1] == "!" else ""
    return "[" + negate + members + "]", close + 1

def shown(root, path):
    prefix = root.rstrip("/") + "/"
    if path == root:
        return "."
    return path[len(prefix):] if path.startswith(prefix) else path

def existing(root, path):
    real = os.path.realpath(os.path.join(root, path))
    if not os.path.exists(real):
        raise Failure("not_found", path + " does not exist")
    return real

def stat_or_none(path, follow=True):
    try:
        return os.stat(path, follow_symlinks=follow)
    except OSError:
        return None

def scan(folder):
    seen = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    seen.append((entry.name, True, None))
                else:
                    seen.append((entry.name, False, stat_or_none(entry.path, entry.is_symlink())))
    except OSError:
        pass
    return seen

def files_under(start, skipped):
    if not os.path.isdir(start):
        info = stat_or_none(start)
        is_file = info is not None and stat.S_ISREG(info.st_mode)
        return [(start, os.path.basename(start), info)] if is_file else []
    found = []
    pending = [(start, "")]
    while pending:
        folder, prefix = pending.pop()
        for name, is_dir, info in scan(folder):
            if is_dir and name not in skipped:
                pending.append((os.path.join(folder, name), prefix + name + "/"))
            elif not is_dir and info is not None and stat.S_ISREG(info.st_mode):
                found.append((os.path.join(folder, name), prefix + name, info))
    return found

def read_text(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as source:
            if not stat.S_ISREG(os.fstat(source.fileno()).st_mode):
                return None
            raw = source.read(MAX_FILE_BYTES + 1)
    except OSError:
        return None
    if len(raw) > MAX_FILE_BYTES or b"\0" in raw[:PROBE_BYTES]:
        return None
    return raw.decode("utf-8", "replace")

def matches(path, regex):
    text = read_text(path)
    if text is None:
        return
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    for number, line in enumerate(lines, 1):
        stripped = line[:-1] if line.endswith("\r") else line
        hit = regex.search(stripped)
        if hit is not None:
            yield number, stripped, hit.start()

def excerpt(prefix, text, column):
    room = MAX_MATCH_CHARS - len(prefix)
    if len(text) > room:
        if column + CONTEXT_CHARS < room:
            text = text[: room - 1] + ELLIPSIS
        else:
            rest = text[column - CONTEXT_CHARS:]
            text = ELLIPSIS + (rest if len(rest) <= room - 1 else rest[: room - 2] + ELLIPSIS)
    line = prefix + text
    return line if len(line) <= MAX_MATCH_CHARS else line[: MAX_MATCH_CHARS - 1] + ELLIPSIS

def grep(root, args):
    pattern = args["pattern"]
    try:
        regex = re.compile(pattern, re.IGNORECASE if args.get("case_insensitive") else 0)
    except re.error as exc:
        raise Failure("invalid_arguments", "invalid regex %r: %s" % (pattern, exc))
    include = args.get("include")
    try:
        wanted = glob_regex(include if "/" in include else "**/" + include) if include else None
    except re.error as exc:
        raise Failure("invalid_arguments", "invalid include glob %r: %s" % (include, exc))
    start = existing(root, args.get("path", "."))
    found = [
        item for item in files_under(start, SKIPPED_DIRS)
        if item[2].st_size <= MAX_FILE_BYTES and (wanted is None or wanted.match(item[1]))
    ]
    ordered = sorted(((shown(root, item[0]), item) for item in found), key=newest)
    if args.get("output", "files") == "files":
        return grep_files(pattern, ordered, regex)
    return grep_lines(pattern, ordered, regex)

def newest(pair):
    return -pair[1][2].st_mtime_ns, pair[0]

def grep_files(pattern, ordered, regex):
    names = []
    for name, item in ordered:
        if next(matches(item[0], regex), None) is not None:
            names.append(name)
            if len(names) > MAX_FILES:
                break
    listed = names[:MAX_FILES]
    return {"pattern": pattern, "num_files": len(listed), "filenames": listed,
            "truncated": len(names) > MAX_FILES}

def grep_lines(pattern, ordered, regex):
    found = []
    for name, item in ordered:
        if len(found) > MAX_MATCHES:
            break
        for number, text, column in matches(item[0], regex):
            found.append(excerpt("%s:%d: " % (name, number), text, column))
            if len(found) > MAX_MATCHES:
                break
    listed = found[:MAX_MATCHES]
    return {"pattern": pattern, "num_matches": len(listed), "matches": listed,
            "truncated": len(found) > MAX_MATCHES}

def glob(root, args):
    pattern = args["pattern"]
    if pattern.startswith("/"):
        message = "pattern %r is absolute; put the directory in path and a relative pattern"
        raise Failure("invalid_arguments", message % pattern)
    try:
        regex = glob_regex(pattern)
    except re.error as exc:
        raise Failure("invalid_arguments", "invalid glob %r: %s" % (pattern, exc))
    path = args.get("path", ".")
    start = existing(root, path)
    if not os.path.isdir(start):
        raise Failure("invalid_arguments", path + " is a file; glob searches a directory")
    skipped = SKIPPED_DIRS - set(pattern.split("/"))
    found = [item for item in files_under(start, skipped) if regex.match(item[1])]
    ordered = sorted(found, key=lambda item: (-item[2].st_mtime_ns, shown(root, item[0])))
    names = [shown(root, item[0]) for item in ordered[: MAX_FILES + 1]]
    return {"pattern": pattern, "num_files": min(len(names), MAX_FILES),
            "filenames": names[:MAX_FILES], "truncated": len(names) > MAX_FILES}

def human_size(size):
    if size < 1024:
        return "%d B" % size
    value = size / 1024
    unit = 0
    while value >= 1024 and unit < len(UNITS) - 1:
        value /= 1024
        unit += 1
    return "%.1f %s" % (value, UNITS[unit])

def ls_entries(folder):
    kept = []
    try:
        with os.scandir(folder) as scanned:
            items = [item for item in scanned if is_listed(item)]
    except OSError:
        return []
    for item in items:
        is_link = item.is_symlink()
        info = stat_or_none(item.path, is_link)
        if info is not None and stat.S_ISDIR(info.st_mode):
            kept.append((item.path, item.name, True, is_link, 0))
        elif info is not None and stat.S_ISREG(info.st_mode):
            kept.append((item.path, item.name, False, is_link, info.st_size))
    return sorted(kept, key=lambda entry: (entry[1].casefold(), entry[1]))

def is_listed(item):
    if item.name.startswith("."):
        return False
    return not (item.name in LS_SKIPPED and item.is_dir(follow_symlinks=False))

def survey(start, depth):
    children = {}
    count = 0
    pending = deque([(start, 1)])
    while pending:
        folder, level = pending.popleft()
        for entry in ls_entries(folder):
            if count == MAX_ENTRIES:
                return children, count, True
            children.setdefault(folder, []).append(entry)
            count += 1
            if entry[2] and not entry[3] and level < depth:
                pending.append((entry[0], level + 1))
    return children, count, False

def render(children, folder, level, lines):
    for path, name, is_dir, is_link, size in children.get(folder, []):
        if not is_dir:
            lines.append("  " * level + "%s (%s)" % (name, human_size(size)))
            continue
        lines.append("  " * level + name + ("/ (symlink)" if is_link else "/"))
        render(children, path, level + 1, lines)

def ls(root, args):
    start = existing(root, args.get("path", "."))
    if not os.path.isdir(start):
        line = "%s (%s)" % (os.path.basename(start), human_size(os.stat(start).st_size))
        return {"path": shown(root, start), "entries": 1, "truncated": False, "tree": line}
    children, count, truncated = survey(start, args.get("depth", 3))
    lines = []
    render(children, start, 0, lines)
    if truncated:
        lines.append(MORE)
    return {"path": shown(root, start), "entries": count, "truncated": truncated,
            "tree": "\n".join(lines)}

def main():
    request = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    root = os.path.realpath(request["root"])
    try:
        answer = {"result": {"grep": grep, "glob": glob, "ls": ls}[request["op"]](
            root, request["args"])}
    except Failure as exc:
        answer = {"error": [exc.args[0], exc.args[1]]}
    # a name that is not UTF-8 (a lone surrogate here) shows a `?`, rather than break the answer
    sys.stdout.buffer.write(json.dumps(answer, ensure_ascii=False).encode("utf-8", "replace"))

if __name__ == "__main__":
    main()
'''


class WalkRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What the script is asked: the tool, its arguments as the local tool takes them, the root."""

    op: WalkOp
    root: str
    args: dict[str, object]


class _Answer(msgspec.Struct, frozen=True, kw_only=True):
    result: dict[str, object] | None = None
    error: tuple[ErrorKind, str] | None = None  # the local tool's error_kind and message


_ANSWER: msgspec.json.Decoder[_Answer] = msgspec.json.Decoder(_Answer)


def walk_command(interpreters: Sequence[str] = PYTHONS) -> str:
    """The shell command that runs the script with the first fitting interpreter."""
    names = " ".join(shlex.quote(name) for name in interpreters)
    return (
        f"for p in {names}; do"
        f' if command -v "$p" >/dev/null 2>&1 && "$p" -c {shlex.quote(VERSION_CHECK)} 2>/dev/null;'
        f' then exec "$p" -c {shlex.quote(SCRIPT)}; fi; done; exit {NO_PYTHON_STATUS}'
    )


async def run_walk(
    conn: asyncssh.SSHClientConnection, root: str, op: WalkOp, args: dict[str, object], remote: str
) -> dict[str, object]:
    """Run `op` (`grep`, `glob` or `ls`) with `args` on the remote `remote` under `root`; the
    result object the local tool would give, as JSON data. Errors are the local tool's."""
    return await run_script(conn, WalkRequest(op=op, root=root, args=args), remote)


async def run_script(
    conn: asyncssh.SSHClientConnection,
    request: WalkRequest,
    remote: str,
    interpreters: Sequence[str] = PYTHONS,
) -> dict[str, object]:
    """`run_walk` with the interpreters to try named. The call's own time limit bounds the wait;
    leaving this function, by cancellation too, closes the channel."""
    try:
        process = await conn.create_process(
            walk_command(interpreters), input=msgspec.json.encode(request), encoding=None
        )
        async with process:
            done = await process.wait()
    except (asyncssh.Error, OSError) as exc:
        reason = str(exc) or type(exc).__name__
        raise ToolError("remote_unreachable", f"cannot reach remote {remote}: {reason}") from None
    stdout = done.stdout if isinstance(done.stdout, bytes) else b""
    stderr = done.stderr if isinstance(done.stderr, bytes) else b""
    if done.exit_status == NO_PYTHON_STATUS and not stdout:
        raise ToolError("unavailable", f"remote {remote} needs python3 for grep, glob and ls")
    return _answer(stdout, stderr, remote)


def _answer(stdout: bytes, stderr: bytes, remote: str) -> dict[str, object]:
    try:
        answer = _ANSWER.decode(stdout)
    except msgspec.DecodeError:
        lines = stderr.decode("utf-8", errors="replace").strip().splitlines()
        reason = lines[-1] if lines else "it printed no answer"
        raise ToolError("failed", f"the walk script failed on remote {remote}: {reason}") from None
    if answer.error is not None:
        raise ToolError(*answer.error)
    if answer.result is None:
        raise ToolError("failed", f"the walk script on remote {remote} gave an empty answer")
    return answer.result
