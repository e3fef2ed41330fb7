"""A user message's files written into the workspace before the model sees them (DESIGN §4):
a PlaceFiles request to any runner of the workspace's pool (`sc.tool.place.<pool>`).

The paths the runner answers (a clash moves a file to `-2`, …) are what history keeps and what
the model is shown. Asking again after a crash is harmless: the same bytes at a path are left
where they are. When no runner answers, the files are kept with an error the model reads on
their `Attachments:` line; they still go to the model as SPEC §8.2 says, from sc_files.
"""

import logging

import msgspec
import nats.errors
from nats.micro.request import ERROR_HEADER

from shared import bus, subjects
from shared.messages.contract import Attachment
from shared.messages.history import UserMessage
from shared.messages.session import HandleMessage
from shared.messages.tools import FILES_PLACED, PlaceFiles

PLACE_TIMEOUT_S = 60.0
NOT_PLACED = "not placed in the workspace: "
log = logging.getLogger(__name__)


async def placed(conn: bus.Connection, message: UserMessage, source: HandleMessage) -> UserMessage:
    """`message` with its stored files placed in the workspace of `source` (the user message it
    was made from, or the newest of those folded into it); files whose download failed stay as
    they are."""
    wanted = [a for a in message.attachments if _is_stored(a)]
    if not wanted:
        return message
    workspace = source.settings.workspace
    request = PlaceFiles(
        conversation_id=source.message.chat.conversation_id, workspace=workspace, files=wanted
    )
    answered = await _ask(conn, request)
    if isinstance(answered, str):
        log.warning("files not placed in %s: %s", workspace.path, answered)
        answered = [_failed(a, answered) for a in wanted]
    found = iter(answered)
    attachments = [next(found) if _is_stored(a) else a for a in message.attachments]
    return msgspec.structs.replace(message, attachments=attachments)


async def _ask(conn: bus.Connection, request: PlaceFiles) -> list[Attachment] | str:
    """The runner's entries, one per file; or why there are none."""
    pool = request.workspace.pool
    subject = subjects.tool_place(pool)
    try:
        reply = await conn.nc.request(subject, bus.encode(request), timeout=PLACE_TIMEOUT_S)
    except (nats.errors.NoRespondersError, TimeoutError):
        return f"no tool runner of pool {pool} answered"
    refusal = (reply.headers or {}).get(ERROR_HEADER)
    if refusal:
        return f"the tool runner refused the request: {refusal}"
    answer = await bus.decoded(conn, FILES_PLACED, reply.data, subject)
    if answer is None or len(answer.placed) != len(request.files):
        return "the tool runner's answer could not be read"
    return answer.placed


def _is_stored(attachment: Attachment) -> bool:
    """In sc_files: its download worked (a failed one is never placed)."""
    return bool(attachment.object_name) and not attachment.error


def _failed(attachment: Attachment, why: str) -> Attachment:
    return msgspec.structs.replace(attachment, error=NOT_PLACED + why)
