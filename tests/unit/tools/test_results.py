"""Capping what the model reads: 40 % head, 60 % tail, the whole text spilled (SPEC §5.0)."""

import msgspec
import pytest

from services.tools import results
from services.tools.context import RunnerContext
from services.tools.spill import capped
from tests.unit.tools.samples import tool_call


async def test_a_short_text_is_kept_whole(workdir):
    call = tool_call(workdir, call="c1")
    assert await capped("x" * 100_000, call) == "x" * 100_000
    assert not (call.root / ".stellaclaw/spill").exists()


async def test_a_long_result_keeps_head_and_tail_and_spills_the_whole(workdir):
    stored: dict[str, bytes] = {}

    async def store(name: str, data: bytes) -> None:
        stored[name] = data

    call = msgspec.structs.replace(
        tool_call(workdir, call="c7"), runner=RunnerContext(store_file=store)
    )
    text = "h" * 60_000 + "m" * 10 + "t" * 60_000
    cut = await capped(text, call)
    marker = "…[20010 chars omitted; full output in .stellaclaw/spill/c7.txt]…"
    assert cut == "h" * 40_000 + marker + "t" * 60_000
    assert (call.root / ".stellaclaw/spill/c7.txt").read_text(encoding="utf-8") == text
    [(name, data)] = stored.items()
    assert name.startswith("tg_1/tool_c7_")
    assert data == text.encode()


async def test_a_spill_symlinked_out_of_the_workspace_is_refused(workdir):
    call = tool_call(workdir, call="c8")
    (call.root / ".stellaclaw").mkdir(exist_ok=True)
    (call.root / ".stellaclaw" / "spill").symlink_to(workdir)
    with pytest.raises(results.ToolError) as caught:
        await capped("x" * 100_001, call)
    assert caught.value.kind == "outside_workspace"
    assert list(workdir.glob("c8.txt")) == []


def test_cut_middle_counts_what_it_drops():
    cut = results.cut_middle("0123456789abcdef", 10, "[{omitted}]")
    assert cut == "0123[6]abcdef"


def test_a_long_error_keeps_5000_and_5000():
    message = "a" * 6_000 + "b" * 6_000
    capped = results.cap_error(message)
    assert capped == "a" * 5_000 + "…[2000 chars omitted]…" + "b" * 5_000
    assert results.cap_error("short") == "short"
