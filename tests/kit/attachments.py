"""Attachments for tests: files stored in `sc_files` as ingress stores them, real images made with
Pillow, and the media parts a fake model server was sent.

    attachment = await stored(bus, "cli_ses", "cat.png", png(64, 48), "image/png")
    [image] = anthropic_media(fake.requests[0])
"""

import io
import os

from PIL import Image

from shared import subjects
from shared.messages.contract import Attachment
from tests.kit.anthropic_wire import MessagesRequest
from tests.kit.llm_api import ChatRequest, ContentPart
from tests.kit.media_wire import AnthropicMedia, ResponsesMedia
from tests.kit.nats import TestBus
from tests.kit.openai_responses_api import Message, ResponsesRequest


async def stored(
    bus: TestBus, conversation_id: str, name: str, data: bytes, media_type: str
) -> Attachment:
    """Put `data` in sc_files under the conversation, and the Attachment that refers to it."""
    object_name = subjects.file_key(conversation_id, name)
    store = await bus.js.object_store(subjects.FILES_STORE)
    await store.put(object_name, data)
    return Attachment(
        object_name=object_name,
        file_name=name,
        media_type=media_type,
        size=len(data),
        path=f"upload/{name}",
    )


def png(width: int, height: int, *, is_noise: bool = False) -> bytes:
    """A real PNG: one colour, or random noise (which PNG cannot compress: ~3 bytes a pixel)."""
    if is_noise:
        image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    else:
        image = Image.new("RGB", (width, height), (200, 120, 40))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def size_of(data: bytes) -> tuple[int, int]:
    """An image's width and height."""
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def chat_media(request: ChatRequest) -> list[ContentPart]:
    """The non-text parts of a chat completions request's user messages, in order."""
    return [
        part
        for message in request.messages
        if message.role == "user" and isinstance(message.content, list)
        for part in message.content
        if part.type != "text"
    ]


def responses_media(request: ResponsesRequest) -> list[ResponsesMedia]:
    """The media parts of a Responses request's messages, in order."""
    return [
        part
        for item in request.typed.input
        if isinstance(item, Message) and not isinstance(item.content, str)
        for part in item.content
        if isinstance(part, ResponsesMedia)
    ]


def anthropic_media(request: MessagesRequest) -> list[AnthropicMedia]:
    """The image and document blocks of a Messages request, in order."""
    return [b for m in request.typed.messages for b in m.blocks if isinstance(b, AnthropicMedia)]
