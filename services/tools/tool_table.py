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

# SPEC §5.0's columns: mode, serial or parallel, idempotent; and each tool's hard time limit
# (a tool whose arguments set its wait has the longest they allow here, and the call's own).
IMMEDIATE_S = 120.0  # reading, writing, patching a file; loading media
SEARCH_S = 300.0  # grep, glob and ls over a large tree
WAIT_S = 300.0 + 10.0  # the longest wait_s, and slack
READS = ToolTraits(is_serial=False, is_idempotent=True, time_limit_s=IMMEDIATE_S)
SEARCHES = ToolTraits(is_serial=False, is_idempotent=True, time_limit_s=SEARCH_S)
WRITES = ToolTraits(is_serial=True, is_idempotent=False, time_limit_s=IMMEDIATE_S)
SHELL = ToolTraits(mode="interruptible", is_serial=False, is_idempotent=False, time_limit_s=WAIT_S)
CLOSES = ToolTraits(is_serial=False, is_idempotent=False, time_limit_s=20.0)
FETCHES = ToolTraits(mode="interruptible", is_serial=False, is_idempotent=True, time_limit_s=130.0)
STARTS = ToolTraits(mode="interruptible", is_serial=False, is_idempotent=False, time_limit_s=WAIT_S)
WAITS = ToolTraits(mode="interruptible", is_serial=False, is_idempotent=True, time_limit_s=WAIT_S)
DRAWS = ToolTraits(
    mode="interruptible", is_serial=False, is_idempotent=False, time_limit_s=3600.0 + 10.0
)


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
        invoke=bind(reading.FileReadArgs, reading.file_read, IMMEDIATE_S),
        traits=READS,
    ),
    Tool(
        name="file_write",
        arguments=writing.FileWriteArgs,
        invoke=bind(writing.FileWriteArgs, writing.file_write, IMMEDIATE_S),
        traits=WRITES,
    ),
    Tool(
        name="edit",
        arguments=editing.EditArgs,
        invoke=bind(editing.EditArgs, editing.edit, IMMEDIATE_S),
        traits=WRITES,
    ),
    Tool(
        name="apply_patch",
        arguments=patching.ApplyPatchArgs,
        invoke=bind(patching.ApplyPatchArgs, patching.apply_patch, IMMEDIATE_S),
        traits=WRITES,
    ),
    Tool(
        name="grep",
        arguments=grepping.GrepArgs,
        invoke=bind(grepping.GrepArgs, grepping.grep, SEARCH_S),
        traits=SEARCHES,
    ),
    Tool(
        name="glob",
        arguments=globbing.GlobArgs,
        invoke=bind(globbing.GlobArgs, globbing.glob, SEARCH_S),
        traits=SEARCHES,
    ),
    Tool(
        name="ls",
        arguments=listing.LsArgs,
        invoke=bind(listing.LsArgs, listing.ls, SEARCH_S),
        traits=SEARCHES,
    ),
    Tool(
        name="shell",
        arguments=shells.ShellArgs,
        invoke=bind(shells.ShellArgs, shells.shell, shells.time_limit_s),
        traits=SHELL,
    ),
    Tool(
        name="shell_close",
        arguments=closing.ShellCloseArgs,
        invoke=bind(closing.ShellCloseArgs, closing.shell_close, CLOSES.time_limit_s),
        traits=CLOSES,
    ),
    Tool(
        name="web_fetch",
        arguments=fetching.WebFetchArgs,
        invoke=bind(fetching.WebFetchArgs, fetching.web_fetch, fetching.time_limit_s),
        traits=FETCHES,
    ),
    Tool(
        name="web_search",
        arguments=searching.WebSearchArgs,
        invoke=bind(searching.WebSearchArgs, searching.web_search, FETCHES.time_limit_s),
        traits=FETCHES,
        shown=_searches,
    ),
    Tool(
        name="file_download_start",
        arguments=downloads.FileDownloadStartArgs,
        invoke=bind(
            downloads.FileDownloadStartArgs, downloads.file_download_start, downloads.start_limit_s
        ),
        traits=STARTS,
    ),
    Tool(
        name="file_download_progress",
        arguments=downloads.FileDownloadProgressArgs,
        invoke=bind(
            downloads.FileDownloadProgressArgs, downloads.file_download_progress, IMMEDIATE_S
        ),
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
        invoke=bind(downloads.FileDownloadCancelArgs, downloads.file_download_cancel, IMMEDIATE_S),
        traits=READS,
    ),
    Tool(
        name="image_load",
        arguments=images.ImageLoadArgs,
        invoke=bind(images.ImageLoadArgs, images.image_load, IMMEDIATE_S),
        traits=READS,
        shown=_has("image_in"),
    ),
    Tool(
        name="pdf_load",
        arguments=pdfs.PdfLoadArgs,
        invoke=bind(pdfs.PdfLoadArgs, pdfs.pdf_load, IMMEDIATE_S),
        traits=READS,
        shown=_has("pdf_in"),
    ),
    Tool(
        name="audio_load",
        arguments=audio.AudioLoadArgs,
        invoke=bind(audio.AudioLoadArgs, audio.audio_load, IMMEDIATE_S),
        traits=READS,
        shown=_has("audio_in"),
    ),
    Tool(
        name="image_generation",
        arguments=imaging.ImageGenerationArgs,
        invoke=bind(imaging.ImageGenerationArgs, imaging.image_generation, imaging.limit_s),
        traits=DRAWS,
        shown=_draws,
    ),
    Tool(
        name="send_file",
        arguments=sending.SendFileArgs,
        invoke=bind(sending.SendFileArgs, sending.send_file, IMMEDIATE_S),
        traits=READS,
        shown=_talks_to_the_chat,
    ),
]
TOOLS = {tool.name: tool for tool in TABLE}
