"""The tool lines' briefs (SPEC §12.6): one line of at most 40 chars of the key argument."""

import msgspec
import pytest

from services.session.tool_briefs import MAX_CHARS, brief


def args(**values: object) -> str:
    return msgspec.json.encode(values).decode()


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("shell", args(command="echo hi", wait_s=5), "echo hi"),
        ("shell", args(session="sh3", input="y\n"), "sh3"),  # a poll names its session
        ("shell_close", args(signal="kill", session="sh3"), "sh3"),
        ("file_read", args(offset=3, file_path="src/app.py"), "src/app.py"),
        ("file_write", args(content="x = 1", file_path="a.py"), "a.py"),
        ("edit", args(old_text="a", new_text="b", file_path="b.py"), "b.py"),
        ("image_load", args(file_path="cat.png"), "cat.png"),
        ("send_file", args(caption="here", file_path="out/report.pdf"), "out/report.pdf"),
        ("grep", args(path="src", pattern="TODO"), "TODO"),
        ("glob", args(path="src", pattern="**/*.py"), "**/*.py"),
        ("ls", args(depth=2, path="docs"), "docs"),
        ("web_fetch", args(method="GET", url="https://example.com"), "https://example.com"),
        ("file_download_start", args(file_path="x.iso", url="https://a.b/x"), "https://a.b/x"),
        ("web_search", args(kind="news", query="nats jetstream"), "nats jetstream"),
        ("image_generation", args(size="1024x1024", prompt="a red fox"), "a red fox"),
        ("skill_update", args(skill_name="pdf"), "pdf"),
        ("cron_create", args(schedule="0 9 * * *", name="daily"), "daily"),
        ("file_download_wait", args(download_id="dl2", wait_s=60), "dl2"),  # the first string
        ("apply_patch", args(strip=1), "-"),  # no string argument at all
        ("shell", "{not json", "-"),
        ("shell", "[1, 2]", "-"),
        ("shell", "", "-"),
    ],
)
def test_the_brief_is_the_key_argument_of_each_tool(tool, arguments, expected):
    assert brief(tool, arguments) == expected


def test_a_brief_is_one_line_of_at_most_40_chars():
    command = "pytest -q\n   tests/test_api.py tests/test_models.py --maxfail=1"
    line = brief("shell", args(command=command))
    assert line == "pytest -q tests/test_api.py tests/test_…"
    assert len(line) == MAX_CHARS
    assert "\n" not in line
    assert brief("web_fetch", args(url="https://example.com/" + "a" * 60)).endswith("…")


def test_an_empty_key_argument_gives_way_to_the_next_string():
    assert brief("shell", args(command="  ", session="sh1")) == "sh1"
