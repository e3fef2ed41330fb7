"""Attachments through the real session service (SPEC §8): stored in sc_files, referenced by the
user's message, and shaped per model call on its way to the fake OpenAI server."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec

from services.session.service import run as run_session
from services.tools.service import run as run_tools
from shared import subjects
from shared.messages.contract import Attachment
from shared.messages.history import HISTORY, UserMessage
from shared.messages.outbound import OUTPUT, SendReply
from tests.integration.test_session import CONV, OUT, SESSION, handle, wake
from tests.kit.attachments import chat_media, png, stored
from tests.kit.llm_api import ChatRequest, OpenAIChatServer, Step, http_error, llm_api, reply
from tests.kit.media_wire import decoded_data_url
from tests.kit.services import make_runtime, running

IMAGE = png(120, 80)
NOTE = (
    "[Attachment not shown to the model: upload/cat.png | name: cat.png | type: image/png | "
    "reason: the model does not accept image input]"
)


def config(base_url: str) -> dict[str, object]:
    def model(name: str, capabilities: list[str], **extra: object) -> dict[str, object]:
        return {
            "provider": "openai_chat",
            "model": f"{name}-model",
            "base_url": base_url,
            "api_key": "k",
            "capabilities": ["tools", *capabilities],
            "retry": {"mode": "none"},
        } | extra

    models = {
        "seeing": model("seeing", ["image_in"]),
        "plain": model("plain", []),
        "seeing_then_plain": model("seeing", ["image_in"], fallback=["plain"]),
    }
    return {"default_model": "seeing", "models": models, "shutdown_grace_s": 5}


@asynccontextmanager
async def media_stack(bus, workdir, nats_access, *steps: Step) -> AsyncIterator[OpenAIChatServer]:
    async with llm_api(api_key="k") as llm:
        llm.script(*steps)
        runtime = make_runtime(config(llm.base_url), workdir, nats_access)
        await bus.watch(OUT)
        async with running(runtime, run_session, run_tools):
            yield llm


async def say_with(bus, text: str, attachments: list[Attachment], model: str) -> None:
    """A user message with files, as the conversation service forwards it."""
    message = handle(text, 1, model)
    received = msgspec.structs.replace(message.message, attachments=attachments)
    await bus.publish(
        subjects.session_input(SESSION),
        msgspec.structs.replace(message, message=received),
        msg_id=subjects.session_input_msg_id(1),
    )
    await wake(bus)


async def final_answer(bus) -> SendReply:
    """The turn's answer (skipping typing and the fallback notice)."""
    while True:
        output = await bus.next(OUT, OUTPUT, timeout_s=10)
        if isinstance(output, SendReply) and output.out_id == subjects.answer_out_id(
            f"{SESSION}_t1"
        ):
            return output


def user_parts(request: ChatRequest) -> list[tuple[str, str]]:
    """The last user message's parts: (type, text or the image's data URL)."""
    content = request.messages[-1].content
    assert isinstance(content, list)
    return [(p.type, p.text or (p.image_url.url if p.image_url else "")) for p in content]


async def test_an_image_reaches_a_model_that_sees_as_an_image_part(bus, workdir, nats_access):
    cat = await stored(bus, CONV, "cat.png", IMAGE, "image/png")
    async with media_stack(bus, workdir, nats_access, reply("An orange cat.")) as llm:
        await say_with(bus, "What is this?", [cat], model="seeing")
        final = await final_answer(bus)

    assert final.text == "An orange cat."
    [request] = llm.requests
    [image] = chat_media(request)
    assert image.image_url is not None
    assert decoded_data_url(image.image_url.url) == ("image/png", IMAGE)
    [(kind, text), _] = user_parts(request)
    assert kind == "text"
    line = f"- upload/cat.png (cat.png, image/png, {len(IMAGE)} B)"
    assert text == f"What is this?\n\nAttachments:\n{line}"
    events = await bus.stored(subjects.HISTORY_STREAM, subjects.history(SESSION), HISTORY)
    [stored_message] = [e for e in events if isinstance(e, UserMessage)]
    assert (stored_message.text, stored_message.attachments) == ("What is this?", [cat])


async def test_the_same_image_reaches_a_text_only_model_as_the_note(bus, workdir, nats_access):
    cat = await stored(bus, CONV, "cat.png", IMAGE, "image/png")
    async with media_stack(bus, workdir, nats_access, reply("I cannot see it.")) as llm:
        await say_with(bus, "What is this?", [cat], model="plain")
        await final_answer(bus)

    [request] = llm.requests
    assert chat_media(request) == []
    assert user_parts(request)[1] == ("text", NOTE)


async def test_a_fallback_without_image_in_gets_the_note_the_first_model_got_the_image(
    bus, workdir, nats_access
):
    cat = await stored(bus, CONV, "cat.png", IMAGE, "image/png")
    steps = (http_error(503, "overloaded"), reply("Plain words about a file."))
    async with media_stack(bus, workdir, nats_access, *steps) as llm:
        await say_with(bus, "What is this?", [cat], model="seeing_then_plain")
        final = await final_answer(bus)

    assert final.text == "Plain words about a file."
    first, second = llm.requests
    assert (first.body["model"], second.body["model"]) == ("seeing-model", "plain-model")
    assert [part.type for part in chat_media(first)] == ["image_url"]
    assert chat_media(second) == []
    assert user_parts(second)[1] == ("text", NOTE)
