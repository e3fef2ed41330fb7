"""Tool requests (`sc.tool.req.<pool>.<session>`), their start and result
(`sc.tool.res.<session>.<call>`) and the catalog request/reply (`sc.tool.catalog.<pool>`)."""

from typing import Literal

import msgspec

from shared.ids import CallIdField, ConvIdField, SessionIdField
from shared.messages.contract import Attachment, BusMessage, Value, Workspace
from shared.sandbox import SandboxSetting, SandboxSupport

ErrorKind = Literal[
    "invalid_arguments",
    "unknown_tool",
    "not_found",
    "outside_workspace",
    "exists",
    "too_large",
    "not_text",
    "timed_out",
    "cancelled",
    "interrupted_by_restart",
    "limit_reached",
    "remote_unreachable",
    "unavailable",
    "failed",
]


class RunTool(BusMessage, frozen=True, kw_only=True, tag="run_tool"):
    """Run one tool call for a session; answered by exactly one ToolFinished."""

    session_id: SessionIdField
    conversation_id: ConvIdField
    call_id: CallIdField
    tool: str
    arguments: msgspec.Raw  # the model's JSON object, decoded only by the tool that owns it
    workspace: Workspace
    timeout_s: float = 1800.0
    sandbox: SandboxSetting = "auto"  # the conversation's mode; the runner resolves `auto`
    position_in_batch: int = 1  # among the batch's calls of this tool, 1-based (SPEC §5.5)
    remotes: list[str] = msgspec.field(default_factory=list)  # selectable mode: the choices


class ToolStarted(BusMessage, frozen=True, kw_only=True, tag="tool_started"):
    """A runner began a call and will end it within `limit_s` (the limit it enforces)."""

    session_id: SessionIdField
    call_id: CallIdField
    tool: str
    runner_id: str
    limit_s: float


class ToolOutcome(msgspec.Struct, frozen=True, kw_only=True, tag_field="outcome"):
    """Base of a tool call's outcome: a value the model reads, never an exception."""


SendAs = Literal["auto", "document", "photo", "audio", "voice", "video"]


class FileToSend(Value, frozen=True, kw_only=True):
    """A file a tool offers the user (`send_file`, generated images): stored in sc_files; the
    session puts it on the conversation's outputs in order (SPEC §5.6)."""

    attachment: Attachment
    caption: str = ""  # Markdown
    send_as: SendAs = "auto"


class ToolSucceeded(ToolOutcome, frozen=True, kw_only=True, tag="succeeded"):
    output: msgspec.Raw  # the result object as compact JSON
    # Files the tool loaded for the model to see (SPEC §8.3), stored in sc_files.
    attachments: list[Attachment] = msgspec.field(default_factory=list)
    sends: list[FileToSend] = msgspec.field(default_factory=list)  # files for the user


class ToolFailed(ToolOutcome, frozen=True, kw_only=True, tag="failed"):
    error: str  # one readable sentence
    error_kind: ErrorKind


class ToolFinished(BusMessage, frozen=True, kw_only=True, tag="tool_finished"):
    """The one answer to a RunTool, stored before the request is acked."""

    session_id: SessionIdField
    call_id: CallIdField
    tool: str
    result: ToolSucceeded | ToolFailed
    runner_id: str
    duration_s: float


class CancelCall(BusMessage, frozen=True, kw_only=True, tag="cancel_call"):
    """Stop a running call now (its process group is killed); answered by the runner holding it.
    With `wait_only`, only an interruptible call's wait ends (a follow-up came, SPEC §5.0): it
    returns what it has with `interrupted: true` and its command or download goes on."""

    session_id: SessionIdField
    call_id: CallIdField
    wait_only: bool = False


class CallCancelled(BusMessage, frozen=True, kw_only=True, tag="call_cancelled"):
    """The runner held the call and cancelled it; its ToolFinished says `cancelled`."""

    session_id: SessionIdField
    call_id: CallIdField
    runner_id: str


class EndWork(BusMessage, frozen=True, kw_only=True, tag="end_work"):
    """A conversation started afresh (`/new`): every runner ends its shell sessions and
    downloads (SPEC §5.2). With `removed`, the conversation itself ended (an admin rejected it,
    the bot left its group; SPEC §2.1): the runners holding `workspace` also move it aside to
    `workspaces/.removed/<conv>-<date>/`."""

    conversation_id: ConvIdField
    removed: bool = False
    workspace: Workspace | None = None


class PlaceFiles(BusMessage, frozen=True, kw_only=True, tag="place_files"):
    """Write a message's attachments from sc_files into the workspace (`upload/`), asked by the
    session before the turn's first model call of any runner of the workspace's pool
    (`sc.tool.place.<pool>`, DESIGN §4). Placing the same file again changes nothing."""

    conversation_id: ConvIdField
    workspace: Workspace
    files: list[Attachment]


class FilesPlaced(BusMessage, frozen=True, kw_only=True, tag="files_placed"):
    """The answer to PlaceFiles: one entry per file, in order: the workspace path it was
    written to, or why it was not (`error`)."""

    placed: list[Attachment]


class PingRunner(BusMessage, frozen=True, kw_only=True, tag="ping_runner"):
    """Is the runner alive, and which of these calls of the session does it still hold?"""

    session_id: SessionIdField
    call_ids: list[CallIdField]


class RunnerAlive(BusMessage, frozen=True, kw_only=True, tag="runner_alive"):
    runner_id: str
    holding: list[CallIdField]  # the asked calls it is running (or forwarding) now


SessionType = Literal["foreground", "background", "subagent"]


class ListTools(BusMessage, frozen=True, kw_only=True, tag="list_tools"):
    """Ask any runner of a pool for the tools a model may call: the catalog depends on the
    model's capabilities (`image_in` shows `image_load`; native `web_search` hides ours) and on
    the session type (SPEC §5.0's columns)."""

    capabilities: list[str] = msgspec.field(default_factory=list)
    session_type: SessionType = "foreground"
    remotes: list[str] = msgspec.field(default_factory=list)  # selectable mode: the choices


class ToolTraits(Value, frozen=True, kw_only=True):
    """SPEC §5.0's columns: may it wait, may it run beside others, may it run twice; and the
    hard time limit of a call (at most; the runner announces each call's own in ToolStarted)."""

    mode: Literal["immediate", "interruptible"] = "immediate"
    is_serial: bool = True  # the safe reading for a runner that does not say
    is_idempotent: bool = False
    time_limit_s: float = 1800.0


class ToolSpec(Value, frozen=True, kw_only=True):
    name: str
    description: str
    parameters: msgspec.Raw  # a top-level JSON schema object
    traits: ToolTraits = ToolTraits()


class ToolCatalog(BusMessage, frozen=True, kw_only=True, tag="tool_catalog"):
    tools: list[ToolSpec]
    sandbox: SandboxSupport = SandboxSupport()  # what the answering runner's host offers


class ProbePool(BusMessage, frozen=True, kw_only=True, tag="probe_pool"):
    """What can this pool's host do (`sc.tool.probe.<pool>`): can bubblewrap run there; with
    `remote`, can it reach that remote and is `path` a directory there (`/remote`, ≤ 10 s)."""

    remote: str = ""
    path: str = ""
    # `/status`: also list what runs on in this workspace (shell sessions, downloads)
    workspace: Workspace | None = None


class HeldWork(Value, frozen=True, kw_only=True):
    """A shell session or download that outlives its call (`/status`, SPEC §12.4)."""

    name: str  # `sh2`, `dl1`
    started_at: float  # Unix time
    label: str  # the command, or the URL (short)


class PoolProbed(BusMessage, frozen=True, kw_only=True, tag="pool_probed"):
    runner_id: str
    sandbox: SandboxSupport
    remote_error: str = ""  # why the remote or its path cannot be used; "" when it can
    held: list[HeldWork] = msgspec.field(default_factory=list)  # asked with `workspace`


TOOL_REQUEST: msgspec.json.Decoder[RunTool] = msgspec.json.Decoder(RunTool)
ToolEvent = ToolStarted | ToolFinished  # what `sc.tool.res.<session>.<call>` carries
TOOL_EVENT: msgspec.json.Decoder[ToolEvent] = msgspec.json.Decoder(ToolEvent)
PROBE_REQUEST: msgspec.json.Decoder[ProbePool] = msgspec.json.Decoder(ProbePool)
PROBE_REPLY: msgspec.json.Decoder[PoolProbed] = msgspec.json.Decoder(PoolProbed)
CANCEL_CALL: msgspec.json.Decoder[CancelCall] = msgspec.json.Decoder(CancelCall)
CALL_CANCELLED: msgspec.json.Decoder[CallCancelled] = msgspec.json.Decoder(CallCancelled)
END_WORK: msgspec.json.Decoder[EndWork] = msgspec.json.Decoder(EndWork)
PLACE_FILES: msgspec.json.Decoder[PlaceFiles] = msgspec.json.Decoder(PlaceFiles)
FILES_PLACED: msgspec.json.Decoder[FilesPlaced] = msgspec.json.Decoder(FilesPlaced)
DirectRequest = RunTool | PingRunner  # what `sc.tool.direct.<runner_id>` carries
DIRECT_REQUEST: msgspec.json.Decoder[DirectRequest] = msgspec.json.Decoder(DirectRequest)
RUNNER_ALIVE: msgspec.json.Decoder[RunnerAlive] = msgspec.json.Decoder(RunnerAlive)
OUTCOME: msgspec.json.Decoder[ToolSucceeded | ToolFailed] = msgspec.json.Decoder(
    ToolSucceeded | ToolFailed
)
CATALOG_REQUEST: msgspec.json.Decoder[ListTools] = msgspec.json.Decoder(ListTools)
CATALOG_REPLY: msgspec.json.Decoder[ToolCatalog] = msgspec.json.Decoder(ToolCatalog)
