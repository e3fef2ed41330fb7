"""image_generation per SPEC §5.5 against a fake OpenAI images API over real HTTP: generations
as JSON, edits as multipart, b64_json and url answers, the files saved and sent, the errors."""

import re
from pathlib import Path

import msgspec
import msgspec.inspect
import pytest

from services.tools.builtin.image_generation import (
    ImageGenerationArgs,
    ImageGenerationResult,
    image_generation,
    limit_s,
)
from services.tools.catalog import decode
from services.tools.context import RunnerContext, Settings
from services.tools.results import Attached, ToolError
from services.tools.workspace import ToolCall
from shared.tools_config import ImagesConfig
from tests.kit.images_api import Held, api_error, generated, images_api, png
from tests.unit.tools.samples import Store, tool_call

KEY = "sk-images-unit-test-key-0123456789"
DECODER = msgspec.json.Decoder(ImageGenerationArgs)
SAVED = re.compile(r"^generated/\d{8}-\d{6}-[0-9a-f]{4}\.png$")
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(64)


@pytest.fixture
async def fake():
    async with images_api(api_key=KEY) as server:
        yield server


@pytest.fixture
def store():
    return Store()


@pytest.fixture
def call(workdir, fake, store):
    return call_with(workdir, fake.base_url, store)


def call_with(
    workdir: Path, base_url: str, store: Store, *, key: str = KEY, timeout_s: float = 5.0
) -> ToolCall:
    config = ImagesConfig(base_url=base_url, api_key=key, size="1024x1536", timeout_s=timeout_s)
    runner = RunnerContext(settings=Settings(images=config), store_file=store.put)
    return msgspec.structs.replace(tool_call(workdir), runner=runner)


async def generate(call: ToolCall, **arguments: object) -> Attached:
    args = decode(DECODER, ImageGenerationArgs, msgspec.json.encode(arguments))
    return await image_generation(args, call)


async def failure(call: ToolCall, **arguments: object) -> ToolError:
    with pytest.raises(ToolError) as caught:
        await generate(call, **arguments)
    return caught.value


async def test_a_generation_saves_and_sends_every_image(workdir, fake, store):
    fake.script(generated())
    call = call_with(workdir, fake.base_url, store)
    outcome = await generate(call, prompt="a red fox in snow", n=2)
    [received] = fake.requests
    assert received.route == "generations"
    assert received.headers["authorization"] == f"Bearer {KEY}"
    assert received.headers["content-type"] == "application/json"
    assert received.fields == {
        "model": "gpt-image-1",
        "prompt": "a red fox in snow",
        "size": "1024x1536",  # the configured default
        "n": 2,
    }
    result = outcome.result
    assert isinstance(result, ImageGenerationResult)
    assert (result.model, result.revised_prompt, len(result.files)) == ("gpt-image-1", None, 2)
    assert all(SAVED.match(path) for path in result.files)
    assert [(call.root / path).read_bytes() for path in result.files] == fake.answered
    assert [send.send_as for send in outcome.sends] == ["photo", "photo"]
    for path, send, data in zip(result.files, outcome.sends, fake.answered, strict=True):
        attachment = send.attachment
        assert (attachment.path, attachment.media_type, attachment.size) == (
            path,
            "image/png",
            len(data),
        )
        assert attachment.file_name == path.removeprefix("generated/")
        assert attachment.object_name.startswith("tg_1/tool_c1_")
        assert store.objects[attachment.object_name] == data
    assert len(store.objects) == 2


async def test_url_answers_are_downloaded_and_the_revised_prompt_is_kept(workdir, fake, store):
    fake.script(generated(as_url=True, revised_prompt="A red fox, snowy forest, dawn"))
    call = call_with(workdir, fake.base_url, store)
    outcome = await generate(call, prompt="fox", size="512x512")
    assert fake.requests[0].fields["size"] == "512x512"
    result = outcome.result
    assert isinstance(result, ImageGenerationResult)
    assert result.revised_prompt == "A red fox, snowy forest, dawn"
    assert [(call.root / path).read_bytes() for path in result.files] == [png(1)]


async def test_an_edit_sends_each_image_as_a_multipart_part(workdir, fake, store):
    fake.script(generated())
    call = call_with(workdir, fake.base_url, store)
    (call.root / "in").mkdir()
    (call.root / "in/cat.png").write_bytes(png(200))
    (call.root / "in/dog.jpg").write_bytes(JPEG)
    outcome = await generate(
        call, prompt="put them on a sofa", images=["in/cat.png", "in/dog.jpg"], n=1
    )
    [received] = fake.requests
    assert received.route == "edits"
    assert received.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert received.fields == {
        "model": "gpt-image-1",
        "prompt": "put them on a sofa",
        "size": "1024x1536",
        "n": "1",
    }
    parts = [(part.filename, part.content_type, part.data) for part in received.images]
    assert parts == [("cat.png", "image/png", png(200)), ("dog.jpg", "image/jpeg", JPEG)]
    assert len(outcome.sends) == 1


async def test_without_send_the_images_are_only_saved(workdir, fake, store):
    fake.script(generated())
    call = call_with(workdir, fake.base_url, store)
    outcome = await generate(call, prompt="a lighthouse", send=False)
    assert outcome.sends == []
    assert store.objects == {}
    assert isinstance(outcome.result, ImageGenerationResult)
    assert (call.root / outcome.result.files[0]).read_bytes() == fake.answered[0]


async def test_without_a_key_no_authorization_is_sent(workdir, store):
    async with images_api() as fake:
        fake.script(generated())
        await generate(call_with(workdir, fake.base_url, store, key=""), prompt="a kite")
        assert "authorization" not in fake.requests[0].headers


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("notes.txt", b"not an image", ("invalid_arguments", "notes.txt is not a PNG, JPEG")),
        ("missing.png", None, ("not_found", "missing.png does not exist")),
        ("../outside.png", None, ("outside_workspace", "path is outside the workspace")),
    ],
)
async def test_input_images_are_checked_before_any_request(call, fake, name, content, expected):
    kind, message = expected
    if content is not None:
        (call.root / name).write_bytes(content)
    error = await failure(call, prompt="edit", images=[name])
    assert error.kind == kind
    assert str(error).startswith(message)
    assert fake.requests == []


async def test_a_webp_input_is_accepted(workdir, fake, store):
    fake.script(generated())
    call = call_with(workdir, fake.base_url, store)
    webp = b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(24)
    (call.root / "pic").write_bytes(webp)
    await generate(call, prompt="brighter", images=["pic"])
    assert fake.requests[0].images[0].content_type == "image/webp"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"prompt": "x" * 4001}, "Expected `str` of length <= 4000 - at `$.prompt`"),
        ({"prompt": "x", "n": 5}, "Expected `int` <= 4 - at `$.n`"),
        ({"prompt": "x", "images": ["a.png"] * 5}, "Expected `array` of length <= 4"),
        ({"prompt": "x", "size": "huge"}, "Expected `str` matching regex"),
    ],
)
async def test_bad_arguments_are_refused(workdir, fake, store, arguments, message):
    error = await failure(call_with(workdir, fake.base_url, store), **arguments)
    assert error.kind == "invalid_arguments"
    assert str(error).startswith(message)


@pytest.mark.parametrize(
    ("step", "kind", "message"),
    [
        (
            api_error(400, "Your request was rejected by the safety system.", code="moderation"),
            "failed",
            "the images API refused the request (HTTP 400): "
            "Your request was rejected by the safety system.",
        ),
        (
            api_error(429, "Rate limit reached for images per minute.", retry_after_s=20),
            "unavailable",
            "the images API is rate-limited: Rate limit reached for images per minute.;"
            " try again in 20 s",
        ),
        (
            api_error(503, "The server is overloaded."),
            "failed",
            "the images API failed (HTTP 503): The server is overloaded.",
        ),
    ],
)
async def test_api_errors_are_worded_for_the_model(call, fake, step, kind, message):
    fake.script(step)
    error = await failure(call, prompt="x")
    assert (error.kind, str(error)) == (kind, message)
    assert not (call.root / "generated").exists()


async def test_a_refused_key_is_unavailable_and_never_repeated(workdir, fake, store):
    wrong = "sk-wrong-images-key-000000"
    error = await failure(call_with(workdir, fake.base_url, store, key=wrong), prompt="x")
    assert (error.kind, str(error)) == (
        "unavailable",
        "the images API refused the key (HTTP 401); the operator checks images.api_key",
    )
    assert "sk-wr" not in str(error)


async def test_no_answer_within_the_time_limit_is_timed_out(workdir, fake, store):
    fake.script(Held())
    error = await failure(call_with(workdir, fake.base_url, store, timeout_s=0.2), prompt="x")
    assert (error.kind, str(error)) == (
        "timed_out",
        "the images API did not finish within 0.2 s",
    )


async def test_without_an_images_section_the_tool_is_unavailable(workdir):
    error = await failure(tool_call(workdir), prompt="x")
    assert (error.kind, str(error)) == (
        "unavailable",
        "image_generation is not configured; the operator adds an [images] section",
    )


def test_the_hard_limit_leaves_room_for_the_longest_configured_time_limit():
    info = msgspec.inspect.type_info(ImagesConfig)
    assert isinstance(info, msgspec.inspect.StructType)
    [timeout] = [field.type for field in info.fields if field.name == "timeout_s"]
    assert isinstance(timeout, msgspec.inspect.FloatType)
    assert timeout.le is not None
    assert limit_s(ImageGenerationArgs(prompt="x")) > timeout.le
