"""Patch text → the changes it asks for (SPEC §5.1): the envelope format and unified diffs.

The envelope format:

    *** Begin Patch
    *** Add File: <path>          followed by `+` lines
    *** Update File: <path>       optionally `*** Move to: <path>`, then hunks: `@@` or
                                  `@@ <context line>`, lines starting ` `, `-` or `+`, and
                                  optionally `*** End of File`
    *** Delete File: <path>
    *** End Patch

A unified diff is `--- `/`+++ ` headers (`/dev/null` for an added or deleted file) and
`@@ -a,b +c,d @@` hunks. Their line numbers are hints and their counts are not trusted (models get
them wrong): a hunk runs while its lines start with ` `, `-`, `+` or `\\`. An empty line inside a
hunk is a blank context line (editors strip the lone space), and trailing ones are dropped.
Anything between file sections (`diff --git`, `index`, prose) is skipped, as `patch` does.

Parsing is pure: paths come back as written (after `strip`), checked by the tool.
"""

import re
from typing import Literal

import msgspec

from services.tools.results import ToolError

BEGIN = "*** Begin Patch"
END = "*** End Patch"
ADD = "*** Add File:"
UPDATE = "*** Update File:"
DELETE = "*** Delete File:"
MOVE = "*** Move to:"
END_OF_FILE = "*** End of File"
DEV_NULL = "/dev/null"
NO_NEWLINE = "\\"  # `\ No newline at end of file`
_RANGES = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")

Action = Literal["add", "update", "delete"]


class Hunk(msgspec.Struct, frozen=True, kw_only=True):
    """One hunk: its lines keep their first character (` ` context, `-` removed, `+` added)."""

    lines: list[str]
    hint: int | None = None  # 0-based line where the old lines start (unified diffs)
    anchors: list[str] = msgspec.field(default_factory=list)  # `@@ <line>`s found first
    is_at_end: bool = False  # `*** End of File`: the old lines end the file
    is_old_unterminated: bool = False  # the old side's last line has no newline
    is_new_unterminated: bool = False  # the new side's last line has no newline

    @property
    def old(self) -> list[str]:
        return [line[1:] for line in self.lines if line[0] != "+"]


class FileChange(msgspec.Struct, frozen=True, kw_only=True):
    """What the patch does to one file; an add is one insertion into an empty file."""

    action: Action
    path: str
    to: str | None = None  # an update's new path (`*** Move to:`, differing unified paths)
    hunks: list[Hunk] = msgspec.field(default_factory=list)


def malformed(index: int, why: str) -> ToolError:
    """The error for the patch's 0-based line `index`, shown 1-based."""
    return ToolError("invalid_arguments", f"malformed patch at line {index + 1}: {why}")


def parse(patch: str, strip: int | None) -> list[FileChange]:
    """The patch's changes in order; `strip` drops leading path parts of unified diffs (None:
    1 when the paths start with `a/` and `b/`, else 0)."""
    lines = [line.removesuffix("\r") for line in patch.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise malformed(0, "the patch is empty")
    if lines[first].strip() == BEGIN:
        return _envelope(lines, first + 1)
    return _unified(lines, strip)


def _envelope(lines: list[str], index: int) -> list[FileChange]:
    changes: list[FileChange] = []
    while index < len(lines):
        line = lines[index]
        if line.strip() == END:
            _nothing_after(lines, index + 1)
            return changes
        if line.startswith(ADD):
            change, index = _added(lines, index)
        elif line.startswith(UPDATE):
            change, index = _updated(lines, index)
        elif line.startswith(DELETE):
            change, index = FileChange(action="delete", path=_path(lines, index, DELETE)), index + 1
        elif not line.strip():
            index += 1
            continue
        else:
            raise malformed(
                index,
                f"expected *** Add File, *** Update File, *** Delete File or {END}, got {line!r}",
            )
        changes.append(change)
    raise malformed(len(lines) - 1, f"the patch ends without {END}")


def _nothing_after(lines: list[str], index: int) -> None:
    for number in range(index, len(lines)):
        if lines[number].strip():
            raise malformed(number, f"text after {END}")


def _path(lines: list[str], index: int, marker: str) -> str:
    path = lines[index][len(marker) :].strip()
    if not path:
        raise malformed(index, f"{marker} needs a path")
    return path


def _added(lines: list[str], index: int) -> tuple[FileChange, int]:
    """An added file's `+` lines; an empty line among them is an empty line of the file."""
    path = _path(lines, index, ADD)
    added: list[str] = []
    index += 1
    while index < len(lines) and not lines[index].startswith("***"):
        line = lines[index]
        if line and not line.startswith("+"):
            raise malformed(index, f"every line of an added file starts with +, got {line!r}")
        added.append(line)
        index += 1
    while added and added[-1] == "":
        added.pop()
    hunk = Hunk(lines=[line or "+" for line in added])
    return FileChange(action="add", path=path, hunks=[hunk]), index


def _updated(lines: list[str], index: int) -> tuple[FileChange, int]:
    header = index
    path = _path(lines, index, UPDATE)
    to = None
    index += 1
    if index < len(lines) and lines[index].startswith(MOVE):
        to = _path(lines, index, MOVE)
        index += 1
    hunks, index = _envelope_hunks(lines, index)
    if not hunks and to is None:
        raise malformed(header, f"the update of {path} has no hunks")
    return FileChange(action="update", path=path, to=to, hunks=hunks), index


def _envelope_hunks(lines: list[str], index: int) -> tuple[list[Hunk], int]:
    """The hunks from `index` to the next `***` line (the first may lack its `@@`)."""
    hunks: list[Hunk] = []
    body: list[str] = []
    anchors: list[str] = []
    hint: int | None = None
    opened = index  # the line the current hunk began on
    while index < len(lines):
        line = lines[index]
        is_end = line.rstrip() == END_OF_FILE
        if is_end or (line.startswith("@@") and body):
            hunks.append(_hunk(body, opened, anchors, hint, is_at_end=is_end))
            body, anchors, hint, opened = [], [], None, index + 1 if is_end else index
        if is_end:
            index += 1
            continue
        if line.startswith("@@"):
            hint, anchor = _envelope_header(line)
            anchors += [anchor] if anchor else []
        elif line.startswith("***"):
            break
        elif line == "" or line[0] in " -+":
            body.append(line)
        else:
            raise malformed(index, f"a hunk line starts with a space, - or +, got {line!r}")
        index += 1
    if body or anchors:
        hunks.append(_hunk(body, opened, anchors, hint, is_at_end=False))
    return hunks, index


def _envelope_header(line: str) -> tuple[int | None, str]:
    """An `@@ <context line>` (or a unified `@@ -a,b +c,d @@`, whose numbers become a hint)."""
    ranges = _RANGES.match(line)
    if ranges is None:
        return None, line[2:].strip()
    return _hint(ranges), ""


def _hunk(
    body: list[str], opened: int, anchors: list[str], hint: int | None, *, is_at_end: bool
) -> Hunk:
    """A finished envelope hunk; `opened` is the line it began on (for the error)."""
    while body and body[-1] == "":
        body.pop()
    if not body:
        raise malformed(opened, "a hunk without lines")
    return Hunk(
        lines=[line or " " for line in body], hint=hint, anchors=anchors, is_at_end=is_at_end
    )


def _unified(lines: list[str], strip: int | None) -> list[FileChange]:
    changes: list[FileChange] = []
    index = 0
    while index < len(lines):
        if _is_header(lines, index):
            change, index = _unified_file(lines, index, strip)
            changes.append(change)
        elif lines[index].startswith("@@"):
            raise malformed(index, "a hunk before any --- and +++ file header")
        else:
            index += 1
    if not changes:
        raise malformed(0, f"expected {BEGIN} or a unified diff with --- and +++ file headers")
    return changes


def _is_header(lines: list[str], index: int) -> bool:
    return (
        lines[index].startswith("--- ")
        and index + 1 < len(lines)
        and lines[index + 1].startswith("+++ ")
    )


def _unified_file(lines: list[str], index: int, strip: int | None) -> tuple[FileChange, int]:
    old, new = _header_path(lines[index]), _header_path(lines[index + 1])
    if old is None and new is None:
        raise malformed(index, f"both sides are {DEV_NULL}")
    if strip is None:
        is_git = (old is None or old.startswith("a/")) and (new is None or new.startswith("b/"))
        strip = 1 if is_git else 0
    old = _stripped(old, strip, index)
    new = _stripped(new, strip, index + 1)
    hunks: list[Hunk] = []
    header = index
    index += 2
    while index < len(lines) and lines[index].startswith("@@"):
        hunk, index = _unified_hunk(lines, index)
        hunks.append(hunk)
    if old is None:
        return FileChange(action="add", path=str(new), hunks=hunks), index
    if new is None:
        return FileChange(action="delete", path=old, hunks=hunks), index
    if not hunks and old == new:
        raise malformed(header, f"the diff of {old} has no hunks")
    return FileChange(action="update", path=old, to=None if new == old else new, hunks=hunks), index


def _header_path(line: str) -> str | None:
    """The path of a `--- ` or `+++ ` line, without a tab-separated timestamp."""
    path = line[4:].split("\t", 1)[0].rstrip()
    return None if path == DEV_NULL else path


def _stripped(path: str | None, strip: int, index: int) -> str | None:
    if path is None:
        return None
    parts = path.split("/")
    if not path or len(parts) <= strip:
        raise malformed(index, f"cannot drop {strip} leading path parts from {path!r}")
    return "/".join(parts[strip:])


def _unified_hunk(lines: list[str], index: int) -> tuple[Hunk, int]:
    ranges = _RANGES.match(lines[index])
    if ranges is None:
        raise malformed(index, f"a hunk header looks like @@ -a,b +c,d @@, got {lines[index]!r}")
    opened = index
    body: list[str] = []
    unterminated = {"-": False, "+": False}
    index += 1
    while index < len(lines) and not _is_header(lines, index):
        line = lines[index]
        if line.startswith(NO_NEWLINE) and body:
            for side in "-+" if body[-1][:1] in ("", " ") else body[-1][0]:
                unterminated[side] = True
        elif line == "" or line[0] in " -+":
            body.append(line)
        else:
            break
        index += 1
    while body and body[-1] == "":
        body.pop()
    if not body:
        raise malformed(opened, "a hunk without lines")
    hunk = Hunk(
        lines=[line or " " for line in body],
        hint=_hint(ranges),
        is_old_unterminated=unterminated["-"],
        is_new_unterminated=unterminated["+"],
    )
    return hunk, index


def _hint(ranges: re.Match[str]) -> int:
    """Where `-a,b` says the old lines start, 0-based (`-a,0` inserts after line `a`)."""
    start, count = int(ranges[1]), int(ranges[2] or 1)
    return start if count == 0 else max(start - 1, 0)
