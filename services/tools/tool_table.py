"""Every built-in tool (SPEC §5.0-§5.6): its argument Struct, function, traits, hard time limit
and when the model is shown it."""

from collections.abc import Callable

from services.tools.builtin import apply_patch as patching
from services.tools.builtin import audio_load as audio
from services.tools.builtin import edit as editing
from services.tools.builtin import file_download as downloads
from services.tools.builtin import file_read as reading
from services.tools.builtin import file_write as writing
from services.tools.builtin import glob_files as globbing
from services.tools.builtin import grep_files as grepping
from services.tools.builtin import image_generation as imaging
from services.tools.builtin import image_load as images
from services.tools.builtin import listing
from services.tools.builtin import pdf_load as pdfs
from services.tools.builtin import send_file as sending
from services.tools.builtin import shell as shells
from services.tools.builtin import shell_close as closing
from services.tools.builtin import web_fetch as fetching
from services.tools.builtin import web_search as searching
from services.tools.catalog import Tool, bind
from services.tools.context import Settings
from shared.messages.tools import ListTools, ToolTraits

# SPEC §5.0's columns: mode, serial or parallel, idempotent
READS = ToolTraits(mode="immediate", is_serial=False, is_idempotent=True)
WRITES = ToolTraits(mode="immediate", is_serial=True, is_idempotent=False)
ACTS = ToolTraits(mode="immediate", is_serial=False, is_idempotent=False)
WAITS = ToolTraits(mode="interruptible", is_serial=False, is_idempotent=True)
WAITS_AND_ACTS = ToolTraits(mode="interruptible", is_serial=False, is_idempotent=False)


def _has(capability: str) -> Callable[[ListTools, Settings], bool]:
    def shown(asking: ListTools, settings: Settings) -> bool:
        return capability in asking.capabilities

    return shown


def _searches(asking: ListTools, settings: Settings) -> bool:
    """Our `web_search` where `[search]` is configured and the model cannot search itself."""
    return settings.search is not None and "web_search" not in asking.capabilities


def _draws(asking: ListTools, settings: Settings) -> bool:
    """`image_generation` where `[images]` is configured and the model draws no images itself."""
    return settings.images is not None and "image_out" not in asking.capabilities


def _talks_to_the_chat(asking: ListTools, settings: Settings) -> bool:
    """Conversation-bridge tools: foreground and background sessions, never subagents."""
    return asking.session_type != "subagent"


TABLE = [
    Tool(
        name="file_read",
        arguments=reading.FileReadArgs,
        invoke=bind(reading.FileReadArgs, reading.file_read),
        traits=READS,
    ),
    Tool(
        name="file_write",
        arguments=writing.FileWriteArgs,
        invoke=bind(writing.FileWriteArgs, writing.file_write),
        traits=WRITES,
    ),
    Tool(
        name="edit",
        arguments=editing.EditArgs,
        invoke=bind(editing.EditArgs, editing.edit),
        traits=WRITES,
    ),
    Tool(
        name="apply_patch",
        arguments=patching.ApplyPatchArgs,
        invoke=bind(patching.ApplyPatchArgs, patching.apply_patch),
        traits=WRITES,
    ),
    Tool(
        name="grep",
        arguments=grepping.GrepArgs,
        invoke=bind(grepping.GrepArgs, grepping.grep),
        traits=READS,
    ),
    Tool(
        name="glob",
        arguments=globbing.GlobArgs,
        invoke=bind(globbing.GlobArgs, globbing.glob),
        traits=READS,
    ),
    Tool(
        name="ls", arguments=listing.LsArgs, invoke=bind(listing.LsArgs, listing.ls), traits=READS
    ),
    Tool(
        name="shell",
        arguments=shells.ShellArgs,
        invoke=bind(shells.ShellArgs, shells.shell, shells.time_limit_s),
        traits=WAITS_AND_ACTS,
    ),
    Tool(
        name="shell_close",
        arguments=closing.ShellCloseArgs,
        invoke=bind(closing.ShellCloseArgs, closing.shell_close, closing.time_limit_s),
        traits=ACTS,
    ),
    Tool(
        name="web_fetch",
        arguments=fetching.WebFetchArgs,
        invoke=bind(fetching.WebFetchArgs, fetching.web_fetch, fetching.time_limit_s),
        traits=WAITS,
    ),
    Tool(
        name="web_search",
        arguments=searching.WebSearchArgs,
        invoke=bind(searching.WebSearchArgs, searching.web_search),
        traits=WAITS,
        shown=_searches,
    ),
    Tool(
        name="file_download_start",
        arguments=downloads.FileDownloadStartArgs,
        invoke=bind(
            downloads.FileDownloadStartArgs, downloads.file_download_start, downloads.start_limit_s
        ),
        traits=WAITS_AND_ACTS,
    ),
    Tool(
        name="file_download_progress",
        arguments=downloads.FileDownloadProgressArgs,
        invoke=bind(downloads.FileDownloadProgressArgs, downloads.file_download_progress),
        traits=READS,
    ),
    Tool(
        name="file_download_wait",
        arguments=downloads.FileDownloadWaitArgs,
        invoke=bind(
            downloads.FileDownloadWaitArgs, downloads.file_download_wait, downloads.wait_limit_s
        ),
        traits=WAITS,
    ),
    Tool(
        name="file_download_cancel",
        arguments=downloads.FileDownloadCancelArgs,
        invoke=bind(downloads.FileDownloadCancelArgs, downloads.file_download_cancel),
        traits=READS,
    ),
    Tool(
        name="image_load",
        arguments=images.ImageLoadArgs,
        invoke=bind(images.ImageLoadArgs, images.image_load),
        traits=READS,
        shown=_has("image_in"),
    ),
    Tool(
        name="pdf_load",
        arguments=pdfs.PdfLoadArgs,
        invoke=bind(pdfs.PdfLoadArgs, pdfs.pdf_load),
        traits=READS,
        shown=_has("pdf_in"),
    ),
    Tool(
        name="audio_load",
        arguments=audio.AudioLoadArgs,
        invoke=bind(audio.AudioLoadArgs, audio.audio_load),
        traits=READS,
        shown=_has("audio_in"),
    ),
    Tool(
        name="image_generation",
        arguments=imaging.ImageGenerationArgs,
        invoke=bind(imaging.ImageGenerationArgs, imaging.image_generation, imaging.limit_s),
        traits=WAITS_AND_ACTS,
        shown=_draws,
    ),
    Tool(
        name="send_file",
        arguments=sending.SendFileArgs,
        invoke=bind(sending.SendFileArgs, sending.send_file),
        traits=READS,
        shown=_talks_to_the_chat,
    ),
]
TOOLS = {tool.name: tool for tool in TABLE}
