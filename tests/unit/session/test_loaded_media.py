"""Files a tool loaded for the model (SPEC §8.3): inside the tool result for Anthropic, in one
user message after the batch's results for the others, against the fakes over real HTTP."""

import httpx
import msgspec
import pytest

from services.session import media, tool_batch
from services.session.providers.anthropic import Anthropic
from services.session.providers.openai_chat import OpenAIChat
from services.session.providers.openai_responses import OpenAIResponses
from services.session.providers.protocol import (
    InlineMedia,
    MediaNote,
    MediaPart,
    ModelRequest,
    StreamEvent,
)
from shared.ids import SessionId, ToolCallId, TurnId
from shared.messages.contract import Attachment, Sender
from shared.messages.history import (
    AssistantMessage,
    HistoryEvent,
    ToolCall,
    ToolResult,
    ToolResults,
    UserMessage,
)
from shared.messages.tools import ToolFinished, ToolSucceeded
from shared.model_config import ModelConfig
from tests.kit import anthropic_api, llm_api, openai_responses_api
from tests.kit.anthropic_wire import TextBlock, ToolResultBlock
from tests.kit.attachments import png
from tests.kit.media_wire import ImageBlock, InputImage, decoded_data_url

TURN = TurnId("t1")
IMAGE = png(20, 10)
CAT = Attachment(
    object_name="cli_x/cat.png",
    file_name="cat.png",
    media_type="image/png",
    size=len(IMAGE),
    path="upload/cat.png",
)
CLIP = Attachment(
    object_name="cli_x/clip.mp4",
    file_name="clip.mp4",
    media_type="video/mp4",
    size=99,
    path="upload/clip.mp4",
)
NOTE = MediaNote(text="[Attachment not shown to the model: upload/clip.mp4 | … ]")
CALL = ToolCall(
    call_id=ToolCallId("c1_1_0"),
    provider_call_id="toolu_img",
    name="image_load",
    arguments='{"path":"upload/cat.png"}',
)


def request() -> ModelRequest:
    loaded = ToolResult(
        call_id=CALL.call_id,
        tool="image_load",
        content='{"path":"upload/cat.png"}',
        attachments=[CAT, CLIP],
    )
    history: list[HistoryEvent] = [
        UserMessage(turn_id=TURN, text="What is in cat.png?", sender=Sender(display_name="Ada")),
        AssistantMessage(turn_id=TURN, text="", tool_calls=[CALL], model="m"),
        ToolResults(turn_id=TURN, results=[loaded]),
    ]
    parts: dict[str, MediaPart] = {
        CAT.object_name: InlineMedia(
            kind="image", media_type="image/png", file_name="cat.png", data=IMAGE
        ),
        CLIP.object_name: NOTE,
    }
    return ModelRequest(system_prompt="sys", history=history, tools=[], media=parts)


def model(provider: str, base_url: str) -> ModelConfig:
    table = {"provider": provider, "model": "m", "base_url": base_url, "api_key": "k"}
    return msgspec.convert(table | {"cache_ttl": 0}, ModelConfig)


def ignore(event: StreamEvent) -> None:
    pass


@pytest.fixture
async def http():
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as client:
        yield client


async def test_chat_completions_get_one_user_message_after_the_results(http):
    async with llm_api.llm_api(api_key="k") as fake:
        fake.script(llm_api.reply("A cat."))
        await OpenAIChat().complete(http, model("openai_chat", fake.base_url), request(), ignore)

    [sent] = fake.requests
    assert [m.role for m in sent.messages] == ["system", "user", "assistant", "tool", "user"]
    content = sent.messages[-1].content
    assert isinstance(content, list)
    label, image, note = content
    assert (label.type, label.text) == ("text", "[Loaded by image_load toolu_img]")
    assert image.image_url is not None
    assert decoded_data_url(image.image_url.url) == ("image/png", IMAGE)
    assert (note.type, note.text) == ("text", NOTE.text)


async def test_the_responses_api_gets_one_user_message_after_the_outputs(http):
    async with openai_responses_api.responses_api(api_key="k") as fake:
        fake.script(openai_responses_api.reply("A cat."))
        at = model("openai_responses", fake.base_url)
        await OpenAIResponses().complete(http, at, request(), ignore)

    [sent] = fake.requests
    *_, output, shown = sent.typed.input
    assert isinstance(output, openai_responses_api.FunctionCallOutput)
    assert isinstance(shown, openai_responses_api.Message)
    assert shown.role == "user"
    assert not isinstance(shown.content, str)
    label, image, note = shown.content
    assert isinstance(label, openai_responses_api.InputText)
    assert label.text == "[Loaded by image_load toolu_img]"
    assert isinstance(image, InputImage)
    assert image.image_url is not None
    assert decoded_data_url(image.image_url) == ("image/png", IMAGE)
    assert isinstance(note, openai_responses_api.InputText)
    assert note.text == NOTE.text


async def test_anthropic_gets_the_image_inside_the_tool_result(http):
    async with anthropic_api.anthropic_api(api_key="k") as fake:
        fake.script(anthropic_api.reply("A cat."))
        await Anthropic().complete(http, model("anthropic", fake.base_url), request(), ignore)

    [sent] = fake.requests
    assert sent.roles == ["user", "assistant", "user"]  # no extra message
    [result] = sent.tool_results
    assert isinstance(result, ToolResultBlock)
    assert isinstance(result.content, list)
    text, image, note = result.content
    assert text == TextBlock(text='{"path":"upload/cat.png"}')
    assert isinstance(image, ImageBlock)
    assert note == TextBlock(text=NOTE.text)


def test_normalization_takes_the_files_tools_loaded_and_runners_hand_them_over():
    finished = ToolFinished(
        session_id=SessionId("s1"),
        call_id=CALL.call_id,
        tool="image_load",
        result=ToolSucceeded(output=msgspec.Raw(b'{"path":"upload/cat.png"}'), attachments=[CAT]),
        runner_id="r1",
        duration_s=0.1,
    )
    result = tool_batch.as_result(CALL, finished)

    assert result.attachments == [CAT]
    history = [ToolResults(turn_id=TURN, results=[result])]
    assert media.attachments_of(history) == [CAT]
