"""The brief of a tool call on the progress panel (SPEC §12.6): one line of at most 40 chars of
the call's key argument, so `⏳ shell: pytest -q tests/test_api.py` says what is running."""

from typing import Any

import msgspec

MAX_CHARS = 40
NOTHING = "-"
FILE_PATH = ("file_path",)
# The argument that says what a call does, by tool; a tool not named here shows its first
# string argument. A shell call without a command polls a session.
KEYS: dict[str, tuple[str, ...]] = {
    "shell": ("command", "session"),
    "shell_close": ("session",),
    "file_read": FILE_PATH,
    "file_write": FILE_PATH,
    "edit": FILE_PATH,
    "image_load": FILE_PATH,
    "pdf_load": FILE_PATH,
    "audio_load": FILE_PATH,
    "media_load": FILE_PATH,
    "send_file": FILE_PATH,
    "grep": ("pattern",),
    "glob": ("pattern",),
    "ls": ("path",),
    "web_fetch": ("url",),
    "file_download_start": ("url",),
    "web_search": ("query",),
    "image_generation": ("prompt",),
    "subagent_start": ("task",),
    "background_start": ("task",),
}
PREFIX_KEYS = {"skill_": ("skill_name",), "cron_": ("name",)}


def brief(tool: str, arguments: str) -> str:
    """The call's key argument as one line of at most MAX_CHARS chars, `-` when it has none."""
    try:
        decoded: Any = msgspec.json.decode(arguments.strip() or "{}")
    except msgspec.DecodeError:
        return NOTHING  # malformed: the model hears of it in the call's result
    if not isinstance(decoded, dict):
        return NOTHING
    strings = {k: v for k, v in decoded.items() if isinstance(v, str) and v.strip()}
    for key in _keys(tool):
        if key in strings:
            return one_line(strings[key], MAX_CHARS)
    first = next(iter(strings.values()), "")
    return one_line(first, MAX_CHARS) if first else NOTHING


def _keys(tool: str) -> tuple[str, ...]:
    if tool in KEYS:
        return KEYS[tool]
    for prefix, keys in PREFIX_KEYS.items():
        if tool.startswith(prefix):
            return keys
    return ()


def one_line(text: str, max_chars: int) -> str:
    """`text` with its whitespace runs as single spaces, cut to `max_chars` ending in `…`."""
    line = " ".join(text.split())
    if len(line) <= max_chars:
        return line
    return line[: max_chars - 1].rstrip() + "…"
