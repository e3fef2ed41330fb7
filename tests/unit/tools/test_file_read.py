"""file_read per SPEC §5.1: numbered lines, windows, flags and its four errors."""

import msgspec
import pytest

from services.tools.builtin.file_read import FileReadArgs, FileReadResult, file_read
from services.tools.results import ToolError, encode
from shared.config import SandboxConfig
from tests.unit.tools.samples import UNPROBED, tool_call


@pytest.fixture
def call(workdir):
    return tool_call(workdir)


async def read(call, **arguments) -> FileReadResult:
    return await file_read(FileReadArgs(**arguments), call)


async def failure(call, **arguments) -> ToolError:
    with pytest.raises(ToolError) as caught:
        await read(call, **arguments)
    return caught.value


async def test_a_text_file_comes_back_as_numbered_lines(call):
    (call.root / "a.txt").write_text("alpha\r\nbeta\n\ngamma", encoding="utf-8")
    result = await read(call, file_path="a.txt")
    assert result == FileReadResult(
        file_path="a.txt",
        start_line=1,
        end_line=4,
        total_lines=4,
        content="1: alpha\n2: beta\n3: \n4: gamma",
    )


async def test_a_window_says_more_lines_follow(call):
    (call.root / "n.txt").write_text("".join(f"line {n}\n" for n in range(1, 11)), encoding="utf-8")
    result = await read(call, file_path="n.txt", offset=4, limit=3)
    assert (result.start_line, result.end_line, result.total_lines) == (4, 6, 10)
    assert result.content == "4: line 4\n5: line 5\n6: line 6"
    assert result.more is True
    last = await read(call, file_path="n.txt", offset=9)
    assert (last.content, last.more) == ("9: line 9\n10: line 10", False)


async def test_long_lines_are_cut_and_bad_bytes_replaced(call):
    (call.root / "odd.txt").write_bytes(b"x" * 2500 + b"\nok \xff\n")
    result = await read(call, file_path="odd.txt")
    assert result.content == "1: " + "x" * 2000 + "…\n2: ok \ufffd"
    assert result.truncated_lines is True
    assert result.decoding_errors is True


async def test_the_output_stops_at_256_kib(call):
    line = "y" * 1000 + "\n"
    (call.root / "big.txt").write_text(line * 400, encoding="utf-8")
    result = await read(call, file_path="big.txt", offset=1, limit=2000)
    assert result.truncated_bytes is True
    assert result.more is True
    assert result.total_lines == 400
    assert result.end_line == 260  # lines of 1,004-1,006 bytes with "<n>: " and the newline
    assert (call.root / ".stellaclaw/spill/c1.txt").exists()  # over 100,000 chars for the model
    assert "chars omitted; full output in .stellaclaw/spill/c1.txt" in result.content


async def test_optional_flags_are_left_out_of_the_json(call):
    (call.root / "a.txt").write_text("a\n", encoding="utf-8")
    result = await read(call, file_path="a.txt")
    assert bytes(encode(result)) == (
        b'{"file_path":"a.txt","start_line":1,"end_line":1,"total_lines":1,"content":"1: a"}'
    )


async def test_a_missing_file_is_not_found(call):
    error = await failure(call, file_path="nope.txt")
    assert (error.kind, str(error)) == ("not_found", "nope.txt does not exist")


async def test_a_directory_points_to_ls(call):
    (call.root / "src").mkdir()
    error = await failure(call, file_path="src")
    assert str(error) == "src is a directory; use ls"


async def test_a_nul_in_the_first_8_kib_is_not_text(call):
    (call.root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    error = await failure(call, file_path="logo.png")
    assert error.kind == "not_text"
    assert str(error) == "logo.png looks binary (image/png); use image_load, pdf_load or shell"


async def test_a_large_file_read_whole_is_refused_but_a_window_is_fine(call):
    (call.root / "huge.log").write_text("z\n" * 200_000, encoding="utf-8")
    error = await failure(call, file_path="huge.log")
    assert error.kind == "too_large"
    assert str(error) == "huge.log is 391 KiB; read it in windows with offset and limit"
    window = await read(call, file_path="huge.log", offset=199_999)
    assert (window.content, window.total_lines) == ("199999: z\n200000: z", 200_000)


async def test_an_offset_past_the_end_is_refused(call):
    (call.root / "a.txt").write_text("a\nb\n", encoding="utf-8")
    error = await failure(call, file_path="a.txt", offset=3)
    assert (error.kind, str(error)) == (
        "invalid_arguments",
        "offset 3 is past the end of a.txt (2 lines)",
    )


async def test_an_empty_file_reads_as_no_lines(call):
    (call.root / "empty.txt").write_bytes(b"")
    result = await read(call, file_path="empty.txt")
    assert (result.content, result.total_lines, result.end_line) == ("", 0, 0)


async def test_a_symlink_leaving_the_workspace_is_refused(call, workdir):
    (workdir / "secret.txt").write_text("key", encoding="utf-8")
    (call.root / "link.txt").symlink_to(workdir / "secret.txt")
    error = await failure(call, file_path="link.txt")
    assert (error.kind, str(error)) == (
        "outside_workspace",
        "path is outside the workspace: link.txt",
    )


async def test_the_path_rule_follows_the_sandbox_mode(workdir, tmp_path):
    """Confined modes: the workspace, shared/ and (for reading) the software dir; `disabled`:
    any absolute path (SPEC §6.1)."""
    software = tmp_path / "software"
    software.mkdir()
    (software / "README").write_text("shared tools\n", encoding="utf-8")
    outside = tmp_path / "outside.txt"
    outside.write_text("host file\n", encoding="utf-8")
    config = SandboxConfig(software_dir=str(software))
    host = msgspec.structs.replace(UNPROBED, config=config)
    confined = tool_call(workdir, host=host, sandbox="subprocess")
    trusted = tool_call(workdir, call="c2", host=host, sandbox="disabled")
    assert (await read(confined, file_path=str(software / "README"))).content == "1: shared tools"
    refused = await failure(confined, file_path=str(outside))
    assert refused.kind == "outside_workspace"
    assert (await read(trusted, file_path=str(outside))).content == "1: host file"
