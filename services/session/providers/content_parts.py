"""Attachments in each wire format (SPEC §7.2, §8.1, §8.3).

A user message's text gets the `Attachments:` lines (history keeps the text without them); then
each attachment follows as the part `ModelRequest.media` holds for it: a file inline (base64), a
Files API id, or its downgrade note as text. An attachment without a part (nothing normalized
the request) is only listed. Files a tool loaded (`image_load` and its kind) go inside the tool
result where the API takes them (Anthropic), else in one user message after the batch's
results, each tool's under `[Loaded by <tool> <call id>]`.
"""

import base64
from collections.abc import Mapping

from services.session.providers.protocol import InlineMedia, MediaNote, MediaPart
from shared.messages.contract import Attachment
from shared.messages.history import ToolResult, UserMessage

Part = dict[str, object]
Media = Mapping[str, MediaPart]
AUDIO_FORMATS = {"audio/mpeg": "mp3", "audio/mp3": "mp3", "audio/x-wav": "wav", "audio/wave": "wav"}


def user_text(message: UserMessage) -> str:
    """The message's text, then `Attachments:` and one line per file (SPEC §8.1)."""
    if not message.attachments:
        return message.text
    lines = [
        f"- {a.path} ({a.file_name}, {a.media_type}, {size_text(a.size)}){_problem(a)}"
        for a in message.attachments
    ]
    listing = "\n".join(["Attachments:", *lines])
    return f"{message.text}\n\n{listing}" if message.text.strip() else listing


def _problem(attachment: Attachment) -> str:
    """A stored file's error (it is not in the workspace) closes its line; a failed download's
    is told by the note in its place (SPEC §8.2)."""
    return f" [{attachment.error}]" if attachment.object_name and attachment.error else ""


def size_text(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1 << 20:
        return f"{size / 1024:.0f} KiB"
    return f"{size / (1 << 20):.1f} MiB"


def parts_of(message: UserMessage, media: Media) -> list[tuple[Attachment, MediaPart]]:
    """Each attachment that has a part for this request, in the message's order."""
    found = ((a, media.get(a.object_name or a.path)) for a in message.attachments)
    return [(attachment, part) for attachment, part in found if part is not None]


def loaded(result: ToolResult, media: Media) -> list[MediaPart]:
    """The parts of the files a tool call loaded, in its order."""
    found = (media.get(a.object_name or a.path) for a in result.attachments)
    return [part for part in found if part is not None]


def loaded_label(result: ToolResult, wire_id: str) -> str:
    return f"[Loaded by {result.tool} {wire_id}]"


def data_url(media: InlineMedia) -> str:
    return f"data:{media.media_type};base64,{_base64(media.data)}"


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def audio_format(media_type: str) -> str:
    """`wav` or `mp3` for the APIs' `input_audio`; another subtype as it is."""
    return AUDIO_FORMATS.get(media_type, media_type.partition("/")[2])


# --- openai_chat ------------------------------------------------------------------------------


def chat_content(message: UserMessage, media: Media) -> str | list[Part]:
    """A chat completions user `content`: the text alone, or the text and a part per file."""
    parts = parts_of(message, media)
    if not parts:
        return user_text(message)
    content: list[Part] = [{"type": "text", "text": user_text(message)}]
    content += [_chat_part(part) for _, part in parts]
    return content


def _chat_part(part: MediaPart) -> Part:
    if isinstance(part, MediaNote):
        return {"type": "text", "text": part.text}
    if part.kind == "image":
        return {"type": "image_url", "image_url": {"url": data_url(part)}}
    if part.kind == "audio":
        audio = {"data": _base64(part.data), "format": audio_format(part.media_type)}
        return {"type": "input_audio", "input_audio": audio}
    return {"type": "file", "file": {"filename": part.file_name, "file_data": data_url(part)}}


def chat_loaded(
    results: list[ToolResult], media: Media, wire_ids: Mapping[str, str]
) -> list[dict[str, object]]:
    """The user message after a batch's tool messages that shows what its tools loaded."""
    content: list[Part] = []
    for result in results:
        if parts := loaded(result, media):
            label = loaded_label(result, wire_ids.get(result.call_id, result.call_id))
            content += [{"type": "text", "text": label}, *(_chat_part(part) for part in parts)]
    return [{"role": "user", "content": content}] if content else []


# --- openai_responses -------------------------------------------------------------------------


def responses_content(message: UserMessage, media: Media) -> list[Part]:
    """A Responses API user message's `content` parts."""
    content: list[Part] = [{"type": "input_text", "text": user_text(message)}]
    content += [_responses_part(part) for _, part in parts_of(message, media)]
    return content


def _responses_part(part: MediaPart) -> Part:
    if isinstance(part, MediaNote):
        return {"type": "input_text", "text": part.text}
    if part.kind == "image":
        source = {"file_id": part.file_id} if part.file_id else {"image_url": data_url(part)}
        return {"type": "input_image", "detail": "auto", **source}
    if part.kind == "audio":
        audio = {"data": _base64(part.data), "format": audio_format(part.media_type)}
        return {"type": "input_audio", "input_audio": audio}
    if part.file_id:
        return {"type": "input_file", "file_id": part.file_id}
    return {"type": "input_file", "filename": part.file_name, "file_data": data_url(part)}


def responses_loaded(
    results: list[ToolResult], media: Media, wire_ids: Mapping[str, str]
) -> list[dict[str, object]]:
    """The user message item after a batch's outputs that shows what its tools loaded."""
    content: list[Part] = []
    for result in results:
        if parts := loaded(result, media):
            label = loaded_label(result, wire_ids.get(result.call_id, result.call_id))
            content.append({"type": "input_text", "text": label})
            content += [_responses_part(part) for part in parts]
    return [{"type": "message", "role": "user", "content": content}] if content else []


# --- anthropic --------------------------------------------------------------------------------


def anthropic_blocks(message: UserMessage, media: Media) -> list[Part]:
    """A Messages API user message's blocks (no blank text block: the API refuses those)."""
    text = user_text(message)
    blocks: list[Part] = [{"type": "text", "text": text}] if text.strip() else []
    for _, part in parts_of(message, media):
        block = _anthropic_block(part)
        if block is not None:
            blocks.append(block)
    return blocks


def _anthropic_block(part: MediaPart) -> Part | None:
    if isinstance(part, MediaNote):
        return {"type": "text", "text": part.text}
    if part.kind == "audio":
        return None  # the Messages API takes no audio; normalization never sends it here
    kind = "image" if part.kind == "image" else "document"
    if part.file_id:
        return {"type": kind, "source": {"type": "file", "file_id": part.file_id}}
    if part.kind == "file":  # a text file: the API's plain-text document
        text = part.data.decode("utf-8", errors="replace")
        return {"type": kind, "source": {"type": "text", "media_type": "text/plain", "data": text}}
    source = {"type": "base64", "media_type": part.media_type, "data": _base64(part.data)}
    return {"type": kind, "source": source}


def anthropic_result(result: ToolResult, media: Media) -> str | list[Part]:
    """A tool_result's `content`: the result's text, and the images and documents it loaded."""
    blocks = [block for part in loaded(result, media) if (block := _anthropic_block(part))]
    if not blocks:
        return result.content
    text: list[Part] = [{"type": "text", "text": result.content}] if result.content.strip() else []
    return text + blocks
