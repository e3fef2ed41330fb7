"""Sample tool requests and calls for tests."""

from pathlib import Path

import msgspec

from services.tools import workspace
from services.tools.sandbox.cgroups import Layout
from services.tools.sandbox.host import SandboxHost
from services.tools.workspace import ToolCall
from shared.config import SandboxConfig
from shared.ids import ConversationId, SessionId, ToolCallId
from shared.messages.contract import Workspace
from shared.messages.tools import RunTool
from shared.sandbox import SandboxSetting, SandboxSupport

# A host that was not probed: for tests of what does not launch a command.
UNPROBED = SandboxHost(
    config=SandboxConfig(),
    runner_id="r-unprobed",
    support=SandboxSupport(bubblewrap_error="not probed in this test"),
    cgroups=Layout(version=0, reason="not probed in this test"),
)


def run_tool(
    tool: str,
    arguments: object,
    *,
    call: str = "c1",
    session: str = "tg_1_fg1",
    timeout_s: float = 60.0,
) -> RunTool:
    """A RunTool for conversation tg_1; `arguments` is JSON-encoded unless it is already bytes."""
    raw = arguments if isinstance(arguments, bytes) else msgspec.json.encode(arguments)
    return RunTool(
        session_id=SessionId(session),
        conversation_id=ConversationId("tg_1"),
        call_id=ToolCallId(call),
        tool=tool,
        arguments=msgspec.Raw(raw),
        workspace=Workspace(pool="local", path="workspaces/tg_1"),
        timeout_s=timeout_s,
        sandbox="subprocess",
    )


def in_mode(request: RunTool, sandbox: SandboxSetting) -> RunTool:
    return msgspec.structs.replace(request, sandbox=sandbox)


def tool_call(
    workdir: Path,
    call: str = "c1",
    timeout_s: float = 60.0,
    *,
    host: SandboxHost = UNPROBED,
    sandbox: SandboxSetting = "subprocess",
) -> ToolCall:
    """The call a tool sees for `run_tool(...)` in `workdir`, its workspace created."""
    request = in_mode(run_tool("file_read", {}, call=call, timeout_s=timeout_s), sandbox)
    return workspace.prepare(request, workdir, host)


def host_with_software(software: Path) -> SandboxHost:
    """An unprobed host whose config names `software` as the software dir (SPEC §6.5)."""
    config = SandboxConfig(software_dir=str(software))
    return msgspec.structs.replace(UNPROBED, config=config)


class Store:
    """The file store as a tool sees it: a put that records what it was given."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    async def put(self, name: str, data: bytes) -> None:
        self.objects[name] = data
