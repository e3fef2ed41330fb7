"""A result text too long for the model (SPEC §5.0): cut in the middle, the whole text kept in
`.stellaclaw/spill/<call_id>.txt` (written race-free, off the event loop) and in `sc_files`."""

import asyncio
import logging

from services.tools import fs
from services.tools.context import object_name
from services.tools.results import MAX_RESULT_CHARS, cut_middle, spill_path
from services.tools.workspace import ToolCall

log = logging.getLogger(__name__)


async def capped(text: str, call: ToolCall) -> str:
    """`text` if the model can take it; else its head and tail around a marker naming the spill."""
    if len(text) <= MAX_RESULT_CHARS:
        return text
    relative = spill_path(call.call_id)
    data = text.encode("utf-8", errors="surrogateescape")
    await asyncio.to_thread(fs.write_atomically, call, relative, data)
    try:
        await call.runner.store_file(
            object_name(call.conversation_id, call.call_id, "spill.txt"), data
        )
    except Exception as exc:  # noqa: BLE001 -- the workspace copy stands; the model is told of it
        log.warning("the spill of %s is not in the file store: %r", call.call_id, exc)
    marker = "…[{omitted} chars omitted; full output in " + relative + "]…"
    return cut_middle(text, MAX_RESULT_CHARS, marker)
