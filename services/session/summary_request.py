"""The summary call of a compaction (SPEC §4.3): its instructions and its one user message.

The slice to compact goes as plain text, one entry per message with a blank line between:
`USER:`, `ASSISTANT:`, `TOOL CALL <name> <arguments>`, `TOOL RESULT <name>: <content>` (tool
arguments and results cut to 2,000 characters), attachments as `[image: upload/x.png]`-style
placeholders. Only notices that carry user updates are kept; bookkeeping events and reasoning
items are left out.
"""

from collections.abc import Iterable, Sequence

from shared.messages.contract import Attachment
from shared.messages.history import (
    AssistantMessage,
    Compacted,
    HistoryEvent,
    Notice,
    ToolResults,
    UserMessage,
)

CUT_CHARS = 2_000
CUT_MARK = "… [cut]"
PREVIOUS_LABEL = "PREVIOUS SUMMARY"
CONVERSATION_LABEL = "CONVERSATION TO SUMMARIZE"
# Notices that carry what the user said (SPEC §3.11); the others (cancel, time, runtime and
# sandbox updates, background and subagent results) are the runtime's and left out.
USER_UPDATE_TAGS = frozenset({"Interrupted Follow-up", "Queued User Updates", "Edited Message"})
REPLY_TAG = "Reply to "
PDF = "application/pdf"
KINDS = {"image": "image", "audio": "audio", "video": "video"}

INSTRUCTIONS = """\
You compress a conversation between a user and an AI assistant that works with tools, so the \
assistant can continue the work from your summary alone: the messages you read are replaced by it.

Write a faithful continuation summary in these sections, in this order:

## Goal
What the user wants overall, in their own terms, with every requirement and preference stated.

## Done so far
What has been done and found, in order, with outcomes and decisions and why they were taken.

## Current state
Where the work stands now: what exists, what works, what is broken.

## Open tasks
What is still to do, including anything the user asked for that is not done yet.

## Important references
Exact file paths, commands, ids, URLs, error messages, running shell sessions and downloads that \
the work needs, copied exactly as they appear.

## Next step
The one next action, as specific as the conversation allows.

Rules:
- Invent nothing: state only what the conversation shows. Write "unknown" rather than guess.
- Keep exact values (paths, names, numbers, code identifiers) verbatim.
- Do not restate the system prompt, skills, the user profile or memory files; the assistant \
keeps them.
- Ignore notices other than user updates (follow-ups, queued messages, edits).
- A PREVIOUS SUMMARY covers what came before the conversation: fold it in, keeping what still \
matters, so your summary replaces both.
- Answer with the summary alone, in the language the user writes in."""


def instructions() -> str:
    """The system prompt of the summary call."""
    return INSTRUCTIONS


def summary_input(slice_text: str, previous_summary: str | None) -> str:
    """The user message of the summary call: the previous summary, if any, then the slice.

    Pass the previous summary here or as a `Compacted` event in the slice, not both."""
    conversation = f"{CONVERSATION_LABEL}:\n\n{slice_text}"
    if previous_summary is None or not previous_summary.strip():
        return conversation
    return f"{PREVIOUS_LABEL}:\n{previous_summary}\n\n{conversation}"


def render(events: Sequence[HistoryEvent]) -> str:
    """The slice to compact as plain text; a compaction's summary in it comes first."""
    summaries = [
        f"{PREVIOUS_LABEL}:\n{event.summary}" for event in events if isinstance(event, Compacted)
    ]
    entries = [entry for event in events for entry in _entries(event)]
    return "\n\n".join([*summaries, *entries])


def _entries(event: HistoryEvent) -> list[str]:
    match event:
        case UserMessage():
            return [_user(event.text, event.attachments)]
        case AssistantMessage():
            said = [f"ASSISTANT: {event.text}"] if event.text.strip() else []
            calls = [f"TOOL CALL {c.name} {cut(c.arguments)}" for c in event.tool_calls]
            return said + calls
        case ToolResults():
            return [
                _with_files(f"TOOL RESULT {r.tool}: {cut(r.content)}", r.attachments)
                for r in event.results
            ]
        case Notice() if is_user_update(event):
            return [f"USER: {event.text}"]
        case _:  # other notices, compactions (rendered first), bookkeeping
            return []


def _user(text: str, files: list[Attachment]) -> str:
    if not text.strip():
        return "USER: " + "\n".join(placeholder(a) for a in files)
    return _with_files(f"USER: {text}", files)


def _with_files(entry: str, files: Iterable[Attachment]) -> str:
    return "\n".join([entry, *(placeholder(a) for a in files)])


def is_user_update(notice: Notice) -> bool:
    return notice.tag in USER_UPDATE_TAGS or notice.tag.startswith(REPLY_TAG)


def placeholder(attachment: Attachment) -> str:
    """`[image: upload/x.png]`: the file's kind (image, pdf, audio, video, file) and path."""
    return f"[{kind(attachment.media_type)}: {attachment.path}]"


def kind(media_type: str) -> str:
    lowered = media_type.lower()
    if lowered == PDF:
        return "pdf"
    return KINDS.get(lowered.partition("/")[0], "file")


def cut(text: str) -> str:
    """The text, cut to 2,000 characters; a cut says so."""
    return text if len(text) <= CUT_CHARS else text[:CUT_CHARS] + CUT_MARK
