"""`image_generation` (SPEC §5.5) with an OpenAI-compatible images API.

Without input images: `POST {base_url}/images/generations` with JSON; with them:
`POST {base_url}/images/edits` as multipart, one `image[]` part per file. Each returned image
(`b64_json`, or a `url` to download) is saved as `generated/<YYYYMMDD-HHMMSS>-<4 hex>.png`;
with `send` it is also stored in sc_files and offered to the chat as a photo. In fixed remote
mode input images come from the remote over SFTP and `generated/` is on the remote. The API key
goes only into the `Authorization` header, never into a result or an error.
"""

import asyncio
import base64
import binascii
import secrets
from datetime import UTC, datetime
from typing import Annotated

import httpx
import msgspec
from msgspec import Meta

from services.tools import fs
from services.tools.builtin.media_load import read_remote
from services.tools.context import object_name
from services.tools.results import Attached, Result, ToolError
from services.tools.workspace import ToolCall, remote_for
from shared.messages.contract import Attachment
from shared.messages.tools import FileToSend
from shared.tools_config import ImagesConfig, ImageSize

MIB = 1 << 20
MAX_INPUT_BYTES = 50 * MIB  # the images API's limit per input image
MAX_TIMEOUT_S = 3600.0  # the upper bound of `images.timeout_s`
SETTLE_S = 10.0  # beyond it, before the runner's own limit cuts in
OUTPUT_DIR = "generated"
MAGIC = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}


class ImageGenerationArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Generate images from a text prompt, or edit workspace images as the prompt says, with the
    configured images model. They are saved under generated/ and, with send (the default), sent
    to the chat as photos at once."""

    prompt: Annotated[
        str, Meta(min_length=1, max_length=4000, description="what to draw, or how to edit")
    ]
    images: Annotated[
        list[Annotated[str, Meta(min_length=1)]],
        Meta(max_length=4, description="PNG, JPEG or WebP files in the workspace to edit"),
    ] = []
    size: Annotated[
        ImageSize | None, Meta(description="`<width>x<height>` or `auto` (default: configured)")
    ] = None
    n: Annotated[int, Meta(ge=1, le=4, description="how many images (default 1)")] = 1
    send: Annotated[bool, Meta(description="send the images to the chat (default true)")] = True


class ImageGenerationResult(Result, frozen=True, kw_only=True):
    files: list[str]  # relative to the workspace
    model: str
    revised_prompt: str | None = None  # the prompt as the model rewrote it, if it says


class Picture(msgspec.Struct, frozen=True, kw_only=True):
    """An input image for an edit."""

    name: str
    data: bytes
    media_type: str


class _Image(msgspec.Struct, frozen=True):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class _Answer(msgspec.Struct, frozen=True):
    data: list[_Image]


class _ApiError(msgspec.Struct, frozen=True):
    message: str = ""


class _ErrorAnswer(msgspec.Struct, frozen=True):
    error: _ApiError | None = None


_ANSWER: msgspec.json.Decoder[_Answer] = msgspec.json.Decoder(_Answer)
_ERROR: msgspec.json.Decoder[_ErrorAnswer] = msgspec.json.Decoder(_ErrorAnswer)


def limit_s(args: ImageGenerationArgs) -> float:
    """The call's hard limit: the tool enforces `images.timeout_s` itself, at most this."""
    return MAX_TIMEOUT_S + SETTLE_S


async def image_generation(args: ImageGenerationArgs, call: ToolCall) -> Attached:
    config = call.runner.settings.images
    if config is None:
        raise ToolError(
            "unavailable",
            "image_generation is not configured; the operator adds an [images] section",
        )
    inputs = [await read_picture(call, path) for path in args.images]
    try:
        async with (
            asyncio.timeout(config.timeout_s),
            httpx.AsyncClient(timeout=httpx.Timeout(config.timeout_s)) as client,
        ):
            answer = await request(client, config, args, inputs)
            images = [await image_bytes(client, item) for item in answer.data]
    except (TimeoutError, httpx.TimeoutException):
        raise ToolError(
            "timed_out", f"the images API did not finish within {config.timeout_s:g} s"
        ) from None
    except httpx.HTTPError as exc:
        message = f"cannot reach the images API at {config.base_url}: {exc}"
        raise ToolError("failed", message) from None
    files = await save(call, images)
    revised = next((item.revised_prompt for item in answer.data if item.revised_prompt), None)
    result = ImageGenerationResult(files=files, model=config.model, revised_prompt=revised)
    if not args.send:
        return Attached(result=result)
    sends = [await offer(call, path, data) for path, data in zip(files, images, strict=True)]
    return Attached(result=result, sends=sends)


async def read_picture(call: ToolCall, path: str) -> Picture:
    """An input image from the workspace or the call's remote, refused unless it is PNG, JPEG
    or WebP."""
    target = remote_for(call, path)
    if target is None:
        data = await asyncio.to_thread(fs.read_bytes, call, path, MAX_INPUT_BYTES)
    else:
        data = await read_remote(call, target, path, MAX_INPUT_BYTES)
    media_type = next((kind for magic, kind in MAGIC.items() if data.startswith(magic)), None)
    if media_type is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        media_type = "image/webp"
    if media_type is None:
        raise ToolError("invalid_arguments", f"{path} is not a PNG, JPEG or WebP image")
    return Picture(name=path.rsplit("/", 1)[-1], data=data, media_type=media_type)


async def request(
    client: httpx.AsyncClient,
    config: ImagesConfig,
    args: ImageGenerationArgs,
    inputs: list[Picture],
) -> _Answer:
    """Ask for the images: a generation, or an edit of `inputs`."""
    base = config.base_url.rstrip("/")
    headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
    size = args.size or config.size
    if inputs:
        fields = {"model": config.model, "prompt": args.prompt, "size": size, "n": str(args.n)}
        files = [("image[]", (image.name, image.data, image.media_type)) for image in inputs]
        response = await client.post(
            f"{base}/images/edits", data=fields, files=files, headers=headers
        )
    else:
        body = {"model": config.model, "prompt": args.prompt, "size": size, "n": args.n}
        headers["Content-Type"] = "application/json"
        response = await client.post(
            f"{base}/images/generations", content=msgspec.json.encode(body), headers=headers
        )
    if response.status_code != httpx.codes.OK:
        raise refusal(response, config.api_key)
    try:
        answer = _ANSWER.decode(response.content)
    except msgspec.DecodeError as exc:
        raise ToolError("failed", f"the images API answered in an unexpected form: {exc}") from None
    if not answer.data:
        raise ToolError("failed", "the images API answered without any image")
    return answer


async def image_bytes(client: httpx.AsyncClient, image: _Image) -> bytes:
    """One image's bytes: decoded from `b64_json`, or downloaded from `url`."""
    if image.b64_json:
        try:
            return base64.b64decode(image.b64_json, validate=True)
        except binascii.Error:
            raise ToolError("failed", "the images API sent an image that is not base64") from None
    if image.url:
        response = await client.get(image.url)
        if response.status_code != httpx.codes.OK:
            shown = image.url.split("?", 1)[0]  # a signed URL's query is a credential
            message = (
                f"could not download the generated image {shown} (HTTP {response.status_code})"
            )
            raise ToolError("failed", message)
        return response.content
    raise ToolError("failed", "the images API sent an image with neither b64_json nor url")


async def save(call: ToolCall, images: list[bytes]) -> list[str]:
    """Write the images under `generated/`, on the call's remote in fixed mode; their paths
    relative to the workspace."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    paths = [f"{OUTPUT_DIR}/{stamp}-{secrets.token_hex(2)}.png" for _ in images]
    target = remote_for(call, OUTPUT_DIR)
    if target is None:
        for path, data in zip(paths, images, strict=True):
            await asyncio.to_thread(fs.write_atomically, call, path, data)
        return paths
    from services.tools.remote import on_remote  # asyncssh: remote calls only

    async with on_remote.files(call, target) as files:
        for path, data in zip(paths, images, strict=True):
            await files.write_atomically(path, data)
    return paths


async def offer(call: ToolCall, path: str, data: bytes) -> FileToSend:
    """Put an image into sc_files and offer it to the chat as a photo."""
    file_name = path.rsplit("/", 1)[-1]
    name = object_name(call.conversation_id, call.call_id, file_name)
    await call.runner.store_file(name, data)
    attachment = Attachment(
        object_name=name, file_name=file_name, media_type="image/png", size=len(data), path=path
    )
    return FileToSend(attachment=attachment, send_as="photo")


def refusal(response: httpx.Response, api_key: str) -> ToolError:
    """The error for a non-200 answer, in the API's words; the key is never repeated."""
    status = response.status_code
    if status in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
        # OpenAI's message repeats part of the key, so it is not passed on
        return ToolError(
            "unavailable",
            f"the images API refused the key (HTTP {status}); the operator checks images.api_key",
        )
    try:
        error = _ERROR.decode(response.content).error
    except msgspec.DecodeError:
        error = None
    message = error.message if error is not None and error.message else response.reason_phrase
    if api_key:
        message = message.replace(api_key, "***")
    if status == httpx.codes.TOO_MANY_REQUESTS:
        wait = response.headers.get("retry-after", "").strip()
        when = f"try again in {wait} s" if wait.isdigit() else "try again later"
        return ToolError("unavailable", f"the images API is rate-limited: {message}; {when}")
    if status >= httpx.codes.INTERNAL_SERVER_ERROR:
        return ToolError("failed", f"the images API failed (HTTP {status}): {message}")
    return ToolError("failed", f"the images API refused the request (HTTP {status}): {message}")
