"""Where each hunk of a patch goes in a text file, and the file it makes (SPEC §5.1).

A hunk's old lines (context and removed) match exactly, else ignoring trailing whitespace, else
ignoring leading and trailing whitespace; among the matches of the first level that has any, the
one nearest the hint wins (a unified diff's line number, moved by how far the previous hunk was
off; an envelope hunk's hint is where the previous hunk or its `@@` line ended). Hunks apply in
order, each below the one before. Context lines keep the file's text, so a whitespace-tolerant
match does not rewrite them.

A file whose every line ends in CRLF is worked on as LF and written back with CRLF; bytes that are
not UTF-8 pass through unchanged (surrogate escapes), as in `edit`.
"""

from collections.abc import Callable, Sequence

import msgspec

from services.tools.builtin.edit import BINARY_PROBE_BYTES, ENCODING, LOSSLESS
from services.tools.builtin.patch_parse import Hunk
from services.tools.results import ToolError

SHOWN_LINES = 5  # expected lines quoted when a hunk does not apply


def _exact(line: str) -> str:
    return line


LEVELS: tuple[Callable[[str], str], ...] = (_exact, str.rstrip, str.strip)


class TextFile(msgspec.Struct, frozen=True, kw_only=True):
    """A text file as lines without their endings."""

    lines: list[str]
    is_crlf: bool = False
    has_final_newline: bool = True  # also for an empty file, so that added lines end in one


def decode(data: bytes, name: str) -> TextFile:
    """The text of a file's bytes; a NUL in the first 8 KiB is `not_text`."""
    if b"\0" in data[:BINARY_PROBE_BYTES]:
        raise ToolError("not_text", f"{name} looks binary; apply_patch only changes text files")
    text = data.decode(ENCODING, errors=LOSSLESS)
    is_crlf = "\r\n" in text and text.count("\r\n") == text.count("\n")
    if is_crlf:
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    has_final_newline = lines[-1] == ""
    if has_final_newline:
        lines.pop()
    return TextFile(lines=lines, is_crlf=is_crlf, has_final_newline=has_final_newline)


def encode(file: TextFile) -> bytes:
    ending = "\r\n" if file.is_crlf else "\n"
    text = ending.join(file.lines)
    if file.lines and file.has_final_newline:
        text += ending
    return text.encode(ENCODING, errors=LOSSLESS)


def apply_hunks(file: TextFile, hunks: Sequence[Hunk], name: str) -> TextFile:
    """The file with every hunk applied, or `not_found` naming the first that does not apply."""
    lines = file.lines
    views = [[normal(line) for line in lines] for normal in LEVELS]
    made: list[str] = []
    cursor = drift = 0
    has_final_newline = file.has_final_newline
    for number, hunk in enumerate(hunks, 1):
        where = f"hunk {number} of {name} did not apply"
        first = _after_anchors(views, hunk.anchors, cursor, where)
        expected = first if hunk.hint is None else max(hunk.hint + drift, first)
        start = _start(views, hunk, first, expected)
        if start is None:
            raise ToolError("not_found", _not_found(where, expected, hunk.old))
        if hunk.hint is not None:
            drift = start - hunk.hint
        made += lines[cursor:start]
        made += _replaced(lines, start, hunk.lines)
        cursor = start + len(hunk.old)
        if cursor == len(lines) and (hunk.is_new_unterminated or hunk.is_old_unterminated):
            has_final_newline = not hunk.is_new_unterminated
    made += lines[cursor:]
    return TextFile(lines=made, is_crlf=file.is_crlf, has_final_newline=has_final_newline)


def _after_anchors(views: list[list[str]], anchors: list[str], cursor: int, where: str) -> int:
    """The line after the last of the hunk's `@@ <line>`s, each found below the one before."""
    for anchor in anchors:
        found = None
        for normal, view in zip(LEVELS, views, strict=True):
            wanted = normal(anchor)
            found = next((i for i in range(cursor, len(view)) if view[i] == wanted), None)
            if found is not None:
                break
        if found is None:
            message = f"{where}: the @@ line {anchor!r} was not found from line {cursor + 1} on"
            raise ToolError("not_found", message)
        cursor = found + 1
    return cursor


def _start(views: list[list[str]], hunk: Hunk, first: int, expected: int) -> int | None:
    """Where the hunk's old lines start: at or below `first`, nearest `expected`."""
    old = hunk.old
    size = len(views[0])
    last = size - len(old)
    if not old:  # a pure insertion: at the hint, after the @@ line, else at the end
        is_placed = hunk.hint is not None or bool(hunk.anchors)
        return size if hunk.is_at_end or not is_placed else min(expected, size)
    starts = range(last, last + 1) if hunk.is_at_end else range(first, last + 1)
    for normal, view in zip(LEVELS, views, strict=True):
        wanted = [normal(line) for line in old]
        found = [
            i
            for i in starts
            if i >= first and view[i] == wanted[0] and view[i : i + len(old)] == wanted
        ]
        if found:
            return min(found, key=lambda i: (abs(i - expected), i))
    return None


def _replaced(lines: list[str], start: int, body: list[str]) -> list[str]:
    """The new lines of a hunk placed at `start`: context as the file has it, `+` lines added."""
    made: list[str] = []
    at = start
    for line in body:
        if line[0] == "+":
            made.append(line[1:])
            continue
        if line[0] == " ":
            made.append(lines[at])
        at += 1
    return made


def _not_found(where: str, expected: int, old: list[str]) -> str:
    shown = "\n".join(f"| {line}" for line in old[:SHOWN_LINES])
    return f"{where}: context not found near line {expected + 1}; it expects:\n{shown}"
