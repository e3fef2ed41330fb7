"""How a batch's calls are grouped (SPEC §3.3): pure functions, no bus."""

from services.session.tool_batch import groups
from shared.ids import ToolCallId
from shared.messages.history import ToolCall
from shared.messages.tools import ToolTraits

TRAITS = {
    "read": ToolTraits(is_serial=False, is_idempotent=True),
    "write": ToolTraits(is_serial=True),
}


def calls(*names: str) -> list[ToolCall]:
    return [
        ToolCall(call_id=ToolCallId(f"c{n}"), provider_call_id=f"p{n}", name=name, arguments="{}")
        for n, name in enumerate(names)
    ]


def test_consecutive_parallel_calls_run_together_and_a_serial_call_alone():
    batch = calls("read", "read", "write", "read", "write", "write", "read", "read")
    grouped = [[call.call_id for call in group] for group in groups(batch, TRAITS)]
    assert grouped == [["c0", "c1"], ["c2"], ["c3"], ["c4"], ["c5"], ["c6", "c7"]]


def test_a_tool_no_runner_described_counts_as_serial():
    grouped = [[c.call_id for c in g] for g in groups(calls("read", "mystery", "read"), TRAITS)]
    assert grouped == [["c0"], ["c1"], ["c2"]]
